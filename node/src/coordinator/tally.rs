//! The quorum arithmetic of a write, as plain data.
//!
//! [`WriteTally`] takes each replica's answer and says whether the write
//! is still pending, has met its level, or can no longer meet it; the
//! async write path only moves messages and asks. So the edge cases (hints
//! at ANY, refusals against timeouts, a level that became impossible) are
//! table-tested without tokio.
//!
//! The rules:
//! - an acknowledgement counts; at ANY (`hints_ack`), so does a replica
//!   that failed but got a hint;
//! - the level is met once `required` count (hints stored for replicas
//!   known down count from the start, at ANY);
//! - once so many replicas timed out or refused that `required` cannot be
//!   reached, the write fails at once: `Failed` if any refused (the
//!   reasons say why), otherwise `Timeout`;
//! - at the deadline, or when every replica answered short of the level,
//!   the same: `Timeout` with the count received, or `Failed`.

use super::CoordinatorError;
use crate::identity::NodeId;
use crate::peer::ReplicaError;

/// Where a write stands.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pending,
    Met,
    Unmet(Unmet),
}

/// Why a write did not meet its level.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unmet {
    Timeout {
        required: usize,
        received: usize,
    },
    Failed {
        required: usize,
        received: usize,
        reasons: Vec<String>,
    },
}

impl From<Unmet> for CoordinatorError {
    fn from(unmet: Unmet) -> Self {
        match unmet {
            Unmet::Timeout { required, received } => {
                CoordinatorError::Timeout { required, received }
            }
            Unmet::Failed {
                required,
                received,
                reasons,
            } => CoordinatorError::Failed {
                required,
                received,
                reasons,
            },
        }
    }
}

/// The answers of one write's replicas so far.
#[derive(Debug)]
pub(crate) struct WriteTally {
    required: usize,
    /// Acknowledgements that can still come: hints counted at the start
    /// plus replicas sent to, less those that failed.
    possible: usize,
    acked: usize,
    refused: Vec<String>,
    hints_ack: bool,
}

impl WriteTally {
    /// A write needing `required` acknowledgements, sent to `sent`
    /// replicas, with `hint_acks` already counted (hints at ANY); with
    /// `hints_ack`, a failed replica that got a hint counts too.
    pub fn new(required: usize, sent: usize, hint_acks: usize, hints_ack: bool) -> Self {
        Self {
            required,
            possible: hint_acks + sent,
            acked: hint_acks,
            refused: Vec::new(),
            hints_ack,
        }
    }

    /// Where the write stands now.
    pub fn verdict(&self) -> Verdict {
        if self.acked >= self.required {
            Verdict::Met
        } else if self.possible < self.required {
            Verdict::Unmet(self.unmet())
        } else {
            Verdict::Pending
        }
    }

    /// Records one replica's answer; `hinted`: a hint was stored for it.
    pub fn record(
        &mut self,
        node: NodeId,
        answer: Result<(), ReplicaError>,
        hinted: bool,
    ) -> Verdict {
        match answer {
            Ok(()) => self.acked += 1,
            Err(_) if self.hints_ack && hinted => self.acked += 1,
            Err(ReplicaError::Timeout) => self.possible = self.possible.saturating_sub(1),
            Err(error) => {
                self.possible = self.possible.saturating_sub(1);
                self.refused.push(format!("{node}: {error}"));
            }
        }
        self.verdict()
    }

    /// The deadline passed, or every replica answered, short of the level.
    pub fn unmet(&self) -> Unmet {
        if self.refused.is_empty() {
            Unmet::Timeout {
                required: self.required,
                received: self.acked,
            }
        } else {
            Unmet::Failed {
                required: self.required,
                received: self.acked,
                reasons: self.refused.clone(),
            }
        }
    }

    /// At the deadline: `Timeout` with the count received (refusals do not
    /// change that the level was not met in time).
    pub fn timed_out(&self) -> Unmet {
        Unmet::Timeout {
            required: self.required,
            received: self.acked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy)]
    enum Answer {
        Ack,
        TimedOut,
        Refused,
        /// Refused, and a hint was stored for it.
        RefusedHinted,
    }
    use Answer::*;

    /// The verdict after each answer.
    fn verdicts(tally: &mut WriteTally, answers: &[Answer]) -> Vec<Verdict> {
        answers
            .iter()
            .enumerate()
            .map(|(i, answer)| {
                let node = NodeId(uuid::Uuid::from_u128(i as u128 + 1));
                match answer {
                    Ack => tally.record(node, Ok(()), false),
                    TimedOut => tally.record(node, Err(ReplicaError::Timeout), true),
                    Refused => {
                        tally.record(node, Err(ReplicaError::Unreachable("down".into())), false)
                    }
                    RefusedHinted => {
                        tally.record(node, Err(ReplicaError::Failed("disk".into())), true)
                    }
                }
            })
            .collect()
    }

    fn failed(required: usize, received: usize) -> impl Fn(&Verdict) -> bool {
        move |v| matches!(v, Verdict::Unmet(Unmet::Failed { required: r, received: n, .. }) if *r == required && *n == received)
    }

    fn timeout(required: usize, received: usize) -> Verdict {
        Verdict::Unmet(Unmet::Timeout { required, received })
    }

    #[test]
    fn quorum_of_three() {
        let mut t = WriteTally::new(2, 3, 0, false);
        assert_eq!(t.verdict(), Verdict::Pending);
        assert_eq!(
            verdicts(&mut t, &[Ack, Ack]),
            [Verdict::Pending, Verdict::Met]
        );

        let mut t = WriteTally::new(2, 3, 0, false);
        assert_eq!(
            verdicts(&mut t, &[TimedOut, TimedOut]),
            [Verdict::Pending, timeout(2, 0)]
        );

        let mut t = WriteTally::new(2, 3, 0, false);
        let v = verdicts(&mut t, &[Ack, TimedOut, Refused]);
        assert_eq!(v[..2], [Verdict::Pending, Verdict::Pending]);
        assert!(failed(2, 1)(&v[2]), "{v:?}");

        // Two refusals make QUORUM impossible at once, before the third answers.
        let mut t = WriteTally::new(2, 3, 0, false);
        let v = verdicts(&mut t, &[Refused, Refused]);
        assert!(failed(2, 0)(&v[1]), "{v:?}");
    }

    #[test]
    fn one_and_all() {
        let mut t = WriteTally::new(1, 3, 0, false);
        assert_eq!(
            verdicts(&mut t, &[TimedOut, Ack]),
            [Verdict::Pending, Verdict::Met]
        );
        let mut t = WriteTally::new(3, 3, 0, false);
        assert_eq!(
            verdicts(&mut t, &[Ack, Ack, TimedOut]),
            [Verdict::Pending, Verdict::Pending, timeout(3, 2)]
        );
    }

    #[test]
    fn hints_count_only_at_any() {
        // ANY with every replica down: the stored hint is the answer.
        assert_eq!(WriteTally::new(1, 0, 1, true).verdict(), Verdict::Met);
        // ANY with nothing sent and no hint: impossible at once.
        assert_eq!(WriteTally::new(1, 0, 0, true).verdict(), timeout(1, 0));
        // ANY: a replica that failed but got a hint acknowledges.
        let mut t = WriteTally::new(1, 2, 0, true);
        assert_eq!(verdicts(&mut t, &[RefusedHinted]), [Verdict::Met]);
        // Any other level: a hint never counts.
        let mut t = WriteTally::new(1, 1, 0, false);
        let v = verdicts(&mut t, &[RefusedHinted]);
        assert!(failed(1, 0)(&v[0]), "{v:?}");
    }

    #[test]
    fn at_the_deadline_refusals_still_read_as_a_timeout() {
        let mut t = WriteTally::new(2, 3, 0, false);
        let _ = verdicts(&mut t, &[Refused, Ack]);
        assert_eq!(
            t.timed_out(),
            Unmet::Timeout {
                required: 2,
                received: 1
            }
        );
        assert!(matches!(t.unmet(), Unmet::Failed { received: 1, .. }));
    }
}
