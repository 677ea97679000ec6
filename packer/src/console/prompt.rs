//! Questions and long lists, asked as the archive's own menu asks them:
//! `question [default]: `, Enter takes the default, a number picks.
//! Everywhere `q` leaves the console, `0` or `..` goes back a step, and the
//! end of input (Ctrl-D) leaves too.

use archive_format::display::escape;
use std::io::{BufRead, Write};

/// Lines of a list shown at once.
pub const PAGE: usize = 20;

/// What a prompt got.
pub enum Answer {
    Text(String),
    /// `0` or `..`: the step before.
    Back,
    /// `q`, or the end of input: leave the console.
    Quit,
}

/// Prints `question [default]: ` and reads a line; Enter gives the default
/// (exactly as given: only what is shown of it is escaped).
pub fn ask(question: &str, default: &str) -> Answer {
    if default.is_empty() {
        print!("{question}: ");
    } else {
        print!("{question} [{}]: ", escape(default));
    }
    let _ = std::io::stdout().flush();
    let mut line = Vec::new();
    match std::io::stdin().lock().read_until(b'\n', &mut line) {
        Ok(0) | Err(_) => {
            println!();
            Answer::Quit
        }
        Ok(_) => {
            let text = String::from_utf8_lossy(&line);
            match text.trim() {
                "" if default.is_empty() => Answer::Text(String::new()),
                "" => word(default),
                s => word(s),
            }
        }
    }
}

fn word(text: &str) -> Answer {
    match text {
        "q" | "Q" => Answer::Quit,
        "0" | ".." => Answer::Back,
        s => Answer::Text(s.to_string()),
    }
}

/// A yes/no question; Enter gives `default`. `Err` carries `0` (Back) or
/// `q` (Quit).
pub fn confirm(question: &str, default: bool) -> Result<bool, Answer> {
    let hint = if default { "Y/n" } else { "y/N" };
    loop {
        match ask(&format!("{question} ({hint})"), "") {
            Answer::Text(t) if t.is_empty() => return Ok(default),
            Answer::Text(t) if t.eq_ignore_ascii_case("y") || t.eq_ignore_ascii_case("yes") => {
                return Ok(true)
            }
            Answer::Text(t) if t.eq_ignore_ascii_case("n") || t.eq_ignore_ascii_case("no") => {
                return Ok(false)
            }
            Answer::Text(_) => println!("Please answer y or n."),
            other => return Err(other),
        }
    }
}

/// A numbered list to pick from: a page of [`PAGE`] lines at a time, with
/// keys to page and to jump to the top and the bottom, and a filter (any
/// other text typed keeps only the lines that contain it).
pub struct List<'a> {
    /// What an item is, for messages: "backup".
    pub what: &'a str,
    /// The question: "Choose the backup".
    pub question: &'a str,
    /// A line over the items (column names), already safe to print.
    pub header: Option<String>,
    /// One line per item, already escaped.
    pub lines: Vec<String>,
    /// The item Enter picks.
    pub default: Option<usize>,
    /// Or the extra Enter picks.
    pub default_key: Option<&'a str>,
    /// Typed text narrows the list (long lists); else only numbers and
    /// extras are answers (short menus).
    pub filter: bool,
    /// Further choices under the items, by key: `("a", "all dates")`.
    pub extras: Vec<(&'a str, String)>,
}

/// What was picked from a [`List`].
pub enum Pick {
    /// The item at this index of [`List::lines`].
    Item(usize),
    /// One of [`List::extras`], by its key.
    Extra,
    Back,
    Quit,
}

/// A key that moves through the pages of a list. Home, End, PgUp and PgDn
/// arrive as the escape sequences terminals send for them (followed by
/// Enter, as every answer is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Move {
    Top,
    Bottom,
    Next,
    Previous,
}

fn moving(text: &str) -> Option<Move> {
    match text {
        "t" | "T" | "\x1b[H" | "\x1b[1~" | "\x1b[7~" | "\x1bOH" => Some(Move::Top),
        "b" | "B" | "\x1b[F" | "\x1b[4~" | "\x1b[8~" | "\x1bOF" => Some(Move::Bottom),
        "n" | "N" | "\x1b[6~" => Some(Move::Next),
        "p" | "P" | "\x1b[5~" => Some(Move::Previous),
        _ => None,
    }
}

impl List<'_> {
    /// Shows the list and asks until an item, an extra, `0` or `q` is given.
    pub fn choose(&self) -> Pick {
        let mut filter = String::new();
        let mut page = self.default.map_or(0, |d| d / PAGE);
        loop {
            let needle = filter.to_lowercase();
            let shown: Vec<usize> = (0..self.lines.len())
                .filter(|&i| needle.is_empty() || self.lines[i].to_lowercase().contains(&needle))
                .collect();
            let pages = shown.len().div_ceil(PAGE).max(1);
            page = page.min(pages - 1);
            self.print_page(&shown, page, pages, &filter);
            let at = self
                .default
                .and_then(|d| shown.iter().position(|&i| i == d));
            let default = match (self.default_key, at) {
                (Some(key), _) => key.to_string(),
                (None, Some(at)) => (at + 1).to_string(),
                (None, None) if !shown.is_empty() => "1".to_string(),
                (None, None) => String::new(),
            };
            let text = match ask(self.question, &default) {
                Answer::Text(t) => t,
                Answer::Back => return Pick::Back,
                Answer::Quit => return Pick::Quit,
            };
            if self.extras.iter().any(|(k, _)| *k == text) {
                return Pick::Extra;
            }
            if let Ok(n) = text.parse::<usize>() {
                match n.checked_sub(1).and_then(|at| shown.get(at)) {
                    Some(&i) => return Pick::Item(i),
                    None => {
                        println!("There is no {} numbered {n}.", self.what);
                        continue;
                    }
                }
            }
            match moving(&text) {
                Some(Move::Top) => page = 0,
                Some(Move::Bottom) => page = pages - 1,
                Some(Move::Next) if page + 1 < pages => page += 1,
                Some(Move::Next) => println!("This is the last page."),
                Some(Move::Previous) if page > 0 => page -= 1,
                Some(Move::Previous) => println!("This is the first page."),
                None if text.is_empty() => {}
                None if !self.filter => println!("Please choose a number from the list."),
                None => {
                    filter = text.strip_prefix('/').unwrap_or(&text).to_string();
                    page = 0;
                }
            }
        }
    }

    fn print_page(&self, shown: &[usize], page: usize, pages: usize, filter: &str) {
        println!();
        if let Some(h) = &self.header {
            println!("       {h}");
        }
        let first = page * PAGE;
        for (at, &i) in shown.iter().enumerate().skip(first).take(PAGE) {
            println!("  {:>3}) {}", at + 1, self.lines[i]);
        }
        if shown.is_empty() {
            println!("       (no {} matches \"{}\")", self.what, escape(filter));
        }
        for (key, label) in &self.extras {
            println!("  {key:>3}) {label}");
        }
        if pages > 1 {
            println!(
                "  Page {} of {pages} ({}-{} of {}): n/p or PgDn/PgUp for the next or previous \
                 page, t/b or Home/End for the top or the bottom.",
                page + 1,
                first + 1,
                (first + PAGE).min(shown.len()),
                shown.len()
            );
        }
        if !self.filter {
        } else if filter.is_empty() {
            println!("  Type text to narrow the list; 0 goes back, q quits.");
        } else {
            println!(
                "  Showing the {} lines with \"{}\" (/ shows them all); 0 goes back, q quits.",
                shown.len(),
                escape(filter)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_move_through_pages() {
        assert_eq!(moving("t"), Some(Move::Top));
        assert_eq!(moving("\x1b[1~"), Some(Move::Top));
        assert_eq!(moving("\x1b[F"), Some(Move::Bottom));
        assert_eq!(moving("\x1b[6~"), Some(Move::Next));
        assert_eq!(moving("\x1b[5~"), Some(Move::Previous));
        assert_eq!(moving("tb"), None);
    }
}
