//! `aether-bench abuse`: a bounded, loopback-only repeat of the hostile traffic that used to
//! slow the server for everyone, against the embedded application with its shipped limits,
//! while another user's `me` query is timed.
//!
//! 1. Set-up, on an application without rate limits: accounts, a server with a channel of
//!    `--seed-messages` messages, and the sign-in timing of unknown accounts against existing
//!    ones (wrong passwords both).
//! 2. The same data directory, restarted with the default limits (what `aether dev` ships).
//!    Carol asks `me` every `--interval-ms` for `--baseline-s` alone, then for `--duration-s`
//!    while, from other loopback addresses, the attackers send at once: documents of 30
//!    aliased `sendMessage`; queries of many large pages (over the cost limit, and just under
//!    it); `register` over one anonymous WebSocket; and wrong-password sign-ins spread over
//!    many accounts (password spraying).
//!
//! Every loop stops at the deadline or after `--max-requests`; every address is loopback
//! (127.0.0.1 for carol, 127.0.0.2 and 127.0.0.3 for the attackers). Results: a console table
//! and, from a release build, `bench/results/abuse.{json,md}`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_cli::roles::{start_embedded, EmbeddedConfig, Running};
use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::report::{load_average, publish, Report};
use crate::stats::{micros, round, Summary};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds of attack (at most 60).
    #[arg(long, default_value_t = 15)]
    duration_s: u64,
    /// Seconds carol's `me` is timed alone first (at most 30).
    #[arg(long, default_value_t = 5)]
    baseline_s: u64,
    /// Milliseconds between two of carol's `me` queries.
    #[arg(long, default_value_t = 10)]
    interval_ms: u64,
    /// Concurrent loops of each attack (at most 16).
    #[arg(long, default_value_t = 4)]
    attackers: usize,
    /// Requests one attack loop sends at most (the duration ends a loop first unless the
    /// server answers faster than 6,000 a second).
    #[arg(long, default_value_t = 100_000)]
    max_requests: usize,
    /// Requests per second each attack loop sends at most; 0 sends each as soon as the previous
    /// one was answered (the load generator then takes whatever CPU it can, on the same cores
    /// as the server).
    #[arg(long, default_value_t = 0)]
    loop_rate: u32,
    /// Messages in the attacked channel (at most 5,000).
    #[arg(long, default_value_t = 1_000)]
    seed_messages: usize,
    /// Where the results are written (a release build only).
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

const PASSWORD: &str = "correct horse";
const CAROL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
const SIGN_IN_ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));
/// Accounts the password spraying tries, one guess each in turn.
const VICTIMS: usize = 40;
const ME: &str = "{ me { id username displayName } }";

/// Paces one attack loop: at most `rate` requests a second (0: no pacing).
struct Pace(Option<tokio::time::Interval>);

impl Pace {
    fn new(rate: u32) -> Self {
        Self((rate > 0).then(|| {
            let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        }))
    }

    async fn tick(&mut self) {
        if let Some(ticker) = &mut self.0 {
            ticker.tick().await;
        }
    }
}

/// One HTTP client bound to a loopback address.
#[derive(Clone)]
struct Http {
    client: reqwest::Client,
    addr: SocketAddr,
}

impl Http {
    fn new(addr: SocketAddr, from: IpAddr) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .local_address(from)
                .timeout(Duration::from_secs(60))
                .build()?,
            addr,
        })
    }

    /// The response body and its size in bytes.
    async fn post(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<(Value, usize)> {
        let mut request = self
            .client
            .post(format!("http://{}/graphql", self.addr))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let bytes = request.send().await?.bytes().await?;
        Ok((serde_json::from_slice(&bytes)?, bytes.len()))
    }

    async fn data(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Value> {
        let (body, _) = self.post(token, query, variables).await?;
        if body.get("errors").is_some_and(|e| !e.is_null()) {
            bail!("unexpected errors: {body}");
        }
        Ok(body["data"].clone())
    }

    async fn register(&self, username: &str) -> anyhow::Result<String> {
        let data = self
            .data(
                None,
                "mutation($u: String!, $p: String!) { register(input: {username: $u, password: $p}) { accessToken } }",
                json!({ "u": username, "p": PASSWORD }),
            )
            .await?;
        Ok(data["register"]["accessToken"]
            .as_str()
            .context("no access token")?
            .to_owned())
    }
}

fn code(body: &Value) -> String {
    match body.get("errors").filter(|e| !e.is_null()) {
        None => "OK".to_owned(),
        Some(errors) => errors[0]["extensions"]["code"]
            .as_str()
            .unwrap_or("NO_CODE")
            .to_owned(),
    }
}

/// Resident memory of this process (which runs the server), in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn config(dir: &std::path::Path, limited: bool) -> EmbeddedConfig {
    let mut config = EmbeddedConfig {
        data_dir: dir.to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace: Duration::from_secs(2),
        ..EmbeddedConfig::default()
    };
    if !limited {
        config.api.rates = aether_query_api::rate::RateLimits::unlimited();
    }
    config
}

/// What one kind of attack sent and got.
#[derive(Debug, Default)]
struct Tally {
    requests: usize,
    codes: BTreeMap<String, usize>,
    /// Mutations the server accepted (for the mutation flood).
    accepted_mutations: usize,
    response_bytes: usize,
    failures: usize,
}

impl Tally {
    fn add(&mut self, code: String, bytes: usize) {
        self.requests += 1;
        self.response_bytes += bytes;
        *self.codes.entry(code).or_default() += 1;
    }

    fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "codes": self.codes,
            "accepted_mutations": self.accepted_mutations,
            "response_bytes": self.response_bytes,
            "transport_failures": self.failures,
        })
    }

    fn codes_cell(&self) -> String {
        self.codes
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

struct Abuse {
    settings: Value,
    load_at_start: String,
    load_at_end: String,
    nproc: usize,
    build: &'static str,
    login_unknown: Summary,
    login_known: Summary,
    me_alone: Summary,
    me_attacked: Summary,
    me_errors: BTreeMap<String, usize>,
    attacks: Vec<(&'static str, &'static str, Tally)>,
    rss_before: f64,
    rss_after: f64,
}

/// The target for another user's `me` while the attack runs.
const TARGET_P99_MS: f64 = 50.0;

impl Report for Abuse {
    const NAME: &'static str = "abuse";

    fn to_json(&self) -> Value {
        json!({
            "settings": self.settings,
            "machine": { "nproc": self.nproc, "build": self.build, "load_at_start": self.load_at_start, "load_at_end": self.load_at_end },
            "login_wrong_password_ms": { "unknown_account": self.login_unknown.to_json(), "existing_account": self.login_known.to_json() },
            "me_alone": self.me_alone.to_json(),
            "me_under_attack": self.me_attacked.to_json(),
            "me_under_attack_errors": self.me_errors,
            "target_p99_ms": TARGET_P99_MS,
            "target_met": self.me_attacked.p99_ms <= TARGET_P99_MS && self.me_errors.is_empty(),
            "attacks": self.attacks.iter().map(|(name, what, tally)| json!({ "attack": name, "what": what, "result": tally.to_json() })).collect::<Vec<_>>(),
            "server_rss_mib": { "before_attack": round(self.rss_before, 1), "after_attack": round(self.rss_after, 1) },
        })
    }

    fn to_markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("# Abuse run: another user's `me` while the server is attacked\n\n");
        out.push_str(&format!(
            "Embedded application with the shipped limits, in this process; {} build, {} cores, \
             load average {} at start, {} at the end. Settings: `{}`.\n\n",
            self.build, self.nproc, self.load_at_start, self.load_at_end, self.settings
        ));
        out.push_str("| carol's `me` | count | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n");
        for (name, summary) in [
            ("alone", &self.me_alone),
            ("under attack", &self.me_attacked),
        ] {
            out.push_str(&format!(
                "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                summary.count, summary.p50_ms, summary.p95_ms, summary.p99_ms, summary.max_ms
            ));
        }
        out.push_str(&format!(
            "\nTarget: p99 ≤ {TARGET_P99_MS} ms under attack: **{}**; errors on carol's queries: {:?}.\n\n",
            if self.me_attacked.p99_ms <= TARGET_P99_MS && self.me_errors.is_empty() { "met" } else { "missed" },
            self.me_errors
        ));
        out.push_str("| attack | what | requests | answers | mutations accepted | response bytes |\n|---|---|---|---|---|---|\n");
        for (name, what, tally) in &self.attacks {
            out.push_str(&format!(
                "| {name} | {what} | {} | {} | {} | {} |\n",
                tally.requests,
                tally.codes_cell(),
                tally.accepted_mutations,
                tally.response_bytes
            ));
        }
        out.push_str(&format!(
            "\nServer process RSS: {:.1} MiB before the attack, {:.1} MiB after.\n\n",
            self.rss_before, self.rss_after
        ));
        out.push_str(&format!(
            "Sign-in with a wrong password (set-up, no limits): unknown account p50 {:.2} ms / p95 {:.2} ms; existing account p50 {:.2} ms / p95 {:.2} ms ({} each, interleaved).\n",
            self.login_unknown.p50_ms,
            self.login_unknown.p95_ms,
            self.login_known.p50_ms,
            self.login_known.p95_ms,
            self.login_known.count
        ));
        out
    }
}

/// `n` aliased pages of the channel's messages, `first` each, with authors.
fn pages(n: usize, first: usize) -> String {
    let fields: String = (0..n)
        .map(|i| {
            format!(
                "p{i}: messages(first: {first}) {{ edges {{ node {{ id body createdAt author {{ username displayName }} }} }} }} "
            )
        })
        .collect();
    format!("query($c: ID!) {{ channel(id: $c) {{ {fields} }} }}")
}

fn aliased_sends(n: usize) -> String {
    let fields: String = (0..n)
        .map(|i| {
            format!("m{i}: sendMessage(input: {{channelId: $c, body: \"flood {i}\"}}) {{ id }} ")
        })
        .collect();
    format!("mutation($c: ID!) {{ {fields} }}")
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.duration_s.clamp(1, 60));
    let baseline = Duration::from_secs(args.baseline_s.clamp(1, 30));
    let interval = Duration::from_millis(args.interval_ms.max(1));
    let attackers = args.attackers.clamp(1, 16);
    let max_requests = args.max_requests.max(1);
    let seed = args.seed_messages.min(5_000);
    let loop_rate = args.loop_rate;
    let load_at_start = load_average();
    let dir = tempfile::tempdir()?;

    // 1. Set-up without limits.
    eprintln!("setting up: accounts, {seed} messages, sign-in timing");
    let app = start_embedded(config(dir.path(), false)).await?;
    let setup = Http::new(app.local_addr, CAROL)?;
    let carol = setup.register("carol").await?;
    let mut attacker_tokens = Vec::new();
    for n in 0..attackers.max(2) {
        attacker_tokens.push(setup.register(&format!("mallory{n}")).await?);
    }
    for n in 0..VICTIMS {
        setup.register(&format!("victim{n}")).await?;
    }
    let owner = attacker_tokens[0].clone();
    let server = setup
        .data(
            Some(&owner),
            "mutation { createServer(input: {name: \"flood\"}) { id } }",
            json!({}),
        )
        .await?["createServer"]["id"]
        .as_str()
        .context("server id")?
        .to_owned();
    let channel = setup
        .data(
            Some(&owner),
            "mutation($s: ID!) { createChannel(input: {serverId: $s, name: \"general\"}) { id } }",
            json!({ "s": server }),
        )
        .await?["createChannel"]["id"]
        .as_str()
        .context("channel id")?
        .to_owned();
    for token in attacker_tokens.iter().skip(1) {
        let code = setup
            .data(
                Some(&owner),
                "mutation($s: ID!) { createInvite(input: {serverId: $s}) { code } }",
                json!({ "s": server }),
            )
            .await?["createInvite"]["code"]
            .as_str()
            .context("invite")?
            .to_owned();
        setup
            .data(
                Some(token),
                "mutation($c: String!) { joinServer(inviteCode: $c) { id } }",
                json!({ "c": code }),
            )
            .await?;
    }
    let send =
        "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";
    let seeded = futures::stream::iter(0..seed)
        .map(|n| {
            let (setup, owner, channel) = (setup.clone(), owner.clone(), channel.clone());
            async move {
                setup
                    .data(Some(&owner), send, json!({ "c": channel, "b": format!("seed message {n}: {}", "x".repeat(120)) }))
                    .await
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await;
    if let Some(Err(error)) = seeded.into_iter().find(Result::is_err) {
        return Err(error.context("seeding messages"));
    }
    let login = "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { accessToken } }";
    let (mut unknown, mut known) = (Vec::new(), Vec::new());
    for n in 0..30 {
        for (samples, user) in [
            (&mut unknown, format!("nobody{n}")),
            (&mut known, format!("victim{}", n % VICTIMS)),
        ] {
            let started = Instant::now();
            let (body, _) = setup
                .post(None, login, json!({ "u": user, "p": "wrong guess" }))
                .await?;
            samples.push(micros(started.elapsed()));
            if code(&body) != "UNAUTHENTICATED" {
                bail!("a wrong password was answered with {body}");
            }
        }
    }
    app.stop().await?;

    // 2. The shipped limits.
    let app: Running = start_embedded(config(dir.path(), true)).await?;
    let addr = app.local_addr;
    let carol_http = Http::new(addr, CAROL)?;
    let attacker_http = Http::new(addr, ATTACKER)?;
    let sign_in_http = Http::new(addr, SIGN_IN_ATTACKER)?;
    carol_http.data(Some(&carol), ME, json!({})).await?;

    eprintln!("carol alone for {baseline:?}");
    let (me_alone, _) = time_me(&carol_http, &carol, baseline, interval, max_requests).await;
    let rss_before = rss_mib();
    eprintln!("under attack for {duration:?}");
    let deadline = Instant::now() + duration;
    let floods = Arc::new(Mutex::new(Tally::default()));
    let heavy = Arc::new(Mutex::new(Tally::default()));
    let heavy_under = Arc::new(Mutex::new(Tally::default()));
    let registers = Arc::new(Mutex::new(Tally::default()));
    let spraying = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..attackers {
        let token = attacker_tokens[n % attacker_tokens.len()].clone();
        let (http, place, tally) = (attacker_http.clone(), channel.clone(), floods.clone());
        tasks.spawn(async move {
            let document = aliased_sends(30);
            let mut pace = Pace::new(loop_rate);
            for _ in 0..max_requests {
                pace.tick().await;
                if Instant::now() >= deadline {
                    break;
                }
                match http
                    .post(Some(&token), &document, json!({ "c": place }))
                    .await
                {
                    Ok((body, bytes)) => {
                        let mut tally = tally.lock().await;
                        if code(&body) == "OK" {
                            tally.accepted_mutations += 30;
                        }
                        tally.add(code(&body), bytes);
                    }
                    Err(_) => tally.lock().await.failures += 1,
                }
            }
        });
        for (query, tally) in [
            (pages(8, 100), heavy.clone()),
            (pages(1, 100), heavy_under.clone()),
        ] {
            let token = attacker_tokens[(n + 1) % attacker_tokens.len()].clone();
            let (http, channel) = (attacker_http.clone(), channel.clone());
            tasks.spawn(async move {
                let mut pace = Pace::new(loop_rate);
                for _ in 0..max_requests {
                    pace.tick().await;
                    if Instant::now() >= deadline {
                        break;
                    }
                    match http
                        .post(Some(&token), &query, json!({ "c": channel }))
                        .await
                    {
                        Ok((body, bytes)) => tally.lock().await.add(code(&body), bytes),
                        Err(_) => tally.lock().await.failures += 1,
                    }
                }
            });
        }
    }
    {
        let tally = registers.clone();
        tasks.spawn(async move {
            if let Err(error) =
                register_over_socket(addr, deadline, max_requests, loop_rate, &tally).await
            {
                eprintln!("the register flood's socket failed: {error:#}");
                tally.lock().await.failures += 1;
            }
        });
        let (http, tally) = (sign_in_http.clone(), spraying.clone());
        tasks.spawn(async move {
            let mut pace = Pace::new(loop_rate);
            for n in 0..max_requests {
                pace.tick().await;
                if Instant::now() >= deadline {
                    break;
                }
                let user = format!("victim{}", n % VICTIMS);
                match http
                    .post(
                        None,
                        login,
                        json!({ "u": user, "p": format!("Summer{n}!") }),
                    )
                    .await
                {
                    Ok((body, bytes)) => tally.lock().await.add(code(&body), bytes),
                    Err(_) => tally.lock().await.failures += 1,
                }
            }
        });
    }
    let (me_attacked, me_errors) =
        time_me(&carol_http, &carol, duration, interval, max_requests).await;
    while tasks.join_next().await.is_some() {}
    let rss_after = rss_mib();
    app.stop().await?;

    let take = |tally: Arc<Mutex<Tally>>| async move { std::mem::take(&mut *tally.lock().await) };
    let report = Abuse {
        settings: json!({
            "duration_s": duration.as_secs(), "baseline_s": baseline.as_secs(), "interval_ms": interval.as_millis() as u64,
            "attackers": attackers, "max_requests": max_requests, "seed_messages": seed,
            "loop_rate_per_s": loop_rate,
        }),
        load_at_start,
        load_at_end: load_average(),
        nproc: std::thread::available_parallelism().map_or(0, usize::from),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        login_unknown: Summary::of_micros(&mut unknown),
        login_known: Summary::of_micros(&mut known),
        me_alone,
        me_attacked,
        me_errors,
        attacks: vec![
            (
                "mutation flood",
                "documents of 30 aliased sendMessage (finding 4)",
                take(floods).await,
            ),
            (
                "heavy query, over the cost limit",
                "8 aliased pages of 100 messages with authors, cost 6,409 (finding 6)",
                take(heavy).await,
            ),
            (
                "heavy query, under the cost limit",
                "1 page of 100 messages with authors, cost 802 of 1,000 (finding 6)",
                take(heavy_under).await,
            ),
            (
                "register flood",
                "register over one anonymous WebSocket (finding 5)",
                take(registers).await,
            ),
            (
                "password spraying",
                "one wrong password per account, 40 accounts in turn (finding 5)",
                take(spraying).await,
            ),
        ],
        rss_before,
        rss_after,
    };
    publish(&report, &args.out)
}

/// Carol's `me`, one every `interval`, for `how_long`: latencies, and the codes of any errors.
async fn time_me(
    http: &Http,
    token: &str,
    how_long: Duration,
    interval: Duration,
    max_requests: usize,
) -> (Summary, BTreeMap<String, usize>) {
    let deadline = Instant::now() + how_long;
    let mut samples = Vec::new();
    let mut errors = BTreeMap::new();
    for _ in 0..max_requests {
        if Instant::now() >= deadline {
            break;
        }
        let started = Instant::now();
        match http.post(Some(token), ME, json!({})).await {
            Ok((body, _)) => {
                let code = code(&body);
                if code == "OK" {
                    samples.push(micros(started.elapsed()));
                } else {
                    *errors.entry(code).or_default() += 1;
                }
            }
            Err(_) => *errors.entry("TRANSPORT".to_owned()).or_default() += 1,
        }
        tokio::time::sleep(interval).await;
    }
    (Summary::of_micros(&mut samples), errors)
}

/// `register` again and again over one anonymous WebSocket from the sign-in attacker's
/// address.
async fn register_over_socket(
    addr: SocketAddr,
    deadline: Instant,
    max_requests: usize,
    loop_rate: u32,
    tally: &Mutex<Tally>,
) -> anyhow::Result<()> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(SIGN_IN_ATTACKER, 0))?;
    let stream = socket.connect(addr).await?;
    let mut request = format!("ws://{addr}/graphql").into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream).await?;
    ws.send(WsMessage::text(
        json!({ "type": "connection_init", "payload": {} }).to_string(),
    ))
    .await?;
    let register = "mutation($u: String!, $p: String!) { register(input: {username: $u, password: $p}) { accessToken } }";
    let mut acked = false;
    let mut pace = Pace::new(loop_rate);
    for n in 0..max_requests {
        pace.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        if acked {
            let id = n.to_string();
            let message = json!({ "id": id, "type": "subscribe", "payload": { "query": register, "variables": { "u": format!("sock{n}"), "p": PASSWORD } } });
            ws.send(WsMessage::text(message.to_string())).await?;
        }
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await
                .context("no answer in 30 s")?
                .context("the socket closed")??;
            let WsMessage::Text(text) = frame else {
                continue;
            };
            let message: Value = serde_json::from_str(text.as_str())?;
            match message["type"].as_str() {
                Some("connection_ack") => {
                    acked = true;
                    break;
                }
                Some("next") => {
                    tally
                        .lock()
                        .await
                        .add(code(&message["payload"]), text.len());
                }
                Some("complete") => break,
                _ => {}
            }
        }
    }
    Ok(())
}
