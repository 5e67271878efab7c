//! Typed identifiers. Every id is a UUID on the wire; message ids are UUIDv7 so that they sort
//! by creation time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::ValidationError;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUIDv7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses an id that came from outside (a GraphQL argument, a CLI flag).
            pub fn parse(value: &str) -> Result<Self, ValidationError> {
                Uuid::from_str(value.trim())
                    .map(Self)
                    .map_err(|_| ValidationError::new($field, "is not a valid id"))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A registered account.
    UserId,
    "userId"
);
id_type!(
    /// A server (a community): channels, members and roles.
    ServerId,
    "serverId"
);
id_type!(
    /// A channel inside a server.
    ChannelId,
    "channelId"
);
id_type!(
    /// A message. Time ordered (UUIDv7).
    MessageId,
    "messageId"
);
