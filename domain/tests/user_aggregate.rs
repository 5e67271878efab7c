//! Given/when/then tests for the `User` aggregate: every command, every refusal.

use aether_domain::user::{User, UserCommand, UserError, UserEvent};
use aether_domain::{AvatarUrl, DisplayName, StatusText, UserId, Username};
use chrono::{DateTime, Duration, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use uuid::Uuid;

const PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

fn framework() -> TestFramework<User> {
    TestFramework::with(())
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).expect("a valid timestamp")
}

fn later() -> DateTime<Utc> {
    at() + Duration::hours(1)
}

fn alice_id() -> UserId {
    UserId::from_uuid(Uuid::from_u128(0xa11ce))
}

fn username(value: &str) -> Username {
    Username::parse(value).expect("a valid username")
}

fn display_name(value: &str) -> DisplayName {
    DisplayName::parse(value).expect("a valid display name")
}

fn register_alice() -> UserCommand {
    UserCommand::RegisterUser {
        user_id: alice_id(),
        username: username("alice"),
        display_name: display_name("Alice"),
        password_hash: PASSWORD_HASH.to_owned(),
        at: at(),
    }
}

fn alice_registered() -> UserEvent {
    UserEvent::UserRegistered {
        user_id: alice_id(),
        username: username("alice"),
        display_name: display_name("Alice"),
        password_hash: PASSWORD_HASH.to_owned(),
        registered_at: at(),
    }
}

fn change_display_name(name: &str) -> UserCommand {
    UserCommand::ChangeProfile {
        display_name: Some(display_name(name)),
        avatar_url: None,
        status_text: None,
        at: later(),
    }
}

fn display_name_changed(name: &str) -> UserEvent {
    UserEvent::ProfileChanged {
        display_name: display_name(name),
        avatar_url: None,
        status_text: None,
        changed_at: later(),
    }
}

fn avatar(url: &str) -> AvatarUrl {
    AvatarUrl::parse(url).expect("a valid avatar URL")
}

fn status(text: &str) -> StatusText {
    StatusText::parse(text).expect("a valid status")
}

// --- RegisterUser ---------------------------------------------------------------------------

#[test]
fn registering_a_new_account_records_it_with_its_hash_and_time() {
    framework()
        .given_no_previous_events()
        .when(register_alice())
        .then_expect_events(vec![alice_registered()]);
}

#[test]
fn a_username_typed_with_capitals_is_registered_lower_cased() {
    framework()
        .given_no_previous_events()
        .when(UserCommand::RegisterUser {
            user_id: alice_id(),
            username: username("Alice"),
            display_name: display_name("Alice"),
            password_hash: PASSWORD_HASH.to_owned(),
            at: at(),
        })
        .then_expect_events(vec![alice_registered()]);
}

#[test]
fn registering_the_same_account_twice_is_refused() {
    framework()
        .given(vec![alice_registered()])
        .when(register_alice())
        .then_expect_error(UserError::AlreadyRegistered);
}

#[test]
fn registering_over_an_existing_account_with_other_details_is_refused() {
    framework()
        .given(vec![alice_registered()])
        .when(UserCommand::RegisterUser {
            user_id: UserId::from_uuid(Uuid::from_u128(0xb0b)),
            username: username("bob"),
            display_name: display_name("Bob"),
            password_hash: "another-hash".to_owned(),
            at: later(),
        })
        .then_expect_error(UserError::AlreadyRegistered);
}

#[test]
fn a_refused_double_registration_says_the_account_already_exists() {
    framework()
        .given(vec![alice_registered()])
        .when(register_alice())
        .then_expect_error_message("this account already exists");
}

// --- ChangeProfile --------------------------------------------------------------------------

#[test]
fn changing_the_display_name_records_the_new_name() {
    framework()
        .given(vec![alice_registered()])
        .when(change_display_name("Alice Liddell"))
        .then_expect_events(vec![display_name_changed("Alice Liddell")]);
}

#[test]
fn a_picture_and_a_status_are_set_and_kept_until_changed_or_cleared() {
    let with_both = UserEvent::ProfileChanged {
        display_name: display_name("Alice"),
        avatar_url: Some(avatar("https://img.example/alice.png")),
        status_text: Some(status("on holiday")),
        changed_at: later(),
    };
    framework()
        .given(vec![alice_registered()])
        .when(UserCommand::ChangeProfile {
            display_name: None,
            avatar_url: Some(Some(avatar("https://img.example/alice.png"))),
            status_text: Some(Some(status("on holiday"))),
            at: later(),
        })
        .then_expect_events(vec![with_both.clone()]);
    // A new display name keeps the picture and the status.
    framework()
        .given(vec![alice_registered(), with_both.clone()])
        .when(change_display_name("Alice L."))
        .then_expect_events(vec![UserEvent::ProfileChanged {
            display_name: display_name("Alice L."),
            avatar_url: Some(avatar("https://img.example/alice.png")),
            status_text: Some(status("on holiday")),
            changed_at: later(),
        }]);
    // Clearing the status keeps the picture.
    framework()
        .given(vec![alice_registered(), with_both])
        .when(UserCommand::ChangeProfile {
            display_name: None,
            avatar_url: None,
            status_text: Some(None),
            at: later(),
        })
        .then_expect_events(vec![UserEvent::ProfileChanged {
            display_name: display_name("Alice"),
            avatar_url: Some(avatar("https://img.example/alice.png")),
            status_text: None,
            changed_at: later(),
        }]);
}

#[test]
fn avatar_urls_and_statuses_are_validated() {
    for bad in [
        "ftp://img.example/a.png",
        "https://",
        "https:///a.png",
        "https://user:pw@img.example/a.png",
        "https://img.example/a b.png",
        "javascript:alert(1)",
        "",
    ] {
        assert!(AvatarUrl::parse(bad).is_err(), "{bad}");
    }
    assert!(AvatarUrl::parse(&format!("https://img.example/{}", "a".repeat(2048))).is_err());
    assert!(StatusText::parse(&"x".repeat(129)).is_err());
    assert!(StatusText::parse("\u{200b}\u{202e}").is_err());
    assert_eq!(status(" busy ").as_str(), "busy");
}

#[test]
fn changing_the_profile_of_an_unregistered_user_is_refused() {
    framework()
        .given_no_previous_events()
        .when(change_display_name("Alice"))
        .then_expect_error(UserError::UnknownUser);
}

#[test]
fn changing_to_the_same_display_name_records_nothing() {
    framework()
        .given(vec![alice_registered()])
        .when(change_display_name("Alice"))
        .then_expect_events(vec![]);
}

#[test]
fn a_display_name_differing_only_in_case_is_a_real_change() {
    framework()
        .given(vec![alice_registered()])
        .when(change_display_name("ALICE"))
        .then_expect_events(vec![display_name_changed("ALICE")]);
}

#[test]
fn setting_the_latest_display_name_again_records_nothing() {
    framework()
        .given(vec![
            alice_registered(),
            display_name_changed("Wonder Alice"),
        ])
        .when(change_display_name("Wonder Alice"))
        .then_expect_events(vec![]);
}

#[test]
fn going_back_to_an_earlier_display_name_is_a_change() {
    framework()
        .given(vec![
            alice_registered(),
            display_name_changed("Wonder Alice"),
        ])
        .when(change_display_name("Alice"))
        .then_expect_events(vec![display_name_changed("Alice")]);
}

// --- RegisterExternalUser -------------------------------------------------------------------

fn register_external() -> UserCommand {
    UserCommand::RegisterExternalUser {
        user_id: alice_id(),
        username: username("oidc-0123456789abcdef"),
        display_name: display_name("Alice Example"),
        issuer: "https://id.example.com".to_owned(),
        subject: "248289761001".to_owned(),
        at: at(),
    }
}

#[test]
fn an_external_account_has_no_password_and_names_its_issuer_and_subject() {
    framework()
        .given_no_previous_events()
        .when(register_external())
        .then_expect_events(vec![
            UserEvent::UserRegistered {
                user_id: alice_id(),
                username: username("oidc-0123456789abcdef"),
                display_name: display_name("Alice Example"),
                password_hash: String::new(),
                registered_at: at(),
            },
            UserEvent::ExternalIdentityLinked {
                issuer: "https://id.example.com".to_owned(),
                subject: "248289761001".to_owned(),
                linked_at: at(),
            },
        ]);
}

#[test]
fn an_external_account_is_created_once() {
    framework()
        .given(vec![alice_registered()])
        .when(register_external())
        .then_expect_error(UserError::AlreadyRegistered);
}

// --- ChangePassword -------------------------------------------------------------------------

const NEW_PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA";

fn change_password() -> UserCommand {
    UserCommand::ChangePassword {
        password_hash: NEW_PASSWORD_HASH.to_owned(),
        at: later(),
    }
}

#[test]
fn changing_the_password_records_the_new_hash_and_ends_every_session() {
    framework()
        .given(vec![alice_registered()])
        .when(change_password())
        .then_expect_events(vec![
            UserEvent::PasswordChanged {
                password_hash: NEW_PASSWORD_HASH.to_owned(),
                changed_at: later(),
            },
            UserEvent::AllSessionsEnded { ended_at: later() },
        ]);
}

#[test]
fn the_changed_password_is_the_one_the_account_keeps() {
    let mut user = User::default();
    user.apply(alice_registered());
    user.apply(UserEvent::PasswordChanged {
        password_hash: NEW_PASSWORD_HASH.to_owned(),
        changed_at: later(),
    });
    assert_eq!(user.password_hash.as_deref(), Some(NEW_PASSWORD_HASH));
}

#[test]
fn an_account_of_an_external_provider_has_no_password_to_change() {
    framework()
        .given(vec![UserEvent::UserRegistered {
            user_id: alice_id(),
            username: username("oidc-0123456789abcdef"),
            display_name: display_name("Alice Example"),
            password_hash: String::new(),
            registered_at: at(),
        }])
        .when(change_password())
        .then_expect_error(UserError::NoPassword);
}

#[test]
fn nobody_changes_the_password_of_an_account_that_does_not_exist() {
    framework()
        .given_no_previous_events()
        .when(change_password())
        .then_expect_error(UserError::UnknownUser);
}

fn bob_id() -> UserId {
    UserId::from_uuid(Uuid::from_u128(0xb0b))
}

fn block(user: UserId) -> UserCommand {
    UserCommand::BlockUser { user, at: later() }
}

fn blocked(user: UserId) -> UserEvent {
    UserEvent::UserBlocked {
        blocked: user,
        blocked_at: later(),
    }
}

#[test]
fn blocking_someone_records_it_once() {
    framework()
        .given(vec![alice_registered()])
        .when(block(bob_id()))
        .then_expect_events(vec![blocked(bob_id())]);
    framework()
        .given(vec![alice_registered(), blocked(bob_id())])
        .when(block(bob_id()))
        .then_expect_events(vec![]);
}

#[test]
fn unblocking_records_it_only_for_someone_blocked() {
    let unblocked = UserEvent::UserUnblocked {
        unblocked: bob_id(),
        unblocked_at: later(),
    };
    let unblock = UserCommand::UnblockUser {
        user: bob_id(),
        at: later(),
    };
    framework()
        .given(vec![alice_registered(), blocked(bob_id())])
        .when(unblock.clone())
        .then_expect_events(vec![unblocked.clone()]);
    framework()
        .given(vec![alice_registered(), blocked(bob_id()), unblocked])
        .when(unblock)
        .then_expect_events(vec![]);
}

#[test]
fn nobody_blocks_themselves_and_an_unknown_account_blocks_nobody() {
    framework()
        .given(vec![alice_registered()])
        .when(block(alice_id()))
        .then_expect_error(UserError::BlockingSelf);
    framework()
        .given_no_previous_events()
        .when(block(bob_id()))
        .then_expect_error(UserError::UnknownUser);
}

#[test]
fn the_number_of_people_blocked_is_bounded() {
    use aether_domain::user::MAX_BLOCKED;
    let mut history = vec![alice_registered()];
    history.extend(
        (0..MAX_BLOCKED as u128).map(|n| blocked(UserId::from_uuid(Uuid::from_u128(n + 1)))),
    );
    framework()
        .given(history.clone())
        .when(block(bob_id()))
        .then_expect_error(UserError::TooManyBlocked);
    // Someone already blocked is no change, even at the bound.
    framework()
        .given(history)
        .when(block(UserId::from_uuid(Uuid::from_u128(1))))
        .then_expect_events(vec![]);
}

#[test]
fn the_state_knows_who_is_blocked() {
    let mut alice = User::default();
    alice.apply(alice_registered());
    alice.apply(blocked(bob_id()));
    assert!(alice.blocks(bob_id()));
    alice.apply(UserEvent::UserUnblocked {
        unblocked: bob_id(),
        unblocked_at: later(),
    });
    assert!(!alice.blocks(bob_id()));
}
