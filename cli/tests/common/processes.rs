//! A deployment of real processes, for tests: `aether serve` as relay, projectors, APIs and
//! edges against real PostgreSQL, Kafka (tansu) and a MongoDB-compatible server, each
//! installation with its own PostgreSQL database, topic prefix, MongoDB database and
//! token-signing keys. Clients are [`super::Client`] and [`super::Subscriber`], with the
//! longer waits processes need.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use aether_test_support::{kafka_config, TestDatabase};
use anyhow::{anyhow, bail, ensure, Context};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use super::{mongo_url, Subscriber, REQUEST_TIMEOUT};

/// The longest any single wait of these tests lasts: nothing hangs.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How long a subscriber waits for an event that should come.
pub const EVENT_WAIT: Duration = Duration::from_secs(20);

/// Partitions of each topic: several, so that aggregates interleave.
pub const PARTITIONS: i32 = 3;

/// An `aether` process, killed when dropped.
pub struct Process {
    pub name: String,
    pub child: Child,
}

impl Process {
    /// Whether the process ended, and how.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stops the process as an orchestrator would (SIGTERM), waiting up to 30 s for it to end;
    /// then kills it. Returns how it ended.
    pub async fn stop(mut self) -> anyhow::Result<ExitStatus> {
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
pub struct Deployment {
    pub db: TestDatabase,
    pub kafka_bootstrap: String,
    pub topic_prefix: String,
    pub mongo_database: String,
    /// `--timeline-store` of every process; `postgres` also leaves MongoDB out altogether.
    pub timeline_store: &'static str,
    /// Holds the keyring; the working directory of everything but the API and edge instances.
    pub dir: tempfile::TempDir,
    pub secret: PathBuf,
    /// How long an operator command may run.
    pub cli_wait: Duration,
    /// More environment for every process started from now on (e.g. where spans go).
    pub env: Vec<(String, String)>,
}

impl Deployment {
    /// A fresh installation whose MongoDB database is named `mongo_prefix` and a random
    /// suffix; operator commands may run for `cli_wait` each.
    pub async fn start(mongo_prefix: &str, cli_wait: Duration) -> anyhow::Result<Self> {
        Self::start_with_timeline(mongo_prefix, cli_wait, "mongodb").await
    }

    /// As [`Self::start`], every process given `--timeline-store timeline_store`.
    pub async fn start_with_timeline(
        mongo_prefix: &str,
        cli_wait: Duration,
        timeline_store: &'static str,
    ) -> anyhow::Result<Self> {
        let db = TestDatabase::create().await?;
        let kafka = kafka_config(PARTITIONS);
        let dir = tempfile::tempdir()?;
        let secret = dir.path().join("jwt-secret");
        let deployment = Self {
            db,
            kafka_bootstrap: kafka.bootstrap,
            topic_prefix: kafka.topic_prefix,
            mongo_database: format!("{mongo_prefix}_{}", uuid::Uuid::new_v4().simple()),
            timeline_store,
            dir,
            secret,
            cli_wait,
            env: Vec::new(),
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
    pub fn aether(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_aether"));
        for inherited in [
            "AETHER_DATA_DIR",
            "AETHER_LISTEN",
            "AETHER_ROLE",
            "AETHER_PROJECTION",
            "AETHER_JWT_SECRET_FILE",
            "AETHER_MONGO_URL",
            "AETHER_TIMELINE_STORE",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_SERVICE_NAME",
            "OTEL_TRACES_SAMPLER",
            "OTEL_TRACES_SAMPLER_ARG",
        ] {
            command.env_remove(inherited);
        }
        command
            .args(["--log", "warn"])
            .current_dir(self.dir.path())
            .env("AETHER_POSTGRES_URL", &self.db.url)
            .env("AETHER_KAFKA_BOOTSTRAP", &self.kafka_bootstrap)
            .env("AETHER_TOPIC_PREFIX", &self.topic_prefix)
            .env("AETHER_TIMELINE_STORE", self.timeline_store)
            .env("AETHER_MONGO_DATABASE", &self.mongo_database);
        if self.timeline_store == "mongodb" {
            command.env("AETHER_MONGO_URL", mongo_url());
        }
        command.envs(self.env.iter().map(|(key, value)| (key, value)));
        command
    }

    /// Runs an operator command to its end (at most [`Self::cli_wait`]).
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut command = self.aether();
        command.args(args).stdin(Stdio::null());
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let name = format!("aether {}", args.join(" "));
        let pid = child.id();
        let waited = tokio::time::timeout(
            self.cli_wait,
            tokio::task::spawn_blocking(move || child.wait_with_output()),
        )
        .await;
        let output = match waited {
            Ok(joined) => joined??,
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                bail!("{name} did not finish within {:?}", self.cli_wait);
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
    pub async fn must(&self, args: &[&str]) -> anyhow::Result<String> {
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
    pub async fn serve(
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

    /// The relay and the projectors every query reads (catalog, receipts, timeline).
    pub async fn background(&self) -> anyhow::Result<Vec<Process>> {
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
    pub async fn instance(
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
                "--rate-failed-logins-per-ip",
                "off",
                "--rate-query-cost-per-user",
                "off",
                "--rate-query-cost-per-ip",
                "off",
                "--shutdown-grace",
                "2",
            ],
            home,
        )
        .await
    }

    /// The `projections list --json` row of `name`.
    pub async fn listed(&self, name: &str) -> anyhow::Result<Value> {
        let out = self.must(&["projections", "list", "--json"]).await?;
        let rows: Vec<Value> = serde_json::from_str(&out)?;
        rows.into_iter()
            .find(|row| row["name"] == json!(name))
            .with_context(|| format!("{name} is not listed: {out}"))
    }

    /// Stops `processes` (killed), drops the MongoDB and PostgreSQL databases.
    pub async fn finish(self, processes: Vec<Process>) -> anyhow::Result<()> {
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

/// The waits of a subscriber to a process (longer than in-process ones): the handshake within
/// [`REQUEST_TIMEOUT`], protocol messages within a given wait.
impl Subscriber {
    /// Connects (within [`REQUEST_TIMEOUT`]) and completes `connection_init` with `token`
    /// (within [`EVENT_WAIT`]).
    pub async fn connect_to_process(addr: SocketAddr, token: &str) -> anyhow::Result<Self> {
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
        let ack = subscriber.next_message_within(EVENT_WAIT).await?;
        ensure!(
            ack["type"] == "connection_ack",
            "expected connection_ack, got {ack}"
        );
        Ok(subscriber)
    }

    /// The next protocol message within `wait` (pings are answered, pongs skipped); `None`
    /// when nothing came.
    pub async fn next_message_or_none(&mut self, wait: Duration) -> anyhow::Result<Option<Value>> {
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

    /// The next protocol message within `wait`; an error when nothing came.
    pub async fn next_message_within(&mut self, wait: Duration) -> anyhow::Result<Value> {
        self.next_message_or_none(wait)
            .await?
            .ok_or_else(|| anyhow!("nothing arrived within {wait:?}"))
    }

    /// The next `channelEvents` event of subscription `id`, within [`EVENT_WAIT`].
    pub async fn next_process_event(&mut self, id: &str) -> anyhow::Result<Value> {
        let message = self.next_message_within(EVENT_WAIT).await?;
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

    /// No protocol message (other than pings and pongs) arrives within `wait`.
    pub async fn expect_nothing(&mut self, wait: Duration) -> anyhow::Result<()> {
        match self.next_message_or_none(wait).await? {
            Some(message) => bail!("expected nothing, got {message}"),
            None => Ok(()),
        }
    }

    /// Closes the connection as a client going away does.
    pub async fn disconnect(mut self) -> anyhow::Result<()> {
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, self.socket.close(None)).await;
        Ok(())
    }

    /// Reads until `stop`, handing every protocol message on as it comes (so the edge never
    /// sees a slow client); then closes the connection.
    pub async fn forward(
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
