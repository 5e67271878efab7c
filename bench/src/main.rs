//! `aether-bench`: benchmarks of AetherConnect against real, local servers. Not a test: it
//! measures and reports, it does not pass or fail.
//!
//! `aether-bench write-path` drives `sendMessage` through the distributed API role at increasing
//! load and compares the result with raw Kafka produce and raw PostgreSQL inserts of the same
//! bytes in the same run. `aether-bench rebuild` rebuilds projections from the event topics into
//! each store and compares that with the raw consume rate of the same topics. `aether-bench
//! read-path` measures subscription latency through the distributed path beside the embedded
//! one, history queries from each store and read-your-own-write across instances. `aether-bench
//! abuse` repeats hostile traffic against the shipped limits while timing another user's `me`.
//! See `bench/README.md`.

mod abuse;
mod chat_log;
mod idle;
mod peers;
mod read_path;
mod realtime;
mod rebuild;
mod rebuild_report;
mod report;
mod servers;
mod stats;
mod write_path;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// The allocator of the `aether` binary (see `cli/src/main.rs`), so the roles this process runs
/// in-process allocate as they do in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "aether-bench",
    about = "AetherConnect benchmarks (local servers only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// sendMessage → PostgreSQL → relay → Kafka, at increasing load, beside raw baselines.
    WritePath(write_path::Args),
    /// Projection rebuilds from Kafka into each store, beside the raw consume rate.
    Rebuild(rebuild::Args),
    /// Subscriptions: latency, fan-out and idle connections, beside a bare axum WebSocket
    /// broadcast server.
    Realtime(realtime::Args),
    /// Subscription latency through the whole distributed path beside the embedded one, history
    /// queries from each store, read-your-own-write across instances.
    ReadPath(read_path::Args),
    /// Hostile traffic (mutation floods, costly queries, sign-in floods and password
    /// spraying) against the shipped limits, bounded and on loopback, while another user's
    /// `me` is timed.
    Abuse(abuse::Args),
    /// (Used by `realtime`.) Opens and holds idle WebSocket connections from this process.
    #[command(hide = true)]
    IdleClients(idle::ClientArgs),
    /// (Used by `realtime`.) Runs one server and holds idle connections to it.
    #[command(hide = true)]
    IdleServer(idle::ServerArgs),
    /// (Used by `realtime`.) The async-graphql-axum peer server.
    #[command(hide = true)]
    PeerAsyncGraphql(peers::AsyncGraphqlArgs),
}

fn main() -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    // The roles this process runs in-process export their spans as `aether serve` does when an
    // OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT): the cost of tracing is measured
    // by running a benchmark with and without it.
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            EnvFilter::try_from_env("AETHER_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        );
    let registry = tracing_subscriber::registry().with(logs);
    let (otel, exporter) = match aether_cli::tracing_otel::layer("aether-bench")? {
        Some((layer, exporter)) => (Some(layer), Some(exporter)),
        None => (None, None),
    };
    registry.with(otel).init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = run(&runtime, cli);
    if let Some(exporter) = exporter {
        exporter.shutdown();
    }
    outcome
}

fn run(runtime: &tokio::runtime::Runtime, cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::WritePath(args) => runtime.block_on(write_path::run(args)),
        Command::Rebuild(args) => runtime.block_on(rebuild::run(args)),
        Command::Realtime(args) => runtime.block_on(realtime::run(args)),
        Command::ReadPath(args) => runtime.block_on(read_path::run(args)),
        Command::Abuse(args) => runtime.block_on(abuse::run(args)),
        Command::IdleClients(args) => runtime.block_on(idle::clients(args)),
        Command::IdleServer(args) => runtime.block_on(idle::serve(args)),
        Command::PeerAsyncGraphql(args) => runtime.block_on(peers::serve_async_graphql(args)),
    }
}
