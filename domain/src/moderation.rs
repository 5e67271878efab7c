//! A server's content policy: what the rule stage of the write side does with a message that
//! its filter finds offensive. The filter itself is an adapter (`aether-moderation`); this module
//! holds only the rule a server admin chooses.

use serde::{Deserialize, Serialize};

/// What happens to a message the rule stage finds offensive, per server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContentPolicy {
    /// Stored as written; only the model stage (after delivery) may flag it. The default, so
    /// that servers created before policies existed keep behaving as they did: the policy is
    /// an admin's choice.
    #[default]
    Allow,
    /// Stored with the offending words replaced by `*`.
    Mask,
    /// Refused: the sender is told why and nothing is stored.
    Block,
}

impl ContentPolicy {
    pub const fn as_str(self) -> &'static str {
        match self {
            ContentPolicy::Allow => "ALLOW",
            ContentPolicy::Mask => "MASK",
            ContentPolicy::Block => "BLOCK",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "ALLOW" => Some(ContentPolicy::Allow),
            "MASK" => Some(ContentPolicy::Mask),
            "BLOCK" => Some(ContentPolicy::Block),
            _ => None,
        }
    }
}

impl std::fmt::Display for ContentPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The model score (0 to 1) from which the model stage flags a message and hides it until a
/// moderator looks at it. Parsed at the boundary: a threshold outside `(0, 1]` or not a number
/// never reaches a server.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
#[serde(transparent)]
pub struct ModerationThreshold(f64);

impl ModerationThreshold {
    /// The classifier head's own decision threshold (`moderation/model/head.json`).
    pub const DEFAULT: ModerationThreshold = ModerationThreshold(0.5);

    pub fn parse(value: f64) -> Result<Self, crate::ValidationError> {
        if value.is_finite() && value > 0.0 && value <= 1.0 {
            Ok(Self(value))
        } else {
            Err(crate::ValidationError::new(
                "threshold",
                "must be a number greater than 0 and at most 1",
            ))
        }
    }

    pub const fn value(self) -> f64 {
        self.0
    }
}

impl Default for ModerationThreshold {
    fn default() -> Self {
        Self::DEFAULT
    }
}
