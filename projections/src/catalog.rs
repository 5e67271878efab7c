//! The catalog read model: users, servers, channels, members, invites and direct
//! conversations. The statements are
//! shared by the SQLite store (embedded mode) and the PostgreSQL one (`stream::postgres`).

use aether_domain::conversation::ConversationEvent;
use aether_domain::server::ServerEvent;
use aether_domain::user::UserEvent;
use aether_domain::{Role, ServerId, UserId};
use aether_schemas::{EventEnvelope, LoggedEvent};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use crate::sql::{ApplyError, SqlWrite};

use crate::projection::{Projection, ProjectionError};
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
            ("conversations", "SELECT * FROM conversations ORDER BY id"),
            (
                "conversation_participants",
                "SELECT * FROM conversation_participants ORDER BY conversation_id, user_id",
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
            apply_server(tx, server, order, event, updates).await?;
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
    let ConversationEvent::ConversationOpened {
        conversation_id,
        opened_by,
        participant_ids,
        opened_at,
    } = event;
    let id = conversation_id.to_string();
    tx.write(
        "INSERT INTO conversations (id, opened_by, opened_at) VALUES ($1, $2, $3)",
        vec![
            id.as_str().into(),
            opened_by.to_string().into(),
            opened_at.into(),
        ],
    )
    .await?;
    for user in &participant_ids {
        tx.write(
            "INSERT INTO conversation_participants (conversation_id, user_id) VALUES ($1, $2)",
            vec![id.as_str().into(), user.to_string().into()],
        )
        .await?;
    }
    updates.push(Update::ConversationOpened {
        conversation_id,
        opened_by,
        participant_ids,
        opened_at,
    });
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
        UserEvent::ProfileChanged { display_name, .. } => {
            tx.write(
                "UPDATE users SET display_name = $1 WHERE id = $2",
                vec![display_name.as_str().into(), user_id.into()],
            )
            .await
        }
        UserEvent::AllSessionsEnded { .. }
        | UserEvent::LoginFailed { .. }
        | UserEvent::ExternalIdentityLinked { .. } => Ok(()),
    }
}

async fn apply_server(
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
