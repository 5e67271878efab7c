//! Queries. Whatever the caller may not see is answered as if it did not exist (`null`).

use aether_domain::{ChannelId, MessageId, ServerId};
use async_graphql::{Context, Object, ID};

use crate::error::{gql, ApiResult};
use crate::types::{load_user, require_caller, state, Channel, Message, Server, User};

#[derive(Debug, Default)]
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// The signed-in user.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        let result: ApiResult<User> = async {
            let user = require_caller(ctx)?;
            load_user(state(ctx), user).await
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

    async fn message(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Message>> {
        let result: ApiResult<Option<Message>> = async {
            let user = require_caller(ctx)?;
            let id = MessageId::parse(&id)?;
            let state = state(ctx);
            let Some(message) = state.read.message(id).await? else {
                return Ok(None);
            };
            let Some(channel) = state.read.channel(message.channel_id).await? else {
                return Ok(None);
            };
            if !state.read.channel_access(&channel, user).await?.can_view() {
                return Ok(None);
            }
            Ok(Some(message.into()))
        }
        .await;
        gql(result)
    }
}
