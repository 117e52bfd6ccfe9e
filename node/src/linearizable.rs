//! A linearizability checker for histories of compare-and-set registers
//! (the simulation's, and a real cluster's exported by `ringkv-bench`).
//!
//! A history is a list of operations on independent registers (keys), each
//! with the moment it was called and the moment its answer came back, or
//! none when the caller never learned its outcome (a timeout: "outcome
//! unknown"). It is linearizable when each operation can be given one
//! instant between its call and its answer at which it takes effect, so
//! that read in that order every answer is what a single register would
//! have given (Herlihy and Wing). Registers are independent, so each key's
//! operations are checked on their own (linearizability is local).
//!
//! The search is Wing and Gong's, with Lowe's memoisation: walk the
//! history's calls and answers in time order; at a call, try to take its
//! operation effect now (the model must accept its answer from the current
//! state), remembering the state; reaching the answer of an operation not
//! taken yet means an earlier choice was wrong, so undo the last one and
//! try the next call instead. A configuration (the set of operations taken
//! and the register's state) seen before is never explored again. An
//! operation whose outcome is unknown has no answer: it may take effect at
//! any moment after its call, or never (which is the same as last).
//!
//! The worst case is exponential in the operations that overlap; the
//! search gives up after a budget of steps and says so rather than answer.
//!
//! CAVEATS: every register starts absent (a history must begin on fresh
//! keys); operations whose call and answer fall on the same instant count
//! as concurrent, so the clock's resolution must be finer than the gaps
//! that matter.

use std::collections::HashSet;
use std::fmt;

/// When a conditional write applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Condition<V> {
    /// Always: a plain write.
    Always,
    /// `IF NOT EXISTS`.
    Absent,
    /// `IF EXISTS`.
    Present,
    /// `IF value = v`.
    Equals(V),
}

impl<V: PartialEq> Condition<V> {
    pub fn holds(&self, state: Option<&V>) -> bool {
        match self {
            Condition::Always => true,
            Condition::Absent => state.is_none(),
            Condition::Present => state.is_some(),
            Condition::Equals(v) => state == Some(v),
        }
    }
}

/// What an operation asks of a register.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op<V> {
    /// Read the value (`None`: absent).
    Read,
    /// Set the value to `to` (`None`: delete it) when `when` holds.
    Set { when: Condition<V>, to: Option<V> },
}

/// What an operation answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome<V> {
    /// A read's value.
    Read(Option<V>),
    /// Whether a set applied.
    Set(bool),
    /// The caller never learned the outcome (a timeout, a lost answer).
    Unknown,
}

/// One operation of a history. Times are in any unit, one clock for the
/// whole history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<K, V> {
    pub key: K,
    pub op: Op<V>,
    pub outcome: Outcome<V>,
    pub called: u64,
    /// `None` when the outcome is unknown (ignored then): the operation
    /// may take effect at any moment after its call.
    pub answered: Option<u64>,
}

/// Why a key's history is not linearizable, or could not be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<K> {
    Linearizable,
    /// No order explains `key`'s history. `explained` is the longest run of
    /// its operations (indices into the history given) that some order
    /// explains; `stuck` the operations none of whose next steps worked.
    Violation {
        key: K,
        explained: Vec<usize>,
        stuck: Vec<usize>,
    },
    /// The search for `key` gave up after its budget of steps.
    TooComplex {
        key: K,
        steps: usize,
    },
}

impl<K: fmt::Debug> fmt::Display for Verdict<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => write!(f, "linearizable"),
            Verdict::Violation {
                key,
                explained,
                stuck,
            } => write!(
                f,
                "not linearizable: key {key:?}: operations {explained:?} linearize, but then none of {stuck:?} can take effect"
            ),
            Verdict::TooComplex { key, steps } => {
                write!(f, "key {key:?}: gave up after {steps} steps")
            }
        }
    }
}

/// Steps of the search per key before it gives up.
pub const DEFAULT_BUDGET: usize = 5_000_000;

/// Checks `history` key by key (see the module docs), at most `budget`
/// steps for each key. The first key that fails is reported.
pub fn check<K, V>(history: &[Operation<K, V>], budget: usize) -> Verdict<K>
where
    K: Clone + Ord,
    V: Clone + Eq + std::hash::Hash,
{
    let mut keys: Vec<&K> = history.iter().map(|op| &op.key).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let ops: Vec<usize> = (0..history.len())
            .filter(|&i| history[i].key == *key)
            .collect();
        match check_register(history, &ops, budget) {
            Search::Done => {}
            Search::Failed { explained, stuck } => {
                return Verdict::Violation {
                    key: key.clone(),
                    explained,
                    stuck,
                };
            }
            Search::GaveUp => {
                return Verdict::TooComplex {
                    key: key.clone(),
                    steps: budget,
                };
            }
        }
    }
    Verdict::Linearizable
}

/// The register's next state when `op` takes effect in `state` and
/// answers `outcome`; `None` when that answer is impossible there.
fn step<V: Clone + Eq>(state: &Option<V>, op: &Op<V>, outcome: &Outcome<V>) -> Option<Option<V>> {
    match (op, outcome) {
        (Op::Read, Outcome::Read(seen)) => (seen == state).then(|| state.clone()),
        (Op::Read, Outcome::Unknown) => Some(state.clone()),
        (Op::Set { when, to }, Outcome::Set(applied)) => {
            let holds = when.holds(state.as_ref());
            (holds == *applied).then(|| if holds { to.clone() } else { state.clone() })
        }
        (Op::Set { when, to }, Outcome::Unknown) => Some(if when.holds(state.as_ref()) {
            to.clone()
        } else {
            state.clone()
        }),
        // A read answered as a set, or the other way: never explained.
        _ => None,
    }
}

enum Search {
    Done,
    Failed {
        explained: Vec<usize>,
        stuck: Vec<usize>,
    },
    GaveUp,
}

/// A call or an answer, in the doubly linked list the search walks.
#[derive(Clone, Copy)]
struct Event {
    /// Index into the register's operations.
    op: usize,
    call: bool,
    prev: usize,
    next: usize,
    /// For a call: its answer's event (`NIL` for an unknown outcome).
    answer: usize,
}

const NIL: usize = usize::MAX;

fn check_register<K, V>(history: &[Operation<K, V>], ops: &[usize], budget: usize) -> Search
where
    V: Clone + Eq + std::hash::Hash,
{
    // Events in time order; at equal times calls first, so that operations
    // that touch at an instant count as concurrent (the lenient reading).
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
    for (i, &at) in ops.iter().enumerate() {
        let op = &history[at];
        order.push((op.called, true, i));
        // An unknown outcome has no answer, whatever time was recorded
        // for it (when the caller gave up is not when it took effect).
        if let (Some(answered), false) = (op.answered, op.outcome == Outcome::Unknown) {
            order.push((answered.max(op.called), false, i));
        }
    }
    order.sort_by_key(|&(time, call, i)| (time, !call, i));
    // Slot 0 is the head sentinel.
    let mut events = vec![Event {
        op: NIL,
        call: false,
        prev: NIL,
        next: NIL,
        answer: NIL,
    }];
    let mut call_of = vec![NIL; ops.len()];
    for (n, &(_, call, i)) in order.iter().enumerate() {
        let index = n + 1;
        events.push(Event {
            op: i,
            call,
            prev: index - 1,
            next: if n + 1 < order.len() { index + 1 } else { NIL },
            answer: NIL,
        });
        if call {
            call_of[i] = index;
        } else {
            events[call_of[i]].answer = index;
        }
    }
    events[0].next = if order.is_empty() { NIL } else { 1 };

    // Takes a call (and its answer) out of the list, or puts it back.
    fn lift(events: &mut [Event], call: usize) {
        let Event { prev, next, .. } = events[call];
        events[prev].next = next;
        if next != NIL {
            events[next].prev = prev;
        }
        let answer = events[call].answer;
        if answer != NIL {
            let Event { prev, next, .. } = events[answer];
            events[prev].next = next;
            if next != NIL {
                events[next].prev = prev;
            }
        }
    }
    fn unlift(events: &mut [Event], call: usize) {
        let answer = events[call].answer;
        if answer != NIL {
            let Event { prev, next, .. } = events[answer];
            events[prev].next = answer;
            if next != NIL {
                events[next].prev = answer;
            }
        }
        let Event { prev, next, .. } = events[call];
        events[prev].next = call;
        if next != NIL {
            events[next].prev = call;
        }
    }

    let mut taken = vec![0u64; ops.len().div_ceil(64)];
    let mut seen: HashSet<(Vec<u64>, Option<V>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<V>)> = Vec::new();
    let mut state: Option<V> = None;
    let mut best: Vec<usize> = Vec::new();
    let mut stuck: Vec<usize> = Vec::new();
    let mut steps = 0usize;
    let mut at = events[0].next;
    while events[0].next != NIL {
        steps += 1;
        if steps > budget {
            return Search::GaveUp;
        }
        // Past the last event, only calls whose configurations were
        // explored before are left: a dead end, as an answer is.
        let event = (at != NIL).then(|| events[at]);
        if let Some(event) = event.filter(|event| event.call) {
            let op = &history[ops[event.op]];
            if let Some(next) = step(&state, &op.op, &op.outcome) {
                let mut with = taken.clone();
                with[event.op / 64] |= 1 << (event.op % 64);
                if seen.insert((with.clone(), next.clone())) {
                    stack.push((at, state));
                    state = next;
                    taken = with;
                    lift(&mut events, at);
                    at = events[0].next;
                    continue;
                }
            }
            at = event.next;
        } else {
            // The answer of an operation not taken yet, or the end: undo.
            if stack.len() >= best.len() {
                best = stack
                    .iter()
                    .map(|&(call, _)| ops[events[call].op])
                    .collect();
                stuck.clear();
                let mut e = events[0].next;
                while e != NIL && events[e].call {
                    stuck.push(ops[events[e].op]);
                    e = events[e].next;
                }
            }
            let Some((call, previous)) = stack.pop() else {
                return Search::Failed {
                    explained: best,
                    stuck,
                };
            };
            state = previous;
            let op = events[call].op;
            taken[op / 64] &= !(1 << (op % 64));
            unlift(&mut events, call);
            at = events[call].next;
        }
    }
    Search::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    type History = Vec<Operation<&'static str, u32>>;

    fn read(seen: Option<u32>, called: u64, answered: u64) -> Operation<&'static str, u32> {
        Operation {
            key: "k",
            op: Op::Read,
            outcome: Outcome::Read(seen),
            called,
            answered: Some(answered),
        }
    }

    fn write(v: u32, called: u64, answered: u64) -> Operation<&'static str, u32> {
        Operation {
            key: "k",
            op: Op::Set {
                when: Condition::Always,
                to: Some(v),
            },
            outcome: Outcome::Set(true),
            called,
            answered: Some(answered),
        }
    }

    fn cas(
        from: u32,
        to: u32,
        applied: Option<bool>,
        called: u64,
        answered: Option<u64>,
    ) -> Operation<&'static str, u32> {
        Operation {
            key: "k",
            op: Op::Set {
                when: Condition::Equals(from),
                to: Some(to),
            },
            outcome: applied.map_or(Outcome::Unknown, Outcome::Set),
            called,
            answered,
        }
    }

    fn verdict(history: &History) -> Verdict<&'static str> {
        check(history, DEFAULT_BUDGET)
    }

    #[test]
    fn a_sequential_history_that_a_register_explains_passes() {
        let history = vec![
            read(None, 0, 1),
            write(1, 2, 3),
            read(Some(1), 4, 5),
            cas(1, 2, Some(true), 6, Some(7)),
            cas(1, 3, Some(false), 8, Some(9)),
            read(Some(2), 10, 11),
        ];
        assert_eq!(verdict(&history), Verdict::Linearizable);
    }

    #[test]
    fn overlapping_operations_may_take_effect_in_either_order() {
        // The read overlaps both writes: it may see either.
        for seen in [Some(1), Some(2), None] {
            let history = vec![write(1, 0, 10), write(2, 1, 11), read(seen, 2, 12)];
            assert_eq!(verdict(&history), Verdict::Linearizable, "{seen:?}");
        }
    }

    #[test]
    fn a_stale_read_after_a_completed_write_fails() {
        let history = vec![write(1, 0, 1), write(2, 2, 3), read(Some(1), 4, 5)];
        match verdict(&history) {
            Verdict::Violation { key, stuck, .. } => {
                assert_eq!(key, "k");
                assert_eq!(stuck, vec![2]);
            }
            other => panic!("a stale read passed: {other:?}"),
        }
    }

    #[test]
    fn two_compare_and_sets_from_one_value_cannot_both_apply() {
        let history = vec![
            write(0, 0, 1),
            cas(0, 1, Some(true), 2, Some(10)),
            cas(0, 2, Some(true), 3, Some(11)),
        ];
        assert!(matches!(verdict(&history), Verdict::Violation { .. }));
        // One applied, one did not: fine, in either order of answers.
        let history = vec![
            write(0, 0, 1),
            cas(0, 1, Some(true), 2, Some(10)),
            cas(0, 2, Some(false), 3, Some(11)),
            read(Some(1), 12, 13),
        ];
        assert_eq!(verdict(&history), Verdict::Linearizable);
    }

    #[test]
    fn an_unknown_outcome_may_apply_late_or_never() {
        // Never: nothing after it saw it.
        let never = vec![
            write(0, 0, 1),
            cas(0, 5, None, 2, None),
            read(Some(0), 3, 4),
        ];
        assert_eq!(verdict(&never), Verdict::Linearizable);
        // Late: after a read that did not see it, another that did.
        let late = vec![
            write(0, 0, 1),
            cas(0, 5, None, 2, None),
            read(Some(0), 3, 4),
            read(Some(5), 5, 6),
        ];
        assert_eq!(verdict(&late), Verdict::Linearizable);
        // But not undone: once seen, it stays.
        let flicker = vec![
            write(0, 0, 1),
            cas(0, 5, None, 2, None),
            read(Some(5), 3, 4),
            read(Some(0), 5, 6),
        ];
        assert!(matches!(verdict(&flicker), Verdict::Violation { .. }));
        // The time its caller gave up is no bound on when it took effect.
        let gave_up = vec![
            write(0, 0, 1),
            cas(0, 5, None, 2, Some(3)),
            read(Some(0), 4, 5),
            read(Some(5), 6, 7),
        ];
        assert_eq!(verdict(&gave_up), Verdict::Linearizable);
    }

    #[test]
    fn a_value_no_one_wrote_fails() {
        let history = vec![write(1, 0, 1), read(Some(7), 2, 3)];
        assert!(matches!(verdict(&history), Verdict::Violation { .. }));
    }

    #[test]
    fn conditions_absent_and_present_and_deletes() {
        let set = |when, to, applied, t: u64| Operation {
            key: "k",
            op: Op::Set { when, to },
            outcome: Outcome::Set(applied),
            called: t,
            answered: Some(t + 1),
        };
        let ok = vec![
            set(Condition::Absent, Some(1), true, 0),
            set(Condition::Absent, Some(2), false, 2),
            set(Condition::Present, None, true, 4),
            set(Condition::Present, Some(3), false, 6),
            read(None, 8, 9),
        ];
        assert_eq!(verdict(&ok), Verdict::Linearizable);
        let bad = vec![
            set(Condition::Absent, Some(1), true, 0),
            set(Condition::Absent, Some(2), true, 2),
        ];
        assert!(matches!(verdict(&bad), Verdict::Violation { .. }));
    }

    #[test]
    fn keys_are_checked_apart_and_the_failing_one_is_named() {
        let mut history = vec![write(1, 0, 1), read(Some(1), 2, 3)];
        history.push(Operation {
            key: "other",
            ..read(Some(9), 0, 1)
        });
        match verdict(&history) {
            Verdict::Violation { key, .. } => assert_eq!(key, "other"),
            other => panic!("{other:?}"),
        }
    }

    proptest::proptest! {
        /// No false alarms: operations that really took effect one at a
        /// time, each at some instant between its call and its answer, on
        /// one register (some answers then lost), always pass.
        #[test]
        fn histories_of_a_real_register_pass(
            ops in proptest::collection::vec(
                (0u64..200, 1u64..50, 0u64..100, 0u8..4, 0u32..3, 0u32..3, proptest::bool::ANY),
                1..24,
            )
        ) {
            // (call, duration, where in it the effect falls (percent),
            // kind, a, b, answer lost)
            let mut timed: Vec<(u64, usize)> = ops
                .iter()
                .enumerate()
                .map(|(i, &(call, len, at, ..))| (call * 100 + len * at, i))
                .collect();
            timed.sort();
            let mut state: Option<u32> = None;
            let mut history: History = vec![read(None, 0, 0); ops.len()];
            for (_, i) in timed {
                let (call, len, _, kind, a, b, lost) = ops[i];
                let (op, outcome) = match kind {
                    0 => (Op::Read, Outcome::Read(state)),
                    1 => {
                        state = Some(a);
                        (Op::Set { when: Condition::Always, to: Some(a) }, Outcome::Set(true))
                    }
                    2 => {
                        let applied = state == Some(a);
                        if applied {
                            state = Some(b);
                        }
                        (Op::Set { when: Condition::Equals(a), to: Some(b) }, Outcome::Set(applied))
                    }
                    _ => {
                        let applied = state.is_none();
                        if applied {
                            state = Some(b);
                        }
                        (Op::Set { when: Condition::Absent, to: Some(b) }, Outcome::Set(applied))
                    }
                };
                history[i] = Operation {
                    key: "k",
                    op,
                    outcome: if lost { Outcome::Unknown } else { outcome },
                    called: call * 100,
                    answered: (!lost).then_some(call * 100 + len * 100),
                };
            }
            proptest::prop_assert_eq!(verdict(&history), Verdict::Linearizable);
            // And a read answering a value nobody wrote is caught.
            if let Some(i) = history.iter().position(|op| matches!(op.outcome, Outcome::Read(_))) {
                history[i].outcome = Outcome::Read(Some(99));
                let caught = matches!(verdict(&history), Verdict::Violation { .. });
                proptest::prop_assert!(caught);
            }
        }
    }

    #[test]
    fn a_search_past_its_budget_says_so() {
        // Many overlapping writes and a read nobody wrote: every order is
        // tried before the failure is known.
        let mut history: History = (0..12).map(|v| write(v, 0, 100)).collect();
        history.push(read(Some(99), 50, 101));
        assert!(matches!(
            check(&history, 1_000),
            Verdict::TooComplex { steps: 1_000, .. }
        ));
        assert!(matches!(
            check(&history, DEFAULT_BUDGET),
            Verdict::Violation { .. }
        ));
    }
}
