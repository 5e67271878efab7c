//! The catalog read model in PostgreSQL: users, servers, channels, members and invites.

use aether_domain::server::ServerEvent;
use aether_domain::user::UserEvent;
use aether_domain::{Role, ServerId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{event_error, PgProjection};
use crate::stream::source::StreamEvent;
use crate::stream::store::StoreError;
use crate::updates::Update;

#[derive(Debug, Default)]
pub struct CatalogProjection;

impl CatalogProjection {
    pub const NAME: &'static str = "catalog";
}

#[async_trait]
impl PgProjection for CatalogProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn tables(&self) -> &'static str {
        r#"
CREATE TABLE IF NOT EXISTS users (
    id            TEXT        PRIMARY KEY,
    username      TEXT        NOT NULL UNIQUE,
    display_name  TEXT        NOT NULL,
    registered_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS servers (
    id         TEXT        PRIMARY KEY,
    name       TEXT        NOT NULL,
    owner_id   TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS channels (
    id        TEXT    PRIMARY KEY,
    server_id TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    private   BOOLEAN NOT NULL,
    archived  BOOLEAN NOT NULL DEFAULT false,
    sequence  BIGINT  NOT NULL
);
CREATE INDEX IF NOT EXISTS channels_by_server ON channels (server_id, sequence);
CREATE TABLE IF NOT EXISTS members (
    server_id TEXT        NOT NULL,
    user_id   TEXT        NOT NULL,
    role      TEXT        NOT NULL,
    joined_at TIMESTAMPTZ NOT NULL,
    sequence  BIGINT      NOT NULL,
    PRIMARY KEY (server_id, user_id)
);
CREATE INDEX IF NOT EXISTS members_by_user ON members (user_id);
CREATE TABLE IF NOT EXISTS invites (
    code       TEXT        PRIMARY KEY,
    server_id  TEXT        NOT NULL,
    created_by TEXT        NOT NULL,
    max_uses   INTEGER,
    uses       INTEGER     NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ,
    revoked    BOOLEAN     NOT NULL DEFAULT false
);
"#
    }

    fn dump_queries(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("users", "SELECT * FROM users ORDER BY id"),
            ("servers", "SELECT * FROM servers ORDER BY id"),
            ("channels", "SELECT * FROM channels ORDER BY id"),
            (
                "members",
                "SELECT * FROM members ORDER BY server_id, user_id",
            ),
            ("invites", "SELECT * FROM invites ORDER BY code"),
        ]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[(usize, &StreamEvent)],
        updates: &mut Vec<Update>,
    ) -> Result<(), StoreError> {
        for (index, event) in events {
            let Some(envelope) = event.envelope() else {
                continue;
            };
            let decode_error = |e: serde_json::Error| StoreError::Event {
                index: *index,
                reason: format!("{} cannot be decoded: {e}", envelope.event_type),
            };
            let aggregate = envelope.aggregate_id.as_str();
            let outcome = match envelope.aggregate_type.as_str() {
                "User" => apply_user(tx, aggregate, envelope.decode().map_err(decode_error)?).await,
                "Server" => {
                    let server = ServerId::parse(aggregate).map_err(|e| StoreError::Event {
                        index: *index,
                        reason: format!("server id {aggregate}: {e}"),
                    })?;
                    let change = envelope.decode().map_err(decode_error)?;
                    apply_server(tx, server, event.sequence(), change, updates).await
                }
                _ => Ok(()),
            };
            outcome.map_err(|e| event_error(*index, e))?;
        }
        Ok(())
    }
}

async fn apply_user(
    tx: &mut PgConnection,
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
            sqlx::query(
                "INSERT INTO users (id, username, display_name, registered_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(user_id)
            .bind(username.as_str())
            .bind(display_name.as_str())
            .bind(registered_at)
            .execute(&mut *tx)
            .await?;
        }
        UserEvent::ProfileChanged { display_name, .. } => {
            sqlx::query("UPDATE users SET display_name = $1 WHERE id = $2")
                .bind(display_name.as_str())
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

async fn apply_server(
    tx: &mut PgConnection,
    server: ServerId,
    sequence: i64,
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
            sqlx::query(
                "INSERT INTO servers (id, name, owner_id, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&server_id)
            .bind(name.as_str())
            .bind(owner_id.to_string())
            .bind(created_at)
            .execute(&mut *tx)
            .await?;
            insert_member(tx, &server_id, owner_id, Role::Owner, created_at, sequence).await?;
        }
        ServerEvent::ServerRenamed { name } => {
            sqlx::query("UPDATE servers SET name = $1 WHERE id = $2")
                .bind(name.as_str())
                .bind(&server_id)
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
                "INSERT INTO channels (id, server_id, name, kind, private, archived, sequence) \
                 VALUES ($1, $2, $3, $4, $5, false, $6)",
            )
            .bind(channel_id.to_string())
            .bind(&server_id)
            .bind(name.as_str())
            .bind(kind.as_str())
            .bind(private)
            .bind(sequence)
            .execute(&mut *tx)
            .await?;
        }
        ServerEvent::ChannelRenamed { channel_id, name } => {
            sqlx::query("UPDATE channels SET name = $1 WHERE id = $2")
                .bind(name.as_str())
                .bind(channel_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        ServerEvent::ChannelArchived { channel_id } => {
            sqlx::query("UPDATE channels SET archived = true WHERE id = $1")
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
                 revoked) VALUES ($1, $2, $3, $4, 0, $5, false)",
            )
            .bind(code.as_str())
            .bind(&server_id)
            .bind(created_by.to_string())
            .bind(max_uses.map(|uses| i32::try_from(uses).unwrap_or(i32::MAX)))
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        }
        ServerEvent::InviteRevoked { code } => {
            sqlx::query("UPDATE invites SET revoked = true WHERE code = $1")
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
            insert_member(tx, &server_id, user_id, role, joined_at, sequence).await?;
            sqlx::query("UPDATE invites SET uses = uses + 1 WHERE code = $1")
                .bind(invite_code.as_str())
                .execute(&mut *tx)
                .await?;
            updates.push(membership(server, user_id, Some(role)));
        }
        ServerEvent::MemberLeft { user_id } => {
            sqlx::query("DELETE FROM members WHERE server_id = $1 AND user_id = $2")
                .bind(&server_id)
                .bind(user_id.to_string())
                .execute(&mut *tx)
                .await?;
            updates.push(membership(server, user_id, None));
        }
        ServerEvent::MemberRoleChanged { user_id, role, .. } => {
            sqlx::query("UPDATE members SET role = $1 WHERE server_id = $2 AND user_id = $3")
                .bind(role.as_str())
                .bind(&server_id)
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
    tx: &mut PgConnection,
    server_id: &str,
    user_id: UserId,
    role: Role,
    joined_at: DateTime<Utc>,
    sequence: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO members (server_id, user_id, role, joined_at, sequence) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(server_id)
    .bind(user_id.to_string())
    .bind(role.as_str())
    .bind(joined_at)
    .bind(sequence)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
