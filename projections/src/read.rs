//! Queries over the read models. Every method answers from projected state only; callers decide
//! what the asking user may see, with [`ReadModels::channel_access`] and
//! [`ReadModels::member_role`].

use aether_domain::{ChannelAccess, ChannelFacts, ChannelId, MessageId, Role, ServerId, UserId};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use crate::receipts::{ReadStateRow, READ_POINTER_QUERY, UNREAD_QUERY};
use crate::rows::{
    parse_id, parse_role, BanRow, ChannelEventKind, ChannelEventRow, ChannelRow, ConversationRow,
    MemberRow, MessageRow, RowError, ServerRow, UserRow,
};
use crate::timeline::MESSAGE_COLUMNS;

/// Which end of a channel's history a page is taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageFrom {
    /// The oldest messages after the cursor.
    Start,
    /// The newest messages before the cursor.
    End,
}

#[derive(Clone, Debug)]
pub struct ReadModels {
    pool: SqlitePool,
}

fn all<T>(
    rows: &[SqliteRow],
    map: fn(&SqliteRow) -> Result<T, RowError>,
) -> Result<Vec<T>, RowError> {
    rows.iter().map(map).collect()
}

impl ReadModels {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn user(&self, id: UserId) -> Result<Option<UserRow>, RowError> {
        let row = sqlx::query("SELECT id, username, display_name FROM users WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(UserRow::from_row).transpose()
    }

    /// The servers `user` is a member of, oldest membership first.
    pub async fn servers_of(&self, user: UserId) -> Result<Vec<ServerRow>, RowError> {
        let rows = sqlx::query(
            "SELECT s.id, s.name, s.owner_id FROM servers s JOIN members m ON m.server_id = s.id \
             WHERE m.user_id = ? ORDER BY m.position",
        )
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await?;
        all(&rows, ServerRow::from_row)
    }

    pub async fn server(&self, id: ServerId) -> Result<Option<ServerRow>, RowError> {
        let row = sqlx::query("SELECT id, name, owner_id FROM servers WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(ServerRow::from_row).transpose()
    }

    pub async fn member_role(
        &self,
        server: ServerId,
        user: UserId,
    ) -> Result<Option<Role>, RowError> {
        let row = sqlx::query("SELECT role FROM members WHERE server_id = ? AND user_id = ?")
            .bind(server.to_string())
            .bind(user.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(parse_role).transpose()
    }

    pub async fn channels(&self, server: ServerId) -> Result<Vec<ChannelRow>, RowError> {
        let rows = sqlx::query(
            "SELECT id, server_id, name, kind, private, archived FROM channels \
             WHERE server_id = ? ORDER BY position",
        )
        .bind(server.to_string())
        .fetch_all(&self.pool)
        .await?;
        all(&rows, ChannelRow::from_row)
    }

    pub async fn channel(&self, id: ChannelId) -> Result<Option<ChannelRow>, RowError> {
        let row = sqlx::query(
            "SELECT id, server_id, name, kind, private, archived FROM channels WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ChannelRow::from_row).transpose()
    }

    /// `user`'s standing in a channel, from the catalog: the same rule the write side applies.
    pub async fn channel_access(
        &self,
        channel: &ChannelRow,
        user: UserId,
    ) -> Result<ChannelAccess, RowError> {
        Ok(match self.member_role(channel.server_id, user).await? {
            None => ChannelAccess::NotAMember {
                server_id: channel.server_id,
            },
            Some(role) => ChannelAccess::Member {
                server_id: channel.server_id,
                role,
                channel: ChannelFacts {
                    kind: channel.kind,
                    private: channel.private,
                    archived: channel.archived,
                },
            },
        })
    }

    /// A direct conversation and its participants.
    pub async fn conversation(&self, id: ChannelId) -> Result<Option<ConversationRow>, RowError> {
        let Some(row) =
            sqlx::query("SELECT id, opened_by, opened_at FROM conversations WHERE id = ?")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let participants = sqlx::query(
            "SELECT user_id FROM conversation_participants WHERE conversation_id = ? \
             ORDER BY user_id",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(ConversationRow {
            id: parse_id(&row, "id", ChannelId::parse)?,
            opened_by: parse_id(&row, "opened_by", UserId::parse)?,
            participants: all(&participants, |row| parse_id(row, "user_id", UserId::parse))?,
            opened_at: row.try_get("opened_at")?,
        }))
    }

    /// The ids of the conversations `user` is in, most recently opened first, at most `limit`.
    pub async fn conversations_of(
        &self,
        user: UserId,
        limit: i64,
    ) -> Result<Vec<ChannelId>, RowError> {
        let rows = sqlx::query(
            "SELECT c.id FROM conversations c \
             JOIN conversation_participants p ON p.conversation_id = c.id \
             WHERE p.user_id = ? ORDER BY c.opened_at DESC, c.id LIMIT ?",
        )
        .bind(user.to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        all(&rows, |row| parse_id(row, "id", ChannelId::parse))
    }

    /// Members in join order: `limit` of them after the first `offset`.
    pub async fn members(
        &self,
        server: ServerId,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<MemberRow>, RowError> {
        let rows = sqlx::query(
            "SELECT server_id, user_id, role, joined_at FROM members WHERE server_id = ? \
             ORDER BY position LIMIT ? OFFSET ?",
        )
        .bind(server.to_string())
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        all(&rows, MemberRow::from_row)
    }

    /// The bans in force in `server`, newest first, at most `limit`.
    pub async fn bans(&self, server: ServerId, limit: i64) -> Result<Vec<BanRow>, RowError> {
        let rows = sqlx::query(
            "SELECT user_id, banned_by, reason, banned_at FROM bans WHERE server_id = ? \
             ORDER BY banned_at DESC, user_id LIMIT ?",
        )
        .bind(server.to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        all(&rows, BanRow::from_row)
    }

    pub async fn member_count(&self, server: ServerId) -> Result<i64, RowError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM members WHERE server_id = ?")
                .bind(server.to_string())
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// `user`'s read pointer in `channel` and what is unread after it.
    pub async fn read_state(
        &self,
        user: UserId,
        channel: ChannelId,
    ) -> Result<ReadStateRow, RowError> {
        let pointer = sqlx::query(READ_POINTER_QUERY)
            .bind(user.to_string())
            .bind(channel.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let (last_read_seq, last_read) = match &pointer {
            Some(row) => (
                row.try_get::<i64, _>("last_read_seq")?,
                Some((
                    parse_id(row, "message_id", MessageId::parse)?,
                    row.try_get("read_at")?,
                )),
            ),
            None => (0, None),
        };
        let counts = sqlx::query(UNREAD_QUERY)
            .bind(channel.to_string())
            .bind(last_read_seq)
            .bind(user.to_string())
            .bind(channel.to_string())
            .bind(last_read_seq)
            .bind(user.to_string())
            .fetch_one(&self.pool)
            .await?;
        Ok(ReadStateRow {
            user_id: user,
            channel_id: channel,
            last_read,
            last_read_seq,
            unread: counts.try_get("unread")?,
            mentions: counts.try_get("mentions")?,
        })
    }

    pub async fn message(&self, id: MessageId) -> Result<Option<MessageRow>, RowError> {
        let row = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(MessageRow::from_row).transpose()
    }

    /// A page of a channel's messages strictly between `after` and `before` (message sequence
    /// numbers), `limit` long, taken from `from`, returned oldest first.
    pub async fn messages(
        &self,
        channel: ChannelId,
        after: Option<i64>,
        before: Option<i64>,
        limit: i64,
        from: PageFrom,
    ) -> Result<Vec<MessageRow>, RowError> {
        let order = match from {
            PageFrom::Start => "ASC",
            PageFrom::End => "DESC",
        };
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = ? AND channel_seq > ? \
             AND channel_seq < ? ORDER BY channel_seq {order} LIMIT ?"
        ))
        .bind(channel.to_string())
        .bind(after.unwrap_or(0))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut page = all(&rows, MessageRow::from_row)?;
        if from == PageFrom::End {
            page.reverse();
        }
        Ok(page)
    }

    /// The channel's changes after `after`, in order, each with its message as it stands now
    /// (a deleted message has no body, whatever the change was).
    pub async fn channel_events_after(
        &self,
        channel: ChannelId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ChannelEventRow>, RowError> {
        let columns = MESSAGE_COLUMNS
            .split(", ")
            .map(|column| format!("m.{column}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT e.seq, e.kind, {columns} FROM channel_events e \
             JOIN messages m ON m.id = e.message_id \
             WHERE e.channel_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?"
        ))
        .bind(channel.to_string())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                use sqlx::Row;
                let kind: String = row.try_get("kind")?;
                Ok(ChannelEventRow {
                    channel_id: channel,
                    seq: row.try_get("seq")?,
                    kind: ChannelEventKind::parse(&kind).ok_or(RowError::Malformed {
                        column: "kind",
                        value: kind,
                    })?,
                    message: MessageRow::from_row(row)?,
                })
            })
            .collect()
    }

    /// The last change number of a channel (0 if none).
    pub async fn channel_head(&self, channel: ChannelId) -> Result<i64, RowError> {
        let head: Option<i64> =
            sqlx::query_scalar("SELECT last_event FROM channel_heads WHERE channel_id = ?")
                .bind(channel.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(head.unwrap_or(0))
    }
}
