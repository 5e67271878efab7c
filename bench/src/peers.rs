//! The servers a chat team would pick instead of the product, for `aether-bench realtime`:
//! each runs in its own process on loopback, is fed the same messages at the same rates through
//! `POST /publish` (`{"channel": …, "body": …}`), and is measured by the same clients as the
//! product and the bare baseline.
//!
//! - **Socket.IO** (Node.js, `socket.io`, a room per channel: the transport of a typical Node
//!   chat server), `bench/peers/socketio.mjs`;
//! - **graphql-ws** (Node.js, `graphql-ws` + `ws` + `graphql`, an in-memory pub/sub per channel:
//!   what an Apollo or NestJS stack serves), `bench/peers/graphql-ws.mjs`;
//! - **async-graphql-axum** (Rust, async-graphql's stock subscription transport on axum, a
//!   `tokio::sync::broadcast` per channel), `aether-bench peer-async-graphql`.
//!
//! The Node.js servers need `node` and the packages pinned in `bench/peers/package-lock.json`
//! (`bash bench/peers/install.sh`); a peer that cannot start is reported, not fatal.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::realtime::{
    connect, read_deliveries, send_open_loop, Frame, Phase, Reader, Shape, Socket,
};

/// A peer server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    /// Socket.IO rooms on Node.js.
    SocketIo,
    /// graphql-ws on Node.js.
    GraphqlWs,
    /// async-graphql's axum subscription transport.
    AsyncGraphql,
}

impl Peer {
    pub const ALL: [Peer; 3] = [Peer::SocketIo, Peer::GraphqlWs, Peer::AsyncGraphql];

    /// The name in reports.
    pub fn label(self) -> &'static str {
        match self {
            Peer::SocketIo => "Socket.IO 4.8 (Node.js, rooms)",
            Peer::GraphqlWs => "graphql-ws 5.16 (Node.js, graphql-js)",
            Peer::AsyncGraphql => "async-graphql-axum 7.2 (Rust)",
        }
    }

    /// The name on the command line and in the JSON results.
    pub fn key(self) -> &'static str {
        match self {
            Peer::SocketIo => "socket-io",
            Peer::GraphqlWs => "graphql-ws",
            Peer::AsyncGraphql => "async-graphql",
        }
    }

    /// The WebSocket URL a client connects to.
    fn url(self, addr: SocketAddr) -> String {
        match self {
            Peer::SocketIo => format!("ws://{addr}/socket.io/?EIO=4&transport=websocket"),
            Peer::GraphqlWs | Peer::AsyncGraphql => format!("ws://{addr}/graphql"),
        }
    }

    fn subprotocol(self) -> Option<&'static str> {
        match self {
            Peer::SocketIo => None,
            Peer::GraphqlWs | Peer::AsyncGraphql => Some("graphql-transport-ws"),
        }
    }
}

/// Where the Node.js peers live: `AETHER_BENCH_PEERS`, or `bench/peers` under the working
/// directory (the benchmark runs from the repository's root).
fn peers_dir() -> PathBuf {
    std::env::var_os("AETHER_BENCH_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("bench/peers"))
}

/// A peer server in its own process; it stops when this is dropped (its standard input closes
/// and the process is killed).
pub struct Running {
    pub addr: SocketAddr,
    child: tokio::process::Child,
}

impl Running {
    /// Starts `peer` on a free loopback port and waits for it to say where.
    pub async fn start(peer: Peer) -> anyhow::Result<Self> {
        let mut command = match peer {
            Peer::SocketIo | Peer::GraphqlWs => {
                let dir = peers_dir();
                if !dir.join("node_modules").is_dir() {
                    bail!(
                        "{} has no node_modules: run `bash bench/peers/install.sh`",
                        dir.display()
                    );
                }
                let script = if peer == Peer::SocketIo {
                    "socketio.mjs"
                } else {
                    "graphql-ws.mjs"
                };
                let mut command = tokio::process::Command::new("node");
                command.arg(script).current_dir(dir);
                command
            }
            Peer::AsyncGraphql => {
                let mut command = tokio::process::Command::new(std::env::current_exe()?);
                command.arg("peer-async-graphql");
                command
            }
        };
        let mut child = command
            .args(["--port", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", peer.label()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .with_context(|| format!("{} did not start in 30 s", peer.label()))??
            .with_context(|| format!("{} exited before listening", peer.label()))?;
        let port: u16 = line
            .strip_prefix("listening ")
            .and_then(|port| port.trim().parse().ok())
            .with_context(|| format!("{} said {line:?}", peer.label()))?;
        Ok(Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
        })
    }

    /// The server process's resident memory.
    pub fn rss_kib(&self) -> u64 {
        let Some(pid) = self.child.id() else {
            return 0;
        };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// A client of `peer` at `url`, from 127.0.0.`source`, past its handshake: a Socket.IO client
/// connected to the default namespace, or a `graphql-transport-ws` client past
/// `connection_ack`.
pub async fn open(peer: Peer, url: &str, source: u8) -> anyhow::Result<Socket> {
    let mut socket = connect(url, peer.subprotocol(), source).await?;
    match peer {
        Peer::SocketIo => {
            // Engine.IO's open packet, then the namespace's connect.
            expect(&mut socket, peer, |text| text.starts_with('0')).await?;
            socket.send(WsMessage::text("40")).await?;
            expect(&mut socket, peer, |text| text.starts_with("40")).await?;
        }
        Peer::GraphqlWs | Peer::AsyncGraphql => {
            socket
                .send(WsMessage::text(
                    json!({ "type": "connection_init", "payload": {} }).to_string(),
                ))
                .await?;
            expect(&mut socket, peer, |text| text.contains("connection_ack")).await?;
        }
    }
    Ok(socket)
}

async fn expect(socket: &mut Socket, peer: Peer, wanted: fn(&str) -> bool) -> anyhow::Result<()> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .with_context(|| format!("{}: no handshake", peer.label()))?
            .context("closed")??;
        if let WsMessage::Text(text) = frame {
            if wanted(text.as_str()) {
                return Ok(());
            }
        }
    }
}

/// Subscribes an open client to `channel`.
async fn subscribe(socket: &mut Socket, peer: Peer, channel: &str) -> anyhow::Result<()> {
    let frame = match peer {
        Peer::SocketIo => format!("42{}", json!(["join", channel])),
        Peer::GraphqlWs | Peer::AsyncGraphql => json!({
            "id": "1",
            "type": "subscribe",
            "payload": {
                "query": "subscription($c: String!) { message(channel: $c) { body } }",
                "variables": { "c": channel },
            },
        })
        .to_string(),
    };
    socket.send(WsMessage::text(frame)).await?;
    Ok(())
}

fn read_frame(peer: Peer, text: &str) -> Frame {
    match peer {
        Peer::SocketIo => {
            if text == "2" {
                return Frame::Answer("3");
            }
            let Some(event) = text.strip_prefix("42") else {
                return Frame::Other;
            };
            match serde_json::from_str::<Value>(event) {
                Ok(event) if event[0] == "message" => event[1]["body"]
                    .as_str()
                    .map_or(Frame::Other, |body| Frame::Message(body.to_owned())),
                _ => Frame::Other,
            }
        }
        Peer::GraphqlWs | Peer::AsyncGraphql => match serde_json::from_str::<Value>(text) {
            Ok(message) if message["type"] == "ping" => Frame::Answer(r#"{"type":"pong"}"#),
            Ok(message) => message["payload"]["data"]["message"]["body"]
                .as_str()
                .map_or(Frame::Other, |body| Frame::Message(body.to_owned())),
            Err(_) => Frame::Other,
        },
    }
}

/// The answer to a peer's keep-alive frame, if `text` is one.
pub fn keep_alive(peer: Peer, text: &str) -> Option<&'static str> {
    match read_frame(peer, text) {
        Frame::Answer(answer) => Some(answer),
        _ => None,
    }
}

/// The channel names the peers use: `c0`, `c1`, ….
fn channel_name(n: usize) -> String {
    format!("c{n}")
}

/// One load shape through a fresh `peer` process, as the product's and the baseline's phases
/// run it: subscriber `n` on channel `n mod channels`, messages published round-robin over the
/// channels, open loop, at most 64 publishes in flight.
pub async fn phase(peer: Peer, shape: Shape) -> anyhow::Result<Phase> {
    let server = Running::start(peer).await?;
    let url = peer.url(server.addr);
    let reader = Reader::new();
    let mut readers = tokio::task::JoinSet::new();
    eprintln!("  subscribing {} connections", shape.subscribers);
    for n in 0..shape.subscribers {
        let mut socket = open(peer, &url, 1).await?;
        subscribe(&mut socket, peer, &channel_name(n % shape.channels)).await?;
        readers.spawn(read_deliveries(socket, reader.clone(), move |text| {
            read_frame(peer, text)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    eprintln!(
        "  publishing {} messages/s for {} s",
        shape.rate, shape.seconds
    );
    let http = reqwest::Client::new();
    let publish = format!("http://{}/publish", server.addr);
    let phase = send_open_loop(
        &shape,
        &reader,
        move |n, body| {
            let (http, publish) = (http.clone(), publish.clone());
            let channel = channel_name(n % shape.channels);
            async move {
                http.post(&publish)
                    .json(&json!({ "channel": channel, "body": body }))
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success())
            }
        },
        &mut readers,
    )
    .await;
    drop(server);
    Ok(phase)
}

/// `count` idle connections (past the handshake, subscribed to nothing) to a fresh `peer`
/// process, opened from child processes; the growth of the peer's RSS is its cost.
pub async fn idle(peer: Peer, count: usize) -> anyhow::Result<crate::realtime::Idle> {
    let server = Running::start(peer).await?;
    let url = peer.url(server.addr);
    crate::idle::hold_with(
        count,
        &url,
        crate::idle::Protocol::Peer(peer),
        None,
        || server.rss_kib(),
        None,
    )
    .await
}

// --- the async-graphql-axum peer -----------------------------------------------------------------

#[derive(Debug, clap::Args)]
pub struct AsyncGraphqlArgs {
    /// Port on 127.0.0.1 (0: any free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

/// One message, as the peers' schema names it.
#[derive(Clone, Debug, async_graphql::SimpleObject)]
#[graphql(name = "Message")]
struct PeerMessage {
    channel: String,
    body: String,
}

/// A broadcast per channel, made when first subscribed to or published on.
#[derive(Clone, Default)]
struct Rooms(Arc<Mutex<HashMap<String, broadcast::Sender<PeerMessage>>>>);

impl Rooms {
    fn sender(&self, channel: &str) -> broadcast::Sender<PeerMessage> {
        let mut rooms = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        rooms
            .entry(channel.to_owned())
            .or_insert_with(|| broadcast::channel(4_096).0)
            .clone()
    }
}

struct QueryRoot;

#[async_graphql::Object]
impl QueryRoot {
    async fn ok(&self) -> bool {
        true
    }
}

struct SubscriptionRoot;

#[async_graphql::Subscription]
impl SubscriptionRoot {
    async fn message(
        &self,
        ctx: &async_graphql::Context<'_>,
        channel: String,
    ) -> impl futures::Stream<Item = PeerMessage> {
        let receiver = ctx.data_unchecked::<Rooms>().sender(&channel).subscribe();
        futures::stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(message) => return Some((message, receiver)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }
}

/// `aether-bench peer-async-graphql`: the stock async-graphql-axum subscription service at
/// `/graphql` and `POST /publish`; prints `listening <port>`, stops when standard input closes.
pub async fn serve_async_graphql(args: AsyncGraphqlArgs) -> anyhow::Result<()> {
    let rooms = Rooms::default();
    let schema =
        async_graphql::Schema::build(QueryRoot, async_graphql::EmptyMutation, SubscriptionRoot)
            .data(rooms.clone())
            .finish();
    let app = axum::Router::new()
        .route_service(
            "/graphql",
            async_graphql_axum::GraphQLSubscription::new(schema),
        )
        .route(
            "/publish",
            axum::routing::post(
                |axum::extract::State(rooms): axum::extract::State<Rooms>,
                 axum::Json(message): axum::Json<Value>| async move {
                    let channel = message["channel"].as_str().unwrap_or_default().to_owned();
                    let body = message["body"].as_str().unwrap_or_default().to_owned();
                    // No subscriber yet is not an error: the message reaches no one.
                    let _ = rooms.sender(&channel).send(PeerMessage { channel, body });
                    axum::http::StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(rooms);
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    println!("listening {}", listener.local_addr()?.port());
    let stdin_closed = async {
        let mut stdin = tokio::io::stdin();
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stdin, &mut sink).await;
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stdin_closed)
        .await?;
    Ok(())
}
