//! API errors: every error a client sees carries a stable `extensions.code`.

use aether_commands::{CommandError, ErrorCode};
use aether_projections::rows::RowError;
use async_graphql::ErrorExtensions;

/// An error on its way to a client.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            ErrorCode::Unauthenticated,
            "sign in first: send 'Authorization: Bearer <accessToken>'",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("no such {what}"))
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadUserInput, message)
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> Self {
        async_graphql::Error::new(error.message)
            .extend_with(|_, extensions| extensions.set("code", error.code.as_str()))
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        if matches!(error.code, ErrorCode::Internal | ErrorCode::Unavailable) {
            tracing::error!(code = error.code.as_str(), error = %error.message, "command failed");
        }
        Self::new(error.code, error.message)
    }
}

impl From<RowError> for ApiError {
    fn from(error: RowError) -> Self {
        tracing::error!(%error, "read model query failed");
        if error.is_unavailable() {
            Self::new(
                ErrorCode::Unavailable,
                "the read models cannot be reached right now; try again",
            )
        } else {
            Self::new(ErrorCode::Internal, "the read model could not be queried")
        }
    }
}

impl From<aether_domain::ValidationError> for ApiError {
    fn from(error: aether_domain::ValidationError) -> Self {
        Self::bad_input(error.to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Converts an API result into a GraphQL one.
pub(crate) fn gql<T>(result: ApiResult<T>) -> async_graphql::Result<T> {
    result.map_err(async_graphql::Error::from)
}
