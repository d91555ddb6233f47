//! `--since 2h`: a time window back from now, as `90s`, `30m`, `2h`, `1d` or `1w`.

use std::time::Duration;

/// Parses `2h` into a duration; the error says what is accepted.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration: use e.g. 30m, 2h, 1d or 1w"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("`{text}`: the unit must be s, m, h, d or w (e.g. 2h)")),
    };
    n.checked_mul(secs).map(Duration::from_secs).ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_units() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("1w"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "h", "2", "2 hours", "-1h", "1y"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
