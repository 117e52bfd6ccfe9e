//! The proposer's decisions in a round of Paxos per partition (see
//! [`crate::peer::paxos`] for the acceptor's side).
//!
//! After a prepare, the proposer looks at a quorum's answers:
//!
//! 1. a replica refused (it promised a ballot of the same time or later):
//!    start again with a ballot above it;
//! 2. some replica holds an accepted proposal newer than every commit the
//!    quorum reported: it may have been chosen, so it is finished first,
//!    proposed again under this round's ballot with its update unchanged
//!    (its cells keep their own timestamps, which are above every earlier
//!    commit's and below every later one's), committed, and the round
//!    starts again;
//! 3. otherwise the round goes on with the rows it read.

use crate::peer::paxos::{Ballot, Promise, Proposal};

/// What the proposer does after a quorum's promises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterPrepare {
    /// A replica refused: prepare again with a ballot whose time is past
    /// `above`'s.
    Retry { above: Ballot },
    /// Finish this accepted proposal (under this round's ballot), then
    /// prepare again.
    Finish(Proposal),
    /// Go on with this round.
    Proceed,
}

/// Decides the next step from a quorum's answers to `ballot`'s prepare.
pub fn after_prepare(ballot: Ballot, promises: &[Promise]) -> AfterPrepare {
    let refused = promises
        .iter()
        .filter_map(|promise| match promise {
            Promise::Refused { promised } => Some(*promised),
            Promise::Promised { .. } => None,
        })
        .max();
    if let Some(above) = refused {
        return AfterPrepare::Retry { above };
    }
    let committed = promises
        .iter()
        .filter_map(|promise| match promise {
            Promise::Promised { committed, .. } => *committed,
            Promise::Refused { .. } => None,
        })
        .max();
    let in_progress = promises
        .iter()
        .filter_map(|promise| match promise {
            Promise::Promised { accepted, .. } => accepted.as_ref(),
            Promise::Refused { .. } => None,
        })
        .max_by_key(|proposal| proposal.ballot);
    match in_progress {
        Some(proposal) if Some(proposal.ballot) > committed && proposal.ballot < ballot => {
            AfterPrepare::Finish(Proposal {
                ballot,
                update: proposal.update.clone(),
                operation: proposal.operation.clone(),
            })
        }
        _ => AfterPrepare::Proceed,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::storage::Cell;

    fn ballot(micros: i64, node: u64) -> Ballot {
        Ballot { micros, node }
    }

    fn accepted(at: Ballot) -> Proposal {
        Proposal {
            ballot: at,
            update: vec![(
                Bytes::from_static(b"row"),
                Cell::live(at.micros, Bytes::from_static(b"v"), None),
            )],
            operation: Bytes::from_static(b"op"),
        }
    }

    fn promised(accepted: Option<Proposal>, committed: Option<Ballot>) -> Promise {
        Promise::Promised {
            accepted,
            committed,
        }
    }

    #[test]
    fn a_refusal_means_trying_again_above_the_highest_promise() {
        let mine = ballot(10, 1);
        let answers = [
            promised(None, None),
            Promise::Refused {
                promised: ballot(12, 2),
            },
            Promise::Refused {
                promised: ballot(11, 3),
            },
        ];
        assert_eq!(
            after_prepare(mine, &answers),
            AfterPrepare::Retry {
                above: ballot(12, 2)
            }
        );
    }

    #[test]
    fn an_accepted_proposal_newer_than_every_commit_is_finished_first() {
        let mine = ballot(30, 1);
        let answers = [
            promised(Some(accepted(ballot(20, 2))), Some(ballot(10, 3))),
            promised(None, Some(ballot(10, 3))),
        ];
        let AfterPrepare::Finish(finish) = after_prepare(mine, &answers) else {
            panic!("the accepted proposal is finished");
        };
        // Under this round's ballot, its update and its cells' timestamps
        // unchanged.
        assert_eq!(finish.ballot, mine);
        assert_eq!(finish.update, accepted(ballot(20, 2)).update);
        assert_eq!(finish.operation, Bytes::from_static(b"op"));
    }

    #[test]
    fn a_proposal_a_later_commit_covers_is_not_finished_again() {
        let mine = ballot(30, 1);
        // One replica still holds the accepted proposal of ballot 20; the
        // other saw it (or a later one) committed.
        let answers = [
            promised(Some(accepted(ballot(20, 2))), None),
            promised(None, Some(ballot(20, 2))),
        ];
        assert_eq!(after_prepare(mine, &answers), AfterPrepare::Proceed);
        let answers = [
            promised(Some(accepted(ballot(20, 2))), None),
            promised(None, Some(ballot(25, 4))),
        ];
        assert_eq!(after_prepare(mine, &answers), AfterPrepare::Proceed);
        assert_eq!(
            after_prepare(mine, &[promised(None, None), promised(None, None)]),
            AfterPrepare::Proceed
        );
    }

    #[test]
    fn the_newest_of_several_accepted_proposals_is_the_one_finished() {
        let mine = ballot(30, 1);
        let answers = [
            promised(Some(accepted(ballot(20, 2))), None),
            promised(Some(accepted(ballot(25, 3))), None),
        ];
        let AfterPrepare::Finish(finish) = after_prepare(mine, &answers) else {
            panic!("finished");
        };
        assert_eq!(finish.update, accepted(ballot(25, 3)).update);
    }
}
