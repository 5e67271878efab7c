//! Projection updates: what projectors publish after a commit, and the realtime edge fans out.
//!
//! In the embedded mode the bus is an in-process broadcast channel; a subscriber that falls
//! behind by more than its capacity is told how far (`Lagged`) and re-reads the read model.

use std::sync::Arc;

use aether_domain::{ChannelId, Role, ServerId, UserId};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::rows::ChannelEventRow;

/// The default number of updates a slow subscriber may fall behind before it must re-read.
pub const DEFAULT_BUS_CAPACITY: usize = 4_096;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Update {
    /// A channel's messages changed; keyed by channel id.
    Channel(ChannelEventRow),
    /// A member joined, left or changed role (`role: None` means they are no longer a member).
    Membership {
        server_id: ServerId,
        user_id: UserId,
        role: Option<Role>,
    },
}

impl Update {
    pub fn channel_id(&self) -> Option<ChannelId> {
        match self {
            Update::Channel(event) => Some(event.channel_id),
            Update::Membership { .. } => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct UpdateBus {
    sender: broadcast::Sender<Arc<Update>>,
}

impl UpdateBus {
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }

    pub fn publish(&self, update: Update) {
        // No receiver is not an error: nobody is watching right now.
        let _ = self.sender.send(Arc::new(update));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Update>> {
        self.sender.subscribe()
    }
}

impl Default for UpdateBus {
    fn default() -> Self {
        Self::new(DEFAULT_BUS_CAPACITY)
    }
}
