//! `/metrics` of a running `aether dev`, as an operator's Prometheus scrapes it: every family
//! the dashboards read is there from the start, and each count moves with the traffic that
//! should move it — GraphQL operations by name and outcome, commands, event-store appends,
//! projectors, WebSocket connections and subscriptions, deliveries, typing fan-out and
//! rate-limit refusals.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use common::dev_process::spawn_dev;
use common::{community, sample, scrape, send, Client, Subscriber, CHANNEL_EVENTS, PATIENCE};
use serde_json::json;

/// Families an `aether dev` exports before any traffic.
const AT_START: &[&str] = &[
    "aether_projector_events_applied_total",
    "aether_projector_lag_events",
    "aether_projector_checkpoint_events",
    "aether_projector_dead_letters_total",
    "aether_websocket_connections",
    "aether_subscriptions",
    "aether_subscription_deliveries_total",
    "aether_websocket_slow_client_disconnects_total",
    "aether_rate_limit_refusals_total",
    "aether_ephemeral_fanout_total",
];

fn addr_of(url: &str) -> anyhow::Result<SocketAddr> {
    url.strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .context("no address in the URL")?
        .parse()
        .context("not an address")
}

/// Scrapes until `check` holds of the text (the projectors and the feeds run on their own
/// time), or fails with the last text.
async fn eventually(
    addr: SocketAddr,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = scrape(addr).await?;
        if check(&text) {
            return Ok(text);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{what} within {PATIENCE:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_counts_of_a_running_dev_server_move_with_its_traffic() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // One login a minute per username: the second attempt is refused.
    let server = spawn_dev(dir.path(), &["--rate-logins-per-username", "0.016/1"])?;
    let addr = addr_of(&server.url)?;

    let start = scrape(addr).await?;
    for family in AT_START {
        assert!(
            start.contains(&format!("\n{family}")),
            "{family} is missing before any traffic:\n{start}"
        );
    }
    assert!(
        start.contains(
            "aether_projector_events_applied_total{projection=\"catalog\",version=\"1\"} 0"
        ),
        "{start}"
    );

    let mut anonymous = Client::new(addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    alice.consistency = bob.consistency.clone();

    // Bob listens to the channel and to who types in it.
    let token = bob.token.clone().unwrap_or_default();
    let mut subscriber = Subscriber::connect(addr, &token).await?;
    subscriber
        .subscribe("1", CHANNEL_EVENTS, json!({ "c": place.channel_id }))
        .await?;
    subscriber
        .subscribe(
            "2",
            "subscription($c: ID!) { typing(channelId: $c) { user { id } } }",
            json!({ "c": place.channel_id }),
        )
        .await?;
    let open = eventually(addr, "two subscriptions on one connection", |text| {
        sample(text, "aether_websocket_connections") == 1.0
            && sample(text, "aether_subscriptions") == 2.0
    })
    .await?;

    for n in 0..3 {
        send(&mut alice, &place.channel_id, &format!("hello {n}")).await?;
        subscriber.next_event("1").await?;
    }
    alice
        .ok(
            "mutation($c: ID!) { startTyping(channelId: $c) }",
            json!({ "c": place.channel_id }),
        )
        .await?;
    // A field the schema does not have: counted as `other`, the client's error.
    let refused = alice.raw("{ madeUpField }", json!({})).await?;
    assert!(refused["errors"].is_array(), "{refused}");
    // Two logins in a row for one username: the second is refused by its rate limit.
    let login = "mutation { login(input: {username: \"alice\", password: \"correct horse\"}) \
                 { accessToken } }";
    anonymous.ok(login, json!({})).await?;
    let code = anonymous.error_code(login, json!({})).await?;
    assert_eq!(code, "RATE_LIMITED");

    let text = eventually(addr, "the traffic counted", |text| {
        sample(text, "aether_subscription_deliveries_total")
            >= sample(&open, "aether_subscription_deliveries_total") + 4.0
            && sample(text, "aether_ephemeral_fanout_total{kind=\"typing\"}") >= 1.0
            && sample(
                text,
                "aether_projector_events_applied_total{projection=\"timeline\",version=\"1\"}",
            ) >= 3.0
    })
    .await?;
    let count = |series: &str| sample(&text, series);
    assert_eq!(
        count(
            "aether_graphql_operations_total{type=\"mutation\",operation=\"sendMessage\",outcome=\"ok\"}"
        ),
        3.0,
        "{text}"
    );
    assert_eq!(
        count(
            "aether_graphql_operations_total{type=\"mutation\",operation=\"register\",outcome=\"ok\"}"
        ),
        2.0
    );
    assert_eq!(
        count(
            "aether_graphql_operations_total{type=\"query\",operation=\"other\",outcome=\"client_error\"}"
        ),
        1.0
    );
    assert_eq!(
        count(
            "aether_graphql_operations_total{type=\"mutation\",operation=\"login\",outcome=\"client_error\"}"
        ),
        1.0
    );
    assert_eq!(
        count(
            "aether_graphql_operation_duration_seconds_count{type=\"mutation\",operation=\"sendMessage\"}"
        ),
        3.0
    );
    assert_eq!(
        count("aether_rate_limit_refusals_total{limit=\"logins_per_username\"}"),
        1.0
    );
    assert_eq!(
        count("aether_commands_total{aggregate=\"Message\",outcome=\"ok\"}"),
        3.0
    );
    assert!(
        count("aether_event_store_append_duration_seconds_count{backend=\"sqlite\"}") >= 8.0,
        "every command appended: {text}"
    );
    assert!(count("aether_projector_batch_seconds_count") > 0.0);
    assert!(text.contains("aether_projector_batch_seconds_bucket{"));
    assert!(count("aether_ephemeral_signals_total{kind=\"typing\"}") >= 1.0);

    // The subscriber leaves: its connection and subscriptions are off the gauges.
    drop(subscriber);
    eventually(addr, "the connection closed", |text| {
        sample(text, "aether_websocket_connections") == 0.0
            && sample(text, "aether_subscriptions") == 0.0
    })
    .await?;
    Ok(())
}
