//! Values that have been checked at the edge. Each is built only by `parse` (or a
//! constructor that validates), so code past the HTTP handler never holds an unchecked one.

mod event;
mod event_id;
mod job_key;
mod persona_name;
mod rank_by;
mod rule_name;
mod source;
mod text;

pub use event::{Event, FieldPath, FieldPathError, LookedUp, lookup_in};
pub use event_id::{EventId, EventIdError};
pub use job_key::JobKey;
pub use persona_name::PersonaName;
pub use rank_by::RankBy;
pub use rule_name::{RuleName, RuleNameError};
pub use source::{Source, UnknownSource};
pub use text::{percent, share, truncate_bytes, truncate_chars};
