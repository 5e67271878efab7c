//! The catalog read model: users, servers, channels, members, invites and direct
//! conversations. The statements are
//! shared by the SQLite store (embedded mode) and the PostgreSQL one (`stream::postgres`).

use aether_domain::conversation::ConversationEvent;
use aether_domain::pins::PinsEvent;
use aether_domain::review::ReviewEvent;
use aether_domain::server::ServerEvent;
use aether_domain::user::UserEvent;
use aether_domain::{AvatarUrl, ChannelId, ConversationName, Role, ServerId, StatusText, UserId};
use aether_schemas::{EventEnvelope, LoggedEvent};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use crate::sql::{ApplyError, SqlWrite};

use crate::projection::{Projection, ProjectionError};
use crate::rows::{ServerEventData, ServerEventKind, ServerEventRow};
use crate::updates::Update;

#[derive(Debug, Default)]
pub struct CatalogProjection;

impl CatalogProjection {
    pub const NAME: &'static str = "catalog";
}

#[async_trait]
impl Projection for CatalogProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn tables(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("users", "SELECT * FROM users ORDER BY id"),
            ("servers", "SELECT * FROM servers ORDER BY id"),
            ("channels", "SELECT * FROM channels ORDER BY id"),
            (
                "members",
                "SELECT * FROM members ORDER BY server_id, user_id",
            ),
            ("invites", "SELECT * FROM invites ORDER BY code"),
            (
                "blocks",
                "SELECT * FROM blocks ORDER BY user_id, blocked_id",
            ),
            ("conversations", "SELECT * FROM conversations ORDER BY id"),
            (
                "conversation_participants",
                "SELECT * FROM conversation_participants ORDER BY conversation_id, user_id",
            ),
            (
                "server_events",
                "SELECT * FROM server_events ORDER BY server_id, seq",
            ),
        ]
    }

    async fn apply(
        &self,
        tx: &mut SqliteConnection,
        event: &LoggedEvent,
        updates: &mut Vec<Update>,
    ) -> Result<(), ProjectionError> {
        apply_catalog_event(tx, &event.envelope, event.position, updates)
            .await
            .map_err(|error| error.for_event(event))
    }
}

/// Applies one catalog event through `tx`, whichever SQL store it belongs to. `order` ranks a
/// server's channels and members (any number that grows with the server's history).
pub async fn apply_catalog_event(
    tx: &mut dyn SqlWrite,
    envelope: &EventEnvelope,
    order: i64,
    updates: &mut Vec<Update>,
) -> Result<(), ApplyError> {
    let decode = |e: &dyn std::fmt::Display| ApplyError::decode(envelope, e);
    match envelope.aggregate_type.as_str() {
        "User" => {
            let user: UserEvent = envelope.decode().map_err(|e| decode(&e))?;
            apply_user(tx, &envelope.aggregate_id, user).await?;
        }
        "Server" => {
            let server = ServerId::parse(&envelope.aggregate_id).map_err(|e| decode(&e))?;
            let event: ServerEvent = envelope.decode().map_err(|e| decode(&e))?;
            let at = envelope.occurred_at;
            let actor = envelope
                .actor
                .as_deref()
                .and_then(|a| UserId::parse(a).ok());
            apply_server(tx, server, order, event, (at, actor), updates).await?;
        }
        "MessageReview" => {
            let event: ReviewEvent = envelope.decode().map_err(|e| decode(&e))?;
            apply_review(tx, event, envelope.occurred_at, updates).await?;
        }
        "ChannelPins" => {
            let event: PinsEvent = envelope.decode().map_err(|e| decode(&e))?;
            apply_pins(tx, event, envelope.occurred_at, updates).await?;
        }
        "Conversation" => {
            let event: ConversationEvent = envelope.decode().map_err(|e| decode(&e))?;
            apply_conversation(tx, event, updates).await?;
        }
        _ => {}
    }
    Ok(())
}

async fn apply_conversation(
    tx: &mut dyn SqlWrite,
    event: ConversationEvent,
    updates: &mut Vec<Update>,
) -> Result<(), sqlx::Error> {
    match event {
        ConversationEvent::ConversationOpened {
            conversation_id,
            opened_by,
            participant_ids,
            opened_at,
        } => {
            let id = conversation_id.to_string();
            tx.write(
                "INSERT INTO conversations (id, opened_by, opened_at, is_group, owner_id) \
                 VALUES ($1, $2, $3, $4, $2)",
                vec![
                    id.as_str().into(),
                    opened_by.to_string().into(),
                    opened_at.into(),
                    (participant_ids.len() > 2).into(),
                ],
            )
            .await?;
            add_participants(tx, &id, &participant_ids).await?;
            updates.push(Update::ConversationOpened {
                conversation_id,
                opened_by,
                participant_ids,
                opened_at,
            });
        }
        ConversationEvent::ParticipantsAdded {
            conversation_id,
            user_ids,
            participant_ids,
            ..
        } => {
            add_participants(tx, &conversation_id.to_string(), &user_ids).await?;
            updates.push(Update::ConversationChanged {
                conversation_id,
                participant_ids,
                removed: None,
            });
        }
        ConversationEvent::ParticipantRemoved {
            conversation_id,
            user_id,
            participant_ids,
            owner_id,
            ..
        } => {
            let id = conversation_id.to_string();
            tx.write(
                "DELETE FROM conversation_participants WHERE conversation_id = $1 AND user_id = $2",
                vec![id.as_str().into(), user_id.to_string().into()],
            )
            .await?;
            tx.write(
                "UPDATE conversations SET owner_id = $2 WHERE id = $1",
                vec![id.as_str().into(), owner_id.map(|u| u.to_string()).into()],
            )
            .await?;
            updates.push(Update::ConversationChanged {
                conversation_id,
                participant_ids,
                removed: Some(user_id),
            });
        }
        ConversationEvent::ConversationRenamed {
            conversation_id,
            name,
            participant_ids,
            ..
        } => {
            tx.write(
                "UPDATE conversations SET name = $2 WHERE id = $1",
                vec![
                    conversation_id.to_string().into(),
                    name.map(ConversationName::into_inner).into(),
                ],
            )
            .await?;
            updates.push(Update::ConversationChanged {
                conversation_id,
                participant_ids,
                removed: None,
            });
        }
    }
    Ok(())
}

async fn add_participants(
    tx: &mut dyn SqlWrite,
    conversation_id: &str,
    users: &[UserId],
) -> Result<(), sqlx::Error> {
    for user in users {
        tx.write(
            "INSERT INTO conversation_participants (conversation_id, user_id) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
            vec![conversation_id.into(), user.to_string().into()],
        )
        .await?;
    }
    Ok(())
}

async fn apply_user(
    tx: &mut dyn SqlWrite,
    user_id: &str,
    event: UserEvent,
) -> Result<(), sqlx::Error> {
    match event {
        UserEvent::UserRegistered {
            username,
            display_name,
            registered_at,
            ..
        } => {
            tx.write(
                "INSERT INTO users (id, username, display_name, registered_at) \
                 VALUES ($1, $2, $3, $4)",
                vec![
                    user_id.into(),
                    username.as_str().into(),
                    display_name.as_str().into(),
                    registered_at.into(),
                ],
            )
            .await
        }
        UserEvent::ProfileChanged {
            display_name,
            avatar_url,
            status_text,
            ..
        } => {
            tx.write(
                "UPDATE users SET display_name = $1, avatar_url = $2, status_text = $3 \
                 WHERE id = $4",
                vec![
                    display_name.as_str().into(),
                    avatar_url.map(AvatarUrl::into_inner).into(),
                    status_text.map(StatusText::into_inner).into(),
                    user_id.into(),
                ],
            )
            .await
        }
        UserEvent::UserBlocked {
            blocked,
            blocked_at,
        } => {
            tx.write(
                "INSERT INTO blocks (user_id, blocked_id, blocked_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
                vec![
                    user_id.into(),
                    blocked.to_string().into(),
                    blocked_at.into(),
                ],
            )
            .await
        }
        UserEvent::UserUnblocked { unblocked, .. } => {
            tx.write(
                "DELETE FROM blocks WHERE user_id = $1 AND blocked_id = $2",
                vec![user_id.into(), unblocked.to_string().into()],
            )
            .await
        }
        UserEvent::AllSessionsEnded { .. }
        | UserEvent::PasswordChanged { .. }
        | UserEvent::LoginFailed { .. }
        | UserEvent::ExternalIdentityLinked { .. } => Ok(()),
    }
}

/// A pin in a server's channel is news of that server (`serverEvents`); a pin in a
/// conversation, or in a channel of a deleted server, is nobody's server news.
async fn apply_pins(
    tx: &mut dyn SqlWrite,
    event: PinsEvent,
    at: DateTime<Utc>,
    updates: &mut Vec<Update>,
) -> Result<(), ApplyError> {
    let (kind, channel_id, message_id, actor) = match event {
        PinsEvent::MessagePinned {
            channel_id,
            message_id,
            pinned_by,
            ..
        } => (
            ServerEventKind::MessagePinned,
            channel_id,
            message_id,
            pinned_by,
        ),
        PinsEvent::MessageUnpinned {
            channel_id,
            message_id,
            unpinned_by,
            ..
        } => (
            ServerEventKind::MessageUnpinned,
            channel_id,
            message_id,
            unpinned_by,
        ),
    };
    let data = ServerEventData {
        actor_id: Some(actor),
        message_id: Some(message_id),
        ..ServerEventData::default()
    };
    announce_in_channel(tx, channel_id, kind, data, at, updates).await
}

/// Numbers `kind` as the next event of the server that owns `channel_id` (nothing when no
/// server's channel has that id) and publishes it.
async fn announce_in_channel(
    tx: &mut dyn SqlWrite,
    channel_id: ChannelId,
    kind: ServerEventKind,
    data: ServerEventData,
    at: DateTime<Utc>,
    updates: &mut Vec<Update>,
) -> Result<(), ApplyError> {
    let json = serde_json::to_string(&data).unwrap_or_else(|_| "{}".to_owned());
    let row = tx
        .fetch_optional(
            "INSERT INTO server_events (server_id, seq, kind, channel_id, private, data, \
             occurred_at) \
             SELECT c.server_id, COALESCE((SELECT MAX(e.seq) FROM server_events e \
             WHERE e.server_id = c.server_id), 0) + 1, $2, c.id, c.private, $3, $4 \
             FROM channels c WHERE c.id = $1 \
             RETURNING server_id, seq, private",
            vec![
                channel_id.to_string().into(),
                kind_name(kind).into(),
                json.into(),
                at.into(),
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(());
    };
    updates.push(Update::Server(ServerEventRow {
        server_id: crate::rows::parse_id(&row, "server_id", ServerId::parse)?,
        seq: row.get("seq")?,
        kind,
        channel_id: Some(channel_id),
        private: row.get("private")?,
        data,
        occurred_at: at,
    }));
    Ok(())
}

/// Numbers `kind` as the next event of `server` (not about one channel) and publishes it.
async fn announce(
    tx: &mut dyn SqlWrite,
    to: Newsroom,
    kind: ServerEventKind,
    data: ServerEventData,
    at: DateTime<Utc>,
    updates: &mut Vec<Update>,
) -> Result<(), ApplyError> {
    let json = serde_json::to_string(&data).unwrap_or_else(|_| "{}".to_owned());
    let row = tx
        .fetch_optional(
            "INSERT INTO server_events (server_id, seq, kind, channel_id, private, data, \
             occurred_at) \
             SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6 \
             FROM server_events WHERE server_id = $1 \
             RETURNING seq",
            vec![
                to.server.to_string().into(),
                kind_name(kind).into(),
                to.channel.map(|c| c.to_string()).into(),
                to.moderators_only.into(),
                json.into(),
                at.into(),
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(());
    };
    updates.push(Update::Server(ServerEventRow {
        server_id: to.server,
        seq: row.get("seq")?,
        kind,
        channel_id: to.channel,
        private: to.moderators_only,
        data,
        occurred_at: at,
    }));
    Ok(())
}

/// Whom a server's news is for: every member, or (`moderators_only`) those who may see private
/// channels and moderate; about one channel or the server.
struct Newsroom {
    server: ServerId,
    channel: Option<ChannelId>,
    moderators_only: bool,
}

impl Newsroom {
    fn everyone(server: ServerId) -> Self {
        Self {
            server,
            channel: None,
            moderators_only: false,
        }
    }
}

/// Moderation news of a server's message, for its moderators (`serverEvents`).
async fn apply_review(
    tx: &mut dyn SqlWrite,
    event: ReviewEvent,
    at: DateTime<Utc>,
    updates: &mut Vec<Update>,
) -> Result<(), ApplyError> {
    use ServerEventKind as K;
    let (kind, actor, reason) = match &event {
        ReviewEvent::MessageFlagged { reason, .. } => (K::MessageFlagged, None, reason.clone()),
        ReviewEvent::MessageReported {
            reported_by,
            reason,
            ..
        } => (K::MessageReported, Some(*reported_by), reason.to_string()),
        ReviewEvent::MessageHidden {
            hidden_by, reason, ..
        } => (K::MessageHidden, *hidden_by, reason.clone()),
        ReviewEvent::MessageRestored {
            restored_by,
            reason,
            ..
        } => (K::MessageRestored, Some(*restored_by), reason.to_string()),
        ReviewEvent::FlagDismissed {
            dismissed_by,
            reason,
            ..
        } => (K::FlagDismissed, Some(*dismissed_by), reason.to_string()),
    };
    let to = Newsroom {
        server: event.server_id(),
        channel: Some(event.channel_id()),
        moderators_only: true,
    };
    let data = ServerEventData {
        user_id: Some(event.author_id()),
        actor_id: actor,
        message_id: Some(event.message_id()),
        reason: Some(reason),
        ..ServerEventData::default()
    };
    announce(tx, to, kind, data, at, updates).await
}

fn kind_name(kind: ServerEventKind) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{kind:?}"),
    }
}

/// The server event `event` announces to members, if any (invites and unbans are not news).
fn news_of(event: &ServerEvent) -> Option<(ServerEventKind, Option<ChannelId>, ServerEventData)> {
    use ServerEventKind as K;
    let none = ServerEventData::default;
    let member = |user_id: UserId| ServerEventData {
        user_id: Some(user_id),
        ..none()
    };
    Some(match event {
        ServerEvent::ServerCreated { .. }
        | ServerEvent::InviteCreated { .. }
        | ServerEvent::InviteRevoked { .. }
        | ServerEvent::UserUnbanned { .. }
        | ServerEvent::ContentPolicyChanged { .. }
        | ServerEvent::ModerationThresholdChanged { .. } => return None,
        ServerEvent::ServerRenamed { name } => (
            K::ServerRenamed,
            None,
            ServerEventData {
                name: Some(name.to_string()),
                ..none()
            },
        ),
        ServerEvent::ServerDeleted { deleted_by, .. } => (
            K::ServerDeleted,
            None,
            ServerEventData {
                actor_id: Some(*deleted_by),
                ..none()
            },
        ),
        ServerEvent::OwnershipTransferred {
            previous_owner_id,
            new_owner_id,
            ..
        } => (
            K::OwnershipTransferred,
            None,
            ServerEventData {
                user_id: Some(*new_owner_id),
                actor_id: Some(*previous_owner_id),
                role: Some(Role::Owner),
                ..none()
            },
        ),
        ServerEvent::ChannelCreated {
            channel_id, name, ..
        } => (
            K::ChannelCreated,
            Some(*channel_id),
            ServerEventData {
                name: Some(name.to_string()),
                ..none()
            },
        ),
        ServerEvent::ChannelRenamed { channel_id, name } => (
            K::ChannelRenamed,
            Some(*channel_id),
            ServerEventData {
                name: Some(name.to_string()),
                ..none()
            },
        ),
        ServerEvent::ChannelArchived { channel_id } => {
            (K::ChannelArchived, Some(*channel_id), none())
        }
        ServerEvent::ChannelUnarchived { channel_id } => {
            (K::ChannelUnarchived, Some(*channel_id), none())
        }
        ServerEvent::ChannelTopicChanged { channel_id, topic } => (
            K::ChannelTopicChanged,
            Some(*channel_id),
            ServerEventData {
                topic: topic.as_ref().map(|t| t.to_string()),
                ..none()
            },
        ),
        ServerEvent::ChannelMoved {
            channel_id,
            category,
            order,
        } => (
            K::ChannelMoved,
            Some(*channel_id),
            ServerEventData {
                category: category.as_ref().map(|c| c.to_string()),
                position: order
                    .iter()
                    .position(|id| id == channel_id)
                    .and_then(|p| i64::try_from(p).ok()),
                ..none()
            },
        ),
        ServerEvent::MemberJoined { user_id, role, .. } => (
            K::MemberJoined,
            None,
            ServerEventData {
                role: Some(*role),
                ..member(*user_id)
            },
        ),
        ServerEvent::MemberLeft { user_id } => (K::MemberLeft, None, member(*user_id)),
        ServerEvent::MemberRemoved {
            user_id,
            removed_by,
            ..
        } => (
            K::MemberRemoved,
            None,
            ServerEventData {
                actor_id: Some(*removed_by),
                ..member(*user_id)
            },
        ),
        ServerEvent::UserBanned {
            user_id, banned_by, ..
        } => (
            K::MemberBanned,
            None,
            ServerEventData {
                actor_id: Some(*banned_by),
                ..member(*user_id)
            },
        ),
        ServerEvent::MemberRoleChanged { user_id, role, .. } => (
            K::MemberRoleChanged,
            None,
            ServerEventData {
                role: Some(*role),
                ..member(*user_id)
            },
        ),
    })
}

async fn apply_server(
    tx: &mut dyn SqlWrite,
    server: ServerId,
    order: i64,
    event: ServerEvent,
    (at, actor): (DateTime<Utc>, Option<UserId>),
    updates: &mut Vec<Update>,
) -> Result<(), ApplyError> {
    let news = news_of(&event);
    let deleted = matches!(event, ServerEvent::ServerDeleted { .. });
    // The news of a deletion is told before the rows go, so that it is numbered while the
    // server's events are; everything else after its rows are written.
    if deleted {
        if let Some((kind, _, data)) = news.clone() {
            announce(tx, Newsroom::everyone(server), kind, data, at, updates).await?;
        }
    }
    apply_server_rows(tx, server, order, event, updates).await?;
    if let Some((kind, channel, mut data)) = news.filter(|_| !deleted) {
        if data.actor_id.is_none() {
            data.actor_id = actor;
        }
        match channel {
            Some(channel) => announce_in_channel(tx, channel, kind, data, at, updates).await?,
            None => announce(tx, Newsroom::everyone(server), kind, data, at, updates).await?,
        }
    }
    Ok(())
}

async fn apply_server_rows(
    tx: &mut dyn SqlWrite,
    server: ServerId,
    order: i64,
    event: ServerEvent,
    updates: &mut Vec<Update>,
) -> Result<(), sqlx::Error> {
    let server_id = server.to_string();
    match event {
        ServerEvent::ServerCreated {
            name,
            owner_id,
            created_at,
            ..
        } => {
            tx.write(
                "INSERT INTO servers (id, name, owner_id, created_at) VALUES ($1, $2, $3, $4)",
                vec![
                    server_id.as_str().into(),
                    name.as_str().into(),
                    owner_id.to_string().into(),
                    created_at.into(),
                ],
            )
            .await?;
            insert_member(tx, &server_id, owner_id, Role::Owner, created_at, order).await?;
        }
        ServerEvent::ServerRenamed { name } => {
            tx.write(
                "UPDATE servers SET name = $1 WHERE id = $2",
                vec![name.as_str().into(), server_id.into()],
            )
            .await?;
        }
        ServerEvent::ChannelCreated {
            channel_id,
            name,
            kind,
            private,
        } => {
            tx.write(
                "INSERT INTO channels (id, server_id, name, kind, private, archived, position) \
                 VALUES ($1, $2, $3, $4, $5, FALSE, $6)",
                vec![
                    channel_id.to_string().into(),
                    server_id.into(),
                    name.as_str().into(),
                    kind.as_str().into(),
                    private.into(),
                    order.into(),
                ],
            )
            .await?;
        }
        ServerEvent::ChannelRenamed { channel_id, name } => {
            tx.write(
                "UPDATE channels SET name = $1 WHERE id = $2",
                vec![name.as_str().into(), channel_id.to_string().into()],
            )
            .await?;
        }
        ServerEvent::ChannelArchived { channel_id } => {
            tx.write(
                "UPDATE channels SET archived = TRUE WHERE id = $1",
                vec![channel_id.to_string().into()],
            )
            .await?;
        }
        ServerEvent::InviteCreated {
            code,
            created_by,
            max_uses,
            expires_at,
        } => {
            tx.write(
                "INSERT INTO invites (code, server_id, created_by, max_uses, uses, expires_at, \
                 revoked) VALUES ($1, $2, $3, $4, 0, $5, FALSE)",
                vec![
                    code.as_str().into(),
                    server_id.into(),
                    created_by.to_string().into(),
                    max_uses.map(i64::from).into(),
                    expires_at.into(),
                ],
            )
            .await?;
        }
        ServerEvent::InviteRevoked { code } => {
            tx.write(
                "UPDATE invites SET revoked = TRUE WHERE code = $1",
                vec![code.as_str().into()],
            )
            .await?;
        }
        ServerEvent::MemberJoined {
            user_id,
            role,
            invite_code,
            joined_at,
        } => {
            insert_member(tx, &server_id, user_id, role, joined_at, order).await?;
            tx.write(
                "UPDATE invites SET uses = uses + 1 WHERE code = $1",
                vec![invite_code.as_str().into()],
            )
            .await?;
            updates.push(membership(server, user_id, Some(role)));
        }
        ServerEvent::MemberLeft { user_id } => {
            tx.write(
                "DELETE FROM members WHERE server_id = $1 AND user_id = $2",
                vec![server_id.into(), user_id.to_string().into()],
            )
            .await?;
            updates.push(membership(server, user_id, None));
        }
        ServerEvent::MemberRemoved { user_id, .. } => {
            tx.write(
                "DELETE FROM members WHERE server_id = $1 AND user_id = $2",
                vec![server_id.into(), user_id.to_string().into()],
            )
            .await?;
            updates.push(membership(server, user_id, None));
        }
        ServerEvent::UserBanned {
            user_id,
            banned_by,
            reason,
            banned_at,
        } => {
            tx.write(
                "DELETE FROM members WHERE server_id = $1 AND user_id = $2",
                vec![server_id.clone().into(), user_id.to_string().into()],
            )
            .await?;
            tx.write(
                "INSERT INTO bans (server_id, user_id, banned_by, reason, banned_at) \
                 VALUES ($1, $2, $3, $4, $5)",
                vec![
                    server_id.into(),
                    user_id.to_string().into(),
                    banned_by.to_string().into(),
                    reason.map(|reason| reason.into_inner()).into(),
                    banned_at.into(),
                ],
            )
            .await?;
            updates.push(membership(server, user_id, None));
        }
        // Enforced by the write side (the rule stage, the model stage's outcome commands);
        // kept here so that members can read what is in force.
        ServerEvent::ContentPolicyChanged { policy, .. } => {
            tx.write(
                "UPDATE servers SET content_policy = $1 WHERE id = $2",
                vec![policy.as_str().into(), server_id.into()],
            )
            .await?;
        }
        ServerEvent::ModerationThresholdChanged { threshold, .. } => {
            tx.write(
                "UPDATE servers SET moderation_threshold = $1 WHERE id = $2",
                vec![threshold.value().to_string().into(), server_id.into()],
            )
            .await?;
        }
        ServerEvent::UserUnbanned { user_id, .. } => {
            tx.write(
                "DELETE FROM bans WHERE server_id = $1 AND user_id = $2",
                vec![server_id.into(), user_id.to_string().into()],
            )
            .await?;
        }
        ServerEvent::MemberRoleChanged { user_id, role, .. } => {
            tx.write(
                "UPDATE members SET role = $1 WHERE server_id = $2 AND user_id = $3",
                vec![
                    role.as_str().into(),
                    server_id.into(),
                    user_id.to_string().into(),
                ],
            )
            .await?;
            updates.push(membership(server, user_id, Some(role)));
        }
        ServerEvent::ServerDeleted { member_ids, .. } => {
            // The log keeps the history; the read model forgets the server, so every query
            // about it, its channels, members and invites answers as if it never existed.
            for table in [
                "DELETE FROM members WHERE server_id = $1",
                "DELETE FROM channels WHERE server_id = $1",
                "DELETE FROM invites WHERE server_id = $1",
                "DELETE FROM bans WHERE server_id = $1",
                "DELETE FROM servers WHERE id = $1",
            ] {
                tx.write(table, vec![server_id.as_str().into()]).await?;
            }
            for user_id in member_ids {
                updates.push(membership(server, user_id, None));
            }
        }
        ServerEvent::OwnershipTransferred {
            previous_owner_id,
            new_owner_id,
            ..
        } => {
            tx.write(
                "UPDATE servers SET owner_id = $1 WHERE id = $2",
                vec![new_owner_id.to_string().into(), server_id.as_str().into()],
            )
            .await?;
            for (user_id, role) in [
                (new_owner_id, Role::Owner),
                (previous_owner_id, Role::Admin),
            ] {
                tx.write(
                    "UPDATE members SET role = $1 WHERE server_id = $2 AND user_id = $3",
                    vec![
                        role.as_str().into(),
                        server_id.as_str().into(),
                        user_id.to_string().into(),
                    ],
                )
                .await?;
                updates.push(membership(server, user_id, Some(role)));
            }
        }
        ServerEvent::ChannelTopicChanged { channel_id, topic } => {
            tx.write(
                "UPDATE channels SET topic = $1 WHERE id = $2",
                vec![
                    topic.map(|topic| topic.into_inner()).into(),
                    channel_id.to_string().into(),
                ],
            )
            .await?;
        }
        ServerEvent::ChannelMoved {
            channel_id,
            category,
            order: channels,
        } => {
            tx.write(
                "UPDATE channels SET category = $1 WHERE id = $2",
                vec![
                    category.map(|category| category.into_inner()).into(),
                    channel_id.to_string().into(),
                ],
            )
            .await?;
            // Listed by position: the moved order from 0, and channels created later (whose
            // position is a larger sequence or log position) after them.
            for (position, id) in (0_i64..).zip(channels) {
                tx.write(
                    "UPDATE channels SET position = $1 WHERE id = $2 AND server_id = $3",
                    vec![
                        position.into(),
                        id.to_string().into(),
                        server_id.as_str().into(),
                    ],
                )
                .await?;
            }
        }
        ServerEvent::ChannelUnarchived { channel_id } => {
            tx.write(
                "UPDATE channels SET archived = FALSE WHERE id = $1",
                vec![channel_id.to_string().into()],
            )
            .await?;
        }
    }
    Ok(())
}

fn membership(server_id: ServerId, user_id: UserId, role: Option<Role>) -> Update {
    Update::Membership {
        server_id,
        user_id,
        role,
    }
}

async fn insert_member(
    tx: &mut dyn SqlWrite,
    server_id: &str,
    user_id: UserId,
    role: Role,
    joined_at: DateTime<Utc>,
    order: i64,
) -> Result<(), sqlx::Error> {
    tx.write(
        "INSERT INTO members (server_id, user_id, role, joined_at, position) \
         VALUES ($1, $2, $3, $4, $5)",
        vec![
            server_id.into(),
            user_id.to_string().into(),
            role.as_str().into(),
            joined_at.into(),
            order.into(),
        ],
    )
    .await
}
