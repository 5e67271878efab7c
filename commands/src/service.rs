//! The command service: turns requests into aggregate commands, runs them through cqrs-es with
//! the request's metadata, and reports the log position a client can wait on.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use aether_domain::conversation::{
    group_conversation_id, Conversation, ConversationCommand, ConversationError, GROUP_GENERATIONS,
    MAX_PARTICIPANTS,
};
use aether_domain::message::{
    ForwardOrigin, Mentions, Message, MessageCommand, MessageLinks, Reaction,
};
use aether_domain::pins::{pins_id, ChannelPins, PinsCommand};
use aether_domain::receipts::{read_marker_id, ReadMarker, ReadMarkerCommand};
use aether_domain::server::{Server, ServerCommand};
use aether_domain::session::{Session, SessionCommand, SessionEndReason, SessionError};
use aether_domain::user::{User, UserCommand, UserError};
use aether_domain::{
    AvatarUrl, ChannelAccess, ChannelCategory, ChannelId, ChannelKind, ChannelName, ChannelTopic,
    ContentPolicy, ConversationName, DisplayName, Emoji, InviteCode, MessageBody, MessageId,
    ModerationReason, Password, Role, ServerId, ServerName, StatusText, UserId, Username,
};
use aether_moderation::{enforce, RuleStage};
use aether_schemas::Metadata;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistedEventStore, PersistenceError, SerializedEvent};
use cqrs_es::{Aggregate, AggregateContext, AggregateError, CqrsFramework, EventStore};
use rand::distributions::Alphanumeric;
use rand::Rng;
use tracing::Instrument;
use uuid::Uuid;

mod review;

pub use review::ReviewDecision;

use crate::auth::{hash_password, verify_password, ExternalIdentity};
use crate::error::{CommandError, DomainRefusal, ErrorCode};
use crate::store::{DirectoryKind, EventRef, WriteStore, Written};

/// How often a command that lost an optimistic-concurrency race is retried before the client
/// gets `CONFLICT`.
const CONFLICT_RETRIES: usize = 3;
/// The longest an invite may live.
pub const MAX_INVITE_LIFETIME_SECS: i64 = 30 * 24 * 60 * 60;
const INVITE_CODE_LEN: usize = 10;
/// Servers whose state the command service keeps between commands.
const CACHED_SERVERS: usize = 4_096;
/// Channel → server look-ups kept between commands.
const CACHED_CHANNELS: usize = 65_536;
/// Opened conversations (their participants never change) kept between commands.
const CACHED_CONVERSATIONS: usize = 65_536;
/// Users whose state (whom they block) the command service keeps between commands.
const CACHED_USERS: usize = 65_536;

/// What a moderator does to a user of a server. Removal and bans act only on roles below the
/// moderator's; a removed member may rejoin with an invite, a banned user may not until unbanned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moderation<'a> {
    Remove { reason: Option<&'a str> },
    Ban { reason: Option<&'a str> },
    Unban,
}

/// Who is acting, on behalf of which request, and when.
#[derive(Clone, Debug)]
pub struct CommandContext {
    pub actor: Option<UserId>,
    pub correlation_id: Uuid,
    pub at: DateTime<Utc>,
    /// Who is online now, for an `@here` in a message; without it `@here` reaches nobody.
    pub online: Option<OnlineNow>,
}

/// Whether a user is online now (connected and not away or offline), as the instance's
/// presence knows it.
#[derive(Clone)]
pub struct OnlineNow(pub Arc<dyn Fn(UserId) -> bool + Send + Sync>);

impl std::fmt::Debug for OnlineNow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnlineNow")
    }
}

impl CommandContext {
    pub fn new(actor: Option<UserId>) -> Self {
        Self {
            actor,
            correlation_id: Uuid::now_v7(),
            at: Utc::now(),
            online: None,
        }
    }

    /// The context with `online` to resolve `@here`.
    pub fn with_online(mut self, online: OnlineNow) -> Self {
        self.online = Some(online);
        self
    }

    fn metadata(&self, routing_key: String) -> HashMap<String, String> {
        let correlation_id = self.correlation_id.to_string();
        Metadata {
            actor: self.actor.map(|actor| actor.to_string()),
            causation_id: correlation_id.clone(),
            correlation_id,
            occurred_at: self.at,
            routing_key,
            // The request's span (or the command's, inside it): the relay publishes the
            // events as its children.
            traceparent: aether_kafka::trace::current_traceparent(),
        }
        .to_map()
    }

    fn actor(&self) -> Result<UserId, CommandError> {
        self.actor
            .ok_or_else(|| CommandError::unauthenticated("sign in to do this"))
    }
}

/// The result of a command and where its last event was written: a client that passes this
/// back as a consistency token reads its own write.
#[derive(Clone, Debug)]
pub struct Committed<T> {
    pub value: T,
    pub position: Written,
}

/// The message of a password change refused for a wrong current password.
pub const WRONG_CURRENT_PASSWORD: &str = "the current password is wrong";

/// A refused sign-in: why, and the existing account whose password was wrong, if that is what
/// it was.
#[derive(Debug)]
pub struct LoginRefused {
    pub account: Option<UserId>,
    pub error: CommandError,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub status_text: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerRecord {
    pub id: ServerId,
    pub name: String,
    pub owner_id: UserId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelRecord {
    pub id: ChannelId,
    pub server_id: ServerId,
    pub name: String,
    pub kind: ChannelKind,
    pub private: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InviteRecord {
    pub code: String,
    pub server_id: ServerId,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    pub server_id: ServerId,
    pub user_id: UserId,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: MessageId,
    /// The channel, or the conversation.
    pub channel_id: ChannelId,
    /// `None` for a message in a conversation.
    pub server_id: Option<ServerId>,
    pub author_id: UserId,
    /// `None` once deleted.
    pub body: Option<String>,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    /// The message aggregate's version: 1 when sent, one more for each change (an edit, a
    /// reaction added or taken back, the deletion).
    pub version: i64,
    /// Who reacted with what, as the message holds them after the command.
    pub reactions: Vec<Reaction>,
    pub reply_to_id: Option<MessageId>,
    pub thread_root_id: Option<MessageId>,
    /// The message it forwards, when it is a forward.
    pub forwarded_from: Option<ForwardOrigin>,
}

type Framework<R, A> = CqrsFramework<A, PersistedEventStore<R, A>>;

/// A map that forgets an arbitrary entry when it is full: enough for a cache whose every entry
/// is checked or immutable.
struct Bounded<K, V> {
    entries: Mutex<HashMap<K, V>>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> Bounded<K, V> {
    fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        self.entries.lock().ok()?.get(key).cloned()
    }

    /// Stores `value` unless the entry already there should be kept (`keep(old, new)`).
    fn put(&self, key: K, value: V, keep: impl FnOnce(&V, &V) -> bool) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.get(&key).is_some_and(|old| keep(old, &value)) {
            return;
        }
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        entries.insert(key, value);
    }
}

/// An aggregate's state as of its event `sequence`, kept between commands.
#[derive(Clone)]
struct Cached<A> {
    state: Arc<A>,
    sequence: usize,
}

impl<A: Default> Default for Cached<A> {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            sequence: 0,
        }
    }
}

/// A sign-in session and the generation of its one valid refresh token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub session_id: Uuid,
    pub user_id: UserId,
    pub generation: u32,
}

/// A direct conversation and the people in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationRecord {
    pub id: ChannelId,
    pub opened_by: UserId,
    /// Sorted, the opener included.
    pub participants: Vec<UserId>,
    pub opened_at: DateTime<Utc>,
    /// Opened with three or more people: its people and name may change.
    pub group: bool,
    pub owner: Option<UserId>,
    pub name: Option<String>,
}

/// A user's read marker in a channel, as a command left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadMarkRecord {
    pub user_id: UserId,
    pub channel_id: ChannelId,
    pub message_id: MessageId,
    pub read_at: DateTime<Utc>,
}

/// Every command of the chat domain, over one event store.
pub struct ChatCommands<R: WriteStore> {
    store: R,
    users: Framework<R, User>,
    servers: Framework<R, Server>,
    /// Server states by id. Never trusted as they are: each use first reads the events stored
    /// after the cached sequence (usually none), so a change made a moment ago — by this process
    /// or any other — is seen by the next command, without replaying the server's history.
    server_states: Bounded<String, Cached<Server>>,
    /// Channel id → server id. A channel never moves, so an entry never goes stale.
    channel_servers: Bounded<ChannelId, String>,
    /// Conversation states by id, brought up to date before each use like the servers'.
    conversations: Bounded<String, Cached<Conversation>>,
    /// User states by id (whom each blocks), brought up to date before each use likewise.
    user_states: Bounded<String, Cached<User>>,
    /// The rule stage every new or edited message body goes through.
    rules: RuleStage,
}

impl<R: WriteStore> std::fmt::Debug for ChatCommands<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatCommands").finish_non_exhaustive()
    }
}

fn framework<R: WriteStore, A: Aggregate<Services = ()>>(store: &R) -> Framework<R, A> {
    CqrsFramework::new(
        PersistedEventStore::new_event_store(store.clone()),
        vec![],
        (),
    )
}

impl<R: WriteStore> ChatCommands<R> {
    pub fn new(store: R) -> Self {
        // Conflicts are rare: their series exist from the start, at zero, so that a rate over
        // them is defined before the first one.
        for aggregate in [
            User::TYPE,
            Session::TYPE,
            Server::TYPE,
            Message::TYPE,
            Conversation::TYPE,
            ReadMarker::TYPE,
            ChannelPins::TYPE,
        ] {
            crate::metrics::register_conflicts(aggregate);
        }
        Self {
            users: framework(&store),
            servers: framework(&store),
            store,
            server_states: Bounded::new(CACHED_SERVERS),
            channel_servers: Bounded::new(CACHED_CHANNELS),
            conversations: Bounded::new(CACHED_CONVERSATIONS),
            user_states: Bounded::new(CACHED_USERS),
            rules: RuleStage::new(),
        }
    }

    pub fn store(&self) -> &R {
        &self.store
    }

    /// Loads an aggregate's current state straight from the event store.
    pub async fn load<A>(&self, id: &str) -> Result<A, CommandError>
    where
        A: Aggregate<Services = ()>,
        A::Error: DomainRefusal,
    {
        let store: PersistedEventStore<R, A> =
            PersistedEventStore::new_event_store(self.store.clone());
        let mut context = store.load_aggregate(id).await?;
        Ok(std::mem::take(context.aggregate()))
    }

    /// Loads an aggregate's current state and the sequence of its newest event.
    async fn load_at<A>(&self, id: &str) -> Result<(A, usize), CommandError>
    where
        A: Aggregate<Services = ()>,
        A::Error: DomainRefusal,
    {
        let store: PersistedEventStore<R, A> =
            PersistedEventStore::new_event_store(self.store.clone());
        let mut context = store.load_aggregate(id).await?;
        let sequence = context.current_sequence;
        Ok((std::mem::take(context.aggregate()), sequence))
    }

    /// A server's current state: the cached one brought up to date with the events stored
    /// after it (one query, usually answered with nothing).
    async fn current_server(&self, id: &str) -> Result<Arc<Server>, CommandError> {
        Ok(self.current(&self.server_states, id).await?.state)
    }

    /// The cached state of aggregate `id` brought up to date with the events stored after it:
    /// a change made a moment ago — by this process or any other — is seen by the next command,
    /// without replaying the aggregate's history.
    async fn current<A>(
        &self,
        cache: &Bounded<String, Cached<A>>,
        id: &str,
    ) -> Result<Cached<A>, CommandError>
    where
        A: Aggregate<Services = ()> + Clone,
        A::Error: DomainRefusal,
    {
        let cached = cache.get(&id.to_owned()).unwrap_or_default();
        let newer = self
            .store
            .get_last_events::<A>(id, cached.sequence)
            .await
            .map_err(persistence::<A>)?;
        if newer.is_empty() {
            return Ok(cached);
        }
        let mut state = A::clone(&cached.state);
        let mut sequence = cached.sequence;
        for event in newer {
            let envelope: cqrs_es::EventEnvelope<A> = event.try_into().map_err(persistence::<A>)?;
            sequence = envelope.sequence;
            state.apply(envelope.payload);
        }
        let current = Cached {
            state: Arc::new(state),
            sequence,
        };
        cache.put(id.to_owned(), current.clone(), |old, new| {
            old.sequence >= new.sequence
        });
        Ok(current)
    }

    /// Decides `command` against `aggregate` (its state as of event `sequence`) and appends the
    /// resulting events with `metadata` — the same rows `CqrsFramework::execute_with_metadata`
    /// writes, without its load: returns the state after the events and where the last one
    /// was written.
    async fn decide<A>(
        &self,
        id: &str,
        aggregate: A,
        sequence: usize,
        command: A::Command,
        metadata: &HashMap<String, String>,
    ) -> Result<(A, Written), AggregateError<A::Error>>
    where
        A: Aggregate<Services = ()>,
    {
        let span = tracing::info_span!("command", otel.name = "command", aggregate = A::TYPE);
        self.decide_in_span(id, aggregate, sequence, command, metadata)
            .instrument(span)
            .await
    }

    async fn decide_in_span<A>(
        &self,
        id: &str,
        mut aggregate: A,
        sequence: usize,
        command: A::Command,
        metadata: &HashMap<String, String>,
    ) -> Result<(A, Written), AggregateError<A::Error>>
    where
        A: Aggregate<Services = ()>,
    {
        // `handle` applies each event to `aggregate` as it decides it.
        let sink = EventSink::default();
        aggregate
            .handle(command, &(), &sink)
            .await
            .map_err(AggregateError::UserError)?;
        let events = sink.collect().await;
        let envelopes: Vec<cqrs_es::EventEnvelope<A>> = events
            .into_iter()
            .zip(sequence + 1..)
            .map(|(payload, sequence)| cqrs_es::EventEnvelope {
                aggregate_id: id.to_owned(),
                sequence,
                payload,
                metadata: metadata.clone(),
            })
            .collect();
        let serialized = envelopes
            .iter()
            .map(SerializedEvent::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let log = if serialized.is_empty() {
            self.store
                .position_of(A::TYPE, id)
                .await
                .map_err(|e| AggregateError::DatabaseConnectionError(Box::new(e)))?
                .log
        } else {
            self.store.append(&serialized).await?
        };
        let last = sequence + envelopes.len();
        let written = Written {
            log,
            event: EventRef {
                aggregate_type: A::TYPE.to_owned(),
                aggregate_id: id.to_owned(),
                sequence: i64::try_from(last).unwrap_or(i64::MAX),
            },
        };
        Ok((aggregate, written))
    }

    /// [`Self::decide`], reloading the aggregate and deciding again when another writer got
    /// there first, up to [`CONFLICT_RETRIES`] times.
    async fn decide_retrying<A>(
        &self,
        id: &str,
        mut state: A,
        mut sequence: usize,
        command: A::Command,
        metadata: &HashMap<String, String>,
    ) -> Result<(A, Written), CommandError>
    where
        A: Aggregate<Services = ()>,
        A::Command: Clone,
        A::Error: DomainRefusal,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let decided = self
                .decide(id, state, sequence, command.clone(), metadata)
                .await;
            if matches!(decided, Err(AggregateError::AggregateConflict)) {
                crate::metrics::conflict(A::TYPE);
            }
            match decided {
                Err(AggregateError::AggregateConflict) if attempt < CONFLICT_RETRIES => {
                    (state, sequence) = self.load_at::<A>(id).await?;
                }
                result => return counted::<A, _>(result.map_err(CommandError::from)),
            }
        }
    }

    async fn position<A: Aggregate>(&self, id: &str) -> Result<Written, CommandError> {
        let position = self.store.position_of(A::TYPE, id).await?;
        Ok(Written {
            log: position.log,
            event: EventRef {
                aggregate_type: A::TYPE.to_owned(),
                aggregate_id: id.to_owned(),
                sequence: position.sequence,
            },
        })
    }

    /// Runs one command, retrying a few times when another writer got there first.
    async fn execute<A>(
        framework: &Framework<R, A>,
        id: &str,
        command: A::Command,
        metadata: HashMap<String, String>,
    ) -> Result<(), CommandError>
    where
        A: Aggregate<Services = ()>,
        A::Command: Clone,
        A::Error: DomainRefusal,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let executed = framework
                .execute_with_metadata(id, command.clone(), metadata.clone())
                .instrument(tracing::info_span!(
                    "command",
                    otel.name = "command",
                    aggregate = A::TYPE
                ))
                .await;
            if matches!(executed, Err(AggregateError::AggregateConflict)) {
                crate::metrics::conflict(A::TYPE);
            }
            match executed {
                Err(AggregateError::AggregateConflict) if attempt < CONFLICT_RETRIES => continue,
                result => return counted::<A, _>(result.map_err(CommandError::from)),
            }
        }
    }

    async fn server_of(
        &self,
        kind: DirectoryKind,
        key: &str,
        what: &str,
    ) -> Result<ServerId, CommandError> {
        let id = self
            .store
            .lookup(kind, key)
            .await?
            .ok_or_else(|| CommandError::not_found(what))?;
        ServerId::parse(&id).map_err(|e| CommandError::internal(e.to_string()))
    }

    /// An opened conversation as it is now, or `None` if there is none with this id.
    async fn conversation(&self, id: ChannelId) -> Result<Option<Arc<Conversation>>, CommandError> {
        let current = self.current(&self.conversations, &id.to_string()).await?;
        Ok(current.state.id.is_some().then_some(current.state))
    }

    /// What `user` may do in a channel, decided from the owning server's current state; for a
    /// direct conversation, from its participants.
    pub async fn channel_access(
        &self,
        channel_id: ChannelId,
        user: UserId,
    ) -> Result<ChannelAccess, CommandError> {
        Ok(self.channel_access_and_policy(channel_id, user).await?.0)
    }

    /// [`Self::channel_access`] and the content policy of the channel's server (a direct
    /// conversation has no server, and allows everything), from one look-up.
    async fn channel_access_and_policy(
        &self,
        channel_id: ChannelId,
        user: UserId,
    ) -> Result<(ChannelAccess, ContentPolicy), CommandError> {
        let server_id = match self.channel_servers.get(&channel_id) {
            Some(server_id) => server_id,
            None => {
                let Some(server_id) = self
                    .store
                    .lookup(DirectoryKind::Channel, &channel_id.to_string())
                    .await?
                else {
                    let access = match self.conversation(channel_id).await? {
                        Some(conversation) => conversation.access(user),
                        None => ChannelAccess::UnknownChannel,
                    };
                    return Ok((access, ContentPolicy::Allow));
                };
                self.channel_servers
                    .put(channel_id, server_id.clone(), |_, _| true);
                server_id
            }
        };
        let server = self.current_server(&server_id).await?;
        Ok((
            server.channel_access(channel_id, user),
            server.content_policy,
        ))
    }

    /// The rule stage: `body` as the server's content policy has it stored (as written, or
    /// masked), or refused with `BAD_USER_INPUT` and the reason.
    fn screened(
        &self,
        policy: ContentPolicy,
        body: MessageBody,
    ) -> Result<MessageBody, CommandError> {
        match enforce(&self.rules, policy, body.as_ref()) {
            Ok(Cow::Borrowed(_)) => Ok(body),
            Ok(Cow::Owned(masked)) => Ok(MessageBody::parse(&masked)?),
            Err(blocked) => Err(CommandError::new(
                ErrorCode::BadUserInput,
                blocked.to_string(),
            )),
        }
    }

    // --- accounts -------------------------------------------------------------------------

    pub async fn register(
        &self,
        ctx: &CommandContext,
        username: &str,
        password: &str,
        display_name: Option<&str>,
    ) -> Result<Committed<UserRecord>, CommandError> {
        let username = Username::parse(username)?;
        let password = Password::parse(password)?;
        let display_name = DisplayName::parse(display_name.unwrap_or(username.as_str()))?;
        if self
            .store
            .lookup(DirectoryKind::Username, username.as_str())
            .await?
            .is_some()
        {
            return Err(CommandError::new(
                ErrorCode::Conflict,
                format!("the username '{username}' is taken"),
            ));
        }
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| CommandError::internal(e.to_string()))?
            .map_err(|e| CommandError::internal(e.to_string()))?;
        let user_id = UserId::new();
        let id = user_id.to_string();
        let record = UserRecord {
            id: user_id,
            username: username.to_string(),
            display_name: display_name.to_string(),
            avatar_url: None,
            status_text: None,
        };
        let command = UserCommand::RegisterUser {
            user_id,
            username,
            display_name,
            password_hash,
            at: ctx.at,
        };
        let ctx = CommandContext {
            actor: Some(user_id),
            ..ctx.clone()
        };
        Self::execute(&self.users, &id, command, ctx.metadata(id.clone()))
            .await
            .map_err(|e| match e.code {
                ErrorCode::Conflict => CommandError::new(
                    ErrorCode::Conflict,
                    format!("the username '{}' is taken", record.username),
                ),
                _ => e,
            })?;
        Ok(Committed {
            position: self.position::<User>(&id).await?,
            value: record,
        })
    }

    /// The account of an identity vouched for by an external OpenID Connect issuer, created
    /// the first time one of its tokens arrives (`UserRegistered` without a password, then
    /// `ExternalIdentityLinked`). The username is `oidc-` and 16 hex digits of the account id;
    /// the display name the issuer's `name`, else its `preferred_username`, when valid.
    pub async fn ensure_external_user(
        &self,
        identity: &ExternalIdentity,
    ) -> Result<UserId, CommandError> {
        let user_id = identity.user_id();
        let id = user_id.to_string();
        let digits = user_id.as_uuid().simple().to_string();
        let username = Username::parse(&format!("oidc-{}", &digits[..16]))?;
        let display_name = [&identity.name, &identity.preferred_username]
            .into_iter()
            .flatten()
            .find_map(|name| DisplayName::parse(name).ok())
            .map_or_else(|| DisplayName::parse(username.as_str()), Ok)?;
        let command = UserCommand::RegisterExternalUser {
            user_id,
            username,
            display_name,
            issuer: identity.issuer.clone(),
            subject: identity.subject.clone(),
            at: Utc::now(),
        };
        let ctx = CommandContext::new(Some(user_id));
        match Self::execute(&self.users, &id, command, ctx.metadata(id.clone())).await {
            Ok(_) => Ok(user_id),
            // Created already (by an earlier request, or another instance at the same time).
            Err(error) if error.code == ErrorCode::Conflict => match self.user(user_id).await? {
                Some(_) => Ok(user_id),
                None => Err(error),
            },
            Err(error) => Err(error),
        }
    }

    /// The account a username and password sign in to. The answer does not say which of the two
    /// was wrong. A wrong password for an existing account is recorded (`LoginFailed`) before
    /// the answer; [`Self::check_login`] answers first and leaves the recording to the caller.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<UserRecord, CommandError> {
        match self.check_login(username, password).await {
            Ok(user) => Ok(user),
            Err(LoginRefused { account, error }) => {
                if let Some(account) = account {
                    self.record_failed_login(account).await;
                }
                Err(error)
            }
        }
    }

    /// As [`Self::authenticate`], without writing anything: a refusal names the existing
    /// account whose password was wrong, for [`Self::record_failed_login`]. Every refusal
    /// costs one password verification, whether the account exists or not (an unknown one is
    /// checked against a dummy hash), so response times do not reveal which accounts exist.
    pub async fn check_login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<UserRecord, LoginRefused> {
        let refused = |account| LoginRefused {
            account,
            error: CommandError::unauthenticated("wrong username or password"),
        };
        let dummy = |password: String| async move {
            // Spend the time a real check would, so response times do not reveal accounts.
            let _ = tokio::task::spawn_blocking(move || {
                verify_password(&password, crate::auth::DUMMY_HASH)
            })
            .await;
        };
        let Ok(username) = Username::parse(username) else {
            dummy(password.to_owned()).await;
            return Err(refused(None));
        };
        let found = self
            .store
            .lookup(DirectoryKind::Username, username.as_str())
            .await
            .map_err(|error| LoginRefused {
                account: None,
                error: error.into(),
            })?;
        let Some(user_id) = found else {
            // The same reads as for an account: a load (of nobody) and a verification.
            let _ = self.load::<User>(&Uuid::nil().to_string()).await;
            dummy(password.to_owned()).await;
            return Err(refused(None));
        };
        let user: User = self.load(&user_id).await.map_err(|error| LoginRefused {
            account: None,
            error,
        })?;
        let (Some(id), Some(hash), Some(display_name)) = (
            user.id,
            user.password_hash.clone(),
            user.display_name.clone(),
        ) else {
            dummy(password.to_owned()).await;
            return Err(refused(None));
        };
        let password = password.to_owned();
        let valid = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|e| LoginRefused {
                account: None,
                error: CommandError::internal(e.to_string()),
            })?;
        if !valid {
            return Err(refused(Some(id)));
        }
        Ok(UserRecord {
            id,
            username: username.to_string(),
            display_name: display_name.to_string(),
            avatar_url: user.avatar_url.map(AvatarUrl::into_inner),
            status_text: user.status_text.map(StatusText::into_inner),
        })
    }

    /// Records a wrong password for `account` (`LoginFailed`), a security event for auditors.
    /// A failure to record is logged; the refusal stands either way.
    pub async fn record_failed_login(&self, account: UserId) {
        let ctx = CommandContext::new(None);
        let id = account.to_string();
        let recorded = async {
            let (user, sequence) = self.load_at::<User>(&id).await?;
            self.decide_retrying(
                &id,
                user,
                sequence,
                UserCommand::RecordFailedLogin { at: ctx.at },
                &ctx.metadata(id.clone()),
            )
            .await
        }
        .await;
        if let Err(error) = recorded {
            tracing::warn!(%error, "a failed sign-in could not be recorded");
        }
    }

    pub async fn user(&self, id: UserId) -> Result<Option<UserRecord>, CommandError> {
        let user: User = self.load(&id.to_string()).await?;
        Ok(match (user.id, user.username, user.display_name) {
            (Some(id), Some(username), Some(display_name)) => Some(UserRecord {
                id,
                username: username.into_inner(),
                display_name: display_name.into_inner(),
                avatar_url: user.avatar_url.map(AvatarUrl::into_inner),
                status_text: user.status_text.map(StatusText::into_inner),
            }),
            _ => None,
        })
    }

    // --- servers --------------------------------------------------------------------------

    pub async fn create_server(
        &self,
        ctx: &CommandContext,
        name: &str,
    ) -> Result<Committed<ServerRecord>, CommandError> {
        let owner = ctx.actor()?;
        let name = ServerName::parse(name)?;
        let server_id = ServerId::new();
        let id = server_id.to_string();
        let record = ServerRecord {
            id: server_id,
            name: name.to_string(),
            owner_id: owner,
        };
        let command = ServerCommand::CreateServer {
            server_id,
            name,
            owner,
            at: ctx.at,
        };
        Self::execute(&self.servers, &id, command, ctx.metadata(id.clone())).await?;
        Ok(Committed {
            position: self.position::<Server>(&id).await?,
            value: record,
        })
    }

    async fn server_command(
        &self,
        ctx: &CommandContext,
        server_id: ServerId,
        command: ServerCommand,
    ) -> Result<Written, CommandError> {
        let id = server_id.to_string();
        Self::execute(&self.servers, &id, command, ctx.metadata(id.clone())).await?;
        self.position::<Server>(&id).await
    }

    pub async fn create_channel(
        &self,
        ctx: &CommandContext,
        server_id: ServerId,
        name: &str,
        kind: ChannelKind,
        private: bool,
    ) -> Result<Committed<ChannelRecord>, CommandError> {
        let actor = ctx.actor()?;
        let name = ChannelName::parse(name)?;
        let channel_id = ChannelId::new();
        let record = ChannelRecord {
            id: channel_id,
            server_id,
            name: name.to_string(),
            kind,
            private,
        };
        let command = ServerCommand::CreateChannel {
            actor,
            channel_id,
            name,
            kind,
            private,
        };
        let position = self.server_command(ctx, server_id, command).await?;
        Ok(Committed {
            value: record,
            position,
        })
    }

    pub async fn create_invite(
        &self,
        ctx: &CommandContext,
        server_id: ServerId,
        max_uses: Option<u32>,
        expires_in_seconds: Option<i64>,
    ) -> Result<Committed<InviteRecord>, CommandError> {
        let actor = ctx.actor()?;
        let expires_at = match expires_in_seconds {
            None => None,
            Some(secs) if (1..=MAX_INVITE_LIFETIME_SECS).contains(&secs) => {
                Some(ctx.at + ChronoDuration::seconds(secs))
            }
            Some(_) => {
                return Err(CommandError::new(
                    ErrorCode::BadUserInput,
                    format!("expiresInSeconds must be between 1 and {MAX_INVITE_LIFETIME_SECS}"),
                ))
            }
        };
        let raw: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(INVITE_CODE_LEN)
            .map(char::from)
            .collect();
        let code = InviteCode::parse(&raw)?;
        let record = InviteRecord {
            code: raw,
            server_id,
            max_uses,
            uses: 0,
            expires_at,
        };
        let command = ServerCommand::CreateInvite {
            actor,
            code,
            max_uses,
            expires_at,
            at: ctx.at,
        };
        let position = self.server_command(ctx, server_id, command).await?;
        Ok(Committed {
            value: record,
            position,
        })
    }

    pub async fn join_server(
        &self,
        ctx: &CommandContext,
        code: &str,
    ) -> Result<Committed<ServerId>, CommandError> {
        let user = ctx.actor()?;
        let code = InviteCode::parse(code)?;
        let server_id = self
            .server_of(DirectoryKind::Invite, code.as_str(), "invite")
            .await?;
        let command = ServerCommand::JoinServer {
            user,
            code,
            at: ctx.at,
        };
        let position = self.server_command(ctx, server_id, command).await?;
        Ok(Committed {
            value: server_id,
            position,
        })
    }

    pub async fn rename_server(
        &self,
        ctx: &CommandContext,
        server_id: ServerId,
        name: &str,
    ) -> Result<Committed<()>, CommandError> {
        let actor = ctx.actor()?;
        let name = ServerName::parse(name)?;
        let position = self
            .server_command(ctx, server_id, ServerCommand::RenameServer { actor, name })
            .await?;
        Ok(Committed {
            value: (),
            position,
        })
    }

    /// Chooses what the rule stage does with offensive messages in a server (admins and up).
    pub async fn set_content_policy(
        &self,
        ctx: &CommandContext,
        server_id: ServerId,
        policy: ContentPolicy,
    ) -> Result<Committed<()>, CommandError> {
        let actor = ctx.actor()?;
        let position = self
            .server_command(
                ctx,
                server_id,
                ServerCommand::SetContentPolicy { actor, policy },
            )
            .await?;
        Ok(Committed {
            value: (),
            position,
        })
    }

    pub async fn rename_channel(
        &self,
        ctx: &CommandContext,
        channel_id: ChannelId,
        name: &str,
    ) -> Result<Committed<ServerId>, CommandError> {
        let actor = ctx.actor()?;
        let name = ChannelName::parse(name)?;
        let server_id = self
            .server_of(DirectoryKind::Channel, &channel_id.to_string(), "channel")
            .await?;
        let command = ServerCommand::RenameChannel {
            actor,
            channel_id,
            name,
        };
        let position = self.server_command(ctx, server_id, command).await?;
        Ok(Committed {
            value: server_id,
            position,
        })
    }

    pub async fn archive_channel(
        &self,
        ctx: &CommandContext,
        channel_id: ChannelId,
    ) -> Result<Committed<ServerId>, CommandError> {
        let actor = ctx.actor()?;
        let server_id = self
            .server_of(DirectoryKind::Channel, &channel_id.to_string(), "channel")
            .await?;
        let command = ServerCommand::ArchiveChannel { actor, channel_id };
        let position = self.server_command(ctx, server_id, command).await?;
        Ok(Committed {
            value: server_id,
            position,
        })
    }

    /// Deletes a server (its owner only); every later command about it is refused as if it
    /// never existed.
    pub async fn delete_server(
        &self,
        ctx: &CommandContext,
        server_id: ServerId,
    ) -> Result<Committed<()>, CommandError> {
        let actor = ctx.actor()?;
        let command = ServerCommand::DeleteServer { actor, at: ctx.at };
        let position = self.server_command(ctx, server_id, command).await?;
        Ok(Committed {
            value: (),
            position,
        })
    }

    /// Hands a server to `new_owner`, a member (its owner only); the old owner becomes ADMIN.
    pub async fn transfer_ownership(
        &self,
        ctx: &CommandContext,
        server_id: ServerId,
        new_owner: UserId,
    ) -> Result<Committed<()>, CommandError> {
        let actor = ctx.actor()?;
        let command = ServerCommand::TransferOwnership { actor, new_owner };
        let position = self.server_command(ctx, server_id, command).await?;
        Ok(Committed {
            value: (),
            position,
        })
    }

    /// Sets a channel's topic, or clears it when `topic` is `None`.
    pub async fn set_channel_topic(
        &self,
        ctx: &CommandContext,
        channel_id: ChannelId,
        topic: Option<&str>,
    ) -> Result<Committed<ServerId>, CommandError> {
        let actor = ctx.actor()?;
        let topic = topic.map(ChannelTopic::parse).transpose()?;
        let command = ServerCommand::SetChannelTopic {
            actor,
            channel_id,
            topic,
        };
        self.channel_command(ctx, channel_id, command).await
    }

    /// Puts a channel under `category` (none when `None`) at `position` in its server's list.
    pub async fn move_channel(
        &self,
        ctx: &CommandContext,
        channel_id: ChannelId,
        category: Option<&str>,
        position: u32,
    ) -> Result<Committed<ServerId>, CommandError> {
        let actor = ctx.actor()?;
        let category = category.map(ChannelCategory::parse).transpose()?;
        let command = ServerCommand::MoveChannel {
            actor,
            channel_id,
            category,
            position,
        };
        self.channel_command(ctx, channel_id, command).await
    }

    pub async fn unarchive_channel(
        &self,
        ctx: &CommandContext,
        channel_id: ChannelId,
    ) -> Result<Committed<ServerId>, CommandError> {
        let actor = ctx.actor()?;
        let command = ServerCommand::UnarchiveChannel { actor, channel_id };
        self.channel_command(ctx, channel_id, command).await
    }

    /// Sends `command` to the server that owns `channel_id`; answers with that server.
    async fn channel_command(
        &self,
        ctx: &CommandContext,
        channel_id: ChannelId,
        command: ServerCommand,
    ) -> Result<Committed<ServerId>, CommandError> {
        let server_id = self
            .server_of(DirectoryKind::Channel, &channel_id.to_string(), "channel")
            .await?;
        let position = self.server_command(ctx, server_id, command).await?;
        Ok(Committed {
            value: server_id,
            position,
        })
    }

    pub async fn revoke_invite(
        &self,
        ctx: &CommandContext,
        code: &str,
    ) -> Result<Committed<ServerId>, CommandError> {
        let actor = ctx.actor()?;
        let code = InviteCode::parse(code)?;
        let server_id = self
            .server_of(DirectoryKind::Invite, code.as_str(), "invite")
            .await?;
        let position = self
            .server_command(ctx, server_id, ServerCommand::RevokeInvite { actor, code })
            .await?;
        Ok(Committed {
            value: server_id,
            position,
        })
    }

    /// Changes what others see of the caller: each field that is `Some` replaces the current
    /// one, `Some(None)` (or a blank text) clears a picture or a status.
    pub async fn change_profile(
        &self,
        ctx: &CommandContext,
        change: ProfileChange<'_>,
    ) -> Result<Committed<UserRecord>, CommandError> {
        let actor = ctx.actor()?;
        let display_name = change.display_name.map(DisplayName::parse).transpose()?;
        let avatar_url = change
            .avatar_url
            .map(|url| not_blank(url).map(AvatarUrl::parse).transpose())
            .transpose()?;
        let status_text = change
            .status_text
            .map(|text| not_blank(text).map(StatusText::parse).transpose())
            .transpose()?;
        let id = actor.to_string();
        let command = UserCommand::ChangeProfile {
            display_name,
            avatar_url,
            status_text,
            at: ctx.at,
        };
        Self::execute(&self.users, &id, command, ctx.metadata(id.clone())).await?;
        let position = self.position::<User>(&id).await?;
        let user = self
            .user(actor)
            .await?
            .ok_or_else(|| CommandError::not_found("user"))?;
        Ok(Committed {
            value: user,
            position,
        })
    }

    /// Blocks (`blocked`) or unblocks `other` for the caller: no direct message between the
    /// two while blocked, and `other`'s messages hidden from the caller. Answers whether
    /// `other` is now blocked. Blocking an unknown user is `NOT_FOUND`, oneself or more than
    /// [`aether_domain::user::MAX_BLOCKED`] people `BAD_USER_INPUT`; blocking twice or
    /// unblocking someone not blocked changes nothing.
    pub async fn set_blocked(
        &self,
        ctx: &CommandContext,
        other: UserId,
        blocked: bool,
    ) -> Result<Committed<bool>, CommandError> {
        let actor = ctx.actor()?;
        if blocked && other != actor {
            self.require_registered(&BTreeSet::from([other])).await?;
        }
        let id = actor.to_string();
        let command = if blocked {
            UserCommand::BlockUser {
                user: other,
                at: ctx.at,
            }
        } else {
            UserCommand::UnblockUser {
                user: other,
                at: ctx.at,
            }
        };
        let current = self.current(&self.user_states, &id).await?;
        let state = User::clone(&current.state);
        let (_, position) = self
            .decide_retrying(
                &id,
                state,
                current.sequence,
                command,
                &ctx.metadata(id.clone()),
            )
            .await?;
        Ok(Committed {
            value: blocked,
            position,
        })
    }

    /// Refuses a new message from `author` in a one-to-one conversation while either of its
    /// two people blocks the other (`FORBIDDEN`). Groups carry on: there a block hides the
    /// blocked person's messages from the one who blocked them.
    async fn refuse_if_blocked(
        &self,
        author: UserId,
        conversation: ChannelId,
    ) -> Result<(), CommandError> {
        let Some(conversation) = self.conversation(conversation).await? else {
            return Ok(());
        };
        if conversation.group {
            return Ok(());
        }
        let Some(&other) = conversation.participants.iter().find(|p| **p != author) else {
            return Ok(());
        };
        let mine = self.current(&self.user_states, &author.to_string()).await?;
        if mine.state.blocks(other) {
            return Err(CommandError::new(
                ErrorCode::Forbidden,
                "you have blocked this person: unblock them to write to them",
            ));
        }
        let theirs = self.current(&self.user_states, &other.to_string()).await?;
        if theirs.state.blocks(author) {
            return Err(CommandError::new(
                ErrorCode::Forbidden,
                "this person does not take messages from you",
            ));
        }
        Ok(())
    }

    pub async fn leave_server(
        &self,
        ctx: &CommandContext,
        server_id: ServerId,
    ) -> Result<Committed<()>, CommandError> {
        let user = ctx.actor()?;
        let position = self
            .server_command(ctx, server_id, ServerCommand::LeaveServer { user })
            .await?;
        Ok(Committed {
            value: (),
            position,
        })
    }

    pub async fn set_member_role(
        &self,
        ctx: &CommandContext,
        server_id: ServerId,
        user: UserId,
        role: Role,
    ) -> Result<Committed<MemberRecord>, CommandError> {
        let actor = ctx.actor()?;
        let command = ServerCommand::ChangeMemberRole { actor, user, role };
        let position = self.server_command(ctx, server_id, command).await?;
        Ok(Committed {
            value: MemberRecord {
                server_id,
                user_id: user,
                role,
            },
            position,
        })
    }

    /// Removes, bans or unbans `user` (see [`Moderation`]).
    pub async fn moderate(
        &self,
        ctx: &CommandContext,
        server_id: ServerId,
        user: UserId,
        action: Moderation<'_>,
    ) -> Result<Committed<()>, CommandError> {
        let actor = ctx.actor()?;
        let reason = |reason: Option<&str>| reason.map(ModerationReason::parse).transpose();
        let command = match action {
            Moderation::Remove { reason: why } => ServerCommand::RemoveMember {
                actor,
                user,
                reason: reason(why)?,
            },
            Moderation::Ban { reason: why } => ServerCommand::BanUser {
                actor,
                user,
                reason: reason(why)?,
                at: ctx.at,
            },
            Moderation::Unban => ServerCommand::UnbanUser { actor, user },
        };
        let position = self.server_command(ctx, server_id, command).await?;
        Ok(Committed {
            value: (),
            position,
        })
    }

    // --- direct conversations -------------------------------------------------------------

    /// Opens the conversation between the caller and `others` (1:1 or a group of at most
    /// [`MAX_PARTICIPANTS`] people), or finds the one these people already have: the same two
    /// people always have the same conversation, and the same people of a group find the group
    /// they opened for as long as nobody has joined or left it (after that, a new group).
    pub async fn open_conversation(
        &self,
        ctx: &CommandContext,
        others: &[UserId],
    ) -> Result<Committed<ConversationRecord>, CommandError> {
        let opened_by = ctx.actor()?;
        let mut everyone: BTreeSet<UserId> = others.iter().copied().collect();
        everyone.insert(opened_by);
        if everyone.len() > MAX_PARTICIPANTS {
            return Err(too_many_participants());
        }
        let generations = if everyone.len() > 2 {
            GROUP_GENERATIONS
        } else {
            1
        };
        for generation in 0..generations {
            let id = group_conversation_id(&everyone, generation);
            match self.conversation(id).await? {
                None => return self.open_new_conversation(ctx, everyone, generation).await,
                Some(existing) if existing.participants.iter().eq(everyone.iter()) => {
                    return self.existing_conversation(&existing).await;
                }
                Some(_) => continue,
            }
        }
        Err(CommandError::new(
            ErrorCode::Conflict,
            format!(
                "these people have opened {GROUP_GENERATIONS} groups already: add them to one of those"
            ),
        ))
    }

    async fn open_new_conversation(
        &self,
        ctx: &CommandContext,
        everyone: BTreeSet<UserId>,
        generation: u32,
    ) -> Result<Committed<ConversationRecord>, CommandError> {
        let opened_by = ctx.actor()?;
        self.require_registered(&everyone).await?;
        let id = group_conversation_id(&everyone, generation);
        let key = id.to_string();
        let command = ConversationCommand::OpenConversation {
            conversation_id: id,
            opened_by,
            others: everyone.clone(),
            generation,
            at: ctx.at,
        };
        let decided = self
            .decide_retrying(
                &key,
                Conversation::default(),
                0,
                command,
                &ctx.metadata(key.clone()),
            )
            .await;
        let (conversation, position) = match decided {
            Ok(decided) => decided,
            // Someone opened it a moment ago: the same conversation if it holds the same
            // people (it may already have changed hands; then look again).
            Err(error) if error.code == ErrorCode::Conflict => {
                let existing = self
                    .conversation(id)
                    .await?
                    .ok_or_else(|| CommandError::internal("a conversation vanished"))?;
                if existing.participants.iter().eq(everyone.iter()) {
                    return self.existing_conversation(&existing).await;
                }
                return Err(CommandError::new(
                    ErrorCode::Conflict,
                    "the group changed while it opened: try again",
                ));
            }
            Err(error) => return Err(error),
        };
        let record = conversation_record(&conversation)?;
        Ok(Committed {
            value: record,
            position,
        })
    }

    /// Refuses unless every one of `users` has registered.
    async fn require_registered(&self, users: &BTreeSet<UserId>) -> Result<(), CommandError> {
        for user in users {
            let account: User = self.load(&user.to_string()).await?;
            if account.id.is_none() {
                return Err(CommandError::not_found(&format!("user {user}")));
            }
        }
        Ok(())
    }

    /// Adds people to a group the caller is in; those already in it stay as they are.
    pub async fn add_participants(
        &self,
        ctx: &CommandContext,
        conversation_id: ChannelId,
        users: &[UserId],
    ) -> Result<Committed<ConversationRecord>, CommandError> {
        let added_by = ctx.actor()?;
        let user_ids: BTreeSet<UserId> = users.iter().copied().collect();
        if user_ids.is_empty() {
            return Err(CommandError::new(
                ErrorCode::BadUserInput,
                "name at least one person to add",
            ));
        }
        if user_ids.len() > MAX_PARTICIPANTS {
            return Err(too_many_participants());
        }
        // Outsiders hear `NOT_FOUND` before anything is looked up for them.
        self.participant_of(conversation_id, added_by).await?;
        self.require_registered(&user_ids).await?;
        let command = ConversationCommand::AddParticipants {
            added_by,
            user_ids,
            at: ctx.at,
        };
        self.conversation_command(ctx, conversation_id, command)
            .await
    }

    /// Removes someone from a group (its owner only), or the caller leaves (`user` is the
    /// caller).
    pub async fn remove_participant(
        &self,
        ctx: &CommandContext,
        conversation_id: ChannelId,
        user: UserId,
    ) -> Result<Committed<ConversationRecord>, CommandError> {
        let command = ConversationCommand::RemoveParticipant {
            removed_by: ctx.actor()?,
            user_id: user,
            at: ctx.at,
        };
        self.conversation_command(ctx, conversation_id, command)
            .await
    }

    /// Names a group the caller is in, or clears its name (`None` or blank).
    pub async fn rename_conversation(
        &self,
        ctx: &CommandContext,
        conversation_id: ChannelId,
        name: Option<&str>,
    ) -> Result<Committed<ConversationRecord>, CommandError> {
        let name = not_blank(name).map(ConversationName::parse).transpose()?;
        let command = ConversationCommand::RenameConversation {
            renamed_by: ctx.actor()?,
            name,
            at: ctx.at,
        };
        self.conversation_command(ctx, conversation_id, command)
            .await
    }

    /// The conversation `user` is in, or `NOT_FOUND` (whether it exists or not).
    async fn participant_of(
        &self,
        conversation_id: ChannelId,
        user: UserId,
    ) -> Result<Arc<Conversation>, CommandError> {
        match self.conversation(conversation_id).await? {
            Some(conversation) if conversation.is_participant(user) => Ok(conversation),
            _ => Err(CommandError::not_found("conversation")),
        }
    }

    /// Decides a change to an open conversation against its current state.
    async fn conversation_command(
        &self,
        ctx: &CommandContext,
        conversation_id: ChannelId,
        command: ConversationCommand,
    ) -> Result<Committed<ConversationRecord>, CommandError> {
        let key = conversation_id.to_string();
        let current = self.current(&self.conversations, &key).await?;
        let (conversation, position) = self
            .decide_retrying(
                &key,
                Conversation::clone(&current.state),
                current.sequence,
                command,
                &ctx.metadata(key.clone()),
            )
            .await?;
        Ok(Committed {
            value: conversation_record(&conversation)?,
            position,
        })
    }

    async fn existing_conversation(
        &self,
        conversation: &Conversation,
    ) -> Result<Committed<ConversationRecord>, CommandError> {
        let record = conversation_record(conversation)?;
        let position = self
            .position::<Conversation>(&record.id.to_string())
            .await?;
        Ok(Committed {
            value: record,
            position,
        })
    }

    // --- messages -------------------------------------------------------------------------

    pub async fn send_message(
        &self,
        ctx: &CommandContext,
        channel_id: ChannelId,
        body: &str,
    ) -> Result<Committed<MessageRecord>, CommandError> {
        self.send_linked_message(ctx, channel_id, body, Links::default())
            .await
    }

    /// Sends a message that may reply to another (quoting it) and may be a reply in a root
    /// message's thread; both must be messages of the same channel.
    pub async fn send_linked_message(
        &self,
        ctx: &CommandContext,
        channel_id: ChannelId,
        body: &str,
        links: Links,
    ) -> Result<Committed<MessageRecord>, CommandError> {
        let author = ctx.actor()?;
        let body = MessageBody::parse(body)?;
        let (access, policy) = self.channel_access_and_policy(channel_id, author).await?;
        let body = self.screened(policy, body)?;
        let mut linked = MessageLinks {
            also_in_channel: links.also_in_channel,
            ..MessageLinks::default()
        };
        // Only someone who may post in the channel learns whether a linked message is there.
        if access.can_post() {
            if let Some(id) = links.reply_to {
                linked.reply_to = Some(self.load::<Message>(&id.to_string()).await?.linked(id));
            }
            if let Some(id) = links.thread_root {
                linked.thread_root = Some(self.load::<Message>(&id.to_string()).await?.linked(id));
            }
        }
        let mentions = self.mentions(ctx, channel_id, &access, &body).await?;
        let new = NewMessage {
            channel_id,
            access,
            policy,
            body,
            links: linked,
            mentions,
        };
        self.send_new(ctx, author, new).await
    }

    /// Sends a new message, already screened and resolved, as `author`.
    async fn send_new(
        &self,
        ctx: &CommandContext,
        author: UserId,
        new: NewMessage,
    ) -> Result<Committed<MessageRecord>, CommandError> {
        if let ChannelAccess::Conversation { participant: true } = new.access {
            self.refuse_if_blocked(author, new.channel_id).await?;
        }
        let message_id = MessageId::new();
        let command = MessageCommand::SendMessage {
            message_id,
            channel_id: new.channel_id,
            author,
            body: new.body,
            access: new.access,
            links: Box::new(new.links),
            mentions: new.mentions,
            at: ctx.at,
        };
        // A freshly generated id has no events: nothing to load.
        let target = MessageTarget {
            message_id,
            channel_id: new.channel_id,
            access: new.access,
            policy: new.policy,
            state: Message::default(),
            sequence: 0,
        };
        self.message_command(ctx, target, command).await
    }

    /// Forwards `message_id` to `to` (a channel or a conversation) for the caller: a new
    /// message there with the same body and the original's origin (`forwarded_from`). The
    /// caller must see the original (`NOT_FOUND` otherwise: its existence is not revealed) and
    /// may post in `to`; a deleted message cannot be forwarded (`CONFLICT`). A forward
    /// mentions nobody: the people the original named were told once.
    pub async fn forward_message(
        &self,
        ctx: &CommandContext,
        message_id: MessageId,
        to: ChannelId,
    ) -> Result<Committed<MessageRecord>, CommandError> {
        let author = ctx.actor()?;
        let source = self.message_and_access(message_id, author).await?;
        let (origin, body) = source
            .state
            .forward_origin()
            .map_err(|e| CommandError::from(AggregateError::UserError(e)))?;
        // The forward is screened by the content policy of where it goes.
        let (access, policy) = self.channel_access_and_policy(to, author).await?;
        let body = self.screened(policy, body)?;
        let new = NewMessage {
            channel_id: to,
            access,
            policy,
            body,
            links: MessageLinks {
                forward_of: Some(origin),
                ..MessageLinks::default()
            },
            mentions: Mentions::default(),
        };
        self.send_new(ctx, author, new).await
    }

    /// Who `body`, posted in `channel_id` with `access`, mentions: named people who may see
    /// the channel, and `@everyone`/`@here` when the access allows them. A body without an
    /// `@` costs nothing more.
    async fn mentions(
        &self,
        ctx: &CommandContext,
        channel_id: ChannelId,
        access: &ChannelAccess,
        body: &MessageBody,
    ) -> Result<Mentions, CommandError> {
        if !body.as_str().contains('@') {
            return Ok(Mentions::default());
        }
        let online = |user: UserId| ctx.online.as_ref().is_some_and(|online| (online.0)(user));
        Ok(match access.server_id() {
            Some(server_id) => {
                let server = self.current_server(&server_id.to_string()).await?;
                Mentions::resolve(
                    body,
                    access,
                    |user| server.channel_access(channel_id, user).can_view(),
                    || {
                        server
                            .members
                            .keys()
                            .copied()
                            .filter(|u| online(*u))
                            .collect()
                    },
                )
            }
            None => match self.conversation(channel_id).await? {
                Some(conversation) => Mentions::resolve(
                    body,
                    access,
                    |user| conversation.access(user).can_view(),
                    || {
                        conversation
                            .participants
                            .iter()
                            .copied()
                            .filter(|u| online(*u))
                            .collect()
                    },
                ),
                None => Mentions::default(),
            },
        })
    }

    /// Loads a live message and the actor's access to its channel.
    async fn message_and_access(
        &self,
        message_id: MessageId,
        actor: UserId,
    ) -> Result<MessageTarget, CommandError> {
        let (message, sequence) = self.load_at::<Message>(&message_id.to_string()).await?;
        let channel_id = message
            .channel_id
            .ok_or_else(|| CommandError::not_found("message"))?;
        let (access, policy) = self.channel_access_and_policy(channel_id, actor).await?;
        if !access.can_view() {
            // Outsiders learn nothing about messages they cannot see.
            return Err(CommandError::not_found("message"));
        }
        Ok(MessageTarget {
            message_id,
            channel_id,
            access,
            policy,
            state: message,
            sequence,
        })
    }

    pub async fn edit_message(
        &self,
        ctx: &CommandContext,
        message_id: MessageId,
        body: &str,
    ) -> Result<Committed<MessageRecord>, CommandError> {
        let actor = ctx.actor()?;
        let body = MessageBody::parse(body)?;
        let target = self.message_and_access(message_id, actor).await?;
        let body = self.screened(target.policy, body)?;
        let mentions = self
            .mentions(ctx, target.channel_id, &target.access, &body)
            .await?;
        let command = MessageCommand::EditMessage {
            actor,
            body,
            access: target.access,
            mentions,
            at: ctx.at,
        };
        self.message_command(ctx, target, command).await
    }

    pub async fn delete_message(
        &self,
        ctx: &CommandContext,
        message_id: MessageId,
    ) -> Result<Committed<MessageRecord>, CommandError> {
        let actor = ctx.actor()?;
        let target = self.message_and_access(message_id, actor).await?;
        let channel = target.channel_id;
        let command = MessageCommand::DeleteMessage {
            actor,
            access: target.access,
            at: ctx.at,
        };
        let mut deleted = self.message_command(ctx, target, command).await?;
        // A deleted message leaves the pins, taking no place there: the deleter unpins it.
        let pins = self
            .load::<ChannelPins>(&pins_id(channel).to_string())
            .await?;
        if pins.pinned.contains(&message_id) {
            let message = self.load::<Message>(&message_id.to_string()).await?;
            let command = PinsCommand::UnpinDeleted {
                actor,
                channel_id: channel,
                message: message.linked(message_id),
                at: ctx.at,
            };
            deleted.position = self.pins_command(ctx, channel, command).await?.position;
        }
        Ok(deleted)
    }

    /// Reacts to `message_id` with `emoji` for the caller; reacting again changes nothing. A
    /// message holds at most `max_kinds` distinct emoji.
    pub async fn add_reaction(
        &self,
        ctx: &CommandContext,
        message_id: MessageId,
        emoji: &str,
        max_kinds: usize,
    ) -> Result<Committed<MessageRecord>, CommandError> {
        let actor = ctx.actor()?;
        let emoji = Emoji::parse(emoji)?;
        let target = self.message_and_access(message_id, actor).await?;
        let command = MessageCommand::AddReaction {
            actor,
            emoji,
            access: target.access,
            max_kinds,
            at: ctx.at,
        };
        self.message_command(ctx, target, command).await
    }

    /// Takes back the caller's reaction with `emoji`; taking back one that is not there changes
    /// nothing.
    pub async fn remove_reaction(
        &self,
        ctx: &CommandContext,
        message_id: MessageId,
        emoji: &str,
    ) -> Result<Committed<MessageRecord>, CommandError> {
        let actor = ctx.actor()?;
        let emoji = Emoji::parse(emoji)?;
        let target = self.message_and_access(message_id, actor).await?;
        let command = MessageCommand::RemoveReaction {
            actor,
            emoji,
            access: target.access,
            at: ctx.at,
        };
        self.message_command(ctx, target, command).await
    }

    // --- pins -----------------------------------------------------------------------------

    /// Pins `message_id` in its channel or conversation (a moderator or above in a server's
    /// channel, either participant in a conversation); pinning it again changes nothing. A
    /// channel holds at most `max` pins. Answers with the channel's pinned messages.
    pub async fn pin_message(
        &self,
        ctx: &CommandContext,
        message_id: MessageId,
        max: usize,
    ) -> Result<Committed<Vec<MessageId>>, CommandError> {
        let actor = ctx.actor()?;
        let target = self.message_and_access(message_id, actor).await?;
        let command = PinsCommand::PinMessage {
            actor,
            channel_id: target.channel_id,
            message: target.state.linked(message_id),
            access: target.access,
            max,
            at: ctx.at,
        };
        self.pins_command(ctx, target.channel_id, command).await
    }

    /// Unpins `message_id`; unpinning one that is not pinned changes nothing.
    pub async fn unpin_message(
        &self,
        ctx: &CommandContext,
        message_id: MessageId,
    ) -> Result<Committed<Vec<MessageId>>, CommandError> {
        let actor = ctx.actor()?;
        let target = self.message_and_access(message_id, actor).await?;
        let command = PinsCommand::UnpinMessage {
            actor,
            channel_id: target.channel_id,
            message_id,
            access: target.access,
            at: ctx.at,
        };
        self.pins_command(ctx, target.channel_id, command).await
    }

    /// Runs a command on `channel`'s pins, keyed by the channel like its messages.
    async fn pins_command(
        &self,
        ctx: &CommandContext,
        channel: ChannelId,
        command: PinsCommand,
    ) -> Result<Committed<Vec<MessageId>>, CommandError> {
        let id = pins_id(channel).to_string();
        let (state, sequence) = self.load_at::<ChannelPins>(&id).await?;
        let metadata = ctx.metadata(channel.to_string());
        let (pins, position) = self
            .decide_retrying(&id, state, sequence, command, &metadata)
            .await?;
        Ok(Committed {
            value: pins.pinned,
            position,
        })
    }

    // --- sessions -------------------------------------------------------------------------

    /// Starts a session for `user` (a sign-in or a registration): refresh generation 0.
    pub async fn start_session(
        &self,
        user: UserId,
    ) -> Result<Committed<SessionRecord>, CommandError> {
        let ctx = CommandContext::new(Some(user));
        let session_id = Uuid::now_v7();
        let command = SessionCommand::StartSession {
            session_id,
            user_id: user,
            at: ctx.at,
        };
        let id = session_id.to_string();
        let (_, position) = self
            .decide_retrying(
                &id,
                Session::default(),
                0,
                command,
                &ctx.metadata(user.to_string()),
            )
            .await?;
        Ok(Committed {
            value: SessionRecord {
                session_id,
                user_id: user,
                generation: 0,
            },
            position,
        })
    }

    /// Trades the refresh token of `generation` in `session` for the next generation. A spent
    /// generation presented again ends the session (recorded) and is refused.
    pub async fn refresh_session(
        &self,
        user: UserId,
        session_id: Uuid,
        generation: u32,
    ) -> Result<Committed<SessionRecord>, CommandError> {
        let ctx = CommandContext::new(Some(user));
        let id = session_id.to_string();
        let (state, sequence) = self.load_at::<Session>(&id).await?;
        if state.user_id != Some(user) {
            return Err(CommandError::from(AggregateError::UserError(
                SessionError::UnknownSession,
            )));
        }
        let account: User = self.load(&user.to_string()).await?;
        let command = SessionCommand::Refresh {
            generation,
            ended_before: account.sessions_ended_before,
            at: ctx.at,
        };
        let (session, position) = self
            .decide_retrying(
                &id,
                state,
                sequence,
                command,
                &ctx.metadata(user.to_string()),
            )
            .await?;
        if session.ended.is_some() {
            tracing::warn!(%user, session = %session_id, generation, "a spent refresh token was presented again; the session is ended");
            return Err(CommandError::from(AggregateError::UserError(
                SessionError::TokenReused,
            )));
        }
        Ok(Committed {
            value: SessionRecord {
                session_id,
                user_id: user,
                generation: session.generation,
            },
            position,
        })
    }

    /// Ends `session` of `user` (sign out on this device).
    pub async fn end_session(
        &self,
        user: UserId,
        session_id: Uuid,
    ) -> Result<Written, CommandError> {
        let ctx = CommandContext::new(Some(user));
        let id = session_id.to_string();
        let (state, sequence) = self.load_at::<Session>(&id).await?;
        if state.user_id != Some(user) {
            return Err(CommandError::from(AggregateError::UserError(
                SessionError::UnknownSession,
            )));
        }
        let command = SessionCommand::EndSession {
            reason: SessionEndReason::LoggedOut,
            at: ctx.at,
        };
        let (_, position) = self
            .decide_retrying(
                &id,
                state,
                sequence,
                command,
                &ctx.metadata(user.to_string()),
            )
            .await?;
        Ok(position)
    }

    /// Ends every session of `user` that started before now (sign out everywhere).
    /// Answers with the instant the sessions ended at: those that started before it.
    pub async fn end_all_sessions(
        &self,
        user: UserId,
    ) -> Result<Committed<chrono::DateTime<chrono::Utc>>, CommandError> {
        let ctx = CommandContext::new(Some(user));
        let id = user.to_string();
        let (state, sequence) = self.load_at::<User>(&id).await?;
        let command = UserCommand::EndAllSessions { at: ctx.at };
        let (_, position) = self
            .decide_retrying(&id, state, sequence, command, &ctx.metadata(id.clone()))
            .await?;
        Ok(Committed {
            value: ctx.at,
            position,
        })
    }

    /// Replaces `user`'s password after checking the current one, and ends every session
    /// that started before now (`PasswordChanged`, then `AllSessionsEnded`): whoever held a
    /// token of the old password holds nothing. Answers with the instant the sessions ended at.
    /// A wrong current password is refused with `BAD_USER_INPUT`, an account of an external
    /// identity provider (no password) too.
    pub async fn change_password(
        &self,
        user: UserId,
        current: &str,
        new: &str,
    ) -> Result<Committed<chrono::DateTime<chrono::Utc>>, CommandError> {
        let new = Password::parse(new)?;
        let ctx = CommandContext::new(Some(user));
        let id = user.to_string();
        let (state, sequence) = self.load_at::<User>(&id).await?;
        let Some(hash) = state.password_hash.clone().filter(|hash| !hash.is_empty()) else {
            return Err(CommandError::from(AggregateError::UserError(
                UserError::NoPassword,
            )));
        };
        let current = current.to_owned();
        let (valid, password_hash) = tokio::task::spawn_blocking(move || {
            let valid = verify_password(&current, &hash);
            // Hashing only for the right password keeps a guesser from costing two hashes.
            let hashed = valid.then(|| hash_password(&new)).transpose();
            (valid, hashed)
        })
        .await
        .map_err(|e| CommandError::internal(e.to_string()))?;
        if !valid {
            return Err(CommandError::new(
                ErrorCode::BadUserInput,
                WRONG_CURRENT_PASSWORD,
            ));
        }
        let password_hash = password_hash
            .map_err(|e| CommandError::internal(e.to_string()))?
            .unwrap_or_default();
        let command = UserCommand::ChangePassword {
            password_hash,
            at: ctx.at,
        };
        let (_, position) = self
            .decide_retrying(&id, state, sequence, command, &ctx.metadata(id.clone()))
            .await?;
        Ok(Committed {
            value: ctx.at,
            position,
        })
    }

    /// Whether `session` has ended (signed out, or ended by a reused refresh token).
    pub async fn session_ended(&self, session_id: Uuid) -> Result<bool, CommandError> {
        let session: Session = self.load(&session_id.to_string()).await?;
        Ok(session.ended.is_some())
    }

    // --- read markers ---------------------------------------------------------------------

    /// Records that the caller has read `channel_id` up to `message_id`. Keyed by the channel,
    /// like its messages. Marking the message already marked writes nothing and answers with
    /// the marker as it stands.
    pub async fn mark_read(
        &self,
        ctx: &CommandContext,
        channel_id: ChannelId,
        message_id: MessageId,
    ) -> Result<Committed<ReadMarkRecord>, CommandError> {
        let user_id = ctx.actor()?;
        let access = self.channel_access(channel_id, user_id).await?;
        let message: Message = self.load(&message_id.to_string()).await?;
        let command = ReadMarkerCommand::MarkRead {
            user_id,
            channel_id,
            message_id,
            message_channel: message.channel_id,
            access,
            at: ctx.at,
        };
        let id = read_marker_id(user_id, channel_id).to_string();
        let (state, sequence) = self.load_at::<ReadMarker>(&id).await?;
        let metadata = ctx.metadata(channel_id.to_string());
        let (marker, position) = self
            .decide_retrying(&id, state, sequence, command, &metadata)
            .await?;
        let (Some(message_id), Some(read_at)) = (marker.last_message_id, marker.read_at) else {
            return Err(CommandError::internal(
                "a read marker was saved without its message",
            ));
        };
        Ok(Committed {
            value: ReadMarkRecord {
                user_id,
                channel_id,
                message_id,
                read_at,
            },
            position,
        })
    }

    /// Runs a message command keyed by its channel against the message's known state, and
    /// answers from the state after its events (no read-back). A lost race reloads and retries.
    async fn message_command(
        &self,
        ctx: &CommandContext,
        target: MessageTarget,
        command: MessageCommand,
    ) -> Result<Committed<MessageRecord>, CommandError> {
        let MessageTarget {
            message_id,
            channel_id,
            access,
            state,
            sequence,
            ..
        } = target;
        let id = message_id.to_string();
        let metadata = ctx.metadata(channel_id.to_string());
        let (message, position) = self
            .decide_retrying(&id, state, sequence, command, &metadata)
            .await?;
        let (Some(author_id), Some(created_at)) = (message.author, message.sent_at) else {
            return Err(CommandError::not_found("message"));
        };
        Ok(Committed {
            value: MessageRecord {
                id: message_id,
                channel_id,
                server_id: access.server_id(),
                author_id,
                body: message.body.map(MessageBody::into_inner),
                deleted: message.deleted,
                created_at,
                edited_at: message.edited_at,
                version: position.event.sequence,
                reactions: message.reactions,
                reply_to_id: message.reply_to_id,
                thread_root_id: message.thread_root_id,
                forwarded_from: message.forwarded_from,
            },
            position,
        })
    }
}

fn conversation_record(conversation: &Conversation) -> Result<ConversationRecord, CommandError> {
    let (Some(id), Some(opened_by), Some(opened_at)) = (
        conversation.id,
        conversation.opened_by,
        conversation.opened_at,
    ) else {
        return Err(CommandError::internal("a conversation was saved unopened"));
    };
    Ok(ConversationRecord {
        id,
        opened_by,
        participants: conversation.participants.clone(),
        opened_at,
        group: conversation.group,
        owner: conversation.owner,
        name: conversation
            .name
            .as_ref()
            .map(|name| name.as_str().to_owned()),
    })
}

/// The domain's refusal of a conversation over [`MAX_PARTICIPANTS`], said before anyone in
/// the list is looked up.
pub fn too_many_participants() -> CommandError {
    AggregateError::UserError(ConversationError::TooManyParticipants).into()
}

/// A text that is more than whitespace, trimmed; a blank one clears what it would set.
fn not_blank(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|text| !text.is_empty())
}

/// A change of profile (see [`ChatCommands::change_profile`]): `None` keeps a field,
/// `Some(None)` clears a picture or a status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProfileChange<'a> {
    pub display_name: Option<&'a str>,
    pub avatar_url: Option<Option<&'a str>>,
    pub status_text: Option<Option<&'a str>>,
}

/// What a new message links to, by id (see [`ChatCommands::send_linked_message`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Links {
    pub reply_to: Option<MessageId>,
    pub thread_root: Option<MessageId>,
    pub also_in_channel: bool,
}

/// A message about to be sent: where, with what standing there, and what it says, links to
/// and mentions.
struct NewMessage {
    channel_id: ChannelId,
    access: ChannelAccess,
    /// The content policy `body` was screened with.
    policy: ContentPolicy,
    body: MessageBody,
    links: MessageLinks,
    mentions: Mentions,
}

/// The message a command is about, as far as the service already knows it.
struct MessageTarget {
    message_id: MessageId,
    channel_id: ChannelId,
    access: ChannelAccess,
    /// The content policy of the channel's server, for a new body.
    policy: ContentPolicy,
    /// The message's state as of event `sequence` (the default and 0 for a new message).
    state: Message,
    sequence: usize,
}

fn persistence<A>(error: PersistenceError) -> CommandError
where
    A: Aggregate,
    A::Error: DomainRefusal,
{
    CommandError::from(AggregateError::<A::Error>::from(error))
}

/// `result` of a command on aggregate `A`, counted by outcome.
fn counted<A: Aggregate, T>(result: Result<T, CommandError>) -> Result<T, CommandError> {
    let code = result.as_ref().map(|_| ()).map_err(|error| error.code);
    crate::metrics::command(A::TYPE, crate::metrics::outcome(code));
    result
}
