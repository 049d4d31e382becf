//! When some of a claim's destinations fail, which failure decides the
//! claim's outcome: the one that concerns the most.
//!
//! In order: a store failure (nothing can be recorded: release and back
//! off); a refusal of the token (401, or the client suspended itself: all
//! delivery pauses); a destination Discord refuses (403/404 on a create:
//! that destination pauses, the others go on at the next claim); a
//! transient failure (retry with backoff); an edit and its replacement both
//! refused (the events are set aside and the destination pauses); a message
//! Discord rejects for good (the events are set aside). A transient failure
//! ranks before setting events aside, so a destination that merely could not
//! be reached never loses the events to another one's bad message. The
//! first two stop the claim at once: no other destination can succeed.
use super::deliver::Failure;
use crate::discord::rest::RestError;

/// One destination's failure.
#[derive(Debug)]
pub(super) struct DestFailure {
    /// The store's destination key (a pause's scope).
    pub dest: String,
    /// How reasons name it (`channel <id>`, `webhook <name>`).
    pub place: String,
    pub failure: Failure,
}

/// Lower is more severe.
fn rank(f: &Failure) -> u8 {
    match f {
        Failure::Store(_) => 0,
        Failure::Rest(RestError::Suspended { .. }) => 1,
        Failure::Rest(RestError::Unauthorized { status, .. }) if *status != 403 => 1,
        Failure::Rest(RestError::Unauthorized { .. } | RestError::NotFound { .. }) => 2,
        Failure::Rest(RestError::Transient { .. } | RestError::Malformed { .. }) => 3,
        Failure::DeadAndPause { .. } => 4,
        Failure::Rest(RestError::Rejected { .. }) => 5,
    }
}

/// Whether `f` ends the claim before the other destinations are tried.
pub(super) fn stops_all(f: &Failure) -> bool {
    rank(f) <= 1
}

/// The failure that decides the claim's outcome (the first of the most severe).
pub(super) fn worst(failures: Vec<DestFailure>) -> Option<DestFailure> {
    let mut out: Option<DestFailure> = None;
    for f in failures {
        if out
            .as_ref()
            .map_or(true, |o| rank(&f.failure) < rank(&o.failure))
        {
            out = Some(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    fn f(dest: &str, failure: Failure) -> DestFailure {
        DestFailure {
            dest: dest.into(),
            place: dest.into(),
            failure,
        }
    }

    fn transient() -> Failure {
        Failure::Rest(RestError::Transient {
            reason: "timeout".into(),
            retry_after: None,
        })
    }

    fn rejected() -> Failure {
        Failure::Rest(RestError::Rejected {
            status: 400,
            code: Some(50035),
            message: "bad".into(),
        })
    }

    fn refused() -> Failure {
        Failure::Rest(RestError::Unauthorized {
            status: 403,
            message: "Missing Access".into(),
        })
    }

    #[test]
    fn the_most_severe_failure_decides() {
        assert!(worst(Vec::new()).is_none());
        let w = worst(vec![f("a", rejected()), f("b", transient())]).unwrap();
        assert_eq!(
            w.dest, "b",
            "a transient failure keeps the events for a retry"
        );
        let w = worst(vec![
            f("a", transient()),
            f("b", refused()),
            f("c", rejected()),
        ])
        .unwrap();
        assert_eq!(w.dest, "b", "a refused destination pauses");
        let token = Failure::Rest(RestError::Unauthorized {
            status: 401,
            message: "401: Unauthorized".into(),
        });
        let w = worst(vec![f("a", refused()), f("b", token)]).unwrap();
        assert_eq!(w.dest, "b", "a refused token pauses everything");
        let store = Failure::Store(StoreError::Unavailable("disk".into()));
        let w = worst(vec![f("a", refused()), f("b", store)]).unwrap();
        assert_eq!(w.dest, "b");
        let dead = Failure::DeadAndPause {
            reason: "x".into(),
            error: RestError::NotFound {
                code: Some(10003),
                message: "Unknown Channel".into(),
            },
        };
        let w = worst(vec![f("a", rejected()), f("b", dead), f("c", rejected())]).unwrap();
        assert_eq!(w.dest, "b");
        let w = worst(vec![f("a", rejected()), f("c", rejected())]).unwrap();
        assert_eq!(w.dest, "a", "the first of equals");
    }

    #[test]
    fn only_store_and_token_failures_stop_the_other_destinations() {
        assert!(stops_all(&Failure::Store(StoreError::Unavailable(
            "x".into()
        ))));
        assert!(stops_all(&Failure::Rest(RestError::Suspended {
            reason: "budget".into()
        })));
        assert!(!stops_all(&refused()));
        assert!(!stops_all(&transient()));
        assert!(!stops_all(&rejected()));
    }
}
