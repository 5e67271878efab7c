//! The `Conversation` aggregate: a direct conversation between a fixed set of people, 1:1 or a
//! group, outside any server.
//!
//! A conversation is a channel that belongs to no server: its id is a [`ChannelId`], its
//! messages are `Message` aggregates like a channel's, and the read models number its history
//! the same way. Who may read and post is decided by the participants fixed when it opened, not
//! by roles. The id is derived from the set of participants ([`conversation_id`]), so opening a
//! conversation with the same people again finds the one that exists instead of starting a
//! second one.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{ChannelId, UserId};
use crate::permissions::ChannelAccess;
use crate::EVENT_VERSION_1;

/// The most people one conversation holds, its opener included.
pub const MAX_PARTICIPANTS: usize = 10;

/// The namespace of conversation ids (UUIDv5 of the sorted participant ids).
const CONVERSATION_NAMESPACE: Uuid = Uuid::from_u128(0x2b8e_61c4_0f37_4d9a_b5e2_93a7_1c6d_40f8);

/// The id of the conversation between exactly these people, in any order, duplicates ignored.
pub fn conversation_id(participants: &BTreeSet<UserId>) -> ChannelId {
    let key = participants
        .iter()
        .map(UserId::to_string)
        .collect::<Vec<_>>()
        .join(",");
    ChannelId::from_uuid(Uuid::new_v5(&CONVERSATION_NAMESPACE, key.as_bytes()))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConversationCommand {
    /// Opens the conversation between `opened_by` and `others`. The caller has checked that
    /// every one of them is a registered user.
    OpenConversation {
        conversation_id: ChannelId,
        opened_by: UserId,
        others: BTreeSet<UserId>,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
pub enum ConversationEvent {
    /// A direct conversation began. `participant_ids` are everyone in it, the opener included,
    /// sorted; they never change.
    ConversationOpened {
        conversation_id: ChannelId,
        opened_by: UserId,
        participant_ids: Vec<UserId>,
        opened_at: DateTime<Utc>,
    },
}

impl DomainEvent for ConversationEvent {
    fn event_type(&self) -> String {
        match self {
            ConversationEvent::ConversationOpened { .. } => "ConversationOpened",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION_1.to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversationError {
    #[error("name at least one other person to talk to")]
    NobodyElse,
    #[error("a conversation holds at most {MAX_PARTICIPANTS} people")]
    TooManyParticipants,
    #[error("this conversation is already open")]
    AlreadyOpen,
    #[error("the conversation id does not match its participants")]
    WrongId,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: Option<ChannelId>,
    pub opened_by: Option<UserId>,
    /// Sorted; empty until the conversation opens.
    pub participants: Vec<UserId>,
    pub opened_at: Option<DateTime<Utc>>,
}

impl Conversation {
    /// What `user` may do in the conversation.
    pub fn access(&self, user: UserId) -> ChannelAccess {
        if self.id.is_none() {
            return ChannelAccess::UnknownChannel;
        }
        ChannelAccess::Conversation {
            participant: self.participants.binary_search(&user).is_ok(),
        }
    }

    fn decide(&self, command: ConversationCommand) -> Result<ConversationEvent, ConversationError> {
        let ConversationCommand::OpenConversation {
            conversation_id: id,
            opened_by,
            mut others,
            at,
        } = command;
        if self.id.is_some() {
            return Err(ConversationError::AlreadyOpen);
        }
        others.remove(&opened_by);
        if others.is_empty() {
            return Err(ConversationError::NobodyElse);
        }
        others.insert(opened_by);
        if others.len() > MAX_PARTICIPANTS {
            return Err(ConversationError::TooManyParticipants);
        }
        if conversation_id(&others) != id {
            return Err(ConversationError::WrongId);
        }
        Ok(ConversationEvent::ConversationOpened {
            conversation_id: id,
            opened_by,
            participant_ids: others.into_iter().collect(),
            opened_at: at,
        })
    }
}

impl Aggregate for Conversation {
    const TYPE: &'static str = "Conversation";
    type Command = ConversationCommand;
    type Event = ConversationEvent;
    type Error = ConversationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = self.decide(command)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ConversationEvent::ConversationOpened {
                conversation_id,
                opened_by,
                mut participant_ids,
                opened_at,
            } => {
                participant_ids.sort();
                self.id = Some(conversation_id);
                self.opened_by = Some(opened_by);
                self.participants = participant_ids;
                self.opened_at = Some(opened_at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    fn user(n: u128) -> UserId {
        UserId::from_uuid(Uuid::from_u128(n))
    }

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("a valid timestamp")
    }

    fn people(ids: &[u128]) -> BTreeSet<UserId> {
        ids.iter().copied().map(user).collect()
    }

    fn open(by: u128, others: &[u128]) -> ConversationCommand {
        let mut everyone = people(others);
        everyone.insert(user(by));
        ConversationCommand::OpenConversation {
            conversation_id: conversation_id(&everyone),
            opened_by: user(by),
            others: people(others),
            at: at(),
        }
    }

    fn opened(by: u128, everyone: &[u128]) -> ConversationEvent {
        ConversationEvent::ConversationOpened {
            conversation_id: conversation_id(&people(everyone)),
            opened_by: user(by),
            participant_ids: everyone.iter().copied().map(user).collect(),
            opened_at: at(),
        }
    }

    #[test]
    fn the_same_people_in_any_order_share_one_id() {
        assert_eq!(
            conversation_id(&people(&[3, 1, 2])),
            conversation_id(&people(&[2, 3, 1, 1]))
        );
        assert_ne!(
            conversation_id(&people(&[1, 2])),
            conversation_id(&people(&[1, 2, 3]))
        );
    }

    #[test]
    fn opening_records_everyone_sorted_with_the_opener() {
        TestFramework::<Conversation>::with(())
            .given_no_previous_events()
            .when(open(3, &[2, 1]))
            .then_expect_events(vec![opened(3, &[1, 2, 3])]);
    }

    #[test]
    fn a_conversation_with_only_oneself_is_refused() {
        TestFramework::<Conversation>::with(())
            .given_no_previous_events()
            .when(open(1, &[1]))
            .then_expect_error(ConversationError::NobodyElse);
    }

    #[test]
    fn more_than_the_limit_is_refused() {
        let others: Vec<u128> = (2..=MAX_PARTICIPANTS as u128 + 1).collect();
        TestFramework::<Conversation>::with(())
            .given_no_previous_events()
            .when(open(1, &others))
            .then_expect_error(ConversationError::TooManyParticipants);
    }

    #[test]
    fn an_id_that_names_other_people_is_refused() {
        let mut command = open(1, &[2]);
        let ConversationCommand::OpenConversation {
            conversation_id: id,
            ..
        } = &mut command;
        *id = conversation_id(&people(&[1, 3]));
        TestFramework::<Conversation>::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(ConversationError::WrongId);
    }

    #[test]
    fn opening_twice_is_refused_and_only_participants_get_access() {
        TestFramework::<Conversation>::with(())
            .given(vec![opened(1, &[1, 2])])
            .when(open(2, &[1]))
            .then_expect_error(ConversationError::AlreadyOpen);
        let mut conversation = Conversation::default();
        assert_eq!(conversation.access(user(1)), ChannelAccess::UnknownChannel);
        conversation.apply(opened(1, &[1, 2]));
        assert!(conversation.access(user(2)).can_post());
        assert!(!conversation.access(user(3)).can_view());
        assert!(!conversation.access(user(1)).can_moderate());
    }
}
