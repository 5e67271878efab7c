//! Given/when/then tests for the `Message` aggregate: every command, every refusal.
//!
//! Whether someone may post is decided by the channel's server and arrives in each command as a
//! `ChannelAccess`; these tests build that access directly for each role and kind of channel.

use aether_domain::message::{
    LinkedMessage, Message, MessageCommand, MessageError, MessageEvent, MessageLinks,
};
use aether_domain::{
    ChannelAccess, ChannelFacts, ChannelId, ChannelKind, Emoji, MessageBody, MessageId, Role,
    ServerId, UserId,
};
use chrono::{DateTime, Duration, Utc};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

// --- fixtures -------------------------------------------------------------------------------

fn framework() -> TestFramework<Message> {
    TestFramework::with(())
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).expect("a valid timestamp")
}

fn minutes_later(minutes: i64) -> DateTime<Utc> {
    at() + Duration::minutes(minutes)
}

fn server_id() -> ServerId {
    ServerId::from_uuid(Uuid::from_u128(0x5e7e7))
}

fn channel_id() -> ChannelId {
    ChannelId::from_uuid(Uuid::from_u128(0xc1))
}

fn message_id() -> MessageId {
    MessageId::from_uuid(Uuid::from_u128(0x3e55))
}

fn author() -> UserId {
    UserId::from_uuid(Uuid::from_u128(1))
}

fn someone_else() -> UserId {
    UserId::from_uuid(Uuid::from_u128(2))
}

fn body(value: &str) -> MessageBody {
    MessageBody::parse(value).expect("a valid message body")
}

fn access(role: Role, kind: ChannelKind, private: bool, archived: bool) -> ChannelAccess {
    ChannelAccess::Member {
        server_id: server_id(),
        role,
        channel: ChannelFacts {
            kind,
            private,
            archived,
        },
    }
}

/// An ordinary, public, live text channel.
fn text(role: Role) -> ChannelAccess {
    access(role, ChannelKind::Text, false, false)
}

fn voice(role: Role) -> ChannelAccess {
    access(role, ChannelKind::Voice, false, false)
}

fn announcements(role: Role) -> ChannelAccess {
    access(role, ChannelKind::Announcement, false, false)
}

fn private(role: Role) -> ChannelAccess {
    access(role, ChannelKind::Text, true, false)
}

fn archived(role: Role) -> ChannelAccess {
    access(role, ChannelKind::Text, false, true)
}

fn not_a_member() -> ChannelAccess {
    ChannelAccess::NotAMember {
        server_id: server_id(),
    }
}

fn send(access: ChannelAccess) -> MessageCommand {
    MessageCommand::SendMessage {
        message_id: message_id(),
        channel_id: channel_id(),
        author: author(),
        body: body("hello"),
        access,
        links: MessageLinks::default(),
        at: at(),
    }
}

fn sent() -> MessageEvent {
    MessageEvent::MessageSent {
        message_id: message_id(),
        channel_id: channel_id(),
        server_id: server_id(),
        author_id: author(),
        body: body("hello"),
        sent_at: at(),
        reply_to_id: None,
        thread_root_id: None,
        also_in_channel: false,
    }
}

fn edit(actor: UserId, new_body: &str, access: ChannelAccess) -> MessageCommand {
    MessageCommand::EditMessage {
        actor,
        body: body(new_body),
        access,
        at: minutes_later(5),
    }
}

fn edited(new_body: &str, previous_body: &str) -> MessageEvent {
    MessageEvent::MessageEdited {
        message_id: message_id(),
        channel_id: channel_id(),
        body: body(new_body),
        previous_body: body(previous_body),
        edited_at: minutes_later(5),
    }
}

fn delete(actor: UserId, access: ChannelAccess) -> MessageCommand {
    MessageCommand::DeleteMessage {
        actor,
        access,
        at: minutes_later(10),
    }
}

fn deleted_by(actor: UserId) -> MessageEvent {
    MessageEvent::MessageDeleted {
        message_id: message_id(),
        channel_id: channel_id(),
        deleted_by: actor,
        deleted_at: minutes_later(10),
    }
}

/// What sending a fresh message with `access` results in, for tests that walk every role.
fn sending_with(access: ChannelAccess) -> Result<Vec<MessageEvent>, MessageError> {
    framework()
        .given_no_previous_events()
        .when(send(access))
        .inspect_result()
}

// --- SendMessage ----------------------------------------------------------------------------

#[test]
fn a_member_can_post_in_a_text_channel_and_the_message_names_its_server() {
    framework()
        .given_no_previous_events()
        .when(send(text(Role::Member)))
        .then_expect_events(vec![sent()]);
}

#[test]
fn every_role_can_post_in_an_ordinary_text_channel() {
    for role in Role::ALL {
        assert_eq!(sending_with(text(role)), Ok(vec![sent()]), "role {role}");
    }
}

#[test]
fn every_role_can_post_in_a_voice_channels_text_chat() {
    for role in Role::ALL {
        assert_eq!(sending_with(voice(role)), Ok(vec![sent()]), "role {role}");
    }
}

#[test]
fn only_moderators_and_above_can_post_announcements() {
    for role in [Role::Owner, Role::Admin, Role::Moderator] {
        assert_eq!(
            sending_with(announcements(role)),
            Ok(vec![sent()]),
            "role {role}"
        );
    }
    for role in [Role::Member, Role::Guest] {
        assert_eq!(
            sending_with(announcements(role)),
            Err(MessageError::PostingNotAllowed),
            "role {role}"
        );
    }
}

#[test]
fn a_guest_cannot_post_an_announcement() {
    framework()
        .given_no_previous_events()
        .when(send(announcements(Role::Guest)))
        .then_expect_error(MessageError::PostingNotAllowed);
}

#[test]
fn nobody_can_post_in_an_archived_channel_not_even_the_owner() {
    for role in Role::ALL {
        assert_eq!(
            sending_with(archived(role)),
            Err(MessageError::PostingNotAllowed),
            "role {role}"
        );
    }
}

#[test]
fn the_owner_cannot_post_in_an_archived_channel() {
    framework()
        .given_no_previous_events()
        .when(send(archived(Role::Owner)))
        .then_expect_error(MessageError::PostingNotAllowed);
}

#[test]
fn moderators_and_above_can_post_in_a_private_channel() {
    for role in [Role::Owner, Role::Admin, Role::Moderator] {
        assert_eq!(sending_with(private(role)), Ok(vec![sent()]), "role {role}");
    }
}

#[test]
fn members_and_guests_are_treated_as_outsiders_in_a_private_channel() {
    for role in [Role::Member, Role::Guest] {
        assert_eq!(
            sending_with(private(role)),
            Err(MessageError::NotAChannelMember),
            "role {role}"
        );
    }
}

#[test]
fn a_member_cannot_post_in_a_private_channel() {
    framework()
        .given_no_previous_events()
        .when(send(private(Role::Member)))
        .then_expect_error(MessageError::NotAChannelMember);
}

#[test]
fn an_archived_private_channel_is_read_only_for_staff_and_hidden_from_everyone_else() {
    let archived_private = |role| access(role, ChannelKind::Text, true, true);
    for role in [Role::Owner, Role::Admin, Role::Moderator] {
        assert_eq!(
            sending_with(archived_private(role)),
            Err(MessageError::PostingNotAllowed),
            "role {role}"
        );
    }
    for role in [Role::Member, Role::Guest] {
        assert_eq!(
            sending_with(archived_private(role)),
            Err(MessageError::NotAChannelMember),
            "role {role}"
        );
    }
}

#[test]
fn someone_outside_the_server_cannot_post() {
    framework()
        .given_no_previous_events()
        .when(send(not_a_member()))
        .then_expect_error(MessageError::NotAChannelMember);
}

#[test]
fn posting_in_an_unknown_channel_is_refused() {
    framework()
        .given_no_previous_events()
        .when(send(ChannelAccess::UnknownChannel))
        .then_expect_error(MessageError::UnknownChannel);
}

#[test]
fn sending_the_same_message_twice_is_refused() {
    framework()
        .given(vec![sent()])
        .when(send(text(Role::Member)))
        .then_expect_error(MessageError::AlreadySent);
}

#[test]
fn the_id_of_a_deleted_message_cannot_be_reused() {
    framework()
        .given(vec![sent(), deleted_by(author())])
        .when(send(text(Role::Member)))
        .then_expect_error(MessageError::AlreadySent);
}

// --- EditMessage ----------------------------------------------------------------------------

#[test]
fn editing_keeps_the_previous_body() {
    framework()
        .given(vec![sent()])
        .when(edit(author(), "hello, world", text(Role::Member)))
        .then_expect_events(vec![edited("hello, world", "hello")]);
}

#[test]
fn a_second_edit_keeps_the_body_it_replaces_not_the_original() {
    framework()
        .given(vec![sent(), edited("hello, world", "hello")])
        .when(edit(author(), "hello, everyone", text(Role::Member)))
        .then_expect_events(vec![edited("hello, everyone", "hello, world")]);
}

#[test]
fn editing_with_the_same_body_records_nothing() {
    framework()
        .given(vec![sent()])
        .when(edit(author(), "hello", text(Role::Member)))
        .then_expect_events(vec![]);
}

#[test]
fn editing_to_the_latest_body_again_records_nothing() {
    framework()
        .given(vec![sent(), edited("hello, world", "hello")])
        .when(edit(author(), "hello, world", text(Role::Member)))
        .then_expect_events(vec![]);
}

#[test]
fn a_guest_can_edit_their_own_message() {
    framework()
        .given(vec![sent()])
        .when(edit(author(), "hello, world", text(Role::Guest)))
        .then_expect_events(vec![edited("hello, world", "hello")]);
}

#[test]
fn editing_an_unknown_message_is_refused() {
    framework()
        .given_no_previous_events()
        .when(edit(author(), "hello, world", text(Role::Member)))
        .then_expect_error(MessageError::UnknownMessage);
}

#[test]
fn a_deleted_message_cannot_be_edited() {
    framework()
        .given(vec![sent(), deleted_by(author())])
        .when(edit(author(), "hello again", text(Role::Member)))
        .then_expect_error(MessageError::MessageDeleted);
}

#[test]
fn only_the_author_can_edit_a_message() {
    framework()
        .given(vec![sent()])
        .when(edit(someone_else(), "hijacked", text(Role::Member)))
        .then_expect_error(MessageError::NotTheAuthor);
}

#[test]
fn not_even_the_owner_can_edit_someone_elses_message() {
    framework()
        .given(vec![sent()])
        .when(edit(someone_else(), "hijacked", text(Role::Owner)))
        .then_expect_error(MessageError::NotTheAuthor);
}

#[test]
fn a_message_in_an_archived_channel_cannot_be_edited() {
    framework()
        .given(vec![sent()])
        .when(edit(author(), "hello, world", archived(Role::Owner)))
        .then_expect_error(MessageError::PostingNotAllowed);
}

#[test]
fn an_unchanged_edit_in_an_archived_channel_is_still_refused() {
    framework()
        .given(vec![sent()])
        .when(edit(author(), "hello", archived(Role::Member)))
        .then_expect_error(MessageError::PostingNotAllowed);
}

#[test]
fn an_author_demoted_below_moderator_can_no_longer_edit_their_announcement() {
    framework()
        .given(vec![sent()])
        .when(edit(author(), "hello, world", announcements(Role::Member)))
        .then_expect_error(MessageError::PostingNotAllowed);
}

#[test]
fn an_author_who_lost_access_to_a_private_channel_cannot_edit_there() {
    framework()
        .given(vec![sent()])
        .when(edit(author(), "hello, world", private(Role::Member)))
        .then_expect_error(MessageError::NotAChannelMember);
}

#[test]
fn an_author_who_left_the_server_cannot_edit() {
    framework()
        .given(vec![sent()])
        .when(edit(author(), "hello, world", not_a_member()))
        .then_expect_error(MessageError::NotAChannelMember);
}

#[test]
fn editing_in_a_channel_that_no_longer_exists_is_refused() {
    framework()
        .given(vec![sent()])
        .when(edit(
            author(),
            "hello, world",
            ChannelAccess::UnknownChannel,
        ))
        .then_expect_error(MessageError::UnknownChannel);
}

// --- DeleteMessage --------------------------------------------------------------------------

#[test]
fn the_author_can_delete_their_message() {
    framework()
        .given(vec![sent()])
        .when(delete(author(), text(Role::Member)))
        .then_expect_events(vec![deleted_by(author())]);
}

#[test]
fn a_guest_can_delete_their_own_message() {
    framework()
        .given(vec![sent()])
        .when(delete(author(), text(Role::Guest)))
        .then_expect_events(vec![deleted_by(author())]);
}

#[test]
fn an_edited_message_can_be_deleted() {
    framework()
        .given(vec![sent(), edited("hello, world", "hello")])
        .when(delete(author(), text(Role::Member)))
        .then_expect_events(vec![deleted_by(author())]);
}

#[test]
fn the_author_can_delete_their_message_in_an_archived_channel() {
    framework()
        .given(vec![sent()])
        .when(delete(author(), archived(Role::Member)))
        .then_expect_events(vec![deleted_by(author())]);
}

#[test]
fn a_moderator_can_delete_someone_elses_message() {
    framework()
        .given(vec![sent()])
        .when(delete(someone_else(), text(Role::Moderator)))
        .then_expect_events(vec![deleted_by(someone_else())]);
}

#[test]
fn admins_and_the_owner_can_delete_someone_elses_message() {
    for role in [Role::Owner, Role::Admin] {
        let result = framework()
            .given(vec![sent()])
            .when(delete(someone_else(), text(role)))
            .inspect_result();
        assert_eq!(result, Ok(vec![deleted_by(someone_else())]), "role {role}");
    }
}

#[test]
fn a_moderator_can_delete_someone_elses_message_in_a_private_channel() {
    framework()
        .given(vec![sent()])
        .when(delete(someone_else(), private(Role::Moderator)))
        .then_expect_events(vec![deleted_by(someone_else())]);
}

#[test]
fn a_moderator_can_clean_up_an_archived_channel() {
    framework()
        .given(vec![sent()])
        .when(delete(someone_else(), archived(Role::Moderator)))
        .then_expect_events(vec![deleted_by(someone_else())]);
}

#[test]
fn a_member_cannot_delete_someone_elses_message() {
    framework()
        .given(vec![sent()])
        .when(delete(someone_else(), text(Role::Member)))
        .then_expect_error(MessageError::DeleteNotAllowed);
}

#[test]
fn a_guest_cannot_delete_someone_elses_message() {
    framework()
        .given(vec![sent()])
        .when(delete(someone_else(), text(Role::Guest)))
        .then_expect_error(MessageError::DeleteNotAllowed);
}

#[test]
fn deleting_a_deleted_message_is_refused() {
    framework()
        .given(vec![sent(), deleted_by(author())])
        .when(delete(someone_else(), text(Role::Moderator)))
        .then_expect_error(MessageError::MessageDeleted);
}

#[test]
fn deleting_an_unknown_message_is_refused() {
    framework()
        .given_no_previous_events()
        .when(delete(author(), text(Role::Owner)))
        .then_expect_error(MessageError::UnknownMessage);
}

#[test]
fn someone_outside_the_server_cannot_delete_a_message() {
    framework()
        .given(vec![sent()])
        .when(delete(someone_else(), not_a_member()))
        .then_expect_error(MessageError::NotAChannelMember);
}

#[test]
fn an_author_who_left_the_server_cannot_delete_their_message() {
    framework()
        .given(vec![sent()])
        .when(delete(author(), not_a_member()))
        .then_expect_error(MessageError::NotAChannelMember);
}

#[test]
fn an_author_who_lost_access_to_a_private_channel_cannot_delete_there() {
    framework()
        .given(vec![sent()])
        .when(delete(author(), private(Role::Guest)))
        .then_expect_error(MessageError::NotAChannelMember);
}

#[test]
fn deleting_in_a_channel_that_no_longer_exists_is_refused() {
    framework()
        .given(vec![sent()])
        .when(delete(author(), ChannelAccess::UnknownChannel))
        .then_expect_error(MessageError::UnknownChannel);
}

// --- AddReaction / RemoveReaction -----------------------------------------------------------

fn emoji(value: &str) -> Emoji {
    Emoji::parse(value).expect("a valid emoji")
}

fn user(n: u128) -> UserId {
    UserId::from_uuid(Uuid::from_u128(0x100 + n))
}

fn react(actor: UserId, with: &str, access: ChannelAccess) -> MessageCommand {
    MessageCommand::AddReaction {
        actor,
        emoji: emoji(with),
        access,
        max_kinds: 3,
        at: minutes_later(2),
    }
}

fn unreact(actor: UserId, with: &str, access: ChannelAccess) -> MessageCommand {
    MessageCommand::RemoveReaction {
        actor,
        emoji: emoji(with),
        access,
        at: minutes_later(3),
    }
}

fn reacted(user_id: UserId, with: &str) -> MessageEvent {
    MessageEvent::ReactionAdded {
        message_id: message_id(),
        channel_id: channel_id(),
        user_id,
        emoji: emoji(with),
        reacted_at: minutes_later(2),
    }
}

fn unreacted(user_id: UserId, with: &str) -> MessageEvent {
    MessageEvent::ReactionRemoved {
        message_id: message_id(),
        channel_id: channel_id(),
        user_id,
        emoji: emoji(with),
        removed_at: minutes_later(3),
    }
}

#[test]
fn any_member_can_react_to_a_message() {
    for role in Role::ALL {
        framework()
            .given(vec![sent()])
            .when(react(someone_else(), "👍", text(role)))
            .then_expect_events(vec![reacted(someone_else(), "👍")]);
    }
}

#[test]
fn readers_of_an_announcement_channel_react_though_they_may_not_post() {
    framework()
        .given(vec![sent()])
        .when(react(someone_else(), ":tada:", announcements(Role::Guest)))
        .then_expect_events(vec![reacted(someone_else(), ":tada:")]);
}

#[test]
fn a_participant_can_react_in_a_conversation() {
    framework()
        .given(vec![sent()])
        .when(react(
            someone_else(),
            "❤️",
            ChannelAccess::Conversation { participant: true },
        ))
        .then_expect_events(vec![reacted(someone_else(), "❤️")]);
}

#[test]
fn reacting_twice_with_the_same_emoji_records_nothing() {
    framework()
        .given(vec![sent(), reacted(someone_else(), "👍")])
        .when(react(someone_else(), "👍", text(Role::Member)))
        .then_expect_events(vec![]);
}

#[test]
fn two_people_reacting_with_one_emoji_is_two_reactions() {
    framework()
        .given(vec![sent(), reacted(user(1), "👍")])
        .when(react(user(2), "👍", text(Role::Member)))
        .then_expect_events(vec![reacted(user(2), "👍")]);
}

#[test]
fn a_new_emoji_beyond_the_limit_is_refused_but_joining_an_existing_one_is_not() {
    let full = vec![
        sent(),
        reacted(user(1), "👍"),
        reacted(user(1), "🎉"),
        reacted(user(2), ":ship_it:"),
    ];
    framework()
        .given(full.clone())
        .when(react(user(3), "😂", text(Role::Member)))
        .then_expect_error(MessageError::TooManyReactions { max: 3 });
    framework()
        .given(full)
        .when(react(user(3), ":ship_it:", text(Role::Member)))
        .then_expect_events(vec![reacted(user(3), ":ship_it:")]);
}

#[test]
fn an_emoji_everyone_took_back_frees_its_place_under_the_limit() {
    framework()
        .given(vec![
            sent(),
            reacted(user(1), "👍"),
            reacted(user(1), "🎉"),
            reacted(user(2), ":ship_it:"),
            unreacted(user(2), ":ship_it:"),
        ])
        .when(react(user(3), "😂", text(Role::Member)))
        .then_expect_events(vec![reacted(user(3), "😂")]);
}

#[test]
fn removing_a_reaction_records_it() {
    framework()
        .given(vec![sent(), reacted(someone_else(), "👍")])
        .when(unreact(someone_else(), "👍", text(Role::Member)))
        .then_expect_events(vec![unreacted(someone_else(), "👍")]);
}

#[test]
fn removing_a_reaction_that_is_not_there_records_nothing() {
    framework()
        .given(vec![sent(), reacted(user(1), "👍")])
        .when(unreact(user(2), "👍", text(Role::Member)))
        .then_expect_events(vec![]);
    framework()
        .given(vec![
            sent(),
            reacted(user(1), "👍"),
            unreacted(user(1), "👍"),
        ])
        .when(unreact(user(1), "👍", text(Role::Member)))
        .then_expect_events(vec![]);
}

#[test]
fn nobody_reacts_in_an_archived_channel() {
    framework()
        .given(vec![sent()])
        .when(react(someone_else(), "👍", archived(Role::Owner)))
        .then_expect_error(MessageError::ReactingNotAllowed);
    framework()
        .given(vec![sent(), reacted(someone_else(), "👍")])
        .when(unreact(someone_else(), "👍", archived(Role::Owner)))
        .then_expect_error(MessageError::ReactingNotAllowed);
}

#[test]
fn outsiders_and_hidden_members_cannot_react() {
    for (access, error) in [
        (not_a_member(), MessageError::NotAChannelMember),
        (private(Role::Member), MessageError::NotAChannelMember),
        (
            ChannelAccess::Conversation { participant: false },
            MessageError::NotAChannelMember,
        ),
        (ChannelAccess::UnknownChannel, MessageError::UnknownChannel),
    ] {
        framework()
            .given(vec![sent()])
            .when(react(someone_else(), "👍", access))
            .then_expect_error(error.clone());
        framework()
            .given(vec![sent(), reacted(someone_else(), "👍")])
            .when(unreact(someone_else(), "👍", access))
            .then_expect_error(error);
    }
}

#[test]
fn a_deleted_or_unknown_message_takes_no_reactions() {
    framework()
        .given(vec![sent(), deleted_by(author())])
        .when(react(someone_else(), "👍", text(Role::Member)))
        .then_expect_error(MessageError::MessageDeleted);
    framework()
        .given(vec![
            sent(),
            reacted(someone_else(), "👍"),
            deleted_by(author()),
        ])
        .when(unreact(someone_else(), "👍", text(Role::Member)))
        .then_expect_error(MessageError::MessageDeleted);
    framework()
        .given_no_previous_events()
        .when(react(someone_else(), "👍", text(Role::Member)))
        .then_expect_error(MessageError::UnknownMessage);
}

// --- SendMessage with a reply or in a thread ------------------------------------------------

fn other_message() -> MessageId {
    MessageId::from_uuid(Uuid::from_u128(0x3e56))
}

/// `other_message()` as it stands: in `channel`, deleted or not, itself in a thread or not.
fn linked(channel: ChannelId, deleted: bool, in_thread: bool) -> LinkedMessage {
    LinkedMessage {
        message_id: other_message(),
        channel_id: Some(channel),
        deleted,
        thread_root_id: in_thread.then(|| MessageId::from_uuid(Uuid::from_u128(0x3e57))),
    }
}

fn send_linked(links: MessageLinks) -> MessageCommand {
    MessageCommand::SendMessage {
        message_id: message_id(),
        channel_id: channel_id(),
        author: author(),
        body: body("hello"),
        access: text(Role::Member),
        links,
        at: at(),
    }
}

fn sent_linked(reply_to: bool, thread: bool, also_in_channel: bool) -> MessageEvent {
    MessageEvent::MessageSent {
        message_id: message_id(),
        channel_id: channel_id(),
        server_id: server_id(),
        author_id: author(),
        body: body("hello"),
        sent_at: at(),
        reply_to_id: reply_to.then(other_message),
        thread_root_id: thread.then(other_message),
        also_in_channel,
    }
}

fn sending_linked(links: MessageLinks) -> Result<Vec<MessageEvent>, MessageError> {
    framework()
        .given_no_previous_events()
        .when(send_linked(links))
        .inspect_result()
}

#[test]
fn a_reply_names_the_message_it_quotes() {
    let links = MessageLinks {
        reply_to: Some(linked(channel_id(), false, false)),
        ..MessageLinks::default()
    };
    assert_eq!(
        sending_linked(links),
        Ok(vec![sent_linked(true, false, false)])
    );
    // A reply may quote a message that is itself in a thread.
    let links = MessageLinks {
        reply_to: Some(linked(channel_id(), false, true)),
        ..MessageLinks::default()
    };
    assert!(sending_linked(links).is_ok());
}

#[test]
fn a_reply_to_a_message_elsewhere_unknown_or_deleted_is_refused() {
    let elsewhere = ChannelId::from_uuid(Uuid::from_u128(0xc2));
    let never_sent = LinkedMessage {
        channel_id: None,
        ..linked(channel_id(), false, false)
    };
    for (target, error) in [
        (
            linked(elsewhere, false, false),
            MessageError::UnknownReplyTarget,
        ),
        (never_sent, MessageError::UnknownReplyTarget),
        (
            linked(channel_id(), true, false),
            MessageError::ReplyToDeleted,
        ),
    ] {
        let links = MessageLinks {
            reply_to: Some(target),
            ..MessageLinks::default()
        };
        assert_eq!(sending_linked(links), Err(error));
    }
}

#[test]
fn a_thread_reply_stays_in_its_thread_unless_also_sent_to_the_channel() {
    for also_in_channel in [false, true] {
        let links = MessageLinks {
            thread_root: Some(linked(channel_id(), false, false)),
            also_in_channel,
            ..MessageLinks::default()
        };
        let sent = sending_linked(links);
        assert_eq!(sent, Ok(vec![sent_linked(false, true, also_in_channel)]));
        let in_channel = sent
            .ok()
            .and_then(|events| events.first().and_then(MessageEvent::sent))
            .map(|sent| sent.in_channel);
        assert_eq!(in_channel, Some(also_in_channel));
    }
}

#[test]
fn a_thread_needs_a_live_root_in_the_channel_that_is_not_itself_a_thread_reply() {
    let elsewhere = ChannelId::from_uuid(Uuid::from_u128(0xc2));
    for (root, error) in [
        (
            linked(elsewhere, false, false),
            MessageError::UnknownThreadRoot,
        ),
        (
            linked(channel_id(), true, false),
            MessageError::ThreadRootDeleted,
        ),
        (
            linked(channel_id(), false, true),
            MessageError::NestedThread,
        ),
    ] {
        let links = MessageLinks {
            thread_root: Some(root),
            ..MessageLinks::default()
        };
        assert_eq!(sending_linked(links), Err(error));
    }
}

#[test]
fn only_a_thread_reply_can_also_be_sent_to_the_channel() {
    let links = MessageLinks {
        also_in_channel: true,
        ..MessageLinks::default()
    };
    assert_eq!(
        sending_linked(links),
        Err(MessageError::AlsoInChannelOutsideAThread)
    );
}

#[test]
fn a_thread_reply_remembers_its_root_so_it_cannot_root_a_thread() {
    let mut message = Message::default();
    cqrs_es::Aggregate::apply(&mut message, sent_linked(false, true, false));
    assert_eq!(message.thread_root_id, Some(other_message()));
    assert_eq!(
        message.linked(message_id()).thread_root_id,
        Some(other_message())
    );
}
