//! The rule stage of moderation, through GraphQL: what a sender notices under each content
//! policy of their server (stored as written, stored masked, refused with the reason), and who
//! may choose the policy.

mod common;

use common::{community, send, start, Client, Subscriber, CHANNEL_EVENTS};
use serde_json::json;

const SET_POLICY: &str =
    "mutation($s: ID!, $p: ContentPolicy!) { setContentPolicy(input: {serverId: $s, policy: $p}) }";
const SEND: &str =
    "mutation($c: ID!, $b: String!) { sendMessage(input: {channelId: $c, body: $b}) { id body } }";
const EDIT: &str =
    "mutation($m: ID!, $b: String!) { editMessage(input: {messageId: $m, body: $b}) { id body } }";
const HISTORY: &str =
    "query($c: ID!) { channel(id: $c) { messages(last: 20) { edges { node { body } } } } }";
const RUDE: &str = "you are a fucking idiot";

async fn history(client: &mut Client, channel_id: &str) -> anyhow::Result<Vec<String>> {
    let data = client.ok(HISTORY, json!({ "c": channel_id })).await?;
    Ok(data["channel"]["messages"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|edge| edge["node"]["body"].as_str().map(str::to_owned))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_policy_decides_what_a_rude_message_becomes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    alice.consistency = bob.consistency.clone();

    let alice_token = alice.token.clone().unwrap_or_default();
    let mut subscriber = Subscriber::connect(app.local_addr, &alice_token).await?;
    subscriber
        .subscribe("1", CHANNEL_EVENTS, json!({ "c": place.channel_id }))
        .await?;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    // A server that never chose stores messages as written.
    let sent = bob
        .ok(SEND, json!({ "c": place.channel_id, "b": RUDE }))
        .await?;
    assert_eq!(sent["sendMessage"]["body"], RUDE);
    assert_eq!(subscriber.next_event("1").await?["message"]["body"], RUDE);

    // Only admins and up choose; a member is refused.
    assert_eq!(
        bob.error_code(SET_POLICY, json!({ "s": place.server_id, "p": "BLOCK" }))
            .await?,
        "FORBIDDEN"
    );

    // MASK: stored, delivered and read back with the word replaced, the rest intact.
    let set = alice
        .ok(SET_POLICY, json!({ "s": place.server_id, "p": "MASK" }))
        .await?;
    assert_eq!(set["setContentPolicy"], "MASK");
    bob.consistency = alice.consistency.clone();
    let sent = bob
        .ok(SEND, json!({ "c": place.channel_id, "b": RUDE }))
        .await?;
    let masked = sent["sendMessage"]["body"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        masked.starts_with("you are a *") && masked.ends_with("* idiot"),
        "{masked}"
    );
    assert!(!masked.contains("fuck"), "{masked}");
    let delivered = subscriber.next_event("1").await?;
    assert_eq!(delivered["message"]["body"], masked.as_str(), "{delivered}");
    // An edit cannot smuggle the word back in.
    let message_id = sent["sendMessage"]["id"].as_str().unwrap_or_default();
    let edited = bob
        .ok(EDIT, json!({ "m": message_id, "b": "fuck this" }))
        .await?;
    assert!(
        !edited["editMessage"]["body"]
            .as_str()
            .unwrap_or_default()
            .contains("fuck"),
        "{edited}"
    );
    // Clean messages are untouched.
    send(&mut bob, &place.channel_id, "shall we ship on friday?").await?;

    // BLOCK: refused with the reason; nothing stored, nothing delivered.
    alice.consistency = bob.consistency.clone();
    alice
        .ok(SET_POLICY, json!({ "s": place.server_id, "p": "BLOCK" }))
        .await?;
    bob.consistency = alice.consistency.clone();
    let refused = bob
        .raw(
            SEND,
            json!({ "c": place.channel_id, "b": "f\u{200b}u\u{200b}c\u{200b}k you" }),
        )
        .await?;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{refused}"
    );
    let reason = refused["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(reason.contains("profanity"), "{reason}");
    assert!(!reason.contains("fuck"), "{reason}");
    send(&mut bob, &place.channel_id, "sorry, all good").await?;

    alice.consistency = bob.consistency.clone();
    let bodies = history(&mut alice, &place.channel_id).await?;
    assert_eq!(bodies.len(), 4, "{bodies:?}");
    assert_eq!(bodies.last().map(String::as_str), Some("sorry, all good"));
    assert!(!bodies.iter().any(|body| body.contains("you\u{200b}")));
    app.stop().await?;
    Ok(())
}
