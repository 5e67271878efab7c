//! A test client for the embedded application: GraphQL over HTTP and `graphql-transport-ws`.
#![allow(dead_code)]

pub mod dev_process;
pub mod processes;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use aether_cli::roles::{start_embedded, EmbeddedConfig, Running};
use anyhow::{anyhow, bail, Context};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something that should arrive at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How long a test waits for an HTTP answer: a server that never answers fails the test with
/// a message instead of hanging it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The servers and background roles of a distributed deployment, for tests: a fresh
/// PostgreSQL database, fresh topics, a fresh MongoDB-compatible (SecantusDB) database, the
/// shared token-signing keys, and the catalog, receipts and timeline projectors running
/// in-process as their own processes would. Instances ([`Cluster::instance`]) are stateless
/// API/edge roles on top.
pub struct Cluster {
    pub db: aether_test_support::TestDatabase,
    pub kafka: aether_kafka::KafkaConfig,
    pub mongo: mongodb::Database,
    /// Where the timeline projector keeps its read model and the instances read it.
    pub timeline: aether_projections::stream::role::TimelineStore,
    pub secret: std::path::PathBuf,
    pub projectors: tokio_util::sync::CancellationToken,
    /// Stops the projectors if a test fails half-way.
    _stop: tokio_util::sync::DropGuard,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start(partitions: i32) -> anyhow::Result<Self> {
        Self::start_with(partitions, Default::default()).await
    }

    /// As [`Self::start`], the timeline kept in `timeline`.
    pub async fn start_with(
        partitions: i32,
        timeline: aether_projections::stream::role::TimelineStore,
    ) -> anyhow::Result<Self> {
        let db = aether_test_support::TestDatabase::create().await?;
        aether_commands::postgres::PgEventStore::from_pool(db.pool().await?)
            .migrate()
            .await?;
        let kafka = aether_test_support::kafka_config(partitions);
        aether_kafka::admin::init_topics(&kafka).await?;
        let dir = tempfile::tempdir()?;
        let secret = dir.path().join("jwt-secret");
        std::fs::write(
            &secret,
            aether_commands::keys::Keyring::generate().to_json(),
        )?;
        let mongo = mongodb::Client::with_uri_str(mongo_url())
            .await?
            .database(&format!("test_{}", uuid::Uuid::new_v4().simple()));
        let projectors = tokio_util::sync::CancellationToken::new();
        let cluster = Self {
            db,
            kafka,
            mongo,
            timeline,
            secret,
            _stop: projectors.clone().drop_guard(),
            projectors,
            _dir: dir,
        };
        for name in aether_projections::stream::role::QUERIED_PROJECTIONS {
            cluster.start_projector(name).await?;
        }
        Ok(cluster)
    }

    /// Runs projector `name` until the cluster stops, as `aether serve --role projector` would.
    pub async fn start_projector(&self, name: &str) -> anyhow::Result<()> {
        use aether_projections::stream::role::{spawn_projectors, Stores};
        let stores = Stores {
            postgres: self.db.pool().await?,
            mongo: Some(self.mongo.clone()),
            timeline: self.timeline,
        };
        let options = aether_projections::stream::ProjectorOptions {
            batch_size: 100,
            linger: Duration::from_millis(5),
            ..Default::default()
        };
        let mut tasks =
            spawn_projectors(&stores, &self.kafka, &[name], &options, &self.projectors)?;
        let name = name.to_owned();
        tokio::spawn(async move {
            while let Some(outcome) = tasks.join_next().await {
                if let Ok(Err(error)) = outcome {
                    eprintln!("projector {name} failed: {error}");
                }
            }
        });
        Ok(())
    }

    /// A stateless API (or edge) instance; `with_relay` also runs the relay in it. `config` is
    /// the base of its settings (listen address and secret file are set here).
    pub async fn instance(
        &self,
        config: EmbeddedConfig,
        with_relay: bool,
    ) -> anyhow::Result<Running> {
        let postgres = aether_commands::postgres::PgEventStore::from_pool(self.db.pool().await?);
        let mongo = match self.timeline {
            aether_projections::stream::role::TimelineStore::MongoDb => Some(self.mongo.clone()),
            aether_projections::stream::role::TimelineStore::Postgres => None,
        };
        self.instance_with(config, with_relay, postgres, mongo)
            .await
    }

    /// As [`Self::instance`], reading the timeline from `mongo`.
    pub async fn instance_on(
        &self,
        config: EmbeddedConfig,
        with_relay: bool,
        mongo: mongodb::Database,
    ) -> anyhow::Result<Running> {
        let postgres = aether_commands::postgres::PgEventStore::from_pool(self.db.pool().await?);
        self.instance_with(config, with_relay, postgres, Some(mongo))
            .await
    }

    /// As [`Self::instance`], on these PostgreSQL and MongoDB connections (`None`: the
    /// timeline is read from PostgreSQL).
    pub async fn instance_with(
        &self,
        config: EmbeddedConfig,
        with_relay: bool,
        postgres: aether_commands::postgres::PgEventStore,
        mongo: Option<mongodb::Database>,
    ) -> anyhow::Result<Running> {
        let config = EmbeddedConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            shutdown_grace: Duration::from_secs(2),
            jwt_secret_file: Some(self.secret.clone()),
            ..config
        };
        let distributed = aether_cli::roles::DistributedConfig {
            postgres,
            kafka: self.kafka.clone(),
            mongo,
            with_relay,
            relay_latency: None,
        };
        Ok(aether_cli::roles::start_distributed(config, distributed).await?)
    }

    /// Runs the `aether` binary with `args` against this cluster's servers (PostgreSQL, the
    /// broker with the cluster's topic prefix, MongoDB) and waits for it.
    pub async fn aether(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_aether"));
        command
            .args(["--log", "warn"])
            .args(args)
            .env("AETHER_POSTGRES_URL", &self.db.url)
            .env("AETHER_KAFKA_BOOTSTRAP", &self.kafka.bootstrap)
            .env("AETHER_TOPIC_PREFIX", &self.kafka.topic_prefix)
            .env("AETHER_MONGO_URL", mongo_url())
            .env("AETHER_MONGO_DATABASE", self.mongo.name())
            .env("AETHER_TIMELINE_STORE", self.timeline.as_str());
        Ok(tokio::task::spawn_blocking(move || command.output()).await??)
    }

    /// Stops `instances` (each must stop cleanly within 30 s), the projectors, and drops the
    /// test databases.
    pub async fn stop(self, instances: Vec<Running>) -> anyhow::Result<()> {
        const STOP_WAIT: Duration = Duration::from_secs(30);
        for (n, running) in instances.into_iter().enumerate() {
            tokio::time::timeout(STOP_WAIT, running.stop())
                .await
                .with_context(|| format!("instance {n} did not stop within {STOP_WAIT:?}"))?
                .with_context(|| format!("instance {n} failed"))?;
        }
        self.projectors.cancel();
        let _ = tokio::time::timeout(STOP_WAIT, self.mongo.drop()).await;
        tokio::time::timeout(STOP_WAIT, self.db.drop_database())
            .await
            .context("dropping the test database took too long")?
            .context("dropping the test database")?;
        Ok(())
    }
}

/// Runs the scenario `async fn name(addr: SocketAddr) -> anyhow::Result<()>` as two tests,
/// `name::embedded` (one embedded instance on its own SQLite read models) and
/// `name::distributed` (an API instance of a [`Cluster`], reading the projectors' PostgreSQL and
/// MongoDB read models): what a client sees must not depend on the mode.
#[macro_export]
macro_rules! in_both_modes {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test]
            async fn embedded() -> anyhow::Result<()> {
                let dir = tempfile::tempdir()?;
                let app = $crate::common::start(dir.path()).await?;
                super::$scenario(app.local_addr).await?;
                app.stop().await?;
                Ok(())
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distributed() -> anyhow::Result<()> {
                let cluster = $crate::common::Cluster::start(2).await?;
                let api = cluster.instance($crate::common::unlimited(), true).await?;
                super::$scenario(api.local_addr).await?;
                cluster.stop(vec![api]).await
            }
        }
    };
}

pub fn mongo_url() -> String {
    std::env::var("AETHER_TEST_MONGO")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27017/?directConnection=true".to_owned())
}

/// Settings for tests that send more than a person would: no rate limits (their own tests set
/// them).
pub fn unlimited() -> EmbeddedConfig {
    EmbeddedConfig {
        api: aether_query_api::ApiLimits {
            rates: aether_query_api::rate::RateLimits::unlimited(),
            ..aether_query_api::ApiLimits::default()
        },
        ..EmbeddedConfig::default()
    }
}

pub async fn start(data_dir: &Path) -> anyhow::Result<Running> {
    start_with_http(data_dir, unlimited().http).await
}

/// The embedded application without rate limits, with these HTTP and WebSocket limits.
pub async fn start_with_http(
    data_dir: &Path,
    http: aether_realtime_edge::http::HttpLimits,
) -> anyhow::Result<Running> {
    let config = EmbeddedConfig {
        data_dir: data_dir.to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace: Duration::from_secs(2),
        http,
        ..unlimited()
    };
    Ok(start_embedded(config).await?)
}

#[derive(Clone, Debug)]
pub struct Client {
    pub http: reqwest::Client,
    pub addr: SocketAddr,
    pub token: Option<String>,
    /// The newest consistency token seen: queries wait for it.
    pub consistency: Option<String>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("a reqwest client with a timeout builds"),
            addr,
            token: None,
            consistency: None,
        }
    }

    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// Sends a GraphQL request and returns the whole response body.
    pub async fn raw(&mut self, query: &str, variables: Value) -> anyhow::Result<Value> {
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

    /// Sends a GraphQL request that must succeed; returns `data`.
    pub async fn ok(&mut self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let body = self.raw(query, variables).await?;
        if body.get("errors").is_some_and(|errors| !errors.is_null()) {
            bail!("unexpected errors: {body}");
        }
        Ok(body["data"].clone())
    }

    /// Sends a GraphQL request that must fail; returns the first error's code.
    pub async fn error_code(&mut self, query: &str, variables: Value) -> anyhow::Result<String> {
        let body = self.raw(query, variables).await?;
        body["errors"][0]["extensions"]["code"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("expected an error with a code, got {body}"))
    }

    /// Registers `username` and returns a client signed in as them, and their id.
    pub async fn register(&mut self, username: &str) -> anyhow::Result<(Client, String)> {
        let data = self
            .ok(
                "mutation($u: String!) { register(input: {username: $u, password: \"correct horse\"}) \
                 { accessToken user { id } } }",
                json!({ "u": username }),
            )
            .await?;
        let token = data["register"]["accessToken"].as_str().context("token")?;
        let id = data["register"]["user"]["id"].as_str().context("id")?;
        let mut client = self.with_token(token);
        client.consistency = self.consistency.clone();
        Ok((client, id.to_owned()))
    }
}

/// A server with a channel owned by the first client, joined by the second.
pub struct Community {
    pub server_id: String,
    pub channel_id: String,
}

pub async fn community(owner: &mut Client, member: &mut Client) -> anyhow::Result<Community> {
    let server = owner
        .ok(
            "mutation { createServer(input: {name: \"Rustaceans\"}) { id } }",
            json!({}),
        )
        .await?;
    let server_id = server["createServer"]["id"]
        .as_str()
        .context("server id")?
        .to_owned();
    let channel = owner
        .ok(
            "mutation($s: ID!) { createChannel(input: {serverId: $s, name: \"general\"}) { id } }",
            json!({ "s": server_id }),
        )
        .await?;
    let channel_id = channel["createChannel"]["id"]
        .as_str()
        .context("channel id")?
        .to_owned();
    let invite = owner
        .ok(
            "mutation($s: ID!) { createInvite(input: {serverId: $s}) { code } }",
            json!({ "s": server_id }),
        )
        .await?;
    let code = invite["createInvite"]["code"].as_str().context("code")?;
    let joined = member
        .ok(
            "mutation($c: String!) { joinServer(inviteCode: $c) { id channels { id } } }",
            json!({ "c": code }),
        )
        .await?;
    // The payload is complete as soon as the mutation returns.
    anyhow::ensure!(
        joined["joinServer"]["channels"][0]["id"] == channel_id.as_str(),
        "joinServer did not show the server's channels: {joined}"
    );
    // The member's join is the most recent write: its token covers the owner's writes too.
    Ok(Community {
        server_id,
        channel_id,
    })
}

/// The token of the more recent write: `latest` if there is one, else `earlier`. A token names
/// one event; waiting for the most recent write covers everything the log holds before it.
pub fn newest(earlier: &Option<String>, latest: &Option<String>) -> Option<String> {
    latest.clone().or_else(|| earlier.clone())
}

pub async fn send(client: &mut Client, channel_id: &str, body: &str) -> anyhow::Result<String> {
    let data = client
        .ok(
            "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }",
            json!({ "c": channel_id, "b": body }),
        )
        .await?;
    Ok(data["sendMessage"]["id"]
        .as_str()
        .context("message id")?
        .to_owned())
}

pub const CHANNEL_EVENTS: &str =
    "subscription($c: ID!, $after: String) { channelEvents(channelId: $c, after: $after) { \
     __typename cursor ... on MessageSent { message { id body author { username } } } \
     ... on MessageEdited { message { id body } } ... on MessageDeleted { messageId } } }";

/// A `graphql-transport-ws` connection.
pub struct Subscriber {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Subscriber {
    /// Connects, without `connection_init`.
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        Self::open_with(addr, &[]).await
    }

    /// Connects with these extra request headers (`X-Forwarded-For`), without
    /// `connection_init`.
    pub async fn open_with(addr: SocketAddr, headers: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut request = format!("ws://{addr}/graphql").into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
        for (name, value) in headers {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())?,
                value.parse()?,
            );
        }
        let (socket, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request))
            .await
            .context("the WebSocket handshake did not finish in time")??;
        Ok(Self { socket })
    }

    /// Connects and completes `connection_init` with `token`.
    pub async fn connect(addr: SocketAddr, token: &str) -> anyhow::Result<Self> {
        let mut subscriber = Self::open(addr).await?;
        subscriber
            .send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }))
            .await?;
        let ack = subscriber.next_message().await?;
        if ack["type"] != "connection_ack" {
            bail!("expected connection_ack, got {ack}");
        }
        Ok(subscriber)
    }

    /// Runs a query or mutation over the socket as subscription `id`: its one result's
    /// payload (`data` and `errors`).
    pub async fn execute(
        &mut self,
        id: &str,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Value> {
        self.subscribe(id, query, variables).await?;
        loop {
            let message = self.next_message().await?;
            if message["id"] == id && message["type"] == "next" {
                return Ok(message["payload"].clone());
            }
            if message["id"] == id && message["type"] == "error" {
                return Ok(json!({ "errors": message["payload"] }));
            }
        }
    }

    pub async fn send(&mut self, message: Value) -> anyhow::Result<()> {
        self.socket
            .send(WsMessage::text(message.to_string()))
            .await?;
        Ok(())
    }

    pub async fn subscribe(
        &mut self,
        id: &str,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<()> {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }))
            .await
    }

    /// Subscribes as `id` to every change of `channel` from its beginning ([`CHANNEL_EVENTS`]
    /// after cursor 0): whether a message is sent before or after the server has set the
    /// subscription up, it arrives exactly once.
    pub async fn watch_channel(&mut self, id: &str, channel: &str) -> anyhow::Result<()> {
        self.subscribe(id, CHANNEL_EVENTS, json!({ "c": channel, "after": "0" }))
            .await
    }

    /// The next protocol message (pings are answered and skipped).
    pub async fn next_message(&mut self) -> anyhow::Result<Value> {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .context("nothing arrived in time")?
                .context("the connection closed")??;
            match frame {
                WsMessage::Text(text) => {
                    let message: Value = serde_json::from_str(text.as_str())?;
                    if message["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await?;
                        continue;
                    }
                    return Ok(message);
                }
                WsMessage::Close(frame) => bail!("closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next `next` payload's data for subscription `id`, under its field `field`; an error
    /// if anything else arrives, or the payload carries errors.
    pub async fn next_data(&mut self, id: &str, field: &str) -> anyhow::Result<Value> {
        let message = self.next_message().await?;
        if message["id"] != id || message["type"] != "next" {
            bail!("expected an event for {id}, got {message}");
        }
        if message["payload"].get("errors").is_some() {
            bail!("subscription error: {message}");
        }
        Ok(message["payload"]["data"][field].clone())
    }

    /// The next `channelEvents` event of subscription `id`.
    pub async fn next_event(&mut self, id: &str) -> anyhow::Result<Value> {
        self.next_data(id, "channelEvents").await
    }

    /// The error code subscription `id` was refused or ended with; a `complete` for an
    /// earlier subscription, which may arrive first, is skipped.
    pub async fn refusal(&mut self, id: &str) -> anyhow::Result<String> {
        loop {
            let message = self.next_message().await?;
            if message["id"] != id || message["type"] == "complete" {
                continue;
            }
            let code = &message["payload"]["errors"][0]["extensions"]["code"];
            return code
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("subscription {id} was not refused: {message}"));
        }
    }

    /// The close code and reason the server ends the connection with; an error if anything
    /// else arrives first.
    pub async fn close_frame(&mut self) -> anyhow::Result<(u16, String)> {
        let frame = tokio::time::timeout(PATIENCE, self.socket.next())
            .await
            .context("the server did not close in time")?
            .context("the connection ended without a close frame")??;
        match frame {
            WsMessage::Close(Some(frame)) => Ok((frame.code.into(), frame.reason.to_string())),
            other => bail!("expected a close frame, got {other:?}"),
        }
    }

    /// Sends a text frame as it is, valid JSON or not.
    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.socket.send(WsMessage::text(text.to_owned())).await?;
        Ok(())
    }

    /// Nothing arrives within `wait`.
    pub async fn assert_quiet(&mut self, wait: Duration) -> anyhow::Result<()> {
        match tokio::time::timeout(wait, self.socket.next()).await {
            Err(_) => Ok(()),
            Ok(frame) => bail!("expected silence, got {frame:?}"),
        }
    }
}

/// A TCP relay on loopback to `upstream` that a test can cut: every connection through it, and
/// the listener, close at once — a database that went away.
pub struct Cuttable {
    pub addr: SocketAddr,
    cut: tokio_util::sync::CancellationToken,
}

impl Cuttable {
    pub async fn to(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cut = tokio_util::sync::CancellationToken::new();
        let token = cut.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut client, _)) = accepted else {
                    return;
                };
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Ok(Self { addr, cut })
    }

    pub fn cut(&self) {
        self.cut.cancel();
    }
}

/// The Prometheus text `/metrics` serves at `addr` (any role's listen address).
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let response = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .error_for_status()?;
    Ok(response.text().await?)
}

/// The value of `series` (a metric's name and labels exactly as the exposition prints them,
/// e.g. `aether_commands_total{aggregate="User",outcome="ok"}`) in `text`; the sum over
/// every label set when `series` is a bare name; 0 when absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            let matches =
                name == series || (!series.contains('{') && name.split('{').next() == Some(series));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}
