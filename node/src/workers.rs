//! Named work: every task the node's own code starts runs under a name, so
//! an operator can see what runs, how much of it, what ended and why it
//! failed (`ringkv tpstats`, and the web console's "running work"). Tasks
//! that libraries start inside (tonic's and axum's connections, gossip's)
//! are theirs to run and are not listed.
//!
//! A [`Workers`] value is a set of tasks that stop together (it owns a
//! tokio `TaskTracker`); [`Workers::sibling`] makes another set that shares
//! the same table of names, so the node's request work, its internode API
//! and its background workers stop in their own order yet are listed as
//! one.
//!
//! 1. `workers.spawn("gossip", future)` runs `future` as a task counted
//!    under "gossip". Many tasks may share a name (one per connection, one
//!    per request): the table counts how many run, ended and failed.
//! 2. The future's output says how it ended: `()` is a normal end; a
//!    `Result` whose error is kept, with when, as the name's last error. A
//!    panic is a failure too ("panicked"), caught by a guard the task
//!    holds; a task dropped by its runtime before its end is counted as
//!    done, not failed.
//! 3. A long-running worker may report an error that did not end it (a
//!    repair round that failed, a peer it could not reach) through its
//!    [`Worker`] handle, and a name may carry a status: a closure the table
//!    calls when it is read, so the worker pays nothing until someone
//!    looks (Garage's `Worker::status` is the model). The status holds
//!    what it describes weakly: the table lives as long as the node's
//!    tasks, and must not keep alive (in a cycle, for good) the parts of
//!    the node it describes.
//!
//! CAVEATS: names are kept for the life of the process (there are a few
//! dozen, fixed in the code), and a status closure runs on the reader's
//! thread: it must be cheap and must not block.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

/// A status: lines describing what a worker is doing right now (none: idle).
type Describe = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// A set of tasks that stop together, and the table of names it shares
/// with its siblings.
#[derive(Clone, Default)]
pub struct Workers {
    tasks: TaskTracker,
    table: Arc<Table>,
}

#[derive(Default)]
struct Table {
    by_name: Mutex<BTreeMap<Cow<'static, str>, Arc<Counts>>>,
}

/// One name in the table: spawns tasks under it and records how they end.
#[derive(Clone)]
pub struct Worker {
    tasks: TaskTracker,
    counts: Arc<Counts>,
}

struct Counts {
    name: Cow<'static, str>,
    running: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    /// Whether the last task to end failed.
    last_failed: AtomicBool,
    last_error: Mutex<Option<Failure>>,
    describe: Mutex<Option<Describe>>,
}

/// An error a worker reported, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub at: SystemTime,
}

/// One name in the table, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStatus {
    pub name: String,
    pub state: State,
    /// Tasks under way.
    pub running: u64,
    /// Tasks that ended normally.
    pub done: u64,
    /// Tasks that ended with an error or a panic.
    pub failed: u64,
    /// The last error, whether it ended a task or was reported by one.
    pub last_error: Option<Failure>,
    /// What the worker says it is doing (empty: nothing to say).
    pub status: Vec<String>,
}

/// What a name's tasks amount to, in one word: running while any runs;
/// else failed if the last to end failed, done if it did not, idle if none
/// ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum State {
    Running,
    Failed,
    Done,
    Idle,
}

/// How a task's output says it ended.
pub trait Outcome {
    /// The error it ended with, if any.
    fn failure(self) -> Option<String>;
}

impl Outcome for () {
    fn failure(self) -> Option<String> {
        None
    }
}

impl<E: Display> Outcome for Result<(), E> {
    fn failure(self) -> Option<String> {
        // `{:#}` gives an `anyhow` error's whole chain.
        self.err().map(|error| format!("{error:#}"))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Workers {
    pub fn new() -> Self {
        Self::default()
    }

    /// A set of tasks that stops on its own (`close`, `wait`) but is listed
    /// in the same table as this one.
    pub fn sibling(&self) -> Self {
        Self {
            tasks: TaskTracker::new(),
            table: self.table.clone(),
        }
    }

    /// The handle of `name` in this set (made on first use).
    pub fn worker(&self, name: impl Into<Cow<'static, str>>) -> Worker {
        let name = name.into();
        let counts = lock(&self.table.by_name)
            .entry(name.clone())
            .or_insert_with(|| {
                Arc::new(Counts {
                    name,
                    running: AtomicU64::new(0),
                    done: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                    last_failed: AtomicBool::new(false),
                    last_error: Mutex::new(None),
                    describe: Mutex::new(None),
                })
            })
            .clone();
        Worker {
            tasks: self.tasks.clone(),
            counts,
        }
    }

    /// Runs `work` as a task of this set, under `name`.
    pub fn spawn<F>(&self, name: impl Into<Cow<'static, str>>, work: F) -> JoinHandle<()>
    where
        F: Future + Send + 'static,
        F::Output: Outcome + Send,
    {
        self.worker(name).spawn(work)
    }

    /// Every name of the table, sorted.
    pub fn snapshot(&self) -> Vec<WorkerStatus> {
        let names: Vec<Arc<Counts>> = lock(&self.table.by_name).values().cloned().collect();
        // Outside the table's lock: a status closure may take its own.
        names.iter().map(|counts| counts.status()).collect()
    }

    /// Tasks of this set under way.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Refuses nothing (tasks may still be spawned), but lets `wait` end
    /// once the running tasks have.
    pub fn close(&self) {
        self.tasks.close();
    }

    /// Until this set is closed and its tasks have ended.
    pub async fn wait(&self) {
        self.tasks.wait().await;
    }
}

/// Held by a running task: counts its end, including a panic's.
struct Running {
    counts: Arc<Counts>,
    ended: bool,
}

impl Running {
    fn end(mut self, failure: Option<String>) {
        self.ended = true;
        self.counts.ended(failure);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.ended {
            // Dropped unfinished: by a panic, or by a runtime shutting down.
            let panicked = std::thread::panicking();
            self.counts.ended(panicked.then(|| "panicked".to_owned()));
        }
        self.counts.running.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Counts {
    fn ended(&self, failure: Option<String>) {
        let failed = failure.is_some();
        if let Some(message) = failure {
            self.report(message);
            self.failed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.done.fetch_add(1, Ordering::Relaxed);
        }
        self.last_failed.store(failed, Ordering::Relaxed);
    }

    fn report(&self, message: String) {
        *lock(&self.last_error) = Some(Failure {
            message,
            at: SystemTime::now(),
        });
    }
}

impl Worker {
    pub fn name(&self) -> &str {
        &self.counts.name
    }

    /// Runs `work` as a task under this name.
    pub fn spawn<F>(&self, work: F) -> JoinHandle<()>
    where
        F: Future + Send + 'static,
        F::Output: Outcome + Send,
    {
        self.counts.running.fetch_add(1, Ordering::Relaxed);
        let running = Running {
            counts: self.counts.clone(),
            ended: false,
        };
        self.tasks.spawn(async move {
            let running = running;
            let outcome = work.await;
            running.end(outcome.failure());
        })
    }

    /// Records an error that did not end the worker.
    pub fn report(&self, error: impl Display) {
        self.counts.report(format!("{error:#}"));
    }

    /// Sets what the table asks when it is read: `status` of `source`
    /// while something else keeps `source` alive, nothing after (see the
    /// module docs).
    pub fn describe<T: Send + Sync + 'static>(
        &self,
        source: &Arc<T>,
        status: impl Fn(&T) -> Vec<String> + Send + Sync + 'static,
    ) {
        let source = Arc::downgrade(source);
        let describe = move || {
            source
                .upgrade()
                .map(|source| status(&source))
                .unwrap_or_default()
        };
        *lock(&self.counts.describe) = Some(Arc::new(describe));
    }

    pub fn status(&self) -> WorkerStatus {
        self.counts.status()
    }
}

impl Counts {
    fn status(&self) -> WorkerStatus {
        let counts = self;
        let describe = lock(&counts.describe).clone();
        let running = counts.running.load(Ordering::Relaxed);
        let done = counts.done.load(Ordering::Relaxed);
        let failed = counts.failed.load(Ordering::Relaxed);
        let state = if running > 0 {
            State::Running
        } else if counts.last_failed.load(Ordering::Relaxed) {
            State::Failed
        } else if done + failed > 0 {
            State::Done
        } else {
            State::Idle
        };
        WorkerStatus {
            name: counts.name.to_string(),
            state,
            running,
            done,
            failed,
            last_error: lock(&counts.last_error).clone(),
            status: describe.map(|describe| describe()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn of<'a>(snapshot: &'a [WorkerStatus], name: &str) -> &'a WorkerStatus {
        snapshot
            .iter()
            .find(|w| w.name == name)
            .unwrap_or_else(|| panic!("{name} is listed"))
    }

    #[tokio::test]
    async fn tasks_are_counted_by_name_until_they_end() {
        let workers = Workers::new();
        let (release, released) = oneshot::channel::<()>();
        workers.spawn("held", async move {
            let _ = released.await;
        });
        for _ in 0..3 {
            workers.spawn("quick", async {});
        }
        workers.close();
        // "quick" ends on its own; "held" waits to be released.
        let quick = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                let snapshot = workers.snapshot();
                if of(&snapshot, "quick").done == 3 {
                    return snapshot;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the quick tasks end");
        assert_eq!(of(&quick, "held").running, 1);
        assert_eq!(of(&quick, "held").state, State::Running);
        assert_eq!(of(&quick, "quick").state, State::Done);
        assert_eq!(workers.len(), 1);
        let _ = release.send(());
        workers.wait().await;
        let snapshot = workers.snapshot();
        let names: Vec<_> = snapshot.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["held", "quick"]);
        assert_eq!(of(&snapshot, "held").done, 1);
        assert_eq!(of(&snapshot, "held").running, 0);
        assert!(workers.is_empty());
    }

    #[tokio::test]
    async fn an_error_or_a_panic_is_a_failure_with_its_message() {
        let workers = Workers::new();
        workers.spawn("fails", async {
            Err::<(), _>(anyhow::anyhow!("disk full"))
        });
        workers.spawn("panics", async {
            if std::hint::black_box(true) {
                panic!("a bug");
            }
        });
        workers.spawn("ok", async { Ok::<(), String>(()) });
        workers.close();
        workers.wait().await;
        let snapshot = workers.snapshot();
        let fails = of(&snapshot, "fails");
        assert_eq!((fails.failed, fails.state), (1, State::Failed));
        assert_eq!(
            fails.last_error.as_ref().map(|f| f.message.as_str()),
            Some("disk full")
        );
        let panics = of(&snapshot, "panics");
        assert_eq!((panics.failed, panics.running), (1, 0));
        assert_eq!(
            panics.last_error.as_ref().map(|f| f.message.as_str()),
            Some("panicked")
        );
        let ok = of(&snapshot, "ok");
        assert_eq!((ok.done, ok.failed, ok.last_error.clone()), (1, 0, None));
    }

    #[tokio::test]
    async fn siblings_share_the_table_but_stop_on_their_own() {
        let workers = Workers::new();
        let peer = workers.sibling();
        let (release, released) = oneshot::channel::<()>();
        peer.spawn("peer API", async move {
            let _ = released.await;
        });
        workers.spawn("gossip", async {});
        workers.close();
        workers.wait().await;
        // The sibling's task still runs, and both are listed.
        assert_eq!(peer.len(), 1);
        let snapshot = workers.snapshot();
        assert_eq!(of(&snapshot, "peer API").running, 1);
        assert_eq!(of(&snapshot, "gossip").done, 1);
        let _ = release.send(());
        peer.close();
        peer.wait().await;
    }

    #[test]
    fn a_worker_reports_errors_and_describes_itself_when_read() {
        let workers = Workers::new();
        let repair = workers.worker("anti-entropy");
        let step = Arc::new(AtomicU64::new(0));
        repair.describe(&step, |step| match step.load(Ordering::Relaxed) {
            0 => Vec::new(),
            n => vec![format!("{n} of 4 ranges compared")],
        });
        assert_eq!(repair.status().status, Vec::<String>::new());
        step.store(3, Ordering::Relaxed);
        repair.report(anyhow::anyhow!("node-2 did not answer"));
        let status = of(&workers.snapshot(), "anti-entropy").clone();
        assert_eq!(status.status, ["3 of 4 ranges compared"]);
        assert_eq!(
            status.last_error.map(|f| f.message),
            Some("node-2 did not answer".to_owned())
        );
        // Reported, not ended: nothing failed, nothing runs.
        assert_eq!((status.failed, status.state), (0, State::Idle));
        // The table does not keep what it describes alive.
        let source = Arc::downgrade(&step);
        drop(step);
        assert!(source.upgrade().is_none());
        assert_eq!(repair.status().status, Vec::<String>::new());
    }
}
