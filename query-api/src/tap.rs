//! Updates a transport serializes once per audience instead of once per subscriber.
//!
//! A transport that shares payloads sets an [`EventTap`] in a subscription's request data.
//! `channelEvents`, `conversationEvents`, `typing` and `presence` then do everything they
//! otherwise do (authorize, catch up, filter, end with an error) but hand each update they
//! would deliver to the tap, in order, instead of yielding it. The transport resolves each
//! update once per audience by running the same document with a [`PresetEvent`], for which
//! those subscriptions yield that one update and end, and shares the bytes. What an update
//! resolves to must not depend on who receives it; the one field reachable from these updates
//! that does, `Reaction.reactedByMe`, keeps a document out of sharing (the edge's
//! `VIEWER_FIELDS`), so it is resolved for each subscriber with their own identity.

use aether_domain::{ChannelId, UserId};
use aether_projections::rows::ChannelEventRow;
use async_graphql::Context;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::ephemeral::PresenceChange;

/// An update a subscription hands to its tap.
#[derive(Clone, Debug)]
pub enum Tapped {
    /// A change to a channel's or conversation's messages.
    Channel(ChannelEventRow),
    /// Someone started typing, or their signal expired.
    Typing(TypingSignal),
    /// Someone's presence changed.
    Presence(PresenceChange),
}

/// A `typing` update before it is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TypingSignal {
    pub channel_id: ChannelId,
    pub user_id: UserId,
    pub typing: bool,
    pub until: DateTime<Utc>,
}

/// What makes an update the same update for every subscriber that receives it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TapKey {
    Channel { place: ChannelId, seq: i64 },
    Typing(TypingSignal),
    Presence { seq: u64 },
}

impl Tapped {
    pub fn key(&self) -> TapKey {
        match self {
            Self::Channel(row) => TapKey::Channel {
                place: row.channel_id,
                seq: row.seq,
            },
            Self::Typing(signal) => TapKey::Typing(*signal),
            Self::Presence(change) => TapKey::Presence { seq: change.seq },
        }
    }
}

/// Where a subscription hands its updates, when the transport shares payloads.
#[derive(Clone, Debug)]
pub struct EventTap(pub mpsc::Sender<Tapped>);

impl EventTap {
    /// The tap of this subscription's request, if its transport set one.
    pub(crate) fn of(ctx: &Context<'_>) -> Option<EventTap> {
        ctx.data_opt::<EventTap>().cloned()
    }

    /// Hands `update` over, waiting while the transport is busy sending; `false` once the
    /// subscription's transport has gone, and the subscription should end.
    pub(crate) async fn hand(&self, update: Tapped) -> bool {
        self.0.send(update).await.is_ok()
    }
}

/// Set in a request's data to resolve a subscription document against one update: the
/// subscription yields it and ends, without any check or read of its own (the transport
/// authorized the subscriber the update was tapped from). Nothing a client sends can set it.
#[derive(Clone, Debug)]
pub struct PresetEvent(pub Tapped);

impl PresetEvent {
    /// The preset update of this request, if any.
    pub(crate) fn of<'a>(ctx: &Context<'a>) -> Option<&'a Tapped> {
        ctx.data_opt::<PresetEvent>().map(|preset| &preset.0)
    }
}
