//! `sdar demo`: the whole story on a built-in sample disk, printing every
//! command it runs so a newcomer can repeat it by hand.

use crate::cli::DemoArgs;
use crate::sample::write_sample_disk;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::process::Command;

pub fn run(args: DemoArgs) -> Result<()> {
    let tmp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::Builder::new().prefix("sdar-demo.").tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    println!("# sdar demo, working in {}", dir.display());
    println!(
        "# 1. A sample VM disk of {} MiB: zeros, text and random data, as a VMDK.",
        args.size >> 20
    );
    let sectors = args.size / 512;
    let size = sectors * 512;
    let mut flat = BufWriter::new(File::create(dir.join("demo-flat.vmdk"))?);
    write_sample_disk(&mut flat, size, 1)?;
    flat.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let descriptor = format!(
        "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n# Extent description\nRW {sectors} FLAT \"demo-flat.vmdk\" 0\n\n# The Disk Data Base\n#DDB\n\nddb.adapterType = \"lsilogic\"\nddb.geometry.cylinders = \"{}\"\nddb.geometry.heads = \"255\"\nddb.geometry.sectors = \"63\"\nddb.uuid = \"60 00 c2 9b 5e 1d 4a 21-9f 3c 8a 77 10 42 d3 e5\"\nddb.virtualHWVersion = \"19\"\n",
        (sectors / (255 * 63)).max(1)
    );
    std::fs::write(dir.join("demo.vmdk"), descriptor)?;
    std::fs::write(
        dir.join("demo.vmx"),
        ".encoding = \"UTF-8\"\nconfig.version = \"8\"\nvirtualHW.version = \"19\"\ndisplayName = \"demo-vm\"\nuuid.bios = \"56 4d 9a 3c 11 22 33 44-55 66 77 88 99 aa bb cc\"\nscsi0.virtualDev = \"lsilogic\"\nscsi0:0.fileName = \"demo.vmdk\"\n",
    )?;
    println!("   demo.vmdk (descriptor), demo-flat.vmdk (data), demo.vmx (VM config)\n");

    println!("# 2. A full image: stock gzip members with a block index inside.");
    sdar(
        &dir,
        &[
            "full",
            "demo.vmdk",
            "--vmx",
            "demo.vmx",
            "-o",
            "demo.full.gz",
        ],
    )?;
    println!("# 3. Verify: every block against its blake3 hash, and the identity.");
    sdar(&dir, &["verify", "demo.full.gz"])?;
    println!("# 4. What the backup knows about the VM.");
    sdar(&dir, &["info", "demo.full.gz"])?;
    println!("# 5. The user owns the data: stock zcat gives back the exact disk.");
    shell(
        &dir,
        "zcat demo.full.gz | cmp - demo-flat.vmdk && echo identical",
    )?;
    println!("# 6. The same with zstd.");
    sdar(
        &dir,
        &[
            "full",
            "demo.vmdk",
            "--vmx",
            "demo.vmx",
            "--codec",
            "zstd",
            "-o",
            "demo.full.zst",
        ],
    )?;
    shell(
        &dir,
        "zstd -dc demo.full.zst | cmp - demo-flat.vmdk && echo identical",
    )?;
    println!("# Done. Every step above is a command you can run yourself.");
    Ok(())
}

fn sdar(dir: &Path, args: &[&str]) -> Result<()> {
    println!("$ sdar {}", args.join(" "));
    let exe = std::env::current_exe().context("cannot find the sdar program")?;
    let status = Command::new(exe).args(args).current_dir(dir).status()?;
    println!();
    if !status.success() {
        bail!("`sdar {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn shell(dir: &Path, line: &str) -> Result<()> {
    let tool = line.split_whitespace().next().unwrap_or("");
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()?
        .status
        .success();
    if !found {
        println!("$ {line}\n(skipped: {tool} is not installed)\n");
        return Ok(());
    }
    println!("$ {line}");
    let status = Command::new("sh")
        .arg("-c")
        .arg(line)
        .current_dir(dir)
        .status()?;
    println!();
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}
