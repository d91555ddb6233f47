//! Which verifier checks which sender's webhooks: one per source, or none when the source is
//! off (no rule uses it and no secret is set). They are built from the signing secrets by
//! `Verifiers::from_vars`, with the other settings in `config`.

use std::time::SystemTime;

use super::{CustomerIoVerifier, SegmentVerifier, SignatureCoverage, VerifyError};
use crate::domain::Source;

/// The webhook verifiers, one per source that is on.
#[derive(Debug, Clone, Default)]
pub struct Verifiers {
    pub segment: Option<SegmentVerifier>,
    pub customerio: Option<CustomerIoVerifier>,
}

/// Why a request was refused before its body was read.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Refused {
    /// The source is off: no verifier for it.
    #[error("no signing secret is configured for {0}")]
    SourceOff(Source),
    #[error(transparent)]
    Signature(#[from] VerifyError),
}

impl Verifiers {
    /// Checks `source`'s signature on the raw request; how much of the body it covers.
    pub fn verify(
        &self,
        source: Source,
        headers: &http::HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<SignatureCoverage, Refused> {
        match source {
            Source::Segment => {
                let verifier = self.segment.as_ref().ok_or(Refused::SourceOff(source))?;
                Ok(verifier.verify(headers, body)?)
            }
            Source::CustomerIo => {
                let verifier = self.customerio.as_ref().ok_or(Refused::SourceOff(source))?;
                verifier.verify(headers, body, now)?;
                Ok(SignatureCoverage::WholeBody)
            }
        }
    }
}
