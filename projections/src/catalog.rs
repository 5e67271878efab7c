//! The catalog read model: users, servers, channels, members and invites.

use aether_domain::server::ServerEvent;
use aether_domain::user::UserEvent;
use aether_domain::{Role, ServerId, UserId};
use aether_schemas::LoggedEvent;
use async_trait::async_trait;
use sqlx::SqliteConnection;

use crate::runtime::{Projection, ProjectionError};
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

    async fn apply(
        &self,
        tx: &mut SqliteConnection,
        event: &LoggedEvent,
        updates: &mut Vec<Update>,
    ) -> Result<(), ProjectionError> {
        let envelope = &event.envelope;
        match envelope.aggregate_type.as_str() {
            "User" => {
                let user: UserEvent = envelope
                    .decode()
                    .map_err(|e| ProjectionError::decode(event, e))?;
                apply_user(tx, &envelope.aggregate_id, user).await
            }
            "Server" => {
                let server: ServerEvent = envelope
                    .decode()
                    .map_err(|e| ProjectionError::decode(event, e))?;
                apply_server(tx, event, server, updates).await
            }
            _ => Ok(()),
        }
    }
}

async fn apply_user(
    tx: &mut SqliteConnection,
    user_id: &str,
    event: UserEvent,
) -> Result<(), ProjectionError> {
    match event {
        UserEvent::UserRegistered {
            username,
            display_name,
            registered_at,
            ..
        } => {
            sqlx::query(
                "INSERT INTO users (id, username, display_name, registered_at) VALUES (?, ?, ?, ?)",
            )
            .bind(user_id)
            .bind(username.as_str())
            .bind(display_name.as_str())
            .bind(registered_at)
            .execute(&mut *tx)
            .await?;
        }
        UserEvent::ProfileChanged { display_name, .. } => {
            sqlx::query("UPDATE users SET display_name = ? WHERE id = ?")
                .bind(display_name.as_str())
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

async fn apply_server(
    tx: &mut SqliteConnection,
    event: &LoggedEvent,
    server_event: ServerEvent,
    updates: &mut Vec<Update>,
) -> Result<(), ProjectionError> {
    let server_id = event.envelope.aggregate_id.as_str();
    let server = ServerId::parse(server_id).map_err(|e| ProjectionError::decode(event, e))?;
    let position = event.position;
    match server_event {
        ServerEvent::ServerCreated {
            name,
            owner_id,
            created_at,
            ..
        } => {
            sqlx::query("INSERT INTO servers (id, name, owner_id, created_at) VALUES (?, ?, ?, ?)")
                .bind(server_id)
                .bind(name.as_str())
                .bind(owner_id.to_string())
                .bind(created_at)
                .execute(&mut *tx)
                .await?;
            insert_member(
                tx,
                server_id,
                &owner_id.to_string(),
                "OWNER",
                created_at,
                position,
            )
            .await?;
        }
        ServerEvent::ServerRenamed { name } => {
            sqlx::query("UPDATE servers SET name = ? WHERE id = ?")
                .bind(name.as_str())
                .bind(server_id)
                .execute(&mut *tx)
                .await?;
        }
        ServerEvent::ChannelCreated {
            channel_id,
            name,
            kind,
            private,
        } => {
            sqlx::query(
                "INSERT INTO channels (id, server_id, name, kind, private, archived, position) \
                 VALUES (?, ?, ?, ?, ?, 0, ?)",
            )
            .bind(channel_id.to_string())
            .bind(server_id)
            .bind(name.as_str())
            .bind(kind.as_str())
            .bind(private)
            .bind(position)
            .execute(&mut *tx)
            .await?;
        }
        ServerEvent::ChannelRenamed { channel_id, name } => {
            sqlx::query("UPDATE channels SET name = ? WHERE id = ?")
                .bind(name.as_str())
                .bind(channel_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        ServerEvent::ChannelArchived { channel_id } => {
            sqlx::query("UPDATE channels SET archived = 1 WHERE id = ?")
                .bind(channel_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        ServerEvent::InviteCreated {
            code,
            created_by,
            max_uses,
            expires_at,
        } => {
            sqlx::query(
                "INSERT INTO invites (code, server_id, created_by, max_uses, uses, expires_at, \
                 revoked) VALUES (?, ?, ?, ?, 0, ?, 0)",
            )
            .bind(code.as_str())
            .bind(server_id)
            .bind(created_by.to_string())
            .bind(max_uses)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        }
        ServerEvent::InviteRevoked { code } => {
            sqlx::query("UPDATE invites SET revoked = 1 WHERE code = ?")
                .bind(code.as_str())
                .execute(&mut *tx)
                .await?;
        }
        ServerEvent::MemberJoined {
            user_id,
            role,
            invite_code,
            joined_at,
        } => {
            insert_member(
                tx,
                server_id,
                &user_id.to_string(),
                role.as_str(),
                joined_at,
                position,
            )
            .await?;
            sqlx::query("UPDATE invites SET uses = uses + 1 WHERE code = ?")
                .bind(invite_code.as_str())
                .execute(&mut *tx)
                .await?;
            updates.push(membership(server, user_id, Some(role)));
        }
        ServerEvent::MemberLeft { user_id } => {
            sqlx::query("DELETE FROM members WHERE server_id = ? AND user_id = ?")
                .bind(server_id)
                .bind(user_id.to_string())
                .execute(&mut *tx)
                .await?;
            updates.push(membership(server, user_id, None));
        }
        ServerEvent::MemberRoleChanged { user_id, role, .. } => {
            sqlx::query("UPDATE members SET role = ? WHERE server_id = ? AND user_id = ?")
                .bind(role.as_str())
                .bind(server_id)
                .bind(user_id.to_string())
                .execute(&mut *tx)
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
    tx: &mut SqliteConnection,
    server_id: &str,
    user_id: &str,
    role: &str,
    joined_at: chrono::DateTime<chrono::Utc>,
    position: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO members (server_id, user_id, role, joined_at, position) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(server_id)
    .bind(user_id)
    .bind(role)
    .bind(joined_at)
    .bind(position)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
