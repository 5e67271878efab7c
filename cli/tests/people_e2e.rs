//! People: `user(id)` and `users(search:)` find only those the caller shares a server or a
//! conversation with, in the embedded mode and from the projectors' PostgreSQL catalog.

mod common;

use std::net::SocketAddr;

use common::{community, Client, Cluster};
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

#[tokio::test]
async fn embedded_people_are_found_only_through_what_they_share() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = common::start(dir.path()).await?;
    people_are_found_only_through_what_they_share(app.local_addr).await?;
    app.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_people_are_found_only_through_what_they_share() -> anyhow::Result<()> {
    let cluster = Cluster::start(2).await?;
    let api = cluster.instance(common::unlimited(), true).await?;
    people_are_found_only_through_what_they_share(api.local_addr).await?;
    cluster.stop(vec![api]).await
}
