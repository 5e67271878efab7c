//! Roles, the permission matrix, and what a user may do in one channel.
//!
//! Both sides use this module: aggregates refuse commands with it, and the read side filters
//! queries and subscriptions with it, so the two can never disagree.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::ServerId;

/// A member's role in a server, from most to least powerful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Owner,
    Admin,
    Moderator,
    Member,
    Guest,
}

/// Something a role may be allowed to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Rename the server.
    ManageServer,
    /// Create, rename and archive channels.
    ManageChannels,
    /// Change other members' roles (only to roles below one's own).
    ManageRoles,
    /// Remove and ban members below one's own role, and lift bans.
    ManageMembers,
    /// Create invites.
    CreateInvites,
    /// Revoke invites created by others.
    ManageInvites,
    /// Delete other people's messages.
    ManageMessages,
    /// Read and post in private channels.
    ViewPrivateChannels,
    /// Post in announcement channels.
    PostAnnouncements,
    /// Post in ordinary channels.
    SendMessages,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Owner,
        Role::Admin,
        Role::Moderator,
        Role::Member,
        Role::Guest,
    ];

    /// Higher is more powerful.
    pub const fn rank(self) -> u8 {
        match self {
            Role::Owner => 4,
            Role::Admin => 3,
            Role::Moderator => 2,
            Role::Member => 1,
            Role::Guest => 0,
        }
    }

    /// The permission matrix. The weakest role that holds each permission:
    ///
    /// | permission            | weakest role |
    /// |-----------------------|--------------|
    /// | ManageServer          | ADMIN        |
    /// | ManageChannels        | ADMIN        |
    /// | ManageRoles           | ADMIN        |
    /// | ManageMembers         | MODERATOR    |
    /// | ManageInvites         | MODERATOR    |
    /// | ManageMessages        | MODERATOR    |
    /// | ViewPrivateChannels   | MODERATOR    |
    /// | PostAnnouncements     | MODERATOR    |
    /// | CreateInvites         | MEMBER       |
    /// | SendMessages          | GUEST        |
    pub const fn allows(self, permission: Permission) -> bool {
        let weakest = match permission {
            Permission::ManageServer | Permission::ManageChannels | Permission::ManageRoles => {
                Role::Admin
            }
            Permission::ManageMembers
            | Permission::ManageInvites
            | Permission::ManageMessages
            | Permission::ViewPrivateChannels
            | Permission::PostAnnouncements => Role::Moderator,
            Permission::CreateInvites => Role::Member,
            Permission::SendMessages => Role::Guest,
        };
        self.rank() >= weakest.rank()
    }

    pub const fn outranks(self, other: Role) -> bool {
        self.rank() > other.rank()
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "OWNER",
            Role::Admin => "ADMIN",
            Role::Moderator => "MODERATOR",
            Role::Member => "MEMBER",
            Role::Guest => "GUEST",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == value)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of conversation a channel holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChannelKind {
    /// Everyone may post.
    Text,
    /// Everyone reads; moderators and above post.
    Announcement,
    /// A voice room; its text chat follows the rules of a text channel.
    Voice,
}

impl ChannelKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Text => "TEXT",
            ChannelKind::Announcement => "ANNOUNCEMENT",
            ChannelKind::Voice => "VOICE",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            ChannelKind::Text,
            ChannelKind::Announcement,
            ChannelKind::Voice,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == value)
    }
}

/// The facts about a channel that decide access to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelFacts {
    pub kind: ChannelKind,
    pub private: bool,
    pub archived: bool,
}

/// One user's standing in one channel, as the server that owns the channel sees it at the moment
/// a command is decided. The write side computes it from the `Server` aggregate; the read side
/// from the catalog read model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelAccess {
    /// No such channel exists.
    UnknownChannel,
    /// The channel exists, but the user is not a member of its server.
    NotAMember { server_id: ServerId },
    /// The user is a member of the channel's server with this role.
    Member {
        server_id: ServerId,
        role: Role,
        channel: ChannelFacts,
    },
    /// The channel is a direct conversation, which belongs to no server: its participants
    /// read and post, nobody moderates, and everyone else sees nothing.
    Conversation { participant: bool },
}

impl ChannelAccess {
    /// Whether the user may read the channel's history and subscribe to it.
    pub fn can_view(&self) -> bool {
        match self {
            ChannelAccess::Member { role, channel, .. } => {
                !channel.private || role.allows(Permission::ViewPrivateChannels)
            }
            ChannelAccess::Conversation { participant } => *participant,
            _ => false,
        }
    }

    /// Whether the user may post in the channel right now.
    pub fn can_post(&self) -> bool {
        match self {
            ChannelAccess::Member { role, channel, .. } => {
                self.can_view()
                    && !channel.archived
                    && match channel.kind {
                        ChannelKind::Announcement => role.allows(Permission::PostAnnouncements),
                        ChannelKind::Text | ChannelKind::Voice => {
                            role.allows(Permission::SendMessages)
                        }
                    }
            }
            ChannelAccess::Conversation { participant } => *participant,
            _ => false,
        }
    }

    /// Whether the user may react to the channel's messages: whoever sees a live channel
    /// (announcement channels included, where most members may not post), or a participant
    /// of a conversation. An archived channel is read-only, reactions included.
    pub fn can_react(&self) -> bool {
        match self {
            ChannelAccess::Member { channel, .. } => self.can_view() && !channel.archived,
            ChannelAccess::Conversation { participant } => *participant,
            _ => false,
        }
    }

    /// Whether the user may pin and unpin messages: a moderator or above in a live channel,
    /// either participant in a conversation.
    pub fn can_pin(&self) -> bool {
        match self {
            ChannelAccess::Member { channel, .. } => self.can_moderate() && !channel.archived,
            ChannelAccess::Conversation { participant } => *participant,
            _ => false,
        }
    }

    /// Whether the user may delete other people's messages in the channel.
    pub fn can_moderate(&self) -> bool {
        matches!(self, ChannelAccess::Member { role, .. } if role.allows(Permission::ManageMessages))
            && self.can_view()
    }

    /// The server that owns the channel; `None` for a conversation or an unknown channel.
    pub fn server_id(&self) -> Option<ServerId> {
        match self {
            ChannelAccess::UnknownChannel | ChannelAccess::Conversation { .. } => None,
            ChannelAccess::NotAMember { server_id } | ChannelAccess::Member { server_id, .. } => {
                Some(*server_id)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(role: Role, kind: ChannelKind, private: bool, archived: bool) -> ChannelAccess {
        ChannelAccess::Member {
            server_id: ServerId::new(),
            role,
            channel: ChannelFacts {
                kind,
                private,
                archived,
            },
        }
    }

    #[test]
    fn matrix_grants_each_permission_to_its_weakest_role_and_above() {
        assert!(Role::Guest.allows(Permission::SendMessages));
        assert!(!Role::Guest.allows(Permission::CreateInvites));
        assert!(Role::Member.allows(Permission::CreateInvites));
        assert!(!Role::Member.allows(Permission::ManageMessages));
        assert!(Role::Moderator.allows(Permission::ManageMessages));
        assert!(!Role::Moderator.allows(Permission::ManageChannels));
        assert!(Role::Moderator.allows(Permission::ManageMembers));
        assert!(!Role::Member.allows(Permission::ManageMembers));
        assert!(Role::Admin.allows(Permission::ManageChannels));
        assert!(Role::Owner.allows(Permission::ManageRoles));
    }

    #[test]
    fn private_channels_are_hidden_below_moderator() {
        assert!(!member(Role::Member, ChannelKind::Text, true, false).can_view());
        assert!(member(Role::Moderator, ChannelKind::Text, true, false).can_post());
    }

    #[test]
    fn announcements_are_read_by_all_and_posted_by_moderators() {
        let guest = member(Role::Guest, ChannelKind::Announcement, false, false);
        assert!(guest.can_view());
        assert!(!guest.can_post());
        assert!(guest.can_react(), "readers of announcements react to them");
        assert!(member(Role::Moderator, ChannelKind::Announcement, false, false).can_post());
    }

    #[test]
    fn archived_channels_are_read_only() {
        let owner = member(Role::Owner, ChannelKind::Text, false, true);
        assert!(owner.can_view());
        assert!(!owner.can_post());
        assert!(!owner.can_react());
    }

    #[test]
    fn outsiders_see_nothing() {
        let outsider = ChannelAccess::NotAMember {
            server_id: ServerId::new(),
        };
        assert!(!outsider.can_view());
        assert!(!outsider.can_post());
        assert!(!ChannelAccess::UnknownChannel.can_view());
    }
}
