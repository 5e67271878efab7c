//! Subscriptions, pushed from the projection update bus. Nothing here polls for news: the
//! read model is read only to catch up (a resume cursor, or a subscriber that fell behind).

use std::sync::Arc;

use aether_domain::{ChannelAccess, ChannelFacts, ChannelId, MessageId, ServerId, UserId};
use aether_projections::rows::ChannelEventRow;
use aether_projections::updates::Heard;
use aether_projections::Update;
use async_graphql::{Context, Subscription, ID};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use crate::blocks::{BlockLists, ViewerBlocks};
use crate::error::{ApiError, ApiResult};
use crate::rate::{subscription_permit, SubscriptionPermit};
use crate::server_events::{server_events, ServerEventStream};
use crate::tap::{EventTap, PresetEvent, Tapped};
use crate::types::{
    channel_view, in_channel_view, parse_cursor, require_caller, required_place, state,
    visible_channel, visible_conversation, ChannelEvent, Conversation, ConversationChanged,
    ConversationLeft, ConversationOpened, MembershipChanged, MessageModerated, Place, ResyncNeeded,
    RoleGql, UserEvent,
};
use crate::ApiState;

/// Where a transport that shares payloads takes an update, and whom each subscriber blocks
/// (an update showing their words is resolved for that subscriber alone).
struct SharedTap(EventTap, Arc<BlockLists>);

impl SharedTap {
    fn of(ctx: &Context<'_>) -> Option<SharedTap> {
        let lists = ctx.data_unchecked::<Arc<BlockLists>>().clone();
        EventTap::of(ctx).map(|tap| SharedTap(tap, lists))
    }
}

/// Events read from the read model per catch-up query.
const CATCH_UP_PAGE: i64 = 500;

#[derive(Debug, Default)]
pub struct SubscriptionRoot;

/// What a channel or conversation subscription yields.
type PlaceStream = BoxStream<'static, async_graphql::Result<ChannelEvent>>;

/// Which of a place's changes a subscription delivers, and as what.
#[derive(Clone, Copy, Debug)]
enum View {
    /// The channel's or conversation's own history: a reply that stays in its thread shows
    /// only as `ThreadReplied` when sent.
    Place,
    /// The replies in one root message's thread.
    Thread(MessageId),
}

impl View {
    fn shows(self, row: &ChannelEventRow) -> bool {
        match self {
            View::Place => in_channel_view(row),
            View::Thread(root) => row.message.thread_root_id == Some(root),
        }
    }

    fn event(self, row: ChannelEventRow) -> ChannelEvent {
        match self {
            View::Place => channel_view(row),
            View::Thread(_) => ChannelEvent::from(row),
        }
    }
}

/// The preset update's stream, when the request carries one.
fn preset(ctx: &Context<'_>, view: View) -> Option<async_graphql::Result<PlaceStream>> {
    let update = PresetEvent::of(ctx)?;
    let Tapped::Channel(row) = update else {
        return Some(Err(mismatched_preset().into()));
    };
    let event = view.event(row.clone());
    Some(Ok(futures::stream::once(async move { Ok(event) }).boxed()))
}

/// A preset update of another subscription's kind: the transport's mistake, never a client's.
pub(crate) fn mismatched_preset() -> ApiError {
    ApiError::new(
        aether_commands::ErrorCode::Internal,
        "the update does not belong to this subscription",
    )
}

/// Reads every channel event after `after` from the read model, in order.
async fn catch_up(
    state: &ApiState,
    channel: ChannelId,
    after: i64,
) -> ApiResult<Vec<ChannelEventRow>> {
    let mut events = Vec::new();
    let mut last = after;
    loop {
        let page = state
            .read
            .channel_events_after(channel, last, CATCH_UP_PAGE)
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

/// The channel's events after `last` and before `next`, from the read model. An update is
/// published only once its projector committed, so the store the update came from holds the
/// whole gap; if the read finds less, the live version was just switched and this instance's
/// view of the registry is stale: it is refreshed and the read repeated once.
async fn fill_gap(
    state: &ApiState,
    channel: ChannelId,
    last: i64,
    next: i64,
) -> ApiResult<Vec<ChannelEventRow>> {
    let mut events = Vec::new();
    for attempt in 0..2 {
        if attempt > 0 {
            state.read.forget_live_versions();
        }
        events = catch_up(state, channel, last).await?;
        events.retain(|event| event.seq < next);
        if events.len() as i64 == next - last - 1 {
            return Ok(events);
        }
    }
    tracing::warn!(%channel, from = last + 1, to = next - 1, found = events.len(), "the read model lacks part of a gap in a channel's updates");
    Ok(events)
}

/// Whether `user` may still see `channel` after `update`: `FORBIDDEN` when a membership change
/// of theirs in the channel's server (removal, ban, leaving, a role too low for a private
/// channel) takes access away. Decided from the update itself: a read model that has not
/// caught up yet must not keep a removed member subscribed. Every subscription to a channel
/// (its events, its typing) asks this of each of the caller's membership changes.
pub(crate) fn still_sees_channel(
    update: &Update,
    channel: &aether_projections::rows::ChannelRow,
    user: UserId,
) -> ApiResult<()> {
    let Update::Membership {
        server_id,
        user_id,
        role,
    } = update
    else {
        return Ok(());
    };
    if *server_id != channel.server_id || *user_id != user {
        return Ok(());
    }
    let access = match role {
        Some(role) => ChannelAccess::Member {
            server_id: *server_id,
            role: *role,
            channel: ChannelFacts {
                kind: channel.kind,
                private: channel.private,
                archived: channel.archived,
            },
        },
        None => ChannelAccess::NotAMember {
            server_id: *server_id,
        },
    };
    if access.can_view() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "you no longer have access to this channel",
        ))
    }
}

/// How a subscription to a group ends for someone who left it or was removed.
pub(crate) fn gone_from_conversation() -> ApiError {
    ApiError::forbidden("you are no longer in this conversation")
}

/// Whether `user` may still see `place` after `update`: a channel as [`still_sees_channel`]
/// decides; a group conversation until they leave or are removed from it.
pub(crate) fn still_sees_place(update: &Update, place: &Place, user: UserId) -> ApiResult<()> {
    match (place, update) {
        (Place::Channel(channel), _) => still_sees_channel(update, channel, user),
        (
            Place::Conversation(conversation),
            Update::ConversationChanged {
                conversation_id,
                removed: Some(removed),
                ..
            },
        ) if *conversation_id == conversation.id && *removed == user => {
            Err(gone_from_conversation())
        }
        (Place::Conversation(_), _) => Ok(()),
    }
}

/// Whether `user` may still see `place`, asked of the read model (when changes of theirs were
/// missed).
pub(crate) async fn still_sees_place_now(
    state: &ApiState,
    place: &Place,
    user: UserId,
) -> ApiResult<()> {
    match place {
        Place::Channel(channel) => visible_channel(state, channel.id, user).await.map(|_| ()),
        Place::Conversation(conversation) => visible_conversation(state, conversation.id, user)
            .await
            .map(|_| ())
            .map_err(|_| gone_from_conversation()),
    }
}

/// The changes of a channel or conversation the caller may see, after `after` (catch-up from
/// the read model first) or from now, then live: no gap, no duplicate. A channel subscription
/// ends with `FORBIDDEN` when the caller loses access; a conversation's people never change.
#[allow(clippy::too_many_arguments)]
async fn place_events(
    state: ApiState,
    user: UserId,
    place: Place,
    view: View,
    after: Option<i64>,
    permit: SubscriptionPermit,
    tap: Option<SharedTap>,
    mut updates: aether_projections::updates::ChannelFeed,
) -> ApiResult<PlaceStream> {
    let place_id = match &place {
        Place::Channel(channel) => channel.id,
        Place::Conversation(conversation) => conversation.id,
    };
    // The feed was opened before access was checked and before reading where to start, so
    // nothing published in between (a message, a removal) is missed.
    let start = match after {
        Some(cursor) => cursor,
        None => state.read.channel_head(place_id).await?,
    };
    let shutdown = state.shutdown.clone();
    // An update showing words the subscriber blocked is resolved for them alone, in its place.
    let mut tap =
        tap.map(|SharedTap(tap, lists)| (tap, ViewerBlocks::new(user, lists, state.read.clone())));
    // Whom the subscriber blocks is read now, while subscribing, not on the first update (where
    // 1,000 fresh subscribers' first deliveries waited on 1,000 reads).
    if let Some((_, blocks)) = &mut tap {
        blocks.take().await?;
    }
    Ok(async_stream::stream! {
        let _permit = permit;
        let mut last = start;
        let mut pending: Vec<ChannelEventRow> = if after.is_some() {
            match catch_up(&state, place_id, last).await {
                Ok(events) => events,
                Err(error) => { yield Err(error.into()); return; }
            }
        } else {
            Vec::new()
        };
        loop {
            for event in pending.drain(..) {
                if event.seq > last {
                    last = event.seq;
                    if !view.shows(&event) {
                        continue;
                    }
                    let shared = match &mut tap {
                        Some((tap, blocks)) => match blocks.personal(&event.message).await {
                            Ok(personal) => (!personal).then_some(tap),
                            Err(error) => { yield Err(error.into()); return; }
                        },
                        None => None,
                    };
                    match shared {
                        Some(tap) => {
                            if !tap.hand(Tapped::Channel(event)).await {
                                return;
                            }
                        }
                        None => yield Ok(view.event(event)),
                    }
                }
            }
            let heard = tokio::select! {
                _ = shutdown.cancelled() => return,
                heard = updates.recv() => heard,
            };
            let update: Arc<Update> = match heard {
                Heard::Update(update) => update,
                Heard::MissedChannelUpdates(missed) => {
                    tracing::debug!(missed, channel = %place_id, "subscriber fell behind; catching up");
                    match catch_up(&state, place_id, last).await {
                        Ok(events) => pending = events,
                        Err(error) => { yield Err(error.into()); return; }
                    }
                    continue;
                }
                Heard::MissedMembership => {
                    // Too many membership changes at once to follow: ask the read model
                    // whether the caller may still see the channel or conversation.
                    if let Err(error) = still_sees_place_now(&state, &place, user).await {
                        yield Err(error.into());
                        return;
                    }
                    continue;
                }
                Heard::Closed => return,
            };
            match (update.as_ref(), &place) {
                (Update::Channel(event), _) if event.channel_id == place_id && event.seq > last => {
                    if event.seq > last + 1 {
                        // A gap (this instance started after those updates, or they
                        // were dropped on the way): the read model has them.
                        match fill_gap(&state, place_id, last, event.seq).await {
                            Ok(events) => pending = events,
                            Err(error) => { yield Err(error.into()); return; }
                        }
                    }
                    pending.push(event.clone());
                }
                (update @ (Update::Membership { .. } | Update::ConversationChanged { .. }), place) => {
                    if let Err(error) = still_sees_place(update, place, user) {
                        yield Err(error.into());
                        return;
                    }
                }
                _ => {}
            }
        }
    }
    .boxed())
}

#[Subscription]
impl SubscriptionRoot {
    /// Every change to a channel's messages, in order. With `after` (a cursor from an earlier
    /// event), the changes since then are delivered first, then live ones: no gap, no duplicate.
    /// The subscription ends with `FORBIDDEN` if the caller loses access to the channel.
    async fn channel_events(
        &self,
        ctx: &Context<'_>,
        channel_id: ID,
        after: Option<String>,
    ) -> async_graphql::Result<PlaceStream> {
        if let Some(preset) = preset(ctx, View::Place) {
            return preset;
        }
        let state = state(ctx).clone();
        let user = require_caller(ctx)?;
        let channel_id = ChannelId::parse(&channel_id).map_err(ApiError::from)?;
        let after = parse_cursor(after.as_deref(), "after")?;
        let permit = subscription_permit(ctx)?;
        // Watch first, then check: a removal between the two is not missed.
        let feed = state.updates.watch_channel(channel_id, user);
        let channel = visible_channel(&state, channel_id, user).await?;
        let tap = SharedTap::of(ctx);
        Ok(place_events(
            state,
            user,
            Place::Channel(channel),
            View::Place,
            after,
            permit,
            tap,
            feed,
        )
        .await?)
    }

    /// What happens in a server: channels created, renamed, archived, unarchived, moved and
    /// their topics; members joining, leaving, removed, banned and their roles; the server
    /// renamed, deleted or handed to a new owner; pins in its channels; and, for MODERATOR and
    /// above only, moderation (messages flagged, reported, hidden, restored, flags dismissed):
    /// the moderation queue, live. News of a private channel only for MODERATOR and above. With `after` (a cursor from an earlier event),
    /// the events since then come first, then live ones: no gap, no duplicate. `NOT_FOUND` for
    /// an unknown or deleted server, `FORBIDDEN` for a non-member; ends after `SERVER_DELETED`,
    /// and with `FORBIDDEN` when the caller stops being a member.
    async fn server_events(
        &self,
        ctx: &Context<'_>,
        server_id: ID,
        after: Option<String>,
    ) -> async_graphql::Result<ServerEventStream> {
        let state = state(ctx).clone();
        let user = require_caller(ctx)?;
        let server = ServerId::parse(&server_id).map_err(ApiError::from)?;
        let after = parse_cursor(after.as_deref(), "after")?;
        let permit = subscription_permit(ctx)?;
        // Watch first, then check: a removal between the two is not missed.
        let feed = state.updates.watch_server(server, user);
        Ok(server_events(state, user, server, after, permit, feed).await?)
    }

    /// Every change to the replies in one root message's thread (sent, edited, deleted,
    /// reactions), in order, resumable with `after` like `channelEvents` (its cursors are the
    /// channel's). Allowed to whoever may see the root's channel or conversation: `FORBIDDEN`
    /// for a channel the caller cannot see (and when they lose access), `NOT_FOUND` for an
    /// unknown root or a conversation they are not in.
    async fn thread_events(
        &self,
        ctx: &Context<'_>,
        root_id: ID,
        after: Option<String>,
    ) -> async_graphql::Result<PlaceStream> {
        let root_id = MessageId::parse(&root_id)
            .map_err(|_| ApiError::bad_input("rootId is not a valid id"))?;
        if let Some(preset) = preset(ctx, View::Thread(root_id)) {
            return preset;
        }
        let state = state(ctx).clone();
        let user = require_caller(ctx)?;
        let after = parse_cursor(after.as_deref(), "after")?;
        let root = state
            .read
            .message(root_id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::not_found("message"))?;
        let permit = subscription_permit(ctx)?;
        let feed = state.updates.watch_channel(root.channel_id, user);
        let place = required_place(&state, root.channel_id, user).await?;
        let tap = SharedTap::of(ctx);
        Ok(place_events(
            state,
            user,
            place,
            View::Thread(root_id),
            after,
            permit,
            tap,
            feed,
        )
        .await?)
    }

    /// Every change to a direct conversation's messages, in order, resumable with `after` like
    /// `channelEvents`. `NOT_FOUND` unless the caller is in the conversation.
    async fn conversation_events(
        &self,
        ctx: &Context<'_>,
        conversation_id: ID,
        after: Option<String>,
    ) -> async_graphql::Result<PlaceStream> {
        if let Some(preset) = preset(ctx, View::Place) {
            return preset;
        }
        let state = state(ctx).clone();
        let user = require_caller(ctx)?;
        let id = ChannelId::parse(&conversation_id)
            .map_err(|_| ApiError::bad_input("conversationId is not a valid id"))?;
        let after = parse_cursor(after.as_deref(), "after")?;
        let permit = subscription_permit(ctx)?;
        let feed = state.updates.watch_channel(id, user);
        let conversation = visible_conversation(&state, id, user).await?;
        let tap = SharedTap::of(ctx);
        Ok(place_events(
            state,
            user,
            Place::Conversation(conversation),
            View::Place,
            after,
            permit,
            tap,
            feed,
        )
        .await?)
    }

    /// The caller's own news from any device: servers joined or left, removals, bans and role
    /// changes, conversations opened with them, and their groups' changes (people added or
    /// gone, a new name; `ConversationLeft` when the caller left or was removed), and their
    /// own messages hidden by moderators or shown again (`MessageModerated`, while they may
    /// still see the channel). `ResyncNeeded` says some were missed; re-read `servers` and
    /// `conversations` then, and the messages on screen (their `hidden`).
    async fn user_events(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<UserEvent>>> {
        let state = state(ctx).clone();
        let user = require_caller(ctx)?;
        let permit = subscription_permit(ctx)?;
        let mut updates = state.updates.watch_member(user);
        let mut own_messages = state.updates.watch_own_messages(user);
        let shutdown = state.shutdown.clone();
        Ok(async_stream::stream! {
            let _permit = permit;
            loop {
                let heard = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    heard = updates.recv() => heard,
                    heard = own_messages.recv() => heard,
                };
                match heard {
                    Ok(update) => match update.as_ref() {
                        Update::Membership { server_id, role, .. } => {
                            yield Ok(UserEvent::MembershipChanged(MembershipChanged {
                                server_id: ID(server_id.to_string()),
                                member: role.is_some(),
                                role: role.map(RoleGql::from),
                            }));
                        }
                        Update::ConversationOpened { conversation_id, opened_by, participant_ids, opened_at } => {
                            yield Ok(UserEvent::ConversationOpened(ConversationOpened {
                                conversation: Conversation {
                                    id: *conversation_id,
                                    opened_by: *opened_by,
                                    participants: participant_ids.clone(),
                                    opened_at: *opened_at,
                                    group: participant_ids.len() > 2,
                                    owner: Some(*opened_by),
                                    name: None,
                                },
                            }));
                        }
                        Update::ConversationChanged { conversation_id, removed, .. } => {
                            if *removed == Some(user) {
                                yield Ok(UserEvent::ConversationLeft(ConversationLeft {
                                    conversation_id: ID(conversation_id.to_string()),
                                }));
                                continue;
                            }
                            // The read model holds the change: it is published after the commit.
                            match visible_conversation(&state, *conversation_id, user).await {
                                Ok(row) => yield Ok(UserEvent::ConversationChanged(ConversationChanged {
                                    conversation: row.into(),
                                })),
                                Err(error) => tracing::debug!(?error, "a changed conversation is gone from view"),
                            }
                        }
                        Update::Channel(row) => {
                            let Some(news) = MessageModerated::from_update(row) else { continue };
                            // Only while they may still see where they wrote it.
                            match visible_channel(&state, row.channel_id, user).await {
                                Ok(_) => yield Ok(UserEvent::MessageModerated(Box::new(news))),
                                Err(error) => tracing::debug!(?error, "moderation of a message in a channel no longer in view"),
                            }
                        }
                        Update::Server(_) => {}
                    },
                    Err(RecvError::Lagged(missed)) => {
                        yield Ok(UserEvent::ResyncNeeded(ResyncNeeded {
                            missed: i64::try_from(missed).unwrap_or(i64::MAX),
                        }));
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }
}
