//! The GraphQL object types of the API (introspect the schema, or open GraphiQL at `/graphql`,
//! for the whole of it).

use aether_commands::service::{
    ChannelRecord, ConversationRecord, InviteRecord, MessageRecord, ServerRecord, UserRecord,
};
use aether_domain::message::ForwardOrigin as ForwardOriginRow;
use aether_domain::message::Reaction as ReactionRow;
use aether_domain::MessageId;
use aether_domain::{ChannelId, ServerId, UserId};
use aether_projections::read::PageFrom;
use aether_projections::receipts::ReadStateRow;
use aether_projections::rows::{
    ChannelEventKind, ChannelEventRow, ChannelRow, ConversationRow, EditRow, MessageRow, ReviewRow,
    ServerRow, ThreadSummary as ThreadSummaryRow, UserRow,
};
use async_graphql::{ComplexObject, Context, Enum, Interface, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};

use crate::ephemeral::PresenceStatus;
use crate::error::{gql, ApiError, ApiResult};
use crate::moderation::{ContentPolicyGql, MessageModeration};
use crate::{ApiState, Caller};

pub(crate) fn state<'a>(ctx: &Context<'a>) -> &'a ApiState {
    ctx.data_unchecked::<ApiState>()
}

pub(crate) fn caller(ctx: &Context<'_>) -> Option<UserId> {
    ctx.data_opt::<Caller>().and_then(|caller| caller.0)
}

pub(crate) fn require_caller(ctx: &Context<'_>) -> ApiResult<UserId> {
    caller(ctx).ok_or_else(ApiError::unauthenticated)
}

#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "Role")]
pub enum RoleGql {
    Owner,
    Admin,
    Moderator,
    Member,
    Guest,
}

impl From<aether_domain::Role> for RoleGql {
    fn from(role: aether_domain::Role) -> Self {
        use aether_domain::Role::*;
        match role {
            Owner => Self::Owner,
            Admin => Self::Admin,
            Moderator => Self::Moderator,
            Member => Self::Member,
            Guest => Self::Guest,
        }
    }
}

impl From<RoleGql> for aether_domain::Role {
    fn from(role: RoleGql) -> Self {
        use aether_domain::Role::*;
        match role {
            RoleGql::Owner => Owner,
            RoleGql::Admin => Admin,
            RoleGql::Moderator => Moderator,
            RoleGql::Member => Member,
            RoleGql::Guest => Guest,
        }
    }
}

#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "ChannelKind")]
pub enum ChannelKindGql {
    Text,
    Announcement,
    Voice,
}

impl From<aether_domain::ChannelKind> for ChannelKindGql {
    fn from(kind: aether_domain::ChannelKind) -> Self {
        use aether_domain::ChannelKind::*;
        match kind {
            Text => Self::Text,
            Announcement => Self::Announcement,
            Voice => Self::Voice,
        }
    }
}

impl From<ChannelKindGql> for aether_domain::ChannelKind {
    fn from(kind: ChannelKindGql) -> Self {
        use aether_domain::ChannelKind::*;
        match kind {
            ChannelKindGql::Text => Text,
            ChannelKindGql::Announcement => Announcement,
            ChannelKindGql::Voice => Voice,
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct User {
    pub id: ID,
    pub username: String,
    pub display_name: String,
    /// Where the user's picture is (an http or https URL they gave); `null` when they set none.
    /// Clients should load it as an image only, without sending credentials.
    pub avatar_url: Option<String>,
    /// What the user says about themselves now; `null` when they set none.
    pub status_text: Option<String>,
}

#[ComplexObject]
impl User {
    /// What the user shows as right now (a snapshot; the `presence` subscription tells what
    /// changes): `ONLINE` or `AWAY` while connected to any instance, `OFFLINE` otherwise.
    async fn presence(&self, ctx: &Context<'_>) -> PresenceStatus {
        match UserId::parse(&self.id) {
            Ok(user) => state(ctx).ephemeral.status_of(user),
            Err(_) => PresenceStatus::Offline,
        }
    }
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: ID(row.id.to_string()),
            username: row.username,
            display_name: row.display_name,
            avatar_url: row.avatar_url,
            status_text: row.status_text,
        }
    }
}

impl From<UserRecord> for User {
    fn from(record: UserRecord) -> Self {
        Self {
            id: ID(record.id.to_string()),
            username: record.username,
            display_name: record.display_name,
            avatar_url: record.avatar_url,
            status_text: record.status_text,
        }
    }
}

/// A user by id: from the catalog, or from the event store when the catalog has not caught up.
pub(crate) async fn load_user(state: &ApiState, id: UserId) -> ApiResult<User> {
    if let Some(row) = state.read.user(id).await? {
        return Ok(row.into());
    }
    state
        .commands
        .user(id)
        .await?
        .map(User::from)
        .ok_or_else(|| ApiError::not_found("user"))
}

/// The users `ids` name, in that order.
pub(crate) async fn load_users(state: &ApiState, ids: &[UserId]) -> ApiResult<Vec<User>> {
    let mut users = Vec::with_capacity(ids.len());
    for id in ids {
        users.push(load_user(state, *id).await?);
    }
    Ok(users)
}

#[derive(SimpleObject, Clone, Debug)]
pub struct AuthPayload {
    pub access_token: String,
    pub refresh_token: String,
    pub user: User,
}

#[derive(Clone, Debug)]
pub struct Server {
    pub id: ServerId,
    pub name: String,
    pub owner_id: UserId,
}

impl From<ServerRow> for Server {
    fn from(row: ServerRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            owner_id: row.owner_id,
        }
    }
}

impl From<ServerRecord> for Server {
    fn from(record: ServerRecord) -> Self {
        Self {
            id: record.id,
            name: record.name,
            owner_id: record.owner_id,
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct Member {
    pub user: User,
    pub role: RoleGql,
    /// The name to show for this member in this server: the display name, or, when another
    /// member of the server has the same display name, the display name with the username
    /// beside it (`Alice (@alice2)`), so that a copied name cannot pass for its owner.
    pub display_label: String,
}

impl Member {
    /// `user` as a member of `server` with `role`, labelled against the server's other members.
    pub(crate) async fn of(
        state: &ApiState,
        server: ServerId,
        user: UserId,
        role: RoleGql,
    ) -> ApiResult<Self> {
        let shared = state.read.display_name_shared(server, user).await?;
        let user = load_user(state, user).await?;
        let display_label = if shared {
            format!("{} (@{})", user.display_name, user.username)
        } else {
            user.display_name.clone()
        };
        Ok(Self {
            user,
            role,
            display_label,
        })
    }
}

/// A ban in force. The banned user is named by id: they may never have joined.
#[derive(SimpleObject, Clone, Debug)]
pub struct Ban {
    pub user_id: ID,
    pub banned_by: User,
    pub reason: Option<String>,
    pub banned_at: DateTime<Utc>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct MemberEdge {
    pub cursor: String,
    pub node: Member,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct MemberConnection {
    pub edges: Vec<MemberEdge>,
    pub page_info: PageInfo,
    pub total_count: i64,
}

/// Parses a page cursor: the decimal position a previous page handed out.
pub(crate) fn parse_cursor(cursor: Option<&str>, argument: &str) -> ApiResult<Option<i64>> {
    cursor
        .map(|cursor| {
            cursor
                .parse::<i64>()
                .ok()
                .filter(|position| *position >= 0)
                .ok_or_else(|| ApiError::bad_input(format!("{argument} is not a valid cursor")))
        })
        .transpose()
}

/// Checks `first`/`last` against the page-size limit; `default` when neither is given.
pub(crate) fn page_size(value: Option<i32>, argument: &str, max: i64) -> ApiResult<Option<i64>> {
    match value {
        None => Ok(None),
        Some(n) if n >= 0 && i64::from(n) <= max => Ok(Some(i64::from(n))),
        Some(_) => Err(ApiError::bad_input(format!(
            "{argument} must be between 0 and {max}"
        ))),
    }
}

/// The channel `id` as `user` may see it: `NOT_FOUND` when there is no such channel,
/// `FORBIDDEN` when the user may not view it.
pub(crate) async fn visible_channel(
    state: &ApiState,
    id: ChannelId,
    user: UserId,
) -> ApiResult<ChannelRow> {
    let row = state
        .read
        .channel(id)
        .await?
        .ok_or_else(|| ApiError::not_found("channel"))?;
    if !state.read.channel_access(&row, user).await?.can_view() {
        return Err(ApiError::forbidden("you cannot see this channel"));
    }
    Ok(row)
}

/// Where messages live: a server's channel, or a direct conversation.
#[derive(Clone, Debug)]
pub(crate) enum Place {
    Channel(ChannelRow),
    Conversation(ConversationRow),
}

/// The channel or conversation `id` if `user` may see it; `None` if it does not exist or is
/// hidden from them, so outsiders learn nothing.
pub(crate) async fn visible_place(
    state: &ApiState,
    id: ChannelId,
    user: UserId,
) -> ApiResult<Option<Place>> {
    if let Some(channel) = state.read.channel(id).await? {
        let visible = state.read.channel_access(&channel, user).await?.can_view();
        return Ok(visible.then_some(Place::Channel(channel)));
    }
    Ok(state
        .read
        .conversation(id)
        .await?
        .filter(|conversation| conversation.participants.contains(&user))
        .map(Place::Conversation))
}

/// The conversation `id` if `user` is in it: `NOT_FOUND` otherwise, whether it exists or not.
pub(crate) async fn visible_conversation(
    state: &ApiState,
    id: ChannelId,
    user: UserId,
) -> ApiResult<ConversationRow> {
    match visible_place(state, id, user).await? {
        Some(Place::Conversation(conversation)) => Ok(conversation),
        _ => Err(ApiError::not_found("conversation")),
    }
}

/// The channel or conversation `id` for something `user` does there (typing): a channel they
/// cannot see is `FORBIDDEN` as everywhere else; a conversation they are not in is `NOT_FOUND`,
/// like one that does not exist, so outsiders learn nothing.
pub(crate) async fn required_place(
    state: &ApiState,
    id: ChannelId,
    user: UserId,
) -> ApiResult<Place> {
    if state.read.channel(id).await?.is_some() {
        return visible_channel(state, id, user).await.map(Place::Channel);
    }
    visible_place(state, id, user)
        .await?
        .ok_or_else(|| ApiError::not_found("channel or conversation"))
}

/// Whether the caller is a member of `server`; refuses otherwise.
pub(crate) async fn require_member(
    state: &ApiState,
    server: ServerId,
    user: UserId,
) -> ApiResult<aether_domain::Role> {
    state
        .read
        .member_role(server, user)
        .await?
        .ok_or_else(|| ApiError::forbidden("you are not a member of this server"))
}

impl Server {
    /// The server's row, for its members.
    async fn settings(&self, ctx: &Context<'_>) -> ApiResult<ServerRow> {
        let state = state(ctx);
        require_member(state, self.id, require_caller(ctx)?).await?;
        state
            .read
            .server(self.id)
            .await?
            .ok_or_else(|| ApiError::not_found("server"))
    }
}

#[Object]
impl Server {
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }

    async fn name(&self) -> &str {
        &self.name
    }

    async fn owner(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        gql(load_user(state(ctx), self.owner_id).await)
    }

    /// What the rule stage does with messages whose words it finds offensive (members read
    /// it; ADMIN and up change it with `setContentPolicy`).
    async fn content_policy(&self, ctx: &Context<'_>) -> async_graphql::Result<ContentPolicyGql> {
        gql(self.settings(ctx).await).map(|row| row.content_policy.into())
    }

    /// The model score (0 to 1) from which the model stage flags a message here and hides it
    /// until a moderator decides: 0.5 until an admin chooses (`setModerationThreshold`).
    async fn moderation_threshold(&self, ctx: &Context<'_>) -> async_graphql::Result<f64> {
        gql(self.settings(ctx).await)
            .map(|row| row.moderation_threshold.unwrap_or_default().value())
    }

    /// The channels the caller can see, in the server's order (creation order until an admin
    /// moves one with `moveChannel`); each names its `category`.
    async fn channels(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Channel>> {
        let result: ApiResult<Vec<Channel>> = async {
            let state = state(ctx);
            let user = require_caller(ctx)?;
            let mut visible = Vec::new();
            for row in state.read.channels(self.id).await? {
                if state.read.channel_access(&row, user).await?.can_view() {
                    visible.push(Channel::from(row));
                }
            }
            Ok(visible)
        }
        .await;
        gql(result)
    }

    /// The bans in force, newest first (at most `first`, 50 by default; the page-size limit
    /// applies). Only roles that may ban (MODERATOR and up) see them: `FORBIDDEN` otherwise.
    async fn bans(&self, ctx: &Context<'_>, first: Option<i32>) -> async_graphql::Result<Vec<Ban>> {
        let result: ApiResult<Vec<Ban>> = async {
            let state = state(ctx);
            let user = require_caller(ctx)?;
            let role = require_member(state, self.id, user).await?;
            if !role.allows(aether_domain::Permission::ManageMembers) {
                return Err(ApiError::forbidden(format!(
                    "your role ({role}) does not allow seeing bans"
                )));
            }
            let max = state.limits.max_page_size;
            let first = page_size(first, "first", max)?.unwrap_or(max.min(50));
            let mut bans = Vec::new();
            for row in state.read.bans(self.id, first).await? {
                bans.push(Ban {
                    user_id: ID(row.user_id.to_string()),
                    banned_by: load_user(state, row.banned_by).await?,
                    reason: row.reason,
                    banned_at: row.banned_at,
                });
            }
            Ok(bans)
        }
        .await;
        gql(result)
    }

    /// Members in the order they joined.
    async fn members(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<MemberConnection> {
        let result: ApiResult<MemberConnection> = async {
            let state = state(ctx);
            let user = require_caller(ctx)?;
            require_member(state, self.id, user).await?;
            let max = state.limits.max_page_size;
            let first = page_size(first, "first", max)?.unwrap_or(max.min(50));
            let offset = parse_cursor(after.as_deref(), "after")?.unwrap_or(0);
            let (mut rows, total_count) = state.read.members(self.id, offset, first + 1).await?;
            let has_next_page = rows.len() as i64 > first;
            rows.truncate(usize::try_from(first).unwrap_or(0));
            let mut edges = Vec::with_capacity(rows.len());
            for (index, row) in rows.into_iter().enumerate() {
                edges.push(MemberEdge {
                    cursor: (offset + index as i64 + 1).to_string(),
                    node: Member::of(state, self.id, row.user_id, row.role.into()).await?,
                });
            }
            Ok(MemberConnection {
                page_info: PageInfo {
                    has_next_page,
                    has_previous_page: offset > 0,
                    start_cursor: edges.first().map(|edge| edge.cursor.clone()),
                    end_cursor: edges.last().map(|edge| edge.cursor.clone()),
                },
                total_count,
                edges,
            })
        }
        .await;
        gql(result)
    }
}

#[derive(Clone, Debug)]
pub struct Channel {
    pub id: ChannelId,
    pub server_id: ServerId,
    pub name: String,
    pub kind: ChannelKindGql,
    pub private: bool,
    pub archived: bool,
    pub topic: Option<String>,
    pub category: Option<String>,
}

impl From<ChannelRow> for Channel {
    fn from(row: ChannelRow) -> Self {
        Self {
            id: row.id,
            server_id: row.server_id,
            name: row.name,
            kind: row.kind.into(),
            private: row.private,
            archived: row.archived,
            topic: row.topic,
            category: row.category,
        }
    }
}

impl From<ChannelRecord> for Channel {
    fn from(record: ChannelRecord) -> Self {
        Self {
            id: record.id,
            server_id: record.server_id,
            name: record.name,
            kind: record.kind.into(),
            private: record.private,
            archived: false,
            topic: None,
            category: None,
        }
    }
}

/// How far the caller has read a channel, and what is waiting after that: the badge a client
/// shows. Unread messages exclude the caller's own and deleted ones; mentions are unread
/// messages that mention the caller (`<@userId>` in the body).
#[derive(SimpleObject, Clone, Debug)]
pub struct ReadState {
    pub channel_id: ID,
    /// The last message marked read; `null` before the first `markRead`.
    pub last_read_message_id: Option<ID>,
    /// That message's place in the channel (messages are numbered from 1); 0 before any.
    pub last_read_sequence: i64,
    pub read_at: Option<DateTime<Utc>>,
    pub unread_count: i64,
    pub mention_count: i64,
}

impl From<ReadStateRow> for ReadState {
    fn from(row: ReadStateRow) -> Self {
        Self {
            channel_id: ID(row.channel_id.to_string()),
            last_read_message_id: row.last_read.map(|(message, _)| ID(message.to_string())),
            last_read_sequence: row.last_read_seq,
            read_at: row.last_read.map(|(_, at)| at),
            unread_count: row.unread,
            mention_count: row.mentions,
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct MessageEdge {
    pub cursor: String,
    pub node: Message,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct MessageConnection {
    pub edges: Vec<MessageEdge>,
    pub page_info: PageInfo,
}

#[Object]
impl Channel {
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }

    async fn server_id(&self) -> ID {
        ID(self.server_id.to_string())
    }

    async fn name(&self) -> &str {
        &self.name
    }

    async fn kind(&self) -> ChannelKindGql {
        self.kind
    }

    async fn private(&self) -> bool {
        self.private
    }

    async fn archived(&self) -> bool {
        self.archived
    }

    /// What the channel is about (1–1,024 characters); `null` when it has no topic.
    async fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }

    /// The heading the channel is listed under in its server; `null` for none.
    async fn category(&self) -> Option<&str> {
        self.category.as_deref()
    }

    /// The caller's read pointer here and the unread and mention counts after it.
    async fn read_state(&self, ctx: &Context<'_>) -> async_graphql::Result<ReadState> {
        gql(read_state_in(ctx, self.id).await)
    }

    /// The channel's messages, oldest first within a page. `first`/`after` pages forward from
    /// the oldest; `last`/`before` (the default: the newest 50) pages backward from the newest.
    async fn messages(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<MessageConnection> {
        gql(message_page(state(ctx), self.id, first, after, last, before).await)
    }

    /// The pinned messages, the latest pin first.
    async fn pins(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<MessageConnection> {
        gql(pins_page(state(ctx), self.id, first, after).await)
    }
}

/// The messages pinned in a channel or conversation, the latest pin first, paged forward with
/// `first`/`after` (cursors are places in the pin list, which is short: see the pin limit).
pub(crate) async fn pins_page(
    state: &ApiState,
    place: ChannelId,
    first: Option<i32>,
    after: Option<String>,
) -> ApiResult<MessageConnection> {
    let max = state.limits.max_page_size;
    let first = page_size(first, "first", max)?.unwrap_or(max.min(50));
    let after = parse_cursor(after.as_deref(), "after")?.unwrap_or(0);
    let limit = i64::try_from(state.limits.max_pins).unwrap_or(i64::MAX);
    let rows = state.read.pinned_messages(place, limit).await?;
    let total = rows.len() as i64;
    let edges: Vec<MessageEdge> = rows
        .into_iter()
        .zip(1_i64..)
        .filter(|(_, n)| *n > after)
        .take(usize::try_from(first).unwrap_or(0))
        .map(|(row, n)| MessageEdge {
            cursor: n.to_string(),
            node: row.into(),
        })
        .collect();
    let last = edges
        .last()
        .and_then(|edge| edge.cursor.parse::<i64>().ok())
        .unwrap_or(after);
    Ok(MessageConnection {
        page_info: PageInfo {
            has_next_page: last < total,
            has_previous_page: after > 0,
            start_cursor: edges.first().map(|edge| edge.cursor.clone()),
            end_cursor: edges.last().map(|edge| edge.cursor.clone()),
        },
        edges,
    })
}

/// The caller's read state in a channel or conversation.
async fn read_state_in(ctx: &Context<'_>, place: ChannelId) -> ApiResult<ReadState> {
    let user = require_caller(ctx)?;
    Ok(state(ctx).read.read_state(user, place).await?.into())
}

/// A page of the messages of a channel or conversation, oldest first within the page.
async fn message_page(
    state: &ApiState,
    place: ChannelId,
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
) -> ApiResult<MessageConnection> {
    page_of(state, PageOf::Place(place), first, after, last, before).await
}

/// Whose messages a page holds.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PageOf {
    /// A channel's or conversation's own history; cursors are channel positions.
    Place(ChannelId),
    /// The replies in a root message's thread; cursors are thread positions.
    Thread(MessageId),
}

/// A page of messages, oldest first within the page.
pub(crate) async fn page_of(
    state: &ApiState,
    of: PageOf,
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
) -> ApiResult<MessageConnection> {
    let max = state.limits.max_page_size;
    let first = page_size(first, "first", max)?;
    let last = page_size(last, "last", max)?;
    let after = parse_cursor(after.as_deref(), "after")?;
    let before = parse_cursor(before.as_deref(), "before")?;
    let (limit, from) = match (first, last) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_input("pass either first or last, not both"))
        }
        (Some(first), None) => (first, PageFrom::Start),
        (None, Some(last)) => (last, PageFrom::End),
        (None, None) => (max.min(50), PageFrom::End),
    };
    let mut rows = match of {
        PageOf::Place(place) => {
            state
                .read
                .messages(place, after, before, limit + 1, from)
                .await?
        }
        PageOf::Thread(root) => {
            state
                .read
                .thread_replies(root, after, before, limit + 1, from)
                .await?
        }
    };
    let more = rows.len() as i64 > limit;
    if more {
        match from {
            PageFrom::Start => {
                rows.pop();
            }
            PageFrom::End => {
                rows.remove(0);
            }
        }
    }
    let edges: Vec<MessageEdge> = rows
        .into_iter()
        .map(|row| MessageEdge {
            cursor: match of {
                PageOf::Place(_) => row.position,
                PageOf::Thread(_) => row.thread_position.unwrap_or_default(),
            }
            .to_string(),
            node: row.into(),
        })
        .collect();
    Ok(MessageConnection {
        page_info: PageInfo {
            has_next_page: from == PageFrom::Start && more || before.is_some(),
            has_previous_page: from == PageFrom::End && more || after.is_some(),
            start_cursor: edges.first().map(|edge| edge.cursor.clone()),
            end_cursor: edges.last().map(|edge| edge.cursor.clone()),
        },
        edges,
    })
}

/// A direct conversation, 1:1 or a group, outside any server. Its people never change.
#[derive(Clone, Debug)]
pub struct Conversation {
    pub id: ChannelId,
    pub opened_by: UserId,
    pub participants: Vec<UserId>,
    pub opened_at: DateTime<Utc>,
    pub group: bool,
    pub owner: Option<UserId>,
    pub name: Option<String>,
}

impl From<ConversationRow> for Conversation {
    fn from(row: ConversationRow) -> Self {
        Self {
            id: row.id,
            opened_by: row.opened_by,
            participants: row.participants,
            opened_at: row.opened_at,
            group: row.group,
            owner: row.owner,
            name: row.name,
        }
    }
}

impl From<ConversationRecord> for Conversation {
    fn from(record: ConversationRecord) -> Self {
        Self {
            id: record.id,
            opened_by: record.opened_by,
            participants: record.participants,
            opened_at: record.opened_at,
            group: record.group,
            owner: record.owner,
            name: record.name,
        }
    }
}

#[Object]
impl Conversation {
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }

    /// Everyone in the conversation, the caller included.
    async fn participants(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<User>> {
        gql(load_users(state(ctx), &self.participants).await)
    }

    async fn opened_by(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        gql(load_user(state(ctx), self.opened_by).await)
    }

    async fn opened_at(&self) -> DateTime<Utc> {
        self.opened_at
    }

    /// A group (opened with three or more people): people may be added, removed or leave, and
    /// it may be named. A one-to-one conversation stays between its two people.
    async fn is_group(&self) -> bool {
        self.group
    }

    /// The group's name, once someone has named it.
    async fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Who may remove people from the group: its opener, then the longest-standing participant
    /// when the owner leaves. `null` for a one-to-one conversation.
    async fn owner(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        match self.owner.filter(|_| self.group) {
            Some(owner) => gql(load_user(state(ctx), owner).await.map(Some)),
            None => Ok(None),
        }
    }

    /// The caller's read pointer here and the unread and mention counts after it.
    async fn read_state(&self, ctx: &Context<'_>) -> async_graphql::Result<ReadState> {
        gql(read_state_in(ctx, self.id).await)
    }

    /// The conversation's messages, paged like `Channel.messages`.
    async fn messages(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<MessageConnection> {
        gql(message_page(state(ctx), self.id, first, after, last, before).await)
    }

    /// The pinned messages, the latest pin first.
    async fn pins(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<MessageConnection> {
        gql(pins_page(state(ctx), self.id, first, after).await)
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct Invite {
    pub code: String,
    pub server_id: ID,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<InviteRecord> for Invite {
    fn from(record: InviteRecord) -> Self {
        Self {
            code: record.code,
            server_id: ID(record.server_id.to_string()),
            max_uses: record.max_uses,
            uses: record.uses,
            expires_at: record.expires_at,
        }
    }
}

/// An earlier body of an edited message.
#[derive(SimpleObject, Clone, Debug)]
pub struct MessageEdit {
    pub body: String,
    pub replaced_at: DateTime<Utc>,
}

impl From<EditRow> for MessageEdit {
    fn from(row: EditRow) -> Self {
        Self {
            body: row.body,
            replaced_at: row.replaced_at,
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct Message {
    pub id: ID,
    #[graphql(skip)]
    pub body: String,
    #[graphql(skip)]
    pub author_id: UserId,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted: bool,
    pub channel_id: Option<ID>,
    pub conversation_id: Option<ID>,
    /// The message's version: 1 when sent, one more per edit and for the deletion. Clients
    /// keep the copy with the highest sequence.
    pub sequence: i64,
    #[graphql(skip)]
    pub edits: Vec<MessageEdit>,
    #[graphql(skip)]
    pub reactions: Vec<ReactionRow>,
    #[graphql(skip)]
    pub reply_to_id: Option<MessageId>,
    #[graphql(skip)]
    pub thread_root_id: Option<MessageId>,
    #[graphql(skip)]
    pub thread: Option<ThreadSummaryRow>,
    /// When it was pinned in its channel or conversation, while it is pinned.
    pub pinned_at: Option<DateTime<Utc>>,
    #[graphql(skip)]
    pub pinned_by: Option<UserId>,
    #[graphql(skip)]
    pub forwarded_from: Option<ForwardOriginRow>,
    #[graphql(skip)]
    pub server_id: Option<ServerId>,
    /// What moderation recorded about it (from the timeline; `None` in a command's answer).
    #[graphql(skip)]
    pub review: Option<ReviewRow>,
}

/// Whether the caller sees what moderators hid in `server`: MODERATOR and up there.
pub(crate) async fn sees_hidden(ctx: &Context<'_>, server: Option<ServerId>) -> ApiResult<bool> {
    let (Some(server), Some(user)) = (server, caller(ctx)) else {
        return Ok(false);
    };
    Ok(state(ctx)
        .read
        .member_role(server, user)
        .await?
        .is_some_and(|role| role.allows(aether_domain::Permission::ManageMessages)))
}

impl Message {
    fn is_hidden(&self) -> bool {
        self.review
            .as_ref()
            .is_some_and(|review| review.hidden.is_some())
    }

    /// Whether the caller must not see this message's words: they blocked its author, or it
    /// is hidden and they are not one of its server's moderators.
    async fn withheld(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        if self.author_blocked_by_caller(ctx).await? {
            return Ok(true);
        }
        if !self.is_hidden() {
            return Ok(false);
        }
        Ok(!sees_hidden(ctx, self.server_id).await?)
    }

    async fn author_blocked_by_caller(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        let original = self.forwarded_from.map(|origin| origin.author_id);
        Ok(callers_blocks(ctx)
            .await?
            .is_some_and(|list| crate::blocks::hides(&list, self.author_id, original)))
    }
}

/// Whom the caller blocks; `None` for nobody signed in (and for a payload resolved once for
/// every subscriber, which never carries words someone blocked).
pub(crate) async fn callers_blocks(
    ctx: &Context<'_>,
) -> ApiResult<Option<crate::blocks::BlockList>> {
    let Some(user) = caller(ctx) else {
        return Ok(None);
    };
    let lists = ctx.data_unchecked::<std::sync::Arc<crate::blocks::BlockLists>>();
    Ok(Some(lists.of(&state(ctx).read, user).await?))
}

/// Where a forwarded message comes from.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct ForwardedFrom {
    pub message_id: ID,
    /// The original's channel; `null` when it was in a conversation.
    pub channel_id: Option<ID>,
    /// The original's conversation; `null` when it was in a channel.
    pub conversation_id: Option<ID>,
    pub server_id: Option<ID>,
    pub sent_at: DateTime<Utc>,
    #[graphql(skip)]
    pub author_id: UserId,
}

#[ComplexObject]
impl ForwardedFrom {
    /// Who wrote the original.
    async fn author(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        gql(load_user(state(ctx), self.author_id).await)
    }
}

/// How many characters of a quoted message `ReplyPreview.excerpt` shows.
pub const EXCERPT_CHARS: usize = 100;

/// The message a reply quotes, as it stands now.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct ReplyPreview {
    pub message_id: ID,
    /// The start of its body (at most 100 characters); empty once it is deleted.
    pub excerpt: String,
    pub deleted: bool,
    #[graphql(skip)]
    pub author_id: UserId,
}

#[ComplexObject]
impl ReplyPreview {
    async fn author(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        gql(load_user(state(ctx), self.author_id).await)
    }
}

/// A root message's thread at a glance.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct ThreadSummary {
    /// Replies sent in the thread; a deleted one stays as a tombstone and counts.
    pub reply_count: i64,
    pub last_reply_at: DateTime<Utc>,
    #[graphql(skip)]
    pub participants: Vec<UserId>,
}

#[ComplexObject]
impl ThreadSummary {
    /// Everyone who replied, in the order of their first reply.
    async fn participants(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<User>> {
        gql(load_users(state(ctx), &self.participants).await)
    }
}

/// How many of the first people to react with an emoji `Reaction.firstReactors` lists.
pub const FIRST_REACTORS: usize = 3;

#[ComplexObject]
impl Message {
    /// The text; empty once the message is deleted, and while moderators hide it for everyone
    /// but them (`hidden`).
    async fn body(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        Ok(if gql(self.withheld(ctx).await)? {
            String::new()
        } else {
            self.body.clone()
        })
    }

    /// Earlier bodies, oldest first (empty once deleted, and while hidden from the caller).
    async fn edits(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<MessageEdit>> {
        Ok(if gql(self.withheld(ctx).await)? {
            Vec::new()
        } else {
            self.edits.clone()
        })
    }

    /// Whether the caller has blocked its author (or, for a forward, the original's author):
    /// its body, edits and reactions are then withheld from them (empty), and clients show it
    /// collapsed.
    async fn author_blocked(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        gql(self.author_blocked_by_caller(ctx).await)
    }

    /// Whether the server's moderators (or the model stage, pending them) hid the message:
    /// everyone sees that it is hidden, only MODERATOR and up see its words.
    async fn hidden(&self) -> bool {
        self.is_hidden()
    }

    /// What moderation recorded about the message (its flag, reports, decision), for the
    /// server's moderators and up; `null` for everyone else and for a message nobody flagged
    /// or reported.
    async fn moderation(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<MessageModeration>> {
        let Some(review) = &self.review else {
            return Ok(None);
        };
        if !gql(sees_hidden(ctx, self.server_id).await)? {
            return Ok(None);
        }
        Ok(Some(MessageModeration::from(review.clone())))
    }

    async fn author(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        gql(load_user(state(ctx), self.author_id).await)
    }

    /// Who pinned it, while it is pinned.
    async fn pinned_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        match self.pinned_by {
            Some(user) => gql(load_user(state(ctx), user).await).map(Some),
            None => Ok(None),
        }
    }

    /// Whether it forwards another message (whose origin `forwardedFrom` shows to those who
    /// may see it).
    async fn forwarded(&self) -> bool {
        self.forwarded_from.is_some()
    }

    /// Where the message it forwards comes from: shown only to those who may see the
    /// original's channel or conversation, `null` for everyone else and for a message that
    /// forwards nothing.
    async fn forwarded_from(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<ForwardedFrom>> {
        let (Some(origin), Some(viewer)) = (self.forwarded_from, caller(ctx)) else {
            return Ok(None);
        };
        let place = gql(visible_place(state(ctx), origin.channel_id, viewer).await)?;
        Ok(place.map(|_| {
            let place = ID(origin.channel_id.to_string());
            let in_channel = origin.server_id.is_some();
            ForwardedFrom {
                message_id: ID(origin.message_id.to_string()),
                channel_id: in_channel.then(|| place.clone()),
                conversation_id: (!in_channel).then_some(place),
                server_id: origin.server_id.map(|server| ID(server.to_string())),
                sent_at: origin.sent_at,
                author_id: origin.author_id,
            }
        }))
    }

    /// The root of the thread this message is a reply in.
    async fn thread_root_id(&self) -> Option<ID> {
        self.thread_root_id.map(|id| ID(id.to_string()))
    }

    /// The message this one replies to, quoted as it stands now.
    async fn reply_to(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ReplyPreview>> {
        let Some(id) = self.reply_to_id else {
            return Ok(None);
        };
        // Always in the same channel or conversation as this message, so whoever sees this
        // one may see it.
        let quoted = gql(state(ctx).read.message(id).await.map_err(ApiError::from))?;
        let blocks = gql(callers_blocks(ctx).await)?;
        let withheld = match &quoted {
            Some(quoted)
                if blocks
                    .as_ref()
                    .is_some_and(|list| crate::blocks::hides_row(list, quoted)) =>
            {
                true
            }
            Some(quoted) if quoted.hidden() => !gql(sees_hidden(ctx, quoted.server_id).await)?,
            _ => false,
        };
        Ok(quoted.map(|quoted| ReplyPreview {
            message_id: ID(quoted.id.to_string()),
            excerpt: if withheld {
                String::new()
            } else {
                quoted
                    .body
                    .unwrap_or_default()
                    .chars()
                    .take(EXCERPT_CHARS)
                    .collect()
            },
            deleted: quoted.deleted,
            author_id: quoted.author_id,
        }))
    }

    /// The thread this message is the root of, once someone replied in it.
    async fn thread(&self) -> Option<ThreadSummary> {
        self.thread.clone().map(|thread| ThreadSummary {
            reply_count: thread.reply_count,
            last_reply_at: thread.last_reply_at,
            participants: thread.participants,
        })
    }

    /// The reactions, one per emoji, in the order each emoji was first used (empty once
    /// deleted).
    async fn reactions(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Reaction>> {
        if gql(self.withheld(ctx).await)? {
            return Ok(Vec::new());
        }
        let me = caller(ctx);
        Ok(self
            .reactions
            .iter()
            .map(|reaction| Reaction {
                emoji: reaction.emoji.to_string(),
                count: i32::try_from(reaction.users.len()).unwrap_or(i32::MAX),
                reacted_by_me: me.is_some_and(|me| reaction.users.contains(&me)),
                first_reactors: reaction
                    .users
                    .iter()
                    .take(FIRST_REACTORS)
                    .copied()
                    .collect(),
            })
            .collect())
    }
}

/// Everyone who reacted to a message with one emoji.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct Reaction {
    /// A Unicode emoji, or a custom emoji's `:name:`.
    pub emoji: String,
    /// How many people reacted with it.
    pub count: i32,
    /// Whether the caller is one of them. A subscription that selects this field is resolved
    /// for each subscriber on their own.
    pub reacted_by_me: bool,
    #[graphql(skip)]
    pub first_reactors: Vec<UserId>,
}

#[ComplexObject]
impl Reaction {
    /// The first people who reacted with it (at most 3), in the order they reacted.
    async fn first_reactors(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<User>> {
        gql(load_users(state(ctx), &self.first_reactors).await)
    }
}

impl From<MessageRow> for Message {
    fn from(row: MessageRow) -> Self {
        Self {
            id: ID(row.id.to_string()),
            body: row.body.unwrap_or_default(),
            author_id: row.author_id,
            created_at: row.created_at,
            edited_at: row.edited_at,
            deleted: row.deleted,
            channel_id: row.server_id.map(|_| ID(row.channel_id.to_string())),
            conversation_id: row
                .server_id
                .is_none()
                .then(|| ID(row.channel_id.to_string())),
            sequence: row.version,
            edits: row.edits.into_iter().map(MessageEdit::from).collect(),
            reactions: row.reactions,
            reply_to_id: row.reply_to_id,
            thread_root_id: row.thread_root_id,
            thread: row.thread,
            pinned_at: row.pinned.as_ref().map(|pin| pin.pinned_at),
            pinned_by: row.pinned.map(|pin| pin.pinned_by),
            forwarded_from: row.forwarded_from,
            server_id: row.server_id,
            review: row.review,
        }
    }
}

impl From<MessageRecord> for Message {
    fn from(record: MessageRecord) -> Self {
        Self {
            id: ID(record.id.to_string()),
            body: record.body.unwrap_or_default(),
            author_id: record.author_id,
            created_at: record.created_at,
            edited_at: record.edited_at,
            deleted: record.deleted,
            channel_id: record.server_id.map(|_| ID(record.channel_id.to_string())),
            conversation_id: record
                .server_id
                .is_none()
                .then(|| ID(record.channel_id.to_string())),
            sequence: record.version,
            // The edit history is served by queries, from the timeline read model.
            edits: Vec::new(),
            reactions: record.reactions,
            reply_to_id: record.reply_to_id,
            thread_root_id: record.thread_root_id,
            // The thread summary and pins are served by queries, from the timeline read model.
            thread: None,
            pinned_at: None,
            pinned_by: None,
            forwarded_from: record.forwarded_from,
            server_id: record.server_id,
            review: None,
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct MessageSent {
    pub cursor: String,
    pub message: Message,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct MessageEdited {
    pub cursor: String,
    pub message: Message,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct MessageDeleted {
    pub cursor: String,
    pub message_id: ID,
}

/// Someone reacted to a message with an emoji (`added`), or took their reaction back.
/// `message` carries every reaction as it stands after the change.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct ReactionChanged {
    pub cursor: String,
    pub message: Message,
    pub emoji: String,
    pub added: bool,
    #[graphql(skip)]
    pub user_id: UserId,
}

#[ComplexObject]
impl ReactionChanged {
    /// Who reacted or took their reaction back.
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        gql(load_user(state(ctx), self.user_id).await)
    }
}

/// Moderators (or the model stage, pending them) hid a message: its words are gone for
/// everyone but MODERATOR and up (`message.hidden`; `message.body` is empty for the others).
#[derive(SimpleObject, Clone, Debug)]
pub struct MessageHidden {
    pub cursor: String,
    pub message: Message,
}

/// A moderator showed a hidden message again.
#[derive(SimpleObject, Clone, Debug)]
pub struct MessageRestored {
    pub cursor: String,
    pub message: Message,
}

/// A message was pinned; `message.pinnedBy` and `message.pinnedAt` say by whom and when.
#[derive(SimpleObject, Clone, Debug)]
pub struct MessagePinned {
    pub cursor: String,
    pub message: Message,
}

/// A message was unpinned.
#[derive(SimpleObject, Clone, Debug)]
pub struct MessageUnpinned {
    pub cursor: String,
    pub message: Message,
}

/// Someone replied in the thread of one of the channel's messages (a reply not also sent to
/// the channel; those arrive as `MessageSent`). `root` carries the thread's summary.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct ThreadReplied {
    pub cursor: String,
    pub reply: Message,
    #[graphql(skip)]
    pub root_id: MessageId,
}

#[ComplexObject]
impl ThreadReplied {
    async fn root_id(&self) -> ID {
        ID(self.root_id.to_string())
    }

    /// The thread's root as it stands now, with its summary.
    async fn root(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Message>> {
        let root = gql(state(ctx)
            .read
            .message(self.root_id)
            .await
            .map_err(ApiError::from))?;
        Ok(root.map(Message::from))
    }
}

/// Whether a channel's own history shows changes to `row`'s message: not those of a thread
/// reply that stays in its thread, except that it was sent (`ThreadReplied`).
pub(crate) fn in_channel_view(row: &ChannelEventRow) -> bool {
    row.message.in_channel || row.kind == ChannelEventKind::MessageSent
}

/// A change as a channel's subscribers see it: a reply sent only to a thread is announced
/// as `ThreadReplied`.
pub(crate) fn channel_view(row: ChannelEventRow) -> ChannelEvent {
    match row.message.thread_root_id {
        Some(root_id) if !row.message.in_channel && row.kind == ChannelEventKind::MessageSent => {
            ChannelEvent::ThreadReplied(ThreadReplied {
                cursor: row.seq.to_string(),
                reply: (*row.message).into(),
                root_id,
            })
        }
        _ => ChannelEvent::from(row),
    }
}

/// A change to a channel's messages. `cursor` resumes a subscription (`after`).
#[derive(Interface, Clone, Debug)]
#[graphql(field(name = "cursor", ty = "&String"))]
pub enum ChannelEvent {
    MessageSent(MessageSent),
    MessageEdited(MessageEdited),
    MessageDeleted(MessageDeleted),
    ReactionChanged(ReactionChanged),
    ThreadReplied(ThreadReplied),
    MessagePinned(MessagePinned),
    MessageUnpinned(MessageUnpinned),
    MessageHidden(MessageHidden),
    MessageRestored(MessageRestored),
}

impl From<ChannelEventRow> for ChannelEvent {
    fn from(row: ChannelEventRow) -> Self {
        let cursor = row.seq.to_string();
        match row.kind {
            ChannelEventKind::MessageSent => Self::MessageSent(MessageSent {
                cursor,
                message: (*row.message).into(),
            }),
            ChannelEventKind::MessageEdited => Self::MessageEdited(MessageEdited {
                cursor,
                message: (*row.message).into(),
            }),
            ChannelEventKind::MessageDeleted => Self::MessageDeleted(MessageDeleted {
                cursor,
                message_id: ID(row.message.id.to_string()),
            }),
            ChannelEventKind::MessagePinned => Self::MessagePinned(MessagePinned {
                cursor,
                message: (*row.message).into(),
            }),
            ChannelEventKind::MessageUnpinned => Self::MessageUnpinned(MessageUnpinned {
                cursor,
                message: (*row.message).into(),
            }),
            ChannelEventKind::MessageHidden => Self::MessageHidden(MessageHidden {
                cursor,
                message: (*row.message).into(),
            }),
            ChannelEventKind::MessageRestored => Self::MessageRestored(MessageRestored {
                cursor,
                message: (*row.message).into(),
            }),
            ChannelEventKind::ReactionChanged => {
                // Every store writes the reaction, and the read side refuses a row without one
                // (`ReadModels::channel_events_after`); an update without one cannot be built.
                let (emoji, added, user_id) = match row.reaction {
                    Some(reaction) => {
                        let reaction = *reaction;
                        (reaction.emoji, reaction.added, reaction.user_id)
                    }
                    None => (String::new(), false, row.message.author_id),
                };
                Self::ReactionChanged(ReactionChanged {
                    cursor,
                    message: (*row.message).into(),
                    emoji,
                    added,
                    user_id,
                })
            }
        }
    }
}

/// The caller's membership of a server changed, on any device: they joined, left, were removed
/// or banned (`role` null, `member` false), or their role changed.
#[derive(SimpleObject, Clone, Debug)]
pub struct MembershipChanged {
    pub server_id: ID,
    pub member: bool,
    pub role: Option<RoleGql>,
}

/// Some of the caller's events were missed (more arrived at once than the subscription could
/// hold): re-read `servers` to be sure of the current state.
#[derive(SimpleObject, Clone, Debug)]
pub struct ResyncNeeded {
    pub missed: i64,
}

/// Someone opened a direct conversation with the caller (or the caller did, on any device).
#[derive(SimpleObject, Clone, Debug)]
pub struct ConversationOpened {
    pub conversation: Conversation,
}

/// A group the caller is in changed: people added or gone, or a new name.
#[derive(SimpleObject, Clone, Debug)]
pub struct ConversationChanged {
    pub conversation: Conversation,
}

/// The caller is no longer in a group: they left, or its owner removed them.
#[derive(SimpleObject, Clone, Debug)]
pub struct ConversationLeft {
    pub conversation_id: ID,
}

/// The server's moderators (or the model stage, pending them) hid one of the caller's
/// messages (`hidden` true), or showed it again. While it is hidden its words are withheld
/// from everyone but the server's moderators, its author included (`message.body` is empty).
#[derive(SimpleObject, Clone, Debug)]
pub struct MessageModerated {
    pub message: Message,
    pub hidden: bool,
    /// The reason the decision gave (for the model stage: its flag's reason).
    pub reason: String,
    pub at: DateTime<Utc>,
}

impl MessageModerated {
    /// The news in a channel's `MessageHidden` or `MessageRestored` update; `None` for any
    /// other kind of update.
    pub fn from_update(row: &ChannelEventRow) -> Option<Self> {
        let review = row.message.review.as_ref();
        let (hidden, reason, at) = match row.kind {
            ChannelEventKind::MessageHidden => {
                let hidden = review.and_then(|review| review.hidden.as_ref());
                (
                    true,
                    hidden.map(|hidden| hidden.reason.clone()),
                    hidden.map(|hidden| hidden.hidden_at),
                )
            }
            ChannelEventKind::MessageRestored => {
                let decision = review.and_then(|review| review.decision.as_ref());
                (
                    false,
                    decision.map(|decision| decision.reason.clone()),
                    decision.map(|decision| decision.decided_at),
                )
            }
            _ => return None,
        };
        Some(Self {
            message: (*row.message).clone().into(),
            hidden,
            reason: reason.unwrap_or_default(),
            at: at.unwrap_or(row.message.created_at),
        })
    }
}

/// News for the signed-in user, whatever server or channel it concerns.
#[derive(async_graphql::Union, Clone, Debug)]
pub enum UserEvent {
    MembershipChanged(MembershipChanged),
    ConversationOpened(ConversationOpened),
    ConversationChanged(ConversationChanged),
    ConversationLeft(ConversationLeft),
    /// Boxed: a message is much larger than the other news.
    MessageModerated(Box<MessageModerated>),
    ResyncNeeded(ResyncNeeded),
}
