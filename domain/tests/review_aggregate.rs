//! Given/when/then tests for the `MessageReview` aggregate: the model stage's flag (once, at
//! the server's threshold), members' reports, and moderators' decisions.

use aether_domain::review::{
    MessageReview, ModelVerdict, ReviewCommand, ReviewError, ReviewEvent, ReviewedMessage,
};
use aether_domain::{
    ChannelAccess, ChannelFacts, ChannelId, ChannelKind, MessageId, ModerationReason,
    ModerationThreshold, Role, ServerId, UserId,
};
use chrono::{DateTime, Utc};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

fn framework() -> TestFramework<MessageReview> {
    TestFramework::with(())
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).expect("a valid timestamp")
}

fn server() -> ServerId {
    ServerId::from_uuid(Uuid::from_u128(0x5e))
}

fn author() -> UserId {
    UserId::from_uuid(Uuid::from_u128(1))
}

fn reporter() -> UserId {
    UserId::from_uuid(Uuid::from_u128(2))
}

fn moderator() -> UserId {
    UserId::from_uuid(Uuid::from_u128(3))
}

fn message() -> ReviewedMessage {
    ReviewedMessage {
        message_id: MessageId::from_uuid(Uuid::from_u128(0x3e01)),
        channel_id: ChannelId::from_uuid(Uuid::from_u128(0xc1)),
        server_id: Some(server()),
        author_id: author(),
        deleted: false,
    }
}

fn member(role: Role) -> ChannelAccess {
    ChannelAccess::Member {
        server_id: server(),
        role,
        channel: ChannelFacts {
            kind: ChannelKind::Text,
            private: false,
            archived: false,
        },
    }
}

fn reason(text: &str) -> ModerationReason {
    ModerationReason::parse(text).expect("a valid reason")
}

fn threshold(value: f64) -> ModerationThreshold {
    ModerationThreshold::parse(value).expect("a valid threshold")
}

fn flag(score: f64) -> ReviewCommand {
    ReviewCommand::FlagMessage {
        message: message(),
        verdict: ModelVerdict {
            score,
            model_version: "m1".to_owned(),
        },
        threshold: threshold(0.5),
        at: at(),
    }
}

fn flagged(score: f64) -> Vec<ReviewEvent> {
    let m = message();
    let why = format!("model score {score:.3} reached this server's threshold 0.500");
    vec![
        ReviewEvent::MessageFlagged {
            message_id: m.message_id,
            channel_id: m.channel_id,
            server_id: server(),
            author_id: author(),
            score,
            model_version: "m1".to_owned(),
            reason: why.clone(),
            threshold: threshold(0.5),
            flagged_at: at(),
        },
        ReviewEvent::MessageHidden {
            message_id: m.message_id,
            channel_id: m.channel_id,
            server_id: server(),
            author_id: author(),
            hidden_by: None,
            reason: why,
            hidden_at: at(),
        },
    ]
}

fn report(actor: UserId, access: ChannelAccess) -> ReviewCommand {
    ReviewCommand::ReportMessage {
        actor,
        message: message(),
        access,
        reason: reason("insults"),
        at: at(),
    }
}

fn reported(by: UserId) -> ReviewEvent {
    let m = message();
    ReviewEvent::MessageReported {
        message_id: m.message_id,
        channel_id: m.channel_id,
        server_id: server(),
        author_id: author(),
        reported_by: by,
        reason: reason("insults"),
        reported_at: at(),
    }
}

fn hide(access: ChannelAccess) -> ReviewCommand {
    ReviewCommand::HideMessage {
        actor: moderator(),
        message: message(),
        access,
        reason: reason("abuse"),
        at: at(),
    }
}

fn hidden_by_moderator() -> ReviewEvent {
    let m = message();
    ReviewEvent::MessageHidden {
        message_id: m.message_id,
        channel_id: m.channel_id,
        server_id: server(),
        author_id: author(),
        hidden_by: Some(moderator()),
        reason: "abuse".to_owned(),
        hidden_at: at(),
    }
}

fn restore(access: ChannelAccess) -> ReviewCommand {
    ReviewCommand::RestoreMessage {
        actor: moderator(),
        message: message(),
        access,
        reason: reason("a joke between friends"),
        at: at(),
    }
}

fn restored() -> ReviewEvent {
    let m = message();
    ReviewEvent::MessageRestored {
        message_id: m.message_id,
        channel_id: m.channel_id,
        server_id: server(),
        author_id: author(),
        restored_by: moderator(),
        reason: reason("a joke between friends"),
        restored_at: at(),
    }
}

fn dismiss(access: ChannelAccess) -> ReviewCommand {
    ReviewCommand::DismissFlag {
        actor: moderator(),
        message: message(),
        access,
        reason: reason("nothing wrong"),
        at: at(),
    }
}

fn dismissed() -> ReviewEvent {
    let m = message();
    ReviewEvent::FlagDismissed {
        message_id: m.message_id,
        channel_id: m.channel_id,
        server_id: server(),
        author_id: author(),
        dismissed_by: moderator(),
        reason: reason("nothing wrong"),
        dismissed_at: at(),
    }
}

#[test]
fn a_score_at_the_threshold_flags_and_hides_the_message() {
    framework()
        .given_no_previous_events()
        .when(flag(0.5))
        .then_expect_events(flagged(0.5));
}

#[test]
fn a_score_below_the_threshold_records_nothing() {
    framework()
        .given_no_previous_events()
        .when(flag(0.49))
        .then_expect_events(vec![]);
}

#[test]
fn a_second_verdict_on_a_flagged_message_changes_nothing() {
    // A redelivered MessageSent scored again: one outcome, not two.
    framework()
        .given(flagged(0.9))
        .when(flag(0.9))
        .then_expect_events(vec![]);
    // Even after a moderator restored it: the flag was already judged.
    let mut history = flagged(0.9);
    history.push(restored());
    framework()
        .given(history)
        .when(flag(0.99))
        .then_expect_events(vec![]);
}

#[test]
fn a_verdict_on_a_deleted_or_direct_message_is_dropped() {
    let mut deleted = message();
    deleted.deleted = true;
    let mut direct = message();
    direct.server_id = None;
    for target in [deleted, direct] {
        framework()
            .given_no_previous_events()
            .when(ReviewCommand::FlagMessage {
                message: target,
                verdict: ModelVerdict {
                    score: 1.0,
                    model_version: "m1".to_owned(),
                },
                threshold: threshold(0.5),
                at: at(),
            })
            .then_expect_events(vec![]);
    }
}

#[test]
fn a_flag_on_a_message_a_moderator_already_hid_does_not_hide_it_twice() {
    framework()
        .given(vec![hidden_by_moderator()])
        .when(flag(0.8))
        .then_expect_events(vec![flagged(0.8).remove(0)]);
}

#[test]
fn members_report_once_and_not_their_own_messages() {
    framework()
        .given_no_previous_events()
        .when(report(reporter(), member(Role::Member)))
        .then_expect_events(vec![reported(reporter())]);
    framework()
        .given(vec![reported(reporter())])
        .when(report(reporter(), member(Role::Member)))
        .then_expect_events(vec![]);
    framework()
        .given(vec![reported(reporter())])
        .when(report(moderator(), member(Role::Guest)))
        .then_expect_events(vec![reported(moderator())]);
    framework()
        .given_no_previous_events()
        .when(report(author(), member(Role::Member)))
        .then_expect_error(ReviewError::OwnMessage);
}

#[test]
fn outsiders_cannot_report() {
    framework()
        .given_no_previous_events()
        .when(report(
            reporter(),
            ChannelAccess::NotAMember {
                server_id: server(),
            },
        ))
        .then_expect_error(ReviewError::NotAChannelMember);
    framework()
        .given_no_previous_events()
        .when(report(reporter(), ChannelAccess::UnknownChannel))
        .then_expect_error(ReviewError::UnknownMessage);
}

#[test]
fn direct_and_deleted_messages_cannot_be_reported() {
    let mut direct = message();
    direct.server_id = None;
    framework()
        .given_no_previous_events()
        .when(ReviewCommand::ReportMessage {
            actor: reporter(),
            message: direct,
            access: ChannelAccess::Conversation { participant: true },
            reason: reason("spam"),
            at: at(),
        })
        .then_expect_error(ReviewError::NotInAServer);
    let mut deleted = message();
    deleted.deleted = true;
    framework()
        .given_no_previous_events()
        .when(ReviewCommand::ReportMessage {
            actor: reporter(),
            message: deleted,
            access: member(Role::Member),
            reason: reason("spam"),
            at: at(),
        })
        .then_expect_error(ReviewError::MessageDeleted);
}

#[test]
fn only_moderators_and_above_hide_restore_and_dismiss() {
    for role in [Role::Member, Role::Guest] {
        framework()
            .given(vec![reported(reporter())])
            .when(hide(member(role)))
            .then_expect_error(ReviewError::ReviewNotAllowed);
        framework()
            .given(flagged(0.9))
            .when(restore(member(role)))
            .then_expect_error(ReviewError::ReviewNotAllowed);
        framework()
            .given(vec![reported(reporter())])
            .when(dismiss(member(role)))
            .then_expect_error(ReviewError::ReviewNotAllowed);
    }
    for role in [Role::Moderator, Role::Admin, Role::Owner] {
        framework()
            .given(vec![reported(reporter())])
            .when(hide(member(role)))
            .then_expect_events(vec![hidden_by_moderator()]);
    }
}

#[test]
fn a_moderator_restores_a_hidden_message_once() {
    framework()
        .given(flagged(0.9))
        .when(restore(member(Role::Moderator)))
        .then_expect_events(vec![restored()]);
    let mut history = flagged(0.9);
    history.push(restored());
    framework()
        .given(history)
        .when(restore(member(Role::Moderator)))
        .then_expect_error(ReviewError::NotHidden);
    framework()
        .given(vec![hidden_by_moderator()])
        .when(hide(member(Role::Moderator)))
        .then_expect_error(ReviewError::AlreadyHidden);
}

#[test]
fn dismissing_needs_an_open_flag_or_report() {
    framework()
        .given(vec![reported(reporter())])
        .when(dismiss(member(Role::Moderator)))
        .then_expect_events(vec![dismissed()]);
    framework()
        .given_no_previous_events()
        .when(dismiss(member(Role::Moderator)))
        .then_expect_error(ReviewError::NothingToDismiss);
    framework()
        .given(vec![reported(reporter()), dismissed()])
        .when(dismiss(member(Role::Moderator)))
        .then_expect_error(ReviewError::NothingToDismiss);
    // A moderator's hiding decides the report: nothing is left to dismiss.
    framework()
        .given(vec![reported(reporter()), hidden_by_moderator()])
        .when(dismiss(member(Role::Moderator)))
        .then_expect_error(ReviewError::NothingToDismiss);
    // The model's own hiding waits for a person.
    framework()
        .given(flagged(0.9))
        .when(dismiss(member(Role::Moderator)))
        .then_expect_events(vec![dismissed()]);
}

#[test]
fn thresholds_outside_zero_to_one_are_refused() {
    for bad in [0.0, -0.1, 1.01, f64::NAN, f64::INFINITY] {
        assert!(ModerationThreshold::parse(bad).is_err(), "{bad} accepted");
    }
    for good in [0.01, 0.5, 1.0] {
        assert_eq!(
            ModerationThreshold::parse(good).map(|t| t.value()),
            Ok(good)
        );
    }
}
