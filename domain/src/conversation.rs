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
use crate::values::ConversationName;
use crate::EVENT_VERSION_1;

/// The most people one conversation holds, its opener included.
pub const MAX_PARTICIPANTS: usize = 50;

/// How many groups of exactly the same people can be told apart: when the group these people
/// opened has since changed hands (someone added, removed or gone), opening a group with them
/// again starts the next one, up to this many.
pub const GROUP_GENERATIONS: u32 = 16;

/// The namespace of conversation ids (UUIDv5 of the sorted participant ids).
const CONVERSATION_NAMESPACE: Uuid = Uuid::from_u128(0x2b8e_61c4_0f37_4d9a_b5e2_93a7_1c6d_40f8);

/// The id of the conversation between exactly these people, in any order, duplicates ignored.
pub fn conversation_id(participants: &BTreeSet<UserId>) -> ChannelId {
    group_conversation_id(participants, 0)
}

/// The id of the `generation`th group these people opened (the first is
/// [`conversation_id`]'s). A group's people change after it opens, so the same people may
/// open another one later; each has its own id, and opening twice at once still finds one.
pub fn group_conversation_id(participants: &BTreeSet<UserId>, generation: u32) -> ChannelId {
    let mut key = participants
        .iter()
        .map(UserId::to_string)
        .collect::<Vec<_>>()
        .join(",");
    if generation > 0 {
        key.push_str(&format!("#{generation}"));
    }
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
        /// Which group of these people it is (0 for a one-to-one conversation).
        generation: u32,
        at: DateTime<Utc>,
    },
    /// A participant adds people to a group. The caller has checked they are registered;
    /// people already in it are left as they are.
    AddParticipants {
        added_by: UserId,
        user_ids: BTreeSet<UserId>,
        at: DateTime<Utc>,
    },
    /// The group's owner removes someone, or someone leaves (`removed_by == user_id`).
    RemoveParticipant {
        removed_by: UserId,
        user_id: UserId,
        at: DateTime<Utc>,
    },
    /// A participant names the group, or clears its name (`None`).
    RenameConversation {
        renamed_by: UserId,
        name: Option<ConversationName>,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "json-schema", derive(schemars::JsonSchema))]
pub enum ConversationEvent {
    /// A direct conversation began. `participant_ids` are everyone in it, the opener included,
    /// sorted. A one-to-one conversation's never change; a group's (three or more people) change
    /// with the events below.
    ConversationOpened {
        conversation_id: ChannelId,
        opened_by: UserId,
        participant_ids: Vec<UserId>,
        opened_at: DateTime<Utc>,
    },
    /// People joined a group: `user_ids` the new ones, `participant_ids` everyone in it after,
    /// sorted.
    ParticipantsAdded {
        conversation_id: ChannelId,
        added_by: UserId,
        user_ids: Vec<UserId>,
        participant_ids: Vec<UserId>,
        added_at: DateTime<Utc>,
    },
    /// Someone is no longer in a group: removed by its owner, or gone by themselves
    /// (`removed_by == user_id`). `participant_ids` is everyone left, sorted; `owner_id` the
    /// owner after (the longest-standing participant takes over from an owner who leaves;
    /// `None` once nobody is left).
    ParticipantRemoved {
        conversation_id: ChannelId,
        removed_by: UserId,
        user_id: UserId,
        participant_ids: Vec<UserId>,
        owner_id: Option<UserId>,
        removed_at: DateTime<Utc>,
    },
    /// A group was named, or its name cleared (`None`). `participant_ids` is everyone in it.
    ConversationRenamed {
        conversation_id: ChannelId,
        renamed_by: UserId,
        name: Option<ConversationName>,
        participant_ids: Vec<UserId>,
        renamed_at: DateTime<Utc>,
    },
}

impl ConversationCommand {
    /// Who asks.
    pub fn actor(&self) -> UserId {
        match self {
            ConversationCommand::OpenConversation { opened_by, .. } => *opened_by,
            ConversationCommand::AddParticipants { added_by, .. } => *added_by,
            ConversationCommand::RemoveParticipant { removed_by, .. } => *removed_by,
            ConversationCommand::RenameConversation { renamed_by, .. } => *renamed_by,
        }
    }
}

impl DomainEvent for ConversationEvent {
    fn event_type(&self) -> String {
        match self {
            ConversationEvent::ConversationOpened { .. } => "ConversationOpened",
            ConversationEvent::ParticipantsAdded { .. } => "ParticipantsAdded",
            ConversationEvent::ParticipantRemoved { .. } => "ParticipantRemoved",
            ConversationEvent::ConversationRenamed { .. } => "ConversationRenamed",
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
    #[error("conversation not found")]
    NotFound,
    #[error("a one-to-one conversation stays between its two people: open a group instead")]
    NotAGroup,
    #[error("only the group's owner removes others; anyone may leave")]
    NotTheOwner,
    #[error("that person is not in this conversation")]
    NotAParticipant,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: Option<ChannelId>,
    pub opened_by: Option<UserId>,
    /// Sorted; empty until the conversation opens.
    pub participants: Vec<UserId>,
    pub opened_at: Option<DateTime<Utc>>,
    /// Opened with three or more people: its people and name may change.
    pub group: bool,
    /// Who removes others from a group: its opener, then whoever took over.
    pub owner: Option<UserId>,
    pub name: Option<ConversationName>,
    /// The participants in the order they joined (the opener first): who takes over from an
    /// owner who leaves.
    joined: Vec<UserId>,
}

impl Conversation {
    /// What `user` may do in the conversation.
    pub fn access(&self, user: UserId) -> ChannelAccess {
        if self.id.is_none() {
            return ChannelAccess::UnknownChannel;
        }
        ChannelAccess::Conversation {
            participant: self.is_participant(user),
        }
    }

    pub fn is_participant(&self, user: UserId) -> bool {
        self.participants.binary_search(&user).is_ok()
    }

    fn decide(
        &self,
        command: ConversationCommand,
    ) -> Result<Vec<ConversationEvent>, ConversationError> {
        let ConversationCommand::OpenConversation {
            conversation_id: id,
            opened_by,
            mut others,
            generation,
            at,
        } = command
        else {
            return self.change(command);
        };
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
        // Only groups have generations: two people have one conversation, forever.
        let generation = if others.len() > 2 { generation } else { 0 };
        if group_conversation_id(&others, generation) != id {
            return Err(ConversationError::WrongId);
        }
        Ok(vec![ConversationEvent::ConversationOpened {
            conversation_id: id,
            opened_by,
            participant_ids: others.into_iter().collect(),
            opened_at: at,
        }])
    }

    /// A change to an open group, asked by one of its participants.
    fn change(
        &self,
        command: ConversationCommand,
    ) -> Result<Vec<ConversationEvent>, ConversationError> {
        let Some(conversation_id) = self.id else {
            return Err(ConversationError::NotFound);
        };
        // Outsiders learn nothing, not even that it exists.
        if !self.is_participant(command.actor()) {
            return Err(ConversationError::NotFound);
        }
        if !self.group {
            return Err(ConversationError::NotAGroup);
        }
        let event = match command {
            ConversationCommand::OpenConversation { .. } => {
                return Err(ConversationError::AlreadyOpen)
            }
            ConversationCommand::AddParticipants {
                added_by,
                user_ids,
                at,
            } => {
                let mut everyone: BTreeSet<UserId> = self.participants.iter().copied().collect();
                let new: Vec<UserId> = user_ids
                    .into_iter()
                    .filter(|user| everyone.insert(*user))
                    .collect();
                if new.is_empty() {
                    return Ok(Vec::new());
                }
                if everyone.len() > MAX_PARTICIPANTS {
                    return Err(ConversationError::TooManyParticipants);
                }
                ConversationEvent::ParticipantsAdded {
                    conversation_id,
                    added_by,
                    user_ids: new,
                    participant_ids: everyone.into_iter().collect(),
                    added_at: at,
                }
            }
            ConversationCommand::RemoveParticipant {
                removed_by,
                user_id,
                at,
            } => {
                if removed_by != user_id && self.owner != Some(removed_by) {
                    return Err(ConversationError::NotTheOwner);
                }
                if !self.is_participant(user_id) {
                    return Err(ConversationError::NotAParticipant);
                }
                let participant_ids: Vec<UserId> = self
                    .participants
                    .iter()
                    .copied()
                    .filter(|user| *user != user_id)
                    .collect();
                let owner_id = if self.owner == Some(user_id) {
                    self.joined.iter().copied().find(|user| *user != user_id)
                } else {
                    self.owner
                };
                ConversationEvent::ParticipantRemoved {
                    conversation_id,
                    removed_by,
                    user_id,
                    participant_ids,
                    owner_id,
                    removed_at: at,
                }
            }
            ConversationCommand::RenameConversation {
                renamed_by,
                name,
                at,
            } => {
                if name == self.name {
                    return Ok(Vec::new());
                }
                ConversationEvent::ConversationRenamed {
                    conversation_id,
                    renamed_by,
                    name,
                    participant_ids: self.participants.clone(),
                    renamed_at: at,
                }
            }
        };
        Ok(vec![event])
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
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
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
                self.group = participant_ids.len() > 2;
                self.owner = Some(opened_by);
                self.joined = std::iter::once(opened_by)
                    .chain(participant_ids.iter().copied().filter(|u| *u != opened_by))
                    .collect();
                self.participants = participant_ids;
                self.opened_at = Some(opened_at);
            }
            ConversationEvent::ParticipantsAdded {
                user_ids,
                mut participant_ids,
                ..
            } => {
                participant_ids.sort();
                self.joined.extend(user_ids);
                self.participants = participant_ids;
            }
            ConversationEvent::ParticipantRemoved {
                user_id,
                mut participant_ids,
                owner_id,
                ..
            } => {
                participant_ids.sort();
                self.joined.retain(|user| *user != user_id);
                self.participants = participant_ids;
                self.owner = owner_id;
            }
            ConversationEvent::ConversationRenamed { name, .. } => self.name = name,
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
            generation: 0,
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
        if let ConversationCommand::OpenConversation {
            conversation_id: id,
            ..
        } = &mut command
        {
            *id = conversation_id(&people(&[1, 3]));
        }
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

    fn add(by: u128, users: &[u128]) -> ConversationCommand {
        ConversationCommand::AddParticipants {
            added_by: user(by),
            user_ids: people(users),
            at: at(),
        }
    }

    fn remove(by: u128, who: u128) -> ConversationCommand {
        ConversationCommand::RemoveParticipant {
            removed_by: user(by),
            user_id: user(who),
            at: at(),
        }
    }

    fn removed(by: u128, who: u128, left: &[u128], owner: Option<u128>) -> ConversationEvent {
        ConversationEvent::ParticipantRemoved {
            conversation_id: conversation_id(&people(&[1, 2, 3])),
            removed_by: user(by),
            user_id: user(who),
            participant_ids: left.iter().copied().map(user).collect(),
            owner_id: owner.map(user),
            removed_at: at(),
        }
    }

    fn rename(by: u128, name: Option<&str>) -> ConversationCommand {
        ConversationCommand::RenameConversation {
            renamed_by: user(by),
            name: name.map(|n| ConversationName::parse(n).expect("a valid name")),
            at: at(),
        }
    }

    #[test]
    fn a_participant_adds_people_to_a_group_and_those_already_in_are_left_alone() {
        TestFramework::<Conversation>::with(())
            .given(vec![opened(1, &[1, 2, 3])])
            .when(add(2, &[3, 5, 4]))
            .then_expect_events(vec![ConversationEvent::ParticipantsAdded {
                conversation_id: conversation_id(&people(&[1, 2, 3])),
                added_by: user(2),
                user_ids: vec![user(4), user(5)],
                participant_ids: [1, 2, 3, 4, 5].into_iter().map(user).collect(),
                added_at: at(),
            }]);
        TestFramework::<Conversation>::with(())
            .given(vec![opened(1, &[1, 2, 3])])
            .when(add(2, &[1, 3]))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_one_to_one_conversation_stays_between_its_two_people() {
        for command in [
            add(1, &[3]),
            remove(1, 2),
            remove(1, 1),
            rename(1, Some("us")),
        ] {
            TestFramework::<Conversation>::with(())
                .given(vec![opened(1, &[1, 2])])
                .when(command)
                .then_expect_error(ConversationError::NotAGroup);
        }
    }

    #[test]
    fn outsiders_change_nothing_and_learn_nothing() {
        for command in [add(9, &[4]), remove(9, 2), rename(9, Some("ours"))] {
            TestFramework::<Conversation>::with(())
                .given(vec![opened(1, &[1, 2, 3])])
                .when(command)
                .then_expect_error(ConversationError::NotFound);
        }
        TestFramework::<Conversation>::with(())
            .given_no_previous_events()
            .when(add(1, &[2]))
            .then_expect_error(ConversationError::NotFound);
    }

    #[test]
    fn a_group_holds_at_most_the_limit() {
        let everyone: Vec<u128> = (1..=MAX_PARTICIPANTS as u128).collect();
        TestFramework::<Conversation>::with(())
            .given(vec![opened(1, &everyone)])
            .when(add(1, &[MAX_PARTICIPANTS as u128 + 1]))
            .then_expect_error(ConversationError::TooManyParticipants);
    }

    #[test]
    fn only_the_owner_removes_others_and_anyone_may_leave() {
        TestFramework::<Conversation>::with(())
            .given(vec![opened(1, &[1, 2, 3])])
            .when(remove(2, 3))
            .then_expect_error(ConversationError::NotTheOwner);
        TestFramework::<Conversation>::with(())
            .given(vec![opened(1, &[1, 2, 3])])
            .when(remove(1, 3))
            .then_expect_events(vec![removed(1, 3, &[1, 2], Some(1))]);
        TestFramework::<Conversation>::with(())
            .given(vec![opened(1, &[1, 2, 3])])
            .when(remove(2, 2))
            .then_expect_events(vec![removed(2, 2, &[1, 3], Some(1))]);
        TestFramework::<Conversation>::with(())
            .given(vec![opened(1, &[1, 2, 3]), removed(1, 3, &[1, 2], Some(1))])
            .when(remove(1, 3))
            .then_expect_error(ConversationError::NotAParticipant);
    }

    #[test]
    fn the_longest_standing_participant_takes_over_from_an_owner_who_leaves() {
        let added_4 = ConversationEvent::ParticipantsAdded {
            conversation_id: conversation_id(&people(&[1, 2, 3])),
            added_by: user(1),
            user_ids: vec![user(4)],
            participant_ids: [1, 2, 3, 4].into_iter().map(user).collect(),
            added_at: at(),
        };
        // 3 opened it, then 1, 2 were in it from the start, and 4 came later.
        let opened_by_3 = opened(3, &[1, 2, 3]);
        let mut conversation = Conversation::default();
        conversation.apply(opened_by_3.clone());
        conversation.apply(added_4.clone());
        TestFramework::<Conversation>::with(())
            .given(vec![opened_by_3, added_4])
            .when(remove(3, 3))
            .then_expect_events(vec![ConversationEvent::ParticipantRemoved {
                conversation_id: conversation_id(&people(&[1, 2, 3])),
                removed_by: user(3),
                user_id: user(3),
                participant_ids: [1, 2, 4].into_iter().map(user).collect(),
                owner_id: Some(user(1)),
                removed_at: at(),
            }]);
        assert!(!conversation.access(user(5)).can_view());
        assert!(conversation.access(user(4)).can_post());
    }

    #[test]
    fn a_participant_names_a_group_and_renaming_to_the_same_name_changes_nothing() {
        let named = ConversationEvent::ConversationRenamed {
            conversation_id: conversation_id(&people(&[1, 2, 3])),
            renamed_by: user(2),
            name: Some(ConversationName::parse("Trip").expect("a valid name")),
            participant_ids: [1, 2, 3].into_iter().map(user).collect(),
            renamed_at: at(),
        };
        TestFramework::<Conversation>::with(())
            .given(vec![opened(1, &[1, 2, 3])])
            .when(rename(2, Some("Trip")))
            .then_expect_events(vec![named.clone()]);
        TestFramework::<Conversation>::with(())
            .given(vec![opened(1, &[1, 2, 3]), named])
            .when(rename(3, Some("Trip")))
            .then_expect_events(vec![]);
    }

    #[test]
    fn each_generation_of_a_group_has_its_own_id_but_two_people_have_one() {
        let group = people(&[1, 2, 3]);
        assert_eq!(group_conversation_id(&group, 0), conversation_id(&group));
        assert_ne!(group_conversation_id(&group, 1), conversation_id(&group));
        let mut second = open(1, &[2, 3]);
        if let ConversationCommand::OpenConversation {
            conversation_id: id,
            generation,
            ..
        } = &mut second
        {
            *id = group_conversation_id(&group, 1);
            *generation = 1;
        }
        TestFramework::<Conversation>::with(())
            .given_no_previous_events()
            .when(second)
            .then_expect_events(vec![ConversationEvent::ConversationOpened {
                conversation_id: group_conversation_id(&group, 1),
                opened_by: user(1),
                participant_ids: [1, 2, 3].into_iter().map(user).collect(),
                opened_at: at(),
            }]);
        let mut pair = open(1, &[2]);
        if let ConversationCommand::OpenConversation {
            conversation_id: id,
            generation,
            ..
        } = &mut pair
        {
            *id = group_conversation_id(&people(&[1, 2]), 1);
            *generation = 1;
        }
        TestFramework::<Conversation>::with(())
            .given_no_previous_events()
            .when(pair)
            .then_expect_error(ConversationError::WrongId);
    }
}
