//! Idle connections held by one server. The server runs alone in a fresh process
//! (`aether-bench idle-server`, so no memory freed by an earlier phase is reused and hidden),
//! and the connections are opened from further child processes (`aether-bench idle-clients`)
//! so that the server's process holds only its own end of each socket: its RSS growth is the
//! server's cost per connection.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::peers::Peer;
use crate::realtime::{
    baseline_server, connect, product_config, register, rss_kib, signed_in_socket, Idle,
};

/// Connections one child opens at most: its own file-descriptor limit bounds it.
const PER_CHILD: usize = 9_000;
/// The longest a child keeps its connections if the parent never says stop.
const MAX_HOLD: Duration = Duration::from_secs(300);

#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// `ws://…` URL to connect to.
    #[arg(long)]
    url: String,
    /// Connections to open.
    #[arg(long)]
    count: usize,
    /// The last byte of the 127.0.0.x address the connections come from.
    #[arg(long)]
    source: u8,
    /// What the connections speak: `bare` (a WebSocket), `product` (`graphql-transport-ws`,
    /// signed in with the token in `AETHER_BENCH_TOKEN`), or a peer's protocol (`socket-io`,
    /// `graphql-ws`, `async-graphql`: past its handshake).
    #[arg(long, default_value = "bare")]
    protocol: String,
}

/// What idle connections speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Bare,
    Product,
    Peer(Peer),
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Bare => "bare",
            Protocol::Product => "product",
            Protocol::Peer(peer) => peer.key(),
        }
    }

    fn parse(name: &str) -> anyhow::Result<Self> {
        match name {
            "bare" => Ok(Protocol::Bare),
            "product" => Ok(Protocol::Product),
            other => Peer::ALL
                .into_iter()
                .find(|peer| peer.key() == other)
                .map(Protocol::Peer)
                .with_context(|| format!("unknown --protocol {other}")),
        }
    }
}

/// Which server holds the connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Server {
    /// The embedded application: `graphql-transport-ws`, signed in with `connection_init`.
    Product,
    /// The bare axum WebSocket broadcast server.
    Baseline,
}

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    #[arg(long, value_enum)]
    server: Server,
    /// Connections to hold.
    #[arg(long)]
    count: usize,
}

/// Runs `idle-server` in a fresh process and reads what it measured.
pub async fn measure(server: Server, count: usize) -> anyhow::Result<Idle> {
    let name = match server {
        Server::Product => "product",
        Server::Baseline => "baseline",
    };
    let output = tokio::process::Command::new(std::env::current_exe()?)
        .args(["idle-server", "--server", name, "--count"])
        .arg(count.to_string())
        .stderr(Stdio::inherit())
        .output()
        .await?;
    anyhow::ensure!(output.status.success(), "idle-server {name} failed");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().last().context("idle-server said nothing")?;
    let value: serde_json::Value = serde_json::from_str(line)?;
    let number = |field: &str| value[field].as_u64().unwrap_or(0);
    Ok(Idle {
        opened: usize::try_from(number("opened")).unwrap_or(0),
        failed: usize::try_from(number("failed")).unwrap_or(0),
        rss_before_kib: number("rss_before_kib"),
        rss_after_kib: number("rss_after_kib"),
        seconds: value["seconds"].as_f64().unwrap_or(0.0),
        scrape: value["scrape"]
            .is_object()
            .then(|| crate::realtime::Scrape {
                count: usize::try_from(value["scrape"]["count"].as_u64().unwrap_or(0)).unwrap_or(0),
                p50_ms: value["scrape"]["p50_ms"].as_f64().unwrap_or(0.0),
                max_ms: value["scrape"]["max_ms"].as_f64().unwrap_or(0.0),
                bytes: usize::try_from(value["scrape"]["bytes"].as_u64().unwrap_or(0)).unwrap_or(0),
            }),
    })
}

/// The `idle-server` child: starts one server, holds `count` connections to it, prints one JSON
/// line of what it measured.
pub async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let idle = match args.server {
        Server::Product => {
            let dir = tempfile::tempdir()?;
            let app = aether_cli::roles::start_embedded(product_config(dir.path())).await?;
            let token = register(&reqwest::Client::new(), app.local_addr, "idler").await?;
            let url = format!("ws://{}/graphql", app.local_addr);
            let metrics = format!("http://{}/metrics", app.local_addr);
            let idle = hold(args.count, &url, Some(&token), Some(&metrics)).await;
            app.stop().await?;
            idle?
        }
        Server::Baseline => {
            let (addr, _feeds, stop, server) = baseline_server(1).await?;
            let idle = hold(args.count, &format!("ws://{addr}/ws/0"), None, None).await;
            stop.cancel();
            let _ = server.await;
            idle?
        }
    };
    println!(
        "{}",
        serde_json::json!({
            "opened": idle.opened,
            "failed": idle.failed,
            "rss_before_kib": idle.rss_before_kib,
            "rss_after_kib": idle.rss_after_kib,
            "seconds": idle.seconds,
            "scrape": idle.scrape.map(|scrape| serde_json::json!({
                "count": scrape.count,
                "p50_ms": scrape.p50_ms,
                "max_ms": scrape.max_ms,
                "bytes": scrape.bytes,
            })),
        })
    );
    Ok(())
}

/// The child: opens `count` connections, prints `opened N failed M`, then keeps them (answering
/// pings) until its standard input closes.
pub async fn clients(args: ClientArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.count <= PER_CHILD,
        "--count must be at most {PER_CHILD}"
    );
    let token = std::env::var("AETHER_BENCH_TOKEN").unwrap_or_default();
    let protocol = Protocol::parse(&args.protocol)?;
    let started = Instant::now();
    let mut held = Vec::with_capacity(args.count);
    let mut failed = 0;
    for _ in 0..args.count {
        if started.elapsed() > Duration::from_secs(120) || failed > 100 {
            break;
        }
        let socket = match protocol {
            Protocol::Product => {
                let addr = args
                    .url
                    .trim_start_matches("ws://")
                    .split('/')
                    .next()
                    .context("url")?
                    .parse()?;
                signed_in_socket(addr, &token, args.source).await
            }
            Protocol::Bare => connect(&args.url, None, args.source).await,
            Protocol::Peer(peer) => crate::peers::open(peer, &args.url, args.source).await,
        };
        match socket {
            Ok(socket) => held.push(tokio::spawn(async move {
                let mut socket = socket;
                while let Some(Ok(frame)) = socket.next().await {
                    // A peer that pings (Socket.IO every 25 s) drops a client that does not
                    // answer; holding thousands takes longer than that.
                    if let (Protocol::Peer(peer), WsMessage::Text(text)) = (protocol, &frame) {
                        if let Some(answer) = crate::peers::keep_alive(peer, text.as_str()) {
                            let _ = socket.send(WsMessage::text(answer)).await;
                        }
                    }
                }
            })),
            Err(_) => failed += 1,
        }
    }
    println!("opened {} failed {failed}", held.len());
    // Hold until the parent closes our standard input (or its time is up).
    let stdin = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    });
    let _ = tokio::time::timeout(MAX_HOLD, stdin).await;
    for task in held {
        task.abort();
    }
    Ok(())
}

/// Opens `count` connections to `url` from child processes (each from its own 127.0.0.x
/// address) and measures this process's RSS growth while they are held.
async fn hold(
    count: usize,
    url: &str,
    token: Option<&str>,
    metrics: Option<&str>,
) -> anyhow::Result<Idle> {
    let protocol = if token.is_some() {
        Protocol::Product
    } else {
        Protocol::Bare
    };
    hold_with(count, url, protocol, token, rss_kib, metrics).await
}

/// Scrapes `url` (`/metrics`) 20 times, one after another: how long each took, and how big the
/// answer is.
async fn scrape(url: &str) -> anyhow::Result<crate::realtime::Scrape> {
    const SCRAPES: usize = 20;
    let client = reqwest::Client::new();
    let mut took = Vec::with_capacity(SCRAPES);
    let mut bytes = 0;
    for _ in 0..SCRAPES {
        let started = Instant::now();
        let body = client
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        took.push(started.elapsed().as_secs_f64() * 1000.0);
        bytes = body.len();
    }
    took.sort_by(f64::total_cmp);
    Ok(crate::realtime::Scrape {
        count: SCRAPES,
        p50_ms: took[SCRAPES / 2],
        max_ms: took[SCRAPES - 1],
        bytes,
    })
}

/// Opens `count` connections speaking `protocol` to `url` from child processes (each from its
/// own 127.0.0.x address) and measures the growth of `rss` (in KiB) while they are held, and,
/// given `metrics` (a server's `/metrics` URL), what scraping it takes meanwhile.
pub async fn hold_with(
    count: usize,
    url: &str,
    protocol: Protocol,
    token: Option<&str>,
    rss: impl Fn() -> u64,
    metrics: Option<&str>,
) -> anyhow::Result<Idle> {
    let rss_before_kib = rss();
    let started = Instant::now();
    let exe = std::env::current_exe()?;
    let mut children: Vec<Child> = Vec::new();
    let mut remaining = count;
    let mut source = 10_u8;
    while remaining > 0 {
        let share = remaining.min(PER_CHILD);
        let mut command = Command::new(&exe);
        command
            .args(["idle-clients", "--url", url, "--count"])
            .arg(share.to_string())
            .args(["--source", &source.to_string()])
            .args(["--protocol", protocol.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(token) = token {
            command.env("AETHER_BENCH_TOKEN", token);
        }
        children.push(command.spawn().context("cannot start idle-clients")?);
        remaining -= share;
        source = source.saturating_add(1);
    }
    let mut opened = 0;
    let mut failed = 0;
    for child in &mut children {
        let stdout = child.stdout.take().context("no stdout")?;
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            line
        })
        .await?;
        let mut words = line.split_whitespace();
        if let (Some("opened"), Some(n), Some("failed"), Some(m)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            opened += n.parse::<usize>().unwrap_or(0);
            failed += m.parse::<usize>().unwrap_or(0);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after_kib = rss();
    let scrape = match metrics {
        Some(metrics) => Some(scrape(metrics).await?),
        None => None,
    };
    let idle = Idle {
        opened,
        failed,
        rss_before_kib,
        rss_after_kib,
        seconds: started.elapsed().as_secs_f64(),
        scrape,
    };
    for mut child in children {
        drop(child.stdin.take());
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    }
    Ok(idle)
}
