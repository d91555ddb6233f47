//! Run windows: the span of days within which a job does its work once. Windows are whole UTC
//! days counted from Monday 1970-01-05, so a 7-day window is a week from Monday to Sunday and a
//! 1-day window is a UTC day. Every run inside one window finds the same window, and so the same
//! job keys and checkpoints.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::customerio::{MetricsWindow, Resolution, WindowError};

const DAY_SECS: i64 = 86_400;
/// 1970-01-05, the first Monday after the Unix epoch, as days since the epoch.
const FIRST_MONDAY: i64 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunWindow {
    /// Days since the Unix epoch.
    start_day: i64,
    days: u32,
}

impl RunWindow {
    /// The window of `days` days that `now` falls in.
    pub fn containing(now: SystemTime, days: u32) -> Self {
        let days = days.max(1);
        let secs = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        let today = secs.div_euclid(DAY_SECS);
        let start_day = FIRST_MONDAY + (today - FIRST_MONDAY).div_euclid(i64::from(days)) * i64::from(days);
        RunWindow { start_day, days }
    }

    /// `2026-03-02_7d`: the first day and the length. Part of job keys and checkpoint keys.
    pub fn label(&self) -> String {
        format!("{}_{}d", date(self.start_day), self.days)
    }

    pub fn start_date(&self) -> String {
        date(self.start_day)
    }

    pub fn days(&self) -> u32 {
        self.days
    }

    /// The `days` whole days before this window starts, by day: what a campaign-strategy run
    /// ranks. Every run in the window asks for the same, already finished, days.
    pub fn metrics_before(&self, days: u32) -> Result<MetricsWindow, WindowError> {
        let end = self.start_day.saturating_mul(DAY_SECS);
        let start = end.saturating_sub(i64::from(days).saturating_mul(DAY_SECS));
        if start < 0 {
            return Err(WindowError::BeforeEpoch);
        }
        MetricsWindow::new(start as u64, end as u64, Resolution::Days)
    }
}

/// First and last day (inclusive) of a metrics window, as dates, and its length in days.
pub fn metrics_dates(window: &MetricsWindow) -> (String, String, u32) {
    let first = window.start() as i64 / DAY_SECS;
    let end = window.end() as i64 / DAY_SECS;
    (date(first), date(end - 1), (end - first) as u32)
}

/// `YYYY-MM-DD` of a day counted from the epoch.
fn date(day: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(day.max(0) as u64 * DAY_SECS as u64);
    let d = time::OffsetDateTime::from(at).date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-04 (a Wednesday) at 15:00 UTC.
    fn wednesday() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_772_636_400)
    }

    #[test]
    fn weeks_run_monday_to_sunday() {
        let w = RunWindow::containing(wednesday(), 7);
        assert_eq!(w.label(), "2026-03-02_7d");
        let sunday_night = wednesday() + Duration::from_secs(4 * 86_400 + 8 * 3600 + 59 * 60);
        assert_eq!(RunWindow::containing(sunday_night, 7), w, "the same week until Sunday ends");
        let monday = wednesday() + Duration::from_secs(5 * 86_400);
        assert_eq!(RunWindow::containing(monday, 7).label(), "2026-03-09_7d");
    }

    #[test]
    fn a_one_day_window_is_the_utc_day() {
        assert_eq!(RunWindow::containing(wednesday(), 1).label(), "2026-03-04_1d");
        assert_eq!(RunWindow::containing(UNIX_EPOCH, 1).label(), "1970-01-01_1d");
    }

    #[test]
    fn metrics_cover_the_whole_days_before_the_window() {
        let w = RunWindow::containing(wednesday(), 7);
        let m = w.metrics_before(30).unwrap();
        assert_eq!(m.end() as i64 % DAY_SECS, 0);
        assert_eq!(metrics_dates(&m), ("2026-01-31".to_owned(), "2026-03-01".to_owned(), 30));
        assert_eq!(m.resolution(), Resolution::Days);
        assert!(RunWindow::containing(UNIX_EPOCH, 7).metrics_before(30).is_err());
    }
}
