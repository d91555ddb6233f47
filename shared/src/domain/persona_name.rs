use std::fmt;

use super::{JobKey, truncate_chars};

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

    /// The name of the persona job `job` creates: the rendered text, cut to fit, then a tag
    /// derived from the job's key (` #` and 8 hex digits). Two jobs never share a name, so
    /// Mavera's "this name exists" answer can only mean that this job's own earlier call went
    /// through (a call repeated after a crash or a timeout), never that another user got there
    /// first and this one silently gets no persona.
    pub fn for_job(text: &str, job: &JobKey) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(job.as_str().as_bytes());
        let tag = format!(" #{}", hex::encode(&digest[..4]));
        let text = truncate_chars(text.trim_end(), Self::MAX_CHARS - tag.chars().count());
        PersonaName(format!("{}{tag}", text.trim_end()))
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
    fn each_job_names_its_persona_apart() {
        let one = JobKey::from_stored("segment#m1#segment-trial-started");
        let two = JobKey::from_stored("segment#m2#segment-trial-started");
        let name = PersonaName::for_job("Segment RT: Trial User — usr_k8m2n", &one);
        assert!(name.as_str().starts_with("Segment RT: Trial User — usr_k8m2n #"), "{name}");
        assert_eq!(name.as_str().len(), "Segment RT: Trial User — usr_k8m2n #".len() + 8);
        assert_eq!(name, PersonaName::for_job("Segment RT: Trial User — usr_k8m2n", &one), "stable per job");
        assert_ne!(name, PersonaName::for_job("Segment RT: Trial User — usr_k8m2n", &two));
        // Two users whose ids share their first characters, and a name cut to the limit.
        let long = "x".repeat(200);
        let (a, b) = (PersonaName::for_job(&long, &one), PersonaName::for_job(&long, &two));
        assert_eq!(a.as_str().chars().count(), PersonaName::MAX_CHARS);
        assert_ne!(a, b, "the tag survives the cut");
    }

    #[test]
    fn long_names_are_cut_to_mavera_s_limit_by_characters() {
        let long = "é".repeat(PersonaName::MAX_CHARS + 5);
        assert_eq!(PersonaName::new(long).as_str().chars().count(), PersonaName::MAX_CHARS);
        assert_eq!(PersonaName::new("Trial user").as_str(), "Trial user");
    }
}
