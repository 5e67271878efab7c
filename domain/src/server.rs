//! The `Server` aggregate: a community with its channels, members, roles and invites.
//!
//! Membership and channels live in one aggregate so that "is this user a member, and may they
//! post here?" is answered from one consistent history ([`Server::channel_access`]).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::{ChannelId, ServerId, UserId};
use crate::moderation::{ContentPolicy, ModerationThreshold};
use crate::permissions::{ChannelAccess, ChannelFacts, ChannelKind, Permission, Role};
use crate::values::{
    ChannelCategory, ChannelName, ChannelTopic, InviteCode, ModerationReason, ServerName,
};
use crate::EVENT_VERSION_1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerCommand {
    CreateServer {
        server_id: ServerId,
        name: ServerName,
        owner: UserId,
        at: DateTime<Utc>,
    },
    RenameServer {
        actor: UserId,
        name: ServerName,
    },
    CreateChannel {
        actor: UserId,
        channel_id: ChannelId,
        name: ChannelName,
        kind: ChannelKind,
        private: bool,
    },
    RenameChannel {
        actor: UserId,
        channel_id: ChannelId,
        name: ChannelName,
    },
    ArchiveChannel {
        actor: UserId,
        channel_id: ChannelId,
    },
    CreateInvite {
        actor: UserId,
        code: InviteCode,
        max_uses: Option<u32>,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    RevokeInvite {
        actor: UserId,
        code: InviteCode,
    },
    JoinServer {
        user: UserId,
        code: InviteCode,
        at: DateTime<Utc>,
    },
    LeaveServer {
        user: UserId,
    },
    ChangeMemberRole {
        actor: UserId,
        user: UserId,
        role: Role,
    },
    /// Remove a member below the actor's role; they may rejoin with an invite.
    RemoveMember {
        actor: UserId,
        user: UserId,
        reason: Option<ModerationReason>,
    },
    /// Ban a user: removed if a member, and no invite lets them in until the ban is lifted.
    /// A user who is not a member can be banned too, before they ever join.
    BanUser {
        actor: UserId,
        user: UserId,
        reason: Option<ModerationReason>,
        at: DateTime<Utc>,
    },
    UnbanUser {
        actor: UserId,
        user: UserId,
    },
    /// Delete the server (its owner only): from then on it answers as if it never existed,
    /// while its history stays in the log.
    DeleteServer {
        actor: UserId,
        at: DateTime<Utc>,
    },
    /// Hand the server to another member (its owner only); the old owner stays as an ADMIN.
    TransferOwnership {
        actor: UserId,
        new_owner: UserId,
    },
    /// Set (`Some`) or clear (`None`) a live channel's topic.
    SetChannelTopic {
        actor: UserId,
        channel_id: ChannelId,
        topic: Option<ChannelTopic>,
    },
    /// Put a live channel under `category` (`None`: under no category) at `position` in the
    /// server's list of channels (0 is first; archived channels count).
    MoveChannel {
        actor: UserId,
        channel_id: ChannelId,
        category: Option<ChannelCategory>,
        position: u32,
    },
    /// Make an archived channel live again: members may post in it.
    UnarchiveChannel {
        actor: UserId,
        channel_id: ChannelId,
    },
    /// Choose what the rule stage does with offensive messages in this server.
    SetContentPolicy {
        actor: UserId,
        policy: ContentPolicy,
    },
    /// Choose the model score from which the model stage flags and hides a message here.
    SetModerationThreshold {
        actor: UserId,
        threshold: ModerationThreshold,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
pub enum ServerEvent {
    /// The owner is a member with the OWNER role from this event on.
    ServerCreated {
        server_id: ServerId,
        name: ServerName,
        owner_id: UserId,
        created_at: DateTime<Utc>,
    },
    ServerRenamed {
        name: ServerName,
    },
    ChannelCreated {
        channel_id: ChannelId,
        name: ChannelName,
        kind: ChannelKind,
        private: bool,
    },
    ChannelRenamed {
        channel_id: ChannelId,
        name: ChannelName,
    },
    ChannelArchived {
        channel_id: ChannelId,
    },
    InviteCreated {
        code: InviteCode,
        created_by: UserId,
        max_uses: Option<u32>,
        expires_at: Option<DateTime<Utc>>,
    },
    InviteRevoked {
        code: InviteCode,
    },
    MemberJoined {
        user_id: UserId,
        role: Role,
        invite_code: InviteCode,
        joined_at: DateTime<Utc>,
    },
    MemberLeft {
        user_id: UserId,
    },
    MemberRoleChanged {
        user_id: UserId,
        role: Role,
        previous_role: Role,
    },
    /// A moderator removed a member, who may rejoin with an invite.
    MemberRemoved {
        user_id: UserId,
        removed_by: UserId,
        reason: Option<ModerationReason>,
    },
    /// A user was banned: removed if they were a member, and refused by every invite until
    /// unbanned.
    UserBanned {
        user_id: UserId,
        banned_by: UserId,
        reason: Option<ModerationReason>,
        banned_at: DateTime<Utc>,
    },
    UserUnbanned {
        user_id: UserId,
        unbanned_by: UserId,
    },
    /// The owner deleted the server: every query about it answers as if it did not exist, and
    /// each of `member_ids` (everyone who was a member at that moment) lost access to it.
    ServerDeleted {
        deleted_by: UserId,
        deleted_at: DateTime<Utc>,
        member_ids: Vec<UserId>,
    },
    /// `new_owner_id` (a member with `previous_role` until now) owns the server;
    /// `previous_owner_id` is an ADMIN from this event on.
    OwnershipTransferred {
        previous_owner_id: UserId,
        new_owner_id: UserId,
        previous_role: Role,
    },
    /// A channel's topic was set, or cleared (`topic: null`).
    ChannelTopicChanged {
        channel_id: ChannelId,
        topic: Option<ChannelTopic>,
    },
    /// A channel moved under `category` (`null`: no category); `order` is every channel of the
    /// server, archived ones included, in the order they are listed from now on.
    ChannelMoved {
        channel_id: ChannelId,
        category: Option<ChannelCategory>,
        order: Vec<ChannelId>,
    },
    ChannelUnarchived {
        channel_id: ChannelId,
    },
    /// An admin chose what the rule stage does with offensive messages from now on.
    ContentPolicyChanged {
        policy: ContentPolicy,
        changed_by: UserId,
    },
    /// An admin chose the model score from which the model stage flags and hides a message in
    /// this server from now on.
    ModerationThresholdChanged {
        threshold: ModerationThreshold,
        changed_by: UserId,
    },
}

impl DomainEvent for ServerEvent {
    fn event_type(&self) -> String {
        match self {
            ServerEvent::ServerCreated { .. } => "ServerCreated",
            ServerEvent::ServerRenamed { .. } => "ServerRenamed",
            ServerEvent::ChannelCreated { .. } => "ChannelCreated",
            ServerEvent::ChannelRenamed { .. } => "ChannelRenamed",
            ServerEvent::ChannelArchived { .. } => "ChannelArchived",
            ServerEvent::InviteCreated { .. } => "InviteCreated",
            ServerEvent::InviteRevoked { .. } => "InviteRevoked",
            ServerEvent::MemberJoined { .. } => "MemberJoined",
            ServerEvent::MemberLeft { .. } => "MemberLeft",
            ServerEvent::MemberRoleChanged { .. } => "MemberRoleChanged",
            ServerEvent::MemberRemoved { .. } => "MemberRemoved",
            ServerEvent::UserBanned { .. } => "UserBanned",
            ServerEvent::UserUnbanned { .. } => "UserUnbanned",
            ServerEvent::ServerDeleted { .. } => "ServerDeleted",
            ServerEvent::OwnershipTransferred { .. } => "OwnershipTransferred",
            ServerEvent::ChannelTopicChanged { .. } => "ChannelTopicChanged",
            ServerEvent::ChannelMoved { .. } => "ChannelMoved",
            ServerEvent::ChannelUnarchived { .. } => "ChannelUnarchived",
            ServerEvent::ContentPolicyChanged { .. } => "ContentPolicyChanged",
            ServerEvent::ModerationThresholdChanged { .. } => "ModerationThresholdChanged",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION_1.to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    #[error("this server already exists")]
    AlreadyExists,
    #[error("no such server")]
    UnknownServer,
    #[error("you are not a member of this server")]
    NotAMember,
    #[error("your role ({role}) does not allow this")]
    NotPermitted { role: Role },
    #[error("no such channel in this server")]
    UnknownChannel,
    #[error("this channel already exists")]
    ChannelAlreadyExists,
    #[error("this channel is archived")]
    ChannelArchived,
    #[error("no such invite")]
    UnknownInvite,
    #[error("this invite code is already in use")]
    InviteAlreadyExists,
    #[error("this invite has been revoked")]
    InviteRevoked,
    #[error("this invite has expired")]
    InviteExpired,
    #[error("this invite has reached its maximum number of uses")]
    InviteExhausted,
    #[error("maxUses must be at least 1")]
    InvalidMaxUses,
    #[error("an invite must expire in the future")]
    InvalidExpiry,
    #[error("you are already a member of this server")]
    AlreadyAMember,
    #[error("the owner cannot leave their own server")]
    OwnerCannotLeave,
    #[error("the owner's role cannot be changed, and nobody can be made owner this way (the owner transfers ownership instead)")]
    OwnershipIsNotTransferable,
    #[error("you can only change the role of members below your own role, to a role below it")]
    RoleAboveYourOwn,
    #[error("that user is not a member of this server")]
    NoSuchMember,
    #[error("you can only remove or ban members below your own role")]
    MemberOutranksYou,
    #[error("you are banned from this server")]
    Banned,
    #[error("that user is not banned from this server")]
    NotBanned,
    #[error("you already own this server")]
    AlreadyTheOwner,
    #[error("position must be between 0 and {last} (the server has {channels} channels)", last = channels.saturating_sub(1))]
    PositionOutOfRange { channels: usize },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelState {
    pub name: ChannelName,
    pub facts: ChannelFacts,
    #[serde(default)]
    pub topic: Option<ChannelTopic>,
    #[serde(default)]
    pub category: Option<ChannelCategory>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InviteState {
    pub created_by: UserId,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Server {
    pub id: Option<ServerId>,
    pub name: Option<ServerName>,
    pub owner: Option<UserId>,
    pub members: BTreeMap<UserId, Role>,
    pub channels: BTreeMap<ChannelId, ChannelState>,
    pub invites: BTreeMap<InviteCode, InviteState>,
    #[serde(default)]
    pub banned: BTreeSet<UserId>,
    /// Every channel, in the order the server lists them (creation order until moved).
    #[serde(default)]
    pub channel_order: Vec<ChannelId>,
    /// Deleted by its owner: every command is refused as if the server did not exist.
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub content_policy: ContentPolicy,
    /// `None` until an admin chooses one: [`ModerationThreshold::DEFAULT`] applies.
    #[serde(default)]
    pub moderation_threshold: Option<ModerationThreshold>,
}

impl Server {
    /// What `user` may do in `channel_id`, as of this server's history.
    pub fn channel_access(&self, channel_id: ChannelId, user: UserId) -> ChannelAccess {
        let (Some(server_id), Some(channel)) = (self.id, self.channels.get(&channel_id)) else {
            return ChannelAccess::UnknownChannel;
        };
        if self.deleted {
            return ChannelAccess::UnknownChannel;
        }
        match self.members.get(&user) {
            None => ChannelAccess::NotAMember { server_id },
            Some(role) => ChannelAccess::Member {
                server_id,
                role: *role,
                channel: channel.facts,
            },
        }
    }

    /// The model score from which the model stage flags and hides a message here.
    pub fn threshold(&self) -> ModerationThreshold {
        self.moderation_threshold.unwrap_or_default()
    }

    pub fn role_of(&self, user: UserId) -> Option<Role> {
        self.members.get(&user).copied()
    }

    fn require_existing(&self) -> Result<(), ServerError> {
        if self.id.is_none() || self.deleted {
            return Err(ServerError::UnknownServer);
        }
        Ok(())
    }

    /// The actor's role, refused unless it holds `permission`.
    fn require(&self, actor: UserId, permission: Permission) -> Result<Role, ServerError> {
        self.require_existing()?;
        let role = self.role_of(actor).ok_or(ServerError::NotAMember)?;
        if !role.allows(permission) {
            return Err(ServerError::NotPermitted { role });
        }
        Ok(role)
    }

    fn live_channel(&self, channel_id: ChannelId) -> Result<&ChannelState, ServerError> {
        let channel = self
            .channels
            .get(&channel_id)
            .ok_or(ServerError::UnknownChannel)?;
        if channel.facts.archived {
            return Err(ServerError::ChannelArchived);
        }
        Ok(channel)
    }

    fn decide(&self, command: ServerCommand) -> Result<Vec<ServerEvent>, ServerError> {
        let event = match command {
            ServerCommand::CreateServer {
                server_id,
                name,
                owner,
                at,
            } => {
                if self.id.is_some() {
                    return Err(ServerError::AlreadyExists);
                }
                ServerEvent::ServerCreated {
                    server_id,
                    name,
                    owner_id: owner,
                    created_at: at,
                }
            }
            ServerCommand::RenameServer { actor, name } => {
                self.require(actor, Permission::ManageServer)?;
                if self.name.as_ref() == Some(&name) {
                    return Ok(vec![]);
                }
                ServerEvent::ServerRenamed { name }
            }
            ServerCommand::CreateChannel {
                actor,
                channel_id,
                name,
                kind,
                private,
            } => {
                self.require(actor, Permission::ManageChannels)?;
                if self.channels.contains_key(&channel_id) {
                    return Err(ServerError::ChannelAlreadyExists);
                }
                ServerEvent::ChannelCreated {
                    channel_id,
                    name,
                    kind,
                    private,
                }
            }
            ServerCommand::RenameChannel {
                actor,
                channel_id,
                name,
            } => {
                self.require(actor, Permission::ManageChannels)?;
                if self.live_channel(channel_id)?.name == name {
                    return Ok(vec![]);
                }
                ServerEvent::ChannelRenamed { channel_id, name }
            }
            ServerCommand::ArchiveChannel { actor, channel_id } => {
                self.require(actor, Permission::ManageChannels)?;
                self.live_channel(channel_id)?;
                ServerEvent::ChannelArchived { channel_id }
            }
            ServerCommand::CreateInvite {
                actor,
                code,
                max_uses,
                expires_at,
                at,
            } => {
                self.require(actor, Permission::CreateInvites)?;
                if max_uses == Some(0) {
                    return Err(ServerError::InvalidMaxUses);
                }
                if expires_at.is_some_and(|expires| expires <= at) {
                    return Err(ServerError::InvalidExpiry);
                }
                if self.invites.contains_key(&code) {
                    return Err(ServerError::InviteAlreadyExists);
                }
                ServerEvent::InviteCreated {
                    code,
                    created_by: actor,
                    max_uses,
                    expires_at,
                }
            }
            ServerCommand::RevokeInvite { actor, code } => {
                self.require_existing()?;
                let role = self.role_of(actor).ok_or(ServerError::NotAMember)?;
                let invite = self.invites.get(&code).ok_or(ServerError::UnknownInvite)?;
                if invite.created_by != actor && !role.allows(Permission::ManageInvites) {
                    return Err(ServerError::NotPermitted { role });
                }
                if invite.revoked {
                    return Ok(vec![]);
                }
                ServerEvent::InviteRevoked { code }
            }
            ServerCommand::JoinServer { user, code, at } => {
                self.require_existing()?;
                let invite = self.invites.get(&code).ok_or(ServerError::UnknownInvite)?;
                if self.members.contains_key(&user) {
                    return Err(ServerError::AlreadyAMember);
                }
                if self.banned.contains(&user) {
                    return Err(ServerError::Banned);
                }
                if invite.revoked {
                    return Err(ServerError::InviteRevoked);
                }
                if invite.expires_at.is_some_and(|expires| expires <= at) {
                    return Err(ServerError::InviteExpired);
                }
                if invite.max_uses.is_some_and(|max| invite.uses >= max) {
                    return Err(ServerError::InviteExhausted);
                }
                ServerEvent::MemberJoined {
                    user_id: user,
                    role: Role::Member,
                    invite_code: code,
                    joined_at: at,
                }
            }
            ServerCommand::LeaveServer { user } => {
                self.require_existing()?;
                match self.role_of(user) {
                    None => return Err(ServerError::NotAMember),
                    Some(Role::Owner) => return Err(ServerError::OwnerCannotLeave),
                    Some(_) => ServerEvent::MemberLeft { user_id: user },
                }
            }
            ServerCommand::ChangeMemberRole { actor, user, role } => {
                let actor_role = self.require(actor, Permission::ManageRoles)?;
                let previous_role = self.role_of(user).ok_or(ServerError::NotAMember)?;
                if role == Role::Owner || previous_role == Role::Owner {
                    return Err(ServerError::OwnershipIsNotTransferable);
                }
                if !actor_role.outranks(previous_role) || !actor_role.outranks(role) {
                    return Err(ServerError::RoleAboveYourOwn);
                }
                if previous_role == role {
                    return Ok(vec![]);
                }
                ServerEvent::MemberRoleChanged {
                    user_id: user,
                    role,
                    previous_role,
                }
            }
            ServerCommand::RemoveMember {
                actor,
                user,
                reason,
            } => {
                let actor_role = self.require(actor, Permission::ManageMembers)?;
                let role = self.role_of(user).ok_or(ServerError::NoSuchMember)?;
                if !actor_role.outranks(role) {
                    return Err(ServerError::MemberOutranksYou);
                }
                ServerEvent::MemberRemoved {
                    user_id: user,
                    removed_by: actor,
                    reason,
                }
            }
            ServerCommand::BanUser {
                actor,
                user,
                reason,
                at,
            } => {
                let actor_role = self.require(actor, Permission::ManageMembers)?;
                if user == actor
                    || self
                        .role_of(user)
                        .is_some_and(|role| !actor_role.outranks(role))
                {
                    return Err(ServerError::MemberOutranksYou);
                }
                if self.banned.contains(&user) {
                    return Ok(vec![]);
                }
                ServerEvent::UserBanned {
                    user_id: user,
                    banned_by: actor,
                    reason,
                    banned_at: at,
                }
            }
            ServerCommand::UnbanUser { actor, user } => {
                self.require(actor, Permission::ManageMembers)?;
                if !self.banned.contains(&user) {
                    return Err(ServerError::NotBanned);
                }
                ServerEvent::UserUnbanned {
                    user_id: user,
                    unbanned_by: actor,
                }
            }
            ServerCommand::DeleteServer { actor, at } => {
                self.require(actor, Permission::OwnServer)?;
                ServerEvent::ServerDeleted {
                    deleted_by: actor,
                    deleted_at: at,
                    member_ids: self.members.keys().copied().collect(),
                }
            }
            ServerCommand::TransferOwnership { actor, new_owner } => {
                self.require(actor, Permission::OwnServer)?;
                if new_owner == actor {
                    return Err(ServerError::AlreadyTheOwner);
                }
                let previous_role = self.role_of(new_owner).ok_or(ServerError::NoSuchMember)?;
                ServerEvent::OwnershipTransferred {
                    previous_owner_id: actor,
                    new_owner_id: new_owner,
                    previous_role,
                }
            }
            ServerCommand::SetChannelTopic {
                actor,
                channel_id,
                topic,
            } => {
                self.require(actor, Permission::ManageChannels)?;
                if self.live_channel(channel_id)?.topic == topic {
                    return Ok(vec![]);
                }
                ServerEvent::ChannelTopicChanged { channel_id, topic }
            }
            ServerCommand::MoveChannel {
                actor,
                channel_id,
                category,
                position,
            } => {
                self.require(actor, Permission::ManageChannels)?;
                let channel = self.live_channel(channel_id)?;
                let channels = self.channel_order.len();
                let position = usize::try_from(position).unwrap_or(usize::MAX);
                if position >= channels {
                    return Err(ServerError::PositionOutOfRange { channels });
                }
                let mut order: Vec<ChannelId> = self
                    .channel_order
                    .iter()
                    .copied()
                    .filter(|id| *id != channel_id)
                    .collect();
                order.insert(position, channel_id);
                if channel.category == category && order == self.channel_order {
                    return Ok(vec![]);
                }
                ServerEvent::ChannelMoved {
                    channel_id,
                    category,
                    order,
                }
            }
            ServerCommand::UnarchiveChannel { actor, channel_id } => {
                self.require(actor, Permission::ManageChannels)?;
                let channel = self
                    .channels
                    .get(&channel_id)
                    .ok_or(ServerError::UnknownChannel)?;
                if !channel.facts.archived {
                    return Ok(vec![]);
                }
                ServerEvent::ChannelUnarchived { channel_id }
            }
            ServerCommand::SetContentPolicy { actor, policy } => {
                self.require(actor, Permission::ManageServer)?;
                if self.content_policy == policy {
                    return Ok(vec![]);
                }
                ServerEvent::ContentPolicyChanged {
                    policy,
                    changed_by: actor,
                }
            }
            ServerCommand::SetModerationThreshold { actor, threshold } => {
                self.require(actor, Permission::ManageServer)?;
                if self.threshold() == threshold {
                    return Ok(vec![]);
                }
                ServerEvent::ModerationThresholdChanged {
                    threshold,
                    changed_by: actor,
                }
            }
        };
        Ok(vec![event])
    }
}

impl Aggregate for Server {
    const TYPE: &'static str = "Server";
    type Command = ServerCommand;
    type Event = ServerEvent;
    type Error = ServerError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ServerEvent::ServerCreated {
                server_id,
                name,
                owner_id,
                ..
            } => {
                self.id = Some(server_id);
                self.name = Some(name);
                self.owner = Some(owner_id);
                self.members.insert(owner_id, Role::Owner);
            }
            ServerEvent::ServerRenamed { name } => self.name = Some(name),
            ServerEvent::ChannelCreated {
                channel_id,
                name,
                kind,
                private,
            } => {
                let facts = ChannelFacts {
                    kind,
                    private,
                    archived: false,
                };
                let channel = ChannelState {
                    name,
                    facts,
                    topic: None,
                    category: None,
                };
                self.channels.insert(channel_id, channel);
                self.channel_order.push(channel_id);
            }
            ServerEvent::ChannelRenamed { channel_id, name } => {
                if let Some(channel) = self.channels.get_mut(&channel_id) {
                    channel.name = name;
                }
            }
            ServerEvent::ChannelArchived { channel_id } => {
                if let Some(channel) = self.channels.get_mut(&channel_id) {
                    channel.facts.archived = true;
                }
            }
            ServerEvent::InviteCreated {
                code,
                created_by,
                max_uses,
                expires_at,
            } => {
                let invite = InviteState {
                    created_by,
                    max_uses,
                    uses: 0,
                    expires_at,
                    revoked: false,
                };
                self.invites.insert(code, invite);
            }
            ServerEvent::InviteRevoked { code } => {
                if let Some(invite) = self.invites.get_mut(&code) {
                    invite.revoked = true;
                }
            }
            ServerEvent::MemberJoined {
                user_id,
                role,
                invite_code,
                ..
            } => {
                self.members.insert(user_id, role);
                if let Some(invite) = self.invites.get_mut(&invite_code) {
                    invite.uses += 1;
                }
            }
            ServerEvent::MemberLeft { user_id } => {
                self.members.remove(&user_id);
            }
            ServerEvent::MemberRoleChanged { user_id, role, .. } => {
                self.members.insert(user_id, role);
            }
            ServerEvent::MemberRemoved { user_id, .. } => {
                self.members.remove(&user_id);
            }
            ServerEvent::UserBanned { user_id, .. } => {
                self.members.remove(&user_id);
                self.banned.insert(user_id);
            }
            ServerEvent::UserUnbanned { user_id, .. } => {
                self.banned.remove(&user_id);
            }
            ServerEvent::ServerDeleted { .. } => self.deleted = true,
            ServerEvent::OwnershipTransferred {
                previous_owner_id,
                new_owner_id,
                ..
            } => {
                self.owner = Some(new_owner_id);
                self.members.insert(new_owner_id, Role::Owner);
                self.members.insert(previous_owner_id, Role::Admin);
            }
            ServerEvent::ChannelTopicChanged { channel_id, topic } => {
                if let Some(channel) = self.channels.get_mut(&channel_id) {
                    channel.topic = topic;
                }
            }
            ServerEvent::ChannelMoved {
                channel_id,
                category,
                order,
            } => {
                if let Some(channel) = self.channels.get_mut(&channel_id) {
                    channel.category = category;
                }
                self.channel_order = order;
            }
            ServerEvent::ChannelUnarchived { channel_id } => {
                if let Some(channel) = self.channels.get_mut(&channel_id) {
                    channel.facts.archived = false;
                }
            }
            ServerEvent::ContentPolicyChanged { policy, .. } => self.content_policy = policy,
            ServerEvent::ModerationThresholdChanged { threshold, .. } => {
                self.moderation_threshold = Some(threshold);
            }
        }
    }
}
