//! The restore runtime: the program at the front of every `.sdar` archive.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(sdar_stub::run(std::env::args_os().collect()))
}
