//! The pseudo-terminal driver itself works: a shell prompt is answered, the
//! program sees a terminal of the promised size, and the end is seen.

mod common;

use std::process::Command;
use std::time::Duration;

use common::pty::{strip_ansi, Pty};

const TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn shell_prompt_is_answered_through_a_terminal() {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        r#"printf "name? "; read x; echo "hello $x"; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo tty; stty size"#,
    ]);
    let mut pty = Pty::spawn(cmd);
    pty.expect("name? ", TIMEOUT);
    // Enter as a keyboard sends it; ICRNL hands `read` a "\n".
    pty.send("bob\r");
    // The terminal echoes the keys, with ONLCR's "\r\n" for the line end.
    assert_eq!(pty.expect("\n", TIMEOUT), "bob\r\n");
    pty.expect("hello bob\r\n", TIMEOUT);
    pty.expect("tty\r\n", TIMEOUT);
    pty.expect("30 100", TIMEOUT);
    assert!(pty.wait(TIMEOUT).success());
    assert_eq!(
        strip_ansi(&pty.transcript()),
        "name? bob\nhello bob\ntty\n30 100\n"
    );
}

#[test]
fn strip_ansi_keeps_only_the_text() {
    assert_eq!(
        strip_ansi("\x1b[2J\x1b[1;31mRestore\x1b[0m\r\n> \x1b[?25h"),
        "Restore\n> "
    );
}
