//! Durations and sizes as written in config files and on the command line.
//!
//! Durations: a number means seconds; a string is a number with a unit,
//! `ms`, `s`, `m`, `h` or `d` (`500ms`, `30s`, `5m`). Sizes: a number means
//! bytes; a string is a number with `b`, `kb`, `mb` or `gb` (1024-based,
//! decimals allowed: `1.5mb`). Both reject negatives, NaN and overflow.

use std::time::Duration;

/// Longest duration accepted anywhere (a year), so arithmetic never overflows.
const MAX_DURATION_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// Parses a duration string.
///
/// ```
/// use std::time::Duration;
/// use buntime::config::parse_duration;
/// assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
/// assert!(parse_duration("5 parsecs").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (value, unit) = split_number(text)
        .ok_or_else(|| format!("`{text}` is not a duration (write e.g. `500ms`, `30s`, `5m`)"))?;
    let factor = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{text}` (use ms, s, m, h or d)"
            ));
        }
    };
    duration_from_secs(value * factor)
        .ok_or_else(|| format!("`{text}` is out of range (0 to 365d)"))
}

/// A duration from a number of seconds (as JSON numbers are read).
pub fn duration_from_secs(secs: f64) -> Option<Duration> {
    (secs.is_finite() && (0.0..=MAX_DURATION_SECS).contains(&secs))
        .then(|| Duration::from_secs_f64(secs))
}

/// Parses a size string into bytes.
///
/// ```
/// use buntime::config::parse_size;
/// assert_eq!(parse_size("10mb"), Ok(10 << 20));
/// assert_eq!(parse_size("1.5kb"), Ok(1536));
/// assert_eq!(parse_size("42"), Ok(42));
/// ```
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (value, unit) = split_number(text)
        .ok_or_else(|| format!("`{text}` is not a size (write e.g. `512kb`, `10mb`)"))?;
    let factor: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1024.0,
        "mb" | "m" => 1024.0 * 1024.0,
        "gb" | "g" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}` (use b, kb, mb or gb)"
            ));
        }
    };
    let bytes = value * factor;
    if !bytes.is_finite() || bytes < 0.0 || bytes > (1u64 << 50) as f64 {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(bytes.round() as u64)
}

fn split_number(text: &str) -> Option<(f64, &str)> {
    let t = text.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let value: f64 = t[..end].parse().ok()?;
    Some((value, t[end..].trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("500ms", Duration::from_millis(500)),
            ("2s", Duration::from_secs(2)),
            ("3", Duration::from_secs(3)),
            ("1.5", Duration::from_millis(1500)),
            ("1m", Duration::from_secs(60)),
            ("2h", Duration::from_secs(7200)),
            ("1d", Duration::from_secs(86400)),
            (" 10 s ", Duration::from_secs(10)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in [
            "",
            "soon",
            "5y",
            "-1s",
            "1e400",
            "99999999999999999999d",
            "1.2.3s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1b"), Ok(1));
        assert_eq!(parse_size("1KB"), Ok(1024));
        assert_eq!(parse_size("64mb"), Ok(64 << 20));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        for bad in ["", "lots", "10tb", "-5mb", "99999999999gb"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
