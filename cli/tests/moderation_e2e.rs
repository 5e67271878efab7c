//! Removing and banning members, through GraphQL: what the removed or banned user notices (a
//! subscription ended with `FORBIDDEN`, invites refused), what moderators see (the ban list),
//! and that a lifted ban lets the user back in.

mod common;

use common::{community, send, start, Client, Subscriber, CHANNEL_EVENTS};
use serde_json::json;

const BAN: &str =
    "mutation($s: ID!, $u: ID!, $r: String) { banUser(input: {serverId: $s, userId: $u, reason: $r}) }";
const UNBAN: &str = "mutation($s: ID!, $u: ID!) { unbanUser(input: {serverId: $s, userId: $u}) }";
const JOIN: &str = "mutation($c: String!) { joinServer(inviteCode: $c) { id } }";
const BANS: &str =
    "query($s: ID!) { server(id: $s) { bans { userId reason bannedAt bannedBy { username } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_member_is_cut_off_until_the_ban_is_lifted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, bob_id) = anonymous.register("bob").await?;
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
    carol.ok(JOIN, json!({ "c": code })).await?;
    alice.consistency = carol.consistency.clone();

    let bob_token = bob.token.clone().unwrap_or_default();
    let mut subscriber = Subscriber::connect(app.local_addr, &bob_token).await?;
    subscriber
        .subscribe("1", CHANNEL_EVENTS, json!({ "c": place.channel_id }))
        .await?;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    send(&mut alice, &place.channel_id, "before").await?;
    assert_eq!(
        subscriber.next_event("1").await?["message"]["body"],
        "before"
    );

    // A plain member may not ban; the owner may.
    assert_eq!(
        carol
            .error_code(BAN, json!({ "s": place.server_id, "u": bob_id, "r": "no" }))
            .await?,
        "FORBIDDEN"
    );
    alice
        .ok(
            BAN,
            json!({ "s": place.server_id, "u": bob_id, "r": "spam links" }),
        )
        .await?;
    let ended = subscriber.next_message().await?;
    assert_eq!(
        ended["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{ended}"
    );

    // Out of the server, no way back in, and nothing of it to read.
    bob.consistency = alice.consistency.clone();
    assert_eq!(
        bob.error_code(JOIN, json!({ "c": code })).await?,
        "FORBIDDEN"
    );
    let seen = bob
        .ok(
            "query($c: ID!) { channel(id: $c) { id } }",
            json!({ "c": place.channel_id }),
        )
        .await?;
    assert!(seen["channel"].is_null(), "{seen}");

    // Moderators see the ban, with its reason; members may not.
    let bans = alice.ok(BANS, json!({ "s": place.server_id })).await?;
    let list = bans["server"]["bans"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(list.len(), 1, "{bans}");
    assert_eq!(list[0]["userId"], bob_id.as_str());
    assert_eq!(list[0]["reason"], "spam links");
    assert_eq!(list[0]["bannedBy"]["username"], "alice");
    carol.consistency = alice.consistency.clone();
    assert_eq!(
        carol
            .error_code(BANS, json!({ "s": place.server_id }))
            .await?,
        "FORBIDDEN"
    );

    // Banning again changes nothing; a reason over the limit is refused.
    alice
        .ok(BAN, json!({ "s": place.server_id, "u": bob_id, "r": null }))
        .await?;
    assert_eq!(
        alice
            .error_code(
                BAN,
                json!({ "s": place.server_id, "u": bob_id, "r": "x".repeat(513) })
            )
            .await?,
        "BAD_USER_INPUT"
    );
    let bans = alice.ok(BANS, json!({ "s": place.server_id })).await?;
    assert_eq!(bans["server"]["bans"][0]["reason"], "spam links", "{bans}");

    // Lifted: the list is empty and the same invite works again.
    alice
        .ok(UNBAN, json!({ "s": place.server_id, "u": bob_id }))
        .await?;
    assert_eq!(
        alice
            .error_code(UNBAN, json!({ "s": place.server_id, "u": bob_id }))
            .await?,
        "NOT_FOUND"
    );
    let bans = alice.ok(BANS, json!({ "s": place.server_id })).await?;
    assert_eq!(bans["server"]["bans"], json!([]), "{bans}");
    bob.consistency = alice.consistency.clone();
    bob.ok(JOIN, json!({ "c": code })).await?;
    app.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_removes_or_bans_their_equals_or_betters() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, alice_id) = anonymous.register("alice").await?;
    let (mut bob, bob_id) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    alice.consistency = bob.consistency.clone();
    alice
        .ok(
            "mutation($s: ID!, $u: ID!) { setMemberRole(input: {serverId: $s, userId: $u, role: MODERATOR}) { role } }",
            json!({ "s": place.server_id, "u": bob_id }),
        )
        .await?;
    bob.consistency = alice.consistency.clone();
    for query in [
        BAN,
        "mutation($s: ID!, $u: ID!, $r: String) { removeMember(input: {serverId: $s, userId: $u, reason: $r}) }",
    ] {
        for target in [&alice_id, &bob_id] {
            assert_eq!(
                bob.error_code(query, json!({ "s": place.server_id, "u": target, "r": null }))
                    .await?,
                "FORBIDDEN",
                "{query} on {target}"
            );
        }
    }
    assert_eq!(
        bob.error_code(
            "mutation($s: ID!, $u: ID!) { removeMember(input: {serverId: $s, userId: $u}) }",
            json!({ "s": place.server_id, "u": uuid::Uuid::now_v7().to_string() }),
        )
        .await?,
        "NOT_FOUND"
    );
    app.stop().await?;
    Ok(())
}

const USER_EVENTS: &str = "subscription { userEvents { __typename \
     ... on MembershipChanged { serverId member role } ... on ResyncNeeded { missed } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_events_tell_a_member_of_their_own_joins_role_changes_and_removal(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, bob_id) = anonymous.register("bob").await?;
    let (mut carol, carol_id) = anonymous.register("carol").await?;

    // Bob listens on one device before anything happens to him.
    let mut device =
        Subscriber::connect(app.local_addr, &bob.token.clone().unwrap_or_default()).await?;
    device.subscribe("u", USER_EVENTS, json!({})).await?;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let place = community(&mut alice, &mut bob).await?;
    alice.consistency = bob.consistency.clone();
    let joined = device.next_data("u", "userEvents").await?;
    assert_eq!(
        joined,
        json!({ "__typename": "MembershipChanged", "serverId": place.server_id, "member": true, "role": "MEMBER" })
    );

    // Someone else's news is not his.
    let code = alice
        .ok(
            "mutation($s: ID!) { createInvite(input: {serverId: $s}) { code } }",
            json!({ "s": place.server_id }),
        )
        .await?["createInvite"]["code"]
        .clone();
    carol.ok(JOIN, json!({ "c": code })).await?;
    alice.consistency = carol.consistency.clone();
    alice
        .ok(
            "mutation($s: ID!, $u: ID!) { setMemberRole(input: {serverId: $s, userId: $u, role: MODERATOR}) { role } }",
            json!({ "s": place.server_id, "u": carol_id }),
        )
        .await?;
    alice
        .ok(
            "mutation($s: ID!, $u: ID!) { setMemberRole(input: {serverId: $s, userId: $u, role: MODERATOR}) { role } }",
            json!({ "s": place.server_id, "u": bob_id }),
        )
        .await?;
    let promoted = device.next_data("u", "userEvents").await?;
    assert_eq!(promoted["member"], true);
    assert_eq!(promoted["role"], "MODERATOR");

    alice
        .ok(
            "mutation($s: ID!, $u: ID!) { removeMember(input: {serverId: $s, userId: $u, reason: \"restructuring\"}) }",
            json!({ "s": place.server_id, "u": bob_id }),
        )
        .await?;
    let removed = device.next_data("u", "userEvents").await?;
    assert_eq!(
        removed,
        json!({ "__typename": "MembershipChanged", "serverId": place.server_id, "member": false, "role": null })
    );
    device
        .assert_quiet(std::time::Duration::from_millis(300))
        .await?;

    app.stop().await?;
    Ok(())
}
