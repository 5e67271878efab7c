//! Mutations: each sends one command and answers from what the command committed, so the
//! payload is complete even before the read models catch up. The log position of the commit is
//! returned as `extensions.consistencyToken`.

use crate::ephemeral::PresenceStatus;
use aether_commands::auth::TokenKind;
use aether_commands::service::Links;
use aether_commands::service::ReviewDecision;
use aether_commands::{
    too_many_participants, CommandContext, Committed, Moderation, OnlineNow, ProfileChange,
    SessionRecord,
};
use aether_domain::conversation::MAX_PARTICIPANTS;
use aether_domain::{ChannelId, MessageId, ServerId, UserId};
use async_graphql::{Context, InputObject, MaybeUndefined, Object, ID};

use crate::error::{gql, ApiError, ApiResult};
use crate::moderation::{
    ContentPolicyGql, ModerateMessageInput, ReportMessageInput, SetContentPolicyInput,
    SetModerationThresholdInput,
};
use crate::types::{
    caller, load_user, require_caller, state, AuthPayload, Channel, ChannelKindGql, Conversation,
    Invite, Member, Message, ReadState, RoleGql, Server, User,
};
use crate::{ApiState, CallerSession, ConsistencyToken};

#[derive(Debug, Default)]
pub struct MutationRoot;

#[derive(InputObject, Debug)]
pub struct RegisterInput {
    pub username: String,
    pub password: String,
    pub display_name: Option<String>,
}

#[derive(InputObject, Debug)]
pub struct LoginInput {
    pub username: String,
    pub password: String,
}

#[derive(InputObject, Debug)]
pub struct ChangePasswordInput {
    pub current_password: String,
    pub new_password: String,
}

#[derive(InputObject, Debug)]
pub struct CreateServerInput {
    pub name: String,
}

#[derive(InputObject, Debug)]
pub struct CreateChannelInput {
    pub server_id: ID,
    pub name: String,
    #[graphql(default_with = "ChannelKindGql::Text")]
    pub kind: ChannelKindGql,
    #[graphql(default)]
    pub private: bool,
}

#[derive(InputObject, Debug)]
pub struct CreateInviteInput {
    pub server_id: ID,
    pub max_uses: Option<u32>,
    pub expires_in_seconds: Option<i64>,
}

#[derive(InputObject, Debug)]
pub struct MoveChannelInput {
    pub channel_id: ID,
    /// The heading to list the channel under; `null` for none.
    pub category: Option<String>,
    /// Where in the server's channels, from 0.
    pub position: i32,
}

#[derive(InputObject, Debug)]
pub struct SetMemberRoleInput {
    pub server_id: ID,
    pub user_id: ID,
    pub role: RoleGql,
}

#[derive(InputObject, Debug)]
pub struct ModerateMemberInput {
    pub server_id: ID,
    pub user_id: ID,
    /// Why, for the audit log: 1–512 characters.
    pub reason: Option<String>,
}

#[derive(InputObject, Debug)]
pub struct UnbanUserInput {
    pub server_id: ID,
    pub user_id: ID,
}

#[derive(InputObject, Debug)]
pub struct AddToConversationInput {
    pub conversation_id: ID,
    /// At most 50 people; those already in the group are left as they are.
    pub user_ids: Vec<ID>,
}

#[derive(InputObject, Debug)]
pub struct RemoveFromConversationInput {
    pub conversation_id: ID,
    pub user_id: ID,
}

#[derive(InputObject, Debug)]
pub struct RenameConversationInput {
    pub conversation_id: ID,
    /// 1–100 characters; `null` or blank clears the name.
    pub name: Option<String>,
}

#[derive(InputObject, Debug)]
pub struct SendMessageInput {
    pub channel_id: Option<ID>,
    pub conversation_id: Option<ID>,
    pub body: String,
    /// A message of the same channel or conversation this one replies to; the reply shows
    /// it quoted (`Message.replyTo`).
    pub reply_to_id: Option<ID>,
    /// A root message of the same channel or conversation: the message is a reply in its
    /// thread (`thread(rootId)`), not in the channel's history unless `alsoToChannel`.
    pub thread_root_id: Option<ID>,
    /// With `threadRootId`: also show the reply in the channel's history.
    #[graphql(default)]
    pub also_to_channel: bool,
}

#[derive(InputObject, Debug)]
pub struct MarkReadInput {
    pub channel_id: Option<ID>,
    pub conversation_id: Option<ID>,
    /// The newest message the user has seen: everything up to it counts as read.
    pub message_id: ID,
}

/// Where to forward a message: exactly one of a channel and a conversation.
#[derive(InputObject, Debug)]
pub struct ForwardMessageInput {
    pub message_id: ID,
    pub channel_id: Option<ID>,
    pub conversation_id: Option<ID>,
}

#[derive(InputObject, Debug)]
pub struct EditMessageInput {
    pub message_id: ID,
    pub body: String,
}

/// An optional argument as a change: left out keeps (`None`), `null` clears (`Some(None)`).
fn given(value: &MaybeUndefined<String>) -> Option<Option<&str>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(text) => Some(Some(text.as_str())),
    }
}

/// A conversation id from an input; `BAD_USER_INPUT` when it is not one.
fn conversation_id(id: &ID) -> ApiResult<ChannelId> {
    ChannelId::parse(id).map_err(|_| ApiError::bad_input("conversationId is not a valid id"))
}

/// The channel or conversation an input names (a conversation is a channel outside any
/// server, so both are channel ids to the command side).
fn channel_or_conversation(
    channel: Option<&ID>,
    conversation: Option<&ID>,
) -> ApiResult<ChannelId> {
    match (channel, conversation) {
        (Some(channel), None) => Ok(ChannelId::parse(channel)?),
        (None, Some(conversation)) => ChannelId::parse(conversation)
            .map_err(|_| ApiError::bad_input("conversationId is not a valid id")),
        _ => Err(ApiError::bad_input(
            "pass exactly one of channelId and conversationId",
        )),
    }
}

async fn moderate(
    ctx: &Context<'_>,
    server_id: &ID,
    user_id: &ID,
    action: Moderation<'_>,
) -> async_graphql::Result<bool> {
    let result: ApiResult<bool> = async {
        require_caller(ctx)?;
        let server = ServerId::parse(server_id)?;
        let user = UserId::parse(user_id)?;
        let record = state(ctx)
            .commands
            .moderate(&context(ctx), server, user, action)
            .await?;
        committed(ctx, record);
        Ok(true)
    }
    .await;
    gql(result)
}

/// The command context of this request, and the payload's value once committed.
fn context(ctx: &Context<'_>) -> CommandContext {
    CommandContext::new(caller(ctx))
}

/// The context of a message's command: `@here` reaches whoever this instance's presence says
/// is connected now (online or away), across instances.
fn message_context(ctx: &Context<'_>) -> CommandContext {
    let ephemeral = state(ctx).ephemeral.clone();
    context(ctx).with_online(OnlineNow(std::sync::Arc::new(move |user| {
        ephemeral.status_of(user) != PresenceStatus::Offline
    })))
}

fn committed<T>(ctx: &Context<'_>, committed: Committed<T>) -> T {
    if let Some(token) = ctx.data_opt::<ConsistencyToken>() {
        token.observe(committed.position.event);
    }
    committed.value
}

/// A moderator's decision about `input.message_id`; answers with the message as the timeline
/// then shows it.
async fn review(
    ctx: &Context<'_>,
    input: ModerateMessageInput,
    decision: ReviewDecision,
) -> ApiResult<Message> {
    require_caller(ctx)?;
    let message = MessageId::parse(&input.message_id)?;
    let decided = state(ctx)
        .commands
        .decide_review(&context(ctx), message, decision, &input.reason)
        .await?;
    projected_message(ctx, decided, message).await
}

/// `message` from the timeline once it has applied `result`'s events.
async fn projected_message<T>(
    ctx: &Context<'_>,
    result: Committed<T>,
    message: MessageId,
) -> ApiResult<Message> {
    committed_and_projected(ctx, result).await;
    state(ctx)
        .read
        .message(message)
        .await?
        .map(Message::from)
        .ok_or_else(|| ApiError::not_found("message"))
}

/// Like [`committed`], for payloads whose fields are served from the read models (a server's
/// channels and members): waits until the projectors have applied the command's events.
async fn committed_and_projected<T>(ctx: &Context<'_>, result: Committed<T>) -> T {
    let event = result.position.event.clone();
    let value = committed(ctx, result);
    let state = state(ctx);
    if !state
        .wait_until_projected(&event, state.limits.projection_wait)
        .await
    {
        tracing::warn!(
            token = %event.token(),
            "read models did not catch up before the mutation answered"
        );
    }
    value
}

/// An access token and a refresh token of `session`.
fn tokens(ctx: &Context<'_>, session: &SessionRecord) -> ApiResult<(String, String)> {
    let issuer = &state(ctx).tokens;
    let issue = |kind| {
        issuer
            .issue_for_session(
                session.user_id,
                kind,
                session.session_id,
                session.generation,
            )
            .map_err(|e| {
                tracing::error!(error = %e, "token signing failed");
                ApiError::new(
                    aether_commands::ErrorCode::Internal,
                    "could not issue a token",
                )
            })
    };
    Ok((issue(TokenKind::Access)?, issue(TokenKind::Refresh)?))
}

/// A new session for `user` and its first tokens.
async fn sign_in(ctx: &Context<'_>, user: UserId) -> ApiResult<(String, String)> {
    let session = state(ctx).commands.start_session(user).await?;
    tokens(ctx, &committed(ctx, session))
}

/// A server as the event store has it right after a command (the catalog may lag).
async fn server_from_store(state: &ApiState, id: ServerId) -> ApiResult<Server> {
    let server: aether_domain::server::Server = state.commands.load(&id.to_string()).await?;
    match (server.name, server.owner) {
        (Some(name), Some(owner_id)) => Ok(Server {
            id,
            name: name.into_inner(),
            owner_id,
        }),
        _ => Err(ApiError::not_found("server")),
    }
}

/// A channel as the event store has it right after a command.
async fn channel_from_store(
    state: &ApiState,
    server_id: ServerId,
    id: ChannelId,
) -> ApiResult<Channel> {
    let server: aether_domain::server::Server = state.commands.load(&server_id.to_string()).await?;
    let channel = server
        .channels
        .get(&id)
        .ok_or_else(|| ApiError::not_found("channel"))?;
    Ok(Channel {
        id,
        server_id,
        name: channel.name.to_string(),
        kind: channel.facts.kind.into(),
        private: channel.facts.private,
        archived: channel.facts.archived,
        topic: channel.topic.as_ref().map(ToString::to_string),
        category: channel.category.as_ref().map(ToString::to_string),
    })
}

/// Sends a command about `channel_id` and answers with the channel as the event store has it.
async fn channel_changed<F>(ctx: &Context<'_>, channel_id: &ID, send: F) -> ApiResult<Channel>
where
    F: for<'a> FnOnce(
        &'a ApiState,
        CommandContext,
        ChannelId,
    ) -> futures::future::BoxFuture<
        'a,
        Result<Committed<ServerId>, aether_commands::CommandError>,
    >,
{
    require_caller(ctx)?;
    let channel = ChannelId::parse(channel_id)?;
    let state = state(ctx);
    let server = committed_and_projected(ctx, send(state, context(ctx), channel).await?).await;
    channel_from_store(state, server, channel).await
}

#[Object]
impl MutationRoot {
    /// Creates an account and signs it in.
    async fn register(
        &self,
        ctx: &Context<'_>,
        input: RegisterInput,
    ) -> async_graphql::Result<AuthPayload> {
        crate::rate::check_login(ctx, None)?;
        let result: ApiResult<AuthPayload> = async {
            let record = state(ctx)
                .commands
                .register(
                    &context(ctx),
                    &input.username,
                    &input.password,
                    input.display_name.as_deref(),
                )
                .await?;
            let user = committed(ctx, record);
            let (access_token, refresh_token) = sign_in(ctx, user.id).await?;
            Ok(AuthPayload {
                access_token,
                refresh_token,
                user: user.into(),
            })
        }
        .await;
        gql(result)
    }

    async fn login(
        &self,
        ctx: &Context<'_>,
        input: LoginInput,
    ) -> async_graphql::Result<AuthPayload> {
        crate::rate::check_login(ctx, Some(&input.username))?;
        let result: ApiResult<AuthPayload> = async {
            let commands = &state(ctx).commands;
            let user = match commands.check_login(&input.username, &input.password).await {
                Ok(user) => user,
                Err(refused) => {
                    if refused.error.code == aether_commands::ErrorCode::Unauthenticated {
                        crate::rate::record_failed_login(ctx);
                    }
                    // Recorded after the answer, so that a wrong password for an existing
                    // account answers as fast as one for an unknown account.
                    if let Some(account) = refused.account {
                        let commands = commands.clone();
                        tokio::spawn(async move { commands.record_failed_login(account).await });
                    }
                    return Err(refused.error.into());
                }
            };
            let (access_token, refresh_token) = sign_in(ctx, user.id).await?;
            Ok(AuthPayload {
                access_token,
                refresh_token,
                user: user.into(),
            })
        }
        .await;
        gql(result)
    }

    /// Trades a refresh token for a new pair of tokens. Each refresh token works once: the
    /// answer carries its successor. Presenting a spent one again ends the whole session (every
    /// token of it), because it means the token was copied; the user signs in again.
    async fn refresh_token(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<AuthPayload> {
        let result: ApiResult<AuthPayload> = async {
            let state = state(ctx);
            let verified = state
                .tokens
                .verify_claims(&refresh_token, TokenKind::Refresh)
                .map_err(|e| {
                    ApiError::new(aether_commands::ErrorCode::Unauthenticated, e.to_string())
                })?;
            let (Some(session), Some(generation)) = (verified.session, verified.generation) else {
                return Err(ApiError::new(
                    aether_commands::ErrorCode::Unauthenticated,
                    "this refresh token belongs to no session; sign in again",
                ));
            };
            let next = match state
                .commands
                .refresh_session(verified.user, session, generation)
                .await
            {
                Ok(next) => next,
                Err(error) => {
                    // A reused refresh token ended the session: its access tokens stop
                    // working here at once (other instances apply the event from the log).
                    if state.commands.session_ended(session).await.unwrap_or(false) {
                        state.revocations.end_session(
                            session,
                            Some(verified.user),
                            chrono::Utc::now(),
                        );
                    }
                    return Err(error.into());
                }
            };
            let next = committed(ctx, next);
            let user: User = load_user(state, verified.user).await?;
            let (access_token, refresh_token) = tokens(ctx, &next)?;
            Ok(AuthPayload {
                access_token,
                refresh_token,
                user,
            })
        }
        .await;
        gql(result)
    }

    /// Signs out on this device: the session's refresh and access tokens stop working at once,
    /// on every instance, and its WebSockets are closed (4403).
    async fn logout(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let result: ApiResult<bool> = async {
            let user = require_caller(ctx)?;
            let Some(CallerSession(Some(session))) = ctx.data_opt::<CallerSession>() else {
                return Err(ApiError::bad_input(
                    "this access token belongs to no session; nothing to sign out of",
                ));
            };
            let state = state(ctx);
            let written = state.commands.end_session(user, *session).await?;
            // Refused here at once; every other instance applies the event from the log.
            state
                .revocations
                .end_session(*session, Some(user), chrono::Utc::now());
            if let Some(token) = ctx.data_opt::<ConsistencyToken>() {
                token.observe(written.event);
            }
            Ok(true)
        }
        .await;
        gql(result)
    }

    /// Signs out everywhere: every session that started before now ends; their tokens stop
    /// working at once, on every instance, and their WebSockets are closed (4403).
    async fn logout_everywhere(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let result: ApiResult<bool> = async {
            let user = require_caller(ctx)?;
            let state = state(ctx);
            let ended = state.commands.end_all_sessions(user).await?;
            let before = committed(ctx, ended);
            state.revocations.end_all(user, before);
            Ok(true)
        }
        .await;
        gql(result)
    }

    /// Replaces the caller's password (the current one must be given) and ends every session
    /// of theirs, everywhere: every token of the old sessions stops working at once, on every
    /// instance, and their WebSockets are closed (4403). Answers with the tokens of a new
    /// session, so the device that changed the password stays signed in. A wrong current
    /// password counts as a failed sign-in from the caller's address.
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        input: ChangePasswordInput,
    ) -> async_graphql::Result<AuthPayload> {
        if let Ok(user) = require_caller(ctx) {
            crate::rate::check_login(ctx, Some(&user.to_string()))?;
        }
        let result: ApiResult<AuthPayload> = async {
            let user = require_caller(ctx)?;
            let state = state(ctx);
            let changed = match state
                .commands
                .change_password(user, &input.current_password, &input.new_password)
                .await
            {
                Ok(changed) => changed,
                Err(error) => {
                    if error.message == aether_commands::WRONG_CURRENT_PASSWORD {
                        crate::rate::record_failed_login(ctx);
                    }
                    return Err(error.into());
                }
            };
            let before = committed(ctx, changed);
            state.revocations.end_all(user, before);
            let (access_token, refresh_token) = sign_in(ctx, user).await?;
            let user: User = load_user(state, user).await?;
            Ok(AuthPayload {
                access_token,
                refresh_token,
                user,
            })
        }
        .await;
        gql(result)
    }

    async fn create_server(
        &self,
        ctx: &Context<'_>,
        input: CreateServerInput,
    ) -> async_graphql::Result<Server> {
        let result: ApiResult<Server> = async {
            require_caller(ctx)?;
            let record = state(ctx)
                .commands
                .create_server(&context(ctx), &input.name)
                .await?;
            Ok(committed_and_projected(ctx, record).await.into())
        }
        .await;
        gql(result)
    }

    async fn create_channel(
        &self,
        ctx: &Context<'_>,
        input: CreateChannelInput,
    ) -> async_graphql::Result<Channel> {
        let result: ApiResult<Channel> = async {
            require_caller(ctx)?;
            let server = ServerId::parse(&input.server_id)?;
            let record = state(ctx)
                .commands
                .create_channel(
                    &context(ctx),
                    server,
                    &input.name,
                    input.kind.into(),
                    input.private,
                )
                .await?;
            Ok(committed(ctx, record).into())
        }
        .await;
        gql(result)
    }

    async fn create_invite(
        &self,
        ctx: &Context<'_>,
        input: CreateInviteInput,
    ) -> async_graphql::Result<Invite> {
        let result: ApiResult<Invite> = async {
            require_caller(ctx)?;
            let server = ServerId::parse(&input.server_id)?;
            let record = state(ctx)
                .commands
                .create_invite(
                    &context(ctx),
                    server,
                    input.max_uses,
                    input.expires_in_seconds,
                )
                .await?;
            Ok(committed(ctx, record).into())
        }
        .await;
        gql(result)
    }

    async fn join_server(
        &self,
        ctx: &Context<'_>,
        invite_code: String,
    ) -> async_graphql::Result<Server> {
        let result: ApiResult<Server> = async {
            require_caller(ctx)?;
            let state = state(ctx);
            let joined = state
                .commands
                .join_server(&context(ctx), &invite_code)
                .await?;
            let server_id = committed_and_projected(ctx, joined).await;
            server_from_store(state, server_id).await
        }
        .await;
        gql(result)
    }

    /// Renames a server (ADMIN and above).
    async fn rename_server(
        &self,
        ctx: &Context<'_>,
        server_id: ID,
        name: String,
    ) -> async_graphql::Result<Server> {
        let result: ApiResult<Server> = async {
            require_caller(ctx)?;
            let server = ServerId::parse(&server_id)?;
            let state = state(ctx);
            let renamed = state
                .commands
                .rename_server(&context(ctx), server, &name)
                .await?;
            committed_and_projected(ctx, renamed).await;
            server_from_store(state, server).await
        }
        .await;
        gql(result)
    }

    /// Chooses what happens to messages in the server whose words the rule stage finds
    /// offensive (ADMIN and above): `ALLOW` (the default) stores them as written, `MASK` stores
    /// them with those words replaced by `*`, `BLOCK` refuses them with `BAD_USER_INPUT` and the
    /// reason. Applies to messages sent or edited from now on. Answers with the policy set.
    async fn set_content_policy(
        &self,
        ctx: &Context<'_>,
        input: SetContentPolicyInput,
    ) -> async_graphql::Result<ContentPolicyGql> {
        let result: ApiResult<ContentPolicyGql> = async {
            require_caller(ctx)?;
            let server = ServerId::parse(&input.server_id)?;
            let set = state(ctx)
                .commands
                .set_content_policy(&context(ctx), server, input.policy.into())
                .await?;
            committed(ctx, set);
            Ok(input.policy)
        }
        .await;
        gql(result)
    }

    /// Chooses the model score (greater than 0, at most 1) from which the model stage flags a
    /// message of the server and hides it until a moderator decides (ADMIN and above; 0.5
    /// until chosen). Applies to messages scored from now on. Answers with the threshold set.
    async fn set_moderation_threshold(
        &self,
        ctx: &Context<'_>,
        input: SetModerationThresholdInput,
    ) -> async_graphql::Result<f64> {
        let result: ApiResult<f64> = async {
            require_caller(ctx)?;
            let server = ServerId::parse(&input.server_id)?;
            let set = state(ctx)
                .commands
                .set_moderation_threshold(&context(ctx), server, input.threshold)
                .await?;
            committed(ctx, set);
            Ok(input.threshold)
        }
        .await;
        gql(result)
    }

    /// Reports a message of a server's channel to its moderators, with a reason (any member
    /// who sees it, not its author; reporting it again changes nothing). It joins the
    /// server's `moderationQueue`. Answers `true`.
    async fn report_message(
        &self,
        ctx: &Context<'_>,
        input: ReportMessageInput,
    ) -> async_graphql::Result<bool> {
        let result: ApiResult<bool> = async {
            require_caller(ctx)?;
            let message = MessageId::parse(&input.message_id)?;
            let reported = state(ctx)
                .commands
                .report_message(&context(ctx), message, &input.reason)
                .await?;
            committed_and_projected(ctx, reported).await;
            Ok(true)
        }
        .await;
        gql(result)
    }

    /// Hides a message from everyone but the server's moderators (MODERATOR and up), with a
    /// reason; it leaves the moderation queue. `CONFLICT` if it is hidden already.
    async fn hide_message(
        &self,
        ctx: &Context<'_>,
        input: ModerateMessageInput,
    ) -> async_graphql::Result<Message> {
        gql(review(ctx, input, ReviewDecision::Hide).await)
    }

    /// Shows a hidden message again (MODERATOR and up), with a reason; it leaves the
    /// moderation queue. `CONFLICT` if it is not hidden.
    async fn restore_message(
        &self,
        ctx: &Context<'_>,
        input: ModerateMessageInput,
    ) -> async_graphql::Result<Message> {
        gql(review(ctx, input, ReviewDecision::Restore).await)
    }

    /// Judges a message's flag and reports unfounded (MODERATOR and up), with a reason: it
    /// leaves the moderation queue as it is shown (a message the model stage hid stays hidden
    /// until restored). `CONFLICT` when nothing is open.
    async fn dismiss_flag(
        &self,
        ctx: &Context<'_>,
        input: ModerateMessageInput,
    ) -> async_graphql::Result<Message> {
        gql(review(ctx, input, ReviewDecision::Dismiss).await)
    }

    /// Renames a channel (ADMIN and above).
    async fn rename_channel(
        &self,
        ctx: &Context<'_>,
        channel_id: ID,
        name: String,
    ) -> async_graphql::Result<Channel> {
        let result: ApiResult<Channel> = async {
            require_caller(ctx)?;
            let channel = ChannelId::parse(&channel_id)?;
            let state = state(ctx);
            let server = committed(
                ctx,
                state
                    .commands
                    .rename_channel(&context(ctx), channel, &name)
                    .await?,
            );
            channel_from_store(state, server, channel).await
        }
        .await;
        gql(result)
    }

    /// Archives a channel: its history stays readable, nobody can post (ADMIN and above).
    async fn archive_channel(
        &self,
        ctx: &Context<'_>,
        channel_id: ID,
    ) -> async_graphql::Result<Channel> {
        let result: ApiResult<Channel> = async {
            require_caller(ctx)?;
            let channel = ChannelId::parse(&channel_id)?;
            let state = state(ctx);
            let server = committed(
                ctx,
                state
                    .commands
                    .archive_channel(&context(ctx), channel)
                    .await?,
            );
            channel_from_store(state, server, channel).await
        }
        .await;
        gql(result)
    }

    /// Sets a channel's topic (1–1,024 characters; line breaks kept), or clears it with
    /// `topic: null` (ADMIN and above; not in an archived channel). Setting the topic it has
    /// changes nothing.
    async fn set_channel_topic(
        &self,
        ctx: &Context<'_>,
        channel_id: ID,
        topic: Option<String>,
    ) -> async_graphql::Result<Channel> {
        let result = channel_changed(ctx, &channel_id, |state, context, channel| {
            Box::pin(async move {
                state
                    .commands
                    .set_channel_topic(&context, channel, topic.as_deref())
                    .await
            })
        })
        .await;
        gql(result)
    }

    /// Lists a channel under `category` (1–100 characters; `null` for none) at `position` in
    /// the server's channels (0 is first; archived and private channels count), moving the
    /// others down (ADMIN and above; not an archived channel). `BAD_USER_INPUT` for a position
    /// past the last channel.
    async fn move_channel(
        &self,
        ctx: &Context<'_>,
        input: MoveChannelInput,
    ) -> async_graphql::Result<Channel> {
        let result: ApiResult<Channel> = async {
            let position = u32::try_from(input.position)
                .map_err(|_| ApiError::bad_input("position must be 0 or more"))?;
            let category = input.category;
            channel_changed(ctx, &input.channel_id, |state, context, channel| {
                Box::pin(async move {
                    state
                        .commands
                        .move_channel(&context, channel, category.as_deref(), position)
                        .await
                })
            })
            .await
        }
        .await;
        gql(result)
    }

    /// Makes an archived channel live again: members may post (ADMIN and above). Unarchiving
    /// a live channel changes nothing.
    async fn unarchive_channel(
        &self,
        ctx: &Context<'_>,
        channel_id: ID,
    ) -> async_graphql::Result<Channel> {
        let result = channel_changed(ctx, &channel_id, |state, context, channel| {
            Box::pin(async move { state.commands.unarchive_channel(&context, channel).await })
        })
        .await;
        gql(result)
    }

    /// Deletes a server (its owner only). From then on every query about it, its channels and
    /// its messages answers `NOT_FOUND` or leaves it out, subscriptions to its channels end,
    /// and its members' `servers` no longer list it; its history stays in the event log.
    async fn delete_server(&self, ctx: &Context<'_>, server_id: ID) -> async_graphql::Result<bool> {
        let result: ApiResult<bool> = async {
            require_caller(ctx)?;
            let server = ServerId::parse(&server_id)?;
            let deleted = state(ctx)
                .commands
                .delete_server(&context(ctx), server)
                .await?;
            committed_and_projected(ctx, deleted).await;
            Ok(true)
        }
        .await;
        gql(result)
    }

    /// Hands the server to `userId`, one of its members (its owner only); the caller stays
    /// as an ADMIN. `NOT_FOUND` when `userId` is not a member.
    async fn transfer_ownership(
        &self,
        ctx: &Context<'_>,
        server_id: ID,
        user_id: ID,
    ) -> async_graphql::Result<Server> {
        let result: ApiResult<Server> = async {
            require_caller(ctx)?;
            let server = ServerId::parse(&server_id)?;
            let user = UserId::parse(&user_id)?;
            let state = state(ctx);
            let transferred = state
                .commands
                .transfer_ownership(&context(ctx), server, user)
                .await?;
            committed_and_projected(ctx, transferred).await;
            server_from_store(state, server).await
        }
        .await;
        gql(result)
    }

    /// Revokes an invite (its creator, or MODERATOR and above).
    async fn revoke_invite(&self, ctx: &Context<'_>, code: String) -> async_graphql::Result<bool> {
        let result: ApiResult<bool> = async {
            require_caller(ctx)?;
            committed(
                ctx,
                state(ctx)
                    .commands
                    .revoke_invite(&context(ctx), &code)
                    .await?,
            );
            Ok(true)
        }
        .await;
        gql(result)
    }

    /// Changes what others see of the caller. An argument left out keeps its value;
    /// `avatarUrl` or `statusText` given as `null` or blank clears it. `displayName`: 1–64
    /// characters; `avatarUrl`: an http or https URL of at most 2048 characters;
    /// `statusText`: at most 128 characters.
    async fn update_profile(
        &self,
        ctx: &Context<'_>,
        display_name: Option<String>,
        avatar_url: MaybeUndefined<String>,
        status_text: MaybeUndefined<String>,
    ) -> async_graphql::Result<User> {
        let result: ApiResult<User> = async {
            require_caller(ctx)?;
            let change = ProfileChange {
                display_name: display_name.as_deref(),
                avatar_url: given(&avatar_url),
                status_text: given(&status_text),
            };
            let record = state(ctx)
                .commands
                .change_profile(&context(ctx), change)
                .await?;
            Ok(committed(ctx, record).into())
        }
        .await;
        gql(result)
    }

    /// Blocks a person: no direct message between the two of you while blocked (a
    /// one-to-one conversation refuses new messages either way with `FORBIDDEN`), and
    /// wherever you meet their messages show with `authorBlocked` and no body, edits,
    /// reactions or quoted excerpt. They are not told. Answers `true`. Blocking twice changes
    /// nothing; `NOT_FOUND` for an unknown user; `BAD_USER_INPUT` for yourself and past 1,000
    /// people blocked.
    async fn block_user(&self, ctx: &Context<'_>, user_id: ID) -> async_graphql::Result<bool> {
        gql(set_blocked(ctx, &user_id, true).await)
    }

    /// Unblocks a person: their messages show again, direct messages flow again. Answers
    /// `false` (they are not blocked now); unblocking someone not blocked changes nothing.
    async fn unblock_user(&self, ctx: &Context<'_>, user_id: ID) -> async_graphql::Result<bool> {
        gql(set_blocked(ctx, &user_id, false).await)
    }

    async fn leave_server(&self, ctx: &Context<'_>, server_id: ID) -> async_graphql::Result<bool> {
        let result: ApiResult<bool> = async {
            require_caller(ctx)?;
            let server = ServerId::parse(&server_id)?;
            committed(
                ctx,
                state(ctx)
                    .commands
                    .leave_server(&context(ctx), server)
                    .await?,
            );
            Ok(true)
        }
        .await;
        gql(result)
    }

    async fn set_member_role(
        &self,
        ctx: &Context<'_>,
        input: SetMemberRoleInput,
    ) -> async_graphql::Result<Member> {
        let result: ApiResult<Member> = async {
            require_caller(ctx)?;
            let server = ServerId::parse(&input.server_id)?;
            let user = UserId::parse(&input.user_id)?;
            let state = state(ctx);
            let record = state
                .commands
                .set_member_role(&context(ctx), server, user, input.role.into())
                .await?;
            let member = committed(ctx, record);
            Member::of(state, server, member.user_id, member.role.into()).await
        }
        .await;
        gql(result)
    }

    /// Removes a member below the caller's role (MODERATOR and up). They may rejoin with an
    /// invite; their subscriptions to the server's channels end with `FORBIDDEN`.
    async fn remove_member(
        &self,
        ctx: &Context<'_>,
        input: ModerateMemberInput,
    ) -> async_graphql::Result<bool> {
        let action = Moderation::Remove {
            reason: input.reason.as_deref(),
        };
        moderate(ctx, &input.server_id, &input.user_id, action).await
    }

    /// Bans a user from the server (MODERATOR and up; only users below the caller's role):
    /// a member is removed, and no invite lets them in until `unbanUser`. Users who never
    /// joined can be banned too. Banning twice changes nothing.
    async fn ban_user(
        &self,
        ctx: &Context<'_>,
        input: ModerateMemberInput,
    ) -> async_graphql::Result<bool> {
        let action = Moderation::Ban {
            reason: input.reason.as_deref(),
        };
        moderate(ctx, &input.server_id, &input.user_id, action).await
    }

    /// Lifts a ban (MODERATOR and up); `NOT_FOUND` when the user is not banned.
    async fn unban_user(
        &self,
        ctx: &Context<'_>,
        input: UnbanUserInput,
    ) -> async_graphql::Result<bool> {
        moderate(ctx, &input.server_id, &input.user_id, Moderation::Unban).await
    }

    /// Opens a direct conversation between the caller and `userIds` (one other person, or a
    /// group of at most 50 people in all), or answers with the one these people already have
    /// (a group only while nobody has joined or left it). `NOT_FOUND` names a user who does not
    /// exist.
    async fn open_direct_conversation(
        &self,
        ctx: &Context<'_>,
        user_ids: Vec<ID>,
    ) -> async_graphql::Result<Conversation> {
        let result: ApiResult<Conversation> = async {
            require_caller(ctx)?;
            // Refused before a long list is parsed, as the command would refuse it.
            if user_ids.len() > MAX_PARTICIPANTS {
                return Err(too_many_participants().into());
            }
            let others = user_ids
                .iter()
                .map(|id| UserId::parse(id))
                .collect::<Result<Vec<_>, _>>()?;
            let record = state(ctx)
                .commands
                .open_conversation(&context(ctx), &others)
                .await?;
            // Its messages and read state are served by the read models: wait for them.
            Ok(committed_and_projected(ctx, record).await.into())
        }
        .await;
        gql(result)
    }

    /// Adds people to a group the caller is in (any participant may); the group holds at most
    /// 50 people. `BAD_USER_INPUT` for a one-to-one conversation, `NOT_FOUND` for a
    /// conversation the caller is not in or a user who does not exist.
    async fn add_to_conversation(
        &self,
        ctx: &Context<'_>,
        input: AddToConversationInput,
    ) -> async_graphql::Result<Conversation> {
        let result: ApiResult<Conversation> = async {
            require_caller(ctx)?;
            // Refused before a long list is parsed, as the command would refuse it.
            if input.user_ids.len() > MAX_PARTICIPANTS {
                return Err(too_many_participants().into());
            }
            let conversation = conversation_id(&input.conversation_id)?;
            let users = input
                .user_ids
                .iter()
                .map(|id| UserId::parse(id))
                .collect::<Result<Vec<_>, _>>()?;
            let record = state(ctx)
                .commands
                .add_participants(&context(ctx), conversation, &users)
                .await?;
            Ok(committed_and_projected(ctx, record).await.into())
        }
        .await;
        gql(result)
    }

    /// Removes someone from a group: its owner only (`FORBIDDEN` for anyone else). Their
    /// subscriptions to it end, and they no longer see it; the history stays in the log.
    async fn remove_from_conversation(
        &self,
        ctx: &Context<'_>,
        input: RemoveFromConversationInput,
    ) -> async_graphql::Result<Conversation> {
        let result: ApiResult<Conversation> = async {
            require_caller(ctx)?;
            let conversation = conversation_id(&input.conversation_id)?;
            let user = UserId::parse(&input.user_id)?;
            let record = state(ctx)
                .commands
                .remove_participant(&context(ctx), conversation, user)
                .await?;
            Ok(committed_and_projected(ctx, record).await.into())
        }
        .await;
        gql(result)
    }

    /// The caller leaves a group (an owner who leaves hands the group to the longest-standing
    /// participant). A one-to-one conversation cannot be left.
    async fn leave_conversation(
        &self,
        ctx: &Context<'_>,
        conversation_id: ID,
    ) -> async_graphql::Result<bool> {
        let result: ApiResult<bool> = async {
            let caller = require_caller(ctx)?;
            let conversation = self::conversation_id(&conversation_id)?;
            let record = state(ctx)
                .commands
                .remove_participant(&context(ctx), conversation, caller)
                .await?;
            committed_and_projected(ctx, record).await;
            Ok(true)
        }
        .await;
        gql(result)
    }

    /// Names a group the caller is in, or clears its name (`null` or blank).
    async fn rename_conversation(
        &self,
        ctx: &Context<'_>,
        input: RenameConversationInput,
    ) -> async_graphql::Result<Conversation> {
        let result: ApiResult<Conversation> = async {
            require_caller(ctx)?;
            let conversation = conversation_id(&input.conversation_id)?;
            let record = state(ctx)
                .commands
                .rename_conversation(&context(ctx), conversation, input.name.as_deref())
                .await?;
            Ok(committed_and_projected(ctx, record).await.into())
        }
        .await;
        gql(result)
    }

    async fn send_message(
        &self,
        ctx: &Context<'_>,
        input: SendMessageInput,
    ) -> async_graphql::Result<Message> {
        let result: ApiResult<Message> = async {
            require_caller(ctx)?;
            let channel =
                channel_or_conversation(input.channel_id.as_ref(), input.conversation_id.as_ref())?;
            let message_id = |id: &Option<ID>, field: &str| {
                id.as_ref()
                    .map(|id| {
                        MessageId::parse(id)
                            .map_err(|_| ApiError::bad_input(format!("{field} is not a valid id")))
                    })
                    .transpose()
            };
            let links = Links {
                reply_to: message_id(&input.reply_to_id, "replyToId")?,
                thread_root: message_id(&input.thread_root_id, "threadRootId")?,
                also_in_channel: input.also_to_channel,
            };
            let record = state(ctx)
                .commands
                .send_linked_message(&message_context(ctx), channel, &input.body, links)
                .await?;
            Ok(committed(ctx, record).into())
        }
        .await;
        gql(result)
    }

    /// Marks the channel read up to `messageId` for the caller. The pointer never moves
    /// backwards: marking an older message leaves it where it is. Answers with the read state
    /// once the receipts read model has applied the marker.
    async fn mark_read(
        &self,
        ctx: &Context<'_>,
        input: MarkReadInput,
    ) -> async_graphql::Result<ReadState> {
        let result: ApiResult<ReadState> = async {
            let user = require_caller(ctx)?;
            let channel =
                channel_or_conversation(input.channel_id.as_ref(), input.conversation_id.as_ref())?;
            let message = MessageId::parse(&input.message_id)?;
            let record = state(ctx)
                .commands
                .mark_read(&context(ctx), channel, message)
                .await?;
            committed_and_projected(ctx, record).await;
            Ok(state(ctx).read.read_state(user, channel).await?.into())
        }
        .await;
        gql(result)
    }

    /// Forwards a message to a channel or conversation the caller may post in: a new message
    /// there with the same body, whose `forwardedFrom` (the original's place, author and time)
    /// shows only to those who may see the original. `NOT_FOUND` for a message the caller
    /// cannot see, `FORBIDDEN` where they may not post, `CONFLICT` for a deleted message. A
    /// forward mentions nobody.
    async fn forward_message(
        &self,
        ctx: &Context<'_>,
        input: ForwardMessageInput,
    ) -> async_graphql::Result<Message> {
        let result: ApiResult<Message> = async {
            require_caller(ctx)?;
            let message = MessageId::parse(&input.message_id)?;
            let to =
                channel_or_conversation(input.channel_id.as_ref(), input.conversation_id.as_ref())?;
            let record = state(ctx)
                .commands
                .forward_message(&context(ctx), message, to)
                .await?;
            Ok(committed(ctx, record).into())
        }
        .await;
        gql(result)
    }

    async fn edit_message(
        &self,
        ctx: &Context<'_>,
        input: EditMessageInput,
    ) -> async_graphql::Result<Message> {
        let result: ApiResult<Message> = async {
            require_caller(ctx)?;
            let message = MessageId::parse(&input.message_id)?;
            let record = state(ctx)
                .commands
                .edit_message(&message_context(ctx), message, &input.body)
                .await?;
            Ok(committed(ctx, record).into())
        }
        .await;
        gql(result)
    }

    /// Reacts to a message with an emoji: a Unicode emoji (`👍`) or a custom emoji's name
    /// between colons (`:party_parrot:`). Reacting again with the same emoji changes nothing.
    /// Whoever can read a live channel may react (archived channels are read-only);
    /// `CONFLICT` when the message already carries the most distinct emoji allowed (20 unless
    /// configured otherwise) and this one is not among them.
    async fn add_reaction(
        &self,
        ctx: &Context<'_>,
        message_id: ID,
        emoji: String,
    ) -> async_graphql::Result<Message> {
        let result: ApiResult<Message> = async {
            require_caller(ctx)?;
            let message = MessageId::parse(&message_id)?;
            let state = state(ctx);
            let record = state
                .commands
                .add_reaction(
                    &context(ctx),
                    message,
                    &emoji,
                    state.limits.max_reaction_kinds,
                )
                .await?;
            Ok(committed(ctx, record).into())
        }
        .await;
        gql(result)
    }

    /// Takes back the caller's reaction with an emoji; taking back one that is not there
    /// changes nothing.
    async fn remove_reaction(
        &self,
        ctx: &Context<'_>,
        message_id: ID,
        emoji: String,
    ) -> async_graphql::Result<Message> {
        let result: ApiResult<Message> = async {
            require_caller(ctx)?;
            let message = MessageId::parse(&message_id)?;
            let record = state(ctx)
                .commands
                .remove_reaction(&context(ctx), message, &emoji)
                .await?;
            Ok(committed(ctx, record).into())
        }
        .await;
        gql(result)
    }

    /// Pins a message in its channel or conversation (`MODERATOR` and up in a server's
    /// channel, either participant in a conversation; not in an archived channel). Pinning it
    /// again changes nothing; `CONFLICT` once the channel holds the most pins allowed (50
    /// unless configured otherwise). Answers with the message as the read model shows it.
    async fn pin_message(
        &self,
        ctx: &Context<'_>,
        message_id: ID,
    ) -> async_graphql::Result<Message> {
        let result: ApiResult<Message> = async {
            require_caller(ctx)?;
            let message = MessageId::parse(&message_id)?;
            let state = state(ctx);
            let pins = state
                .commands
                .pin_message(&context(ctx), message, state.limits.max_pins)
                .await?;
            projected_message(ctx, pins, message).await
        }
        .await;
        gql(result)
    }

    /// Unpins a message; unpinning one that is not pinned changes nothing.
    async fn unpin_message(
        &self,
        ctx: &Context<'_>,
        message_id: ID,
    ) -> async_graphql::Result<Message> {
        let result: ApiResult<Message> = async {
            require_caller(ctx)?;
            let message = MessageId::parse(&message_id)?;
            let pins = state(ctx)
                .commands
                .unpin_message(&context(ctx), message)
                .await?;
            projected_message(ctx, pins, message).await
        }
        .await;
        gql(result)
    }

    async fn delete_message(
        &self,
        ctx: &Context<'_>,
        message_id: ID,
    ) -> async_graphql::Result<Message> {
        let result: ApiResult<Message> = async {
            require_caller(ctx)?;
            let message = MessageId::parse(&message_id)?;
            let record = state(ctx)
                .commands
                .delete_message(&context(ctx), message)
                .await?;
            Ok(committed(ctx, record).into())
        }
        .await;
        gql(result)
    }
}

/// Blocks or unblocks `user_id` for the caller; once the catalog has it (waited for here, a
/// few seconds at most), their next read on this instance, and every update their
/// subscriptions here deliver, sees it.
async fn set_blocked(ctx: &Context<'_>, user_id: &ID, blocked: bool) -> ApiResult<bool> {
    let me = require_caller(ctx)?;
    let other =
        UserId::parse(user_id).map_err(|_| ApiError::bad_input("userId is not a valid id"))?;
    let state = state(ctx);
    let record = state
        .commands
        .set_blocked(&context(ctx), other, blocked)
        .await?;
    state
        .wait_until_projected(&record.position.event, std::time::Duration::from_secs(5))
        .await;
    let blocked = committed(ctx, record);
    ctx.data_unchecked::<std::sync::Arc<crate::blocks::BlockLists>>()
        .forget(me);
    Ok(blocked)
}
