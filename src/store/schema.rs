//! The store's schema version and the one ordered chain of migrations that
//! brings an older store up to it, shared by the embedded store and MongoDB.
//!
//! Both stores record the version they were last migrated to (embedded: the
//! `schema_version` entry of the `meta` table; MongoDB: the `meta` document
//! `{_id: "schema", version}`). A store without it was written by a release up
//! to 0.1.0 and is version 1. Opening a store runs every step above its
//! version, in order, then records the new version; a store from a newer
//! release (a version above [`CURRENT`]) is refused, never guessed at.
//!
//! **Adding a step** (later issues do): add a variant to [`Step`], append it to
//! [`STEPS`] with the next version number, bump [`CURRENT`], and implement it
//! in both stores (`embedded::migrations::apply` and `MongoStore::migrate_step`
//! match on [`Step`] exhaustively, so a missing implementation does not
//! compile). Each step must be safe to run again after a crash half-way: the
//! embedded store runs all steps in one write transaction, MongoDB runs each
//! step as idempotent single-document writes and records the version only
//! after the step finished. Describe the step in [`Step::what`] and test it
//! against a store written before it (`test/fixtures/store/`).
use super::{Result, StoreError};

/// The schema version this release reads and writes.
pub const CURRENT: u64 = 3;

/// The version of a store that carries none (written by releases up to 0.1.0).
pub const UNVERSIONED: u64 = 1;

/// One migration step; each store implements every variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// 1 → 2: keys name their Drone server (see [`super::build_key`]).
    NamespacedKeys,
    /// 2 → 3: the message map is keyed by (key, destination).
    MessagesPerDestination,
}

impl Step {
    /// The version a store has after this step.
    pub fn to(self) -> u64 {
        match self {
            Step::NamespacedKeys => 2,
            Step::MessagesPerDestination => 3,
        }
    }

    /// What the step does, for the log line and the reader of this file.
    pub fn what(self) -> &'static str {
        match self {
            Step::NamespacedKeys => {
                "rewrite build keys build:<id> to build:<host>:<repo_id>:<id>: each pending event from its own \
                 body, a message with the key of its pending events; a message without pending events keeps the \
                 old key (a running one is adopted by the build's next webhook); leases are dropped"
            }
            Step::MessagesPerDestination => {
                "key each message by (key, destination): a key's message moves to destination \
                 channel:<its channel id> (for a message with only an uncertain create, the channel of that \
                 create)"
            }
        }
    }
}

/// Every step, in order; `STEPS[i].to() == i + 2`.
pub const STEPS: &[Step] = &[Step::NamespacedKeys, Step::MessagesPerDestination];

/// The steps a store at `version` needs, in order. A version above
/// [`CURRENT`] (a newer release wrote the store) is a configuration error.
pub fn steps_from(version: u64) -> Result<&'static [Step]> {
    if version > CURRENT {
        return Err(StoreError::Config(format!(
            "the store has schema version {version}, newer than this release's {CURRENT}; \
             run the release that wrote it, or a newer one"
        )));
    }
    let done = usize::try_from(version.max(UNVERSIONED) - UNVERSIONED).unwrap_or(usize::MAX);
    Ok(STEPS.get(done..).unwrap_or(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_is_ordered_and_ends_at_current() {
        for (i, s) in STEPS.iter().enumerate() {
            assert_eq!(s.to(), UNVERSIONED + 1 + i as u64, "{s:?} is out of order");
            assert!(!s.what().is_empty());
        }
        assert_eq!(STEPS.last().map(|s| s.to()), Some(CURRENT));
    }

    #[test]
    fn steps_from_each_version() {
        assert_eq!(steps_from(0).unwrap(), STEPS, "0 is treated as unversioned");
        assert_eq!(steps_from(UNVERSIONED).unwrap(), STEPS);
        assert!(steps_from(CURRENT).unwrap().is_empty());
        assert!(
            matches!(steps_from(CURRENT + 1), Err(StoreError::Config(m)) if m.contains("newer"))
        );
    }
}
