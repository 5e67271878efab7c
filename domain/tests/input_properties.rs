//! Property tests of the values every input passes through: whatever the text, parsing answers
//! with a value that keeps the rules or with an error that names the field; it never panics.
//!
//! Bounded for CI (`PROPTEST_CASES`, 512 here by default); a longer run:
//! `PROPTEST_CASES=200000 cargo test -p aether-domain --test input_properties`.

use aether_domain::values::{DISPLAY_NAME_MAX_CHARS, MESSAGE_BODY_MAX_CHARS, NAME_MAX_CHARS};
use aether_domain::{
    ChannelName, DisplayName, InviteCode, MessageBody, MessageId, Password, ServerName, UserId,
    Username,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(512);
    ProptestConfig::with_cases(cases)
}

/// Text that reaches the interesting edges: control characters, whitespace, long runs, mention
/// markers and multi-byte characters.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ \t\n\r\u{0}-\u{1f}\u{7f}a-z<@>é漢🦀-]{0,64}",
        // Invisible and direction-changing characters, and a combining accent.
        "[ a-z\u{200B}-\u{200F}\u{202A}-\u{202E}\u{2066}-\u{2069}\u{FEFF}\u{301}]{0,16}",
        (0usize..6_000).prop_map(|n| "x".repeat(n)),
        (0usize..6_000).prop_map(|n| format!(" {} ", "é".repeat(n))),
        "(<@[0-9a-f-]{0,40}>?){0,8}",
    ]
}

fn kept_text(value: &str, max: usize, allowed: &[char]) -> bool {
    value == value.trim()
        && !value.is_empty()
        && value.chars().count() <= max
        && value
            .chars()
            .all(|c| !c.is_control() || allowed.contains(&c))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_message_body_is_valid_or_refused_by_name(text in hostile_text()) {
        match MessageBody::parse(&text) {
            Ok(body) => {
                prop_assert!(kept_text(body.as_str(), MESSAGE_BODY_MAX_CHARS, &['\n', '\t']));
                prop_assert_eq!(body.as_str(), text.trim());
                // Mentions come from the body's own text, each once.
                let mentions = body.mentions();
                for user in &mentions {
                    let mention = format!("<@{user}>");
                    prop_assert!(body.as_str().contains(&mention));
                }
                let mut unique = mentions.clone();
                unique.sort();
                unique.dedup();
                prop_assert_eq!(unique.len(), mentions.len());
            }
            Err(error) => prop_assert_eq!(error.field, "body"),
        }
    }

    #[test]
    fn names_are_valid_or_refused_by_name(text in hostile_text()) {
        if let Ok(name) = ServerName::parse(&text) {
            prop_assert!(kept_text(name.as_str(), NAME_MAX_CHARS, &[]));
        }
        if let Ok(name) = ChannelName::parse(&text) {
            prop_assert!(kept_text(name.as_str(), NAME_MAX_CHARS, &[]));
        }
        if let Ok(name) = DisplayName::parse(&text) {
            prop_assert!(kept_text(name.as_str(), DISPLAY_NAME_MAX_CHARS, &[]));
        }
        // Every accepted name is in normal form C and shows everything it holds.
        for name in [
            ServerName::parse(&text).map(|n| n.into_inner()),
            ChannelName::parse(&text).map(|n| n.into_inner()),
            DisplayName::parse(&text).map(|n| n.into_inner()),
        ]
        .into_iter()
        .flatten()
        {
            prop_assert!(!name.chars().any(aether_domain::values::is_invisible), "{name:?}");
            prop_assert!(unicode_normalization::is_nfc(&name), "{name:?}");
        }
        if let Ok(name) = Username::parse(&text) {
            prop_assert!(name
                .as_str()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c)));
        }
        if let Ok(code) = InviteCode::parse(&text) {
            prop_assert!(code.as_str().chars().all(|c| c.is_ascii_alphanumeric()));
        }
        let _ = Password::parse(&text);
    }

    #[test]
    fn ids_parse_only_from_uuids(text in hostile_text()) {
        match (UserId::parse(&text), MessageId::parse(&text)) {
            (Ok(user), Ok(message)) => {
                prop_assert_eq!(user.as_uuid(), message.as_uuid());
                prop_assert_eq!(UserId::parse(&user.to_string()).ok(), Some(user));
            }
            (Err(user), Err(message)) => {
                prop_assert_eq!(user.field, "userId");
                prop_assert_eq!(message.field, "messageId");
            }
            _ => prop_assert!(false, "two id types disagree about {text:?}"),
        }
    }
}
