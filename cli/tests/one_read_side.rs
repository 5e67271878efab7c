//! One read side for every instance, with real processes: `aether serve` as relay, projectors
//! (catalog, receipts, timeline), two APIs and an edge, against real PostgreSQL, tansu and a
//! MongoDB-compatible server. The API and edge instances keep no copy of the log and write no
//! file: a write through one API is read through the other with its consistency token, reaches
//! the edge's subscribers live and on resume, and a rebuilt catalog serves every query after
//! the switch with nothing missing, without restarting the API.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use aether_test_support::{kafka_config, TestDatabase};
use anyhow::{anyhow, bail, ensure, Context};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// The longest any single wait of these tests lasts: nothing hangs.
const PATIENCE: Duration = Duration::from_secs(60);

/// How long an HTTP request may take before the test fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a subscriber waits for an event that should come.
const EVENT_WAIT: Duration = Duration::from_secs(20);

/// Partitions of each topic: several, so that aggregates interleave.
const PARTITIONS: i32 = 3;

fn mongo_url() -> String {
    std::env::var("AETHER_TEST_MONGO")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27017/?directConnection=true".to_owned())
}

/// An `aether` process, killed when dropped.
struct Process {
    name: String,
    child: Child,
}

impl Process {
    /// Whether the process ended, and how.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stops the process as an orchestrator would (SIGTERM), waiting up to 30 s for it to end;
    /// then kills it. Returns how it ended.
    async fn stop(mut self) -> anyhow::Result<ExitStatus> {
        let pid = self.child.id().to_string();
        let signalled = Command::new("kill").args(["-TERM", &pid]).status()?;
        ensure!(signalled.success(), "could not signal {}", self.name);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        bail!("{} did not stop within 30 s of SIGTERM", self.name)
    }
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
    /// Holds the keyring; the working directory of everything but the API and edge instances.
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
            mongo_database: format!("one_read_side_{}", uuid::Uuid::new_v4().simple()),
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

    /// `aether` with this installation's settings, as an operator would set them. Settings
    /// that could leak in from the environment running the tests are removed.
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

    /// Runs an operator command to its end (at most [`PATIENCE`] × 2).
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
            PATIENCE * 2,
            tokio::task::spawn_blocking(move || child.wait_with_output()),
        )
        .await;
        let output = match waited {
            Ok(joined) => joined??,
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                bail!("{name} did not finish within {:?}", PATIENCE * 2);
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
        // The first line naming an address says where it listens; every line is passed on,
        // named, to the test's output (and the pipe never fills).
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
                process.exited()
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
            if let Some(status) = process.exited() {
                bail!("{name} exited before it was ready: {status}");
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

    /// The relay and the projectors every query reads.
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

    /// An API or edge instance (`role`), in `home` as its working directory, with no
    /// --data-dir; no rate limits (these tests send faster than a person would).
    async fn instance(
        &self,
        name: &str,
        role: &str,
        home: &Path,
    ) -> anyhow::Result<(Process, SocketAddr)> {
        let secret = self.secret.to_string_lossy().into_owned();
        self.serve(
            name,
            &[
                "--role",
                role,
                "--jwt-secret-file",
                &secret,
                "--rate-mutations-per-user",
                "off",
                "--rate-mutations-per-ip",
                "off",
                "--rate-logins-per-ip",
                "off",
                "--rate-logins-per-username",
                "off",
                "--shutdown-grace",
                "2",
            ],
            home,
        )
        .await
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

/// Every file and directory under `dir`, recursively.
fn everything_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            }
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// A GraphQL-over-HTTP client of one instance.
#[derive(Clone, Debug)]
struct Client {
    http: reqwest::Client,
    addr: SocketAddr,
    token: Option<String>,
    /// The newest consistency token seen; sent with every request as `x-consistency-token`.
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

    /// The same user and consistency token, against another instance.
    fn at(&self, addr: SocketAddr) -> Self {
        Self {
            addr,
            ..self.clone()
        }
    }

    async fn raw(&mut self, query: &str, variables: Value) -> anyhow::Result<Value> {
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
        Ok(body)
    }

    /// A request that must succeed; returns `data`.
    async fn ok(&mut self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let body = self.raw(query, variables).await?;
        if body.get("errors").is_some_and(|errors| !errors.is_null()) {
            bail!("unexpected errors from {}: {body}", self.addr);
        }
        Ok(body["data"].clone())
    }

    /// Registers `username`; a client signed in as them, and their id.
    async fn register(&mut self, username: &str) -> anyhow::Result<(Client, String)> {
        let data = self
            .ok(
                "mutation($u: String!) { register(input: {username: $u, password: \"correct horse\"}) \
                 { accessToken user { id } } }",
                json!({ "u": username }),
            )
            .await?;
        let token = data["register"]["accessToken"]
            .as_str()
            .context("access token")?;
        let id = data["register"]["user"]["id"].as_str().context("user id")?;
        let client = Self {
            token: Some(token.to_owned()),
            ..self.clone()
        };
        Ok((client, id.to_owned()))
    }

    async fn create_server(&mut self, name: &str) -> anyhow::Result<String> {
        let data = self
            .ok(
                "mutation($n: String!) { createServer(input: {name: $n}) { id } }",
                json!({ "n": name }),
            )
            .await?;
        Ok(data["createServer"]["id"]
            .as_str()
            .context("server id")?
            .to_owned())
    }

    async fn create_channel(&mut self, server: &str, name: &str) -> anyhow::Result<String> {
        let data = self
            .ok(
                "mutation($s: ID!, $n: String!) { createChannel(input: {serverId: $s, name: $n}) { id } }",
                json!({ "s": server, "n": name }),
            )
            .await?;
        Ok(data["createChannel"]["id"]
            .as_str()
            .context("channel id")?
            .to_owned())
    }

    async fn create_invite(&mut self, server: &str) -> anyhow::Result<String> {
        let data = self
            .ok(
                "mutation($s: ID!) { createInvite(input: {serverId: $s}) { code } }",
                json!({ "s": server }),
            )
            .await?;
        Ok(data["createInvite"]["code"]
            .as_str()
            .context("invite code")?
            .to_owned())
    }

    async fn join(&mut self, code: &str) -> anyhow::Result<Value> {
        let data = self
            .ok(
                "mutation($c: String!) { joinServer(inviteCode: $c) { id channels { id } } }",
                json!({ "c": code }),
            )
            .await?;
        Ok(data["joinServer"].clone())
    }

    async fn send(&mut self, channel: &str, body: &str) -> anyhow::Result<String> {
        let data = self
            .ok(
                "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }",
                json!({ "c": channel, "b": body }),
            )
            .await?;
        Ok(data["sendMessage"]["id"]
            .as_str()
            .context("message id")?
            .to_owned())
    }
}

const CHANNEL_EVENTS: &str =
    "subscription($c: ID!, $after: String) { channelEvents(channelId: $c, after: $after) { \
     __typename cursor ... on MessageSent { message { id body author { username } } } } }";

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

    async fn subscribe(&mut self, id: &str, query: &str, variables: Value) -> anyhow::Result<()> {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }))
            .await
    }

    /// The next protocol message within `wait` (pings are answered and skipped).
    async fn next_message(&mut self, wait: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .map_err(|_| anyhow!("nothing arrived within {wait:?}"))?
                .context("the connection closed")??;
            match frame {
                WsMessage::Text(text) => {
                    let message: Value = serde_json::from_str(text.as_str())?;
                    if message["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await?;
                        continue;
                    }
                    if message["type"] == "pong" {
                        continue;
                    }
                    return Ok(message);
                }
                WsMessage::Close(frame) => bail!("closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next `channelEvents` event of subscription `id`.
    async fn next_event(&mut self, id: &str) -> anyhow::Result<Value> {
        let message = self.next_message(EVENT_WAIT).await?;
        ensure!(
            message["id"] == id && message["type"] == "next",
            "expected an event for {id}, got {message}"
        );
        ensure!(
            message["payload"].get("errors").is_none(),
            "subscription error: {message}"
        );
        Ok(message["payload"]["data"]["channelEvents"].clone())
    }

    /// No protocol message (other than pings) arrives within `wait`.
    async fn expect_nothing(&mut self, wait: Duration) -> anyhow::Result<()> {
        match self.next_message(wait).await {
            Ok(message) => bail!("expected nothing, got {message}"),
            Err(error) if error.to_string().starts_with("nothing arrived") => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Closes the connection as a client going away does.
    async fn disconnect(mut self) -> anyhow::Result<()> {
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, self.socket.close(None)).await;
        Ok(())
    }
}

/// The message ids of a channel's history, oldest first.
fn history_ids(data: &Value) -> Vec<String> {
    data["channel"]["messages"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|edge| edge["node"]["id"].as_str().map(str::to_owned))
        .collect()
}

const HISTORY: &str = "query($c: ID!) { channel(id: $c) { messages(first: 50) { edges { cursor \
                       node { id body author { username } } } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_through_one_api_is_read_through_another_and_reaches_the_edge_live_and_on_resume(
) -> anyhow::Result<()> {
    let started = Instant::now();
    let deployment = Deployment::start().await?;
    let mut processes = deployment.background().await?;
    let homes = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    let (api_one, one) = deployment.instance("api-1", "api", homes[0].path()).await?;
    let (api_two, two) = deployment.instance("api-2", "api", homes[1].path()).await?;
    let (edge_process, edge) = deployment.instance("edge", "edge", homes[2].path()).await?;
    eprintln!("deployment up after {:?}", started.elapsed());

    // Alice registers through api-1, bob through api-2; alice's community, bob joins on api-2.
    let (mut alice, _) = Client::new(one)?.register("alice").await?;
    let (mut bob, _) = Client::new(two)?.register("bob").await?;
    let server = alice.create_server("Rustaceans").await?;
    let channel = alice.create_channel(&server, "general").await?;
    let code = alice.create_invite(&server).await?;
    let joined = bob.join(&code).await?;
    assert_eq!(joined["id"], json!(server), "{joined}");
    assert_eq!(joined["channels"][0]["id"], json!(channel), "{joined}");

    // Bob's join is visible on the edge with his token, before he subscribes there.
    let mut bob_on_edge = bob.at(edge);
    let seen = bob_on_edge
        .ok(
            "query($c: ID!) { channel(id: $c) { id } }",
            json!({ "c": channel }),
        )
        .await?;
    assert_eq!(seen["channel"]["id"], json!(channel), "{seen}");
    let bob_token = bob.token.clone().context("bob's token")?;

    let mut subscriber = Subscriber::connect(edge, &bob_token).await?;
    subscriber
        .subscribe("1", CHANNEL_EVENTS, json!({ "c": channel, "after": "0" }))
        .await?;
    // An empty channel: nothing to catch up on; the subscription is in place and live.
    subscriber.expect_nothing(Duration::from_secs(1)).await?;

    // Alice sends through api-1 ...
    alice.consistency = None;
    let first = alice.send(&channel, "across processes").await?;
    let token = alice
        .consistency
        .clone()
        .context("api-1 returned no consistency token with sendMessage")?;
    // ... and reads it through api-2 with the token api-1 returned: at once, no retry.
    let mut alice_on_two = alice.at(two);
    alice_on_two.consistency = Some(token);
    let history = alice_on_two.ok(HISTORY, json!({ "c": channel })).await?;
    assert_eq!(
        history_ids(&history),
        std::slice::from_ref(&first),
        "{history}"
    );
    let node = &history["channel"]["messages"]["edges"][0]["node"];
    assert_eq!(node["body"], "across processes");
    assert_eq!(node["author"]["username"], "alice");

    // It reaches bob on the edge, live.
    let event = subscriber.next_event("1").await?;
    assert_eq!(event["__typename"], "MessageSent", "{event}");
    assert_eq!(event["message"]["id"], json!(first), "{event}");
    assert_eq!(event["message"]["body"], "across processes");
    assert_eq!(event["message"]["author"]["username"], "alice");
    let cursor = event["cursor"]
        .as_str()
        .context("the event has no cursor")?
        .to_owned();
    subscriber
        .expect_nothing(Duration::from_millis(500))
        .await?;

    // Bob goes away; alice sends five more; bob comes back after the last event he saw.
    subscriber.disconnect().await?;
    let mut missed = Vec::new();
    for n in 1..=5 {
        missed.push(
            alice
                .send(&channel, &format!("while bob was away {n}"))
                .await?,
        );
    }
    let mut subscriber = Subscriber::connect(edge, &bob_token).await?;
    subscriber
        .subscribe(
            "2",
            CHANNEL_EVENTS,
            json!({ "c": channel, "after": cursor }),
        )
        .await?;
    let mut resumed = Vec::new();
    let mut cursors = vec![cursor.parse::<i64>().context("a numeric cursor")?];
    for _ in 0..5 {
        let event = subscriber.next_event("2").await?;
        assert_eq!(event["__typename"], "MessageSent", "{event}");
        resumed.push(
            event["message"]["id"]
                .as_str()
                .context("message id")?
                .to_owned(),
        );
        cursors.push(
            event["cursor"]
                .as_str()
                .and_then(|c| c.parse().ok())
                .context("cursor")?,
        );
    }
    assert_eq!(
        resumed, missed,
        "exactly the five missed messages, in order"
    );
    assert!(
        cursors.windows(2).all(|pair| pair[0] < pair[1]),
        "cursors increase: {cursors:?}"
    );
    // Nothing more: no duplicate of what was caught up, and not the first message again.
    subscriber.expect_nothing(Duration::from_secs(2)).await?;
    // And it is live again: the next message is the next event.
    let last = alice.send(&channel, "welcome back").await?;
    let event = subscriber.next_event("2").await?;
    assert_eq!(event["message"]["id"], json!(last), "{event}");
    subscriber
        .expect_nothing(Duration::from_millis(500))
        .await?;
    subscriber.disconnect().await?;

    // api-2 sees the whole history too, with alice's newest token.
    alice_on_two.consistency = alice.consistency.clone();
    let history = alice_on_two.ok(HISTORY, json!({ "c": channel })).await?;
    let mut expected = vec![first];
    expected.extend(missed);
    expected.push(last);
    assert_eq!(history_ids(&history), expected);

    // No API or edge instance wrote a file: not while running, not when stopped.
    for (home, name) in homes.iter().zip(["api-1", "api-2", "edge"]) {
        let written = everything_under(home.path())?;
        assert!(
            written.is_empty(),
            "{name} wrote into its working directory: {written:?}"
        );
    }
    for instance in [api_one, api_two, edge_process] {
        let name = instance.name.clone();
        let status = instance.stop().await?;
        eprintln!("{name} stopped: {status}");
    }
    for (home, name) in homes.iter().zip(["api-1", "api-2", "edge"]) {
        let written = everything_under(home.path())?;
        assert!(
            written.is_empty(),
            "{name} wrote into its working directory: {written:?}"
        );
    }
    processes.reverse();
    deployment.finish(processes).await?;
    eprintln!("test took {:?}", started.elapsed());
    Ok(())
}

/// What one server looks like through the API: its name, channel ids in creation order, and
/// its members' usernames in join order.
async fn server_view(
    client: &mut Client,
    server: &str,
) -> anyhow::Result<(Value, Vec<String>, Vec<String>)> {
    let data = client
        .ok(
            "query($s: ID!) { server(id: $s) { name channels { id } \
             members(first: 100) { totalCount edges { node { user { username } } } } } }",
            json!({ "s": server }),
        )
        .await?;
    let server = &data["server"];
    ensure!(!server.is_null(), "the server is not visible: {data}");
    let channels = server["channels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|channel| channel["id"].as_str().map(str::to_owned))
        .collect();
    let members: Vec<String> = server["members"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|edge| edge["node"]["user"]["username"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        server["members"]["totalCount"] == json!(members.len()),
        "totalCount disagrees with the members listed: {data}"
    );
    Ok((server["name"].clone(), channels, members))
}

/// The "Rebuilders" server shows exactly `channels` and `members`, in order.
fn expect_view(
    label: &str,
    view: &(Value, Vec<String>, Vec<String>),
    channels: &[String],
    members: &[String],
) {
    assert_eq!(view.0, json!("Rebuilders"), "{label}");
    assert_eq!(
        view.1, channels,
        "{label}: every channel, in creation order"
    );
    assert_eq!(view.2, members, "{label}: every member, in join order");
}

/// What a writer created while the catalog was rebuilt.
#[derive(Default)]
struct Written {
    /// Channel ids or usernames, in the order created, with when each write returned.
    created: Vec<(String, Instant)>,
    /// Every consistency token handed out, to wait for each.
    tokens: Vec<String>,
}

impl Written {
    fn names(&self) -> Vec<String> {
        self.created.iter().map(|(name, _)| name.clone()).collect()
    }

    /// Writes that returned between `from` and `to`.
    fn between(&self, from: Instant, to: Instant) -> usize {
        self.created
            .iter()
            .filter(|(_, at)| *at >= from && *at <= to)
            .count()
    }
}

/// Alice sends a message and creates a channel, again and again until `stop`; she reads each
/// channel back at once through the API with her consistency token.
async fn keep_creating_channels(
    mut alice: Client,
    server: String,
    general: String,
    stop: CancellationToken,
) -> anyhow::Result<Written> {
    let mut written = Written::default();
    let started = Instant::now();
    let mut n = 0;
    while !stop.is_cancelled() && started.elapsed() < PATIENCE {
        n += 1;
        alice
            .send(&general, &format!("during the rebuild {n}"))
            .await?;
        written.tokens.extend(alice.consistency.clone());
        let channel = alice
            .create_channel(&server, &format!("during-{n}"))
            .await?;
        written.created.push((channel.clone(), Instant::now()));
        written.tokens.extend(alice.consistency.clone());
        let (_, channels, _) = server_view(&mut alice, &server).await?;
        ensure!(
            channels.contains(&channel),
            "alice does not see the channel she just created (during-{n}, {channel})"
        );
    }
    Ok(written)
}

/// Newcomers register and join, one after the other, until `stop`; each reads their own
/// membership back at once through the API with their consistency token.
async fn keep_joining(
    anonymous: Client,
    server: String,
    code: String,
    stop: CancellationToken,
) -> anyhow::Result<Written> {
    let mut written = Written::default();
    let started = Instant::now();
    let mut n = 0;
    while !stop.is_cancelled() && started.elapsed() < PATIENCE {
        n += 1;
        let username = format!("newcomer{n}");
        let (mut newcomer, _) = anonymous.clone().register(&username).await?;
        newcomer.join(&code).await?;
        written.created.push((username.clone(), Instant::now()));
        written.tokens.extend(newcomer.consistency.clone());
        let (_, _, members) = server_view(&mut newcomer, &server).await?;
        ensure!(
            members.contains(&username),
            "{username} does not see their own membership"
        );
    }
    Ok(written)
}

/// The `projections list --json` row of `name`.
async fn listed(deployment: &Deployment, name: &str) -> anyhow::Result<Value> {
    let out = deployment.must(&["projections", "list", "--json"]).await?;
    let rows: Vec<Value> = serde_json::from_str(&out)?;
    rows.into_iter()
        .find(|row| row["name"] == json!(name))
        .with_context(|| format!("{name} is not listed: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_catalog_serves_queries_after_the_switch_with_nothing_missing(
) -> anyhow::Result<()> {
    let started = Instant::now();
    let deployment = Deployment::start().await?;
    let mut processes = deployment.background().await?;
    let home = tempfile::tempdir()?;
    let (api_process, api) = deployment.instance("api", "api", home.path()).await?;
    processes.push(api_process);
    eprintln!("deployment up after {:?}", started.elapsed());

    // Several users, two servers, channels, members.
    let anonymous = Client::new(api)?;
    let (mut alice, _) = anonymous.clone().register("alice").await?;
    let (mut bob, _) = anonymous.clone().register("bob").await?;
    let (mut carol, _) = anonymous.clone().register("carol").await?;
    let (mut dave, _) = anonymous.clone().register("dave").await?;
    let server = alice.create_server("Rebuilders").await?;
    let mut channels = Vec::new();
    for name in ["general", "random", "dev"] {
        channels.push(alice.create_channel(&server, name).await?);
    }
    let code = alice.create_invite(&server).await?;
    let mut members = vec!["alice".to_owned()];
    for (client, name) in [
        (&mut bob, "bob"),
        (&mut carol, "carol"),
        (&mut dave, "dave"),
    ] {
        client.join(&code).await?;
        members.push(name.to_owned());
    }
    let bobs = bob.create_server("Bob's place").await?;
    let bobs_channel = bob.create_channel(&bobs, "lounge").await?;
    let bobs_code = bob.create_invite(&bobs).await?;
    alice.join(&bobs_code).await?;
    alice.send(&channels[0], "before the rebuild").await?;

    let before = server_view(&mut alice, &server).await?;
    assert_eq!(before.1, channels);
    assert_eq!(before.2, members);
    let live = listed(&deployment, "catalog").await?;
    assert_eq!(live["version"], json!(1), "{live}");

    // The rebuild runs while alice keeps creating channels and newcomers keep joining.
    let stop = CancellationToken::new();
    let creating = tokio::spawn(keep_creating_channels(
        alice.clone(),
        server.clone(),
        channels[0].clone(),
        stop.clone(),
    ));
    let joining = tokio::spawn(keep_joining(
        anonymous.clone(),
        server.clone(),
        code.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rebuild_started = Instant::now();
    let built = deployment
        .must(&[
            "projections",
            "rebuild",
            "catalog",
            "--no-switch",
            "--batch",
            "20",
        ])
        .await?;
    let rebuild_ended = Instant::now();
    eprintln!("rebuild took {:?}", rebuild_ended - rebuild_started);
    let version: i32 = built
        .split_whitespace()
        .find_map(|word| word.strip_prefix('v')?.strip_suffix(':')?.parse().ok())
        .with_context(|| format!("no version in {built:?}"))?;
    assert_eq!(version, 2, "{built}");
    let building = listed(&deployment, "catalog").await?;
    assert_eq!(
        building["version"],
        json!(1),
        "still v1 until the switch: {building}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    deployment
        .must(&["projections", "switch", "catalog", &version.to_string()])
        .await?;
    // Writes go on across the switch, then stop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();
    let created = tokio::time::timeout(PATIENCE * 2, creating)
        .await
        .context("the channel writer did not stop")???;
    let joined = tokio::time::timeout(PATIENCE * 2, joining)
        .await
        .context("the newcomers did not stop")???;
    let (created_during, joined_during) = (
        created.between(rebuild_started, rebuild_ended),
        joined.between(rebuild_started, rebuild_ended),
    );
    eprintln!(
        "{} channels ({created_during} during the rebuild), {} newcomers ({joined_during} during \
         the rebuild)",
        created.created.len(),
        joined.created.len()
    );
    assert!(
        created_during + joined_during > 0,
        "writes went on while the rebuild ran"
    );
    channels.extend(created.names());
    members.extend(joined.names());

    // Every write's own token: each read waits for that write on the live version.
    let mut reader = alice.clone();
    for token in created.tokens.iter().chain(&joined.tokens) {
        reader.consistency = Some(token.clone());
        reader.ok("{ me { id } }", json!({})).await?;
    }
    let live = listed(&deployment, "catalog").await?;
    assert_eq!(live["version"], json!(2), "{live}");
    assert_eq!(live["building"], json!([]), "{live}");

    // The same API, never restarted, answers from v2 with nothing missing.
    let mut alice_fresh = alice.clone();
    alice_fresh.consistency = reader.consistency.clone();
    let after_switch = server_view(&mut alice_fresh, &server).await?;
    expect_view("after the switch", &after_switch, &channels, &members);
    let servers = alice_fresh.ok("{ servers { id name } }", json!({})).await?;
    assert_eq!(
        servers["servers"],
        json!([{ "id": server, "name": "Rebuilders" }, { "id": bobs, "name": "Bob's place" }])
    );
    let (bobs_name, bobs_channels, bobs_members) = server_view(&mut bob, &bobs).await?;
    assert_eq!(bobs_name, json!("Bob's place"));
    assert_eq!(bobs_channels, std::slice::from_ref(&bobs_channel));
    assert_eq!(bobs_members, ["bob", "alice"]);

    // v1 dropped: the API still answers the same, and takes new writes.
    deployment
        .must(&["projections", "drop", "catalog", "1"])
        .await?;
    let schemas: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'catalog_v1'",
    )
    .fetch_one(&deployment.db.pool().await?)
    .await?;
    assert_eq!(schemas, 0, "catalog_v1 is gone");
    let mut plain = alice.clone();
    plain.consistency = None;
    expect_view(
        "after the drop",
        &server_view(&mut plain, &server).await?,
        &channels,
        &members,
    );
    let servers = plain.ok("{ servers { id name } }", json!({})).await?;
    assert_eq!(
        servers["servers"],
        json!([{ "id": server, "name": "Rebuilders" }, { "id": bobs, "name": "Bob's place" }])
    );
    let newest = alice.create_channel(&server, "after-the-drop").await?;
    channels.push(newest);
    expect_view(
        "after a new write",
        &server_view(&mut alice, &server).await?,
        &channels,
        &members,
    );
    let listed_after = listed(&deployment, "catalog").await?;
    assert_eq!(listed_after["version"], json!(2), "{listed_after}");

    deployment.finish(processes).await?;
    eprintln!("test took {:?}", started.elapsed());
    Ok(())
}
