use std::fmt;

use super::truncate_chars;

/// A persona's name as Mavera accepts it: at most [`PersonaName::MAX_CHARS`] characters.
/// Names are rendered from templates and event fields, so a longer text is cut rather than
/// refused: the persona is still worth creating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonaName(String);

impl PersonaName {
    /// Mavera rejects persona names over 100 characters.
    pub const MAX_CHARS: usize = 100;

    /// The name, cut to [`PersonaName::MAX_CHARS`] characters.
    pub fn new(text: impl Into<String>) -> Self {
        let mut name = text.into();
        let keep = truncate_chars(&name, Self::MAX_CHARS).len();
        name.truncate(keep);
        PersonaName(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for PersonaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_to_mavera_s_limit_by_characters() {
        let long = "é".repeat(PersonaName::MAX_CHARS + 5);
        assert_eq!(PersonaName::new(long).as_str().chars().count(), PersonaName::MAX_CHARS);
        assert_eq!(PersonaName::new("Trial user").as_str(), "Trial user");
    }
}
