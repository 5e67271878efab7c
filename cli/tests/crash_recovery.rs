//! The `aether` binary killed with SIGKILL after events were stored but before any was
//! projected: after a restart the read models converge to the full history.

mod common;

use std::process::Command;
use std::time::Duration;

use common::dev_process::spawn_dev;
use serde_json::{json, Value};

async fn gql(
    url: &str,
    token: Option<&str>,
    consistency: Option<&str>,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let mut request = reqwest::Client::new()
        .post(url)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(consistency) = consistency {
        request = request.header("x-consistency-token", consistency);
    }
    let body: Value = request.send().await?.json().await?;
    anyhow::ensure!(body.get("errors").is_none(), "unexpected errors: {body}");
    Ok(body)
}

#[tokio::test]
async fn read_models_converge_after_a_kill_between_append_and_projection() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = spawn_dev(dir.path(), &["--projectors", "paused"])?;

    let registered = gql(
        &server.url,
        None,
        None,
        "mutation { register(input: {username: \"alice\", password: \"correct horse\"}) { accessToken } }",
        json!({}),
    )
    .await?;
    let token = registered["data"]["register"]["accessToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let auth = Some(token.as_str());
    let created = gql(
        &server.url,
        auth,
        None,
        "mutation { createServer(input: {name: \"crash\"}) { id } }",
        json!({}),
    )
    .await?;
    let server_id = created["data"]["createServer"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let channel = gql(
        &server.url,
        auth,
        None,
        "mutation($s: ID!) { createChannel(input: {serverId: $s, name: \"general\"}) { id } }",
        json!({ "s": server_id }),
    )
    .await?;
    let channel_id = channel["data"]["createChannel"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut last_token = String::new();
    let sent: Vec<String> = (1..=20).map(|n| format!("message {n}")).collect();
    for body in &sent {
        let response = gql(
            &server.url,
            auth,
            None,
            "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }",
            json!({ "c": channel_id, "b": body }),
        )
        .await?;
        last_token = response["extensions"]["consistencyToken"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    }

    // Nothing is projected yet: the channel is unknown to the read side.
    let before = gql(
        &server.url,
        auth,
        None,
        "query($c: ID!) { channel(id: $c) { id } }",
        json!({ "c": channel_id }),
    )
    .await?;
    assert_eq!(
        before["data"]["channel"],
        Value::Null,
        "projectors were paused"
    );

    server.child.kill()?; // SIGKILL: no shutdown, no flush
    server.child.wait()?;

    let server = spawn_dev(dir.path(), &[])?;
    let history = tokio::time::timeout(
        Duration::from_secs(30),
        gql(
            &server.url,
            auth,
            Some(&last_token),
            "query($c: ID!) { channel(id: $c) { messages(first: 100) { edges { cursor node { body } } } } }",
            json!({ "c": channel_id }),
        ),
    )
    .await??;
    let edges = history["data"]["channel"]["messages"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let bodies: Vec<String> = edges
        .iter()
        .filter_map(|e| e["node"]["body"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        bodies, sent,
        "every stored message is projected once, in order"
    );
    let cursors: Vec<String> = edges
        .iter()
        .filter_map(|e| e["cursor"].as_str().map(str::to_owned))
        .collect();
    let expected: Vec<String> = (1..=20).map(|n| n.to_string()).collect();
    assert_eq!(cursors, expected);
    Ok(())
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly_and_keeps_what_was_accepted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = spawn_dev(dir.path(), &[])?;
    gql(
        &server.url,
        None,
        None,
        "mutation { register(input: {username: \"alice\", password: \"correct horse\"}) { accessToken } }",
        json!({}),
    )
    .await?;
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()?;
    assert!(status.success());
    let exited = tokio::task::spawn_blocking(move || {
        let status = server.child.wait();
        (server, status)
    });
    let (server, status) = tokio::time::timeout(Duration::from_secs(15), exited).await??;
    assert!(status?.success(), "a clean shutdown exits 0");
    drop(server);

    let server = spawn_dev(dir.path(), &[])?;
    let login = gql(
        &server.url,
        None,
        None,
        "mutation { login(input: {username: \"alice\", password: \"correct horse\"}) { user { username } } }",
        json!({}),
    )
    .await?;
    assert_eq!(login["data"]["login"]["user"]["username"], "alice");
    Ok(())
}

#[test]
fn help_explains_every_subcommand_and_flag() -> anyhow::Result<()> {
    let help = Command::new(env!("CARGO_BIN_EXE_aether"))
        .arg("--help")
        .output()?;
    let text = String::from_utf8(help.stdout)?;
    assert!(
        text.contains("dev") && text.contains("every role in one process"),
        "{text}"
    );
    let dev = Command::new(env!("CARGO_BIN_EXE_aether"))
        .args(["dev", "--help"])
        .output()?;
    let text = String::from_utf8(dev.stdout)?;
    for flag in [
        "--data-dir",
        "--listen",
        "--projectors",
        "--max-body-bytes",
        "--max-page-size",
    ] {
        assert!(text.contains(flag), "dev --help lacks {flag}: {text}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_aether"))
        .args(["dev", "--listen", "nowhere"])
        .output()?;
    assert_eq!(bad.status.code(), Some(2), "a bad flag is a usage error");
    Ok(())
}

#[test]
fn producer_settings_outside_their_range_are_usage_errors() -> anyhow::Result<()> {
    let help = Command::new(env!("CARGO_BIN_EXE_aether"))
        .args(["serve", "--help"])
        .output()?;
    let text = String::from_utf8(help.stdout)?;
    for flag in ["--kafka-max-in-flight", "--kafka-linger-ms"] {
        assert!(text.contains(flag), "serve --help lacks {flag}: {text}");
    }
    for (flag, value) in [
        ("--kafka-max-in-flight", "0"),
        // past the idempotent producer's de-duplication window
        ("--kafka-max-in-flight", "6"),
        ("--kafka-linger-ms", "1001"),
        ("--kafka-linger-ms", "soon"),
    ] {
        let bad = Command::new(env!("CARGO_BIN_EXE_aether"))
            .args(["serve", flag, value])
            .output()?;
        assert_eq!(
            bad.status.code(),
            Some(2),
            "{flag} {value} is a usage error"
        );
        let error = String::from_utf8(bad.stderr)?;
        assert!(error.contains(flag), "{flag} {value}: {error}");
    }
    Ok(())
}
