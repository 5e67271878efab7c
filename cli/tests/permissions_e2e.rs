//! The permission matrix, table-driven: every mutation that acts in a server (moderation and
//! forwards included), tried as every
//! role (OWNER, ADMIN, MODERATOR, MEMBER, GUEST), as a signed-in outsider and as anonymous,
//! against the matrix the README documents. Each attempt gets fresh targets (a message, a
//! channel, an invite) made by the owner, so attempts do not depend on each other.

mod common;

use common::{send, start, Client};
use serde_json::{json, Value};

const ROLES: [&str; 5] = ["OWNER", "ADMIN", "MODERATOR", "MEMBER", "GUEST"];

/// Who tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Actor {
    Role(&'static str),
    Outsider,
    Anonymous,
}

/// One mutation and the roles the matrix lets do it.
struct Case {
    name: &'static str,
    allowed: &'static [&'static str],
    /// What an outsider gets: FORBIDDEN, or NOT_FOUND where even existence is hidden (a
    /// message of a server one is not in).
    outsider: &'static str,
    /// What a member whose role is not allowed gets: FORBIDDEN, or NOT_FOUND where the
    /// target is a message in a channel their role cannot see.
    denied: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "renameServer",
        allowed: &["OWNER", "ADMIN"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "createChannel",
        allowed: &["OWNER", "ADMIN"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "renameChannel",
        allowed: &["OWNER", "ADMIN"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "archiveChannel",
        allowed: &["OWNER", "ADMIN"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "setMemberRole",
        allowed: &["OWNER", "ADMIN"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "removeMember",
        allowed: &["OWNER", "ADMIN", "MODERATOR"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "banUser",
        allowed: &["OWNER", "ADMIN", "MODERATOR"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "unbanUser",
        allowed: &["OWNER", "ADMIN", "MODERATOR"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "createInvite",
        allowed: &["OWNER", "ADMIN", "MODERATOR", "MEMBER"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "revokeInvite",
        allowed: &["OWNER", "ADMIN", "MODERATOR"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "sendMessage",
        allowed: &ROLES,
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "sendAnnouncement",
        allowed: &["OWNER", "ADMIN", "MODERATOR"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "sendPrivate",
        allowed: &["OWNER", "ADMIN", "MODERATOR"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "editOthersMessage",
        allowed: &[],
        outsider: "NOT_FOUND",
        denied: "FORBIDDEN",
    },
    Case {
        name: "deleteOthersMessage",
        allowed: &["OWNER", "ADMIN", "MODERATOR"],
        outsider: "NOT_FOUND",
        denied: "FORBIDDEN",
    },
    Case {
        name: "markRead",
        allowed: &ROLES,
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "markReadPrivate",
        allowed: &["OWNER", "ADMIN", "MODERATOR"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "sendThreadReply",
        allowed: &ROLES,
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "sendThreadReplyPrivate",
        allowed: &["OWNER", "ADMIN", "MODERATOR"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "addReaction",
        allowed: &ROLES,
        outsider: "NOT_FOUND",
        denied: "FORBIDDEN",
    },
    Case {
        name: "addReactionAnnouncement",
        allowed: &ROLES,
        outsider: "NOT_FOUND",
        denied: "FORBIDDEN",
    },
    Case {
        name: "addReactionPrivate",
        allowed: &["OWNER", "ADMIN", "MODERATOR"],
        outsider: "NOT_FOUND",
        denied: "NOT_FOUND",
    },
    Case {
        name: "addReactionArchived",
        allowed: &[],
        outsider: "NOT_FOUND",
        denied: "FORBIDDEN",
    },
    Case {
        name: "removeReaction",
        allowed: &ROLES,
        outsider: "NOT_FOUND",
        denied: "FORBIDDEN",
    },
    Case {
        name: "pinMessage",
        allowed: &["OWNER", "ADMIN", "MODERATOR"],
        outsider: "NOT_FOUND",
        denied: "FORBIDDEN",
    },
    Case {
        name: "unpinMessage",
        allowed: &["OWNER", "ADMIN", "MODERATOR"],
        outsider: "NOT_FOUND",
        denied: "FORBIDDEN",
    },
    Case {
        name: "startTyping",
        allowed: &ROLES,
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "setChannelTopic",
        allowed: &["OWNER", "ADMIN"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "moveChannel",
        allowed: &["OWNER", "ADMIN"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "unarchiveChannel",
        allowed: &["OWNER", "ADMIN"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "transferOwnership",
        allowed: &["OWNER"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "deleteServer",
        allowed: &["OWNER"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "setContentPolicy",
        allowed: &["OWNER", "ADMIN"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "setModerationThreshold",
        allowed: &["OWNER", "ADMIN"],
        outsider: "FORBIDDEN",
        denied: "FORBIDDEN",
    },
    Case {
        name: "reportMessage",
        allowed: &ROLES,
        outsider: "NOT_FOUND",
        denied: "FORBIDDEN",
    },
    Case {
        name: "hideMessage",
        allowed: &["OWNER", "ADMIN", "MODERATOR"],
        outsider: "NOT_FOUND",
        denied: "FORBIDDEN",
    },
    Case {
        name: "restoreMessage",
        allowed: &["OWNER", "ADMIN", "MODERATOR"],
        outsider: "NOT_FOUND",
        denied: "FORBIDDEN",
    },
    Case {
        name: "dismissFlag",
        allowed: &["OWNER", "ADMIN", "MODERATOR"],
        outsider: "NOT_FOUND",
        denied: "FORBIDDEN",
    },
    Case {
        name: "forwardMessage",
        allowed: &ROLES,
        outsider: "NOT_FOUND",
        denied: "FORBIDDEN",
    },
    Case {
        name: "forwardFromPrivate",
        allowed: &["OWNER", "ADMIN", "MODERATOR"],
        outsider: "NOT_FOUND",
        denied: "NOT_FOUND",
    },
];

struct World {
    owner: Client,
    by_role: Vec<(&'static str, Client)>,
    outsider: Client,
    anonymous: Client,
    server: String,
    text: String,
    announcements: String,
    private: String,
    /// A GUEST whose role the setMemberRole attempts set (to GUEST again), and who writes the
    /// messages the others try to edit and delete.
    target: String,
    author: Client,
}

fn data_id(value: &Value, field: &str) -> String {
    value[field]["id"].as_str().unwrap_or_default().to_owned()
}

async fn channel(
    owner: &mut Client,
    server: &str,
    name: &str,
    kind: &str,
    private: bool,
) -> anyhow::Result<String> {
    let made = owner
        .ok(
            "mutation($s: ID!, $n: String!, $k: ChannelKind!, $p: Boolean!) { createChannel(input: {serverId: $s, name: $n, kind: $k, private: $p}) { id } }",
            json!({ "s": server, "n": name, "k": kind, "p": private }),
        )
        .await?;
    Ok(data_id(&made, "createChannel"))
}

async fn invite(owner: &mut Client, server: &str) -> anyhow::Result<String> {
    let made = owner
        .ok(
            "mutation($s: ID!) { createInvite(input: {serverId: $s}) { code } }",
            json!({ "s": server }),
        )
        .await?;
    Ok(made["createInvite"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

async fn world(app: &aether_cli::roles::Running) -> anyhow::Result<World> {
    let mut anonymous = Client::new(app.local_addr);
    let (mut owner, _) = anonymous.register("owner").await?;
    let server = owner
        .ok(
            "mutation { createServer(input: {name: \"matrix\"}) { id } }",
            json!({}),
        )
        .await?;
    let server = data_id(&server, "createServer");
    let text = channel(&mut owner, &server, "general", "TEXT", false).await?;
    let announcements = channel(&mut owner, &server, "news", "ANNOUNCEMENT", false).await?;
    let private = channel(&mut owner, &server, "staff", "TEXT", true).await?;
    let mut by_role = vec![("OWNER", owner.clone())];
    let mut target = String::new();
    let mut author = None;
    for (n, role) in ["ADMIN", "MODERATOR", "MEMBER", "GUEST", "GUEST"]
        .into_iter()
        .enumerate()
    {
        let (mut member, id) = anonymous.register(&format!("member{n}")).await?;
        let code = invite(&mut owner, &server).await?;
        member
            .ok(
                "mutation($c: String!) { joinServer(inviteCode: $c) { id } }",
                json!({ "c": code }),
            )
            .await?;
        owner
            .ok(
                "mutation($s: ID!, $u: ID!, $r: Role!) { setMemberRole(input: {serverId: $s, userId: $u, role: $r}) { role } }",
                json!({ "s": server, "u": id, "r": role }),
            )
            .await?;
        if n == 4 {
            target = id;
            author = Some(member);
        } else {
            by_role.push((role, member));
        }
    }
    let (outsider, _) = anonymous.register("outsider").await?;
    Ok(World {
        owner,
        by_role,
        outsider,
        anonymous,
        server,
        text,
        announcements,
        private,
        target,
        author: author.ok_or_else(|| anyhow::anyhow!("no author"))?,
    })
}

/// A server of its own for an attempt that ends the server or hands it over: the owner makes
/// it, `actor` (when a role other than OWNER) joins with that role, and the author joins as a
/// MEMBER to be handed it.
async fn isolated_server(
    owner: &mut Client,
    by_role: &mut [(&'static str, Client)],
    author: &mut Client,
    actor: Actor,
    n: usize,
) -> anyhow::Result<String> {
    let made = owner
        .ok(
            "mutation($n: String!) { createServer(input: {name: $n}) { id } }",
            json!({ "n": format!("spare {n}") }),
        )
        .await?;
    let server = data_id(&made, "createServer");
    let mut joiners = vec![("MEMBER", author)];
    if let Actor::Role(role) = actor {
        if let Some((_, client)) = by_role
            .iter_mut()
            .find(|(r, _)| *r == role && role != "OWNER")
        {
            joiners.push((role, client));
        }
    }
    for (role, client) in joiners {
        let code = invite(owner, &server).await?;
        client.consistency = owner.consistency.clone();
        client
            .ok(
                "mutation($c: String!) { joinServer(inviteCode: $c) { id } }",
                json!({ "c": code }),
            )
            .await?;
        owner.consistency = client.consistency.clone();
        if role != "MEMBER" {
            let me = client.ok("{ me { id } }", json!({})).await?;
            owner
                .ok(
                    "mutation($s: ID!, $u: ID!, $r: Role!) { setMemberRole(input: {serverId: $s, userId: $u, role: $r}) { role } }",
                    json!({ "s": server, "u": me["me"]["id"], "r": role }),
                )
                .await?;
        }
    }
    Ok(server)
}

/// The owner's fresh targets, then `actor`'s attempt: "OK" or the error's code.
async fn attempt(world: &mut World, case: &str, actor: Actor, n: usize) -> anyhow::Result<String> {
    let owner = &mut world.owner;
    let (query, variables) = match case {
        "renameServer" => (
            "mutation($s: ID!, $n: String!) { renameServer(serverId: $s, name: $n) { id } }",
            json!({ "s": world.server, "n": format!("matrix {n}") }),
        ),
        "createChannel" => (
            "mutation($s: ID!, $n: String!) { createChannel(input: {serverId: $s, name: $n}) { id } }",
            json!({ "s": world.server, "n": format!("new-{n}") }),
        ),
        "renameChannel" => (
            "mutation($c: ID!, $n: String!) { renameChannel(channelId: $c, name: $n) { id } }",
            json!({ "c": world.text, "n": format!("general-{n}") }),
        ),
        "archiveChannel" => {
            let fresh = channel(owner, &world.server, &format!("old-{n}"), "TEXT", false).await?;
            (
                "mutation($c: ID!) { archiveChannel(channelId: $c) { id } }",
                json!({ "c": fresh }),
            )
        }
        "setMemberRole" => (
            "mutation($s: ID!, $u: ID!) { setMemberRole(input: {serverId: $s, userId: $u, role: GUEST}) { role } }",
            json!({ "s": world.server, "u": world.target }),
        ),
        "removeMember" => {
            // A fresh member (below every moderating role) for each attempt.
            let code = invite(owner, &world.server).await?;
            let (mut member, id) = world.anonymous.register(&format!("removable{n}")).await?;
            member
                .ok(
                    "mutation($c: String!) { joinServer(inviteCode: $c) { id } }",
                    json!({ "c": code }),
                )
                .await?;
            owner.consistency = member.consistency.clone();
            (
                "mutation($s: ID!, $u: ID!) { removeMember(input: {serverId: $s, userId: $u, reason: \"matrix\"}) }",
                json!({ "s": world.server, "u": id }),
            )
        }
        // A user who never joined can be banned ahead of time.
        "banUser" => (
            "mutation($s: ID!, $u: ID!) { banUser(input: {serverId: $s, userId: $u}) }",
            json!({ "s": world.server, "u": uuid::Uuid::now_v7().to_string() }),
        ),
        "unbanUser" => {
            let user = uuid::Uuid::now_v7().to_string();
            owner
                .ok(
                    "mutation($s: ID!, $u: ID!) { banUser(input: {serverId: $s, userId: $u}) }",
                    json!({ "s": world.server, "u": user }),
                )
                .await?;
            (
                "mutation($s: ID!, $u: ID!) { unbanUser(input: {serverId: $s, userId: $u}) }",
                json!({ "s": world.server, "u": user }),
            )
        }
        "createInvite" => (
            "mutation($s: ID!) { createInvite(input: {serverId: $s}) { code } }",
            json!({ "s": world.server }),
        ),
        "revokeInvite" => {
            let code = invite(owner, &world.server).await?;
            ("mutation($c: String!) { revokeInvite(code: $c) }", json!({ "c": code }))
        }
        "sendMessage" | "sendAnnouncement" | "sendPrivate" => {
            let channel = match case {
                "sendMessage" => &world.text,
                "sendAnnouncement" => &world.announcements,
                _ => &world.private,
            };
            (
                "mutation($c: ID!) { sendMessage(input: {channelId: $c, body: \"hi\"}) { id } }",
                json!({ "c": channel }),
            )
        }
        "sendThreadReply" | "sendThreadReplyPrivate" => {
            let channel = if case == "sendThreadReply" { world.text.clone() } else { world.private.clone() };
            let root = send(owner, &channel, &format!("root {n}")).await?;
            (
                "mutation($c: ID!, $r: ID!) { sendMessage(input: {channelId: $c, body: \"in thread\", threadRootId: $r, replyToId: $r}) { id } }",
                json!({ "c": channel, "r": root }),
            )
        }
        "editOthersMessage" | "deleteOthersMessage" => {
            let message = send(&mut world.author, &world.text, &format!("theirs {n}")).await?;
            owner.consistency = world.author.consistency.clone();
            if case == "editOthersMessage" {
                (
                    "mutation($m: ID!) { editMessage(input: {messageId: $m, body: \"mine now\"}) { id } }",
                    json!({ "m": message }),
                )
            } else {
                ("mutation($m: ID!) { deleteMessage(messageId: $m) { id } }", json!({ "m": message }))
            }
        }
        "markRead" | "markReadPrivate" => {
            let channel = if case == "markRead" { world.text.clone() } else { world.private.clone() };
            let message = send(owner, &channel, &format!("to read {n}")).await?;
            (
                "mutation($c: ID!, $m: ID!) { markRead(input: {channelId: $c, messageId: $m}) { unreadCount } }",
                json!({ "c": channel, "m": message }),
            )
        }
        "addReaction" | "addReactionAnnouncement" | "addReactionPrivate" | "removeReaction" => {
            let channel = match case {
                "addReactionAnnouncement" => world.announcements.clone(),
                "addReactionPrivate" => world.private.clone(),
                _ => world.text.clone(),
            };
            let message = send(owner, &channel, &format!("react {n}")).await?;
            // Someone else's reaction is there already: joining it, or taking back one's own
            // (there or not), is what is tried.
            owner
                .ok(
                    "mutation($m: ID!) { addReaction(messageId: $m, emoji: \"👍\") { id } }",
                    json!({ "m": message }),
                )
                .await?;
            let query = if case == "removeReaction" {
                "mutation($m: ID!) { removeReaction(messageId: $m, emoji: \"👍\") { id } }"
            } else {
                "mutation($m: ID!) { addReaction(messageId: $m, emoji: \"👍\") { id } }"
            };
            (query, json!({ "m": message }))
        }
        "pinMessage" | "unpinMessage" => {
            let message = send(&mut world.author, &world.text, &format!("pin me {n}")).await?;
            owner.consistency = world.author.consistency.clone();
            if case == "unpinMessage" {
                owner
                    .ok(
                        "mutation($m: ID!) { pinMessage(messageId: $m) { id } }",
                        json!({ "m": message }),
                    )
                    .await?;
                ("mutation($m: ID!) { unpinMessage(messageId: $m) { id } }", json!({ "m": message }))
            } else {
                ("mutation($m: ID!) { pinMessage(messageId: $m) { id } }", json!({ "m": message }))
            }
        }
        "addReactionArchived" => {
            let fresh = channel(owner, &world.server, &format!("closed-{n}"), "TEXT", false).await?;
            let message = send(owner, &fresh, "last words").await?;
            owner
                .ok(
                    "mutation($c: ID!) { archiveChannel(channelId: $c) { id } }",
                    json!({ "c": fresh }),
                )
                .await?;
            (
                "mutation($m: ID!) { addReaction(messageId: $m, emoji: \"👍\") { id } }",
                json!({ "m": message }),
            )
        }
        "startTyping" => ("mutation($c: ID!) { startTyping(channelId: $c) }", json!({ "c": world.text })),
        "setChannelTopic" => (
            "mutation($c: ID!, $t: String) { setChannelTopic(channelId: $c, topic: $t) { id } }",
            json!({ "c": world.text, "t": format!("topic {n}") }),
        ),
        "moveChannel" => (
            "mutation($c: ID!, $k: String) { moveChannel(input: {channelId: $c, category: $k, position: 0}) { id } }",
            json!({ "c": world.text, "k": format!("category {n}") }),
        ),
        "unarchiveChannel" => {
            let fresh = channel(owner, &world.server, &format!("shelved-{n}"), "TEXT", false).await?;
            owner
                .ok(
                    "mutation($c: ID!) { archiveChannel(channelId: $c) { id } }",
                    json!({ "c": fresh }),
                )
                .await?;
            ("mutation($c: ID!) { unarchiveChannel(channelId: $c) { id } }", json!({ "c": fresh }))
        }
        "transferOwnership" | "deleteServer" => {
            let server =
                isolated_server(owner, &mut world.by_role, &mut world.author, actor, n).await?;
            if case == "deleteServer" {
                ("mutation($s: ID!) { deleteServer(serverId: $s) }", json!({ "s": server }))
            } else {
                (
                    "mutation($s: ID!, $u: ID!) { transferOwnership(serverId: $s, userId: $u) { id } }",
                    json!({ "s": server, "u": world.target }),
                )
            }
        }
        "setContentPolicy" => (
            "mutation($s: ID!) { setContentPolicy(input: {serverId: $s, policy: MASK}) }",
            json!({ "s": world.server }),
        ),
        "setModerationThreshold" => (
            "mutation($s: ID!) { setModerationThreshold(input: {serverId: $s, threshold: 0.7}) }",
            json!({ "s": world.server }),
        ),
        "reportMessage" => {
            // Someone else's message: nobody tries to report their own.
            let message = send(&mut world.author, &world.text, &format!("report me {n}")).await?;
            owner.consistency = world.author.consistency.clone();
            (
                "mutation($m: ID!) { reportMessage(input: {messageId: $m, reason: \"matrix\"}) }",
                json!({ "m": message }),
            )
        }
        "hideMessage" | "restoreMessage" | "dismissFlag" => {
            let message = send(&mut world.author, &world.text, &format!("review me {n}")).await?;
            owner.consistency = world.author.consistency.clone();
            let (prepare, decide) = match case {
                "hideMessage" => (None, "hideMessage"),
                "restoreMessage" => (Some("hideMessage"), "restoreMessage"),
                _ => (Some("reportMessage"), "dismissFlag"),
            };
            if let Some(prepare) = prepare {
                let query = format!(
                    "mutation($m: ID!) {{ {prepare}(input: {{messageId: $m, reason: \"matrix\"}}) {} }}",
                    if prepare == "reportMessage" { "" } else { "{ id }" }
                );
                owner.ok(&query, json!({ "m": message })).await?;
            }
            let query = format!(
                "mutation($m: ID!) {{ {decide}(input: {{messageId: $m, reason: \"matrix\"}}) {{ id }} }}"
            );
            return decided(world, actor, &query, json!({ "m": message })).await;
        }
        "forwardMessage" | "forwardFromPrivate" => {
            let from = if case == "forwardMessage" { world.text.clone() } else { world.private.clone() };
            let message = send(owner, &from, &format!("pass it on {n}")).await?;
            (
                "mutation($m: ID!, $c: ID!) { forwardMessage(input: {messageId: $m, channelId: $c}) { id } }",
                json!({ "m": message, "c": world.text }),
            )
        }
        other => anyhow::bail!("no case {other}"),
    };
    decided(world, actor, query, variables).await
}

/// `actor`'s attempt at `query` once the owner's preparations are read: "OK" or the code.
async fn decided(
    world: &mut World,
    actor: Actor,
    query: &str,
    variables: Value,
) -> anyhow::Result<String> {
    let consistency = world.owner.consistency.clone();
    let client = match actor {
        Actor::Role(role) => {
            &mut world
                .by_role
                .iter_mut()
                .find(|(r, _)| *r == role)
                .ok_or_else(|| anyhow::anyhow!("no {role}"))?
                .1
        }
        Actor::Outsider => &mut world.outsider,
        Actor::Anonymous => &mut world.anonymous,
    };
    // Read the owner's preparations before acting on them.
    client.consistency = consistency;
    let body = client.raw(query, variables).await?;
    Ok(match body["errors"][0]["extensions"]["code"].as_str() {
        None => "OK".to_owned(),
        Some(code) => code.to_owned(),
    })
}

#[tokio::test]
async fn every_mutation_as_every_role_follows_the_matrix() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut world = world(&app).await?;
    let mut actors: Vec<Actor> = ROLES.iter().map(|role| Actor::Role(role)).collect();
    actors.extend([Actor::Outsider, Actor::Anonymous]);

    let mut wrong = Vec::new();
    let mut n = 0;
    for case in CASES {
        for actor in &actors {
            n += 1;
            let expected = match actor {
                Actor::Role(role) if case.allowed.contains(role) => "OK",
                Actor::Role(_) => case.denied,
                Actor::Outsider => case.outsider,
                Actor::Anonymous => "UNAUTHENTICATED",
            };
            let got = attempt(&mut world, case.name, *actor, n).await?;
            if got != expected {
                wrong.push(format!(
                    "{} as {actor:?}: expected {expected}, got {got}",
                    case.name
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {n} attempts off the matrix:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn no_query_or_subscription_shows_what_the_caller_cannot_see() -> anyhow::Result<()> {
    use common::Subscriber;

    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut world = world(&app).await?;
    let secret = send(&mut world.owner, &world.private, "staff only").await?;
    // With a thread and a reaction of its own, that must not show either.
    world
        .owner
        .ok(
            "mutation($c: ID!, $r: ID!) { sendMessage(input: {channelId: $c, body: \"staff thread\", threadRootId: $r}) { id } }",
            json!({ "c": world.private, "r": secret }),
        )
        .await?;
    world
        .owner
        .ok(
            "mutation($m: ID!) { addReaction(messageId: $m, emoji: \"🔒\") { id } }",
            json!({ "m": secret }),
        )
        .await?;
    world
        .owner
        .ok(
            "mutation($m: ID!) { pinMessage(messageId: $m) { id } }",
            json!({ "m": secret }),
        )
        .await?;
    let public = send(&mut world.owner, &world.text, "for everyone").await?;
    let consistency = world.owner.consistency.clone();

    let queries = [
        (
            "server",
            "query($i: ID!) { server(id: $i) { id name } }",
            world.server.clone(),
        ),
        (
            "channel",
            "query($i: ID!) { channel(id: $i) { id messages { edges { node { body } } } pins { edges { node { body } } } } }",
            world.private.clone(),
        ),
        (
            "message",
            "query($i: ID!) { message(id: $i) { body reactions { emoji count } } }",
            secret.clone(),
        ),
        (
            "thread",
            "query($i: ID!) { thread(rootId: $i) { edges { node { body } } } }",
            secret.clone(),
        ),
    ];
    // The outsider sees none of the server; a MEMBER none of the private channel.
    let member = world
        .by_role
        .iter()
        .find(|(role, _)| *role == "MEMBER")
        .map(|(_, client)| client.clone())
        .ok_or_else(|| anyhow::anyhow!("no member"))?;
    for (who, mut client) in [
        ("outsider", world.outsider.clone()),
        ("member", member.clone()),
    ] {
        client.consistency = consistency.clone();
        for (field, query, id) in &queries {
            if who == "member" && *field == "server" {
                continue;
            }
            let answer = client.raw(query, json!({ "i": id })).await?;
            assert_eq!(
                answer["data"][field],
                Value::Null,
                "{who} saw {field}: {answer}"
            );
            assert!(answer.get("errors").is_none_or(Value::is_null), "{answer}");
        }
        let servers = client
            .ok("{ servers { id channels { id } } }", json!({}))
            .await?;
        let text = serde_json::to_string(&servers)?;
        if who == "outsider" {
            assert!(
                !text.contains(&world.server),
                "the outsider listed the server: {text}"
            );
        } else {
            assert!(
                !text.contains(&world.private),
                "the member listed the private channel: {text}"
            );
        }
    }
    // The member does see the public channel and its message, and the moderator the private.
    let mut member = member;
    member.consistency = consistency.clone();
    let seen = member
        .ok(
            "query($i: ID!) { message(id: $i) { body } }",
            json!({ "i": public }),
        )
        .await?;
    assert_eq!(seen["message"]["body"], "for everyone");

    // Subscriptions: refused with FORBIDDEN, never a stream.
    let subscriptions = [
        (
            "subscription($i: ID!) { channelEvents(channelId: $i) { cursor } }",
            world.private.clone(),
        ),
        (
            "subscription($i: ID!) { typing(channelId: $i) { typing } }",
            world.private.clone(),
        ),
        (
            "subscription($i: ID!) { threadEvents(rootId: $i) { cursor } }",
            secret.clone(),
        ),
    ];
    for (query, id) in subscriptions {
        for token in [member.token.clone(), world.outsider.token.clone()] {
            let mut socket =
                Subscriber::connect(app.local_addr, &token.unwrap_or_default()).await?;
            socket.subscribe("s", query, json!({ "i": id })).await?;
            let refused = socket.next_message().await?;
            assert_eq!(
                refused["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
                "{query}: {refused}"
            );
        }
    }
    // serverEvents: the outsider is refused; from the beginning, the member hears nothing of
    // the private channel (its creation, the pin above, its topic), the moderator does.
    world
        .owner
        .ok(
            "mutation($c: ID!) { setChannelTopic(channelId: $c, topic: \"staff matters\") { id } }",
            json!({ "c": world.private }),
        )
        .await?;
    let server_events =
        "subscription($i: ID!) { serverEvents(serverId: $i, after: \"0\") { kind channelId } }";
    let mut socket = Subscriber::connect(
        app.local_addr,
        &world.outsider.token.clone().unwrap_or_default(),
    )
    .await?;
    socket
        .subscribe("e", server_events, json!({ "i": world.server }))
        .await?;
    assert_eq!(socket.refusal("e").await?, "FORBIDDEN");
    let moderator = world
        .by_role
        .iter()
        .find(|(role, _)| *role == "MODERATOR")
        .map(|(_, client)| client.clone())
        .ok_or_else(|| anyhow::anyhow!("no moderator"))?;
    for (who, token, sees_private) in [
        ("member", member.token.clone(), false),
        ("moderator", moderator.token.clone(), true),
    ] {
        let mut socket = Subscriber::connect(app.local_addr, &token.unwrap_or_default()).await?;
        socket
            .subscribe("e", server_events, json!({ "i": world.server }))
            .await?;
        let mut about_private = Vec::new();
        let mut heard = 0;
        // The catch-up, until the subscription falls quiet.
        while let Ok(message) =
            tokio::time::timeout(std::time::Duration::from_millis(500), socket.next_message()).await
        {
            let event = message?["payload"]["data"]["serverEvents"].clone();
            heard += 1;
            if event["channelId"] == world.private.as_str() {
                about_private.push(event["kind"].clone());
            }
        }
        assert!(heard > 5, "{who} heard only {heard} events of the server");
        if sees_private {
            assert_eq!(
                about_private,
                vec![
                    json!("CHANNEL_CREATED"),
                    json!("MESSAGE_PINNED"),
                    json!("CHANNEL_TOPIC_CHANGED")
                ],
                "{who}"
            );
        } else {
            assert!(about_private.is_empty(), "{who} heard {about_private:?}");
        }
    }

    let mut socket = Subscriber::connect(
        app.local_addr,
        &world.outsider.token.clone().unwrap_or_default(),
    )
    .await?;
    socket
        .subscribe(
            "p",
            "subscription($i: ID!) { presence(serverId: $i) { status } }",
            json!({ "i": world.server }),
        )
        .await?;
    let refused = socket.next_message().await?;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    app.stop().await?;
    Ok(())
}
