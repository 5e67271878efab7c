//! The rule stage: a word filter and the server's policy, applied to a message before it is
//! stored.
//!
//! The filter is `rustrict`, which undoes the usual evasions before matching (look-alike
//! letters, repeated letters, spacing, zero-width characters). Only words the filter rates
//! moderate or worse count here, because a false positive in the command path refuses or
//! mangles a message its author sees at once; toxicity without bad words ("nobody wants you
//! here") is the model stage's job, after delivery.

use std::borrow::Cow;

use aether_domain::ContentPolicy;
use rustrict::{Censor, Type};

/// What the rule stage counts as offensive: profane, offensive or sexual words rated moderate or
/// severe, and severely mean phrases ("kill yourself"). Mild words and spam pass.
fn threshold() -> Type {
    (Type::PROFANE | Type::OFFENSIVE | Type::SEXUAL) & Type::MODERATE_OR_HIGHER
        | Type::MEAN & Type::SEVERE
}

/// Texts longer than this are screened in pieces of this many characters, so one huge message
/// costs linear time (the filter looks a few characters back, never across a piece boundary;
/// a word split exactly there can escape, which is acceptable for messages this long).
const PIECE_CHARS: usize = 4_096;

/// The rule stage's finding about one text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Screening {
    Clean,
    Offensive {
        /// Why, for the sender: the categories found, never the words.
        reason: String,
        /// The text with every offending word replaced by `*`.
        masked: String,
    },
}

/// The filter. Stateless and cheap; one instance serves every request.
#[derive(Clone, Copy, Debug, Default)]
pub struct RuleStage;

impl RuleStage {
    pub fn new() -> Self {
        Self
    }

    /// Screens `text`. Any input (empty, huge, any script, emoji, control characters) gives an
    /// answer; nothing panics.
    pub fn screen(&self, text: &str) -> Screening {
        let threshold = threshold();
        let mut found = Type::NONE;
        let mut masked = String::with_capacity(text.len());
        for piece in pieces(text) {
            let (censored, analysis) = Censor::from_str(piece)
                .with_censor_threshold(threshold)
                .with_censor_first_character_threshold(threshold)
                .with_censor_replacement('*')
                .censor_and_analyze();
            if analysis.is(threshold) {
                found |= analysis & threshold;
                masked.push_str(&censored);
            } else {
                masked.push_str(piece);
            }
        }
        if found == Type::NONE {
            return Screening::Clean;
        }
        Screening::Offensive {
            reason: reason(found),
            masked,
        }
    }
}

/// `text` cut into pieces of at most [`PIECE_CHARS`] characters, on character boundaries.
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .char_indices()
            .nth(PIECE_CHARS)
            .map_or(rest.len(), |(index, _)| index);
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

fn reason(found: Type) -> String {
    let categories: Vec<&str> = [
        (Type::PROFANE, "profanity"),
        (Type::OFFENSIVE, "offensive language"),
        (Type::SEXUAL, "sexual language"),
        (Type::MEAN, "abusive language"),
    ]
    .into_iter()
    .filter(|(category, _)| found.is(*category))
    .map(|(_, name)| name)
    .collect();
    format!("the message contains {}", categories.join(" and "))
}

/// A message the policy refuses, with the reason the sender is told.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this server does not allow this message: {reason}")]
pub struct Blocked {
    pub reason: String,
}

/// Applies a server's `policy` to `text` through `stage`: the text to store (as written, or
/// masked), or the refusal.
pub fn enforce<'a>(
    stage: &RuleStage,
    policy: ContentPolicy,
    text: &'a str,
) -> Result<Cow<'a, str>, Blocked> {
    if policy == ContentPolicy::Allow {
        return Ok(Cow::Borrowed(text));
    }
    match (stage.screen(text), policy) {
        (Screening::Clean, _) | (_, ContentPolicy::Allow) => Ok(Cow::Borrowed(text)),
        (Screening::Offensive { masked, .. }, ContentPolicy::Mask) => Ok(Cow::Owned(masked)),
        (Screening::Offensive { reason, .. }, ContentPolicy::Block) => Err(Blocked { reason }),
    }
}
