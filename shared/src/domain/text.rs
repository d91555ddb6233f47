//! Text helpers shared by whatever cuts or shows texts: one way to cut a text to a number of
//! characters (or bytes), one way to write a share as a percentage.

/// The first `max` characters of `text` (all of it when shorter). Cuts on a character
/// boundary, never inside a UTF-8 sequence.
pub fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// The longest prefix of `text` that fits in `max` bytes, cut on a character boundary (for
/// limits counted in bytes, such as Customer.io's 1000-byte attribute values).
pub fn truncate_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `part / whole` as a fraction, or 0 for an empty whole.
pub fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// A whole percentage; `<1%` for a small but present part.
pub fn percent(part: u64, whole: u64) -> String {
    let p = share(part, whole) * 100.0;
    if p > 0.0 && p < 1.0 { "<1%".to_owned() } else { format!("{p:.0}%") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_and_never_hide_a_small_part() {
        assert_eq!(percent(1, 3), "33%");
        assert_eq!(percent(1, 1000), "<1%");
        assert_eq!(percent(0, 10), "0%");
        assert_eq!(percent(5, 0), "0%");
    }

    #[test]
    fn texts_are_cut_by_characters() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("hé", 2), "hé");
        assert_eq!(truncate_chars("", 3), "");
        assert_eq!(truncate_chars("abc", 0), "");
    }

    #[test]
    fn texts_are_cut_by_bytes_on_a_character_boundary() {
        assert_eq!(truncate_bytes("héllo", 2), "h", "é is two bytes: never half of it");
        assert_eq!(truncate_bytes("héllo", 3), "hé");
        assert_eq!(truncate_bytes("abc", 10), "abc");
        assert_eq!(truncate_bytes("😀x", 3), "");
    }
}
