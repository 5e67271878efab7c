//! Given/when/then tests for the `ReadMarker` aggregate: a user's read pointer in a channel.

use aether_domain::receipts::{
    read_marker_id, ReadMarker, ReadMarkerCommand, ReadMarkerError, ReadMarkerEvent,
};
use aether_domain::{
    ChannelAccess, ChannelFacts, ChannelId, ChannelKind, MessageId, Role, ServerId, UserId,
};
use chrono::{DateTime, Utc};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

fn framework() -> TestFramework<ReadMarker> {
    TestFramework::with(())
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).expect("a valid timestamp")
}

fn user() -> UserId {
    UserId::from_uuid(Uuid::from_u128(1))
}

fn channel() -> ChannelId {
    ChannelId::from_uuid(Uuid::from_u128(0xc1))
}

fn server() -> ServerId {
    ServerId::from_uuid(Uuid::from_u128(0x5e7e7))
}

fn message(n: u128) -> MessageId {
    MessageId::from_uuid(Uuid::from_u128(0x3e55_0000 + n))
}

fn member(private: bool, role: Role) -> ChannelAccess {
    ChannelAccess::Member {
        server_id: server(),
        role,
        channel: ChannelFacts {
            kind: ChannelKind::Text,
            private,
            archived: false,
        },
    }
}

fn mark(message: MessageId, access: ChannelAccess) -> ReadMarkerCommand {
    ReadMarkerCommand::MarkRead {
        user_id: user(),
        channel_id: channel(),
        message_id: message,
        message_channel: Some(channel()),
        access,
        at: at(),
    }
}

fn marked(message: MessageId) -> ReadMarkerEvent {
    ReadMarkerEvent::ChannelMarkedRead {
        user_id: user(),
        channel_id: channel(),
        server_id: server(),
        message_id: message,
        read_at: at(),
    }
}

#[test]
fn a_member_marks_a_message_of_the_channel_read() {
    framework()
        .given_no_previous_events()
        .when(mark(message(1), member(false, Role::Guest)))
        .then_expect_events(vec![marked(message(1))]);
}

#[test]
fn marking_the_same_message_again_records_nothing() {
    framework()
        .given(vec![marked(message(1))])
        .when(mark(message(1), member(false, Role::Member)))
        .then_expect_events(vec![]);
}

#[test]
fn another_message_moves_the_marker() {
    framework()
        .given(vec![marked(message(1))])
        .when(mark(message(2), member(false, Role::Member)))
        .then_expect_events(vec![marked(message(2))]);
}

#[test]
fn an_outsider_is_refused() {
    framework()
        .given_no_previous_events()
        .when(mark(
            message(1),
            ChannelAccess::NotAMember {
                server_id: server(),
            },
        ))
        .then_expect_error(ReadMarkerError::NotAChannelMember);
}

#[test]
fn a_member_who_cannot_see_a_private_channel_is_refused() {
    framework()
        .given_no_previous_events()
        .when(mark(message(1), member(true, Role::Member)))
        .then_expect_error(ReadMarkerError::NotAChannelMember);
}

#[test]
fn an_unknown_channel_is_refused() {
    framework()
        .given_no_previous_events()
        .when(mark(message(1), ChannelAccess::UnknownChannel))
        .then_expect_error(ReadMarkerError::UnknownChannel);
}

#[test]
fn a_message_of_another_channel_is_unknown_here() {
    let mut command = mark(message(1), member(false, Role::Member));
    let ReadMarkerCommand::MarkRead {
        message_channel, ..
    } = &mut command;
    *message_channel = Some(ChannelId::from_uuid(Uuid::from_u128(0xc2)));
    framework()
        .given_no_previous_events()
        .when(command)
        .then_expect_error(ReadMarkerError::UnknownMessage);
}

#[test]
fn a_message_that_does_not_exist_is_unknown() {
    let mut command = mark(message(1), member(false, Role::Member));
    let ReadMarkerCommand::MarkRead {
        message_channel, ..
    } = &mut command;
    *message_channel = None;
    framework()
        .given_no_previous_events()
        .when(command)
        .then_expect_error(ReadMarkerError::UnknownMessage);
}

#[test]
fn marker_ids_are_stable_per_user_and_channel() {
    assert_eq!(
        read_marker_id(user(), channel()),
        read_marker_id(user(), channel())
    );
    assert_ne!(
        read_marker_id(user(), channel()),
        read_marker_id(UserId::from_uuid(Uuid::from_u128(2)), channel())
    );
}
