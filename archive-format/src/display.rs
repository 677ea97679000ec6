//! Text from a backup's metadata (VM name, disk name, .vmx entries) is data
//! written by whoever made the backup: before it reaches a terminal, or is
//! offered as a file name, control characters, escape sequences and
//! bidirectional overrides are made visible and harmless.

use std::borrow::Cow;
use std::fmt::Write;

/// True for characters that must never reach a terminal as they are: C0 and
/// C1 controls (ESC starts every escape sequence), DEL, and the Unicode
/// bidirectional embeddings, overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069), which can make text read backwards, plus the marks
/// U+200E, U+200F and U+061C.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        )
}

/// `text` with every unsafe character shown as an escape: `\n`, `\t`, `\r`,
/// `\e` for ESC, `\\` for a backslash, and `\u{XXXX}` for the rest. Safe
/// text comes back borrowed, unchanged.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe_char(c) || c == '\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            c if is_unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:04X}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A message of several lines, each shown as [`escape`] shows text: the
/// line breaks stay, anything unsafe within a line (a name from a backup's
/// metadata in an error) is escaped.
pub fn escape_lines(text: &str) -> String {
    text.split('\n').map(escape).collect::<Vec<_>>().join("\n")
}

/// Bytes that may not be UTF-8, shown as [`escape`] shows text (invalid
/// sequences as U+FFFD).
pub fn escape_bytes(bytes: &[u8]) -> String {
    escape(&String::from_utf8_lossy(bytes)).into_owned()
}

/// A file name made from untrusted text: unsafe characters and `/` become
/// `_`, a leading `.` is dropped (no hidden or `..` names), and the result
/// is cut (on a character boundary, by [`cut_to`]) to `max_bytes`. May be
/// empty.
pub fn safe_file_name(text: &str, max_bytes: usize) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if is_unsafe_char(c) || c == '/' || c == '\0' {
                '_'
            } else {
                c
            }
        })
        .collect();
    cut_to(&mapped, max_bytes)
        .trim_start_matches('.')
        .to_string()
}

/// The longest start of `s` of at most `max` bytes that ends on a
/// character boundary.
pub fn cut_to(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` as one shell word, for a command shown to the user to copy: as it
/// is when it holds only safe characters, else in single quotes.
pub fn shell_word(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@%=".contains(&b));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("a/b.full.gz"), "a/b.full.gz");
        assert_eq!(shell_word("my disk"), "'my disk'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn cuts_on_character_boundaries() {
        assert_eq!(cut_to("héllo", 2), "h");
        assert_eq!(cut_to("héllo", 3), "hé");
        assert_eq!(cut_to("abc", 10), "abc");
    }

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(escape("CRM web 01 café"), Cow::Borrowed(_)));
    }

    #[test]
    fn controls_escapes_and_bidi_are_shown() {
        assert_eq!(escape("a\x1b[31mb"), "a\\e[31mb");
        assert_eq!(escape("x\ny\r\t"), "x\\ny\\r\\t");
        assert_eq!(escape("evil\u{202E}gpj.exe"), "evil\\u{202E}gpj.exe");
        assert_eq!(escape("\u{2066}\u{2069}"), "\\u{2066}\\u{2069}");
        assert_eq!(escape("\u{9b}2J"), "\\u{009B}2J");
        assert_eq!(escape("a\\nb"), "a\\\\nb");
    }

    #[test]
    fn lines_keep_their_breaks() {
        assert_eq!(escape_lines("a\x1b[2J\nb\u{202E}c"), "a\\e[2J\nb\\u{202E}c");
    }

    #[test]
    fn file_names_hold_no_unsafe_character() {
        assert_eq!(safe_file_name("..\u{202E}a/b\x1bc", 255), "_a_b_c");
        assert_eq!(safe_file_name("ééé", 5), "éé");
        assert_eq!(safe_file_name("...", 255), "");
    }
}
