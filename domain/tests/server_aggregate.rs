//! Given/when/then tests for the `Server` aggregate: every command, every refusal.
//!
//! Most tests start from `staffed()`: a server owned by `owner()` whose `admin()`,
//! `moderator()`, `member()` and `guest()` joined with the owner's unlimited `welcome()` invite
//! and were then given their roles. `outsider()` never joined.

use aether_domain::server::{Server, ServerCommand, ServerError, ServerEvent};
use aether_domain::{ChannelId, ChannelKind, ChannelName, InviteCode, Role, ServerId, ServerName};
use aether_domain::{ContentPolicy, ModerationThreshold, UserId};
use chrono::{DateTime, Duration, Utc};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

// --- fixtures -------------------------------------------------------------------------------

fn framework() -> TestFramework<Server> {
    TestFramework::with(())
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).expect("a valid timestamp")
}

fn hours_later(hours: i64) -> DateTime<Utc> {
    at() + Duration::hours(hours)
}

fn user(n: u128) -> UserId {
    UserId::from_uuid(Uuid::from_u128(n))
}

fn owner() -> UserId {
    user(1)
}

fn admin() -> UserId {
    user(2)
}

fn moderator() -> UserId {
    user(3)
}

fn member() -> UserId {
    user(4)
}

fn guest() -> UserId {
    user(5)
}

fn outsider() -> UserId {
    user(6)
}

fn second_admin() -> UserId {
    user(7)
}

fn server_id() -> ServerId {
    ServerId::from_uuid(Uuid::from_u128(0x5e7e7))
}

fn server_name(value: &str) -> ServerName {
    ServerName::parse(value).expect("a valid server name")
}

fn channel_name(value: &str) -> ChannelName {
    ChannelName::parse(value).expect("a valid channel name")
}

fn code(value: &str) -> InviteCode {
    InviteCode::parse(value).expect("a valid invite code")
}

/// The owner's unlimited invite that everyone in `staffed()` joined with.
fn welcome() -> InviteCode {
    code("WELCOME1")
}

fn general() -> ChannelId {
    ChannelId::from_uuid(Uuid::from_u128(0xc1))
}

fn archive_room() -> ChannelId {
    ChannelId::from_uuid(Uuid::from_u128(0xc2))
}

fn unknown_channel() -> ChannelId {
    ChannelId::from_uuid(Uuid::from_u128(0xc9))
}

fn created() -> ServerEvent {
    ServerEvent::ServerCreated {
        server_id: server_id(),
        name: server_name("Aether Lounge"),
        owner_id: owner(),
        created_at: at(),
    }
}

fn invite_created(
    code: InviteCode,
    created_by: UserId,
    max_uses: Option<u32>,
    expires_at: Option<DateTime<Utc>>,
) -> ServerEvent {
    ServerEvent::InviteCreated {
        code,
        created_by,
        max_uses,
        expires_at,
    }
}

fn joined(user_id: UserId, invite_code: InviteCode) -> ServerEvent {
    ServerEvent::MemberJoined {
        user_id,
        role: Role::Member,
        invite_code,
        joined_at: at(),
    }
}

fn role_changed(user_id: UserId, role: Role, previous_role: Role) -> ServerEvent {
    ServerEvent::MemberRoleChanged {
        user_id,
        role,
        previous_role,
    }
}

fn channel_created(channel_id: ChannelId, name: &str) -> ServerEvent {
    ServerEvent::ChannelCreated {
        channel_id,
        name: channel_name(name),
        kind: ChannelKind::Text,
        private: false,
    }
}

/// A server with one member of every role.
fn staffed() -> Vec<ServerEvent> {
    vec![
        created(),
        invite_created(welcome(), owner(), None, None),
        joined(admin(), welcome()),
        joined(moderator(), welcome()),
        joined(member(), welcome()),
        joined(guest(), welcome()),
        role_changed(admin(), Role::Admin, Role::Member),
        role_changed(moderator(), Role::Moderator, Role::Member),
        role_changed(guest(), Role::Guest, Role::Member),
    ]
}

/// `staffed()` with a live `general` channel and an archived `archive-room`.
fn with_channels() -> Vec<ServerEvent> {
    let mut events = staffed();
    events.extend([
        channel_created(general(), "general"),
        channel_created(archive_room(), "archive-room"),
        ServerEvent::ChannelArchived {
            channel_id: archive_room(),
        },
    ]);
    events
}

/// `staffed()` plus an invite `code` created by `created_by`.
fn with_invite(
    code: InviteCode,
    created_by: UserId,
    max_uses: Option<u32>,
    expires_at: Option<DateTime<Utc>>,
) -> Vec<ServerEvent> {
    let mut events = staffed();
    events.push(invite_created(code, created_by, max_uses, expires_at));
    events
}

fn create_invite(
    actor: UserId,
    code: InviteCode,
    max_uses: Option<u32>,
    expires_at: Option<DateTime<Utc>>,
) -> ServerCommand {
    ServerCommand::CreateInvite {
        actor,
        code,
        max_uses,
        expires_at,
        at: at(),
    }
}

fn join(user: UserId, code: InviteCode, at: DateTime<Utc>) -> ServerCommand {
    ServerCommand::JoinServer { user, code, at }
}

fn change_role(actor: UserId, user: UserId, role: Role) -> ServerCommand {
    ServerCommand::ChangeMemberRole { actor, user, role }
}

// --- CreateServer ---------------------------------------------------------------------------

#[test]
fn creating_a_server_makes_the_creator_its_owner() {
    framework()
        .given_no_previous_events()
        .when(ServerCommand::CreateServer {
            server_id: server_id(),
            name: server_name("Aether Lounge"),
            owner: owner(),
            at: at(),
        })
        .then_expect_events(vec![created()]);
}

#[test]
fn creating_a_server_that_already_exists_is_refused() {
    framework()
        .given(vec![created()])
        .when(ServerCommand::CreateServer {
            server_id: server_id(),
            name: server_name("Another Lounge"),
            owner: outsider(),
            at: hours_later(1),
        })
        .then_expect_error(ServerError::AlreadyExists);
}

// --- RenameServer ---------------------------------------------------------------------------

#[test]
fn the_owner_can_rename_the_server() {
    framework()
        .given(staffed())
        .when(ServerCommand::RenameServer {
            actor: owner(),
            name: server_name("Aether Hall"),
        })
        .then_expect_events(vec![ServerEvent::ServerRenamed {
            name: server_name("Aether Hall"),
        }]);
}

#[test]
fn an_admin_can_rename_the_server() {
    framework()
        .given(staffed())
        .when(ServerCommand::RenameServer {
            actor: admin(),
            name: server_name("Aether Hall"),
        })
        .then_expect_events(vec![ServerEvent::ServerRenamed {
            name: server_name("Aether Hall"),
        }]);
}

#[test]
fn a_moderator_cannot_rename_the_server() {
    framework()
        .given(staffed())
        .when(ServerCommand::RenameServer {
            actor: moderator(),
            name: server_name("Aether Hall"),
        })
        .then_expect_error(ServerError::NotPermitted {
            role: Role::Moderator,
        });
}

#[test]
fn a_refused_rename_names_the_role_that_was_not_enough() {
    framework()
        .given(staffed())
        .when(ServerCommand::RenameServer {
            actor: guest(),
            name: server_name("Aether Hall"),
        })
        .then_expect_error_message("your role (GUEST) does not allow this");
}

#[test]
fn an_outsider_cannot_rename_the_server() {
    framework()
        .given(staffed())
        .when(ServerCommand::RenameServer {
            actor: outsider(),
            name: server_name("Aether Hall"),
        })
        .then_expect_error(ServerError::NotAMember);
}

#[test]
fn renaming_a_server_that_does_not_exist_is_refused() {
    framework()
        .given_no_previous_events()
        .when(ServerCommand::RenameServer {
            actor: owner(),
            name: server_name("Aether Hall"),
        })
        .then_expect_error(ServerError::UnknownServer);
}

#[test]
fn renaming_the_server_to_its_current_name_records_nothing() {
    framework()
        .given(staffed())
        .when(ServerCommand::RenameServer {
            actor: owner(),
            name: server_name("Aether Lounge"),
        })
        .then_expect_events(vec![]);
}

#[test]
fn renaming_the_server_again_to_its_latest_name_records_nothing() {
    framework()
        .given(staffed())
        .and(vec![ServerEvent::ServerRenamed {
            name: server_name("Aether Hall"),
        }])
        .when(ServerCommand::RenameServer {
            actor: admin(),
            name: server_name("Aether Hall"),
        })
        .then_expect_events(vec![]);
}

// --- CreateChannel --------------------------------------------------------------------------

#[test]
fn an_admin_can_create_a_text_channel() {
    framework()
        .given(staffed())
        .when(ServerCommand::CreateChannel {
            actor: admin(),
            channel_id: general(),
            name: channel_name("general"),
            kind: ChannelKind::Text,
            private: false,
        })
        .then_expect_events(vec![channel_created(general(), "general")]);
}

#[test]
fn the_owner_can_create_a_private_announcement_channel() {
    framework()
        .given(staffed())
        .when(ServerCommand::CreateChannel {
            actor: owner(),
            channel_id: general(),
            name: channel_name("staff news"),
            kind: ChannelKind::Announcement,
            private: true,
        })
        .then_expect_events(vec![ServerEvent::ChannelCreated {
            channel_id: general(),
            name: channel_name("staff news"),
            kind: ChannelKind::Announcement,
            private: true,
        }]);
}

#[test]
fn a_moderator_cannot_create_a_channel() {
    framework()
        .given(staffed())
        .when(ServerCommand::CreateChannel {
            actor: moderator(),
            channel_id: general(),
            name: channel_name("general"),
            kind: ChannelKind::Voice,
            private: false,
        })
        .then_expect_error(ServerError::NotPermitted {
            role: Role::Moderator,
        });
}

#[test]
fn a_member_cannot_create_a_channel() {
    framework()
        .given(staffed())
        .when(ServerCommand::CreateChannel {
            actor: member(),
            channel_id: general(),
            name: channel_name("general"),
            kind: ChannelKind::Text,
            private: false,
        })
        .then_expect_error(ServerError::NotPermitted { role: Role::Member });
}

#[test]
fn an_outsider_cannot_create_a_channel() {
    framework()
        .given(staffed())
        .when(ServerCommand::CreateChannel {
            actor: outsider(),
            channel_id: general(),
            name: channel_name("general"),
            kind: ChannelKind::Text,
            private: false,
        })
        .then_expect_error(ServerError::NotAMember);
}

#[test]
fn creating_a_channel_in_a_server_that_does_not_exist_is_refused() {
    framework()
        .given_no_previous_events()
        .when(ServerCommand::CreateChannel {
            actor: owner(),
            channel_id: general(),
            name: channel_name("general"),
            kind: ChannelKind::Text,
            private: false,
        })
        .then_expect_error(ServerError::UnknownServer);
}

#[test]
fn creating_a_channel_with_an_id_already_in_use_is_refused() {
    framework()
        .given(with_channels())
        .when(ServerCommand::CreateChannel {
            actor: admin(),
            channel_id: general(),
            name: channel_name("random"),
            kind: ChannelKind::Text,
            private: false,
        })
        .then_expect_error(ServerError::ChannelAlreadyExists);
}

#[test]
fn an_archived_channels_id_cannot_be_reused_for_a_new_channel() {
    framework()
        .given(with_channels())
        .when(ServerCommand::CreateChannel {
            actor: owner(),
            channel_id: archive_room(),
            name: channel_name("archive-room"),
            kind: ChannelKind::Text,
            private: false,
        })
        .then_expect_error(ServerError::ChannelAlreadyExists);
}

// --- RenameChannel --------------------------------------------------------------------------

#[test]
fn an_admin_can_rename_a_channel() {
    framework()
        .given(with_channels())
        .when(ServerCommand::RenameChannel {
            actor: admin(),
            channel_id: general(),
            name: channel_name("lobby"),
        })
        .then_expect_events(vec![ServerEvent::ChannelRenamed {
            channel_id: general(),
            name: channel_name("lobby"),
        }]);
}

#[test]
fn renaming_a_channel_to_its_current_name_records_nothing() {
    framework()
        .given(with_channels())
        .when(ServerCommand::RenameChannel {
            actor: admin(),
            channel_id: general(),
            name: channel_name("general"),
        })
        .then_expect_events(vec![]);
}

#[test]
fn renaming_a_channel_again_to_its_latest_name_records_nothing() {
    framework()
        .given(with_channels())
        .and(vec![ServerEvent::ChannelRenamed {
            channel_id: general(),
            name: channel_name("lobby"),
        }])
        .when(ServerCommand::RenameChannel {
            actor: owner(),
            channel_id: general(),
            name: channel_name("lobby"),
        })
        .then_expect_events(vec![]);
}

#[test]
fn renaming_an_unknown_channel_is_refused() {
    framework()
        .given(with_channels())
        .when(ServerCommand::RenameChannel {
            actor: admin(),
            channel_id: unknown_channel(),
            name: channel_name("lobby"),
        })
        .then_expect_error(ServerError::UnknownChannel);
}

#[test]
fn an_archived_channel_cannot_be_renamed() {
    framework()
        .given(with_channels())
        .when(ServerCommand::RenameChannel {
            actor: owner(),
            channel_id: archive_room(),
            name: channel_name("attic"),
        })
        .then_expect_error(ServerError::ChannelArchived);
}

#[test]
fn a_moderator_cannot_rename_a_channel() {
    framework()
        .given(with_channels())
        .when(ServerCommand::RenameChannel {
            actor: moderator(),
            channel_id: general(),
            name: channel_name("lobby"),
        })
        .then_expect_error(ServerError::NotPermitted {
            role: Role::Moderator,
        });
}

#[test]
fn an_outsider_cannot_rename_a_channel() {
    framework()
        .given(with_channels())
        .when(ServerCommand::RenameChannel {
            actor: outsider(),
            channel_id: general(),
            name: channel_name("lobby"),
        })
        .then_expect_error(ServerError::NotAMember);
}

#[test]
fn renaming_a_channel_of_a_server_that_does_not_exist_is_refused() {
    framework()
        .given_no_previous_events()
        .when(ServerCommand::RenameChannel {
            actor: owner(),
            channel_id: general(),
            name: channel_name("lobby"),
        })
        .then_expect_error(ServerError::UnknownServer);
}

// --- ArchiveChannel -------------------------------------------------------------------------

#[test]
fn an_admin_can_archive_a_channel() {
    framework()
        .given(with_channels())
        .when(ServerCommand::ArchiveChannel {
            actor: admin(),
            channel_id: general(),
        })
        .then_expect_events(vec![ServerEvent::ChannelArchived {
            channel_id: general(),
        }]);
}

#[test]
fn archiving_an_already_archived_channel_is_refused() {
    framework()
        .given(with_channels())
        .when(ServerCommand::ArchiveChannel {
            actor: owner(),
            channel_id: archive_room(),
        })
        .then_expect_error(ServerError::ChannelArchived);
}

#[test]
fn archiving_an_unknown_channel_is_refused() {
    framework()
        .given(with_channels())
        .when(ServerCommand::ArchiveChannel {
            actor: owner(),
            channel_id: unknown_channel(),
        })
        .then_expect_error(ServerError::UnknownChannel);
}

#[test]
fn a_moderator_cannot_archive_a_channel() {
    framework()
        .given(with_channels())
        .when(ServerCommand::ArchiveChannel {
            actor: moderator(),
            channel_id: general(),
        })
        .then_expect_error(ServerError::NotPermitted {
            role: Role::Moderator,
        });
}

#[test]
fn an_outsider_cannot_archive_a_channel() {
    framework()
        .given(with_channels())
        .when(ServerCommand::ArchiveChannel {
            actor: outsider(),
            channel_id: general(),
        })
        .then_expect_error(ServerError::NotAMember);
}

#[test]
fn archiving_a_channel_of_a_server_that_does_not_exist_is_refused() {
    framework()
        .given_no_previous_events()
        .when(ServerCommand::ArchiveChannel {
            actor: owner(),
            channel_id: general(),
        })
        .then_expect_error(ServerError::UnknownServer);
}

// --- CreateInvite ---------------------------------------------------------------------------

#[test]
fn a_member_can_create_a_limited_invite() {
    framework()
        .given(staffed())
        .when(create_invite(
            member(),
            code("FRIENDS2"),
            Some(5),
            Some(hours_later(24)),
        ))
        .then_expect_events(vec![invite_created(
            code("FRIENDS2"),
            member(),
            Some(5),
            Some(hours_later(24)),
        )]);
}

#[test]
fn a_moderator_can_create_an_invite_that_never_expires() {
    framework()
        .given(staffed())
        .when(create_invite(moderator(), code("FOREVER9"), None, None))
        .then_expect_events(vec![invite_created(
            code("FOREVER9"),
            moderator(),
            None,
            None,
        )]);
}

#[test]
fn a_guest_cannot_create_an_invite() {
    framework()
        .given(staffed())
        .when(create_invite(guest(), code("FRIENDS2"), None, None))
        .then_expect_error(ServerError::NotPermitted { role: Role::Guest });
}

#[test]
fn an_outsider_cannot_create_an_invite() {
    framework()
        .given(staffed())
        .when(create_invite(outsider(), code("FRIENDS2"), None, None))
        .then_expect_error(ServerError::NotAMember);
}

#[test]
fn a_member_who_left_can_no_longer_create_invites() {
    framework()
        .given(staffed())
        .and(vec![ServerEvent::MemberLeft { user_id: member() }])
        .when(create_invite(member(), code("FRIENDS2"), None, None))
        .then_expect_error(ServerError::NotAMember);
}

#[test]
fn creating_an_invite_for_a_server_that_does_not_exist_is_refused() {
    framework()
        .given_no_previous_events()
        .when(create_invite(owner(), code("FRIENDS2"), None, None))
        .then_expect_error(ServerError::UnknownServer);
}

#[test]
fn an_invite_that_can_be_used_zero_times_is_refused() {
    framework()
        .given(staffed())
        .when(create_invite(member(), code("FRIENDS2"), Some(0), None))
        .then_expect_error(ServerError::InvalidMaxUses);
}

#[test]
fn an_invite_that_expires_the_moment_it_is_created_is_refused() {
    framework()
        .given(staffed())
        .when(create_invite(member(), code("FRIENDS2"), None, Some(at())))
        .then_expect_error(ServerError::InvalidExpiry);
}

#[test]
fn an_invite_that_expired_before_it_was_created_is_refused() {
    framework()
        .given(staffed())
        .when(create_invite(
            member(),
            code("FRIENDS2"),
            Some(3),
            Some(hours_later(-1)),
        ))
        .then_expect_error(ServerError::InvalidExpiry);
}

#[test]
fn creating_an_invite_with_a_code_already_in_use_is_refused() {
    framework()
        .given(staffed())
        .when(create_invite(member(), welcome(), None, None))
        .then_expect_error(ServerError::InviteAlreadyExists);
}

#[test]
fn a_revoked_invite_code_cannot_be_reused() {
    framework()
        .given(with_invite(code("FRIENDS2"), member(), None, None))
        .and(vec![ServerEvent::InviteRevoked {
            code: code("FRIENDS2"),
        }])
        .when(create_invite(admin(), code("FRIENDS2"), None, None))
        .then_expect_error(ServerError::InviteAlreadyExists);
}

// --- RevokeInvite ---------------------------------------------------------------------------

#[test]
fn the_creator_of_an_invite_can_revoke_it() {
    framework()
        .given(with_invite(code("FRIENDS2"), member(), None, None))
        .when(ServerCommand::RevokeInvite {
            actor: member(),
            code: code("FRIENDS2"),
        })
        .then_expect_events(vec![ServerEvent::InviteRevoked {
            code: code("FRIENDS2"),
        }]);
}

#[test]
fn a_creator_demoted_to_guest_can_still_revoke_their_own_invite() {
    framework()
        .given(with_invite(code("FRIENDS2"), member(), None, None))
        .and(vec![role_changed(member(), Role::Guest, Role::Member)])
        .when(ServerCommand::RevokeInvite {
            actor: member(),
            code: code("FRIENDS2"),
        })
        .then_expect_events(vec![ServerEvent::InviteRevoked {
            code: code("FRIENDS2"),
        }]);
}

#[test]
fn a_moderator_can_revoke_someone_elses_invite() {
    framework()
        .given(with_invite(code("FRIENDS2"), member(), None, None))
        .when(ServerCommand::RevokeInvite {
            actor: moderator(),
            code: code("FRIENDS2"),
        })
        .then_expect_events(vec![ServerEvent::InviteRevoked {
            code: code("FRIENDS2"),
        }]);
}

#[test]
fn a_member_cannot_revoke_someone_elses_invite() {
    framework()
        .given(staffed())
        .when(ServerCommand::RevokeInvite {
            actor: member(),
            code: welcome(),
        })
        .then_expect_error(ServerError::NotPermitted { role: Role::Member });
}

#[test]
fn revoking_an_already_revoked_invite_records_nothing() {
    framework()
        .given(with_invite(code("FRIENDS2"), member(), None, None))
        .and(vec![ServerEvent::InviteRevoked {
            code: code("FRIENDS2"),
        }])
        .when(ServerCommand::RevokeInvite {
            actor: member(),
            code: code("FRIENDS2"),
        })
        .then_expect_events(vec![]);
}

#[test]
fn revoking_an_unknown_invite_is_refused() {
    framework()
        .given(staffed())
        .when(ServerCommand::RevokeInvite {
            actor: owner(),
            code: code("NOSUCHCODE"),
        })
        .then_expect_error(ServerError::UnknownInvite);
}

#[test]
fn an_outsider_cannot_revoke_an_invite() {
    framework()
        .given(staffed())
        .when(ServerCommand::RevokeInvite {
            actor: outsider(),
            code: welcome(),
        })
        .then_expect_error(ServerError::NotAMember);
}

#[test]
fn revoking_an_invite_of_a_server_that_does_not_exist_is_refused() {
    framework()
        .given_no_previous_events()
        .when(ServerCommand::RevokeInvite {
            actor: owner(),
            code: welcome(),
        })
        .then_expect_error(ServerError::UnknownServer);
}

// --- JoinServer -----------------------------------------------------------------------------

#[test]
fn joining_with_a_valid_invite_makes_you_a_member() {
    framework()
        .given(staffed())
        .when(join(outsider(), welcome(), hours_later(1)))
        .then_expect_events(vec![ServerEvent::MemberJoined {
            user_id: outsider(),
            role: Role::Member,
            invite_code: welcome(),
            joined_at: hours_later(1),
        }]);
}

#[test]
fn joining_with_an_unknown_invite_is_refused() {
    framework()
        .given(staffed())
        .when(join(outsider(), code("NOSUCHCODE"), at()))
        .then_expect_error(ServerError::UnknownInvite);
}

#[test]
fn joining_a_server_that_does_not_exist_is_refused() {
    framework()
        .given_no_previous_events()
        .when(join(outsider(), welcome(), at()))
        .then_expect_error(ServerError::UnknownServer);
}

#[test]
fn joining_a_server_you_are_already_in_is_refused() {
    framework()
        .given(staffed())
        .when(join(member(), welcome(), at()))
        .then_expect_error(ServerError::AlreadyAMember);
}

#[test]
fn the_owner_cannot_join_their_own_server() {
    framework()
        .given(staffed())
        .when(join(owner(), welcome(), at()))
        .then_expect_error(ServerError::AlreadyAMember);
}

#[test]
fn joining_with_a_revoked_invite_is_refused() {
    framework()
        .given(staffed())
        .and(vec![ServerEvent::InviteRevoked { code: welcome() }])
        .when(join(outsider(), welcome(), at()))
        .then_expect_error(ServerError::InviteRevoked);
}

#[test]
fn joining_just_before_an_invite_expires_is_accepted() {
    let expires = hours_later(24);
    let just_before = expires - Duration::seconds(1);
    framework()
        .given(with_invite(code("DAYPASS1"), member(), None, Some(expires)))
        .when(join(outsider(), code("DAYPASS1"), just_before))
        .then_expect_events(vec![ServerEvent::MemberJoined {
            user_id: outsider(),
            role: Role::Member,
            invite_code: code("DAYPASS1"),
            joined_at: just_before,
        }]);
}

#[test]
fn joining_at_the_moment_an_invite_expires_is_refused() {
    framework()
        .given(with_invite(
            code("DAYPASS1"),
            member(),
            None,
            Some(hours_later(24)),
        ))
        .when(join(outsider(), code("DAYPASS1"), hours_later(24)))
        .then_expect_error(ServerError::InviteExpired);
}

#[test]
fn joining_with_an_expired_invite_is_refused() {
    framework()
        .given(with_invite(
            code("DAYPASS1"),
            member(),
            None,
            Some(hours_later(24)),
        ))
        .when(join(outsider(), code("DAYPASS1"), hours_later(48)))
        .then_expect_error(ServerError::InviteExpired);
}

#[test]
fn an_invite_with_uses_left_still_admits_newcomers() {
    framework()
        .given(with_invite(code("TWOUSES2"), member(), Some(2), None))
        .and(vec![joined(user(100), code("TWOUSES2"))])
        .when(join(outsider(), code("TWOUSES2"), hours_later(1)))
        .then_expect_events(vec![ServerEvent::MemberJoined {
            user_id: outsider(),
            role: Role::Member,
            invite_code: code("TWOUSES2"),
            joined_at: hours_later(1),
        }]);
}

#[test]
fn joining_with_an_exhausted_invite_is_refused() {
    framework()
        .given(with_invite(code("ONEUSE01"), member(), Some(1), None))
        .and(vec![joined(user(100), code("ONEUSE01"))])
        .when(join(outsider(), code("ONEUSE01"), hours_later(1)))
        .then_expect_error(ServerError::InviteExhausted);
}

#[test]
fn leaving_does_not_give_an_invite_its_use_back() {
    framework()
        .given(with_invite(code("ONEUSE01"), member(), Some(1), None))
        .and(vec![
            joined(user(100), code("ONEUSE01")),
            ServerEvent::MemberLeft { user_id: user(100) },
        ])
        .when(join(outsider(), code("ONEUSE01"), hours_later(1)))
        .then_expect_error(ServerError::InviteExhausted);
}

#[test]
fn an_admin_who_left_and_rejoins_comes_back_as_a_plain_member() {
    framework()
        .given(staffed())
        .and(vec![ServerEvent::MemberLeft { user_id: admin() }])
        .when(join(admin(), welcome(), hours_later(2)))
        .then_expect_events(vec![ServerEvent::MemberJoined {
            user_id: admin(),
            role: Role::Member,
            invite_code: welcome(),
            joined_at: hours_later(2),
        }]);
}

// --- LeaveServer ----------------------------------------------------------------------------

#[test]
fn a_member_can_leave_the_server() {
    framework()
        .given(staffed())
        .when(ServerCommand::LeaveServer { user: member() })
        .then_expect_events(vec![ServerEvent::MemberLeft { user_id: member() }]);
}

#[test]
fn an_admin_can_leave_the_server() {
    framework()
        .given(staffed())
        .when(ServerCommand::LeaveServer { user: admin() })
        .then_expect_events(vec![ServerEvent::MemberLeft { user_id: admin() }]);
}

#[test]
fn the_owner_cannot_leave_their_own_server() {
    framework()
        .given(staffed())
        .when(ServerCommand::LeaveServer { user: owner() })
        .then_expect_error(ServerError::OwnerCannotLeave);
}

#[test]
fn someone_who_never_joined_cannot_leave() {
    framework()
        .given(staffed())
        .when(ServerCommand::LeaveServer { user: outsider() })
        .then_expect_error(ServerError::NotAMember);
}

#[test]
fn leaving_twice_is_refused() {
    framework()
        .given(staffed())
        .and(vec![ServerEvent::MemberLeft { user_id: guest() }])
        .when(ServerCommand::LeaveServer { user: guest() })
        .then_expect_error(ServerError::NotAMember);
}

#[test]
fn leaving_a_server_that_does_not_exist_is_refused() {
    framework()
        .given_no_previous_events()
        .when(ServerCommand::LeaveServer { user: member() })
        .then_expect_error(ServerError::UnknownServer);
}

// --- ChangeMemberRole -----------------------------------------------------------------------

#[test]
fn an_admin_can_promote_a_member_to_moderator() {
    framework()
        .given(staffed())
        .when(change_role(admin(), member(), Role::Moderator))
        .then_expect_events(vec![role_changed(member(), Role::Moderator, Role::Member)]);
}

#[test]
fn an_admin_can_demote_a_moderator_to_guest() {
    framework()
        .given(staffed())
        .when(change_role(admin(), moderator(), Role::Guest))
        .then_expect_events(vec![role_changed(
            moderator(),
            Role::Guest,
            Role::Moderator,
        )]);
}

#[test]
fn the_owner_can_promote_a_member_to_admin() {
    framework()
        .given(staffed())
        .when(change_role(owner(), member(), Role::Admin))
        .then_expect_events(vec![role_changed(member(), Role::Admin, Role::Member)]);
}

#[test]
fn the_owner_can_demote_an_admin_to_guest() {
    framework()
        .given(staffed())
        .when(change_role(owner(), admin(), Role::Guest))
        .then_expect_events(vec![role_changed(admin(), Role::Guest, Role::Admin)]);
}

#[test]
fn giving_a_member_the_role_they_already_have_records_nothing() {
    framework()
        .given(staffed())
        .when(change_role(owner(), member(), Role::Member))
        .then_expect_events(vec![]);
}

#[test]
fn giving_a_promoted_member_their_new_role_again_records_nothing() {
    framework()
        .given(staffed())
        .when(change_role(admin(), moderator(), Role::Moderator))
        .then_expect_events(vec![]);
}

#[test]
fn nobody_can_be_made_owner() {
    framework()
        .given(staffed())
        .when(change_role(owner(), admin(), Role::Owner))
        .then_expect_error(ServerError::OwnershipIsNotTransferable);
}

#[test]
fn an_admin_asking_to_make_someone_owner_is_told_ownership_is_not_transferable() {
    framework()
        .given(staffed())
        .when(change_role(admin(), member(), Role::Owner))
        .then_expect_error(ServerError::OwnershipIsNotTransferable);
}

#[test]
fn the_owners_role_cannot_be_changed_by_an_admin() {
    framework()
        .given(staffed())
        .when(change_role(admin(), owner(), Role::Guest))
        .then_expect_error(ServerError::OwnershipIsNotTransferable);
}

#[test]
fn the_owner_cannot_step_down_to_admin() {
    framework()
        .given(staffed())
        .when(change_role(owner(), owner(), Role::Admin))
        .then_expect_error(ServerError::OwnershipIsNotTransferable);
}

#[test]
fn an_admin_cannot_promote_anyone_to_admin() {
    framework()
        .given(staffed())
        .when(change_role(admin(), member(), Role::Admin))
        .then_expect_error(ServerError::RoleAboveYourOwn);
}

#[test]
fn an_admin_cannot_change_another_admins_role() {
    framework()
        .given(staffed())
        .and(vec![
            joined(second_admin(), welcome()),
            role_changed(second_admin(), Role::Admin, Role::Member),
        ])
        .when(change_role(admin(), second_admin(), Role::Member))
        .then_expect_error(ServerError::RoleAboveYourOwn);
}

#[test]
fn an_admin_setting_another_admin_to_admin_is_refused_not_ignored() {
    framework()
        .given(staffed())
        .and(vec![
            joined(second_admin(), welcome()),
            role_changed(second_admin(), Role::Admin, Role::Member),
        ])
        .when(change_role(admin(), second_admin(), Role::Admin))
        .then_expect_error(ServerError::RoleAboveYourOwn);
}

#[test]
fn an_admin_cannot_demote_themselves() {
    framework()
        .given(staffed())
        .when(change_role(admin(), admin(), Role::Member))
        .then_expect_error(ServerError::RoleAboveYourOwn);
}

#[test]
fn a_moderator_cannot_change_roles() {
    framework()
        .given(staffed())
        .when(change_role(moderator(), guest(), Role::Member))
        .then_expect_error(ServerError::NotPermitted {
            role: Role::Moderator,
        });
}

#[test]
fn an_admin_demoted_to_moderator_can_no_longer_change_roles() {
    framework()
        .given(staffed())
        .and(vec![role_changed(admin(), Role::Moderator, Role::Admin)])
        .when(change_role(admin(), guest(), Role::Member))
        .then_expect_error(ServerError::NotPermitted {
            role: Role::Moderator,
        });
}

#[test]
fn an_outsider_cannot_change_roles() {
    framework()
        .given(staffed())
        .when(change_role(outsider(), member(), Role::Guest))
        .then_expect_error(ServerError::NotAMember);
}

#[test]
fn changing_the_role_of_someone_who_is_not_a_member_is_refused() {
    framework()
        .given(staffed())
        .when(change_role(owner(), outsider(), Role::Moderator))
        .then_expect_error(ServerError::NotAMember);
}

#[test]
fn changing_a_role_in_a_server_that_does_not_exist_is_refused() {
    framework()
        .given_no_previous_events()
        .when(change_role(owner(), member(), Role::Moderator))
        .then_expect_error(ServerError::UnknownServer);
}

// --- RemoveMember, BanUser, UnbanUser -------------------------------------------------------

fn reason(value: &str) -> aether_domain::ModerationReason {
    aether_domain::ModerationReason::parse(value).expect("a valid reason")
}

fn remove(actor: UserId, user: UserId) -> ServerCommand {
    ServerCommand::RemoveMember {
        actor,
        user,
        reason: Some(reason("spam")),
    }
}

fn ban(actor: UserId, user: UserId) -> ServerCommand {
    ServerCommand::BanUser {
        actor,
        user,
        reason: Some(reason("spam links")),
        at: hours_later(1),
    }
}

fn banned(actor: UserId, user: UserId) -> ServerEvent {
    ServerEvent::UserBanned {
        user_id: user,
        banned_by: actor,
        reason: Some(reason("spam links")),
        banned_at: hours_later(1),
    }
}

#[test]
fn a_moderator_removes_a_member_with_a_reason() {
    framework()
        .given(staffed())
        .when(remove(moderator(), member()))
        .then_expect_events(vec![ServerEvent::MemberRemoved {
            user_id: member(),
            removed_by: moderator(),
            reason: Some(reason("spam")),
        }]);
}

#[test]
fn a_removed_member_can_rejoin_with_an_invite() {
    framework()
        .given(staffed())
        .and(vec![ServerEvent::MemberRemoved {
            user_id: member(),
            removed_by: moderator(),
            reason: None,
        }])
        .when(join(member(), welcome(), hours_later(2)))
        .then_expect_events(vec![ServerEvent::MemberJoined {
            user_id: member(),
            role: Role::Member,
            invite_code: welcome(),
            joined_at: hours_later(2),
        }]);
}

#[test]
fn nobody_removes_or_bans_an_equal_or_higher_role() {
    for (actor, target) in [
        (moderator(), moderator()),
        (moderator(), admin()),
        (admin(), second_admin()),
        (admin(), owner()),
    ] {
        let with_second_admin = || {
            let mut events = staffed();
            events.push(joined(second_admin(), welcome()));
            events.push(ServerEvent::MemberRoleChanged {
                user_id: second_admin(),
                role: Role::Admin,
                previous_role: Role::Member,
            });
            events
        };
        framework()
            .given(with_second_admin())
            .when(remove(actor, target))
            .then_expect_error(ServerError::MemberOutranksYou);
        framework()
            .given(with_second_admin())
            .when(ban(actor, target))
            .then_expect_error(ServerError::MemberOutranksYou);
    }
}

#[test]
fn members_and_guests_may_not_remove_or_ban() {
    for actor in [member(), guest()] {
        let role = if actor == member() {
            Role::Member
        } else {
            Role::Guest
        };
        framework()
            .given(staffed())
            .when(remove(actor, guest()))
            .then_expect_error(ServerError::NotPermitted { role });
        framework()
            .given(staffed())
            .when(ban(actor, outsider()))
            .then_expect_error(ServerError::NotPermitted { role });
    }
}

#[test]
fn removing_someone_who_is_not_a_member_is_refused() {
    framework()
        .given(staffed())
        .when(remove(admin(), outsider()))
        .then_expect_error(ServerError::NoSuchMember);
}

#[test]
fn a_ban_removes_the_member_and_keeps_every_invite_shut() {
    framework()
        .given(staffed())
        .and(vec![banned(moderator(), member())])
        .when(join(member(), welcome(), hours_later(2)))
        .then_expect_error(ServerError::Banned);
    framework()
        .given(staffed())
        .and(vec![banned(moderator(), member())])
        .when(ServerCommand::LeaveServer { user: member() })
        .then_expect_error(ServerError::NotAMember);
}

#[test]
fn someone_who_never_joined_can_be_banned_ahead_of_time() {
    framework()
        .given(staffed())
        .when(ban(admin(), outsider()))
        .then_expect_events(vec![banned(admin(), outsider())]);
    framework()
        .given(staffed())
        .and(vec![banned(admin(), outsider())])
        .when(join(outsider(), welcome(), hours_later(2)))
        .then_expect_error(ServerError::Banned);
}

#[test]
fn banning_twice_records_one_ban() {
    framework()
        .given(staffed())
        .and(vec![banned(admin(), outsider())])
        .when(ban(moderator(), outsider()))
        .then_expect_events(vec![]);
}

#[test]
fn nobody_bans_themselves() {
    framework()
        .given(staffed())
        .when(ban(owner(), owner()))
        .then_expect_error(ServerError::MemberOutranksYou);
}

#[test]
fn an_unbanned_user_can_join_again() {
    framework()
        .given(staffed())
        .and(vec![banned(moderator(), member())])
        .when(ServerCommand::UnbanUser {
            actor: admin(),
            user: member(),
        })
        .then_expect_events(vec![ServerEvent::UserUnbanned {
            user_id: member(),
            unbanned_by: admin(),
        }]);
    framework()
        .given(staffed())
        .and(vec![
            banned(moderator(), member()),
            ServerEvent::UserUnbanned {
                user_id: member(),
                unbanned_by: admin(),
            },
        ])
        .when(join(member(), welcome(), hours_later(3)))
        .then_expect_events(vec![ServerEvent::MemberJoined {
            user_id: member(),
            role: Role::Member,
            invite_code: welcome(),
            joined_at: hours_later(3),
        }]);
}

#[test]
fn unbanning_someone_who_is_not_banned_is_refused() {
    framework()
        .given(staffed())
        .when(ServerCommand::UnbanUser {
            actor: admin(),
            user: outsider(),
        })
        .then_expect_error(ServerError::NotBanned);
    framework()
        .given(staffed())
        .and(vec![banned(moderator(), outsider())])
        .when(ServerCommand::UnbanUser {
            actor: member(),
            user: outsider(),
        })
        .then_expect_error(ServerError::NotPermitted { role: Role::Member });
}

// --- DeleteServer ---------------------------------------------------------------------------

fn deleted() -> ServerEvent {
    ServerEvent::ServerDeleted {
        deleted_by: owner(),
        deleted_at: hours_later(2),
        member_ids: vec![owner(), admin(), moderator(), member(), guest()],
    }
}

fn delete(actor: UserId) -> ServerCommand {
    ServerCommand::DeleteServer {
        actor,
        at: hours_later(2),
    }
}

#[test]
fn the_owner_can_delete_the_server_and_every_member_loses_it() {
    framework()
        .given(staffed())
        .when(delete(owner()))
        .then_expect_events(vec![deleted()]);
}

#[test]
fn an_admin_cannot_delete_the_server() {
    framework()
        .given(staffed())
        .when(delete(admin()))
        .then_expect_error(ServerError::NotPermitted { role: Role::Admin });
}

#[test]
fn an_outsider_cannot_delete_the_server() {
    framework()
        .given(staffed())
        .when(delete(outsider()))
        .then_expect_error(ServerError::NotAMember);
}

#[test]
fn a_deleted_server_cannot_be_deleted_again() {
    let mut events = staffed();
    events.push(deleted());
    framework()
        .given(events)
        .when(delete(owner()))
        .then_expect_error(ServerError::UnknownServer);
}

#[test]
fn a_deleted_server_answers_every_command_as_if_it_did_not_exist() {
    let mut events = with_channels();
    events.push(deleted());
    let commands = [
        ServerCommand::RenameServer {
            actor: owner(),
            name: server_name("Aether Hall"),
        },
        ServerCommand::CreateChannel {
            actor: owner(),
            channel_id: unknown_channel(),
            name: channel_name("new"),
            kind: ChannelKind::Text,
            private: false,
        },
        join(outsider(), welcome(), hours_later(3)),
        ServerCommand::LeaveServer { user: member() },
        ServerCommand::TransferOwnership {
            actor: owner(),
            new_owner: admin(),
        },
        ServerCommand::UnarchiveChannel {
            actor: owner(),
            channel_id: archive_room(),
        },
    ];
    for command in commands {
        framework()
            .given(events.clone())
            .when(command)
            .then_expect_error(ServerError::UnknownServer);
    }
}

#[test]
fn the_channels_of_a_deleted_server_are_unknown_to_its_former_members() {
    let mut server = Server::default();
    for event in with_channels() {
        cqrs_es::Aggregate::apply(&mut server, event);
    }
    assert!(server.channel_access(general(), member()).can_view());
    cqrs_es::Aggregate::apply(&mut server, deleted());
    assert_eq!(
        server.channel_access(general(), owner()),
        aether_domain::ChannelAccess::UnknownChannel
    );
}

// --- TransferOwnership ----------------------------------------------------------------------

fn transfer(actor: UserId, new_owner: UserId) -> ServerCommand {
    ServerCommand::TransferOwnership { actor, new_owner }
}

fn transferred_to_admin() -> ServerEvent {
    ServerEvent::OwnershipTransferred {
        previous_owner_id: owner(),
        new_owner_id: admin(),
        previous_role: Role::Admin,
    }
}

#[test]
fn the_owner_can_hand_the_server_to_a_member() {
    framework()
        .given(staffed())
        .when(transfer(owner(), member()))
        .then_expect_events(vec![ServerEvent::OwnershipTransferred {
            previous_owner_id: owner(),
            new_owner_id: member(),
            previous_role: Role::Member,
        }]);
}

#[test]
fn after_a_transfer_the_new_owner_owns_and_the_old_one_is_an_admin() {
    let mut events = staffed();
    events.push(transferred_to_admin());
    // The new owner may delete; the old one, now an ADMIN, may not, and cannot transfer back.
    framework()
        .given(events.clone())
        .when(delete(admin()))
        .then_expect_events(vec![ServerEvent::ServerDeleted {
            deleted_by: admin(),
            deleted_at: hours_later(2),
            member_ids: vec![owner(), admin(), moderator(), member(), guest()],
        }]);
    framework()
        .given(events.clone())
        .when(transfer(owner(), admin()))
        .then_expect_error(ServerError::NotPermitted { role: Role::Admin });
    // The old owner can now leave, like any admin.
    framework()
        .given(events)
        .when(ServerCommand::LeaveServer { user: owner() })
        .then_expect_events(vec![ServerEvent::MemberLeft { user_id: owner() }]);
}

#[test]
fn an_admin_cannot_transfer_ownership() {
    framework()
        .given(staffed())
        .when(transfer(admin(), moderator()))
        .then_expect_error(ServerError::NotPermitted { role: Role::Admin });
}

#[test]
fn ownership_cannot_go_to_someone_outside_the_server() {
    framework()
        .given(staffed())
        .when(transfer(owner(), outsider()))
        .then_expect_error(ServerError::NoSuchMember);
}

#[test]
fn the_owner_cannot_transfer_the_server_to_themselves() {
    framework()
        .given(staffed())
        .when(transfer(owner(), owner()))
        .then_expect_error(ServerError::AlreadyTheOwner);
}

// --- SetChannelTopic ------------------------------------------------------------------------

fn topic(value: &str) -> aether_domain::ChannelTopic {
    aether_domain::ChannelTopic::parse(value).expect("a valid topic")
}

fn set_topic(actor: UserId, channel_id: ChannelId, value: Option<&str>) -> ServerCommand {
    ServerCommand::SetChannelTopic {
        actor,
        channel_id,
        topic: value.map(topic),
    }
}

fn topic_changed(value: Option<&str>) -> ServerEvent {
    ServerEvent::ChannelTopicChanged {
        channel_id: general(),
        topic: value.map(topic),
    }
}

#[test]
fn an_admin_can_set_a_channels_topic() {
    framework()
        .given(with_channels())
        .when(set_topic(admin(), general(), Some("Say hello")))
        .then_expect_events(vec![topic_changed(Some("Say hello"))]);
}

#[test]
fn a_topic_can_be_cleared() {
    let mut events = with_channels();
    events.push(topic_changed(Some("Say hello")));
    framework()
        .given(events)
        .when(set_topic(owner(), general(), None))
        .then_expect_events(vec![topic_changed(None)]);
}

#[test]
fn setting_the_topic_it_already_has_records_nothing() {
    let mut events = with_channels();
    events.push(topic_changed(Some("Say hello")));
    framework()
        .given(events)
        .when(set_topic(owner(), general(), Some("Say hello")))
        .then_expect_events(vec![]);
    framework()
        .given(with_channels())
        .when(set_topic(owner(), general(), None))
        .then_expect_events(vec![]);
}

#[test]
fn an_admin_chooses_the_content_policy_and_choosing_it_again_records_nothing() {
    framework()
        .given(staffed())
        .when(ServerCommand::SetContentPolicy {
            actor: admin(),
            policy: ContentPolicy::Block,
        })
        .then_expect_events(vec![ServerEvent::ContentPolicyChanged {
            policy: ContentPolicy::Block,
            changed_by: admin(),
        }]);
    framework()
        .given(staffed())
        .and(vec![ServerEvent::ContentPolicyChanged {
            policy: ContentPolicy::Block,
            changed_by: admin(),
        }])
        .when(ServerCommand::SetContentPolicy {
            actor: owner(),
            policy: ContentPolicy::Block,
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_moderator_cannot_set_a_topic() {
    framework()
        .given(with_channels())
        .when(set_topic(moderator(), general(), Some("Say hello")))
        .then_expect_error(ServerError::NotPermitted {
            role: Role::Moderator,
        });
}

#[test]
fn a_server_that_never_chose_allows_and_moderators_cannot_change_it() {
    assert_eq!(Server::default().content_policy, ContentPolicy::Allow);
    framework()
        .given(staffed())
        .when(ServerCommand::SetContentPolicy {
            actor: moderator(),
            policy: ContentPolicy::Mask,
        })
        .then_expect_error(ServerError::NotPermitted {
            role: Role::Moderator,
        });
}

#[test]
fn an_archived_or_unknown_channel_has_no_topic_to_set() {
    framework()
        .given(with_channels())
        .when(set_topic(owner(), archive_room(), Some("Old")))
        .then_expect_error(ServerError::ChannelArchived);
    framework()
        .given(with_channels())
        .when(set_topic(owner(), unknown_channel(), Some("Old")))
        .then_expect_error(ServerError::UnknownChannel);
}

#[test]
fn a_topic_is_bounded_and_free_of_control_characters() {
    let at_limit = "t".repeat(aether_domain::values::TOPIC_MAX_CHARS);
    assert!(aether_domain::ChannelTopic::parse(&at_limit).is_ok());
    assert!(aether_domain::ChannelTopic::parse(&format!("{at_limit}t")).is_err());
    assert!(aether_domain::ChannelTopic::parse("line one\nline two").is_ok());
    assert!(aether_domain::ChannelTopic::parse("bell\u{7}").is_err());
    assert!(aether_domain::ChannelTopic::parse("   ").is_err());
}

// --- MoveChannel ----------------------------------------------------------------------------

fn third() -> ChannelId {
    ChannelId::from_uuid(Uuid::from_u128(0xc3))
}

fn category(value: &str) -> aether_domain::ChannelCategory {
    aether_domain::ChannelCategory::parse(value).expect("a valid category")
}

/// `with_channels()` plus a live `third` channel: general, archive-room, third.
fn three_channels() -> Vec<ServerEvent> {
    let mut events = with_channels();
    events.push(channel_created(third(), "third"));
    events
}

fn move_channel(
    actor: UserId,
    channel_id: ChannelId,
    to: Option<&str>,
    position: u32,
) -> ServerCommand {
    ServerCommand::MoveChannel {
        actor,
        channel_id,
        category: to.map(category),
        position,
    }
}

#[test]
fn an_admin_can_move_a_channel_to_the_top_under_a_category() {
    framework()
        .given(three_channels())
        .when(move_channel(admin(), third(), Some("Text"), 0))
        .then_expect_events(vec![ServerEvent::ChannelMoved {
            channel_id: third(),
            category: Some(category("Text")),
            order: vec![third(), general(), archive_room()],
        }]);
}

#[test]
fn a_moved_channel_keeps_its_place_when_later_ones_are_created() {
    let mut events = three_channels();
    events.push(ServerEvent::ChannelMoved {
        channel_id: general(),
        category: None,
        order: vec![archive_room(), third(), general()],
    });
    events.push(channel_created(unknown_channel(), "fourth"));
    framework()
        .given(events)
        .when(move_channel(owner(), third(), None, 0))
        .then_expect_events(vec![ServerEvent::ChannelMoved {
            channel_id: third(),
            category: None,
            order: vec![third(), archive_room(), general(), unknown_channel()],
        }]);
}

#[test]
fn moving_a_channel_to_where_it_is_records_nothing() {
    framework()
        .given(three_channels())
        .when(move_channel(owner(), general(), None, 0))
        .then_expect_events(vec![]);
}

#[test]
fn changing_only_the_category_is_a_move() {
    framework()
        .given(three_channels())
        .when(move_channel(owner(), general(), Some("Lobby"), 0))
        .then_expect_events(vec![ServerEvent::ChannelMoved {
            channel_id: general(),
            category: Some(category("Lobby")),
            order: vec![general(), archive_room(), third()],
        }]);
}

#[test]
fn a_position_past_the_last_channel_is_refused() {
    framework()
        .given(three_channels())
        .when(move_channel(owner(), general(), None, 3))
        .then_expect_error(ServerError::PositionOutOfRange { channels: 3 });
    framework()
        .given(three_channels())
        .when(move_channel(owner(), general(), None, u32::MAX))
        .then_expect_error_message("position must be between 0 and 2 (the server has 3 channels)");
}

#[test]
fn a_moderator_cannot_move_a_channel() {
    framework()
        .given(three_channels())
        .when(move_channel(moderator(), third(), None, 0))
        .then_expect_error(ServerError::NotPermitted {
            role: Role::Moderator,
        });
}

#[test]
fn an_admin_chooses_the_moderation_threshold_and_moderators_cannot() {
    let strict = ModerationThreshold::parse(0.3).expect("a valid threshold");
    assert_eq!(Server::default().threshold(), ModerationThreshold::DEFAULT);
    framework()
        .given(staffed())
        .when(ServerCommand::SetModerationThreshold {
            actor: admin(),
            threshold: strict,
        })
        .then_expect_events(vec![ServerEvent::ModerationThresholdChanged {
            threshold: strict,
            changed_by: admin(),
        }]);
    framework()
        .given(staffed())
        .when(ServerCommand::SetModerationThreshold {
            actor: owner(),
            threshold: ModerationThreshold::DEFAULT,
        })
        .then_expect_events(vec![]);
    framework()
        .given(staffed())
        .when(ServerCommand::SetModerationThreshold {
            actor: moderator(),
            threshold: strict,
        })
        .then_expect_error(ServerError::NotPermitted {
            role: Role::Moderator,
        });
}

#[test]
fn an_archived_channel_cannot_be_moved() {
    framework()
        .given(three_channels())
        .when(move_channel(owner(), archive_room(), None, 0))
        .then_expect_error(ServerError::ChannelArchived);
}

// --- UnarchiveChannel -----------------------------------------------------------------------

fn unarchive(actor: UserId, channel_id: ChannelId) -> ServerCommand {
    ServerCommand::UnarchiveChannel { actor, channel_id }
}

#[test]
fn an_admin_can_unarchive_a_channel_and_members_may_post_again() {
    framework()
        .given(with_channels())
        .when(unarchive(admin(), archive_room()))
        .then_expect_events(vec![ServerEvent::ChannelUnarchived {
            channel_id: archive_room(),
        }]);
    let mut server = Server::default();
    let mut events = with_channels();
    events.push(ServerEvent::ChannelUnarchived {
        channel_id: archive_room(),
    });
    for event in events {
        cqrs_es::Aggregate::apply(&mut server, event);
    }
    assert!(server.channel_access(archive_room(), member()).can_post());
}

#[test]
fn unarchiving_a_live_channel_records_nothing() {
    framework()
        .given(with_channels())
        .when(unarchive(owner(), general()))
        .then_expect_events(vec![]);
}

#[test]
fn a_moderator_cannot_unarchive_a_channel() {
    framework()
        .given(with_channels())
        .when(unarchive(moderator(), archive_room()))
        .then_expect_error(ServerError::NotPermitted {
            role: Role::Moderator,
        });
}

#[test]
fn an_unknown_channel_cannot_be_unarchived() {
    framework()
        .given(with_channels())
        .when(unarchive(owner(), unknown_channel()))
        .then_expect_error(ServerError::UnknownChannel);
}
