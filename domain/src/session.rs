//! The `Session` aggregate: one sign-in on one device, and the family of refresh tokens it
//! hands out.
//!
//! Every refresh token carries its session and its generation. Refreshing with the current
//! generation moves the session to the next one (the token is rotated: the old one is spent).
//! Presenting a spent generation again means a token was copied — by whoever stole it, or by
//! the victim after the thief used it first — so the whole session ends, and every token of
//! the family with it. Ending is final. A user's "log out everywhere" ends every session that
//! started before it (an event of the `User`, checked here as `ended_before`).

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::UserId;
use crate::EVENT_VERSION_1;

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionEndReason {
    /// The user signed out on this device.
    LoggedOut,
    /// A spent refresh token was presented again: the family is presumed stolen.
    RefreshTokenReused,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SessionCommand {
    StartSession {
        session_id: Uuid,
        user_id: UserId,
        at: DateTime<Utc>,
    },
    /// Trade the refresh token of `generation` for the next one.
    Refresh {
        generation: u32,
        /// When the user last signed out everywhere, if ever.
        ended_before: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    EndSession {
        reason: SessionEndReason,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
pub enum SessionEvent {
    SessionStarted {
        session_id: Uuid,
        user_id: UserId,
        started_at: DateTime<Utc>,
    },
    SessionRefreshed {
        /// The generation of the refresh token now valid.
        generation: u32,
        refreshed_at: DateTime<Utc>,
    },
    SessionEnded {
        reason: SessionEndReason,
        /// For a reuse: the spent generation that was presented.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        presented_generation: Option<u32>,
        ended_at: DateTime<Utc>,
    },
}

impl DomainEvent for SessionEvent {
    fn event_type(&self) -> String {
        match self {
            SessionEvent::SessionStarted { .. } => "SessionStarted",
            SessionEvent::SessionRefreshed { .. } => "SessionRefreshed",
            SessionEvent::SessionEnded { .. } => "SessionEnded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION_1.to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("this session already exists")]
    AlreadyStarted,
    #[error("no such session")]
    UnknownSession,
    #[error("this session has ended; sign in again")]
    Ended,
    #[error("this refresh token was already used; the session has ended, sign in again")]
    TokenReused,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: Option<UserId>,
    pub started_at: Option<DateTime<Utc>>,
    pub generation: u32,
    pub ended: Option<SessionEndReason>,
}

impl Session {
    /// Events that answer `command`; an `Err` refuses it. A reuse is answered with the event
    /// that ends the session *and* a refusal: the service records the one, then reports the
    /// other.
    pub fn decide(&self, command: SessionCommand) -> Result<Vec<SessionEvent>, SessionError> {
        match command {
            SessionCommand::StartSession {
                session_id,
                user_id,
                at,
            } => {
                if self.user_id.is_some() {
                    return Err(SessionError::AlreadyStarted);
                }
                Ok(vec![SessionEvent::SessionStarted {
                    session_id,
                    user_id,
                    started_at: at,
                }])
            }
            SessionCommand::Refresh {
                generation,
                ended_before,
                at,
            } => {
                let started = self.started_at.ok_or(SessionError::UnknownSession)?;
                if self.ended.is_some() || ended_before.is_some_and(|before| started <= before) {
                    return Err(SessionError::Ended);
                }
                if generation != self.generation {
                    return Ok(vec![SessionEvent::SessionEnded {
                        reason: SessionEndReason::RefreshTokenReused,
                        presented_generation: Some(generation),
                        ended_at: at,
                    }]);
                }
                Ok(vec![SessionEvent::SessionRefreshed {
                    generation: self.generation + 1,
                    refreshed_at: at,
                }])
            }
            SessionCommand::EndSession { reason, at } => {
                if self.started_at.is_none() {
                    return Err(SessionError::UnknownSession);
                }
                if self.ended.is_some() {
                    return Ok(Vec::new());
                }
                Ok(vec![SessionEvent::SessionEnded {
                    reason,
                    presented_generation: None,
                    ended_at: at,
                }])
            }
        }
    }
}

impl Aggregate for Session {
    const TYPE: &'static str = "Session";
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = SessionError;
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
            SessionEvent::SessionStarted {
                user_id,
                started_at,
                ..
            } => {
                self.user_id = Some(user_id);
                self.started_at = Some(started_at);
                self.generation = 0;
            }
            SessionEvent::SessionRefreshed { generation, .. } => self.generation = generation,
            SessionEvent::SessionEnded { reason, .. } => self.ended = Some(reason),
        }
    }
}
