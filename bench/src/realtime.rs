//! `aether-bench realtime`: what chat clients feel. Through the product (the embedded
//! application, in-process, on loopback) and through a bare axum WebSocket broadcast server in
//! the same run:
//!
//! 1. **Latency and fan-out**: `--subscribers` WebSocket clients, each a member subscribed to
//!    `channelEvents` of one of `--channels` channels; `sendMessage` at `--rate` messages/s for
//!    `--seconds`, round-robin over the channels, each body carrying its send instant. Every
//!    subscriber notes mutation-sent → event-received; deliveries expected vs received.
//! 2. **Idle connections**: `--idle` authenticated, idle WebSockets held open by client child
//!    processes (`aether-bench idle-clients`, up to 9,000 each, each from its own 127.0.0.x
//!    address); this process's RSS before and after is the server's cost per connection. One
//!    process holds at most its file-descriptor limit (`ulimit -n`) of connections.
//!
//! The baseline runs the same load shapes against a minimal axum server that forwards each
//! published message to the WebSockets of its channel through a `tokio::sync::broadcast`
//! channel per chat channel.
//! Bounded: at most 5,000 subscribers, 5,000 messages/s, 60 s, 50,000 idle connections; loopback
//! only; everything stops by itself.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aether_cli::moderator::{ModelState, ModeratorConfig};
use aether_cli::roles::{start_embedded, EmbeddedConfig, Running};
use aether_query_api::rate::RateLimits;
use aether_query_api::ApiLimits;
use aether_realtime_edge::http::HttpLimits;
use anyhow::{bail, Context};
use axum::extract::ws::{Message as AxumMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::peers::Peer;
use crate::report::{load_average, publish, Report};
use crate::stats::{micros, round, Summary};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// WebSocket subscribers, each a member of the server.
    #[arg(long, default_value_t = 1_000)]
    subscribers: usize,
    /// Channels the subscribers are spread over.
    #[arg(long, default_value_t = 100)]
    channels: usize,
    /// Messages per second sent.
    #[arg(long, default_value_t = 1_000)]
    rate: u32,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Fan-out phase: connections all subscribed to one channel (the members of the latency
    /// phase, several connections each: one member, several devices).
    #[arg(long, default_value_t = 5_000)]
    fanout_subscribers: usize,
    /// Fan-out phase: messages per second to that channel (each owed to every subscriber). The
    /// default offers 400,000 deliveries/s to 5,000 connections, four times the target and more
    /// than either server sustains here, so the phase finds how many a server sustains rather
    /// than how many were offered.
    #[arg(long, default_value_t = 80)]
    fanout_rate: u32,
    /// Idle WebSocket connections to hold open (the server's end of each is a file descriptor
    /// of this process: `ulimit -n` must be above this).
    #[arg(long, default_value_t = 5_000)]
    idle: usize,
    /// Peer servers measured beside the product, in their own processes (see `bench/peers`).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "socket-io,graphql-ws,async-graphql"
    )]
    peers: Vec<Peer>,
    /// Measure no peer server.
    #[arg(long)]
    no_peers: bool,
    /// Run the latency phase once more for each CPU share given (`1,0.25`) on an embedded
    /// application with the moderator (the model stage: every message scored by the local
    /// model) running in it at that share (`--moderation-cpu-share`; below 1 also on one
    /// thread, `--moderation-threads 1`), in the same run. Needs
    /// the model's files (`bash scripts/fetch-model.sh`).
    #[arg(long, value_delimiter = ',', value_parser = aether_cli::moderator::parse_cpu_share)]
    moderator: Vec<f64>,
    /// Where `realtime.json`, `realtime.md` and `realtime-latency.svg` go.
    #[arg(long, default_value = "bench/results")]
    out: std::path::PathBuf,
}

pub(crate) const EPOCH_FIELD: &str = "t";

/// How long the moderator may take to load its model before the run gives up.
const MODEL_LOAD: Duration = Duration::from_secs(60);

/// Microseconds since `epoch`, as sent in a message body.
pub(crate) fn stamp(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// One load phase's outcome.
#[derive(Clone, Debug, Default)]
pub(crate) struct Phase {
    pub(crate) sent: u64,
    pub(crate) send_failures: u64,
    pub(crate) send_seconds: f64,
    pub(crate) expected: u64,
    pub(crate) delivered: u64,
    pub(crate) latency: Summary,
    /// Sorted latencies in microseconds, for the plot.
    samples: Vec<u32>,
    pub(crate) deliveries_per_s: f64,
}

impl Phase {
    /// Messages sent per second while sending.
    pub(crate) fn achieved_rate(&self) -> f64 {
        self.sent as f64 / self.send_seconds.max(0.001)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Idle {
    pub opened: usize,
    pub failed: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub seconds: f64,
    /// `GET /metrics` while the connections were held (the product only).
    pub scrape: Option<Scrape>,
}

/// What scraping `/metrics` took while the idle connections were held.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scrape {
    pub count: usize,
    pub p50_ms: f64,
    pub max_ms: f64,
    pub bytes: usize,
}

impl Idle {
    pub(crate) fn kib_per_connection(&self) -> f64 {
        if self.opened == 0 {
            return 0.0;
        }
        self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64 / self.opened as f64
    }
}

#[derive(Clone, Debug, Default)]
struct Results {
    started: String,
    load_before: String,
    load_after: String,
    subscribers: usize,
    channels: usize,
    rate: u32,
    seconds: u64,
    product: Phase,
    /// The latency phase with the moderator running, at each CPU share asked for.
    moderated: Vec<(f64, Phase)>,
    baseline: Phase,
    fanout_subscribers: usize,
    fanout_rate: u32,
    fanout_product: Phase,
    fanout_baseline: Phase,
    product_idle: Idle,
    baseline_idle: Idle,
    peers: Vec<PeerResults>,
    notes: Vec<String>,
}

/// One peer server's figures; a phase it could not run is absent (and said in the notes).
#[derive(Clone, Debug)]
struct PeerResults {
    peer: Peer,
    latency: Option<Phase>,
    fanout: Option<Phase>,
    idle: Option<Idle>,
}

pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub(crate) fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.subscribers == 0 || args.subscribers > 5_000 {
        bail!("--subscribers must be 1 to 5000");
    }
    if args.channels == 0 || args.channels > args.subscribers {
        bail!("--channels must be 1 to --subscribers");
    }
    if args.rate == 0 || args.rate > 5_000 || args.seconds == 0 || args.seconds > 60 {
        bail!("--rate must be 1 to 5000 and --seconds 1 to 60");
    }
    if args.fanout_subscribers == 0
        || args.fanout_subscribers > 10_000
        || args.fanout_rate == 0
        || args.fanout_rate > 1_000
    {
        bail!("--fanout-subscribers must be 1 to 10000 and --fanout-rate 1 to 1000");
    }
    if args.idle > 50_000 {
        bail!("--idle must be at most 50000");
    }
    let latency = Shape {
        subscribers: args.subscribers,
        channels: args.channels,
        rate: args.rate,
        seconds: args.seconds,
        settle_quiet: SETTLE_QUIET,
    };
    let fanout = Shape {
        subscribers: args.fanout_subscribers,
        channels: 1,
        rate: args.fanout_rate,
        seconds: args.seconds,
        settle_quiet: SETTLE_QUIET,
    };
    let mut results = Results {
        started: chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        load_before: load_average(),
        subscribers: args.subscribers,
        channels: args.channels,
        rate: args.rate,
        seconds: args.seconds,
        fanout_subscribers: args.fanout_subscribers,
        fanout_rate: args.fanout_rate,
        ..Results::default()
    };
    if args.subscribers % args.channels != 0 {
        results.notes.push(
            "subscribers do not divide evenly over channels; expected deliveries are approximate"
                .to_owned(),
        );
    }

    eprintln!("baseline: bare axum broadcast");
    results.baseline = baseline(latency).await?;
    eprintln!("baseline: fan-out to {} connections", fanout.subscribers);
    results.fanout_baseline = baseline(fanout).await?;

    eprintln!("product: the embedded application");
    let product = Product::start(args.channels, args.subscribers).await?;
    results.product = product.phase(latency).await?;
    eprintln!("product: fan-out to {} connections", fanout.subscribers);
    results.fanout_product = product.phase(fanout).await?;
    product.stop().await?;
    for &share in &args.moderator {
        eprintln!(
            "product: the embedded application with the moderator running (CPU share {share})"
        );
        let (product, model) =
            Product::start_moderated(args.channels, args.subscribers, share).await?;
        results
            .moderated
            .push((share, product.phase(latency).await?));
        product.stop().await?;
        results.notes.push(format!(
            "moderated run at CPU share {share}: model {model}, batches of up to {} messages, scored off the delivery path in the same process (same cores)",
            ModeratorConfig::default().max_batch
        ));
    }

    let peers = if args.no_peers {
        Vec::new()
    } else {
        args.peers.clone()
    };
    for peer in peers {
        let mut measured = PeerResults {
            peer,
            latency: None,
            fanout: None,
            idle: None,
        };
        eprintln!("peer: {}", peer.label());
        match crate::peers::phase(peer, latency).await {
            Ok(phase) => measured.latency = Some(phase),
            Err(error) => results
                .notes
                .push(format!("{}: latency not measured: {error:#}", peer.label())),
        }
        eprintln!(
            "peer: {}: fan-out to {} connections",
            peer.label(),
            fanout.subscribers
        );
        match crate::peers::phase(peer, fanout).await {
            Ok(phase) => measured.fanout = Some(phase),
            Err(error) => results
                .notes
                .push(format!("{}: fan-out not measured: {error:#}", peer.label())),
        }
        results.peers.push(measured);
    }

    eprintln!("idle connections: {} to each server", args.idle);
    results.baseline_idle = crate::idle::measure(crate::idle::Server::Baseline, args.idle).await?;
    results.product_idle = crate::idle::measure(crate::idle::Server::Product, args.idle).await?;
    for measured in &mut results.peers {
        match crate::peers::idle(measured.peer, args.idle).await {
            Ok(idle) => measured.idle = Some(idle),
            Err(error) => results.notes.push(format!(
                "{}: idle connections not measured: {error:#}",
                measured.peer.label()
            )),
        }
    }
    results.load_after = load_average();
    if !cfg!(debug_assertions) {
        std::fs::create_dir_all(&args.out)?;
        std::fs::write(args.out.join("realtime-latency.svg"), plot(&results))?;
    }
    publish(&results, &args.out)
}

// --- the product ------------------------------------------------------------------------------

/// A GraphQL request that must succeed; its `data`.
pub(crate) async fn graphql(
    http: &reqwest::Client,
    addr: SocketAddr,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    Ok(graphql_body(http, addr, token, None, query, variables).await?["data"].clone())
}

/// A GraphQL request that must succeed, read after the write `consistency` names (a mutation's
/// `extensions.consistencyToken`) when given; the whole response body.
pub(crate) async fn graphql_body(
    http: &reqwest::Client,
    addr: SocketAddr,
    token: Option<&str>,
    consistency: Option<&str>,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let mut request = http
        .post(format!("http://{addr}/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(consistency) = consistency {
        request = request.header(aether_realtime_edge::http::CONSISTENCY_HEADER, consistency);
    }
    let body: Value = request.send().await?.json().await?;
    if body.get("errors").is_some_and(|e| !e.is_null()) {
        bail!("{body}");
    }
    Ok(body)
}

pub async fn register(
    http: &reqwest::Client,
    addr: SocketAddr,
    name: &str,
) -> anyhow::Result<String> {
    let data = graphql(
        http,
        addr,
        None,
        "mutation($u: String!) { register(input: {username: $u, password: \"bench password\"}) { accessToken } }",
        json!({ "u": name }),
    )
    .await?;
    Ok(data["register"]["accessToken"]
        .as_str()
        .context("no token")?
        .to_owned())
}

/// What a frame from a server asks of the benchmark's client: the body of a delivered message,
/// a delivery stamped with its send instant, a keep-alive to answer, or nothing.
pub(crate) enum Frame {
    Message(String),
    Sent(u64),
    Answer(&'static str),
    Other,
}

/// A `graphql-transport-ws` frame of the product's `channelEvents` subscription.
fn read_product_frame(text: &str) -> Frame {
    match serde_json::from_str::<Value>(text) {
        Ok(message) if message["type"] == "ping" => Frame::Answer(r#"{"type":"pong"}"#),
        Ok(message) => message["payload"]["data"]["channelEvents"]["message"]["body"]
            .as_str()
            .map_or(Frame::Other, |body| Frame::Message(body.to_owned())),
        Err(_) => Frame::Other,
    }
}

/// What one subscriber's reader shares with its phase (each reader holds a clone).
#[derive(Clone)]
pub(crate) struct Reader {
    pub(crate) epoch: Instant,
    /// This phase's messages' bodies are `<tag><send instant>`: an earlier phase's, still on
    /// their way, carry another tag and a stamp from another epoch.
    pub(crate) tag: Arc<str>,
    pub(crate) tally: Tally,
    pub(crate) stop: tokio_util::sync::CancellationToken,
}

impl Reader {
    /// A phase's: its epoch is now, its tag new.
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            tag: Arc::from(format!("{:08x}.{EPOCH_FIELD}=", rand::random::<u32>())),
            tally: Tally::default(),
            stop: tokio_util::sync::CancellationToken::new(),
        }
    }
}

/// Reads `socket` until the phase stops or the server closes it, noting the latency of each
/// of this phase's messages and answering keep-alives; `read` understands the server's frames.
pub(crate) async fn read_deliveries(
    mut socket: Socket,
    reader: Reader,
    read: impl Fn(&str) -> Frame + Send + 'static,
) {
    let Reader {
        epoch,
        tag,
        tally,
        stop,
    } = reader;
    let mut mine = Vec::new();
    let mut last_us = 0;
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => break,
            frame = socket.next() => frame,
        };
        let Some(Ok(WsMessage::Text(text))) = frame else {
            break;
        };
        let now = stamp(epoch);
        match read(text.as_str()) {
            Frame::Message(body) => {
                if let Some(sent) = body
                    .strip_prefix(tag.as_ref())
                    .and_then(|t| t.parse::<u64>().ok())
                {
                    last_us = now;
                    mine.push(micros(Duration::from_micros(now.saturating_sub(sent))));
                    tally.arrived();
                }
            }
            Frame::Sent(sent) => {
                last_us = now;
                mine.push(micros(Duration::from_micros(now.saturating_sub(sent))));
                tally.arrived();
            }
            Frame::Answer(answer) => {
                let _ = socket.send(WsMessage::text(answer)).await;
            }
            Frame::Other => {}
        }
    }
    tally.add(mine, last_us);
}

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Every benchmark client's WebSocket settings: a 4 KiB read buffer. tungstenite's default,
/// 128 KiB, is zeroed before every read: with thousands of clients in this process that alone
/// took a fifth of the machine's CPU away from the servers being measured.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4 * 1024)
}

/// A WebSocket to `url` with `subprotocol`, from source address 127.0.0.`source`.
pub async fn connect(url: &str, subprotocol: Option<&str>, source: u8) -> anyhow::Result<Socket> {
    let mut request = url.into_client_request()?;
    if let Some(subprotocol) = subprotocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", subprotocol.parse()?);
    }
    let host = request.uri().host().unwrap_or("127.0.0.1").to_owned();
    let port = request.uri().port_u16().unwrap_or(80);
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, source.max(1)], 0)))?;
    let stream = socket
        .connect(format!("{host}:{port}").parse::<SocketAddr>()?)
        .await?;
    let (socket, _) = tokio_tungstenite::client_async_with_config(
        request,
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
        Some(client_config()),
    )
    .await?;
    Ok(socket)
}

/// A `graphql-transport-ws` connection past `connection_init`.
pub async fn signed_in_socket(addr: SocketAddr, token: &str, source: u8) -> anyhow::Result<Socket> {
    let mut socket = connect(
        &format!("ws://{addr}/graphql"),
        Some("graphql-transport-ws"),
        source,
    )
    .await?;
    socket
        .send(WsMessage::text(
            json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } })
                .to_string(),
        ))
        .await?;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .context("no connection_ack")?
            .context("closed")??;
        if let WsMessage::Text(text) = frame {
            let message: Value = serde_json::from_str(text.as_str())?;
            if message["type"] == "connection_ack" {
                return Ok(socket);
            }
        }
    }
}

/// The embedded application as the benchmark runs it: no rate limits, room for every connection.
pub fn product_config(data_dir: &std::path::Path) -> EmbeddedConfig {
    EmbeddedConfig {
        data_dir: data_dir.to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace: Duration::from_secs(2),
        api: ApiLimits {
            rates: RateLimits::unlimited(),
            ..ApiLimits::default()
        },
        http: HttpLimits {
            max_connections: 200_000,
            ..HttpLimits::default()
        },
        ..EmbeddedConfig::default()
    }
}

/// One load shape: `subscribers` connections spread over `channels` channels, `rate`
/// messages/s for `seconds`, round-robin over the channels.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub(crate) subscribers: usize,
    pub(crate) channels: usize,
    pub(crate) rate: u32,
    pub(crate) seconds: u64,
    /// After sending, how long the deliveries may stop coming before the rest count as not
    /// received ([`SETTLE_QUIET`] unless a path delivers in longer bursts).
    pub(crate) settle_quiet: Duration,
}

impl Shape {
    pub(crate) fn total(&self) -> u64 {
        u64::from(self.rate) * self.seconds
    }

    /// Deliveries owed for `sent` messages.
    pub(crate) fn expected(&self, sent: u64) -> u64 {
        sent * (self.subscribers / self.channels) as u64
    }
}

/// Collects every subscriber's latencies.
#[derive(Clone, Default)]
pub(crate) struct Tally {
    samples: Arc<Mutex<Vec<u32>>>,
    delivered: Arc<std::sync::atomic::AtomicU64>,
    /// When the last delivery arrived, in microseconds since the phase's epoch.
    last_delivery_us: Arc<std::sync::atomic::AtomicU64>,
    /// Deliveries so far, counted as they arrive (readers hand in their samples only at the end).
    arrived: Arc<std::sync::atomic::AtomicU64>,
}

/// After sending, how long the deliveries may stop coming before the rest count as not
/// received, and the longest a phase waits for its backlog in all.
pub(crate) const SETTLE_QUIET: Duration = Duration::from_secs(3);
const SETTLE_MAX: Duration = Duration::from_secs(60);

impl Tally {
    /// One delivery arrived.
    pub(crate) fn arrived(&self) {
        self.arrived
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Waits until `expected` deliveries arrived, none arrived for `quiet`, or [`SETTLE_MAX`]
    /// passed: a backlog still draining counts as late, not as lost.
    pub(crate) async fn settle(&self, expected: u64, quiet: Duration) {
        let started = Instant::now();
        let mut seen = self.arrived.load(std::sync::atomic::Ordering::Relaxed);
        let mut quiet_since = Instant::now();
        while seen < expected && quiet_since.elapsed() < quiet && started.elapsed() < SETTLE_MAX {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.arrived.load(std::sync::atomic::Ordering::Relaxed);
            if now != seen {
                seen = now;
                quiet_since = Instant::now();
            }
        }
        // The last frames in flight.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    pub(crate) fn add(&self, mine: Vec<u32>, last_us: u64) {
        self.last_delivery_us
            .fetch_max(last_us, std::sync::atomic::Ordering::Relaxed);
        self.delivered
            .fetch_add(mine.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut all) = self.samples.lock() {
            all.extend(mine);
        }
    }

    /// The phase's figures; deliveries per second are counted from the first send (at
    /// `sending_from_us`) to the last delivery, so a backlog drained after sending stopped
    /// does not flatter the rate.
    pub(crate) fn phase(
        &self,
        shape: &Shape,
        sent: u64,
        send_failures: u64,
        send_seconds: f64,
        sending_from_us: u64,
    ) -> Phase {
        let mut samples = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
        let delivered = self.delivered.load(std::sync::atomic::Ordering::Relaxed);
        let last = self
            .last_delivery_us
            .load(std::sync::atomic::Ordering::Relaxed);
        let delivering_seconds = last.saturating_sub(sending_from_us) as f64 / 1e6;
        Phase {
            sent,
            send_failures,
            send_seconds,
            expected: shape.expected(sent),
            delivered,
            latency: Summary::of_micros(&mut samples),
            deliveries_per_s: delivered as f64 / delivering_seconds.max(send_seconds).max(0.001),
            samples,
        }
    }
}

/// The product with a server of channels and members, ready for load phases: mutations go to
/// the `api` instance, subscriptions and queries to the `edge` instance (the same one in the
/// embedded mode).
pub(crate) struct Product {
    apps: Vec<Running>,
    pub(crate) api: SocketAddr,
    pub(crate) edge: SocketAddr,
    pub(crate) http: reqwest::Client,
    pub(crate) owner: String,
    pub(crate) channels: Vec<String>,
    tokens: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Product {
    /// Starts the embedded application; the sender owns a server with `channels` channels,
    /// `members` users join it with one invite.
    pub(crate) async fn start(channels: usize, members: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let app = start_embedded(product_config(dir.path())).await?;
        let addr = app.local_addr;
        Self::populate(vec![app], addr, addr, Some(dir), channels, members).await
    }

    /// [`Self::start`] with the moderator running in the application at `cpu_share`, once its model is
    /// loaded: every message sent is then scored by the model off the delivery path.
    /// Also returns the model's version.
    pub(crate) async fn start_moderated(
        channels: usize,
        members: usize,
        cpu_share: f64,
    ) -> anyhow::Result<(Self, String)> {
        let dir = tempfile::tempdir()?;
        let app = start_embedded(EmbeddedConfig {
            moderator: Some(ModeratorConfig {
                cpu_share,
                threads: if cpu_share < 1.0 { 1 } else { 0 },
                ..ModeratorConfig::default()
            }),
            ..product_config(dir.path())
        })
        .await?;
        let mut state = app
            .moderator
            .clone()
            .context("the application runs no moderator")?;
        let loaded = tokio::time::timeout(
            MODEL_LOAD,
            state.wait_for(|state| !matches!(state, ModelState::Loading)),
        )
        .await
        .context("the moderator's model did not load in time")?
        .context("the moderator stopped")?
        .clone();
        let model = match loaded {
            ModelState::Ready { model_version } => model_version,
            ModelState::Unavailable { reason } => bail!(
                "the moderator's model is unavailable ({reason}): run `bash scripts/fetch-model.sh`"
            ),
            ModelState::Loading => bail!("the moderator's model is still loading"),
        };
        let addr = app.local_addr;
        let product = Self::populate(vec![app], addr, addr, Some(dir), channels, members).await?;
        Ok((product, model))
    }

    /// Sets up the server, its `channels` channels and `members` members through `api`, one of
    /// the running `apps` (which [`Self::stop`] stops); `edge` serves the subscriptions.
    pub(crate) async fn populate(
        apps: Vec<Running>,
        api: SocketAddr,
        edge: SocketAddr,
        dir: Option<tempfile::TempDir>,
        channels: usize,
        members: usize,
    ) -> anyhow::Result<Self> {
        let addr = api;
        let http = reqwest::Client::new();
        let owner = register(&http, addr, "sender").await?;
        let server = graphql(
            &http,
            addr,
            Some(&owner),
            "mutation { createServer(input: {name: \"bench\"}) { id } }",
            json!({}),
        )
        .await?;
        let server = server["createServer"]["id"]
            .as_str()
            .context("server")?
            .to_owned();
        let mut made = Vec::new();
        for n in 0..channels {
            let channel = graphql(&http, addr, Some(&owner), "mutation($s: ID!, $n: String!) { createChannel(input: {serverId: $s, name: $n}) { id } }", json!({ "s": server, "n": format!("c{n}") })).await?;
            made.push(
                channel["createChannel"]["id"]
                    .as_str()
                    .context("channel")?
                    .to_owned(),
            );
        }
        let invite = graphql(
            &http,
            addr,
            Some(&owner),
            "mutation($s: ID!) { createInvite(input: {serverId: $s}) { code } }",
            json!({ "s": server }),
        )
        .await?;
        let code = invite["createInvite"]["code"]
            .as_str()
            .context("invite")?
            .to_owned();
        eprintln!("  registering {members} members");
        let registered: Vec<anyhow::Result<String>> = futures::stream::iter(0..members)
            .map(|n| {
                let http = http.clone();
                async move { register(&http, addr, &format!("member{n}")).await }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut tokens = Vec::with_capacity(members);
        // Joins change one server: one at a time, as concurrent ones would only conflict.
        for token in registered {
            let token = token?;
            graphql(
                &http,
                addr,
                Some(&token),
                "mutation($c: String!) { joinServer(inviteCode: $c) { id } }",
                json!({ "c": code }),
            )
            .await?;
            tokens.push(token);
        }
        Ok(Self {
            apps,
            api,
            edge,
            http,
            owner,
            channels: made,
            tokens,
            _dir: dir,
        })
    }

    /// Stops every instance; the first failure is the result, after all were asked to stop.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        let mut outcome = Ok(());
        for app in self.apps {
            if let Err(error) = app.stop().await {
                if outcome.is_ok() {
                    outcome = Err(error.into());
                }
            }
        }
        outcome
    }

    /// Runs one load shape: subscriber `n` is member `n mod members` (a member with several
    /// devices holds several connections) on channel `n mod channels`, subscribed on the edge
    /// instance; the messages are sent to the API instance.
    pub(crate) async fn phase(&self, shape: Shape) -> anyhow::Result<Phase> {
        let (addr, api) = (self.edge, self.api);
        let channels = &self.channels[..shape.channels.min(self.channels.len())];
        let reader = Reader::new();
        let mut readers = tokio::task::JoinSet::new();
        eprintln!("  subscribing {} connections", shape.subscribers);
        for n in 0..shape.subscribers {
            let channel = channels[n % channels.len()].clone();
            let token = &self.tokens[n % self.tokens.len()];
            let mut socket = signed_in_socket(addr, token, 1).await?;
            socket
                .send(WsMessage::text(
                    json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription($c: ID!) { channelEvents(channelId: $c) { ... on MessageSent { message { body } } } }", "variables": { "c": channel } } })
                        .to_string(),
                ))
                .await?;
            readers.spawn(read_deliveries(socket, reader.clone(), read_product_frame));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;

        eprintln!(
            "  sending {} messages/s for {} s",
            shape.rate, shape.seconds
        );
        let (http, owner) = (self.http.clone(), self.owner.clone());
        let channels = channels.to_vec();
        let phase = send_open_loop(&shape, &reader, move |n, body| {
            let (http, owner) = (http.clone(), owner.clone());
            let channel = channels[n % channels.len()].clone();
            async move {
                graphql(&http, api, Some(&owner), "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }", json!({ "c": channel, "b": body })).await.is_ok()
            }
        }, &mut readers)
        .await;
        Ok(phase)
    }
}

/// Sends `shape`'s messages open loop (the n-th leaves at n × interval, whatever the previous
/// ones do; at most 64 in flight), message `n` with `send(n, body)` where the body is
/// `<tag><send instant>`, then waits for the deliveries owed to land in `tally` (or for quiet),
/// stops the `readers` and measures the phase. `send` answers whether the server took the
/// message.
pub(crate) async fn send_open_loop<F, Fut>(
    shape: &Shape,
    reader: &Reader,
    send: F,
    readers: &mut tokio::task::JoinSet<()>,
) -> Phase
where
    F: Fn(usize, String) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let Reader {
        epoch,
        tag,
        tally,
        stop,
    } = reader;
    let epoch = *epoch;
    let total = shape.total();
    let interval = Duration::from_secs_f64(1.0 / f64::from(shape.rate));
    let started = Instant::now();
    let sending_from_us = stamp(epoch);
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut sends = tokio::task::JoinSet::new();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(64));
    for n in 0..total {
        tokio::time::sleep_until(tokio::time::Instant::from_std(
            started + interval * n as u32,
        ))
        .await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let sent = send(n as usize, format!("{tag}{}", stamp(epoch)));
        let failures = failures.clone();
        sends.spawn(async move {
            if !sent.await {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            drop(permit);
        });
    }
    while sends.join_next().await.is_some() {}
    let send_seconds = started.elapsed().as_secs_f64();
    let failed = failures.load(std::sync::atomic::Ordering::Relaxed);
    // Let the backlog land, then stop the readers: each adds its figures as it ends.
    tally
        .settle(shape.expected(total - failed), shape.settle_quiet)
        .await;
    stop.cancel();
    while readers.join_next().await.is_some() {}
    tally.phase(shape, total - failed, failed, send_seconds, sending_from_us)
}

// --- the baseline -----------------------------------------------------------------------------

async fn baseline_socket(socket: WebSocket, feed: broadcast::Sender<Arc<str>>) {
    let mut updates = feed.subscribe();
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Ok(text) => if sink.send(AxumMessage::text(text.as_ref())).await.is_err() { return },
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            incoming = stream.next() => if !matches!(incoming, Some(Ok(_))) { return },
        }
    }
}

type Feeds = Arc<Vec<broadcast::Sender<Arc<str>>>>;

/// The bare axum broadcast server on loopback: its address, the feed of each chat channel, and
/// what stops it.
pub async fn baseline_server(
    channels: usize,
) -> anyhow::Result<(
    SocketAddr,
    Feeds,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
)> {
    // One broadcast channel per chat channel: a client hears only its channel, as a
    // subscriber of one chat channel does.
    let feeds: Feeds = Arc::new(
        (0..channels.max(1))
            .map(|_| broadcast::channel::<Arc<str>>(4_096).0)
            .collect(),
    );
    let app = axum::Router::new()
        .route(
            "/ws/{channel}",
            get(
                |upgrade: WebSocketUpgrade,
                 axum::extract::Path(channel): axum::extract::Path<usize>,
                 State(feeds): State<Feeds>| async move {
                    let feed = feeds.get(channel).or_else(|| feeds.first()).cloned();
                    upgrade.on_upgrade(move |socket| async move {
                        if let Some(feed) = feed {
                            baseline_socket(socket, feed).await;
                        }
                    })
                },
            ),
        )
        .with_state(feeds.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn({
        let stop = stop.clone();
        async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        }
    });

    Ok((addr, feeds, stop, server))
}

/// One load shape through the bare broadcast server.
async fn baseline(shape: Shape) -> anyhow::Result<Phase> {
    let (addr, feeds, stop, server) = baseline_server(shape.channels).await?;
    // The baseline's messages carry their send instant in `t`, so the tag goes unused.
    let reader = Reader::new();
    let Reader { epoch, .. } = reader;
    let mut readers = tokio::task::JoinSet::new();
    for n in 0..shape.subscribers {
        let channel = n % shape.channels;
        let socket = connect(&format!("ws://{addr}/ws/{channel}"), None, 1).await?;
        readers.spawn(read_deliveries(socket, reader.clone(), |text| {
            serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|message| message["t"].as_u64())
                .map_or(Frame::Other, Frame::Sent)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let total = shape.total();
    let interval = Duration::from_secs_f64(1.0 / f64::from(shape.rate));
    let started = Instant::now();
    let sending_from_us = stamp(epoch);
    for n in 0..total {
        tokio::time::sleep_until(tokio::time::Instant::from_std(
            started + interval * n as u32,
        ))
        .await;
        let message = json!({ "channel": n as usize % shape.channels, "t": stamp(epoch), "body": "a message of about the product's size", "id": uuid::Uuid::now_v7() });
        let _ = feeds[n as usize % shape.channels].send(Arc::from(message.to_string()));
    }
    let send_seconds = started.elapsed().as_secs_f64();
    reader
        .tally
        .settle(shape.expected(total), shape.settle_quiet)
        .await;
    reader.stop.cancel();
    while readers.join_next().await.is_some() {}
    stop.cancel();
    let _ = server.await;
    Ok(reader
        .tally
        .phase(&shape, total, 0, send_seconds, sending_from_us))
}

// --- the report ---------------------------------------------------------------------------------

pub(crate) fn phase_json(phase: &Phase) -> Value {
    json!({
        "sent": phase.sent,
        "send_failures": phase.send_failures,
        "send_seconds": round(phase.send_seconds, 3),
        "achieved_rate_per_s": round(phase.sent as f64 / phase.send_seconds.max(0.001), 1),
        "deliveries_expected": phase.expected,
        "deliveries_received": phase.delivered,
        "deliveries_per_s": round(phase.deliveries_per_s, 1),
        "latency": phase.latency.to_json(),
    })
}

fn idle_json(idle: &Idle) -> Value {
    json!({
        "opened": idle.opened,
        "failed": idle.failed,
        "seconds": round(idle.seconds, 1),
        "rss_before_kib": idle.rss_before_kib,
        "rss_after_kib": idle.rss_after_kib,
        "kib_per_connection": round(idle.kib_per_connection(), 2),
        "metrics_scrape": idle.scrape.map(|scrape| json!({
            "count": scrape.count,
            "p50_ms": round(scrape.p50_ms, 2),
            "max_ms": round(scrape.max_ms, 2),
            "bytes": scrape.bytes,
        })),
    })
}

impl Report for Results {
    const NAME: &'static str = "realtime";

    fn to_json(&self) -> Value {
        json!({
            "date": self.started,
            "nproc": nproc(),
            "load_average_before": self.load_before,
            "load_average_after": self.load_after,
            "build_profile": if cfg!(debug_assertions) { "debug" } else { "release" },
            "settings": { "subscribers": self.subscribers, "channels": self.channels, "rate_per_s": self.rate, "seconds": self.seconds },
            "product": phase_json(&self.product),
            "product_moderated": self.moderated.iter().map(|(share, phase)| json!({ "cpu_share": share, "phase": phase_json(phase) })).collect::<Vec<_>>(),
            "baseline": phase_json(&self.baseline),
            "fanout_settings": { "subscribers": self.fanout_subscribers, "channels": 1, "rate_per_s": self.fanout_rate, "seconds": self.seconds },
            "fanout_product": phase_json(&self.fanout_product),
            "fanout_baseline": phase_json(&self.fanout_baseline),
            "idle_product": idle_json(&self.product_idle),
            "idle_baseline": idle_json(&self.baseline_idle),
            "peers": self.peers.iter().map(|measured| (measured.peer.key().to_owned(), json!({
                "label": measured.peer.label(),
                "latency": measured.latency.as_ref().map(phase_json),
                "fanout": measured.fanout.as_ref().map(phase_json),
                "idle": measured.idle.as_ref().map(idle_json),
            }))).collect::<serde_json::Map<String, Value>>(),
            "notes": self.notes,
        })
    }

    fn to_markdown(&self) -> String {
        let row = |name: &str, p: &Phase| {
            format!(
                "| {name} | {:.0} | {} / {} | {:.0} | {:.2} | {:.2} | {:.2} |\n",
                p.sent as f64 / p.send_seconds.max(0.001),
                p.delivered,
                p.expected,
                p.deliveries_per_s,
                p.latency.p50_ms,
                p.latency.p99_ms,
                p.latency.max_ms
            )
        };
        let idle_row = |name: &str, i: &Idle| {
            format!(
                "| {name} | {} ({} failed) | {:.0} s | {:.1} KiB |\n",
                i.opened,
                i.failed,
                i.seconds,
                i.kib_per_connection()
            )
        };
        let mut out = String::new();
        out.push_str("# Realtime benchmark\n\n");
        out.push_str(&format!(
            "{} · {} cores · {} build · load average before `{}`, after `{}` · {} subscribers over {} channels, {} messages/s for {} s; product = the embedded application in-process, baseline = a bare axum WebSocket broadcast server, same process, same run.\n\n",
            self.started,
            nproc(),
            if cfg!(debug_assertions) { "debug" } else { "release" },
            self.load_before,
            self.load_after,
            self.subscribers,
            self.channels,
            self.rate,
            self.seconds
        ));
        out.push_str("| | achieved send rate /s | deliveries received / expected | deliveries /s (first send → last delivery) | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|\n");
        out.push_str(&row("product: sendMessage → channelEvents", &self.product));
        for (share, moderated) in &self.moderated {
            out.push_str(&row(
                &format!(
                    "product, moderator running at CPU share {share}{} (every message scored by the model)",
                    if *share < 1.0 { ", 1 thread" } else { ", every core" }
                ),
                moderated,
            ));
        }
        out.push_str(&row("baseline: broadcast → WebSocket", &self.baseline));
        for measured in &self.peers {
            if let Some(phase) = &measured.latency {
                out.push_str(&row(
                    &format!("peer: {}: publish → subscriber", measured.peer.label()),
                    phase,
                ));
            }
        }
        out.push_str(&format!(
            "\n**Fan-out:** {} connections on one channel, {} messages/s for {} s (every message owed to every connection).\n\n",
            self.fanout_subscribers, self.fanout_rate, self.seconds
        ));
        out.push_str("| | achieved send rate /s | deliveries received / expected | deliveries /s (first send → last delivery) | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|\n");
        out.push_str(&row(
            "product: sendMessage → channelEvents",
            &self.fanout_product,
        ));
        out.push_str(&row(
            "baseline: broadcast → WebSocket",
            &self.fanout_baseline,
        ));
        for measured in &self.peers {
            if let Some(phase) = &measured.fanout {
                out.push_str(&row(
                    &format!("peer: {}: publish → subscriber", measured.peer.label()),
                    phase,
                ));
            }
        }
        out.push_str("\n| idle connections | held | to open | server RSS per connection (clients in child processes) |\n|---|---:|---:|---:|\n");
        out.push_str(&idle_row(
            "product (graphql-transport-ws, connection_init)",
            &self.product_idle,
        ));
        out.push_str(&idle_row("baseline (bare WebSocket)", &self.baseline_idle));
        for measured in &self.peers {
            if let Some(idle) = &measured.idle {
                out.push_str(&idle_row(
                    &format!("peer: {} (past its handshake)", measured.peer.label()),
                    idle,
                ));
            }
        }
        if let Some(scrape) = self.product_idle.scrape {
            out.push_str(&format!(
                "\n`GET /metrics` of the product while its {} idle connections were held: {} scrapes \
                 one after another, p50 {:.2} ms, max {:.2} ms, {} bytes each.\n\n",
                self.product_idle.opened, scrape.count, scrape.p50_ms, scrape.max_ms, scrape.bytes
            ));
        }
        if !self.peers.is_empty() {
            out.push_str(&self.ratios());
        }
        for note in &self.notes {
            out.push_str(&format!("\n**Note:** {note}\n"));
        }
        out
    }
}

impl Results {
    /// Each peer's figures against the product's: the product's divided by the peer's.
    fn ratios(&self) -> String {
        let ratio = |product: f64, peer: Option<f64>| match peer {
            Some(peer) if peer > 0.0 => format!("{:.2}", product / peer),
            _ => "–".to_owned(),
        };
        let mut out = String::from(
            "\n**The product against each peer** (product ÷ peer, same run: above 1 the product's latency or memory is higher, its fan-out rate better):\n\n\
             | peer | latency p50 | latency p99 | fan-out deliveries/s | fan-out p99 | idle KiB per connection |\n|---|---:|---:|---:|---:|---:|\n",
        );
        for measured in &self.peers {
            let latency = measured.latency.as_ref();
            let fanout = measured.fanout.as_ref();
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                measured.peer.label(),
                ratio(
                    self.product.latency.p50_ms,
                    latency.map(|p| p.latency.p50_ms)
                ),
                ratio(
                    self.product.latency.p99_ms,
                    latency.map(|p| p.latency.p99_ms)
                ),
                ratio(
                    self.fanout_product.deliveries_per_s,
                    fanout.map(|p| p.deliveries_per_s)
                ),
                ratio(
                    self.fanout_product.latency.p99_ms,
                    fanout.map(|p| p.latency.p99_ms)
                ),
                ratio(
                    self.product_idle.kib_per_connection(),
                    measured.idle.as_ref().map(Idle::kib_per_connection)
                ),
            ));
        }
        out
    }
}

/// Latency CDFs of the product, the baseline and the peers, as an SVG drawn by hand.
fn plot(results: &Results) -> String {
    let (width, height, margin) = (640.0, 400.0, 50.0);
    let max_ms = results
        .product
        .latency
        .p99_ms
        .max(results.baseline.latency.p99_ms)
        .max(
            results
                .peers
                .iter()
                .filter_map(|measured| measured.latency.as_ref())
                .map(|phase| phase.latency.p99_ms)
                .fold(0.0, f64::max),
        )
        .max(1.0)
        * 1.2;
    let curve = |samples: &[u32], color: &str| {
        if samples.is_empty() {
            return String::new();
        }
        let step = (samples.len() / 200).max(1);
        let points: Vec<String> = samples
            .iter()
            .enumerate()
            .step_by(step)
            .map(|(i, us)| {
                let x =
                    margin + (f64::from(*us) / 1_000.0 / max_ms).min(1.0) * (width - 2.0 * margin);
                let y =
                    height - margin - (i as f64 / samples.len() as f64) * (height - 2.0 * margin);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        )
    };
    const PEER_COLORS: [&str; 3] = ["#27ae60", "#8e44ad", "#d35400"];
    let mut peer_curves = String::new();
    let mut peer_legend = String::new();
    for (n, measured) in results.peers.iter().enumerate() {
        let color = PEER_COLORS[n % PEER_COLORS.len()];
        if let Some(phase) = &measured.latency {
            peer_curves.push_str(&curve(&phase.samples, color));
            peer_legend.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"{color}\">{}</text>",
                width - margin,
                72 + 16 * n,
                measured.peer.label()
            ));
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\
<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
<line x1=\"{margin}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\
<line x1=\"{margin}\" y1=\"{margin}\" x2=\"{margin}\" y2=\"{b}\" stroke=\"black\"/>\
<text x=\"{margin}\" y=\"20\">latency CDF, mutation sent → event received ({} subscribers, {} msg/s)</text>\
<text x=\"{r}\" y=\"{lx}\" text-anchor=\"end\">{max_ms:.1} ms</text><text x=\"{margin}\" y=\"{lx}\">0</text>\
<text x=\"5\" y=\"{margin}\">100 %</text>\
{}{}{}\
<text x=\"{r}\" y=\"40\" text-anchor=\"end\" fill=\"#c0392b\">product</text>\
<text x=\"{r}\" y=\"56\" text-anchor=\"end\" fill=\"#2980b9\">bare axum broadcast</text>{}</svg>\n",
        results.subscribers,
        results.rate,
        curve(&results.product.samples, "#c0392b"),
        curve(&results.baseline.samples, "#2980b9"),
        peer_curves,
        peer_legend,
        b = height - margin,
        r = width - margin,
        lx = height - margin + 18.0,
    )
}
