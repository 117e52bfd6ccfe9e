//! `ringkv-bench`: a YCSB-style load generator for ringkv, Redis, etcd,
//! Garage K2V and RocksDB in-process, so that they are measured by the same tool.
//!
//! ```text
//! ringkv-bench load --target ringkv://127.0.0.1:7400 --records 100000
//! ringkv-bench run  --target ringkv://127.0.0.1:7400 --workload a --duration 30 --concurrency 32
//! ringkv-bench run  --target redis://127.0.0.1:6379 --workload c --rate 20000 --json out.json
//! ```
//!
//! Prints a progress line each second and a final table of throughput and
//! latency percentiles per operation; `--json` and `--hdr-log` keep the
//! details. Exit status 1 if the target cannot be reached, 2 on bad usage.

mod driver;
mod error;
mod k2v;
mod keys;
mod runner;
mod stats;
mod workload;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ringkv_client::Consistency;
use ringkv_client::cli::{TlsArgs, UserArgs};

use driver::{Driver, Target};
use keys::{Distribution, KeyChooser};
use runner::{Limit, Phase, Spec};
use workload::{Mix, WorkloadName};

#[derive(Debug, Parser)]
#[command(
    name = "ringkv-bench",
    version,
    about = "YCSB-style load generator for ringkv and its peers",
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    phase: PhaseArg,
}

#[derive(Debug, Subcommand)]
enum PhaseArg {
    /// Insert `--records` records.
    Load(Options),
    /// Run a workload against loaded records.
    Run(Options),
}

#[derive(Debug, clap::Args)]
struct Options {
    /// ringkv://host:port[,host:port...], redis://host:port,
    /// etcd://host:port[,host:port...],
    /// k2v://KEY_ID:SECRET@host:port[,host:port...]/BUCKET or rocksdb:///path.
    #[arg(long, default_value = "ringkv://127.0.0.1:7400")]
    target: String,
    /// YCSB workload: a (50/50 read/update), b (95/5), c (read only),
    /// d (read latest / insert), e (short scans / insert), f
    /// (read-modify-write); ts (append / read the latest rows), batch
    /// (partition batches); or custom (--mix).
    #[arg(long, value_enum, default_value = "a")]
    workload: WorkloadName,
    /// Custom mix, e.g. read=0.8,update=0.1,insert=0.05,delete=0.05 (rmw,
    /// scan, latest, append, batch too).
    #[arg(long)]
    mix: Option<Mix>,
    /// Records to load, and the key space of the run.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Keys are PREFIX followed by the 12-digit record number.
    #[arg(long, default_value = "user")]
    key_prefix: String,
    /// Key distribution; default: the workload's (zipfian, latest for d).
    #[arg(long, value_enum)]
    distribution: Option<Distribution>,
    /// Consistency level of reads (ringkv only).
    #[arg(long, default_value = "QUORUM")]
    read_consistency: Consistency,
    /// Consistency level of writes (ringkv only).
    #[arg(long, default_value = "QUORUM")]
    write_consistency: Consistency,
    /// Operations in flight at once (workers).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Open loop at this many operations per second, latency measured from
    /// each operation's intended start (coordinated-omission correction).
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds to run (default 30 for run; load stops after --records).
    #[arg(long)]
    duration: Option<f64>,
    /// Operations to run instead of a duration.
    #[arg(long, conflicts_with = "duration")]
    ops: Option<u64>,
    /// Seconds at the start whose operations are not recorded.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Records are rows: record i is row `i % N` of partition `i / N`
    /// (workloads e, ts and batch need it).
    #[arg(long, default_value_t = 0)]
    rows_per_partition: u64,
    /// A scan reads 1 to this many rows (workload e).
    #[arg(long, default_value_t = 100)]
    scan_max: u32,
    /// Rows a `latest` reads (workload ts).
    #[arg(long, default_value_t = 20)]
    latest: u32,
    /// Rows of a partition batch (workload batch).
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Write per-second latency histograms (HdrHistogram log) to this file.
    #[arg(long)]
    hdr_log: Option<std::path::PathBuf>,
    /// Seed of the generators.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// Threads of the load generator's runtime. On a machine shared with
    /// the servers under test, 1 leaves them the most CPU.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// TLS to ringkv nodes.
    #[command(flatten)]
    tls: TlsArgs,
    /// A user, for ringkv nodes with authentication on.
    #[command(flatten)]
    user: UserArgs,
}

fn spec(phase: Phase, options: &Options) -> Result<Spec, String> {
    let (mix, default_distribution) = options.workload.mix(options.mix.as_ref())?;
    let distribution = options.distribution.unwrap_or(default_distribution);
    if options.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err("--rate must be a positive number".into());
    }
    if options
        .duration
        .is_some_and(|d| !(d > 0.0 && d.is_finite()))
        || !(options.warmup >= 0.0 && options.warmup.is_finite())
    {
        return Err("--duration must be positive and --warmup not negative".into());
    }
    let limit = match (phase, options.ops, options.duration) {
        (Phase::Load, _, _) => Limit::Ops(options.records),
        (Phase::Run, Some(ops), _) => Limit::Ops(ops),
        (Phase::Run, None, duration) => {
            Limit::Duration(Duration::from_secs_f64(duration.unwrap_or(30.0)))
        }
    };
    Ok(Spec {
        phase,
        mix,
        keys: KeyChooser::new(distribution, options.records)?,
        key_prefix: options.key_prefix.clone(),
        records: options.records,
        value_size: options.value_size,
        concurrency: options.concurrency.max(1),
        rate: options.rate,
        limit,
        warmup: Duration::from_secs_f64(options.warmup),
        seed: options.seed,
        progress: !options.quiet,
        rows: (options.rows_per_partition > 0).then_some(runner::RowShape {
            per_partition: options.rows_per_partition,
            scan_max: options.scan_max,
            latest: options.latest,
            batch_size: options.batch_size,
        }),
    })
}

async fn bench(phase: Phase, options: Options) -> Result<(), String> {
    let spec = spec(phase, &options)?;
    let target = Target {
        url: options.target.clone(),
        read_consistency: options.read_consistency,
        write_consistency: options.write_consistency,
        tls: options.tls.options().map_err(|e| e.to_string())?,
        credentials: options.user.credentials().map_err(|e| e.to_string())?,
    };
    let driver = Driver::connect(&target).await?;
    let report = runner::run(&driver, spec).await?;
    println!("{}", report.table());
    if let Some(path) = &options.json {
        let mut json = report.json();
        json["target"] = serde_json::json!(options.target);
        json["workload"] = serde_json::json!(format!("{:?}", options.workload).to_lowercase());
        json["concurrency"] = serde_json::json!(options.concurrency);
        json["rate"] = serde_json::json!(options.rate);
        json["value_size"] = serde_json::json!(options.value_size);
        json["records"] = serde_json::json!(options.records);
        json["rows_per_partition"] = serde_json::json!(options.rows_per_partition);
        json["read_consistency"] = serde_json::json!(options.read_consistency.name());
        json["write_consistency"] = serde_json::json!(options.write_consistency.name());
        let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = &options.hdr_log {
        let mut file = std::fs::File::create(path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        report
            .write_hdr_log(&mut file)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.phase {
        PhaseArg::Load(options) | PhaseArg::Run(options) => options.threads.max(1),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ringkv-bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (phase, options) = match cli.phase {
        PhaseArg::Load(options) => (Phase::Load, options),
        PhaseArg::Run(options) => (Phase::Run, options),
    };
    match runtime.block_on(bench(phase, options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ringkv-bench: {error}");
            ExitCode::FAILURE
        }
    }
}
