//! Writing results: `<suite>-<UTC timestamp>.json` plus `<suite>-latest.json` in the results
//! directory, and the UTC timestamps they are named by.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use serde::Serialize;

/// A UTC time, formatted for results files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl UtcTime {
    /// The current time.
    pub fn now() -> Self {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        Self::from_unix(i64::try_from(seconds).unwrap_or(i64::MAX))
    }

    /// The UTC time `seconds` after the Unix epoch (Howard Hinnant's `civil_from_days`).
    pub fn from_unix(seconds: i64) -> Self {
        let days = seconds.div_euclid(86_400);
        let in_day = seconds.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z.rem_euclid(146_097);
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let mp = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        // Every narrowing below is of a value already known to be small and non-negative.
        let small = |value: i64| u32::try_from(value).unwrap_or(0);
        Self {
            year,
            month: small(month),
            day: small(day),
            hour: small(in_day / 3600),
            minute: small(in_day % 3600 / 60),
            second: small(in_day % 60),
        }
    }

    /// RFC 3339, e.g. `2025-11-27T17:20:05Z`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// Compact and safe in file names, e.g. `20251127T172005Z`.
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Writes `report` as pretty JSON to `<dir>/<suite>-<stamp>.json` and `<dir>/<suite>-latest.json`
/// (creating `dir`), and returns both paths.
pub fn write(
    dir: &Path,
    suite: &str,
    stamp: UtcTime,
    report: &impl Serialize,
) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("create results directory {}", dir.display()))?;
    let mut json = serde_json::to_vec_pretty(report).context("serialise results")?;
    json.push(b'\n');
    let stamped = dir.join(format!("{suite}-{}.json", stamp.compact()));
    let latest = dir.join(format!("{suite}-latest.json"));
    for path in [&stamped, &latest] {
        // Write beside and rename, so a reader never sees half a file.
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, &json)
            .with_context(|| format!("write results to {}", partial.display()))?;
        std::fs::rename(&partial, path)
            .with_context(|| format!("move results into {}", path.display()))?;
    }
    Ok((stamped, latest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(unix: i64, expect: &str) {
        assert_eq!(UtcTime::from_unix(unix).rfc3339(), expect, "{unix}");
    }

    #[test]
    fn utc_times() {
        check(0, "1970-01-01T00:00:00Z");
        check(951_782_400, "2000-02-29T00:00:00Z");
        check(1_764_264_005, "2025-11-27T17:20:05Z");
        check(4_107_542_399, "2100-02-28T23:59:59Z");
        check(-1, "1969-12-31T23:59:59Z");
        assert_eq!(
            UtcTime::from_unix(1_764_264_005).compact(),
            "20251127T172005Z"
        );
    }

    #[test]
    fn writes_stamped_and_latest() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let (stamped, latest) = write(
            dir.path(),
            "store",
            UtcTime::from_unix(0),
            &serde_json::json!({"ok": true}),
        )?;
        assert!(stamped.ends_with("store-19700101T000000Z.json"));
        assert_eq!(std::fs::read(&stamped)?, std::fs::read(&latest)?);
        Ok(())
    }
}
