//! Time as the store writes it: epoch milliseconds for leases, epoch seconds for the TTL
//! attribute (DynamoDB's format), RFC 3339 for humans reading the table.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn epoch_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| epoch_secs(t).to_string())
}

/// UTC with milliseconds in a fixed width (`2026-11-28T10:15:30.123Z`), so that text order
/// is time order: the sort key of the listing index.
pub fn sortable_millis(t: SystemTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::from(t).format(&format).unwrap_or_else(|_| "0000-00-00T00:00:00.000Z".to_owned())
}

/// The UTC calendar day, `YYYY-MM-DD`: the unit of daily caps.
pub fn utc_day(t: SystemTime) -> String {
    let d = time::OffsetDateTime::from(t).date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn formats() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(epoch_millis(t), 1_700_000_000_123);
        assert_eq!(epoch_secs(t), 1_700_000_000);
        assert_eq!(utc_day(t), "2023-11-14");
        assert!(rfc3339(t).starts_with("2023-11-14T22:13:20"), "{}", rfc3339(t));
        assert_eq!(sortable_millis(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(sortable_millis(UNIX_EPOCH + Duration::from_secs(1_700_000_000)), "2023-11-14T22:13:20.000Z");
    }
}
