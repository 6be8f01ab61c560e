//! Time-window conditions: `HH:mm` bounds and days of the week, read in a
//! named time zone (the IANA database is compiled into the plugin).

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A compiled time window.
#[derive(Debug, Clone)]
pub struct Window {
    /// Minutes after midnight, inclusive.
    after: Option<u16>,
    /// Minutes after midnight, exclusive.
    before: Option<u16>,
    /// Bit `d` set: day `d` (0 = Sunday) is in; 0: every day.
    days: u8,
    zone: TimeZone,
}

impl Window {
    /// Compiles a window; the error names the field.
    pub fn new(
        after: Option<&str>,
        before: Option<&str>,
        days: Option<&[u8]>,
        zone: Option<&str>,
    ) -> Result<Self, String> {
        let after = after
            .map(|t| minutes(t).map_err(|e| format!("`after`: {e}")))
            .transpose()?;
        let before = before
            .map(|t| minutes(t).map_err(|e| format!("`before`: {e}")))
            .transpose()?;
        let mut mask = 0u8;
        for &d in days.unwrap_or_default() {
            if d > 6 {
                return Err(format!(
                    "`dayOfWeek`: {d} is not a day: use 0 (Sunday) to 6 (Saturday)"
                ));
            }
            mask |= 1 << d;
        }
        if days.is_some_and(<[u8]>::is_empty) {
            return Err(
                "`dayOfWeek`: an empty list matches no day: leave it out for every day".into(),
            );
        }
        let zone = match zone {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|_| {
                format!(
                    "`timezone`: `{name}` is not an IANA time zone (e.g. `Europe/Berlin`, `UTC`)"
                )
            })?,
        };
        Ok(Self {
            after,
            before,
            days: mask,
            zone,
        })
    }

    /// Whether `now` falls in the window.
    pub fn contains(&self, now: Timestamp) -> bool {
        let local = now.to_zoned(self.zone.clone());
        let day = local.weekday().to_sunday_zero_offset();
        if self.days != 0 && self.days & (1 << day) == 0 {
            return false;
        }
        let m = u16::try_from(local.hour()).unwrap_or(0) * 60
            + u16::try_from(local.minute()).unwrap_or(0);
        match (self.after, self.before) {
            (None, None) => true,
            (Some(a), None) => m >= a,
            (None, Some(b)) => m < b,
            (Some(a), Some(b)) if a <= b => m >= a && m < b,
            // Spans midnight: 22:00 to 06:00.
            (Some(a), Some(b)) => m >= a || m < b,
        }
    }
}

/// `HH:mm` (24-hour) as minutes after midnight.
fn minutes(text: &str) -> Result<u16, String> {
    let bad = || format!("`{text}` is not a time of day: write `HH:mm`, 00:00 to 23:59");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}
