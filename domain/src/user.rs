//! The `User` aggregate: an account and its public profile.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::UserId;
use crate::values::{AvatarUrl, DisplayName, StatusText, Username};
use crate::EVENT_VERSION_1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserCommand {
    /// Create the account. The password arrives already hashed: hashing is the adapter's job.
    RegisterUser {
        user_id: UserId,
        username: Username,
        display_name: DisplayName,
        password_hash: String,
        at: DateTime<Utc>,
    },
    /// Change what others see of the user: each field that is `Some` replaces the current
    /// one (`Some(None)` clears a picture or a status); `None` keeps it.
    ChangeProfile {
        display_name: Option<DisplayName>,
        avatar_url: Option<Option<AvatarUrl>>,
        status_text: Option<Option<StatusText>>,
        at: DateTime<Utc>,
    },
    /// Sign out on every device: every session started before now ends.
    EndAllSessions { at: DateTime<Utc> },
    /// Replace the account's password (already hashed, like at registration; the adapter has
    /// checked the current one). Every session started before now ends with it.
    ChangePassword {
        password_hash: String,
        at: DateTime<Utc>,
    },
    /// Someone tried to sign in as this user with a wrong password.
    RecordFailedLogin { at: DateTime<Utc> },
    /// Stop hearing from `user`: no direct message from them, their messages hidden from
    /// this user. Blocking someone already blocked changes nothing.
    BlockUser { user: UserId, at: DateTime<Utc> },
    /// Hear from `user` again. Unblocking someone not blocked changes nothing.
    UnblockUser { user: UserId, at: DateTime<Utc> },
    /// Create the account of someone signed in by an external OpenID Connect issuer, the
    /// first time one of their tokens arrives. The account has no password.
    RegisterExternalUser {
        user_id: UserId,
        username: Username,
        display_name: DisplayName,
        issuer: String,
        subject: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
pub enum UserEvent {
    UserRegistered {
        user_id: UserId,
        username: Username,
        display_name: DisplayName,
        /// A PHC-format argon2id hash. The event store keeps it for logins; it is redacted
        /// from every public copy of the event, so readers of the log decode it as empty.
        #[serde(default)]
        #[cfg_attr(feature = "json-schema", schemars(skip))]
        password_hash: String,
        registered_at: DateTime<Utc>,
    },
    /// The user's profile after a change, whole: a picture or status not given is none
    /// (events from before pictures and statuses existed have neither).
    ProfileChanged {
        display_name: DisplayName,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        avatar_url: Option<AvatarUrl>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status_text: Option<StatusText>,
        changed_at: DateTime<Utc>,
    },
    /// Every session that started before `ended_at` is over ("log out everywhere").
    AllSessionsEnded { ended_at: DateTime<Utc> },
    /// The account's password was replaced; followed by `AllSessionsEnded` at the same instant.
    PasswordChanged {
        /// The new PHC-format argon2id hash, redacted from every public copy like
        /// `UserRegistered`'s.
        #[serde(default)]
        #[cfg_attr(feature = "json-schema", schemars(skip))]
        password_hash: String,
        changed_at: DateTime<Utc>,
    },
    /// The user blocked `blocked`: no direct message between them, and `blocked`'s messages
    /// are hidden from the user wherever they meet.
    UserBlocked {
        blocked: UserId,
        blocked_at: DateTime<Utc>,
    },
    /// The user unblocked `unblocked`.
    UserUnblocked {
        unblocked: UserId,
        unblocked_at: DateTime<Utc>,
    },
    /// A sign-in as this user failed: a wrong password. (Attempts are rate-limited per
    /// username before they get this far, so a flood leaves a bounded trail.)
    LoginFailed { failed_at: DateTime<Utc> },
    /// The account speaks for `subject` at the OpenID Connect issuer `issuer` (its `iss` and
    /// `sub` claims): tokens of that issuer for that subject act as this user. Follows the
    /// account's `UserRegistered` (with no password).
    ExternalIdentityLinked {
        issuer: String,
        subject: String,
        linked_at: DateTime<Utc>,
    },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            UserEvent::UserRegistered { .. } => "UserRegistered",
            UserEvent::ProfileChanged { .. } => "ProfileChanged",
            UserEvent::AllSessionsEnded { .. } => "AllSessionsEnded",
            UserEvent::PasswordChanged { .. } => "PasswordChanged",
            UserEvent::LoginFailed { .. } => "LoginFailed",
            UserEvent::ExternalIdentityLinked { .. } => "ExternalIdentityLinked",
            UserEvent::UserBlocked { .. } => "UserBlocked",
            UserEvent::UserUnblocked { .. } => "UserUnblocked",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION_1.to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("this account already exists")]
    AlreadyRegistered,
    #[error("no such user")]
    UnknownUser,
    #[error("this account signs in through an external identity provider and has no password")]
    NoPassword,
    #[error("you cannot block yourself")]
    BlockingSelf,
    #[error("you have blocked {MAX_BLOCKED} people, the most there can be: unblock someone first")]
    TooManyBlocked,
}

/// The most people one user may have blocked at once.
pub const MAX_BLOCKED: usize = 1_000;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: Option<UserId>,
    pub username: Option<Username>,
    pub display_name: Option<DisplayName>,
    pub avatar_url: Option<AvatarUrl>,
    pub status_text: Option<StatusText>,
    pub password_hash: Option<String>,
    /// When the user last signed out everywhere.
    pub sessions_ended_before: Option<DateTime<Utc>>,
    /// The people this user has blocked.
    #[serde(default)]
    pub blocked: BTreeSet<UserId>,
}

impl User {
    pub fn is_registered(&self) -> bool {
        self.id.is_some()
    }

    /// Whether this user has blocked `other`.
    pub fn blocks(&self, other: UserId) -> bool {
        self.blocked.contains(&other)
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "User";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            UserCommand::RegisterUser {
                user_id,
                username,
                display_name,
                password_hash,
                at,
            } => {
                if self.is_registered() {
                    return Err(UserError::AlreadyRegistered);
                }
                let event = UserEvent::UserRegistered {
                    user_id,
                    username,
                    display_name,
                    password_hash,
                    registered_at: at,
                };
                sink.write(event, self).await;
            }
            UserCommand::RegisterExternalUser {
                user_id,
                username,
                display_name,
                issuer,
                subject,
                at,
            } => {
                if self.is_registered() {
                    return Err(UserError::AlreadyRegistered);
                }
                let registered = UserEvent::UserRegistered {
                    user_id,
                    username,
                    display_name,
                    password_hash: String::new(),
                    registered_at: at,
                };
                sink.write(registered, self).await;
                let linked = UserEvent::ExternalIdentityLinked {
                    issuer,
                    subject,
                    linked_at: at,
                };
                sink.write(linked, self).await;
            }
            UserCommand::BlockUser { user, at } => {
                if !self.is_registered() {
                    return Err(UserError::UnknownUser);
                }
                if self.id == Some(user) {
                    return Err(UserError::BlockingSelf);
                }
                if !self.blocks(user) {
                    if self.blocked.len() >= MAX_BLOCKED {
                        return Err(UserError::TooManyBlocked);
                    }
                    let event = UserEvent::UserBlocked {
                        blocked: user,
                        blocked_at: at,
                    };
                    sink.write(event, self).await;
                }
            }
            UserCommand::UnblockUser { user, at } => {
                if !self.is_registered() {
                    return Err(UserError::UnknownUser);
                }
                if self.blocks(user) {
                    let event = UserEvent::UserUnblocked {
                        unblocked: user,
                        unblocked_at: at,
                    };
                    sink.write(event, self).await;
                }
            }
            UserCommand::RecordFailedLogin { at } => {
                if !self.is_registered() {
                    return Err(UserError::UnknownUser);
                }
                sink.write(UserEvent::LoginFailed { failed_at: at }, self)
                    .await;
            }
            UserCommand::EndAllSessions { at } => {
                if !self.is_registered() {
                    return Err(UserError::UnknownUser);
                }
                sink.write(UserEvent::AllSessionsEnded { ended_at: at }, self)
                    .await;
            }
            UserCommand::ChangePassword { password_hash, at } => {
                if !self.is_registered() {
                    return Err(UserError::UnknownUser);
                }
                if self.password_hash.as_deref().is_none_or(str::is_empty) {
                    return Err(UserError::NoPassword);
                }
                let changed = UserEvent::PasswordChanged {
                    password_hash,
                    changed_at: at,
                };
                sink.write(changed, self).await;
                sink.write(UserEvent::AllSessionsEnded { ended_at: at }, self)
                    .await;
            }
            UserCommand::ChangeProfile {
                display_name,
                avatar_url,
                status_text,
                at,
            } => {
                let Some(current) = self.display_name.clone() else {
                    return Err(UserError::UnknownUser);
                };
                let display_name = display_name.unwrap_or(current);
                let avatar_url = avatar_url.unwrap_or_else(|| self.avatar_url.clone());
                let status_text = status_text.unwrap_or_else(|| self.status_text.clone());
                let unchanged = self.display_name.as_ref() == Some(&display_name)
                    && self.avatar_url == avatar_url
                    && self.status_text == status_text;
                if !unchanged {
                    let event = UserEvent::ProfileChanged {
                        display_name,
                        avatar_url,
                        status_text,
                        changed_at: at,
                    };
                    sink.write(event, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            UserEvent::UserRegistered {
                user_id,
                username,
                display_name,
                password_hash,
                ..
            } => {
                self.id = Some(user_id);
                self.username = Some(username);
                self.display_name = Some(display_name);
                self.password_hash = Some(password_hash);
            }
            UserEvent::ProfileChanged {
                display_name,
                avatar_url,
                status_text,
                ..
            } => {
                self.display_name = Some(display_name);
                self.avatar_url = avatar_url;
                self.status_text = status_text;
            }
            UserEvent::AllSessionsEnded { ended_at } => {
                self.sessions_ended_before = Some(ended_at);
            }
            UserEvent::PasswordChanged { password_hash, .. } => {
                self.password_hash = Some(password_hash);
            }
            UserEvent::UserBlocked { blocked, .. } => {
                self.blocked.insert(blocked);
            }
            UserEvent::UserUnblocked { unblocked, .. } => {
                self.blocked.remove(&unblocked);
            }
            UserEvent::LoginFailed { .. } | UserEvent::ExternalIdentityLinked { .. } => {}
        }
    }
}
