//! Property tests of the GraphQL surface with hostile input, through the running embedded
//! application over HTTP: any variables of any JSON type, any document text. Every answer is
//! well-formed, every error carries a documented `extensions.code` (never `INTERNAL`), the
//! server keeps serving, and nothing it accepted is lost.
//!
//! Bounded for CI (`PROPTEST_CASES`, 128 here by default); a longer run:
//! `PROPTEST_CASES=20000 cargo test -p aether-realtime-edge --test graphql_input_properties`.

mod common;

use std::sync::{Arc, Mutex};

use common::{community, start, Client};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

const CODES: &[&str] = &[
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "BAD_USER_INPUT",
    "CONFLICT",
    "RATE_LIMITED",
];

/// What a variable should hold; each case puts in either something of that kind or anything.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Id,
    Text,
    Int,
    Enum(&'static [&'static str]),
}

use Kind::{Enum, Id, Int, Text};

const ROLES: &[&str] = &["OWNER", "ADMIN", "MODERATOR", "MEMBER", "GUEST"];
const CHANNEL_KINDS: &[&str] = &["TEXT", "ANNOUNCEMENT", "VOICE"];

/// Operations with typed variables.
const OPERATIONS: &[(&str, &[(&str, Kind)])] = &[
    ("mutation($c: ID, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id body } }",
     &[("c", Id), ("b", Text)]),
    ("mutation($m: ID!, $b: String!) { editMessage(input: {messageId: $m, body: $b}) { id } }",
     &[("m", Id), ("b", Text)]),
    ("mutation($m: ID!) { deleteMessage(messageId: $m) { id } }", &[("m", Id)]),
    ("mutation($c: ID!, $m: ID!) { markRead(input: {channelId: $c, messageId: $m}) { unreadCount } }",
     &[("c", Id), ("m", Id)]),
    ("mutation($n: String!) { createServer(input: {name: $n}) { id } }", &[("n", Text)]),
    ("mutation($s: ID!, $n: String!, $k: ChannelKind) { createChannel(input: {serverId: $s, name: $n, kind: $k}) { id } }",
     &[("s", Id), ("n", Text), ("k", Enum(CHANNEL_KINDS))]),
    ("mutation($s: ID!, $u: Int, $e: Int) { createInvite(input: {serverId: $s, maxUses: $u, expiresInSeconds: $e}) { code } }",
     &[("s", Id), ("u", Int), ("e", Int)]),
    ("mutation($c: String!) { joinServer(inviteCode: $c) { id } }", &[("c", Text)]),
    ("mutation($s: ID!, $u: ID!, $r: Role!) { setMemberRole(input: {serverId: $s, userId: $u, role: $r}) { role } }",
     &[("s", Id), ("u", Id), ("r", Enum(ROLES))]),
    ("mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { accessToken } }",
     &[("u", Text), ("p", Text)]),
    ("mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken } }", &[("t", Text)]),
    ("query($c: ID!, $f: Int, $a: String, $l: Int, $b: String) { channel(id: $c) { messages(first: $f, after: $a, last: $l, before: $b) { edges { cursor } } } }",
     &[("c", Id), ("f", Int), ("a", Text), ("l", Int), ("b", Text)]),
    ("query($m: ID!) { message(id: $m) { id } }", &[("m", Id)]),
    ("query($s: ID!) { server(id: $s) { members(first: 5) { edges { cursor } } } }", &[("s", Id)]),
];

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(128)
}

/// Anything at all: nasty strings, numbers at the edges, wrong types.
fn hostile() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(Value::String),
        "[ \u{0}-\u{1f}a-z<@>é🦀'\"{}$]{0,32}".prop_map(Value::String),
        (0usize..9_000).prop_map(|n| Value::String("y".repeat(n))),
        prop::sample::select(vec![
            i64::MIN,
            -1,
            0,
            1,
            100,
            101,
            i64::from(i32::MAX) + 1,
            i64::MAX
        ])
        .prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        Just(Value::Null),
        Just(json!([1, "two", null])),
        Just(json!({"nested": {"deeper": []}})),
    ]
}

/// Something of `kind` most of the time, anything otherwise.
fn value(kind: Kind, known: Vec<String>) -> BoxedStrategy<Value> {
    let fitting = match kind {
        Id => prop::sample::select(known).prop_map(Value::String).boxed(),
        Text => "[a-zA-Z0-9 ]{1,24}".prop_map(Value::String).boxed(),
        Int => (-5i64..200).prop_map(Value::from).boxed(),
        Enum(values) => prop::sample::select(values).prop_map(Value::from).boxed(),
    };
    prop_oneof![2 => fitting, 1 => hostile()].boxed()
}

/// One of `operations` with its variables, some missing.
fn operation(
    operations: &'static [(&'static str, &'static [(&'static str, Kind)])],
    known: Vec<String>,
) -> impl Strategy<Value = (String, Value)> {
    prop::sample::select(operations).prop_flat_map(move |(document, variables)| {
        let values: Vec<_> = variables
            .iter()
            .map(|(name, kind)| {
                prop::option::weighted(0.9, value(*kind, known.clone()))
                    .prop_map(move |value| (*name, value))
            })
            .collect();
        values.prop_map(move |values| {
            let variables = values
                .into_iter()
                .filter_map(|(name, value)| value.map(|value| (name.to_owned(), value)))
                .collect();
            (document.to_owned(), Value::Object(variables))
        })
    })
}

/// A whole request: an operation (sendMessage more often than the others, so that plenty are
/// accepted) with its variables, or garbage text.
fn request(known: Vec<String>) -> impl Strategy<Value = (String, Value)> {
    let garbage = prop_oneof![
        any::<String>(),
        "[{}()$:!@a-z ]{0,60}".prop_map(|s| format!("query {s}")),
        (1usize..80).prop_map(|depth| format!(
            "{}me {{ id }}{}",
            "{ ".repeat(depth),
            " }".repeat(depth)
        )),
    ]
    .prop_map(|document| (document, json!({})));
    prop_oneof![
        3 => operation(&OPERATIONS[..1], known.clone()),
        6 => operation(OPERATIONS, known),
        1 => garbage,
    ]
}

/// What is wrong with a response body, if anything.
fn malformed(body: &Value) -> Option<String> {
    let errors = body.get("errors").and_then(Value::as_array);
    if body.get("data").is_none() && errors.is_none() {
        return Some(format!("neither data nor errors: {body}"));
    }
    for error in errors.into_iter().flatten() {
        let code = error["extensions"]["code"].as_str().unwrap_or_default();
        if !CODES.contains(&code) {
            return Some(format!("error without a documented code: {error}"));
        }
        if error["message"].as_str().is_none_or(str::is_empty) {
            return Some(format!("error without a message: {error}"));
        }
    }
    None
}

#[test]
fn hostile_requests_get_coded_errors_and_lose_nothing() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    let (app, alice, channel, first, known) = runtime.block_on(async {
        let app = start(dir.path()).await?;
        let mut anonymous = Client::new(app.local_addr);
        let (mut alice, alice_id) = anonymous.register("alice").await?;
        let (mut bob, bob_id) = anonymous.register("bob").await?;
        let place = community(&mut alice, &mut bob).await?;
        let message = common::send(&mut alice, &place.channel_id, "first").await?;
        let known = vec![
            alice_id,
            bob_id,
            place.server_id.clone(),
            // The channel thrice: a message sent to it is accepted, and those are what the end
            // of the test counts.
            place.channel_id.clone(),
            place.channel_id.clone(),
            place.channel_id.clone(),
            message.clone(),
        ];
        anyhow::Ok((app, alice, place.channel_id, message, known))
    })?;

    // Every sendMessage the server accepted, to check against the channel afterwards. Edits and
    // deletes can only reach the first message: it is the only message id the cases know.
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&request(known), |(document, variables)| {
        let mut client = alice.clone();
        let body = runtime
            .block_on(client.raw(&document, variables))
            .map_err(|e| TestCaseError::fail(format!("no JSON answer: {e}")))?;
        if let Some(problem) = malformed(&body) {
            return Err(TestCaseError::fail(format!("{document}: {problem}")));
        }
        if let Some(body) = body["data"]["sendMessage"]["body"].as_str() {
            if let Ok(mut accepted) = accepted.lock() {
                accepted.push(body.to_owned());
            }
        }
        Ok(())
    });
    if let Err(failure) = outcome {
        anyhow::bail!("{failure}");
    }

    runtime.block_on(async {
        let mut alice = alice.clone();
        // The server still serves, and holds every message it accepted, in order, unchanged.
        let mut bodies = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = alice
                .ok(
                    "query($c: ID!, $a: String) { channel(id: $c) { messages(first: 100, after: $a) \
                     { edges { cursor node { id body } } pageInfo { hasNextPage } } } }",
                    json!({ "c": channel, "a": after }),
                )
                .await?;
            let connection = &page["channel"]["messages"];
            for edge in connection["edges"].as_array().into_iter().flatten() {
                if edge["node"]["id"] != first.as_str() {
                    bodies.push(edge["node"]["body"].as_str().unwrap_or_default().to_owned());
                }
                after = edge["cursor"].as_str().map(str::to_owned);
            }
            if connection["pageInfo"]["hasNextPage"] != true {
                break;
            }
        }
        let accepted = accepted.lock().map(|a| a.clone()).unwrap_or_default();
        anyhow::ensure!(
            bodies == accepted,
            "the channel holds {} messages, {} were accepted",
            bodies.len(),
            accepted.len()
        );
        app.stop().await?;
        anyhow::Ok(())
    })
}
