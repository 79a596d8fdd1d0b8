//! `--rotation-period` values (`30d`, `12h`, `90m`, `1d12h`) and ages for humans.

use super::ComplianceError;
use std::time::Duration;

/// Parses one or more `<number><unit>` groups, unit `d`, `h`, `m` or `s` (a day is 24 h).
/// Zero is refused: every credential would be stale.
pub fn parse_period(input: &str) -> Result<Duration, ComplianceError> {
    let fail = |why: &str| ComplianceError::Period {
        input: input.to_owned(),
        why: why.to_owned(),
    };
    let mut rest = input.trim();
    if rest.is_empty() {
        return Err(fail("empty"));
    }
    let mut secs: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(fail("each unit needs a number before it"));
        }
        let (number, after) = rest.split_at(digits);
        let number: u64 = number.parse().map_err(|_| fail("number too large"))?;
        let mut chars = after.chars();
        let unit_secs = match chars.next() {
            Some('d') => 86_400,
            Some('h') => 3_600,
            Some('m') => 60,
            Some('s') => 1,
            Some(_) => return Err(fail("units are d, h, m or s")),
            None => return Err(fail("a unit (d, h, m or s) must follow the number")),
        };
        secs = number
            .checked_mul(unit_secs)
            .and_then(|s| secs.checked_add(s))
            .ok_or_else(|| fail("too long"))?;
        rest = chars.as_str();
    }
    if secs == 0 {
        return Err(fail("must be longer than zero"));
    }
    Ok(Duration::from_secs(secs))
}

/// `40d 2h`, `3h 5m`, `12m`, `30s`: the two largest units, enough to judge an age by.
pub fn format_age(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let s = secs.unsigned_abs();
    let (d, h, m) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sign}{s}s"),
        (0, 0, m) => format!("{sign}{m}m"),
        (0, h, m) => format!("{sign}{h}h {m}m"),
        (d, h, _) => format!("{sign}{d}d {h}h"),
    }
}

/// The period as the CLI would write it (`30d`, `12h`, `1d 12h`).
pub fn format_period(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m"), (s, "s")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    match parts.is_empty() {
        true => "0s".to_owned(),
        false => parts.join(""),
    }
}
