//! People: `user(id)` and `users(search:)` find only those the caller shares a server or a
//! conversation with; a profile's picture and status are set, kept and cleared. In the
//! embedded mode and from the projectors' PostgreSQL catalog.

mod common;

use std::net::SocketAddr;

use common::{community, Client};
use serde_json::{json, Value};

const USER: &str = "query($id: ID!) { user(id: $id) { username displayName presence } }";
const USERS: &str = "query($q: String!, $n: Int) { users(search: $q, first: $n) { username } }";

fn usernames(data: &Value) -> Vec<String> {
    data["users"]
        .as_array()
        .map(|users| {
            users
                .iter()
                .filter_map(|u| u["username"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// alice and bob share a server; carol shares a conversation with alice; dave shares
/// nothing with anyone. Each looks the others up.
async fn people_are_found_only_through_what_they_share(addr: SocketAddr) -> anyhow::Result<()> {
    let mut anonymous = Client::new(addr);
    let (mut alice, alice_id) = anonymous.register("alice").await?;
    let (mut bob, bob_id) = anonymous.register("bob").await?;
    let (mut carol, carol_id) = anonymous.register("carol").await?;
    let (mut dave, dave_id) = anonymous.register("dave").await?;
    community(&mut alice, &mut bob).await?;
    alice
        .ok(
            "mutation($u: ID!) { openDirectConversation(userIds: [$u]) { id } }",
            json!({ "u": carol_id }),
        )
        .await?;
    for client in [&mut bob, &mut carol, &mut dave] {
        client.consistency = alice.consistency.clone();
    }

    // user(id): someone shared, oneself; null for a stranger and for nobody.
    let found = alice.ok(USER, json!({ "id": bob_id })).await?;
    assert_eq!(found["user"]["username"], "bob", "{found}");
    assert_eq!(found["user"]["presence"], "OFFLINE", "{found}");
    let found = alice.ok(USER, json!({ "id": carol_id })).await?;
    assert_eq!(found["user"]["username"], "carol", "{found}");
    let found = dave.ok(USER, json!({ "id": dave_id })).await?;
    assert_eq!(found["user"]["username"], "dave", "{found}");
    for (viewer, id) in [
        (&mut dave, &alice_id),
        (&mut bob, &carol_id),
        (&mut carol, &bob_id),
    ] {
        let hidden = viewer.ok(USER, json!({ "id": id })).await?;
        assert_eq!(hidden["user"], Value::Null, "{hidden}");
    }
    let nobody = alice
        .ok(USER, json!({ "id": uuid::Uuid::now_v7().to_string() }))
        .await?;
    assert_eq!(nobody["user"], Value::Null);

    // users(search:): by prefix of username or display name, letter case aside.
    let code = alice.error_code(USERS, json!({ "q": " " })).await?;
    assert_eq!(code, "BAD_USER_INPUT", "an empty search is refused");
    let b = alice.ok(USERS, json!({ "q": "B" })).await?;
    assert_eq!(usernames(&b), ["bob"]);
    let mut all = Vec::new();
    for q in ["a", "b", "c", "d"] {
        all.extend(usernames(&alice.ok(USERS, json!({ "q": q })).await?));
    }
    assert_eq!(all, ["alice", "bob", "carol"], "dave is nobody alice knows");
    let from_dave = dave.ok(USERS, json!({ "q": "a" })).await?;
    assert_eq!(usernames(&from_dave), Vec::<String>::new());
    // Wildcards are letters like any other.
    let wildcard = alice.ok(USERS, json!({ "q": "%" })).await?;
    assert_eq!(usernames(&wildcard), Vec::<String>::new());
    let underscore = alice.ok(USERS, json!({ "q": "_ob" })).await?;
    assert_eq!(usernames(&underscore), Vec::<String>::new());

    // Bad input: an id that is none, a search too long, a page too large.
    let code = alice.error_code(USER, json!({ "id": "not-an-id" })).await?;
    assert_eq!(code, "BAD_USER_INPUT");
    let code = alice
        .error_code(USERS, json!({ "q": "x".repeat(65) }))
        .await?;
    assert_eq!(code, "BAD_USER_INPUT");
    let code = alice
        .error_code(USERS, json!({ "q": "b", "n": 100_000 }))
        .await?;
    assert_eq!(code, "BAD_USER_INPUT");
    let code = anonymous.error_code(USERS, json!({ "q": "b" })).await?;
    assert_eq!(code, "UNAUTHENTICATED");
    Ok(())
}

const PROFILE: &str = "mutation($d: String, $a: String, $s: String) { \
     updateProfile(displayName: $d, avatarUrl: $a, statusText: $s) { displayName avatarUrl statusText } }";
const STATUS_ONLY: &str =
    "mutation($s: String) { updateProfile(statusText: $s) { displayName avatarUrl statusText } }";
const NAME_ONLY: &str =
    "mutation($d: String) { updateProfile(displayName: $d) { displayName avatarUrl statusText } }";
const SEEN: &str = "query($id: ID!) { user(id: $id) { displayName avatarUrl statusText } }";

/// alice sets a picture and a status; bob, who shares a server with her, sees them; a new
/// display name keeps them; `null` clears one; bad values are refused and change nothing.
async fn a_profile_shows_a_picture_and_a_status(addr: SocketAddr) -> anyhow::Result<()> {
    let mut anonymous = Client::new(addr);
    let (mut alice, alice_id) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    community(&mut alice, &mut bob).await?;

    let set = alice
        .ok(
            PROFILE,
            json!({ "a": "https://img.example/alice.png", "s": " on holiday " }),
        )
        .await?;
    assert_eq!(
        set["updateProfile"],
        json!({ "displayName": "alice", "avatarUrl": "https://img.example/alice.png", "statusText": "on holiday" })
    );
    bob.consistency = alice.consistency.clone();
    let seen = bob.ok(SEEN, json!({ "id": alice_id })).await?;
    assert_eq!(seen["user"], set["updateProfile"], "{seen}");

    let renamed = alice.ok(NAME_ONLY, json!({ "d": "Alice L." })).await?;
    assert_eq!(
        renamed["updateProfile"],
        json!({ "displayName": "Alice L.", "avatarUrl": "https://img.example/alice.png", "statusText": "on holiday" })
    );
    let cleared = alice.ok(STATUS_ONLY, json!({ "s": null })).await?;
    assert_eq!(cleared["updateProfile"]["statusText"], Value::Null);
    assert_eq!(
        cleared["updateProfile"]["avatarUrl"],
        "https://img.example/alice.png"
    );
    bob.consistency = alice.consistency.clone();
    let seen = bob.ok(SEEN, json!({ "id": alice_id })).await?;
    assert_eq!(seen["user"], cleared["updateProfile"], "{seen}");

    for variables in [
        json!({ "a": "javascript:alert(1)" }),
        json!({ "a": "https://user:pw@img.example/a.png" }),
        json!({ "a": format!("https://img.example/{}", "a".repeat(2048)) }),
        json!({ "s": "x".repeat(129) }),
        json!({ "d": "" }),
    ] {
        assert_eq!(
            alice.error_code(PROFILE, variables.clone()).await?,
            "BAD_USER_INPUT",
            "{variables}"
        );
    }
    let unchanged = alice.ok(SEEN, json!({ "id": alice_id })).await?;
    assert_eq!(unchanged["user"], cleared["updateProfile"]);
    assert_eq!(
        anonymous
            .error_code(STATUS_ONLY, json!({ "s": "hi" }))
            .await?,
        "UNAUTHENTICATED"
    );
    Ok(())
}

in_both_modes!(a_profile_shows_a_picture_and_a_status);

in_both_modes!(people_are_found_only_through_what_they_share);
