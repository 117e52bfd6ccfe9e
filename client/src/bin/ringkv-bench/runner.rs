//! Running a phase: workers, pacing, measurement, progress.
//!
//! **Closed loop** (`--concurrency N`): N workers each send an operation,
//! wait for the answer, and send the next. Latency is measured from send to
//! answer. Throughput is whatever the system sustains.
//!
//! **Open loop** (`--rate R`): operation i is *intended* to start at
//! `t0 + i/R`, whether or not earlier ones have finished; at most
//! `concurrency` are in flight. Latency is measured from the intended
//! start, not the actual one. When the system falls behind, operations
//! queue, and that queueing shows up in the latencies — which is the
//! correction for coordinated omission: a closed-loop tester (or one that
//! measures from the actual send) stops sending while the system stalls,
//! and so never records the requests that would have waited.
//!
//! Operations finishing during `--warmup` are not recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::driver::Driver;
use crate::error::DriverError;
use crate::keys::{KeyChooser, key};
use crate::stats::{Errors, PerOp, Report};
use crate::workload::{Mix, OpKind};

/// Load inserts the records; run operates on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Load,
    Run,
}

/// When a phase ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Ops(u64),
    Duration(Duration),
}

/// Everything a phase needs.
#[derive(Debug, Clone)]
pub struct Spec {
    pub phase: Phase,
    pub mix: Mix,
    pub keys: KeyChooser,
    pub key_prefix: String,
    pub records: u64,
    pub value_size: usize,
    pub concurrency: usize,
    /// Operations per second (open loop); `None`: closed loop.
    pub rate: Option<f64>,
    pub limit: Limit,
    pub warmup: Duration,
    pub seed: u64,
    pub progress: bool,
    /// Records are rows of partitions (`--rows-per-partition`).
    pub rows: Option<RowShape>,
}

/// How records map to rows, and the sizes of the row operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowShape {
    /// Record i is row `i % per_partition` of partition `i / per_partition`.
    pub per_partition: u64,
    /// A scan reads 1 to this many rows.
    pub scan_max: u32,
    /// Rows a `latest` reads.
    pub latest: u32,
    /// Rows of a batch.
    pub batch_size: usize,
}

impl RowShape {
    /// The partition key and sort key of record `index`.
    pub fn row(&self, prefix: &str, index: u64) -> (String, String) {
        let per = self.per_partition.max(1);
        (key(prefix, index / per), format!("{:08}", index % per))
    }

    /// Partitions `records` records fill.
    pub fn partitions(&self, records: u64) -> u64 {
        records.div_ceil(self.per_partition.max(1)).max(1)
    }
}

/// When operation `seq` is meant to start in an open loop at `rate`.
pub fn intended_start(t0: Instant, seq: u64, rate: f64) -> Instant {
    t0 + Duration::from_secs_f64(seq as f64 / rate)
}

/// State shared by the workers of a phase.
struct Shared {
    spec: Spec,
    t0: Instant,
    next_op: AtomicU64,
    /// Records that exist (loaded plus inserted so far).
    existing: AtomicU64,
    next_insert: AtomicU64,
    /// Sort keys of appended and batched rows, increasing.
    next_row: AtomicU64,
    rows_read: AtomicU64,
    rows_written: AtomicU64,
    errors: Errors,
    interval: Mutex<PerOp>,
    values: Vec<Bytes>,
    stop: AtomicBool,
}

impl Shared {
    /// The sequence number of the next operation, or `None` when the
    /// phase is over.
    fn claim(&self) -> Option<u64> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let seq = self.next_op.fetch_add(1, Ordering::Relaxed);
        match self.spec.limit {
            Limit::Ops(n) if seq >= n => None,
            Limit::Duration(d) if self.t0.elapsed() >= d + self.spec.warmup => None,
            _ => Some(seq),
        }
    }
}

/// Runs one operation against `driver`.
async fn execute(
    driver: &mut Driver,
    shared: &Shared,
    kind: OpKind,
    seq: u64,
    rng: &mut StdRng,
) -> Result<(), DriverError> {
    let spec = &shared.spec;
    let value = &shared.values[rng.random_range(0..shared.values.len())];
    let existing = shared.existing.load(Ordering::Relaxed);
    if let Some(rows) = &spec.rows {
        return execute_rows(driver, shared, rows, (kind, seq), rng).await;
    }
    let pick = |rng: &mut StdRng| key(&spec.key_prefix, spec.keys.next(existing, rng));
    match kind {
        OpKind::Read => driver.get(&pick(rng)).await.map(|_| ()),
        OpKind::Update => driver.put(&pick(rng), value).await,
        OpKind::Delete => driver.delete(&pick(rng)).await,
        OpKind::Insert => {
            let index = match spec.phase {
                Phase::Load => seq,
                Phase::Run => shared.next_insert.fetch_add(1, Ordering::Relaxed),
            };
            driver.insert(&key(&spec.key_prefix, index), value).await?;
            shared.existing.fetch_max(index + 1, Ordering::Relaxed);
            Ok(())
        }
        OpKind::ReadModifyWrite => {
            let key = pick(rng);
            driver.get(&key).await?;
            driver.put(&key, value).await
        }
        OpKind::Scan | OpKind::Latest | OpKind::Append | OpKind::Batch => Err(DriverError::other(
            "scan, latest, append and batch work on rows: give --rows-per-partition",
        )),
    }
}

/// Runs one operation on rows (see [`RowShape`]).
async fn execute_rows(
    driver: &mut Driver,
    shared: &Shared,
    rows: &RowShape,
    (kind, seq): (OpKind, u64),
    rng: &mut StdRng,
) -> Result<(), DriverError> {
    let spec = &shared.spec;
    let prefix = spec.key_prefix.as_str();
    let value = shared.values[rng.random_range(0..shared.values.len())].clone();
    let value = &value;
    let existing = shared.existing.load(Ordering::Relaxed);
    // (Plain values, not closures: the future must stay Send.)
    let picked = rows.row(prefix, spec.keys.next(existing, rng));
    let any_partition = key(prefix, rng.random_range(0..rows.partitions(existing)));
    let (read, written) = match kind {
        OpKind::Read => {
            let (partition, sort) = picked;
            let found = driver.get_row(&partition, &sort).await?;
            (u64::from(found.is_some()), 0)
        }
        OpKind::Update => {
            let (partition, sort) = picked;
            driver.put_row(&partition, &sort, value).await?;
            (0, 1)
        }
        OpKind::Delete => {
            let (partition, sort) = picked;
            driver.delete_row(&partition, &sort).await?;
            (0, 1)
        }
        OpKind::Insert => {
            let index = match spec.phase {
                Phase::Load => seq,
                Phase::Run => shared.next_insert.fetch_add(1, Ordering::Relaxed),
            };
            let (partition, sort) = rows.row(prefix, index);
            driver.insert_row(&partition, &sort, value).await?;
            shared.existing.fetch_max(index + 1, Ordering::Relaxed);
            (0, 1)
        }
        OpKind::ReadModifyWrite => {
            let (partition, sort) = picked;
            driver.get_row(&partition, &sort).await?;
            driver.put_row(&partition, &sort, value).await?;
            (1, 1)
        }
        OpKind::Scan => {
            let (partition, sort) = picked;
            let length = rng.random_range(1..=rows.scan_max.max(1));
            (driver.scan(&partition, &sort, length).await?, 0)
        }
        OpKind::Latest => (driver.latest(&any_partition, rows.latest.max(1)).await?, 0),
        OpKind::Append => {
            let partition = any_partition;
            let n = shared.next_row.fetch_add(1, Ordering::Relaxed);
            driver
                .insert_row(&partition, &format!("t{n:016}"), value)
                .await?;
            (0, 1)
        }
        OpKind::Batch => {
            let partition = any_partition;
            let n = shared.next_row.fetch_add(1, Ordering::Relaxed);
            let mut batch: Vec<(String, Bytes)> = Vec::with_capacity(rows.batch_size.max(1));
            for j in 0..rows.batch_size.max(1) {
                let value = shared.values[rng.random_range(0..shared.values.len())].clone();
                batch.push((format!("b{n:016}-{j:04}"), value));
            }
            driver.batch(&partition, &batch).await?;
            (0, batch.len() as u64)
        }
    };
    shared.rows_read.fetch_add(read, Ordering::Relaxed);
    shared.rows_written.fetch_add(written, Ordering::Relaxed);
    Ok(())
}

async fn worker(mut driver: Driver, shared: Arc<Shared>, id: u64) -> PerOp {
    let mut rng = StdRng::seed_from_u64(shared.spec.seed.wrapping_add(id));
    let mut recorded = PerOp::default();
    let warmup_end = shared.t0 + shared.spec.warmup;
    while let Some(seq) = shared.claim() {
        let started = match shared.spec.rate {
            Some(rate) => {
                let intended = intended_start(shared.t0, seq, rate);
                tokio::time::sleep_until(intended).await;
                intended
            }
            None => Instant::now(),
        };
        let kind = match shared.spec.phase {
            Phase::Load => OpKind::Insert,
            Phase::Run => shared.spec.mix.sample(&mut rng),
        };
        let outcome = execute(&mut driver, &shared, kind, seq, &mut rng).await;
        let finished = Instant::now();
        if finished < warmup_end {
            continue;
        }
        match outcome {
            Ok(()) => {
                let latency = finished - started;
                recorded.record(kind, latency);
                shared.interval.lock().await.record(kind, latency);
            }
            Err(error) => shared.errors.record(error.kind, &error.message),
        }
    }
    recorded
}

/// Runs a phase with `driver`.
pub async fn run(driver: &Driver, spec: Spec) -> Result<Report, String> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let values = (0..64)
        .map(|_| {
            let mut v = vec![0u8; spec.value_size];
            rng.fill(&mut v[..]);
            Bytes::from(v)
        })
        .collect();
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        next_op: AtomicU64::new(0),
        existing: AtomicU64::new(if spec.phase == Phase::Load {
            0
        } else {
            spec.records
        }),
        next_insert: AtomicU64::new(spec.records),
        next_row: AtomicU64::new(0),
        rows_read: AtomicU64::new(0),
        rows_written: AtomicU64::new(0),
        errors: Errors::default(),
        interval: Mutex::new(PerOp::default()),
        values,
        stop: AtomicBool::new(false),
        spec,
    });
    let mut tasks = Vec::new();
    for id in 0..shared.spec.concurrency.max(1) {
        let driver = driver.for_worker().await?;
        tasks.push(tokio::spawn(worker(driver, shared.clone(), id as u64)));
    }
    let reporter = tokio::spawn(report_progress(shared.clone()));
    let mut latencies = PerOp::default();
    for task in tasks {
        let recorded = task.await.map_err(|e| format!("worker failed: {e}"))?;
        latencies.merge(&recorded);
    }
    let measured = shared.t0.elapsed().saturating_sub(shared.spec.warmup);
    shared.stop.store(true, Ordering::Relaxed);
    let intervals = reporter
        .await
        .map_err(|e| format!("progress task failed: {e}"))?;
    Ok(Report {
        phase: match shared.spec.phase {
            Phase::Load => "load",
            Phase::Run => "run",
        },
        elapsed: measured,
        latencies,
        unavailable: shared.errors.count(crate::error::ErrorKind::Unavailable),
        timeouts: shared.errors.count(crate::error::ErrorKind::Timeout),
        overloaded: shared.errors.count(crate::error::ErrorKind::Overloaded),
        other_errors: shared.errors.count(crate::error::ErrorKind::Other),
        first_error: shared.errors.first(),
        first_of_each: shared.errors.first_of_each(),
        intervals,
        rows_read: shared.rows_read.load(Ordering::Relaxed),
        rows_written: shared.rows_written.load(Ordering::Relaxed),
    })
}

/// Prints a progress line every second and keeps the interval histograms.
async fn report_progress(
    shared: Arc<Shared>,
) -> Vec<(Duration, Duration, OpKind, hdrhistogram::Histogram<u64>)> {
    let mut intervals = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last_errors = 0;
    let mut last = Instant::now();
    loop {
        let stopping = shared.stop.load(Ordering::Relaxed);
        if !stopping {
            tick.tick().await;
        }
        let now = Instant::now();
        let snapshot = {
            let mut interval = shared.interval.lock().await;
            let copy = interval.clone();
            interval.reset();
            copy
        };
        let length = now - last;
        let start = last - shared.t0;
        last = now;
        let all = snapshot.all();
        let errors = shared.errors.total();
        if shared.spec.progress && !all.is_empty() {
            eprintln!(
                "[{:>5.0}s] {:>8.0} ops/s  p99 {:>8.3} ms  errors {}",
                (now - shared.t0).as_secs_f64(),
                all.len() as f64 / length.as_secs_f64().max(1e-9),
                all.value_at_quantile(0.99) as f64 / 1000.0,
                errors - last_errors
            );
        }
        last_errors = errors;
        for kind in OpKind::ALL {
            let h = &snapshot.histograms[kind.index()];
            if !h.is_empty() {
                intervals.push((start, length, kind, h.clone()));
            }
        }
        if stopping {
            return intervals;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::keys::Distribution;
    use std::sync::atomic::AtomicU64;

    /// A store that takes `delay` per operation and fails every
    /// `fail_every`-th one (alternating timeout and unavailable).
    pub struct FakeStore {
        pub delay: Duration,
        pub fail_every: u64,
        pub calls: AtomicU64,
    }

    impl FakeStore {
        async fn op(&self) -> Result<(), DriverError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            if self.fail_every > 0 && n.is_multiple_of(self.fail_every) {
                let kind = if (n / self.fail_every).is_multiple_of(2) {
                    ErrorKind::Unavailable
                } else {
                    ErrorKind::Timeout
                };
                return Err(DriverError {
                    kind,
                    message: format!("failure {n}"),
                });
            }
            Ok(())
        }

        pub async fn get(&self, _key: &str) -> Result<Option<Bytes>, DriverError> {
            self.op().await.map(|()| None)
        }

        pub async fn put(&self, _key: &str) -> Result<(), DriverError> {
            self.op().await
        }
    }

    fn spec(rate: Option<f64>, concurrency: usize, ops: u64) -> Spec {
        Spec {
            phase: Phase::Run,
            mix: "read=1".parse().expect("mix"),
            keys: KeyChooser::new(Distribution::Uniform, 100).expect("keys"),
            key_prefix: "k".into(),
            records: 100,
            value_size: 8,
            concurrency,
            rate,
            limit: Limit::Ops(ops),
            warmup: Duration::ZERO,
            seed: 1,
            progress: false,
            rows: None,
        }
    }

    fn fake(delay_ms: u64, fail_every: u64) -> Driver {
        Driver::Fake(Arc::new(FakeStore {
            delay: Duration::from_millis(delay_ms),
            fail_every,
            calls: AtomicU64::new(0),
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_charges_queueing_to_latency() {
        // 100 ops/s intended, but each takes 30 ms and only one may be in
        // flight: the system falls further behind with every operation.
        let report = run(&fake(30, 0), spec(Some(100.0), 1, 20))
            .await
            .expect("run");
        let reads = &report.latencies.histograms[OpKind::Read.index()];
        assert_eq!(reads.len(), 20);
        // Operation i starts at 30·i ms but was due at 10·i ms: its latency
        // is 30 + 20·i ms; the last one waited 30 + 380 = 410 ms.
        assert!(reads.max() >= 400_000, "max {} µs", reads.max());
        assert!(reads.min() <= 31_000, "min {} µs", reads.min());
        // A closed loop on the same system sees only the service time.
        let closed = run(&fake(30, 0), spec(None, 1, 20)).await.expect("run");
        let reads = &closed.latencies.histograms[OpKind::Read.index()];
        assert!(reads.max() < 35_000, "closed-loop max {} µs", reads.max());
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_keeps_the_intended_rate_when_the_system_keeps_up() {
        let report = run(&fake(1, 0), spec(Some(200.0), 4, 400))
            .await
            .expect("run");
        // 400 ops at 200/s: two seconds, latencies at the service time.
        let secs = report.elapsed.as_secs_f64();
        assert!((1.9..2.2).contains(&secs), "took {secs} s");
        assert!(report.latencies.all().max() < 5_000);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_counted_not_timed() {
        let report = run(&fake(1, 5), spec(None, 3, 100)).await.expect("run");
        assert_eq!(report.successes() + report.errors(), 100);
        assert_eq!(report.errors(), 20, "every 5th of 100 operations failed");
        assert_eq!(report.timeouts, 10);
        assert_eq!(report.unavailable, 10);
        assert_eq!(report.other_errors, 0);
        assert_eq!(report.successes(), 80);
        assert!(report.first_error.is_some());
        let json = report.json();
        assert_eq!(json["errors"]["timeout"], 10);
        assert_eq!(json["ops"]["read"]["count"], 80);
    }

    /// Row operations address rows of partitions, count the rows they
    /// read and write, and are refused without --rows-per-partition.
    #[tokio::test(start_paused = true)]
    async fn row_workloads_count_rows_and_need_a_row_shape() {
        let shape = RowShape {
            per_partition: 10,
            scan_max: 5,
            latest: 20,
            batch_size: 10,
        };
        assert_eq!(
            shape.row("p", 23),
            ("p000000000002".into(), "00000003".into())
        );
        assert_eq!(shape.partitions(100), 10);
        assert_eq!(shape.partitions(101), 11);
        let mut rows = spec(None, 2, 40);
        rows.mix = "latest=1,batch=1".parse().expect("mix");
        rows.rows = Some(shape);
        let report = run(&fake(1, 0), rows).await.expect("run");
        let latest = report.latencies.histograms[OpKind::Latest.index()].len();
        let batches = report.latencies.histograms[OpKind::Batch.index()].len();
        assert_eq!(latest + batches, 40);
        assert_eq!(
            report.rows_read,
            latest * 20,
            "the fake answers every row asked"
        );
        assert_eq!(report.rows_written, batches * 10);
        let mut plain = spec(None, 1, 5);
        plain.mix = "scan=1".parse().expect("mix");
        let report = run(&fake(1, 0), plain).await.expect("run");
        assert_eq!(report.other_errors, 5);
        assert!(
            report
                .first_error
                .as_ref()
                .is_some_and(|e| e.contains("--rows-per-partition")),
            "{:?}",
            report.first_error
        );
    }

    #[test]
    fn intended_starts_are_evenly_spaced() {
        let t0 = Instant::now();
        assert_eq!(intended_start(t0, 0, 100.0), t0);
        assert_eq!(
            intended_start(t0, 50, 100.0) - t0,
            Duration::from_millis(500)
        );
    }
}
