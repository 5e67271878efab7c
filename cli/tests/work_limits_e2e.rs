//! Limits that count work, not requests: every mutation field of a document takes a token
//! (aliases and fragment spreads expanded); per-address sign-in limits hold over WebSocket,
//! where the socket keeps its client's address (from `X-Forwarded-For` only through a trusted
//! proxy); failed sign-ins are limited per address across accounts.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use aether_cli::roles::{start_embedded, EmbeddedConfig, Running};
use aether_query_api::rate::{Rate, RateLimits};
use aether_query_api::ApiLimits;
use common::{community, Client, Subscriber};
use serde_json::{json, Value};

async fn start_with(
    dir: &std::path::Path,
    rates: RateLimits,
    trusted_proxies: Vec<std::net::IpAddr>,
) -> anyhow::Result<Running> {
    let base = common::unlimited();
    let config = EmbeddedConfig {
        data_dir: dir.to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace: Duration::from_secs(2),
        api: ApiLimits {
            rates,
            ..ApiLimits::default()
        },
        http: aether_realtime_edge::http::HttpLimits {
            trusted_proxies,
            ..base.http.clone()
        },
        ..base
    };
    Ok(start_embedded(config).await?)
}

fn code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

/// A document of `n` aliased `sendMessage` to channel `$c`.
fn aliased_sends(n: usize) -> String {
    let fields: String = (0..n)
        .map(|i| format!("m{i}: sendMessage(input: {{channelId: $c, body: \"m{i}\"}}) {{ id }} "))
        .collect();
    format!("mutation($c: ID!) {{ {fields} }}")
}

async fn stored(client: &mut Client, channel: &str) -> anyhow::Result<usize> {
    let history = client
        .ok(
            "query($c: ID!) { channel(id: $c) { messages(first: 100) { edges { node { id } } } } }",
            json!({ "c": channel }),
        )
        .await?;
    Ok(history["channel"]["messages"]["edges"]
        .as_array()
        .map_or(0, Vec::len))
}

#[tokio::test]
async fn every_mutation_of_a_document_takes_a_token() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start_with(dir.path(), RateLimits::unlimited(), Vec::new()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    app.stop().await?;
    // The same data, now with ten mutations at once and one every ten seconds.
    let rates = RateLimits {
        mutations_per_user: Rate::new(0.1, 10),
        ..RateLimits::unlimited()
    };
    let app = start_with(dir.path(), rates, Vec::new()).await?;
    alice.addr = app.local_addr;
    let mutation_type = alice
        .ok("{ __schema { mutationType { name } } }", json!({}))
        .await?["__schema"]["mutationType"]["name"]
        .as_str()
        .unwrap_or("Mutations")
        .to_owned();

    // 20 documents of 30 aliased sendMessage: each is 30 mutations, over the burst of 10.
    for _ in 0..20 {
        let body = alice
            .raw(&aliased_sends(30), json!({ "c": place.channel_id }))
            .await?;
        assert_eq!(code(&body), Some("RATE_LIMITED"), "{body}");
    }
    // Eight at once fit; then a fragment spread twice with two sends in it is four more, and
    // does not fit in what is left.
    let body = alice
        .raw(&aliased_sends(8), json!({ "c": place.channel_id }))
        .await?;
    assert_eq!(code(&body), None, "{body}");
    let spread = format!(
        "mutation($c: ID!) {{ ...F ...F }} fragment F on {mutation_type} {{ \
         a: sendMessage(input: {{channelId: $c, body: \"a\"}}) {{ id }} \
         b: sendMessage(input: {{channelId: $c, body: \"b\"}}) {{ id }} }}"
    );
    let body = alice.raw(&spread, json!({ "c": place.channel_id })).await?;
    assert_eq!(code(&body), Some("RATE_LIMITED"), "{body}");
    assert!(body["errors"][0]["extensions"]["retryAfterMs"].as_u64() > Some(0));

    // Only the eight are stored.
    assert_eq!(stored(&mut alice, &place.channel_id).await?, 8);
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn sign_in_limits_per_address_hold_over_websocket() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rates = RateLimits {
        logins_per_ip: Rate::new(0.1, 10),
        ..RateLimits::unlimited()
    };
    let app = start_with(dir.path(), rates, Vec::new()).await?;
    let mut socket = Subscriber::open(app.local_addr).await?;
    socket
        .send(json!({ "type": "connection_init", "payload": {} }))
        .await?;
    assert_eq!(socket.next_message().await?["type"], "connection_ack");
    let register = "mutation($u: String!) { register(input: {username: $u, password: \"correct horse\"}) { user { id } } }";
    let mut accepted = 0;
    let mut limited = 0;
    for n in 0..40 {
        let payload = socket
            .execute(&n.to_string(), register, json!({ "u": format!("user{n}") }))
            .await?;
        match code(&payload) {
            None => accepted += 1,
            Some("RATE_LIMITED") => limited += 1,
            Some(other) => anyhow::bail!("unexpected {other}: {payload}"),
        }
    }
    // The burst of 10, and at most a refill or two on a slow machine.
    assert!(accepted <= 12, "{accepted} of 40 registrations accepted");
    assert_eq!(accepted + limited, 40);
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_and_nobody_else_does() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rates = RateLimits {
        logins_per_ip: Rate::new(0.01, 2),
        ..RateLimits::unlimited()
    };
    let app = start_with(dir.path(), rates, vec!["127.0.0.1".parse()?]).await?;
    let register = "mutation($u: String!) { register(input: {username: $u, password: \"correct horse\"}) { user { id } } }";
    let mut codes = Vec::new();
    for (n, client) in [
        "198.51.100.1",
        "198.51.100.1",
        "198.51.100.1",
        "198.51.100.2",
    ]
    .into_iter()
    .enumerate()
    {
        let mut socket =
            Subscriber::open_with(app.local_addr, &[("x-forwarded-for", client)]).await?;
        socket
            .send(json!({ "type": "connection_init", "payload": {} }))
            .await?;
        assert_eq!(socket.next_message().await?["type"], "connection_ack");
        let payload = socket
            .execute("1", register, json!({ "u": format!("proxied{n}") }))
            .await?;
        codes.push(code(&payload).unwrap_or("OK").to_owned());
    }
    // Three from one client behind the proxy: the third waits; another client does not.
    assert_eq!(codes, ["OK", "OK", "RATE_LIMITED", "OK"]);
    app.stop().await?;

    // Not trusted: a client cannot pick its own address by writing the header.
    let dir = tempfile::tempdir()?;
    let rates = RateLimits {
        logins_per_ip: Rate::new(0.01, 2),
        ..RateLimits::unlimited()
    };
    let app = start_with(dir.path(), rates, Vec::new()).await?;
    let mut codes = Vec::new();
    for n in 0..3 {
        let forged = format!("203.0.113.{n}");
        let body = Client::new(app.local_addr)
            .http
            .post(format!("http://{}/graphql", app.local_addr))
            .header("x-forwarded-for", forged)
            .json(&json!({ "query": register, "variables": { "u": format!("forged{n}") } }))
            .send()
            .await?
            .json::<Value>()
            .await?;
        codes.push(code(&body).unwrap_or("OK").to_owned());
    }
    assert_eq!(codes, ["OK", "OK", "RATE_LIMITED"]);
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn password_spraying_across_accounts_is_limited_per_address() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rates = RateLimits {
        failed_logins_per_ip: Rate::new(0.01, 5),
        ..RateLimits::unlimited()
    };
    let app = start_with(dir.path(), rates, Vec::new()).await?;
    let mut anonymous = Client::new(app.local_addr);
    for n in 0..8 {
        anonymous.register(&format!("victim{n}")).await?;
    }
    let login = "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { accessToken } }";
    // One guess at each of eight accounts: five failures, then the address waits.
    let mut codes = Vec::new();
    for n in 0..8 {
        let body = anonymous
            .raw(
                login,
                json!({ "u": format!("victim{n}"), "p": "Summer2026!" }),
            )
            .await?;
        codes.push(code(&body).unwrap_or("OK").to_owned());
    }
    assert_eq!(codes[..5], ["UNAUTHENTICATED"; 5], "{codes:?}");
    assert_eq!(codes[5..], ["RATE_LIMITED"; 3], "{codes:?}");
    // Even the right password waits now.
    let right = anonymous
        .raw(login, json!({ "u": "victim0", "p": "correct horse" }))
        .await?;
    assert_eq!(code(&right), Some("RATE_LIMITED"), "{right}");
    app.stop().await?;
    Ok(())
}

async fn start_limits(
    dir: &std::path::Path,
    api: ApiLimits,
    http: aether_realtime_edge::http::HttpLimits,
) -> anyhow::Result<Running> {
    let config = EmbeddedConfig {
        data_dir: dir.to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace: Duration::from_secs(2),
        api,
        http,
        ..common::unlimited()
    };
    Ok(start_embedded(config).await?)
}

/// `n` aliased pages of a channel's messages, `first` each (or the page maximum).
fn pages(n: usize, first: Option<u32>) -> String {
    let args = match first {
        Some(first) => format!("(first: {first})"),
        None => String::new(),
    };
    let fields: String = (0..n)
        .map(|i| format!("p{i}: messages{args} {{ edges {{ node {{ id body }} }} }} "))
        .collect();
    format!("query($c: ID!) {{ channel(id: $c) {{ {fields} }} }}")
}

#[tokio::test]
async fn a_page_costs_its_size_and_queries_are_limited_by_cost() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let api = ApiLimits {
        rates: RateLimits {
            query_cost_per_user: Rate::new(1.0, 1_000),
            ..RateLimits::unlimited()
        },
        ..ApiLimits::default()
    };
    let app = start_limits(dir.path(), api, common::unlimited().http).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let (mut carol, _) = anonymous.register("carol").await?;
    let place = community(&mut alice, &mut bob).await?;
    alice.consistency = bob.consistency.clone();

    // Four pages of 100 messages cost about 1,600 (each item's selection counted), over the
    // limit of 1,000, though the document selects a dozen fields; a page that does not say its
    // size counts as the page maximum.
    for query in [pages(4, Some(100)), pages(4, None)] {
        let body = alice.raw(&query, json!({ "c": place.channel_id })).await?;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("costs"), "{message}");
    }
    // Smaller pages fit: 4 pages of 10 cost about 170.
    let body = alice
        .raw(&pages(4, Some(10)), json!({ "c": place.channel_id }))
        .await?;
    assert_eq!(code(&body), None, "{body}");

    // Bob spends his budget of 1,000 (refilled at 1 a second) on pages of 100 (about 400
    // each): the third in a row waits, while carol's queries pass.
    let mut codes = Vec::new();
    for _ in 0..3 {
        let body = bob
            .raw(&pages(1, Some(100)), json!({ "c": place.channel_id }))
            .await?;
        codes.push(code(&body).unwrap_or("OK").to_owned());
    }
    assert_eq!(codes, ["OK", "OK", "RATE_LIMITED"]);
    assert_eq!(
        carol.ok("{ me { username } }", json!({})).await?["me"]["username"],
        "carol"
    );
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_response_over_the_cap_is_refused_on_http_and_websocket() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let http = aether_realtime_edge::http::HttpLimits {
        max_response_bytes: 4_000,
        ..common::unlimited().http
    };
    let app = start_limits(dir.path(), common::unlimited().api, http).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    for n in 0..40 {
        common::send(&mut alice, &place.channel_id, &format!("{n:0>100}")).await?;
    }
    let query = pages(1, Some(40));
    let body = alice.raw(&query, json!({ "c": place.channel_id })).await?;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("--max-response-bytes"));
    // A page that fits is sent.
    let small = alice
        .ok(&pages(1, Some(5)), json!({ "c": place.channel_id }))
        .await?;
    assert_eq!(
        small["channel"]["p0"]["edges"].as_array().map(Vec::len),
        Some(5)
    );
    let mut socket =
        Subscriber::connect(app.local_addr, alice.token.as_deref().unwrap_or("")).await?;
    let payload = socket
        .execute("1", &query, json!({ "c": place.channel_id }))
        .await?;
    assert_eq!(code(&payload), Some("BAD_USER_INPUT"), "{payload}");
    app.stop().await?;
    Ok(())
}
