//! The embedded mode's projectors park an event they cannot apply as a dead letter, go on with
//! the rest, and an operator lists it with `aether projections dead-letters --data-dir`.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::dev_process::spawn_dev;
use serde_json::{json, Value};

async fn gql(
    url: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let mut request = reqwest::Client::new()
        .post(url)
        .timeout(Duration::from_secs(30))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let body: Value = request.send().await?.json().await?;
    anyhow::ensure!(body.get("errors").is_none(), "unexpected errors: {body}");
    Ok(body["data"].clone())
}

fn aether(args: &[&str], data_dir: &Path) -> anyhow::Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_aether"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("AETHER_POSTGRES_URL")
        .output()?)
}

fn json_of(output: &Output) -> anyhow::Result<Value> {
    anyhow::ensure!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// Alice, registered, with a server and its channel `general`: her token and the channel's id.
async fn alice_with_a_channel(url: &str) -> anyhow::Result<(String, Value)> {
    let registered = gql(url, None, REGISTER, json!({ "u": "alice" })).await?;
    let token = registered["register"]["accessToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let created = gql(
        url,
        Some(&token),
        "mutation { createServer(input: {name: \"g\"}) { id } }",
        json!({}),
    )
    .await?;
    let channel = gql(
        url,
        Some(&token),
        "mutation($s: ID!) { createChannel(input: {serverId: $s, name: \"general\"}) { id } }",
        json!({ "s": created["createServer"]["id"] }),
    )
    .await?;
    Ok((token, channel["createChannel"]["id"].clone()))
}

const SEND: &str =
    "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";
const HISTORY: &str = "query($c: ID!) { channel(id: $c) { messages { edges { node { body } } } } }";

#[tokio::test]
async fn a_poison_event_is_parked_the_rest_flows_and_the_operator_lists_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = spawn_dev(dir.path(), &[])?;
    let url = server.url.clone();
    let (token, channel_id) = alice_with_a_channel(&url).await?;
    gql(
        &url,
        Some(&token),
        SEND,
        json!({ "c": channel_id, "b": "before" }),
    )
    .await?;
    drop(server);

    // An event no projection can read lands in the log (a damaged row, or one written by a
    // newer version): a message sent with a body the timeline cannot decode.
    let events = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("events.db").display()
    ))
    .await?;
    let metadata: String = sqlx::query_scalar(
        "SELECT metadata FROM events WHERE event_type = 'MessageSent' ORDER BY position DESC LIMIT 1",
    )
    .fetch_one(&events)
    .await?;
    let poisoned = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
         payload, metadata, prev_hash, hash) VALUES ('Message', $1, 1, 'MessageSent', '1.0', \
         '{\"MessageSent\":{\"unexpected\":true}}', $2, '', 'damaged')",
    )
    .bind(&poisoned)
    .bind(&metadata)
    .execute(&events)
    .await?;
    events.close().await;

    // The projectors park it after their attempts and go on: a message sent afterwards shows.
    let server = spawn_dev(dir.path(), &[])?;
    let url = server.url.clone();
    gql(
        &url,
        Some(&token),
        SEND,
        json!({ "c": channel_id, "b": "after" }),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let history = gql(&url, Some(&token), HISTORY, json!({ "c": channel_id })).await?;
        let bodies: Vec<&str> = history["channel"]["messages"]["edges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|edge| edge["node"]["body"].as_str())
            .collect();
        if bodies == ["before", "after"] {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "history stayed {bodies:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The operator sees it, with the server still running.
    let letters = json_of(&aether(
        &["projections", "dead-letters", "timeline", "--json"],
        dir.path(),
    )?)?;
    let letters = letters.as_array().cloned().unwrap_or_default();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["event_type"], "MessageSent");
    assert_eq!(letters[0]["aggregate_id"], poisoned.as_str());
    assert!(
        letters[0]["location"]
            .as_str()
            .unwrap_or_default()
            .starts_with("log/0@"),
        "{letters:?}"
    );
    assert!(letters[0]["attempts"].as_i64().unwrap_or_default() >= 1);

    let listed = json_of(&aether(&["projections", "list", "--json"], dir.path())?)?;
    let timeline = listed
        .as_array()
        .into_iter()
        .flatten()
        .find(|row| row["name"] == "timeline")
        .cloned()
        .unwrap_or_default();
    assert_eq!(timeline["dead_letters"], 1, "{listed}");
    assert_eq!(timeline["lag_events"], 0, "{listed}");

    let human = aether(&["projections", "dead-letters", "timeline"], dir.path())?;
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains(&poisoned) && text.contains("MessageSent"),
        "{text}"
    );

    // What the embedded mode cannot do is refused with a reason and exit code 2.
    let refused = aether(&["projections", "reset", "timeline"], dir.path())?;
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("embedded"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let unknown = aether(&["projections", "dead-letters", "search"], dir.path())?;
    assert_eq!(unknown.status.code(), Some(2));
    drop(server);
    Ok(())
}

/// The catalog's row of `aether projections list --data-dir --json`.
fn catalog_row(dir: &Path) -> anyhow::Result<Value> {
    let listed = json_of(&aether(&["projections", "list", "--json"], dir)?)?;
    listed
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["name"] == "catalog"))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no catalog in {listed}"))
}

const REGISTER: &str = "mutation($u: String!) { register(input: {username: $u, password: \"correct horse\"}) { accessToken } }";

#[tokio::test]
async fn an_operator_pauses_and_resumes_an_embedded_projection_while_aether_dev_runs(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = spawn_dev(dir.path(), &[])?;
    let url = server.url.clone();
    gql(&url, None, REGISTER, json!({ "u": "alice" })).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while catalog_row(dir.path())?["lag_events"] != json!(0) {
        anyhow::ensure!(Instant::now() < deadline, "the catalog never caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let paused = aether(&["projections", "pause", "catalog"], dir.path())?;
    assert!(paused.status.success(), "{paused:?}");
    // The running application reads the controls every 500 ms.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for name in ["bob", "carol", "dave"] {
        gql(&url, None, REGISTER, json!({ "u": name })).await?;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let row = catalog_row(dir.path())?;
    assert_eq!(row["paused"], json!(true), "{row}");
    assert!(
        row["lag_events"].as_i64().unwrap_or_default() >= 3,
        "nothing applied while paused: {row}"
    );
    let held = row["checkpoint"].clone();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(catalog_row(dir.path())?["checkpoint"], held);

    let resumed = aether(&["projections", "resume", "catalog"], dir.path())?;
    assert!(resumed.status.success(), "{resumed:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = catalog_row(dir.path())?;
        if row["lag_events"] == json!(0) {
            assert_eq!(row["paused"], json!(false), "{row}");
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not caught up after resume: {row}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An unknown name is refused with the operator's exit code.
    let unknown = aether(&["projections", "pause", "catalgo"], dir.path())?;
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    drop(server);
    Ok(())
}

/// The bodies of a channel's history, oldest first.
async fn bodies(url: &str, token: &str, channel: &Value) -> anyhow::Result<Vec<String>> {
    let history = gql(url, Some(token), HISTORY, json!({ "c": channel })).await?;
    Ok(history["channel"]["messages"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|edge| edge["node"]["body"].as_str().map(str::to_owned))
        .collect())
}

/// The bodies of the messages in a dump of the timeline.
fn dumped_bodies(dump: &Value) -> Vec<String> {
    let mut bodies: Vec<String> = dump["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row["body"].as_str().map(str::to_owned))
        .collect();
    bodies.sort();
    bodies
}

#[tokio::test]
async fn an_embedded_projection_is_rebuilt_beside_the_live_one_and_queries_move_to_it(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = spawn_dev(dir.path(), &[])?;
    let url = server.url.clone();
    let (token, channel) = alice_with_a_channel(&url).await?;
    for body in ["one", "two", "three"] {
        gql(&url, Some(&token), SEND, json!({ "c": channel, "b": body })).await?;
    }

    // Rebuilt beside the live version while the application runs, then switched.
    let rebuilt = aether(&["projections", "rebuild", "timeline"], dir.path())?;
    let said = String::from_utf8_lossy(&rebuilt.stdout);
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    assert!(said.contains("v2 is live"), "{said}");
    assert!(dir.path().join("timeline_v2.db").exists());
    // Writes go on across the switch.
    gql(
        &url,
        Some(&token),
        SEND,
        json!({ "c": channel, "b": "four" }),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = json_of(&aether(&["projections", "list", "--json"], dir.path())?)?;
        let timeline = listed
            .as_array()
            .and_then(|rows| rows.iter().find(|row| row["name"] == "timeline"))
            .cloned()
            .unwrap_or_default();
        if timeline["version"] == json!(2) && timeline["lag_events"] == json!(0) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "v2 never caught up: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gql(
        &url,
        Some(&token),
        SEND,
        json!({ "c": channel, "b": "five" }),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = bodies(&url, &token, &channel).await?;
        if seen == ["one", "two", "three", "four", "five"] {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "history stayed {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The queries read v2: v1 stopped where the switch found it and never got "five".
    let v1 = json_of(&aether(
        &["projections", "dump", "timeline", "1"],
        dir.path(),
    )?)?;
    let v2 = json_of(&aether(
        &["projections", "dump", "timeline", "2"],
        dir.path(),
    )?)?;
    assert!(!dumped_bodies(&v1).contains(&"five".to_owned()), "{v1}");
    assert_eq!(
        dumped_bodies(&v2),
        ["five", "four", "one", "three", "two"],
        "{v2}"
    );

    // The live version cannot be dropped; the retired one can.
    let refused = aether(&["projections", "drop", "timeline", "2"], dir.path())?;
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let dropped = aether(&["projections", "drop", "timeline", "1"], dir.path())?;
    assert!(dropped.status.success(), "{dropped:?}");
    assert!(!dir.path().join("timeline_v1.db").exists());
    assert_eq!(
        bodies(&url, &token, &channel).await?,
        ["one", "two", "three", "four", "five"]
    );
    assert!(
        !dir.path().join("timeline_v1.db").exists(),
        "a dropped version stays dropped"
    );
    drop(server);
    Ok(())
}
