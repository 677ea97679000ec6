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

    println!("# 2. A full image: stock gzip members with a block index inside,");
    println!("#    and beside it demo.sdar, the (empty) delta that restores it.");
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
    println!("# 4. The user owns the data: stock zcat gives back the exact disk.");
    shell(
        &dir,
        "zcat demo.full.gz | cmp - demo-flat.vmdk && echo identical",
    )?;
    println!("# 5. The same with zstd.");
    sdar(
        &dir,
        &[
            "full",
            "demo.vmdk",
            "--codec",
            "zstd",
            "-o",
            "demo-zstd.full.zst",
            "-q",
        ],
    )?;
    shell(
        &dir,
        "zstd -dc demo-zstd.full.zst | cmp - demo-flat.vmdk && echo identical",
    )?;
    let changed = change_disk(&dir.join("demo-flat.vmdk"), size)?;
    println!("# 6. The VM runs on: {changed} scattered 4 KiB writes and one 1 MiB rewrite.\n");
    println!("# 7. A delta: only what changed, as an executable that restores itself.");
    sdar(
        &dir,
        &[
            "delta",
            "demo.vmdk",
            "--full",
            "demo.full.gz",
            "--vmx",
            "demo.vmx",
            "-o",
            "demo-1.sdar",
        ],
    )?;
    println!("# 8. What the delta knows.");
    run_program(&dir, "./demo-1.sdar", &["info"])?;
    println!("# 9. Disaster: restore from the delta alone. It finds its full beside it by");
    println!("#    identity, proves every block, and writes a preallocated VMDK.");
    std::fs::create_dir_all(dir.join("restored"))?;
    run_program(
        &dir,
        "./demo-1.sdar",
        &["restore", "--to", "restored/demo.vmdk"],
    )?;
    println!("# 10. The restored disk is the changed disk, byte for byte.");
    shell(
        &dir,
        "qemu-img compare -f vmdk -F vmdk restored/demo.vmdk demo.vmdk",
    )?;
    shell(
        &dir,
        "cmp restored/demo-flat.vmdk demo-flat.vmdk && echo identical",
    )?;
    println!("# Done. Every step above is a command you can run yourself.");
    Ok(())
}

fn sdar(dir: &Path, args: &[&str]) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the sdar program")?;
    println!("$ sdar {}", args.join(" "));
    exec(
        dir,
        exe.as_os_str(),
        args,
        &format!("sdar {}", args.join(" ")),
    )
}

fn run_program(dir: &Path, program: &str, args: &[&str]) -> Result<()> {
    println!("$ {program} {}", args.join(" "));
    exec(
        dir,
        program.as_ref(),
        args,
        &format!("{program} {}", args.join(" ")),
    )
}

fn exec(dir: &Path, program: &std::ffi::OsStr, args: &[&str], shown: &str) -> Result<()> {
    let status = Command::new(program).args(args).current_dir(dir).status()?;
    println!();
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Writes a deterministic pattern over some pages of the disk, as a VM
/// would: scattered single pages and one longer run. Returns the page count.
fn change_disk(flat: &Path, size: u64) -> Result<usize> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(flat)?;
    let pages = (size / 4096).max(1);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let count = 24.min(pages as usize);
    for _ in 0..count {
        let page = next() % pages;
        let data: Vec<u8> = (0..4096).map(|_| next() as u8).collect();
        f.write_all_at(&data, page * 4096)?;
    }
    if size >= 4 << 20 {
        let run: Vec<u8> = (0..1 << 20)
            .map(|i| b"the VM rewrote this region\n"[i % 27])
            .collect();
        f.write_all_at(&run, size / 2)?;
    }
    f.sync_all()?;
    Ok(count)
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
