//! `ringkv`: the ringkv shell.
//!
//! One-shot: `ringkv --host 127.0.0.1:7400 put k v`, `ringkv get k`,
//! `ringkv del k`, with `--json` for scripts. Without a command it opens an
//! interactive prompt. Exit status 0 on success (a missing key is a
//! success), 1 with a one-line reason on stderr when a request fails, 2 for
//! bad usage. A closed stdout (`ringkv get k | head -c 20`) ends the shell
//! quietly with status 0, as other Unix tools end.

mod command;
mod format;
mod interactive;
mod nodetool;
mod render;
mod session;
mod trace;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ringkv_client::cli::{TlsArgs, UserArgs};
use ringkv_client::{Client, ClientConfig, Consistency};

use command::Command;
use session::Session;

#[derive(Debug, Parser)]
#[command(
    name = "ringkv",
    version,
    about = "Shell for ringkv: read, write and inspect a cluster"
)]
struct Cli {
    /// Node to connect to, HOST:PORT; repeat to give fallbacks.
    #[arg(
        long = "host",
        short = 'H',
        value_name = "HOST:PORT",
        env = "RINGKV_HOST",
        value_delimiter = ',',
        default_value = "127.0.0.1:7400"
    )]
    hosts: Vec<String>,

    /// Consistency level: ONE, TWO, THREE, QUORUM, ALL or ANY (writes only).
    #[arg(long, short = 'c', value_name = "LEVEL", default_value = "QUORUM")]
    consistency: Consistency,

    /// Print results as JSON.
    #[arg(long)]
    json: bool,

    /// Request timeout in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    timeout_ms: u64,

    /// Trace the request (get, put, del): print what the coordinator did,
    /// replica by replica, after the result.
    #[arg(long)]
    trace: bool,

    #[command(flatten)]
    tls: TlsArgs,

    #[command(flatten)]
    user: UserArgs,

    #[command(subcommand)]
    command: Option<Command>,
}

/// Exit status when a request fails.
const EXIT_FAILED: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ringkv: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ringkv: {error:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Writes one line to stdout. Unlike `println!`, a closed pipe is an error
/// the caller can end on, not a panic.
pub fn say(text: impl std::fmt::Display) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// Whether `error` is a write to a closed pipe.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(cli.timeout_ms);
    let mut config = ClientConfig::new(cli.hosts);
    config.consistency = cli.consistency;
    config.request_timeout = timeout;
    config.tls = cli.tls.options()?;
    config.credentials = cli.user.credentials()?;
    let client = Client::connect(config).await?;
    let session = Session {
        client,
        consistency: cli.consistency,
        json: cli.json,
        timeout,
        tracing: cli.trace,
        trace: Default::default(),
    };
    match cli.command {
        Some(command) => {
            let outcome = session.run(&command).await;
            let trace = session.trace.take();
            match outcome {
                Ok(outcome) => {
                    say(session.render(&outcome, trace.as_ref()))?;
                    if let Some((failed @ 1.., of)) = outcome.failures() {
                        anyhow::bail!("{failed} of {of} partitions of the batch failed");
                    }
                }
                Err(error) => {
                    if let Some(trace) = &trace {
                        say(session.render_trace(trace))?;
                    }
                    return Err(error.into());
                }
            }
            Ok(())
        }
        None => interactive::run(session).await,
    }
}
