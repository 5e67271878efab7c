//! Errors of the command side, each with the stable code clients see.

use aether_domain::conversation::ConversationError;
use aether_domain::message::MessageError;
use aether_domain::pins::PinsError;
use aether_domain::receipts::ReadMarkerError;
use aether_domain::review::ReviewError;
use aether_domain::server::ServerError;
use aether_domain::session::SessionError;
use aether_domain::user::UserError;
use aether_domain::ValidationError;
use cqrs_es::AggregateError;

use crate::store::{DirectoryConflict, StoreError};

/// The stable error codes of the public API (`extensions.code` in GraphQL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    NotFound,
    BadUserInput,
    Conflict,
    RateLimited,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

/// A refused or failed command. `Display` is a sentence for a person.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub code: ErrorCode,
    pub message: String,
}

impl CommandError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("no such {what}"))
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

impl From<ValidationError> for CommandError {
    fn from(error: ValidationError) -> Self {
        Self::new(ErrorCode::BadUserInput, error.to_string())
    }
}

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> Self {
        Self::new(ErrorCode::Unavailable, error.to_string())
    }
}

/// How each domain refusal reads to a client.
pub trait DomainRefusal: std::error::Error {
    fn code(&self) -> ErrorCode;
}

impl DomainRefusal for UserError {
    fn code(&self) -> ErrorCode {
        match self {
            UserError::AlreadyRegistered => ErrorCode::Conflict,
            UserError::UnknownUser => ErrorCode::NotFound,
            UserError::NoPassword | UserError::BlockingSelf | UserError::TooManyBlocked => {
                ErrorCode::BadUserInput
            }
        }
    }
}

impl DomainRefusal for ServerError {
    fn code(&self) -> ErrorCode {
        use ServerError::*;
        match self {
            UnknownServer | UnknownChannel | UnknownInvite | NoSuchMember | NotBanned => {
                ErrorCode::NotFound
            }
            NotAMember
            | NotPermitted { .. }
            | OwnerCannotLeave
            | OwnershipIsNotTransferable
            | RoleAboveYourOwn
            | MemberOutranksYou
            | Banned => ErrorCode::Forbidden,
            AlreadyExists | ChannelAlreadyExists | InviteAlreadyExists | AlreadyAMember => {
                ErrorCode::Conflict
            }
            ChannelArchived
            | InviteRevoked
            | InviteExpired
            | InviteExhausted
            | InvalidMaxUses
            | InvalidExpiry
            | AlreadyTheOwner
            | PositionOutOfRange { .. } => ErrorCode::BadUserInput,
        }
    }
}

impl DomainRefusal for ConversationError {
    fn code(&self) -> ErrorCode {
        match self {
            ConversationError::NobodyElse
            | ConversationError::TooManyParticipants
            | ConversationError::WrongId
            | ConversationError::NotAGroup
            | ConversationError::NotAParticipant => ErrorCode::BadUserInput,
            ConversationError::AlreadyOpen => ErrorCode::Conflict,
            ConversationError::NotFound => ErrorCode::NotFound,
            ConversationError::NotTheOwner => ErrorCode::Forbidden,
        }
    }
}

impl DomainRefusal for MessageError {
    fn code(&self) -> ErrorCode {
        use MessageError::*;
        match self {
            UnknownMessage | UnknownChannel | UnknownReplyTarget | UnknownThreadRoot => {
                ErrorCode::NotFound
            }
            NestedThread | AlsoInChannelOutsideAThread | ForwardWithLinks => {
                ErrorCode::BadUserInput
            }
            NotAChannelMember | PostingNotAllowed | NotTheAuthor | DeleteNotAllowed
            | ReactingNotAllowed => ErrorCode::Forbidden,
            AlreadySent
            | MessageDeleted
            | TooManyReactions { .. }
            | ReplyToDeleted
            | ThreadRootDeleted => ErrorCode::Conflict,
        }
    }
}

impl DomainRefusal for PinsError {
    fn code(&self) -> ErrorCode {
        use PinsError::*;
        match self {
            UnknownChannel | UnknownMessage => ErrorCode::NotFound,
            NotAChannelMember | PinningNotAllowed => ErrorCode::Forbidden,
            MessageDeleted | MessageNotDeleted | TooManyPins { .. } => ErrorCode::Conflict,
        }
    }
}

impl DomainRefusal for ReviewError {
    fn code(&self) -> ErrorCode {
        use ReviewError::*;
        match self {
            UnknownMessage => ErrorCode::NotFound,
            NotAChannelMember | ReviewNotAllowed => ErrorCode::Forbidden,
            NotInAServer | OwnMessage => ErrorCode::BadUserInput,
            MessageDeleted | AlreadyHidden | NotHidden | NothingToDismiss => ErrorCode::Conflict,
        }
    }
}

impl DomainRefusal for SessionError {
    fn code(&self) -> ErrorCode {
        match self {
            SessionError::AlreadyStarted => ErrorCode::Conflict,
            SessionError::UnknownSession | SessionError::Ended | SessionError::TokenReused => {
                ErrorCode::Unauthenticated
            }
        }
    }
}

impl DomainRefusal for ReadMarkerError {
    fn code(&self) -> ErrorCode {
        use ReadMarkerError::*;
        match self {
            UnknownChannel | UnknownMessage => ErrorCode::NotFound,
            NotAChannelMember => ErrorCode::Forbidden,
            WrongMarker => ErrorCode::Internal,
        }
    }
}

impl<E: DomainRefusal> From<AggregateError<E>> for CommandError {
    fn from(error: AggregateError<E>) -> Self {
        match error {
            AggregateError::UserError(refusal) => Self::new(refusal.code(), refusal.to_string()),
            AggregateError::AggregateConflict => Self::new(
                ErrorCode::Conflict,
                "someone else changed this at the same moment; try again",
            ),
            AggregateError::UnexpectedError(source) => match source.downcast::<DirectoryConflict>()
            {
                Ok(conflict) => Self::new(ErrorCode::Conflict, conflict.to_string()),
                Err(other) => Self::internal(other.to_string()),
            },
            AggregateError::DatabaseConnectionError(source) => Self::new(
                ErrorCode::Unavailable,
                format!("the event store is unavailable: {source}"),
            ),
            AggregateError::DeserializationError(source) => {
                Self::internal(format!("a stored event could not be read: {source}"))
            }
        }
    }
}
