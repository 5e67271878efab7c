//! Queries. Whatever the caller may not see is answered as if it did not exist (`null`).

use aether_domain::{ChannelId, MessageId, ServerId, UserId};
use async_graphql::{Context, Object, ID};

use crate::error::{gql, ApiError, ApiResult};
use crate::types::{
    load_user, load_users, page_of, page_size, require_caller, require_member, state,
    visible_place, Channel, Conversation, Message, MessageConnection, MessageEdge, PageInfo,
    PageOf, Place, Server, User,
};

#[derive(Debug, Default)]
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// A server's moderation queue for MODERATOR and up (`FORBIDDEN` otherwise): its messages
    /// flagged by the model stage or reported by members and not decided since, the oldest
    /// message first, each with its `moderation` (flag, reports). The cursor is a message id.
    async fn moderation_queue(
        &self,
        ctx: &Context<'_>,
        server_id: ID,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<MessageConnection> {
        let result: ApiResult<MessageConnection> = async {
            let user = require_caller(ctx)?;
            let server = ServerId::parse(&server_id)?;
            let state = state(ctx);
            let role = require_member(state, server, user).await?;
            if !role.allows(aether_domain::Permission::ManageMessages) {
                return Err(ApiError::forbidden(format!(
                    "your role ({role}) does not allow seeing the moderation queue"
                )));
            }
            let max = state.limits.max_page_size;
            let first = page_size(first, "first", max)?.unwrap_or(max.min(50));
            let after = after
                .as_deref()
                .map(MessageId::parse)
                .transpose()
                .map_err(|_| ApiError::bad_input("after is not a cursor of this queue"))?;
            let mut rows = state.read.review_queue(server, after, first + 1).await?;
            let has_next_page = rows.len() as i64 > first;
            rows.truncate(usize::try_from(first).unwrap_or(0));
            let mut edges = Vec::with_capacity(rows.len());
            for row in rows {
                // A moderator who may not see a private channel does not see its messages.
                let visible = match state.read.channel(row.channel_id).await? {
                    Some(channel) => state.read.channel_access(&channel, user).await?.can_view(),
                    None => false,
                };
                if visible {
                    edges.push(MessageEdge {
                        cursor: row.id.to_string(),
                        node: row.into(),
                    });
                }
            }
            Ok(MessageConnection {
                page_info: PageInfo {
                    has_next_page,
                    has_previous_page: after.is_some(),
                    start_cursor: edges.first().map(|edge| edge.cursor.clone()),
                    end_cursor: edges.last().map(|edge| edge.cursor.clone()),
                },
                edges,
            })
        }
        .await;
        gql(result)
    }

    /// The signed-in user.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        let result: ApiResult<User> = async {
            let user = require_caller(ctx)?;
            load_user(state(ctx), user).await
        }
        .await;
        gql(result)
    }

    /// The people the caller has blocked, the longest-blocked first (at most 1,000).
    async fn blocked_users(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<User>> {
        let result: ApiResult<Vec<User>> = async {
            let me = require_caller(ctx)?;
            let state = state(ctx);
            let ids = state.read.blocked_by(me).await?;
            load_users(state, &ids).await
        }
        .await;
        gql(result)
    }

    /// A person the caller may look up: themselves, or someone they share a server or a
    /// conversation with; `null` for anyone else, as for nobody.
    async fn user(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<User>> {
        let result: ApiResult<Option<User>> = async {
            let viewer = require_caller(ctx)?;
            let id = UserId::parse(&id).map_err(|_| ApiError::bad_input("id is not a valid id"))?;
            Ok(state(ctx)
                .read
                .acquaintance(viewer, id)
                .await?
                .map(User::from))
        }
        .await;
        gql(result)
    }

    /// The people the caller shares a server or a conversation with (themselves included)
    /// whose username or display name starts with `search` (letter case aside), by username:
    /// at most `first` (20 unless given; the page maximum at most). `search` is 1 to 64
    /// characters.
    async fn users(
        &self,
        ctx: &Context<'_>,
        search: String,
        first: Option<i32>,
    ) -> async_graphql::Result<Vec<User>> {
        let result: ApiResult<Vec<User>> = async {
            let viewer = require_caller(ctx)?;
            let search = search.trim();
            if search.is_empty() || search.chars().count() > 64 {
                return Err(ApiError::bad_input("search must be 1 to 64 characters"));
            }
            let state = state(ctx);
            let max = state.limits.max_page_size;
            let first = page_size(first, "first", max)?.unwrap_or(max.min(20));
            let rows = state
                .read
                .search_acquaintances(viewer, search, first)
                .await?;
            Ok(rows.into_iter().map(User::from).collect())
        }
        .await;
        gql(result)
    }

    /// The servers the caller is a member of.
    async fn servers(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Server>> {
        let result: ApiResult<Vec<Server>> = async {
            let user = require_caller(ctx)?;
            let rows = state(ctx).read.servers_of(user).await?;
            Ok(rows.into_iter().map(Server::from).collect())
        }
        .await;
        gql(result)
    }

    async fn server(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Server>> {
        let result: ApiResult<Option<Server>> = async {
            let user = require_caller(ctx)?;
            let id = ServerId::parse(&id)?;
            let state = state(ctx);
            if state.read.member_role(id, user).await?.is_none() {
                return Ok(None);
            }
            Ok(state.read.server(id).await?.map(Server::from))
        }
        .await;
        gql(result)
    }

    async fn channel(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Channel>> {
        let result: ApiResult<Option<Channel>> = async {
            let user = require_caller(ctx)?;
            let id = ChannelId::parse(&id)?;
            let state = state(ctx);
            let Some(row) = state.read.channel(id).await? else {
                return Ok(None);
            };
            if !state.read.channel_access(&row, user).await?.can_view() {
                return Ok(None);
            }
            Ok(Some(row.into()))
        }
        .await;
        gql(result)
    }

    /// A direct conversation the caller is in; `null` otherwise.
    async fn conversation(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<Conversation>> {
        let result: ApiResult<Option<Conversation>> = async {
            let user = require_caller(ctx)?;
            let id = ChannelId::parse(&id)?;
            Ok(match visible_place(state(ctx), id, user).await? {
                Some(Place::Conversation(row)) => Some(row.into()),
                _ => None,
            })
        }
        .await;
        gql(result)
    }

    /// The caller's direct conversations, most recently opened first (`first`: at most the
    /// page-size limit, 50 by default).
    async fn conversations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
    ) -> async_graphql::Result<Vec<Conversation>> {
        let result: ApiResult<Vec<Conversation>> = async {
            let user = require_caller(ctx)?;
            let state = state(ctx);
            let max = state.limits.max_page_size;
            let first = page_size(first, "first", max)?.unwrap_or(max.min(50));
            let mut conversations = Vec::new();
            for id in state.read.conversations_of(user, first).await? {
                if let Some(row) = state.read.conversation(id).await? {
                    conversations.push(row.into());
                }
            }
            Ok(conversations)
        }
        .await;
        gql(result)
    }

    /// A message in a channel or conversation the caller can see; `null` otherwise.
    /// The replies in the thread of `rootId`, oldest first, paged like `Channel.messages`
    /// (cursors are places in the thread). `null` when the root does not exist or the caller
    /// cannot see its channel or conversation; empty when nobody replied yet.
    async fn thread(
        &self,
        ctx: &Context<'_>,
        root_id: ID,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<Option<MessageConnection>> {
        let result: ApiResult<Option<MessageConnection>> = async {
            let user = require_caller(ctx)?;
            let root_id = MessageId::parse(&root_id)
                .map_err(|_| ApiError::bad_input("rootId is not a valid id"))?;
            let state = state(ctx);
            let Some(root) = state.read.message(root_id).await? else {
                return Ok(None);
            };
            if visible_place(state, root.channel_id, user).await?.is_none() {
                return Ok(None);
            }
            let page = page_of(state, PageOf::Thread(root_id), first, after, last, before);
            Ok(Some(page.await?))
        }
        .await;
        gql(result)
    }

    async fn message(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Message>> {
        let result: ApiResult<Option<Message>> = async {
            let user = require_caller(ctx)?;
            let id = MessageId::parse(&id)?;
            let state = state(ctx);
            let Some(message) = state.read.message(id).await? else {
                return Ok(None);
            };
            if visible_place(state, message.channel_id, user)
                .await?
                .is_none()
            {
                return Ok(None);
            }
            Ok(Some(message.into()))
        }
        .await;
        gql(result)
    }
}
