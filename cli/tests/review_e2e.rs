//! Moderation after delivery, end to end through the embedded application: a member reports a
//! message, a moderator finds it in `moderationQueue`, hides it (the others see it hidden,
//! live and in the history; moderators still read it), restores it; a server's content policy
//! and threshold are readable by its members; who may do what, and bad input.

mod common;

use std::time::Duration;

use common::{community, newest, send, start, Client, Subscriber};
use serde_json::{json, Value};

const REPORT: &str =
    "mutation($m: ID!, $r: String!) { reportMessage(input: {messageId: $m, reason: $r}) }";
const DECISION_FIELDS: &str = "{ id body hidden moderation { open decision { kind reason \
                               decidedBy { username } } } }";
const QUEUE: &str = "query($s: ID!, $after: String) { moderationQueue(serverId: $s, first: 5, after: $after) { \
                     pageInfo { hasNextPage endCursor } edges { cursor node { id body hidden \
                     moderation { open flag { score } reports { reason reportedBy { username } } } } } } }";
const HISTORY: &str = "query($c: ID!) { channel(id: $c) { messages(last: 10) { edges { node { \
                       id body hidden moderation { open } } } } } }";
const EVENTS: &str = "subscription($c: ID!, $after: String) { channelEvents(channelId: $c, after: $after) { __typename cursor \
     ... on MessageSent { message { id } } \
     ... on MessageHidden { message { id body hidden } } \
     ... on MessageRestored { message { id body hidden } } } }";
const SETTINGS: &str = "query($s: ID!) { server(id: $s) { contentPolicy moderationThreshold } }";
const THRESHOLD: &str = "mutation($s: ID!, $t: Float!) { setModerationThreshold(input: \
                         {serverId: $s, threshold: $t}) }";

fn decide(name: &str) -> String {
    format!(
        "mutation($m: ID!, $r: String!) {{ {name}(input: {{messageId: $m, reason: $r}}) \
         {DECISION_FIELDS} }}"
    )
}

/// The message `id` of a channel's history as `client` sees it.
async fn seen(client: &mut Client, channel: &str, id: &str) -> anyhow::Result<Value> {
    let history = client.ok(HISTORY, json!({ "c": channel })).await?;
    history["channel"]["messages"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|edge| edge["node"].clone())
        .find(|node| node["id"] == id)
        .ok_or_else(|| anyhow::anyhow!("message {id} not in {history}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_message_is_queued_hidden_from_members_and_restored() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let (mut carol, _) = anonymous.register("carol").await?;
    let place = community(&mut alice, &mut bob).await?;
    alice.consistency = bob.consistency.clone();
    let code = alice
        .ok(
            "mutation($s: ID!) { createInvite(input: {serverId: $s}) { code } }",
            json!({ "s": place.server_id }),
        )
        .await?["createInvite"]["code"]
        .clone();
    carol
        .ok(
            "mutation($c: String!) { joinServer(inviteCode: $c) { id } }",
            json!({ "c": code }),
        )
        .await?;
    let channel = place.channel_id.clone();

    let mut watching =
        Subscriber::connect(app.local_addr, carol.token.as_deref().unwrap_or("")).await?;
    watching
        .subscribe("m", EVENTS, json!({ "c": channel, "after": "0" }))
        .await?;
    let rude = send(&mut bob, &channel, "carol, you are useless").await?;
    assert_eq!(watching.next_event("m").await?["__typename"], "MessageSent");

    // carol reports it; reporting twice records one report.
    let reported = carol
        .ok(REPORT, json!({ "m": rude, "r": "insults me" }))
        .await?;
    assert_eq!(reported["reportMessage"], true);
    carol
        .ok(REPORT, json!({ "m": rude, "r": "insults me" }))
        .await?;
    // A report changes nothing that members see.
    watching.assert_quiet(Duration::from_millis(300)).await?;

    // The owner finds it in the queue with the report; members may not see the queue.
    alice.consistency = newest(&alice.consistency, &carol.consistency);
    let queue = alice.ok(QUEUE, json!({ "s": place.server_id })).await?;
    let edges = queue["moderationQueue"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(edges.len(), 1, "{queue}");
    let node = &edges[0]["node"];
    assert_eq!(node["id"], rude.as_str());
    assert_eq!(node["moderation"]["open"], true);
    assert_eq!(node["moderation"]["flag"], Value::Null);
    assert_eq!(
        node["moderation"]["reports"],
        json!([{ "reason": "insults me", "reportedBy": { "username": "carol" } }])
    );
    assert_eq!(
        bob.error_code(QUEUE, json!({ "s": place.server_id }))
            .await?,
        "FORBIDDEN"
    );
    // Members never see moderation's records, even of their own reports.
    carol.consistency = newest(&carol.consistency, &alice.consistency);
    assert_eq!(
        seen(&mut carol, &channel, &rude).await?["moderation"],
        Value::Null
    );

    // Only moderators and up hide.
    assert_eq!(
        carol
            .error_code(&decide("hideMessage"), json!({ "m": rude, "r": "abuse" }))
            .await?,
        "FORBIDDEN"
    );
    let hidden = alice
        .ok(&decide("hideMessage"), json!({ "m": rude, "r": "abuse" }))
        .await?;
    let hidden = &hidden["hideMessage"];
    assert_eq!(hidden["hidden"], true, "{hidden}");
    assert_eq!(
        hidden["body"], "carol, you are useless",
        "moderators read it"
    );
    assert_eq!(hidden["moderation"]["open"], false);
    assert_eq!(hidden["moderation"]["decision"]["kind"], "HIDDEN");
    assert_eq!(
        hidden["moderation"]["decision"]["decidedBy"]["username"],
        "alice"
    );
    // carol sees it hidden, live and in the history, without its words.
    let event = watching.next_event("m").await?;
    assert_eq!(event["__typename"], "MessageHidden", "{event}");
    assert_eq!(event["message"]["id"], rude.as_str());
    assert_eq!(event["message"]["hidden"], true);
    assert_eq!(event["message"]["body"], "");
    carol.consistency = newest(&carol.consistency, &alice.consistency);
    let as_carol = seen(&mut carol, &channel, &rude).await?;
    assert_eq!(
        (&as_carol["body"], &as_carol["hidden"]),
        (&json!(""), &json!(true))
    );
    // So does its author.
    bob.consistency = newest(&bob.consistency, &alice.consistency);
    assert_eq!(seen(&mut bob, &channel, &rude).await?["body"], "");
    // The owner still reads it; the queue is empty once decided.
    assert_eq!(
        seen(&mut alice, &channel, &rude).await?["body"],
        "carol, you are useless"
    );
    let queue = alice.ok(QUEUE, json!({ "s": place.server_id })).await?;
    assert_eq!(queue["moderationQueue"]["edges"], json!([]), "{queue}");
    assert_eq!(
        alice
            .error_code(&decide("hideMessage"), json!({ "m": rude, "r": "again" }))
            .await?,
        "CONFLICT"
    );

    // Restored: everyone reads it again, live.
    let restored = alice
        .ok(
            &decide("restoreMessage"),
            json!({ "m": rude, "r": "banter between friends" }),
        )
        .await?;
    assert_eq!(restored["restoreMessage"]["hidden"], false);
    assert_eq!(
        restored["restoreMessage"]["moderation"]["decision"]["kind"],
        "RESTORED"
    );
    let event = watching.next_event("m").await?;
    assert_eq!(event["__typename"], "MessageRestored", "{event}");
    assert_eq!(event["message"]["body"], "carol, you are useless");
    carol.consistency = newest(&carol.consistency, &alice.consistency);
    assert_eq!(
        seen(&mut carol, &channel, &rude).await?["body"],
        "carol, you are useless"
    );

    // Dismissing needs something open: a fresh report, then its dismissal.
    assert_eq!(
        alice
            .error_code(&decide("dismissFlag"), json!({ "m": rude, "r": "fine" }))
            .await?,
        "CONFLICT"
    );
    let other = send(&mut carol, &channel, "bob, please stop").await?;
    watching.next_event("m").await?;
    bob.ok(REPORT, json!({ "m": other, "r": "rude to me" }))
        .await?;
    alice.consistency = newest(&alice.consistency, &bob.consistency);
    let dismissed = alice
        .ok(
            &decide("dismissFlag"),
            json!({ "m": other, "r": "not rude" }),
        )
        .await?;
    assert_eq!(dismissed["dismissFlag"]["hidden"], false);
    assert_eq!(
        dismissed["dismissFlag"]["moderation"]["decision"]["kind"],
        "DISMISSED"
    );
    let queue = alice.ok(QUEUE, json!({ "s": place.server_id })).await?;
    assert_eq!(queue["moderationQueue"]["edges"], json!([]), "{queue}");
    watching.assert_quiet(Duration::from_millis(300)).await?;

    // Bad input.
    assert_eq!(
        carol
            .error_code(REPORT, json!({ "m": rude, "r": "" }))
            .await?,
        "BAD_USER_INPUT",
        "an empty reason"
    );
    assert_eq!(
        carol
            .error_code(REPORT, json!({ "m": rude, "r": "x".repeat(10_000) }))
            .await?,
        "BAD_USER_INPUT",
        "a huge reason"
    );
    assert_eq!(
        bob.error_code(REPORT, json!({ "m": rude, "r": "me" }))
            .await?,
        "BAD_USER_INPUT",
        "one's own message"
    );
    assert_eq!(
        carol
            .error_code(REPORT, json!({ "m": "nope", "r": "spam" }))
            .await?,
        "BAD_USER_INPUT"
    );
    assert_eq!(
        carol
            .error_code(
                REPORT,
                json!({ "m": "01906da1-35c0-7ab5-8a13-e45914982b79", "r": "spam" })
            )
            .await?,
        "NOT_FOUND"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_read_the_content_policy_and_threshold_that_admins_choose() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    let server = json!({ "s": place.server_id });

    let settings = bob.ok(SETTINGS, server.clone()).await?;
    assert_eq!(
        settings["server"],
        json!({ "contentPolicy": "ALLOW", "moderationThreshold": 0.5 })
    );
    alice.consistency = bob.consistency.clone();
    let set = alice
        .ok(THRESHOLD, json!({ "s": place.server_id, "t": 0.8 }))
        .await?;
    assert_eq!(set["setModerationThreshold"], 0.8);
    alice
        .ok(
            "mutation($s: ID!) { setContentPolicy(input: {serverId: $s, policy: MASK}) }",
            server.clone(),
        )
        .await?;
    bob.consistency = alice.consistency.clone();
    let settings = bob.ok(SETTINGS, server.clone()).await?;
    assert_eq!(
        settings["server"],
        json!({ "contentPolicy": "MASK", "moderationThreshold": 0.8 })
    );
    assert_eq!(
        bob.error_code(THRESHOLD, json!({ "s": place.server_id, "t": 0.9 }))
            .await?,
        "FORBIDDEN"
    );
    for bad in [0.0, -1.0, 1.5] {
        assert_eq!(
            alice
                .error_code(THRESHOLD, json!({ "s": place.server_id, "t": bad }))
                .await?,
            "BAD_USER_INPUT",
            "{bad}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn moderators_hear_reports_and_decisions_on_server_events_and_members_do_not(
) -> anyhow::Result<()> {
    const NEWS: &str = "subscription($s: ID!) { serverEvents(serverId: $s) { kind messageId \
                        userId actorId reason } }";
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, alice_id) = anonymous.register("alice").await?;
    let (mut bob, bob_id) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    let token = |client: &Client| client.token.clone().unwrap_or_default();
    let mut moderator = Subscriber::connect(app.local_addr, &token(&alice)).await?;
    let mut member = Subscriber::connect(app.local_addr, &token(&bob)).await?;
    for news in [&mut moderator, &mut member] {
        news.subscribe("n", NEWS, json!({ "s": place.server_id }))
            .await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let rude = send(&mut bob, &place.channel_id, "you are all useless").await?;
    alice.consistency = bob.consistency.clone();
    alice
        .ok(REPORT, json!({ "m": rude, "r": "rude to everyone" }))
        .await?;
    alice
        .ok(&decide("hideMessage"), json!({ "m": rude, "r": "abuse" }))
        .await?;
    alice
        .ok(
            "mutation($s: ID!) { renameServer(serverId: $s, name: \"Kind Rustaceans\") { id } }",
            json!({ "s": place.server_id }),
        )
        .await?;

    let reported = moderator.next_data("n", "serverEvents").await?;
    assert_eq!(reported["kind"], "MESSAGE_REPORTED", "{reported}");
    assert_eq!(reported["messageId"], rude.as_str());
    assert_eq!(reported["userId"], bob_id.as_str(), "the author");
    assert_eq!(reported["actorId"], alice_id.as_str(), "the reporter");
    assert_eq!(reported["reason"], "rude to everyone");
    let hidden = moderator.next_data("n", "serverEvents").await?;
    assert_eq!(hidden["kind"], "MESSAGE_HIDDEN", "{hidden}");
    assert_eq!(hidden["reason"], "abuse");
    let renamed = moderator.next_data("n", "serverEvents").await?;
    assert_eq!(renamed["kind"], "SERVER_RENAMED", "{renamed}");
    // The member hears the rename and nothing of moderation before it.
    let first = member.next_data("n", "serverEvents").await?;
    assert_eq!(first["kind"], "SERVER_RENAMED", "{first}");
    app.stop().await?;
    Ok(())
}
