//! Reactions end to end, in the embedded mode and on the distributed read models
//! (`in_both_modes!`): `addReaction` and `removeReaction` over HTTP, the counts and `reactedByMe`
//! in history, `ReactionChanged` on `channelEvents` (each subscriber told whether they reacted),
//! the per-message limit, and bad input.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use aether_cli::roles::{start_embedded, EmbeddedConfig};
use common::{community, newest, send, unlimited, Client, Subscriber};
use serde_json::{json, Value};

const REACT: &str = "mutation($m: ID!, $e: String!) { addReaction(messageId: $m, emoji: $e) { \
                     id reactions { emoji count reactedByMe firstReactors { username } } } }";
const UNREACT: &str = "mutation($m: ID!, $e: String!) { removeReaction(messageId: $m, emoji: $e) \
                       { id reactions { emoji count reactedByMe } } }";
const REACTIONS: &str = "subscription($c: ID!, $after: String) { channelEvents(channelId: $c, \
     after: $after) { __typename cursor ... on MessageSent { message { id } } \
     ... on ReactionChanged { emoji added user { username } message { id reactions { emoji count \
     reactedByMe firstReactors { username } } } } } }";
const HISTORY: &str = "query($c: ID!) { channel(id: $c) { messages(last: 10) { edges { node { \
                       id deleted reactions { emoji count reactedByMe firstReactors { username } } \
                       } } } } }";

fn reactions(message: &Value) -> Value {
    message["reactions"].clone()
}

async fn members_react_see_counts_and_whether_they_reacted_live_and_in_history(
    addr: SocketAddr,
) -> anyhow::Result<()> {
    let mut anonymous = Client::new(addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    alice.consistency = newest(&alice.consistency, &bob.consistency);
    alice.ok("{ me { id } }", json!({})).await?;

    // Both watch the channel with the same document: whether each reacted differs.
    let mut alice_sees = Subscriber::connect(addr, alice.token.as_deref().unwrap_or("")).await?;
    let mut bob_sees = Subscriber::connect(addr, bob.token.as_deref().unwrap_or("")).await?;
    for subscriber in [&mut alice_sees, &mut bob_sees] {
        subscriber
            .subscribe(
                "r",
                REACTIONS,
                json!({ "c": place.channel_id, "after": "0" }),
            )
            .await?;
    }
    let message = send(&mut alice, &place.channel_id, "ship it?").await?;
    for subscriber in [&mut alice_sees, &mut bob_sees] {
        assert_eq!(
            subscriber.next_event("r").await?["__typename"],
            "MessageSent"
        );
    }

    // Bob reacts: the answer already counts him.
    let added = bob.ok(REACT, json!({ "m": message, "e": "👍" })).await?;
    assert_eq!(
        reactions(&added["addReaction"]),
        json!([{ "emoji": "👍", "count": 1, "reactedByMe": true,
                 "firstReactors": [{ "username": "bob" }] }])
    );
    let for_bob = bob_sees.next_event("r").await?;
    let for_alice = alice_sees.next_event("r").await?;
    for event in [&for_bob, &for_alice] {
        assert_eq!(event["__typename"], "ReactionChanged", "{event}");
        assert_eq!(event["emoji"], "👍");
        assert_eq!(event["added"], true);
        assert_eq!(event["user"]["username"], "bob");
        assert_eq!(event["message"]["id"], message.as_str());
        assert_eq!(event["message"]["reactions"][0]["count"], 1);
    }
    assert_eq!(for_bob["message"]["reactions"][0]["reactedByMe"], true);
    assert_eq!(for_alice["message"]["reactions"][0]["reactedByMe"], false);

    // Reacting again is a no-op: same answer, and nobody hears of it.
    let again = bob.ok(REACT, json!({ "m": message, "e": "👍" })).await?;
    assert_eq!(reactions(&again["addReaction"])[0]["count"], 1);
    bob_sees.assert_quiet(Duration::from_millis(300)).await?;

    // Alice joins bob's 👍 and adds a custom emoji, spelled in capitals.
    alice.ok(REACT, json!({ "m": message, "e": "👍" })).await?;
    let custom = alice
        .ok(REACT, json!({ "m": message, "e": ":Party_Parrot:" }))
        .await?;
    assert_eq!(
        reactions(&custom["addReaction"]),
        json!([
            { "emoji": "👍", "count": 2, "reactedByMe": true,
              "firstReactors": [{ "username": "bob" }, { "username": "alice" }] },
            { "emoji": ":party_parrot:", "count": 1, "reactedByMe": true,
              "firstReactors": [{ "username": "alice" }] },
        ])
    );
    for _ in 0..2 {
        bob_sees.next_event("r").await?;
    }

    // Bob takes his 👍 back; taking it back twice changes nothing more.
    let removed = bob.ok(UNREACT, json!({ "m": message, "e": "👍" })).await?;
    assert_eq!(
        reactions(&removed["removeReaction"])[0],
        json!({ "emoji": "👍", "count": 1, "reactedByMe": false })
    );
    // alice's own two reactions came before.
    for _ in 0..2 {
        assert_eq!(alice_sees.next_event("r").await?["added"], true);
    }
    let taken_back = alice_sees.next_event("r").await?;
    assert_eq!(taken_back["added"], false, "{taken_back}");
    assert_eq!(taken_back["user"]["username"], "bob");
    assert_eq!(taken_back["message"]["reactions"][0]["count"], 1);
    bob.ok(UNREACT, json!({ "m": message, "e": "👍" })).await?;
    bob_sees.next_event("r").await?;
    bob_sees.assert_quiet(Duration::from_millis(300)).await?;

    // History shows the same, from each reader's side.
    bob.consistency = newest(&bob.consistency, &alice.consistency);
    let history = bob.ok(HISTORY, json!({ "c": place.channel_id })).await?;
    let node = &history["channel"]["messages"]["edges"][0]["node"];
    assert_eq!(
        reactions(node),
        json!([
            { "emoji": "👍", "count": 1, "reactedByMe": false,
              "firstReactors": [{ "username": "alice" }] },
            { "emoji": ":party_parrot:", "count": 1, "reactedByMe": false,
              "firstReactors": [{ "username": "alice" }] },
        ])
    );

    // A subscriber resuming from the start replays every change, reactions included.
    let mut late = Subscriber::connect(addr, bob.token.as_deref().unwrap_or("")).await?;
    late.subscribe(
        "late",
        REACTIONS,
        json!({ "c": place.channel_id, "after": "0" }),
    )
    .await?;
    let mut kinds = Vec::new();
    for _ in 0..5 {
        let event = late.next_event("late").await?;
        kinds.push((
            event["__typename"].as_str().unwrap_or("").to_owned(),
            event["added"].as_bool(),
        ));
    }
    assert_eq!(
        kinds,
        vec![
            ("MessageSent".to_owned(), None),
            ("ReactionChanged".to_owned(), Some(true)),
            ("ReactionChanged".to_owned(), Some(true)),
            ("ReactionChanged".to_owned(), Some(true)),
            ("ReactionChanged".to_owned(), Some(false)),
        ]
    );

    // A deleted message loses its reactions with its words, and takes no new ones.
    alice
        .ok(
            "mutation($m: ID!) { deleteMessage(messageId: $m) { id } }",
            json!({ "m": message }),
        )
        .await?;
    let code = bob
        .error_code(REACT, json!({ "m": message, "e": "👍" }))
        .await?;
    assert_eq!(code, "CONFLICT");
    bob.consistency = newest(&bob.consistency, &alice.consistency);
    let history = bob.ok(HISTORY, json!({ "c": place.channel_id })).await?;
    let node = &history["channel"]["messages"]["edges"][0]["node"];
    assert_eq!(node["deleted"], true);
    assert_eq!(reactions(node), json!([]));

    Ok(())
}

in_both_modes!(members_react_see_counts_and_whether_they_reacted_live_and_in_history);

async fn bad_emoji_unknown_messages_and_outsiders_are_refused_with_nothing_recorded(
    addr: SocketAddr,
) -> anyhow::Result<()> {
    let mut anonymous = Client::new(addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let (mut mallory, _) = anonymous.register("mallory").await?;
    let place = community(&mut alice, &mut bob).await?;
    let message = send(&mut alice, &place.channel_id, "react to me").await?;

    for (emoji, why) in [
        ("", "empty"),
        ("thumbs up", "text"),
        ("👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍", "too long"),
        (":no spaces:", "bad name"),
        ("👍\u{7}", "a control character"),
    ] {
        let code = bob
            .error_code(REACT, json!({ "m": message, "e": emoji }))
            .await?;
        assert_eq!(code, "BAD_USER_INPUT", "{why}");
    }
    for (id, expected) in [
        ("not-an-id", "BAD_USER_INPUT"),
        ("0190a0d4-0000-7000-8000-000000000000", "NOT_FOUND"),
    ] {
        assert_eq!(
            bob.error_code(REACT, json!({ "m": id, "e": "👍" })).await?,
            expected
        );
        assert_eq!(
            bob.error_code(UNREACT, json!({ "m": id, "e": "👍" }))
                .await?,
            expected
        );
    }
    // Someone outside the server learns nothing about the message.
    assert_eq!(
        mallory
            .error_code(REACT, json!({ "m": message, "e": "👍" }))
            .await?,
        "NOT_FOUND"
    );
    let anonymous_code = anonymous
        .error_code(REACT, json!({ "m": message, "e": "👍" }))
        .await?;
    assert_eq!(anonymous_code, "UNAUTHENTICATED");

    // Nothing of it was recorded (alice's consistency token is her message's: the refusals
    // gave none).
    let history = alice.ok(HISTORY, json!({ "c": place.channel_id })).await?;
    assert_eq!(
        history["channel"]["messages"]["edges"][0]["node"]["reactions"],
        json!([]),
        "{history}"
    );
    Ok(())
}

in_both_modes!(bad_emoji_unknown_messages_and_outsiders_are_refused_with_nothing_recorded);

#[tokio::test]
async fn a_message_holds_the_configured_number_of_distinct_emoji() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = EmbeddedConfig {
        data_dir: dir.path().to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace: Duration::from_secs(2),
        ..unlimited()
    };
    config.api.max_reaction_kinds = 2;
    let app = start_embedded(config).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    let message = send(&mut alice, &place.channel_id, "pick two").await?;
    alice.ok(REACT, json!({ "m": message, "e": "👍" })).await?;
    alice.ok(REACT, json!({ "m": message, "e": "🎉" })).await?;

    let refused = bob.raw(REACT, json!({ "m": message, "e": "😂" })).await?;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "CONFLICT");
    let said = refused["errors"][0]["message"].as_str().unwrap_or("");
    assert!(said.contains("at most 2"), "{said}");
    // Joining one already there is never refused.
    let joined = bob.ok(REACT, json!({ "m": message, "e": "🎉" })).await?;
    assert_eq!(reactions(&joined["addReaction"])[1]["count"], 2);
    // Once everyone took one back, its place is free.
    alice
        .ok(UNREACT, json!({ "m": message, "e": "👍" }))
        .await?;
    let freed = bob.ok(REACT, json!({ "m": message, "e": "😂" })).await?;
    let freed = reactions(&freed["addReaction"]);
    let emoji: Vec<&str> = freed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["emoji"].as_str())
        .collect();
    assert_eq!(emoji, vec!["🎉", "😂"]);
    app.stop().await?;
    Ok(())
}
