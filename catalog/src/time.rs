//! Dates as the catalog's commands take and show them: UTC, as the
//! creation times in backups and their names are.

use archive_format::civil_from_days;

/// A moment or a whole day given on a command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateArg {
    /// `YYYY-MM-DD`: from its first second to its last.
    Day { start: i64 },
    /// `YYYY-MM-DDTHH:MM[:SS]` (or with a space): that second.
    Moment(i64),
}

impl DateArg {
    /// The first second the argument covers.
    pub fn start(self) -> i64 {
        match self {
            DateArg::Day { start } => start,
            DateArg::Moment(t) => t,
        }
    }

    /// The last second the argument covers.
    pub fn end(self) -> i64 {
        match self {
            DateArg::Day { start } => start + 86_399,
            DateArg::Moment(t) => t,
        }
    }
}

/// Parses `2026-12-01`, `2026-12-01T10:30`, `2026-12-01 10:30:05` (UTC; a
/// trailing `Z` is accepted), or sdar's own stamp `20261201T103005Z`.
pub fn parse_date(s: &str) -> Result<DateArg, String> {
    let bad = || format!("`{s}` is not a date such as 2026-12-01 or 2026-12-01T10:30 (UTC)");
    let t = s.trim().trim_end_matches(['Z', 'z']);
    // sdar's stamp: 20261201T103005
    if t.len() == 15 && t.as_bytes()[8] == b'T' && t[..8].bytes().all(|b| b.is_ascii_digit()) {
        let date = format!("{}-{}-{}", &t[..4], &t[4..6], &t[6..8]);
        let time = format!("{}:{}:{}", &t[9..11], &t[11..13], &t[13..15]);
        return parse_date(&format!("{date}T{time}"));
    }
    let (date, time) = match t.find(['T', 't', ' ']) {
        Some(i) => (&t[..i], Some(t[i + 1..].trim())),
        None => (t, None),
    };
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let num = |p: &str, lo: i64, hi: i64| -> Result<i64, String> {
        if p.is_empty() || p.len() > 4 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let v: i64 = p.parse().map_err(|_| bad())?;
        if v < lo || v > hi {
            return Err(bad());
        }
        Ok(v)
    };
    let (y, m, d) = (num(y, 1970, 9999)?, num(m, 1, 12)?, num(d, 1, 31)?);
    if d > days_in_month(y, m) {
        return Err(bad());
    }
    let day = days_from_civil(y, m, d) * 86_400;
    let Some(time) = time else {
        return Ok(DateArg::Day { start: day });
    };
    let mut hms = time.split(':');
    let h = num(hms.next().ok_or_else(bad)?, 0, 23)?;
    let mi = num(hms.next().ok_or_else(bad)?, 0, 59)?;
    let sec = match hms.next() {
        Some(p) => num(p, 0, 59)?,
        None => 0,
    };
    if hms.next().is_some() {
        return Err(bad());
    }
    Ok(DateArg::Moment(day + h * 3600 + mi * 60 + sec))
}

/// `2026-12-01 10:30:05` (UTC), as lists show a creation time.
pub fn show(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `2026-12-01`, the day of a moment (UTC).
pub fn show_day(unix: i64) -> String {
    show(unix)[..10].to_string()
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_date("1970-01-01"), Ok(DateArg::Day { start: 0 }));
        let t = parse_date("2026-12-01T10:30:05").unwrap();
        assert_eq!(show(t.start()), "2026-12-01 10:30:05");
        assert_eq!(parse_date("20261201T103005Z"), Ok(t));
        assert_eq!(parse_date("2026-12-01 10:30:05"), Ok(t));
        assert_eq!(
            parse_date("2024-02-29").unwrap().end() - parse_date("2024-02-29").unwrap().start(),
            86_399
        );
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "yesterday",
            "2026-12-01T25:00",
            "",
            "2026-1-1-1",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        assert_eq!(show_day(1_764_547_200), "2025-12-01");
    }
}
