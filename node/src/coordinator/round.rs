//! The quorum arithmetic of a read, as plain data.
//!
//! [`ReadRound`] takes each replica's answer and says what the read does
//! next; the async read path only sends the asks and waits. [`resolve`]
//! picks the newest cell among full answers and who must be repaired. So
//! the edge cases (a failing data replica, spares running out, digests
//! that disagree) are table-tested without tokio.
//!
//! The rules:
//! - the first `required` replicas in read order are asked: the first for
//!   data, the others for a digest;
//! - a replica that fails is replaced by the next spare, asked the same way;
//! - once the data and `required - 1` digests are in: if every digest
//!   matches the data, the read has its answer; otherwise it reads full
//!   data from the replicas that sent digests and resolves;
//! - when nothing is outstanding and no spare is left short of that, the
//!   read fails (`Failed` with the reasons; `Timeout` if none refused);
//!   at the deadline, `Timeout` with the count received.

use std::collections::VecDeque;

use bytes::Bytes;

use super::tally::Unmet;
use crate::identity::NodeId;
use crate::peer::{ReadReply, ReplicaError};
use crate::storage::{Cell, digest, lww};

/// What the read does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Ask this spare (for a digest, or for data).
    Ask { node: NodeId, digest_only: bool },
    /// Wait for more answers.
    Wait,
    /// The replicas asked agree on this cell (`data_node` sent it).
    Agreed {
        data_node: NodeId,
        cell: Option<Cell>,
        digest_nodes: Vec<NodeId>,
    },
    /// Digests disagree: read full data from these replicas and resolve,
    /// with what the data replica sent.
    Resolve {
        data: (NodeId, Option<Cell>),
        full_from: Vec<NodeId>,
    },
    /// The level cannot be met.
    Unmet(Unmet),
}

/// The answers of one read's replicas so far.
#[derive(Debug)]
pub(crate) struct ReadRound {
    required: usize,
    spares: VecDeque<NodeId>,
    outstanding: usize,
    data: Option<(NodeId, Option<Cell>)>,
    digests: Vec<(NodeId, Bytes)>,
    refused: Vec<String>,
}

impl ReadRound {
    /// A read needing `required` answers from live replicas in `order`
    /// (preferred first); also returns the first asks, `(node,
    /// digest_only)`.
    pub fn start(required: usize, order: Vec<NodeId>) -> (Self, Vec<(NodeId, bool)>) {
        let mut spares: VecDeque<NodeId> = order.into();
        let asks: Vec<(NodeId, bool)> = spares
            .drain(..required.min(spares.len()))
            .enumerate()
            .map(|(i, node)| (node, i > 0))
            .collect();
        let round = Self {
            required,
            spares,
            outstanding: asks.len(),
            data: None,
            digests: Vec::new(),
            refused: Vec::new(),
        };
        (round, asks)
    }

    /// Answers received so far.
    pub fn received(&self) -> usize {
        self.digests.len() + usize::from(self.data.is_some())
    }

    /// What the deadline passing means now.
    pub fn timed_out(&self) -> Unmet {
        Unmet::Timeout {
            required: self.required,
            received: self.received(),
        }
    }

    /// Takes `node`'s answer to an ask for a digest (or for data).
    pub fn answer(
        &mut self,
        node: NodeId,
        digest_only: bool,
        answer: Result<ReadReply, ReplicaError>,
    ) -> Step {
        self.outstanding = self.outstanding.saturating_sub(1);
        match answer {
            Ok(ReadReply::Data(cell)) => self.data = Some((node, cell)),
            Ok(ReadReply::Digest(d)) => self.digests.push((node, d)),
            Err(error) => {
                self.refused.push(format!("{node}: {error}"));
                if let Some(spare) = self.spares.pop_front() {
                    self.outstanding += 1;
                    return Step::Ask {
                        node: spare,
                        digest_only,
                    };
                }
            }
        }
        self.step()
    }

    fn step(&self) -> Step {
        if let Some((data_node, cell)) = &self.data
            && self.digests.len() + 1 >= self.required
        {
            let expected = digest(cell.as_ref());
            let digest_nodes = self.digests.iter().map(|(n, _)| *n).collect();
            if self.digests.iter().all(|(_, d)| *d == expected) {
                return Step::Agreed {
                    data_node: *data_node,
                    cell: cell.clone(),
                    digest_nodes,
                };
            }
            return Step::Resolve {
                data: (*data_node, cell.clone()),
                full_from: digest_nodes,
            };
        }
        if self.outstanding > 0 {
            return Step::Wait;
        }
        let received = self.received();
        if self.refused.is_empty() {
            Step::Unmet(Unmet::Timeout {
                required: self.required,
                received,
            })
        } else {
            Step::Unmet(Unmet::Failed {
                required: self.required,
                received,
                reasons: self.refused.clone(),
            })
        }
    }
}

/// The newest of the replicas' cells (LWW), and the replicas that do not
/// hold it and must be repaired; `None` when no replica holds the key.
pub(crate) fn resolve(cells: &[(NodeId, Option<Cell>)]) -> Option<(Cell, Vec<NodeId>)> {
    let winner = lww::merge_all(cells.iter().filter_map(|(_, c)| c.clone()))?;
    let stale = cells
        .iter()
        .filter(|(_, cell)| cell.as_ref() != Some(&winner))
        .map(|(node, _)| *node)
        .collect();
    Some((winner, stale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u128) -> NodeId {
        NodeId(uuid::Uuid::from_u128(i))
    }

    fn cell(ts: i64) -> Cell {
        Cell::live(ts, Bytes::from(format!("v{ts}")), None)
    }

    fn data(ts: i64) -> Result<ReadReply, ReplicaError> {
        Ok(ReadReply::Data(Some(cell(ts))))
    }

    fn digest_of(ts: i64) -> Result<ReadReply, ReplicaError> {
        Ok(ReadReply::Digest(digest(Some(&cell(ts)))))
    }

    fn refused() -> Result<ReadReply, ReplicaError> {
        Err(ReplicaError::Unreachable("refused".into()))
    }

    #[test]
    fn the_first_is_asked_for_data_the_rest_for_digests() {
        let (_, asks) = ReadRound::start(2, vec![n(1), n(2), n(3)]);
        assert_eq!(asks, vec![(n(1), false), (n(2), true)]);
        let (_, asks) = ReadRound::start(3, vec![n(1), n(2)]);
        assert_eq!(asks.len(), 2, "never more asks than replicas");
    }

    #[test]
    fn agreeing_answers_in_any_order() {
        let (mut round, _) = ReadRound::start(2, vec![n(1), n(2), n(3)]);
        assert_eq!(round.answer(n(2), true, digest_of(5)), Step::Wait);
        assert_eq!(
            round.answer(n(1), false, data(5)),
            Step::Agreed {
                data_node: n(1),
                cell: Some(cell(5)),
                digest_nodes: vec![n(2)]
            }
        );
    }

    #[test]
    fn a_disagreeing_digest_resolves_with_full_reads() {
        let (mut round, _) = ReadRound::start(2, vec![n(1), n(2)]);
        round.answer(n(1), false, data(5));
        assert_eq!(
            round.answer(n(2), true, digest_of(6)),
            Step::Resolve {
                data: (n(1), Some(cell(5))),
                full_from: vec![n(2)]
            }
        );
    }

    #[test]
    fn a_failed_replica_is_replaced_by_a_spare_asked_the_same_way() {
        let (mut round, _) = ReadRound::start(2, vec![n(1), n(2), n(3)]);
        assert_eq!(
            round.answer(n(1), false, refused()),
            Step::Ask {
                node: n(3),
                digest_only: false
            }
        );
        assert_eq!(round.answer(n(2), true, digest_of(4)), Step::Wait);
        assert!(matches!(
            round.answer(n(3), false, data(4)),
            Step::Agreed { data_node, .. } if data_node == n(3)
        ));
    }

    #[test]
    fn out_of_spares_the_read_fails_with_the_reasons() {
        let (mut round, _) = ReadRound::start(2, vec![n(1), n(2)]);
        assert_eq!(round.answer(n(1), false, data(1)), Step::Wait);
        match round.answer(n(2), true, refused()) {
            Step::Unmet(Unmet::Failed {
                required,
                received,
                reasons,
            }) => {
                assert_eq!((required, received), (2, 1));
                assert_eq!(reasons.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn at_the_deadline_the_count_received_is_reported() {
        let (mut round, _) = ReadRound::start(3, vec![n(1), n(2), n(3)]);
        round.answer(n(2), true, digest_of(1));
        assert_eq!(
            round.timed_out(),
            Unmet::Timeout {
                required: 3,
                received: 1
            }
        );
    }

    #[test]
    fn missing_keys_agree_as_none() {
        let (mut round, _) = ReadRound::start(2, vec![n(1), n(2)]);
        round.answer(n(2), true, Ok(ReadReply::Digest(digest(None))));
        assert!(matches!(
            round.answer(n(1), false, Ok(ReadReply::Data(None))),
            Step::Agreed { cell: None, .. }
        ));
    }

    #[test]
    fn resolve_keeps_the_newest_and_lists_the_stale() {
        let tomb = Cell::tombstone(9, 0);
        type Replicas = Vec<(NodeId, Option<Cell>)>;
        type Resolved = Option<(Cell, Vec<NodeId>)>;
        let table: Vec<(Replicas, Resolved)> = vec![
            (vec![(n(1), None), (n(2), None)], None),
            (
                vec![(n(1), Some(cell(3))), (n(2), None)],
                Some((cell(3), vec![n(2)])),
            ),
            (
                vec![(n(1), Some(cell(3))), (n(2), Some(cell(7)))],
                Some((cell(7), vec![n(1)])),
            ),
            (
                vec![(n(1), Some(cell(7))), (n(2), Some(tomb.clone()))],
                Some((tomb.clone(), vec![n(1)])),
            ),
            (
                vec![(n(1), Some(cell(2))), (n(2), Some(cell(2)))],
                Some((cell(2), vec![])),
            ),
        ];
        for (cells, expected) in table {
            assert_eq!(resolve(&cells), expected, "{cells:?}");
        }
    }
}
