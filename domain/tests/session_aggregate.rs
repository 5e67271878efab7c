//! Given/when/then tests for the `Session` aggregate: refresh tokens that rotate, and reuse
//! that ends the whole family.

use aether_domain::session::{
    Session, SessionCommand, SessionEndReason, SessionError, SessionEvent,
};
use aether_domain::UserId;
use chrono::{DateTime, Duration, Utc};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

fn framework() -> TestFramework<Session> {
    TestFramework::with(())
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).expect("a valid timestamp")
}

fn session() -> Uuid {
    Uuid::from_u128(0x5e55)
}

fn user() -> UserId {
    UserId::from_uuid(Uuid::from_u128(1))
}

fn started() -> SessionEvent {
    SessionEvent::SessionStarted {
        session_id: session(),
        user_id: user(),
        started_at: at(),
    }
}

fn refreshed(generation: u32) -> SessionEvent {
    SessionEvent::SessionRefreshed {
        generation,
        refreshed_at: at(),
    }
}

fn refresh(generation: u32) -> SessionCommand {
    SessionCommand::Refresh {
        generation,
        ended_before: None,
        at: at(),
    }
}

#[test]
fn a_session_starts_at_generation_zero() {
    framework()
        .given_no_previous_events()
        .when(SessionCommand::StartSession {
            session_id: session(),
            user_id: user(),
            at: at(),
        })
        .then_expect_events(vec![started()]);
}

#[test]
fn the_current_refresh_token_moves_the_session_to_the_next_generation() {
    framework()
        .given(vec![started(), refreshed(1)])
        .when(refresh(1))
        .then_expect_events(vec![refreshed(2)]);
}

#[test]
fn a_spent_refresh_token_ends_the_whole_session() {
    framework()
        .given(vec![started(), refreshed(1), refreshed(2)])
        .when(refresh(1))
        .then_expect_events(vec![SessionEvent::SessionEnded {
            reason: SessionEndReason::RefreshTokenReused,
            presented_generation: Some(1),
            ended_at: at(),
        }]);
}

#[test]
fn an_ended_session_refreshes_no_more() {
    let ended = SessionEvent::SessionEnded {
        reason: SessionEndReason::RefreshTokenReused,
        presented_generation: Some(0),
        ended_at: at(),
    };
    framework()
        .given(vec![started(), refreshed(1), ended])
        .when(refresh(1))
        .then_expect_error(SessionError::Ended);
}

#[test]
fn signing_out_everywhere_ends_sessions_started_before() {
    framework()
        .given(vec![started()])
        .when(SessionCommand::Refresh {
            generation: 0,
            ended_before: Some(at() + Duration::seconds(1)),
            at: at() + Duration::seconds(2),
        })
        .then_expect_error(SessionError::Ended);
    // A session started after it is not touched.
    framework()
        .given(vec![started()])
        .when(SessionCommand::Refresh {
            generation: 0,
            ended_before: Some(at() - Duration::seconds(1)),
            at: at(),
        })
        .then_expect_events(vec![refreshed(1)]);
}

#[test]
fn signing_out_twice_records_once() {
    let logged_out = SessionEvent::SessionEnded {
        reason: SessionEndReason::LoggedOut,
        presented_generation: None,
        ended_at: at(),
    };
    let end = || SessionCommand::EndSession {
        reason: SessionEndReason::LoggedOut,
        at: at(),
    };
    framework()
        .given(vec![started()])
        .when(end())
        .then_expect_events(vec![logged_out.clone()]);
    framework()
        .given(vec![started(), logged_out])
        .when(end())
        .then_expect_events(vec![]);
}

#[test]
fn an_unknown_session_is_refused() {
    framework()
        .given_no_previous_events()
        .when(refresh(0))
        .then_expect_error(SessionError::UnknownSession);
}
