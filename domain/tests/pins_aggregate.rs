//! Given/when/then tests for the `ChannelPins` aggregate: every command, every refusal.

use aether_domain::message::LinkedMessage;
use aether_domain::pins::{ChannelPins, PinsCommand, PinsError, PinsEvent};
use aether_domain::{
    ChannelAccess, ChannelFacts, ChannelId, ChannelKind, MessageId, Role, ServerId, UserId,
};
use chrono::{DateTime, Utc};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

fn framework() -> TestFramework<ChannelPins> {
    TestFramework::with(())
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).expect("a valid timestamp")
}

fn channel_id() -> ChannelId {
    ChannelId::from_uuid(Uuid::from_u128(0xc1))
}

fn message(n: u128) -> MessageId {
    MessageId::from_uuid(Uuid::from_u128(0x3e00 + n))
}

fn moderator() -> UserId {
    UserId::from_uuid(Uuid::from_u128(7))
}

fn member(role: Role, archived: bool, private: bool) -> ChannelAccess {
    ChannelAccess::Member {
        server_id: ServerId::from_uuid(Uuid::from_u128(0x5e)),
        role,
        channel: ChannelFacts {
            kind: ChannelKind::Text,
            private,
            archived,
        },
    }
}

fn live(n: u128) -> LinkedMessage {
    LinkedMessage {
        message_id: message(n),
        channel_id: Some(channel_id()),
        deleted: false,
        thread_root_id: None,
    }
}

fn pin(target: LinkedMessage, access: ChannelAccess) -> PinsCommand {
    PinsCommand::PinMessage {
        actor: moderator(),
        channel_id: channel_id(),
        message: target,
        access,
        max: 2,
        at: at(),
    }
}

fn unpin(n: u128, access: ChannelAccess) -> PinsCommand {
    PinsCommand::UnpinMessage {
        actor: moderator(),
        channel_id: channel_id(),
        message_id: message(n),
        access,
        at: at(),
    }
}

fn pinned(n: u128) -> PinsEvent {
    PinsEvent::MessagePinned {
        channel_id: channel_id(),
        message_id: message(n),
        pinned_by: moderator(),
        pinned_at: at(),
    }
}

fn unpinned(n: u128) -> PinsEvent {
    PinsEvent::MessageUnpinned {
        channel_id: channel_id(),
        message_id: message(n),
        unpinned_by: moderator(),
        unpinned_at: at(),
    }
}

#[test]
fn moderators_and_above_pin_in_a_servers_channel() {
    for role in [Role::Owner, Role::Admin, Role::Moderator] {
        framework()
            .given_no_previous_events()
            .when(pin(live(1), member(role, false, false)))
            .then_expect_events(vec![pinned(1)]);
    }
    for role in [Role::Member, Role::Guest] {
        framework()
            .given_no_previous_events()
            .when(pin(live(1), member(role, false, false)))
            .then_expect_error(PinsError::PinningNotAllowed);
        framework()
            .given(vec![pinned(1)])
            .when(unpin(1, member(role, false, false)))
            .then_expect_error(PinsError::PinningNotAllowed);
    }
}

#[test]
fn either_participant_pins_in_a_conversation() {
    framework()
        .given_no_previous_events()
        .when(pin(
            live(1),
            ChannelAccess::Conversation { participant: true },
        ))
        .then_expect_events(vec![pinned(1)]);
}

#[test]
fn pinning_twice_or_unpinning_what_is_not_pinned_records_nothing() {
    let moderating = member(Role::Moderator, false, false);
    framework()
        .given(vec![pinned(1)])
        .when(pin(live(1), moderating))
        .then_expect_events(vec![]);
    framework()
        .given(vec![pinned(1), unpinned(1)])
        .when(unpin(1, moderating))
        .then_expect_events(vec![]);
}

#[test]
fn unpinning_records_it() {
    framework()
        .given(vec![pinned(1)])
        .when(unpin(1, member(Role::Admin, false, false)))
        .then_expect_events(vec![unpinned(1)]);
}

#[test]
fn a_channel_holds_at_most_the_limit_and_an_unpin_frees_a_place() {
    let moderating = member(Role::Moderator, false, false);
    framework()
        .given(vec![pinned(1), pinned(2)])
        .when(pin(live(3), moderating))
        .then_expect_error(PinsError::TooManyPins { max: 2 });
    framework()
        .given(vec![pinned(1), pinned(2), unpinned(1)])
        .when(pin(live(3), moderating))
        .then_expect_events(vec![pinned(3)]);
}

#[test]
fn a_message_elsewhere_unknown_or_deleted_is_not_pinned() {
    let moderating = member(Role::Moderator, false, false);
    let elsewhere = LinkedMessage {
        channel_id: Some(ChannelId::from_uuid(Uuid::from_u128(0xc2))),
        ..live(1)
    };
    let unknown = LinkedMessage {
        channel_id: None,
        ..live(1)
    };
    let deleted = LinkedMessage {
        deleted: true,
        ..live(1)
    };
    for (target, error) in [
        (elsewhere, PinsError::UnknownMessage),
        (unknown, PinsError::UnknownMessage),
        (deleted, PinsError::MessageDeleted),
    ] {
        framework()
            .given_no_previous_events()
            .when(pin(target, moderating))
            .then_expect_error(error);
    }
}

#[test]
fn nobody_pins_in_an_archived_channel_and_outsiders_never() {
    framework()
        .given_no_previous_events()
        .when(pin(live(1), member(Role::Owner, true, false)))
        .then_expect_error(PinsError::PinningNotAllowed);
    for (access, error) in [
        (
            ChannelAccess::NotAMember {
                server_id: ServerId::from_uuid(Uuid::from_u128(0x5e)),
            },
            PinsError::NotAChannelMember,
        ),
        (
            member(Role::Member, false, true),
            PinsError::NotAChannelMember,
        ),
        (
            ChannelAccess::Conversation { participant: false },
            PinsError::NotAChannelMember,
        ),
        (ChannelAccess::UnknownChannel, PinsError::UnknownChannel),
    ] {
        framework()
            .given_no_previous_events()
            .when(pin(live(1), access))
            .then_expect_error(error.clone());
        framework()
            .given(vec![pinned(1)])
            .when(unpin(1, access))
            .then_expect_error(error);
    }
}

fn deleted(n: u128) -> LinkedMessage {
    LinkedMessage {
        deleted: true,
        ..live(n)
    }
}

fn unpin_deleted(target: LinkedMessage) -> PinsCommand {
    PinsCommand::UnpinDeleted {
        actor: moderator(),
        channel_id: channel_id(),
        message: target,
        at: at(),
    }
}

#[test]
fn a_deleted_message_leaves_the_pins_and_frees_its_place() {
    framework()
        .given(vec![pinned(1), pinned(2)])
        .when(unpin_deleted(deleted(1)))
        .then_expect_events(vec![unpinned(1)]);
    // A place is free again.
    framework()
        .given(vec![pinned(1), pinned(2), unpinned(1)])
        .when(pin(live(3), member(Role::Moderator, false, false)))
        .then_expect_events(vec![pinned(3)]);
    // Not pinned: nothing to do.
    framework()
        .given(vec![pinned(2)])
        .when(unpin_deleted(deleted(1)))
        .then_expect_events(vec![]);
}

#[test]
fn only_a_deleted_message_of_the_channel_is_unpinned_that_way() {
    framework()
        .given(vec![pinned(1)])
        .when(unpin_deleted(live(1)))
        .then_expect_error(PinsError::MessageNotDeleted);
    let elsewhere = LinkedMessage {
        channel_id: Some(ChannelId::from_uuid(Uuid::from_u128(0xc2))),
        ..deleted(1)
    };
    framework()
        .given(vec![pinned(1)])
        .when(unpin_deleted(elsewhere))
        .then_expect_error(PinsError::UnknownMessage);
}
