//! Replies and threads end to end, in the embedded mode and on the distributed read models
//! (`in_both_modes!`): `replyToId` quoting a message, thread replies that stay in their thread or
//! also go to the channel, the root's thread summary, the `thread` connection, `threadEvents`
//! (live and resumed) beside `channelEvents` (which announces thread-only replies as
//! `ThreadReplied`), and bad input.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{community, newest, send, Client, Subscriber};
use serde_json::{json, Value};

const SEND: &str = "mutation($c: ID!, $b: String!, $r: ID, $t: ID, $also: Boolean! = false) { \
     sendMessage(input: {channelId: $c, body: $b, replyToId: $r, threadRootId: $t, \
     alsoToChannel: $also}) { id threadRootId replyTo { messageId excerpt deleted author { username } } } }";
const CHANNEL: &str = "subscription($c: ID!, $after: String) { channelEvents(channelId: $c, \
     after: $after) { __typename cursor ... on MessageSent { message { id body threadRootId \
     replyTo { messageId } } } ... on MessageEdited { message { id body } } \
     ... on ThreadReplied { rootId reply { id body author { username } } \
     root { id thread { replyCount participants { username } } } } } }";
const THREAD: &str =
    "subscription($r: ID!, $after: String) { threadEvents(rootId: $r, after: $after) { \
     __typename cursor ... on MessageSent { message { id body threadRootId } } \
     ... on MessageEdited { message { id body } } ... on ReactionChanged { emoji } } }";
const PAGE: &str =
    "query($r: ID!, $first: Int, $after: String) { thread(rootId: $r, first: $first, \
     after: $after) { pageInfo { hasNextPage endCursor } edges { cursor node { id body } } } }";
const HISTORY: &str = "query($c: ID!) { channel(id: $c) { messages(last: 20) { edges { node { \
     id body threadRootId thread { replyCount lastReplyAt participants { username } } } } } } }";

async fn sent(
    client: &mut Client,
    channel: &str,
    body: &str,
    reply_to: Option<&str>,
    root: Option<&str>,
    also: bool,
) -> anyhow::Result<Value> {
    let data = client
        .ok(
            SEND,
            json!({ "c": channel, "b": body, "r": reply_to, "t": root, "also": also }),
        )
        .await?;
    Ok(data["sendMessage"].clone())
}

fn id(message: &Value) -> String {
    message["id"].as_str().unwrap_or_default().to_owned()
}

async fn replies_quote_threads_summarise_on_their_root_and_stream_on_their_own(
    addr: SocketAddr,
) -> anyhow::Result<()> {
    let mut anonymous = Client::new(addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    let channel = place.channel_id.clone();
    alice.consistency = newest(&alice.consistency, &bob.consistency);

    let mut watching = Subscriber::connect(addr, bob.token.as_deref().unwrap_or("")).await?;
    watching
        .subscribe("c", CHANNEL, json!({ "c": channel, "after": "0" }))
        .await?;
    let root = id(&sent(
        &mut alice,
        &channel,
        "Release 1.0 tonight?",
        None,
        None,
        false,
    )
    .await?);
    assert_eq!(watching.next_event("c").await?["__typename"], "MessageSent");

    // A reply in the channel quotes the root.
    let quote = sent(
        &mut bob,
        &channel,
        "Which branch?",
        Some(&root),
        None,
        false,
    )
    .await?;
    assert_eq!(
        quote["replyTo"],
        json!({ "messageId": root, "excerpt": "Release 1.0 tonight?", "deleted": false,
                "author": { "username": "alice" } })
    );
    let event = watching.next_event("c").await?;
    assert_eq!(event["message"]["replyTo"]["messageId"], root.as_str());

    // Bob watches the root's thread from its start.
    let mut thread_sees = Subscriber::connect(addr, bob.token.as_deref().unwrap_or("")).await?;
    thread_sees
        .subscribe("t", THREAD, json!({ "r": root, "after": "0" }))
        .await?;

    // A reply that stays in the thread: announced on the channel as ThreadReplied.
    let yes = sent(
        &mut bob,
        &channel,
        "yes, from main",
        None,
        Some(&root),
        false,
    )
    .await?;
    assert_eq!(yes["threadRootId"], root.as_str());
    let announced = watching.next_event("c").await?;
    assert_eq!(announced["__typename"], "ThreadReplied", "{announced}");
    assert_eq!(announced["rootId"], root.as_str());
    assert_eq!(announced["reply"]["body"], "yes, from main");
    assert_eq!(announced["root"]["thread"]["replyCount"], 1, "{announced}");
    let in_thread = thread_sees.next_data("t", "threadEvents").await?;
    assert_eq!(in_thread["__typename"], "MessageSent");
    assert_eq!(in_thread["message"]["id"], id(&yes).as_str());
    let first_cursor = in_thread["cursor"].as_str().unwrap_or_default().to_owned();

    // A reply also sent to the channel: an ordinary message there, and in the thread.
    let also = sent(
        &mut alice,
        &channel,
        "shipping at 20:00",
        None,
        Some(&root),
        true,
    )
    .await?;
    let shown = watching.next_event("c").await?;
    assert_eq!(shown["__typename"], "MessageSent", "{shown}");
    assert_eq!(shown["message"]["threadRootId"], root.as_str());
    let in_thread = thread_sees.next_data("t", "threadEvents").await?;
    assert_eq!(in_thread["message"]["id"], id(&also).as_str());

    // Editing a thread-only reply reaches the thread, and nothing in the channel.
    bob.ok(
        "mutation($m: ID!) { editMessage(input: {messageId: $m, body: \"yes, from main (tagged)\"}) { id } }",
        json!({ "m": id(&yes) }),
    )
    .await?;
    let edited = thread_sees.next_data("t", "threadEvents").await?;
    assert_eq!(edited["__typename"], "MessageEdited");
    assert_eq!(edited["message"]["body"], "yes, from main (tagged)");
    watching.assert_quiet(Duration::from_millis(300)).await?;
    // The thread's stream holds only its own replies: a new root message is not in it.
    send(&mut alice, &channel, "unrelated").await?;
    assert_eq!(watching.next_event("c").await?["__typename"], "MessageSent");
    thread_sees.assert_quiet(Duration::from_millis(300)).await?;

    // The channel's history: the root with its summary, the quote, the reply also sent
    // there, the unrelated message; not the reply that stayed in the thread.
    bob.consistency = newest(&bob.consistency, &alice.consistency);
    let history = bob.ok(HISTORY, json!({ "c": channel })).await?;
    let nodes: Vec<Value> = history["channel"]["messages"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|edge| edge["node"].clone())
        .collect();
    let bodies: Vec<&str> = nodes.iter().filter_map(|n| n["body"].as_str()).collect();
    assert_eq!(
        bodies,
        vec![
            "Release 1.0 tonight?",
            "Which branch?",
            "shipping at 20:00",
            "unrelated"
        ]
    );
    let summary = &nodes[0]["thread"];
    assert_eq!(summary["replyCount"], 2, "{summary}");
    assert_eq!(
        summary["participants"],
        json!([{ "username": "bob" }, { "username": "alice" }])
    );
    assert!(summary["lastReplyAt"].is_string(), "{summary}");
    assert_eq!(nodes[1]["thread"], Value::Null);

    // The thread, paged.
    let page = bob.ok(PAGE, json!({ "r": root, "first": 1 })).await?;
    let thread = &page["thread"];
    assert_eq!(
        thread["edges"][0]["node"]["body"],
        "yes, from main (tagged)"
    );
    assert_eq!(thread["pageInfo"]["hasNextPage"], true);
    let next = bob
        .ok(
            PAGE,
            json!({ "r": root, "first": 5, "after": thread["pageInfo"]["endCursor"] }),
        )
        .await?;
    assert_eq!(
        next["thread"]["edges"],
        json!([{ "cursor": "2", "node": { "id": id(&also), "body": "shipping at 20:00" } }])
    );

    // A thread subscriber resuming after the first reply gets the rest, in order, once.
    let mut resumed = Subscriber::connect(addr, alice.token.as_deref().unwrap_or("")).await?;
    resumed
        .subscribe("t2", THREAD, json!({ "r": root, "after": first_cursor }))
        .await?;
    let again = resumed.next_data("t2", "threadEvents").await?;
    assert_eq!(again["message"]["id"], id(&also).as_str());
    let again = resumed.next_data("t2", "threadEvents").await?;
    assert_eq!(again["__typename"], "MessageEdited");
    resumed.assert_quiet(Duration::from_millis(300)).await?;

    Ok(())
}

in_both_modes!(replies_quote_threads_summarise_on_their_root_and_stream_on_their_own);

async fn links_that_are_elsewhere_nested_or_deleted_are_refused_and_outsiders_see_no_thread(
    addr: SocketAddr,
) -> anyhow::Result<()> {
    let mut anonymous = Client::new(addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let (mut mallory, _) = anonymous.register("mallory").await?;
    let place = community(&mut alice, &mut bob).await?;
    let channel = place.channel_id.clone();
    let other = alice
        .ok(
            "mutation($s: ID!) { createChannel(input: {serverId: $s, name: \"random\"}) { id } }",
            json!({ "s": place.server_id }),
        )
        .await?["createChannel"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let root = id(&sent(&mut alice, &channel, "root", None, None, false).await?);
    let elsewhere = id(&sent(&mut alice, &other, "elsewhere", None, None, false).await?);
    let reply = id(&sent(&mut alice, &channel, "reply", None, Some(&root), false).await?);
    let unknown = "0190a0d4-0000-7000-8000-000000000000";

    let refusals = [
        (
            json!({ "r": elsewhere }),
            "NOT_FOUND",
            "quoting another channel's message",
        ),
        (json!({ "r": unknown }), "NOT_FOUND", "quoting nothing"),
        (
            json!({ "t": elsewhere }),
            "NOT_FOUND",
            "a thread in another channel",
        ),
        (
            json!({ "t": reply }),
            "BAD_USER_INPUT",
            "a thread in a thread",
        ),
        (
            json!({ "also": true }),
            "BAD_USER_INPUT",
            "alsoToChannel without a thread",
        ),
        (
            json!({ "r": "nope" }),
            "BAD_USER_INPUT",
            "a malformed replyToId",
        ),
        (
            json!({ "t": "nope" }),
            "BAD_USER_INPUT",
            "a malformed threadRootId",
        ),
    ];
    for (links, expected, why) in refusals {
        let mut variables = json!({ "c": channel, "b": "hi" });
        if let (Some(variables), Some(links)) = (variables.as_object_mut(), links.as_object()) {
            variables.extend(links.clone());
        }
        assert_eq!(bob.error_code(SEND, variables).await?, expected, "{why}");
    }
    // A deleted root takes no more replies, and a deleted message cannot be quoted.
    alice
        .ok(
            "mutation($m: ID!) { deleteMessage(messageId: $m) { id } }",
            json!({ "m": root }),
        )
        .await?;
    for links in [json!({ "t": root }), json!({ "r": root })] {
        let mut variables = json!({ "c": channel, "b": "late" });
        if let (Some(variables), Some(links)) = (variables.as_object_mut(), links.as_object()) {
            variables.extend(links.clone());
        }
        assert_eq!(bob.error_code(SEND, variables).await?, "CONFLICT");
    }

    // Nothing refused was recorded: the thread still holds its one reply.
    bob.consistency = newest(&bob.consistency, &alice.consistency);
    let page = bob.ok(PAGE, json!({ "r": root })).await?;
    assert_eq!(page["thread"]["edges"].as_array().map(Vec::len), Some(1));

    // An outsider sees no thread and may not follow one; an unknown root is not found.
    mallory.consistency = bob.consistency.clone();
    let hidden = mallory.raw(PAGE, json!({ "r": root })).await?;
    assert_eq!(hidden["data"]["thread"], Value::Null, "{hidden}");
    assert!(hidden.get("errors").is_none_or(Value::is_null), "{hidden}");
    let mut outsider = Subscriber::connect(addr, mallory.token.as_deref().unwrap_or("")).await?;
    outsider
        .subscribe("t", THREAD, json!({ "r": root }))
        .await?;
    assert_eq!(outsider.refusal("t").await?, "FORBIDDEN");
    outsider
        .subscribe("u", THREAD, json!({ "r": unknown }))
        .await?;
    assert_eq!(outsider.refusal("u").await?, "NOT_FOUND");
    Ok(())
}

in_both_modes!(links_that_are_elsewhere_nested_or_deleted_are_refused_and_outsiders_see_no_thread);
