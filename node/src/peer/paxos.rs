//! The acceptor of Paxos per partition: what a replica promises, accepts
//! and learns committed, and how it keeps that on disk.
//!
//! Compare-and-set runs single-decree Paxos per partition, round after
//! round (Cassandra's lightweight transactions, in the Paxos v2 shape). A
//! replica keeps, per partition:
//!
//! - `promised`: the highest ballot it promised; it answers no prepare and
//!   accepts no proposal below it;
//! - `accepted`: the last proposal it accepted that it has not seen
//!   committed (the coordinator that finds one in a quorum's promises
//!   finishes it before its own);
//! - `committed`: the highest ballot it saw committed.
//!
//! Ballots are HLC microseconds and the proposing node's id, ordered by
//! time first. A committed proposal's cells carry its ballot's time, so
//! for last-write-wins (reads, read repair, hints, anti-entropy) the
//! commits of a partition are ordered as Paxos ordered them. That needs the
//! times themselves to grow: a replica promises a ballot only if its time
//! is above every ballot it promised or saw committed (two ballots of the
//! same microsecond from two nodes are ordered by node, but their commits
//! would tie in last-write-wins, so the second is refused and retried
//! later).
//!
//! Invariants kept by every transition (and checked when state is read
//! back from disk): `accepted`'s ballot ≤ `promised`, `committed` ≤
//! `promised`, and `accepted`'s ballot > `committed` (a proposal seen
//! committed is never accepted again: a propose that arrives after its own
//! commit, its messages reordered, is refused).

use bytes::Bytes;

use crate::storage::codec::{self, get_bytes, get_varint, put_bytes, take};
use crate::storage::{Cell, CellView};

/// A Paxos ballot: a proposer's HLC time and its node id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ballot {
    /// HLC microseconds since the Unix epoch.
    pub micros: i64,
    /// The proposer's node id, breaking ties.
    pub node: u64,
}

/// What a proposer asks its acceptors to accept: cells of one partition
/// (row keys and cells, stamped with the ballot's time), and the client's
/// operation id, if it gave one, so that a retried operation can find
/// itself committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub ballot: Ballot,
    pub update: Vec<(Bytes, Cell)>,
    pub operation: Bytes,
}

impl Proposal {
    /// An update that changes nothing: what a condition that does not apply
    /// still proposes (CASSANDRA-12126), so that an older accepted proposal
    /// a minority holds can never be finished after it.
    pub fn empty(ballot: Ballot) -> Self {
        Self {
            ballot,
            update: Vec::new(),
            operation: Bytes::new(),
        }
    }
}

/// One partition's acceptor state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acceptor {
    pub promised: Option<Ballot>,
    pub accepted: Option<Proposal>,
    pub committed: Option<Ballot>,
}

/// The answer to a prepare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Promise {
    /// Promised: no lower ballot is accepted from now on. Carries what the
    /// proposer must know: an accepted proposal not seen committed, and the
    /// highest committed ballot.
    Promised {
        accepted: Option<Proposal>,
        committed: Option<Ballot>,
    },
    /// Refused: this replica promised (or saw committed) `promised`, whose
    /// time is not below the ballot's.
    Refused { promised: Ballot },
}

impl Acceptor {
    /// Refuses `ballot` (naming the promise) when a ballot of the same
    /// time or later was promised here, other than `ballot` itself, or
    /// when `ballot` or a later one was seen committed.
    fn refuses(&self, ballot: Ballot) -> Option<Ballot> {
        let promised = self.promised?;
        let taken = promised != ballot && promised.micros >= ballot.micros;
        let settled = self.committed.is_some_and(|c| c >= ballot);
        (taken || settled).then_some(promised)
    }

    /// Phase 1: promise `ballot` unless [`refuses`](Self::refuses) says
    /// no. Preparing the ballot already promised again answers the same
    /// (a retried message).
    pub fn prepare(&mut self, ballot: Ballot) -> Promise {
        if let Some(promised) = self.refuses(ballot) {
            return Promise::Refused { promised };
        }
        self.promised = Some(ballot);
        Promise::Promised {
            accepted: self.accepted.clone(),
            committed: self.committed,
        }
    }

    /// Phase 2: accept `proposal` under the same rule as a prepare (so
    /// never below the promise, nor once its ballot is committed here).
    /// `Err` carries the promise.
    pub fn propose(&mut self, proposal: Proposal) -> Result<(), Ballot> {
        if let Some(promised) = self.refuses(proposal.ballot) {
            return Err(promised);
        }
        self.promised = Some(proposal.ballot);
        self.accepted = Some(proposal);
        Ok(())
    }

    /// Learns that `ballot` was committed (its update is applied to the
    /// data by the caller, in the same write as this state). An accepted
    /// proposal at or below it is settled: it is this one, or one that
    /// lost to it.
    pub fn commit(&mut self, ballot: Ballot) {
        self.committed = self.committed.max(Some(ballot));
        self.promised = self.promised.max(Some(ballot));
        if self
            .accepted
            .as_ref()
            .is_some_and(|accepted| accepted.ballot <= ballot)
        {
            self.accepted = None;
        }
    }

    /// The invariants of the module docs.
    pub fn is_consistent(&self) -> bool {
        let accepted = self.accepted.as_ref().map(|a| a.ballot);
        accepted <= self.promised
            && self.committed <= self.promised
            && accepted.is_none_or(|a| Some(a) > self.committed)
    }

    /// Nothing in flight: the state may be dropped once its ballots are
    /// older than any proposal still running could be (gc_grace).
    pub fn is_settled(&self) -> bool {
        self.accepted.is_none()
    }
}

const FORMAT_V1: u8 = 1;
const HAS_PROMISED: u8 = 0b001;
const HAS_ACCEPTED: u8 = 0b010;
const HAS_COMMITTED: u8 = 0b100;
/// Most cells a stored proposal may hold (a partition batch's bound with
/// room for its deletions entry).
pub const MAX_PROPOSAL_CELLS: usize = 1_024;

/// Why stored acceptor state cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcceptorDecodeError {
    #[error("acceptor state truncated")]
    Truncated,
    #[error("acceptor state with bytes after its end")]
    Trailing,
    #[error("acceptor state of unknown format {0}")]
    UnknownFormat(u8),
    #[error("acceptor state with unknown flags {0:#x}")]
    UnknownFlags(u8),
    #[error("a stored proposal of {0} cells, over the limit of {MAX_PROPOSAL_CELLS}")]
    TooMany(u64),
    #[error("a stored proposal's cell: {0}")]
    Cell(String),
    #[error("acceptor state whose ballots break its invariants")]
    Inconsistent,
}

impl From<codec::Truncated> for AcceptorDecodeError {
    fn from(_: codec::Truncated) -> Self {
        AcceptorDecodeError::Truncated
    }
}

/// ```text
/// byte 0      format (1)
/// byte 1      flags: bit 0 promised, bit 1 accepted, bit 2 committed
/// [16 bytes]  promised: micros (i64 BE), node (u64 BE)
/// [16 bytes]  committed
/// accepted:   16 bytes ballot, varint + bytes operation id,
///             varint cell count, then each: varint + bytes row key,
///             varint + bytes cell (the storage encoding)
/// ```
impl Acceptor {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 16 * 3);
        out.push(FORMAT_V1);
        let flags = u8::from(self.promised.is_some())
            | u8::from(self.accepted.is_some()) << 1
            | u8::from(self.committed.is_some()) << 2;
        out.push(flags);
        for ballot in [self.promised, self.committed].into_iter().flatten() {
            put_ballot(ballot, &mut out);
        }
        if let Some(accepted) = &self.accepted {
            put_ballot(accepted.ballot, &mut out);
            put_bytes(&accepted.operation, &mut out);
            prost::encoding::encode_varint(accepted.update.len() as u64, &mut out);
            for (key, cell) in &accepted.update {
                put_bytes(key, &mut out);
                put_bytes(&cell.encode(), &mut out);
            }
        }
        out
    }

    pub fn decode(mut bytes: &[u8]) -> Result<Self, AcceptorDecodeError> {
        use AcceptorDecodeError::*;
        let buf = &mut bytes;
        let [format, flags] = take::<2>(buf)?;
        if format != FORMAT_V1 {
            return Err(UnknownFormat(format));
        }
        if flags & !(HAS_PROMISED | HAS_ACCEPTED | HAS_COMMITTED) != 0 {
            return Err(UnknownFlags(flags));
        }
        let promised = (flags & HAS_PROMISED != 0)
            .then(|| get_ballot(buf))
            .transpose()?;
        let committed = (flags & HAS_COMMITTED != 0)
            .then(|| get_ballot(buf))
            .transpose()?;
        let accepted = if flags & HAS_ACCEPTED != 0 {
            let ballot = get_ballot(buf)?;
            let operation = get_bytes(buf)?;
            let count = get_varint(buf)?;
            if count > MAX_PROPOSAL_CELLS as u64 {
                return Err(TooMany(count));
            }
            let mut update = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let key = get_bytes(buf)?;
                let cell = get_bytes(buf)?;
                let cell = CellView::decode(&cell)
                    .map_err(|error| Cell(error.to_string()))?
                    .to_owned_cell();
                update.push((key, cell));
            }
            Some(Proposal {
                ballot,
                update,
                operation,
            })
        } else {
            None
        };
        if !buf.is_empty() {
            return Err(Trailing);
        }
        let state = Acceptor {
            promised,
            accepted,
            committed,
        };
        if !state.is_consistent() {
            return Err(Inconsistent);
        }
        Ok(state)
    }
}

fn put_ballot(ballot: Ballot, out: &mut Vec<u8>) {
    out.extend_from_slice(&ballot.micros.to_be_bytes());
    out.extend_from_slice(&ballot.node.to_be_bytes());
}

fn get_ballot(buf: &mut &[u8]) -> Result<Ballot, AcceptorDecodeError> {
    let micros = i64::from_be_bytes(take::<8>(buf)?);
    let node = u64::from_be_bytes(take::<8>(buf)?);
    Ok(Ballot { micros, node })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ballot(micros: i64, node: u64) -> Ballot {
        Ballot { micros, node }
    }

    fn proposal(b: Ballot, value: &'static str) -> Proposal {
        Proposal {
            ballot: b,
            update: vec![(
                Bytes::from_static(b"row"),
                Cell::live(b.micros, Bytes::from_static(value.as_bytes()), None),
            )],
            operation: Bytes::from_static(b"op-1"),
        }
    }

    #[test]
    fn a_promise_holds_off_lower_ballots_and_reports_what_was_accepted() {
        let mut a = Acceptor::default();
        let first = ballot(10, 1);
        assert_eq!(
            a.prepare(first),
            Promise::Promised {
                accepted: None,
                committed: None
            }
        );
        assert_eq!(a.propose(proposal(first, "x")), Ok(()));
        // A lower or same-time ballot is refused, naming the promise.
        assert_eq!(
            a.prepare(ballot(9, 7)),
            Promise::Refused { promised: first }
        );
        assert_eq!(
            a.prepare(ballot(10, 2)),
            Promise::Refused { promised: first },
            "same microsecond, higher node: refused, its commit would tie"
        );
        // A higher one is promised and told of the accepted proposal.
        let second = ballot(20, 2);
        assert_eq!(
            a.prepare(second),
            Promise::Promised {
                accepted: Some(proposal(first, "x")),
                committed: None
            }
        );
        // The first proposer can no longer get anything accepted.
        assert_eq!(a.propose(proposal(first, "late")), Err(second));
        assert_eq!(a.accepted, Some(proposal(first, "x")));
    }

    #[test]
    fn a_proposal_arriving_after_its_own_commit_is_not_accepted_again() {
        let mut a = Acceptor::default();
        let b = ballot(10, 1);
        a.prepare(b);
        // The commit overtook the propose (other replicas accepted it).
        a.commit(b);
        assert_eq!(a.propose(proposal(b, "x")), Err(b));
        assert!(
            a.is_settled(),
            "no committed proposal reported as in progress"
        );
        assert_eq!(a.prepare(b), Promise::Refused { promised: b });
    }

    #[test]
    fn a_repeated_prepare_of_the_promised_ballot_is_answered_again() {
        let mut a = Acceptor::default();
        let b = ballot(10, 1);
        let once = a.prepare(b);
        assert_eq!(a.prepare(b), once);
    }

    #[test]
    fn a_commit_settles_what_it_covers_and_raises_the_floor() {
        let mut a = Acceptor::default();
        let b = ballot(10, 1);
        a.prepare(b);
        a.propose(proposal(b, "x")).expect("accepted");
        assert!(!a.is_settled());
        a.commit(b);
        assert!(a.is_settled());
        assert_eq!(a.committed, Some(b));
        // A commit learned without the promise (this replica missed the
        // prepare) still refuses ballots at or below it.
        let mut late = Acceptor::default();
        late.commit(ballot(30, 2));
        assert_eq!(
            late.prepare(ballot(25, 9)),
            Promise::Refused {
                promised: ballot(30, 2)
            }
        );
        // An older commit does not settle a newer accepted proposal.
        let mut newer = Acceptor::default();
        newer.prepare(ballot(50, 1));
        newer
            .propose(proposal(ballot(50, 1), "y"))
            .expect("accepted");
        newer.commit(ballot(40, 3));
        assert_eq!(newer.accepted, Some(proposal(ballot(50, 1), "y")));
        assert_eq!(newer.committed, Some(ballot(40, 3)));
        assert_eq!(newer.promised, Some(ballot(50, 1)));
    }

    #[test]
    fn state_round_trips_and_bad_bytes_are_clear_errors() {
        let mut a = Acceptor::default();
        assert_eq!(Acceptor::decode(&a.encode()), Ok(a.clone()));
        a.commit(ballot(5, 3));
        a.prepare(ballot(10, 1));
        a.propose(proposal(ballot(10, 1), "x")).expect("accepted");
        assert_eq!(Acceptor::decode(&a.encode()), Ok(a.clone()));
        let broken = Acceptor {
            promised: None,
            accepted: None,
            committed: Some(ballot(5, 3)),
        };
        assert_eq!(
            Acceptor::decode(&broken.encode()),
            Err(AcceptorDecodeError::Inconsistent)
        );
        let mut bytes = a.encode();
        for cut in 0..bytes.len() {
            assert!(Acceptor::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        bytes.push(0);
        assert_eq!(Acceptor::decode(&bytes), Err(AcceptorDecodeError::Trailing));
        assert_eq!(
            Acceptor::decode(&[9, 0]),
            Err(AcceptorDecodeError::UnknownFormat(9))
        );
        assert_eq!(
            Acceptor::decode(&[1, 0x80]),
            Err(AcceptorDecodeError::UnknownFlags(0x80))
        );
        let mut huge = vec![1, HAS_ACCEPTED];
        put_ballot(ballot(1, 1), &mut huge);
        put_bytes(b"", &mut huge);
        prost::encoding::encode_varint(u64::MAX, &mut huge);
        assert_eq!(
            Acceptor::decode(&huge),
            Err(AcceptorDecodeError::TooMany(u64::MAX))
        );
    }

    #[derive(Debug, Clone)]
    enum Step {
        Prepare(Ballot),
        Propose(Ballot),
        Commit(Ballot),
    }

    fn step() -> impl Strategy<Value = Step> {
        let b = (0i64..20, 0u64..3).prop_map(|(micros, node)| ballot(micros, node));
        prop_oneof![
            b.clone().prop_map(Step::Prepare),
            b.clone().prop_map(Step::Propose),
            b.prop_map(Step::Commit),
        ]
    }

    proptest! {
        /// Whatever messages arrive in whatever order: the promise never
        /// goes down, nothing below it is accepted afterwards, the
        /// invariants hold, and the state survives a round trip.
        #[test]
        fn the_invariants_hold_under_any_messages(steps in prop::collection::vec(step(), 0..40)) {
            let mut a = Acceptor::default();
            for s in steps {
                let before = a.promised;
                match s {
                    Step::Prepare(b) => {
                        if let Promise::Promised { .. } = a.prepare(b) {
                            prop_assert!(before.is_none_or(|p| p == b || p.micros < b.micros));
                        }
                    }
                    Step::Propose(b) => {
                        if a.propose(proposal(b, "v")).is_ok() {
                            prop_assert!(before.is_none_or(|p| p == b || p.micros < b.micros));
                        }
                    }
                    Step::Commit(b) => a.commit(b),
                }
                prop_assert!(a.promised >= before);
                if let Some(accepted) = &a.accepted {
                    prop_assert!(Some(accepted.ballot) <= a.promised);
                }
                prop_assert!(a.committed <= a.promised);
                prop_assert!(a.is_consistent());
                if let Some(accepted) = &a.accepted {
                    prop_assert!(Some(accepted.ballot) > a.committed);
                }
                prop_assert_eq!(Acceptor::decode(&a.encode()), Ok(a.clone()));
            }
        }
    }
}
