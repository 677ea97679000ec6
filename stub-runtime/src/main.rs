//! The restore runtime: the program at the front of every `.sdar` archive.

// musl's malloc returns every block-sized buffer to the kernel on free, which
// made a restore about twice as slow as with glibc's; dlmalloc keeps them.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(sdar_stub::run(std::env::args_os().collect()))
}
