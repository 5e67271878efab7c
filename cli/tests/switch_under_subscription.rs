//! A timeline rebuilt and switched while messages flow, with real processes (`aether serve` as
//! relay, the catalog, receipts and timeline projectors, an API and an edge) against real
//! PostgreSQL, tansu and a MongoDB-compatible server: a subscription open on the edge across
//! the switch gets every message exactly once, in order, and the history reads whole after it.
//! (The process and client helpers are a trimmed copy of `one_read_side.rs`.)

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aether_test_support::{kafka_config, TestDatabase};
use anyhow::{anyhow, bail, ensure, Context};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// The longest any single wait of this test lasts: nothing hangs.
const PATIENCE: Duration = Duration::from_secs(60);

/// How long an HTTP request may take before the test fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a subscriber waits for an event that should come.
const EVENT_WAIT: Duration = Duration::from_secs(20);

/// Partitions of each topic: several, so that aggregates interleave.
const PARTITIONS: i32 = 3;

/// Messages the writer sends at least (it goes on until told to stop).
const AT_LEAST: usize = 60;

/// Messages sent once the switch is done and the writer stopped.
const AFTER_THE_SWITCH: usize = 5;

fn mongo_url() -> String {
    std::env::var("AETHER_TEST_MONGO")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27017/?directConnection=true".to_owned())
}

/// An `aether` process, killed when dropped.
struct Process {
    name: String,
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh installation: its own PostgreSQL database, topic prefix, MongoDB database and
/// token-signing keys, set up with the operator's commands.
struct Deployment {
    db: TestDatabase,
    kafka_bootstrap: String,
    topic_prefix: String,
    mongo_database: String,
    dir: tempfile::TempDir,
    secret: PathBuf,
}

impl Deployment {
    async fn start() -> anyhow::Result<Self> {
        let db = TestDatabase::create().await?;
        let kafka = kafka_config(PARTITIONS);
        let dir = tempfile::tempdir()?;
        let secret = dir.path().join("jwt-secret");
        let deployment = Self {
            db,
            kafka_bootstrap: kafka.bootstrap,
            topic_prefix: kafka.topic_prefix,
            mongo_database: format!("switch_under_sub_{}", uuid::Uuid::new_v4().simple()),
            dir,
            secret,
        };
        deployment.must(&["migrate"]).await?;
        deployment
            .must(&["kafka", "init", "--partitions", &PARTITIONS.to_string()])
            .await?;
        let secret = deployment.secret.to_string_lossy().into_owned();
        deployment
            .must(&["keys", "generate", "--file", &secret])
            .await?;
        Ok(deployment)
    }

    /// `aether` with this installation's settings; settings that could leak in from the
    /// environment running the tests are removed.
    fn aether(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_aether"));
        for inherited in [
            "AETHER_DATA_DIR",
            "AETHER_LISTEN",
            "AETHER_ROLE",
            "AETHER_PROJECTION",
            "AETHER_JWT_SECRET_FILE",
        ] {
            command.env_remove(inherited);
        }
        command
            .args(["--log", "warn"])
            .current_dir(self.dir.path())
            .env("AETHER_POSTGRES_URL", &self.db.url)
            .env("AETHER_KAFKA_BOOTSTRAP", &self.kafka_bootstrap)
            .env("AETHER_TOPIC_PREFIX", &self.topic_prefix)
            .env("AETHER_MONGO_URL", mongo_url())
            .env("AETHER_MONGO_DATABASE", &self.mongo_database);
        command
    }

    /// Runs an operator command to its end (at most [`PATIENCE`]).
    async fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut command = self.aether();
        command.args(args).stdin(Stdio::null());
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let name = format!("aether {}", args.join(" "));
        let pid = child.id();
        let waited = tokio::time::timeout(
            PATIENCE,
            tokio::task::spawn_blocking(move || child.wait_with_output()),
        )
        .await;
        let output = match waited {
            Ok(joined) => joined??,
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                bail!("{name} did not finish within {PATIENCE:?}");
            }
        };
        eprintln!(
            "{name}: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(output)
    }

    /// Runs an operator command that must succeed; returns its standard output.
    async fn must(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.cli(args).await?;
        ensure!(
            output.status.success(),
            "aether {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Starts `aether serve ARGS --listen 127.0.0.1:0` in `cwd`, reads the address it prints,
    /// and waits until its `/readyz` answers 200.
    async fn serve(
        &self,
        name: &str,
        args: &[&str],
        cwd: &Path,
    ) -> anyhow::Result<(Process, SocketAddr)> {
        let mut command = self.aether();
        command
            .current_dir(cwd)
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().context("standard output")?;
        let mut process = Process {
            name: name.to_owned(),
            child,
        };
        let (address, line) = tokio::sync::oneshot::channel::<String>();
        let label = name.to_owned();
        std::thread::spawn(move || {
            let mut address = Some(address);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{label}] {line}");
                if line.contains("http://") {
                    if let Some(address) = address.take() {
                        let _ = address.send(line);
                    }
                }
            }
        });
        let line = match tokio::time::timeout(PATIENCE, line).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => bail!(
                "{name} ended before saying where it listens: {:?}",
                process.child.try_wait()
            ),
            Err(_) => bail!("{name} did not say where it listens within {PATIENCE:?}"),
        };
        let addr: SocketAddr = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("http://"))
            .and_then(|rest| rest.split('/').next())
            .with_context(|| format!("no address in {line:?}"))?
            .parse()?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        let started = Instant::now();
        loop {
            if let Some(status) = process.child.try_wait()? {
                bail!("{} exited before it was ready: {status}", process.name);
            }
            let ready = http.get(format!("http://{addr}/readyz")).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                break;
            }
            ensure!(
                started.elapsed() < PATIENCE,
                "{name} was not ready within {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("{name} ready at {addr} after {:?}", started.elapsed());
        Ok((process, addr))
    }

    /// The relay and the three projectors.
    async fn background(&self) -> anyhow::Result<Vec<Process>> {
        let dir = self.dir.path().to_path_buf();
        let (relay, _) = self.serve("relay", &["--role", "relay"], &dir).await?;
        let mut processes = vec![relay];
        for projection in ["catalog", "receipts", "timeline"] {
            let (projector, _) = self
                .serve(
                    projection,
                    &["--role", "projector", "--projection", projection],
                    &dir,
                )
                .await?;
            processes.push(projector);
        }
        Ok(processes)
    }

    /// An API or edge instance (`role`) in `home`, without rate limits.
    async fn instance(
        &self,
        name: &str,
        role: &str,
        home: &Path,
    ) -> anyhow::Result<(Process, SocketAddr)> {
        let secret = self.secret.to_string_lossy().into_owned();
        let mut args = vec!["--role", role, "--jwt-secret-file", &secret];
        for limit in [
            "--rate-mutations-per-user",
            "--rate-mutations-per-ip",
            "--rate-logins-per-ip",
            "--rate-logins-per-username",
        ] {
            args.extend([limit, "off"]);
        }
        args.extend(["--shutdown-grace", "2"]);
        self.serve(name, &args, home).await
    }

    /// The `projections list --json` row of `name`.
    async fn listed(&self, name: &str) -> anyhow::Result<Value> {
        let out = self.must(&["projections", "list", "--json"]).await?;
        let rows: Vec<Value> = serde_json::from_str(&out)?;
        rows.into_iter()
            .find(|row| row["name"] == json!(name))
            .with_context(|| format!("{name} is not listed: {out}"))
    }

    async fn finish(self, processes: Vec<Process>) -> anyhow::Result<()> {
        drop(processes);
        if let Ok(client) = mongodb::Client::with_uri_str(mongo_url()).await {
            let _ =
                tokio::time::timeout(PATIENCE, client.database(&self.mongo_database).drop()).await;
        }
        tokio::time::timeout(PATIENCE, self.db.drop_database())
            .await
            .context("dropping the test database took too long")??;
        Ok(())
    }
}

/// A GraphQL-over-HTTP client of one instance, sending its newest consistency token.
#[derive(Clone, Debug)]
struct Client {
    http: reqwest::Client,
    addr: SocketAddr,
    token: Option<String>,
    consistency: Option<String>,
}

impl Client {
    fn new(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()?,
            addr,
            token: None,
            consistency: None,
        })
    }

    /// A request that must succeed; returns `data`.
    async fn ok(&mut self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .post(format!("http://{}/graphql", self.addr))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(consistency) = &self.consistency {
            request = request.header("x-consistency-token", consistency);
        }
        let body: Value = request.send().await?.json().await?;
        if let Some(token) = body["extensions"]["consistencyToken"].as_str() {
            self.consistency = Some(token.to_owned());
        }
        if body.get("errors").is_some_and(|errors| !errors.is_null()) {
            bail!("unexpected errors from {}: {body}", self.addr);
        }
        Ok(body["data"].clone())
    }

    /// `data.<field>.<key>` of a mutation, as a string.
    async fn mutate(
        &mut self,
        query: &str,
        variables: Value,
        field: &str,
        key: &str,
    ) -> anyhow::Result<String> {
        let data = self.ok(query, variables).await?;
        Ok(data[field][key]
            .as_str()
            .with_context(|| format!("no {field}.{key} in {data}"))?
            .to_owned())
    }

    /// Registers `username`; a client signed in as them.
    async fn register(&mut self, username: &str) -> anyhow::Result<Client> {
        let token = self
            .mutate(
                "mutation($u: String!) { register(input: {username: $u, password: \"correct horse\"}) \
                 { accessToken } }",
                json!({ "u": username }),
                "register",
                "accessToken",
            )
            .await?;
        Ok(Self {
            token: Some(token),
            ..self.clone()
        })
    }

    async fn send(&mut self, channel: &str, body: &str) -> anyhow::Result<String> {
        self.mutate(
            "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }",
            json!({ "c": channel, "b": body }),
            "sendMessage",
            "id",
        )
        .await
    }
}

const CHANNEL_EVENTS: &str =
    "subscription($c: ID!, $after: String) { channelEvents(channelId: $c, after: $after) { \
     __typename cursor ... on MessageSent { message { id body } } } }";

const HISTORY: &str = "query($c: ID!, $after: String) { channel(id: $c) { messages(first: 100, \
                       after: $after) { edges { cursor node { id body } } pageInfo { hasNextPage } } } }";

/// A `graphql-transport-ws` connection.
struct Subscriber {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Subscriber {
    /// Connects and completes `connection_init` with `token`.
    async fn connect(addr: SocketAddr, token: &str) -> anyhow::Result<Self> {
        let mut request = format!("ws://{addr}/graphql").into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
        let (socket, _) =
            tokio::time::timeout(REQUEST_TIMEOUT, tokio_tungstenite::connect_async(request))
                .await
                .context("the WebSocket handshake did not finish in time")??;
        let mut subscriber = Self { socket };
        subscriber
            .send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }))
            .await?;
        let ack = subscriber.next_message(EVENT_WAIT).await?;
        ensure!(
            ack["type"] == "connection_ack",
            "expected connection_ack, got {ack}"
        );
        Ok(subscriber)
    }

    async fn send(&mut self, message: Value) -> anyhow::Result<()> {
        self.socket
            .send(WsMessage::text(message.to_string()))
            .await?;
        Ok(())
    }

    /// The next protocol message within `wait` (pings are answered and skipped); `None` when
    /// nothing came.
    async fn next_message_or_none(&mut self, wait: Duration) -> anyhow::Result<Option<Value>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let Ok(frame) = tokio::time::timeout_at(deadline, self.socket.next()).await else {
                return Ok(None);
            };
            match frame.context("the connection closed")?? {
                WsMessage::Text(text) => {
                    let message: Value = serde_json::from_str(text.as_str())?;
                    match message["type"].as_str() {
                        Some("ping") => self.send(json!({ "type": "pong" })).await?,
                        Some("pong") => {}
                        _ => return Ok(Some(message)),
                    }
                }
                WsMessage::Close(frame) => bail!("closed: {frame:?}"),
                _ => {}
            }
        }
    }

    async fn next_message(&mut self, wait: Duration) -> anyhow::Result<Value> {
        self.next_message_or_none(wait)
            .await?
            .ok_or_else(|| anyhow!("nothing arrived within {wait:?}"))
    }

    /// Reads until `stop`, handing every protocol message on as it comes (so the edge never
    /// sees a slow client).
    async fn forward(
        mut self,
        to: mpsc::UnboundedSender<anyhow::Result<Value>>,
        stop: CancellationToken,
    ) {
        while !stop.is_cancelled() {
            match self.next_message_or_none(Duration::from_millis(200)).await {
                Ok(None) => {}
                Ok(Some(message)) => {
                    if to.send(Ok(message)).is_err() {
                        break;
                    }
                }
                Err(error) => {
                    let _ = to.send(Err(error));
                    break;
                }
            }
        }
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, self.socket.close(None)).await;
    }
}

/// One message sent: its body, id, and when the send returned.
struct Sent {
    body: String,
    id: String,
    at: Instant,
}

/// Alice sends "message N", a few every 100 ms, at least [`AT_LEAST`] and on until `stop`
/// (never past [`PATIENCE`]). Returns what she sent and her client (with the newest token).
async fn keep_sending(
    mut alice: Client,
    channel: String,
    stop: CancellationToken,
) -> anyhow::Result<(Vec<Sent>, Client)> {
    let mut sent = Vec::new();
    let started = Instant::now();
    while (sent.len() < AT_LEAST || !stop.is_cancelled()) && started.elapsed() < PATIENCE {
        let body = format!("message {}", sent.len() + 1);
        // Sends only write: no waiting for the read models to reach the previous one.
        let newest = alice.consistency.take();
        let id = alice.send(&channel, &body).await?;
        alice.consistency = alice.consistency.take().or(newest);
        sent.push(Sent {
            body,
            id,
            at: Instant::now(),
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    Ok((sent, alice))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeline_switch_during_traffic_loses_no_update_for_an_open_subscription(
) -> anyhow::Result<()> {
    let started = Instant::now();
    let deployment = Deployment::start().await?;
    let mut processes = deployment.background().await?;
    let homes = [tempfile::tempdir()?, tempfile::tempdir()?];
    let (api_process, api) = deployment.instance("api", "api", homes[0].path()).await?;
    let (edge_process, edge) = deployment.instance("edge", "edge", homes[1].path()).await?;
    processes.extend([api_process, edge_process]);
    eprintln!("deployment up after {:?}", started.elapsed());

    // Alice's server and channel; bob joins, and his membership is visible on the edge.
    let anonymous = Client::new(api)?;
    let mut alice = anonymous.clone().register("alice").await?;
    let mut bob = anonymous.clone().register("bob").await?;
    let server = alice
        .mutate(
            "mutation { createServer(input: {name: \"Switchers\"}) { id } }",
            json!({}),
            "createServer",
            "id",
        )
        .await?;
    let channel = alice
        .mutate(
            "mutation($s: ID!) { createChannel(input: {serverId: $s, name: \"general\"}) { id } }",
            json!({ "s": server }),
            "createChannel",
            "id",
        )
        .await?;
    let code = alice
        .mutate(
            "mutation($s: ID!) { createInvite(input: {serverId: $s}) { code } }",
            json!({ "s": server }),
            "createInvite",
            "code",
        )
        .await?;
    bob.ok(
        "mutation($c: String!) { joinServer(inviteCode: $c) { id } }",
        json!({ "c": code }),
    )
    .await?;
    let mut bob_on_edge = Client {
        addr: edge,
        ..bob.clone()
    };
    let seen = bob_on_edge
        .ok(
            "query($c: ID!) { channel(id: $c) { id } }",
            json!({ "c": channel }),
        )
        .await?;
    assert_eq!(seen["channel"]["id"], json!(channel), "{seen}");
    let live = deployment.listed("timeline").await?;
    assert_eq!(live["version"], json!(1), "{live}");

    // Bob subscribes on the edge from the start of the (empty) channel.
    let mut subscriber =
        Subscriber::connect(edge, bob.token.as_deref().context("bob's token")?).await?;
    subscriber
        .send(json!({ "id": "1", "type": "subscribe", "payload": {
            "query": CHANNEL_EVENTS, "variables": { "c": channel, "after": "0" } } }))
        .await?;
    let early = subscriber
        .next_message_or_none(Duration::from_secs(1))
        .await?;
    ensure!(early.is_none(), "an empty channel, yet: {early:?}");
    let (to_test, mut heard) = mpsc::unbounded_channel();
    let stop_reading = CancellationToken::new();
    let reader = tokio::spawn(subscriber.forward(to_test, stop_reading.clone()));

    // Alice keeps sending while the timeline is rebuilt and switched.
    let stop_sending = CancellationToken::new();
    let writer = tokio::spawn(keep_sending(
        alice.clone(),
        channel.clone(),
        stop_sending.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let rebuild_started = Instant::now();
    // A batch smaller than what arrives during one pass: the rebuild must still end (it stops
    // once it no longer gains on the log; the projector process applies the rest).
    let rebuilt = deployment
        .must(&["projections", "rebuild", "timeline", "--batch", "20"])
        .await;
    let rebuild_ended = Instant::now();
    eprintln!("rebuild took {:?}", rebuild_ended - rebuild_started);
    // Messages keep flowing across the switch for a while, then stop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_sending.cancel();
    let (mut sent, writer_alice) = tokio::time::timeout(PATIENCE, writer)
        .await
        .context("the writer did not stop")???;
    let rebuilt = rebuilt?;
    ensure!(rebuilt.contains("v2 is live"), "rebuild output: {rebuilt}");
    let during = sent
        .iter()
        .filter(|s| s.at >= rebuild_started && s.at <= rebuild_ended)
        .count();
    let after_switch = sent.iter().filter(|s| s.at > rebuild_ended).count();
    eprintln!(
        "{} messages sent by the writer: {during} while the rebuild ran, {after_switch} after the \
         switch",
        sent.len()
    );
    assert!(
        sent.len() >= AT_LEAST,
        "the writer sent only {}",
        sent.len()
    );
    assert!(during > 0, "messages flowed while the rebuild ran");
    assert!(after_switch > 0, "messages flowed after the switch");
    let live = deployment.listed("timeline").await?;
    assert_eq!(live["version"], json!(2), "{live}");
    assert_eq!(live["building"], json!([]), "{live}");

    // A few more, well after the switch.
    alice.consistency = writer_alice.consistency;
    for n in 1..=AFTER_THE_SWITCH {
        let body = format!("after the switch {n}");
        let id = alice.send(&channel, &body).await?;
        sent.push(Sent {
            body,
            id,
            at: Instant::now(),
        });
    }
    let expected: Vec<String> = sent.iter().map(|s| s.body.clone()).collect();
    let expected_ids: Vec<String> = sent.iter().map(|s| s.id.clone()).collect();

    // Bob gets every message once, in order, and then nothing more for 2 s.
    let mut bodies = Vec::new();
    let mut ids = Vec::new();
    let mut cursors: Vec<i64> = Vec::new();
    let mut other = Vec::new();
    let receiving = tokio::time::Instant::now();
    let mut quiet_for = EVENT_WAIT;
    loop {
        if bodies.len() >= expected.len() {
            quiet_for = Duration::from_secs(2);
        }
        let Ok(message) = tokio::time::timeout(quiet_for, heard.recv()).await else {
            break;
        };
        let message = message.context("the subscriber's reader ended")??;
        ensure!(
            message["id"] == "1" && message["type"] == "next",
            "expected an event, got {message}"
        );
        ensure!(
            message["payload"].get("errors").is_none(),
            "subscription error: {message}"
        );
        let event = &message["payload"]["data"]["channelEvents"];
        cursors.push(
            event["cursor"]
                .as_str()
                .and_then(|c| c.parse().ok())
                .with_context(|| format!("no numeric cursor: {event}"))?,
        );
        if event["__typename"] == "MessageSent" {
            bodies.push(event["message"]["body"].as_str().unwrap_or("").to_owned());
            ids.push(event["message"]["id"].as_str().unwrap_or("").to_owned());
        } else {
            other.push(event.clone());
        }
        ensure!(
            receiving.elapsed() < PATIENCE,
            "still receiving after {PATIENCE:?}"
        );
    }
    stop_reading.cancel();
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, reader).await;
    let missing: Vec<&String> = expected.iter().filter(|b| !bodies.contains(b)).collect();
    let repeated: Vec<&String> = expected
        .iter()
        .filter(|b| bodies.iter().filter(|got| got == b).count() > 1)
        .collect();
    eprintln!(
        "bob got {} message events for {} sent in {:?}",
        bodies.len(),
        expected.len(),
        receiving.elapsed()
    );
    assert!(
        missing.is_empty() && repeated.is_empty(),
        "bob missed {missing:?} and got twice {repeated:?}; received in order: {bodies:?}"
    );
    assert_eq!(bodies, expected, "every message, in send order");
    assert_eq!(ids, expected_ids);
    assert!(other.is_empty(), "only message events: {other:?}");
    assert!(
        cursors.windows(2).all(|pair| pair[0] < pair[1]),
        "cursors increase: {cursors:?}"
    );

    // The history through the API (reading v2) has them all, in order.
    let (mut history_bodies, mut history_ids) = (Vec::new(), Vec::new());
    let mut after = Value::Null;
    loop {
        let page = alice
            .ok(HISTORY, json!({ "c": channel, "after": after }))
            .await?;
        let messages = &page["channel"]["messages"];
        let edges = messages["edges"]
            .as_array()
            .with_context(|| format!("no history: {page}"))?;
        for edge in edges {
            history_bodies.push(edge["node"]["body"].as_str().unwrap_or("").to_owned());
            history_ids.push(edge["node"]["id"].as_str().unwrap_or("").to_owned());
        }
        if messages["pageInfo"]["hasNextPage"] != json!(true) {
            break;
        }
        after = edges.last().context("an empty page with more")?["cursor"].clone();
        ensure!(
            history_ids.len() <= 10 * expected.len(),
            "the history does not end"
        );
    }
    assert_eq!(history_bodies, expected, "the history after the switch");
    assert_eq!(history_ids, expected_ids);
    let live = deployment.listed("timeline").await?;
    assert_eq!(live["version"], json!(2), "{live}");

    deployment.finish(processes).await?;
    eprintln!("test took {:?}", started.elapsed());
    Ok(())
}
