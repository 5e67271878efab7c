//! Moderation of messages, in two stages.
//!
//! - The **rule stage** ([`rules`]) runs in the command path, in microseconds: a word filter
//!   (`rustrict`) finds the worst words and a server's [`ContentPolicy`] decides whether the
//!   message is stored as written, stored masked, or refused.
//! - The **model stage** (feature `model`, `model`) runs after delivery, off the log: sentence
//!   embeddings from all-MiniLM-L6-v2 (candle, on the CPU) and a small logistic-regression head
//!   give each message a toxicity score.
//!
//! This crate depends only on the domain, so the write side can use the rule stage without
//! compiling a tensor library.
//!
//! [`ContentPolicy`]: aether_domain::ContentPolicy

pub mod rules;

#[cfg(feature = "model")]
pub mod model;

pub use rules::{enforce, Blocked, RuleStage, Screening};
