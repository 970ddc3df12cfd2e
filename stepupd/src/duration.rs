//! Human durations in config files: `30s`, `15m`, `8h`, `1d`, `1h30m`.
//!
//! Units are required (a bare `900` is ambiguous and rejected) and the total must be
//! positive; the error says what was wrong so `--check-config` can point at it.

use std::time::Duration;

/// Parses a duration such as `90s`, `15m`, `8h`, `2d` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; write e.g. \"15m\", \"8h\" or \"30s\"".into());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {ch:?} (use s, m, h or d)"
                ));
            }
        };
        if digits.is_empty() {
            return Err(format!(
                "invalid duration {text:?}: unit {ch:?} has no number"
            ));
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!(
            "invalid duration {text:?}: number without unit (write e.g. \"{digits}s\")"
        ));
    }
    if total == 0 {
        return Err(format!(
            "invalid duration {text:?}: must be longer than zero"
        ));
    }
    if total > 366 * 86_400 {
        return Err(format!("invalid duration {text:?}: longer than a year"));
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_single_and_compound_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("8h"), Ok(Duration::from_secs(8 * 3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn rejects_bare_numbers_unknown_units_and_zero() {
        assert!(parse_duration("900").unwrap_err().contains("without unit"));
        assert!(parse_duration("5y").unwrap_err().contains("unknown unit"));
        assert!(
            parse_duration("0s")
                .unwrap_err()
                .contains("longer than zero")
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("m").unwrap_err().contains("no number"));
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("400d").unwrap_err().contains("year"));
    }

    #[test]
    fn formats_back_to_parseable_text() {
        for s in ["30s", "15m", "8h", "1d", "1h30m", "2d3h4m5s"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }
}
