//! `ringkv-node`: parse the configuration, run the node, exit with a
//! one-line reason on failure.

use std::process::ExitCode;

use clap::Parser;
use ringkv_node::config::{self, NodeArgs};
use ringkv_node::{server, telemetry};
use tokio_util::sync::CancellationToken;

/// mimalloc: fewer cycles per allocation than glibc's malloc on the
/// request path (HTTP/2 frames, protobuf messages), measured in
/// BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for unusable configuration or arguments.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let args = match NodeArgs::try_parse() {
        Ok(args) => args,
        Err(error) if !error.use_stderr() => {
            // --help and --version.
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            let rendered = error.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("ringkv-node: {}", first.trim_start_matches("error: "));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let config = match config::load(&args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ringkv-node: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    telemetry::init(config.log_format, &config.log_level);

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if config.worker_threads > 0 {
        runtime.worker_threads(config.worker_threads as usize);
    }
    let runtime = match runtime.build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ringkv-node: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        worker_threads = runtime.metrics().num_workers(),
        "async runtime started"
    );
    let result = runtime.block_on(async {
        let stop = CancellationToken::new();
        tokio::spawn(server::cancel_on_signal(stop.clone()));
        server::run(config, stop).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "ringkv node failed");
            eprintln!("ringkv-node: {error:#}");
            ExitCode::FAILURE
        }
    }
}
