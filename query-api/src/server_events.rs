//! `serverEvents`: what happens in one server (its channels, its members, the server itself,
//! pins in its channels), pushed from the projection update bus like `channelEvents`. The
//! catalog numbers each server's events from 1 with no gap, so a subscriber that resumes with a
//! cursor gets what it missed from the read model, then live ones, with no gap and no
//! duplicate.

use std::sync::Arc;

use aether_domain::{Permission, Role, ServerId, UserId};
use aether_projections::rows::{ServerEventKind, ServerEventRow};
use aether_projections::updates::{ChannelFeed, Heard};
use aether_projections::Update;
use async_graphql::{Enum, SimpleObject, ID};
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::error::{ApiError, ApiResult};
use crate::rate::SubscriptionPermit;
use crate::types::RoleGql;
use crate::ApiState;

/// Events read from the read model per catch-up query.
const CATCH_UP_PAGE: i64 = 500;

pub(crate) type ServerEventStream = BoxStream<'static, async_graphql::Result<ServerEvent>>;

#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "ServerEventKind")]
pub enum ServerEventKindGql {
    ServerRenamed,
    /// The server was deleted; the subscription ends after this event.
    ServerDeleted,
    /// `userId` owns the server now; `actorId`, the previous owner, is an ADMIN.
    OwnershipTransferred,
    ChannelCreated,
    ChannelRenamed,
    ChannelArchived,
    ChannelUnarchived,
    ChannelTopicChanged,
    /// The channel moved (`category`, `position`); the others' places may have changed too:
    /// re-read `server.channels`.
    ChannelMoved,
    MemberJoined,
    MemberLeft,
    MemberRemoved,
    MemberBanned,
    MemberRoleChanged,
    MessagePinned,
    MessageUnpinned,
    /// The model stage flagged a message (`messageId`, by `userId`; `reason` says why). This
    /// and the next four are told to MODERATOR and up only: the moderation queue, live.
    MessageFlagged,
    /// `actorId` reported the message, with `reason`.
    MessageReported,
    /// The message was hidden: by `actorId`, or by the model stage when `actorId` is null.
    MessageHidden,
    /// `actorId` restored the message.
    MessageRestored,
    /// `actorId` dismissed the flag or reports; the message stays as it is.
    FlagDismissed,
}

impl From<ServerEventKind> for ServerEventKindGql {
    fn from(kind: ServerEventKind) -> Self {
        use ServerEventKind as K;
        match kind {
            K::ServerRenamed => Self::ServerRenamed,
            K::ServerDeleted => Self::ServerDeleted,
            K::OwnershipTransferred => Self::OwnershipTransferred,
            K::ChannelCreated => Self::ChannelCreated,
            K::ChannelRenamed => Self::ChannelRenamed,
            K::ChannelArchived => Self::ChannelArchived,
            K::ChannelUnarchived => Self::ChannelUnarchived,
            K::ChannelTopicChanged => Self::ChannelTopicChanged,
            K::ChannelMoved => Self::ChannelMoved,
            K::MemberJoined => Self::MemberJoined,
            K::MemberLeft => Self::MemberLeft,
            K::MemberRemoved => Self::MemberRemoved,
            K::MemberBanned => Self::MemberBanned,
            K::MemberRoleChanged => Self::MemberRoleChanged,
            K::MessagePinned => Self::MessagePinned,
            K::MessageUnpinned => Self::MessageUnpinned,
            K::MessageFlagged => Self::MessageFlagged,
            K::MessageReported => Self::MessageReported,
            K::MessageHidden => Self::MessageHidden,
            K::MessageRestored => Self::MessageRestored,
            K::FlagDismissed => Self::FlagDismissed,
        }
    }
}

/// One event of a server. Which of the optional fields are set depends on `kind`.
#[derive(SimpleObject, Clone, Debug)]
pub struct ServerEvent {
    /// Pass as `after` to resume after this event.
    pub cursor: String,
    pub kind: ServerEventKindGql,
    pub server_id: ID,
    /// The channel the event is about (channel events and pins).
    pub channel_id: Option<ID>,
    /// The member the event is about (joined, left, removed, banned, new role, new owner).
    pub user_id: Option<ID>,
    /// Who did it, where the log names them.
    pub actor_id: Option<ID>,
    /// The member's role after the event.
    pub role: Option<RoleGql>,
    /// The server's or channel's new name.
    pub name: Option<String>,
    /// The channel's topic after `CHANNEL_TOPIC_CHANGED` (`null`: cleared).
    pub topic: Option<String>,
    /// The channel's category after `CHANNEL_MOVED` (`null`: none).
    pub category: Option<String>,
    /// The channel's place among the server's channels after `CHANNEL_MOVED`, from 0.
    pub position: Option<i64>,
    /// The message pinned, unpinned, or the moderation news is about.
    pub message_id: Option<ID>,
    /// Why, for moderation news.
    pub reason: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

impl From<ServerEventRow> for ServerEvent {
    fn from(row: ServerEventRow) -> Self {
        let id = |value: &dyn ToString| ID(value.to_string());
        Self {
            cursor: row.seq.to_string(),
            kind: row.kind.into(),
            server_id: id(&row.server_id),
            channel_id: row.channel_id.map(|c| id(&c)),
            user_id: row.data.user_id.map(|u| id(&u)),
            actor_id: row.data.actor_id.map(|u| id(&u)),
            role: row.data.role.map(RoleGql::from),
            name: row.data.name,
            topic: row.data.topic,
            category: row.data.category,
            position: row.data.position,
            message_id: row.data.message_id.map(|m| id(&m)),
            reason: row.data.reason,
            occurred_at: row.occurred_at,
        }
    }
}

/// Whether a member with `role` is told of `row`: news of a private channel only for those who
/// may see private channels, as `Server.channels` shows them.
fn visible(row: &ServerEventRow, role: Role) -> bool {
    !row.private || role.allows(Permission::ViewPrivateChannels)
}

/// The member's role after `row`, when `row` changed it.
fn role_after(row: &ServerEventRow, user: UserId, role: Role) -> Role {
    match row.kind {
        ServerEventKind::MemberRoleChanged if row.data.user_id == Some(user) => {
            row.data.role.unwrap_or(role)
        }
        ServerEventKind::OwnershipTransferred if row.data.user_id == Some(user) => Role::Owner,
        ServerEventKind::OwnershipTransferred if row.data.actor_id == Some(user) => Role::Admin,
        _ => role,
    }
}

async fn catch_up(
    state: &ApiState,
    server: ServerId,
    after: i64,
) -> ApiResult<Vec<ServerEventRow>> {
    let mut events = Vec::new();
    let mut last = after;
    loop {
        let page = state
            .read
            .server_events_after(server, last, CATCH_UP_PAGE)
            .await?;
        let full = page.len() as i64 == CATCH_UP_PAGE;
        if let Some(event) = page.last() {
            last = event.seq;
        }
        events.extend(page);
        if !full {
            return Ok(events);
        }
    }
}

fn lost_access() -> ApiError {
    ApiError::forbidden("you are no longer a member of this server")
}

/// The caller's role in `server`: `NOT_FOUND` for a server that does not exist (or was
/// deleted), `FORBIDDEN` for one they are not a member of.
pub(crate) async fn member_of(state: &ApiState, server: ServerId, user: UserId) -> ApiResult<Role> {
    if state.read.server(server).await?.is_none() {
        return Err(ApiError::not_found("server"));
    }
    state
        .read
        .member_role(server, user)
        .await?
        .ok_or_else(|| ApiError::forbidden("you are not a member of this server"))
}

/// The events of `server` the caller may see, after `after` (from the read model) or from now,
/// then live. Ends after `SERVER_DELETED`, and with `FORBIDDEN` once the caller is no longer
/// a member (after the event that says so, when it is theirs to see).
pub(crate) async fn server_events(
    state: ApiState,
    user: UserId,
    server: ServerId,
    after: Option<i64>,
    permit: SubscriptionPermit,
    mut updates: ChannelFeed,
) -> ApiResult<ServerEventStream> {
    // The feed was opened before membership was checked, so nothing in between is missed.
    let mut role = member_of(&state, server, user).await?;
    let start = match after {
        Some(cursor) => cursor,
        None => state.read.server_head(server).await?,
    };
    let shutdown = state.shutdown.clone();
    Ok(async_stream::stream! {
        let _permit = permit;
        let mut last = start;
        let mut pending = if after.is_some() {
            match catch_up(&state, server, last).await {
                Ok(events) => events,
                Err(error) => { yield Err(error.into()); return; }
            }
        } else {
            Vec::new()
        };
        // Set once the caller's membership ended: what is pending up to the event that ended
        // it is delivered, nothing after.
        let mut leaving = false;
        loop {
            for row in std::mem::take(&mut pending) {
                if row.seq <= last {
                    continue;
                }
                last = row.seq;
                role = role_after(&row, user, role);
                let ends = row.kind.ends_membership_of(row.data.user_id, user);
                let deleted = row.kind == ServerEventKind::ServerDeleted;
                if visible(&row, role) {
                    yield Ok(ServerEvent::from(row));
                }
                if deleted {
                    return;
                }
                if ends {
                    yield Err(lost_access().into());
                    return;
                }
            }
            if leaving {
                yield Err(lost_access().into());
                return;
            }
            let heard = tokio::select! {
                _ = shutdown.cancelled() => return,
                heard = updates.recv() => heard,
            };
            let update: Arc<Update> = match heard {
                Heard::Update(update) => update,
                Heard::MissedChannelUpdates(missed) => {
                    tracing::debug!(missed, %server, "server subscriber fell behind; catching up");
                    match catch_up(&state, server, last).await {
                        Ok(events) => pending = events,
                        Err(error) => { yield Err(error.into()); return; }
                    }
                    continue;
                }
                Heard::MissedMembership => {
                    match state.read.member_role(server, user).await {
                        Ok(Some(now)) => role = now,
                        Ok(None) => { yield Err(lost_access().into()); return; }
                        Err(error) => { yield Err(ApiError::from(error).into()); return; }
                    }
                    continue;
                }
                Heard::Closed => return,
            };
            match update.as_ref() {
                Update::Server(row) if row.server_id == server && row.seq > last => {
                    if row.seq > last + 1 {
                        // A gap: the read model has what this instance did not hear.
                        match catch_up(&state, server, last).await {
                            Ok(events) => pending = events,
                            Err(error) => { yield Err(error.into()); return; }
                        }
                        pending.retain(|event| event.seq < row.seq);
                    }
                    pending.push(row.clone());
                }
                Update::Membership { server_id, user_id, role: now } if *server_id == server && *user_id == user => {
                    match now {
                        Some(now) => role = *now,
                        None => {
                            // The event that ended the membership is in the read model (the
                            // update is published after its commit): deliver up to it.
                            match catch_up(&state, server, last).await {
                                Ok(mut events) => {
                                    match events.iter().position(|e| e.kind.ends_membership_of(e.data.user_id, user)) {
                                        Some(end) => events.truncate(end + 1),
                                        None => events.clear(),
                                    }
                                    pending = events;
                                }
                                Err(error) => { yield Err(error.into()); return; }
                            }
                            leaving = true;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    .boxed())
}
