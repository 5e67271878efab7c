//! End to end through the embedded application: HTTP mutations, projectors, and a real
//! `graphql-transport-ws` client.

mod common;

use std::time::Duration;

use common::{community, newest, send, start, Client, Subscriber, CHANNEL_EVENTS};
use serde_json::json;

#[tokio::test]
async fn a_member_sees_messages_sent_edited_and_deleted_by_another_member() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    // Wait until the catalog knows bob is a member before subscribing.
    bob.ok("{ me { id } }", json!({})).await?;

    let mut subscriber =
        Subscriber::connect(app.local_addr, bob.token.as_deref().unwrap_or("")).await?;
    // From the channel's beginning: whether the message is sent before or after the server has
    // set the subscription up, it arrives exactly once.
    subscriber
        .subscribe(
            "1",
            CHANNEL_EVENTS,
            json!({ "c": place.channel_id, "after": "0" }),
        )
        .await?;

    let message_id = send(&mut alice, &place.channel_id, "hello, bob").await?;
    let sent = subscriber.next_event("1").await?;
    assert_eq!(sent["__typename"], "MessageSent");
    assert_eq!(sent["message"]["id"], message_id.as_str());
    assert_eq!(sent["message"]["body"], "hello, bob");
    assert_eq!(sent["message"]["author"]["username"], "alice");

    alice
        .ok(
            "mutation($m: ID!) { editMessage(input: {messageId: $m, body: \"hello, Bob!\"}) { id } }",
            json!({ "m": message_id }),
        )
        .await?;
    let edited = subscriber.next_event("1").await?;
    assert_eq!(edited["__typename"], "MessageEdited");
    assert_eq!(edited["message"]["body"], "hello, Bob!");

    alice
        .ok(
            "mutation($m: ID!) { deleteMessage(messageId: $m) { deleted } }",
            json!({ "m": message_id }),
        )
        .await?;
    let deleted = subscriber.next_event("1").await?;
    assert_eq!(deleted["__typename"], "MessageDeleted");
    assert_eq!(deleted["messageId"], message_id.as_str());

    let cursors: Vec<i64> = [&sent, &edited, &deleted]
        .iter()
        .map(|event| event["cursor"].as_str().unwrap_or("").parse().unwrap_or(0))
        .collect();
    assert_eq!(
        cursors,
        vec![1, 2, 3],
        "channel cursors count every change in order"
    );

    // The history read back shows the tombstone with its edit history gone.
    bob.consistency = newest(&bob.consistency, &alice.consistency);
    let history = bob
        .ok(
            "query($c: ID!) { channel(id: $c) { messages(last: 10) { edges { node { id body deleted edits { body } } } } } }",
            json!({ "c": place.channel_id }),
        )
        .await?;
    let edges = &history["channel"]["messages"]["edges"];
    assert_eq!(edges.as_array().map(Vec::len), Some(1));
    assert_eq!(edges[0]["node"]["deleted"], true);
    assert_eq!(edges[0]["node"]["body"], "");
    assert_eq!(edges[0]["node"]["edits"], json!([]));

    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_non_member_cannot_subscribe_to_a_channel() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let (mut mallory, _) = anonymous.register("mallory").await?;
    let place = community(&mut alice, &mut bob).await?;
    mallory.consistency = newest(&mallory.consistency, &bob.consistency);
    mallory.ok("{ me { id } }", json!({})).await?;

    let mut subscriber =
        Subscriber::connect(app.local_addr, mallory.token.as_deref().unwrap_or("")).await?;
    subscriber
        .subscribe("1", CHANNEL_EVENTS, json!({ "c": place.channel_id }))
        .await?;
    let refusal = subscriber.next_message().await?;
    assert_eq!(refusal["type"], "next", "{refusal}");
    assert_eq!(
        refusal["payload"]["errors"][0]["extensions"]["code"],
        "FORBIDDEN"
    );
    assert_eq!(subscriber.next_message().await?["type"], "complete");

    // Nor can mallory read the channel or post to it.
    let channel = mallory
        .ok(
            "query($c: ID!) { channel(id: $c) { id } }",
            json!({ "c": place.channel_id }),
        )
        .await?;
    assert_eq!(channel["channel"], serde_json::Value::Null);
    let code = mallory
        .error_code(
            "mutation($c: ID!) { sendMessage(input: {channelId: $c, body: \"hi\"}) { id } }",
            json!({ "c": place.channel_id }),
        )
        .await?;
    assert_eq!(code, "FORBIDDEN");

    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_subscription_resumes_from_its_cursor_with_no_gap_and_no_duplicate() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    bob.ok("{ me { id } }", json!({})).await?;
    let token = bob.token.clone().unwrap_or_default();

    let mut first = Subscriber::connect(app.local_addr, &token).await?;
    first
        .subscribe(
            "a",
            CHANNEL_EVENTS,
            json!({ "c": place.channel_id, "after": "0" }),
        )
        .await?;
    send(&mut alice, &place.channel_id, "before the drop").await?;
    let seen = first.next_event("a").await?;
    let cursor = seen["cursor"].as_str().unwrap_or_default().to_owned();
    drop(first);

    let missed: Vec<String> = (1..=100).map(|n| format!("missed {n}")).collect();
    for body in &missed {
        send(&mut alice, &place.channel_id, body).await?;
    }

    let mut second = Subscriber::connect(app.local_addr, &token).await?;
    second
        .subscribe(
            "b",
            CHANNEL_EVENTS,
            json!({ "c": place.channel_id, "after": cursor }),
        )
        .await?;
    let mut received = Vec::new();
    for _ in 0..missed.len() {
        let event = second.next_event("b").await?;
        received.push(
            event["message"]["body"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert_eq!(received, missed, "exactly the missed messages, in order");

    // Then live, continuing the same numbering.
    send(&mut alice, &place.channel_id, "live again").await?;
    let live = second.next_event("b").await?;
    assert_eq!(live["message"]["body"], "live again");
    assert_eq!(live["cursor"], "102");
    second.assert_quiet(Duration::from_millis(200)).await?;

    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn history_survives_a_restart_and_projectors_do_not_apply_twice() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    for n in 1..=5 {
        send(&mut alice, &place.channel_id, &format!("message {n}")).await?;
    }
    alice.ok("{ me { id } }", json!({})).await?;
    app.stop().await?;

    let app = start(dir.path()).await?;
    let mut alice = Client {
        addr: app.local_addr,
        ..alice
    };
    // The token signed before the restart is still valid: the secret lives in the data dir.
    send(&mut alice, &place.channel_id, "after the restart").await?;
    let history = alice
        .ok(
            "query($c: ID!) { channel(id: $c) { messages(first: 50) { edges { cursor node { body } } } } \
             server(id: $s) { members { totalCount } } }"
                .replace("$s", &format!("\"{}\"", place.server_id))
                .as_str(),
            json!({ "c": place.channel_id }),
        )
        .await?;
    let edges = history["channel"]["messages"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let bodies: Vec<&str> = edges
        .iter()
        .filter_map(|e| e["node"]["body"].as_str())
        .collect();
    assert_eq!(
        bodies,
        vec![
            "message 1",
            "message 2",
            "message 3",
            "message 4",
            "message 5",
            "after the restart"
        ]
    );
    let cursors: Vec<&str> = edges.iter().filter_map(|e| e["cursor"].as_str()).collect();
    assert_eq!(
        cursors,
        vec!["1", "2", "3", "4", "5", "6"],
        "no event was applied twice"
    );
    assert_eq!(history["server"]["members"]["totalCount"], 2);

    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_a_coded_error_and_loses_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    send(&mut alice, &place.channel_id, "accepted before the abuse").await?;
    let post =
        "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id } }";

    let cases: Vec<(&str, String, serde_json::Value, &str)> = vec![
        ("duplicate username", "mutation { register(input: {username: \"ALICE\", password: \"another pass\"}) { user { id } } }".into(), json!({}), "CONFLICT"),
        ("wrong password", "mutation { login(input: {username: \"alice\", password: \"wrong horse\"}) { user { id } } }".into(), json!({}), "UNAUTHENTICATED"),
        ("unknown user", "mutation { login(input: {username: \"nobody\", password: \"wrong horse\"}) { user { id } } }".into(), json!({}), "UNAUTHENTICATED"),
        ("short password", "mutation { register(input: {username: \"carol\", password: \"short\"}) { user { id } } }".into(), json!({}), "BAD_USER_INPUT"),
        ("malformed GraphQL", "mutation { sendMessage(".into(), json!({}), "BAD_USER_INPUT"),
        ("unknown field", "{ me { password } }".into(), json!({}), "BAD_USER_INPUT"),
    ];
    for (case, query, variables, expected) in cases {
        let code = anonymous.error_code(&query, variables).await?;
        assert_eq!(code, expected, "{case}");
    }

    let member_cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "empty body",
            json!({ "c": place.channel_id, "b": "   " }),
            "BAD_USER_INPUT",
        ),
        (
            "over-long body",
            json!({ "c": place.channel_id, "b": "x".repeat(4_001) }),
            "BAD_USER_INPUT",
        ),
        (
            "control character",
            json!({ "c": place.channel_id, "b": "bell\u{7}" }),
            "BAD_USER_INPUT",
        ),
        (
            "unknown channel",
            json!({ "c": "00000000-0000-7000-8000-000000000000", "b": "hi" }),
            "NOT_FOUND",
        ),
        (
            "not an id",
            json!({ "c": "general", "b": "hi" }),
            "BAD_USER_INPUT",
        ),
    ];
    for (case, variables, expected) in member_cases {
        let code = bob.error_code(post, variables).await?;
        assert_eq!(code, expected, "{case}");
    }

    let code = anonymous
        .error_code(post, json!({ "c": place.channel_id, "b": "anonymous" }))
        .await?;
    assert_eq!(code, "UNAUTHENTICATED", "no token");
    let forged = anonymous.with_token("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl");
    let code = forged
        .clone()
        .error_code("{ me { id } }", json!({}))
        .await?;
    assert_eq!(code, "UNAUTHENTICATED", "forged token");

    // A body over the size limit is refused with a coded error, not a bare 413 page.
    let oversized = anonymous
        .http
        .post(format!("http://{}/graphql", app.local_addr))
        .header("content-type", "application/json")
        .body(format!("{{\"query\": \"{}\"}}", "x".repeat(300 * 1024)))
        .send()
        .await?;
    assert_eq!(oversized.status(), 413);
    let refusal: serde_json::Value = oversized.json().await?;
    assert_eq!(refusal["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");

    // Bob may not edit alice's message; nobody outside can see it.
    let message_id = send(&mut alice, &place.channel_id, "mine").await?;
    let code = bob
        .error_code(
            "mutation($m: ID!) { editMessage(input: {messageId: $m, body: \"yours\"}) { id } }",
            json!({ "m": message_id }),
        )
        .await?;
    assert_eq!(code, "FORBIDDEN", "editing someone else's message");

    // Still serving, and nothing accepted was lost.
    bob.consistency = newest(&bob.consistency, &alice.consistency);
    let history = bob
        .ok(
            "query($c: ID!) { channel(id: $c) { messages { edges { node { body } } } } }",
            json!({ "c": place.channel_id }),
        )
        .await?;
    assert_eq!(
        history["channel"]["messages"]["edges"],
        json!([{ "node": { "body": "accepted before the abuse" } }, { "node": { "body": "mine" } }])
    );

    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_websocket_with_a_forged_token_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let refused = Subscriber::connect(app.local_addr, "not-a-token").await;
    assert!(
        refused.is_err(),
        "connection_init with a forged token must not be acknowledged"
    );
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn roles_decide_who_manages_channels_and_messages() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, bob_id) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    let rename = "mutation($c: ID!) { renameChannel(channelId: $c, name: \"lobby\") { name } }";

    assert_eq!(
        bob.error_code(rename, json!({ "c": place.channel_id }))
            .await?,
        "FORBIDDEN"
    );
    let renamed = alice.ok(rename, json!({ "c": place.channel_id })).await?;
    assert_eq!(renamed["renameChannel"]["name"], "lobby");

    // A member cannot delete the owner's message; a moderator can.
    let message_id = send(&mut alice, &place.channel_id, "moderate me").await?;
    let delete = "mutation($m: ID!) { deleteMessage(messageId: $m) { deleted } }";
    assert_eq!(
        bob.error_code(delete, json!({ "m": message_id })).await?,
        "FORBIDDEN"
    );
    let promoted = alice
        .ok(
            "mutation($s: ID!, $u: ID!) { setMemberRole(input: {serverId: $s, userId: $u, role: MODERATOR}) { role user { username } } }",
            json!({ "s": place.server_id, "u": bob_id }),
        )
        .await?;
    assert_eq!(promoted["setMemberRole"]["role"], "MODERATOR");
    let deleted = bob.ok(delete, json!({ "m": message_id })).await?;
    assert_eq!(deleted["deleteMessage"]["deleted"], true);

    // An archived channel keeps its history and takes no new messages.
    let archived = alice
        .ok(
            "mutation($c: ID!) { archiveChannel(channelId: $c) { archived } }",
            json!({ "c": place.channel_id }),
        )
        .await?;
    assert_eq!(archived["archiveChannel"]["archived"], true);
    let code = alice
        .error_code(
            "mutation($c: ID!) { sendMessage(input: {channelId: $c, body: \"too late\"}) { id } }",
            json!({ "c": place.channel_id }),
        )
        .await?;
    assert_eq!(code, "FORBIDDEN");

    let profile = alice
        .ok(
            "mutation { updateProfile(displayName: \"Alice A.\") { displayName } }",
            json!({}),
        )
        .await?;
    assert_eq!(profile["updateProfile"]["displayName"], "Alice A.");
    let me = alice.ok("{ me { displayName } }", json!({})).await?;
    assert_eq!(me["me"]["displayName"], "Alice A.");

    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_member_who_leaves_has_the_subscription_ended() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    bob.ok("{ me { id } }", json!({})).await?;

    let mut subscriber =
        Subscriber::connect(app.local_addr, bob.token.as_deref().unwrap_or("")).await?;
    subscriber
        .subscribe(
            "1",
            CHANNEL_EVENTS,
            json!({ "c": place.channel_id, "after": "0" }),
        )
        .await?;
    send(&mut alice, &place.channel_id, "still here?").await?;
    subscriber.next_event("1").await?;

    bob.ok(
        "mutation($s: ID!) { leaveServer(serverId: $s) }",
        json!({ "s": place.server_id }),
    )
    .await?;
    let ended = subscriber.next_message().await?;
    assert_eq!(
        ended["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{ended}"
    );
    assert_eq!(subscriber.next_message().await?["type"], "complete");

    // What bob can no longer see, bob no longer gets.
    send(&mut alice, &place.channel_id, "gone").await?;
    subscriber.assert_quiet(Duration::from_millis(300)).await?;
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn tokens_name_their_key_and_verify_against_the_published_jwks() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (alice, alice_id) = anonymous.register("alice").await?;
    let token = alice.token.clone().unwrap_or_default();

    let jwks: jsonwebtoken::jwk::JwkSet =
        reqwest::get(format!("http://{}/.well-known/jwks.json", app.local_addr))
            .await?
            .json()
            .await?;
    let header = jsonwebtoken::decode_header(&token)?;
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let kid = header.kid.unwrap_or_default();
    let key = jwks.find(&kid).expect("the token's key is published");
    // Another service checks the token with nothing but the published key.
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(key)?,
        &validation,
    )?;
    assert_eq!(claims.claims["sub"], alice_id.as_str());
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn clients_of_the_older_graphql_ws_protocol_subscribe_too() -> anyhow::Result<()> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    bob.ok("{ me { id } }", json!({})).await?;

    // subscriptions-transport-ws, the `graphql-ws` subprotocol: start/data/stop.
    let mut request = format!("ws://{}/graphql", app.local_addr).into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-ws".parse()?);
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await?;
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("graphql-ws")
    );
    let token = bob.token.clone().unwrap_or_default();
    let next = async |socket: &mut tokio_tungstenite::WebSocketStream<_>| -> anyhow::Result<serde_json::Value> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("closed"))??;
            if let WsMessage::Text(text) = frame {
                let message: serde_json::Value = serde_json::from_str(text.as_str())?;
                if message["type"] != "ka" {
                    return Ok(message);
                }
            }
        }
    };
    socket
        .send(WsMessage::text(
            json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } })
                .to_string(),
        ))
        .await?;
    assert_eq!(next(&mut socket).await?["type"], "connection_ack");
    socket
        .send(WsMessage::text(
            json!({ "id": "1", "type": "start", "payload": { "query": CHANNEL_EVENTS, "variables": { "c": place.channel_id } } })
                .to_string(),
        ))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = send(&mut alice, &place.channel_id, "old clients too").await?;
    let data = next(&mut socket).await?;
    assert_eq!(data["type"], "data", "{data}");
    assert_eq!(data["id"], "1");
    assert_eq!(
        data["payload"]["data"]["channelEvents"]["message"]["id"],
        sent.as_str()
    );
    app.stop().await?;
    Ok(())
}
