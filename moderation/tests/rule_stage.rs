//! The rule stage on the texts people actually send, and on the ones that try to break it.

use std::borrow::Cow;

use aether_domain::ContentPolicy;
use aether_moderation::{enforce, RuleStage, Screening};
use proptest::prelude::*;

fn masked(text: &str) -> String {
    match RuleStage::new().screen(text) {
        Screening::Offensive { masked, .. } => masked,
        Screening::Clean => panic!(
            "{:?}… should have been found offensive",
            text.chars().take(80).collect::<String>()
        ),
    }
}

#[test]
fn ordinary_messages_pass_untouched() {
    for text in [
        "Hello team, the deploy is done.",
        "Scunthorpe is a town in England",
        "I'll assess the class assignment tomorrow",
        "",
        "   ",
        "😀🎉🔥👍",
        "こんにちは、元気ですか？",
        "Привет, как дела?",
        "مرحبا كيف حالك",
    ] {
        assert_eq!(RuleStage::new().screen(text), Screening::Clean, "{text:?}");
    }
}

#[test]
fn the_worst_words_are_found_and_masked_without_leaking_them_in_the_reason() {
    let Screening::Offensive { reason, masked } =
        RuleStage::new().screen("you are a fucking idiot")
    else {
        panic!("a severe profanity was not found");
    };
    assert!(!masked.contains("fuck"), "{masked}");
    assert!(
        masked.contains("you are a") && masked.contains('*'),
        "{masked}"
    );
    assert!(reason.starts_with("the message contains"), "{reason}");
    assert!(!reason.contains("fuck"), "{reason}");
}

#[test]
fn zero_width_and_look_alike_obfuscation_is_seen_through() {
    for text in [
        "f\u{200b}u\u{200b}c\u{200b}k you",
        "fuuuuuck you",
        "f.u.c.k you",
        "ƒüçk you",
    ] {
        let out = masked(text);
        assert!(out.contains('*'), "{text:?} → {out:?}");
    }
}

#[test]
fn a_huge_message_is_screened_and_masked_everywhere() {
    let clean = "the quick brown fox jumps over the lazy dog ".repeat(2_000);
    let text = format!("{clean}fuck {clean}fuck");
    let out = masked(&text);
    assert!(
        !out.contains("fuck"),
        "a word after the first piece was missed"
    );
    assert_eq!(out.chars().count(), text.chars().count());
}

#[test]
fn the_policy_decides_what_is_stored_or_refused() {
    let stage = RuleStage::new();
    let text = "shut up you fucking moron";
    assert_eq!(
        enforce(&stage, ContentPolicy::Allow, text),
        Ok(Cow::Borrowed(text))
    );
    let stored = enforce(&stage, ContentPolicy::Mask, text).expect("mask never refuses");
    assert!(!stored.contains("fuck"), "{stored}");
    let refused = enforce(&stage, ContentPolicy::Block, text).expect_err("block refuses");
    assert!(refused.to_string().contains("profanity"), "{refused}");
    assert_eq!(
        enforce(&stage, ContentPolicy::Block, "good morning"),
        Ok(Cow::Borrowed("good morning"))
    );
}

proptest! {
    #[test]
    fn any_printable_text_under_every_policy_gets_an_answer(text in "\\PC{0,300}") {
        let stage = RuleStage::new();
        for policy in [ContentPolicy::Allow, ContentPolicy::Mask, ContentPolicy::Block] {
            let _ = enforce(&stage, policy, &text);
        }
    }

    #[test]
    fn any_unicode_including_controls_never_panics(text in any::<String>()) {
        let _ = RuleStage::new().screen(&text);
    }
}
