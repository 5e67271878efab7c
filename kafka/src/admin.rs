//! `aether kafka init`: creates the topic catalogue, idempotently. The broker never creates
//! topics on its own.

use aether_schemas::topics;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaConfig, KafkaError};

/// What `init` did to one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicOutcome {
    Created,
    AlreadyExisted,
}

/// How long event topics keep messages: 100 years, in milliseconds. Effectively forever; the
/// conventional `-1` is not used because a Kafka-compatible broker the tests run on (tansu 0.6)
/// takes it as "keep nothing" and empties the topic on restart.
pub const EVENT_RETENTION_MS: &str = "3153600000000";

/// Creates every catalogue topic that does not exist yet. Event topics keep their messages
/// for [`EVENT_RETENTION_MS`]; the updates topic keeps them for `updates_retention`, the
/// typing-and-presence topic for `ephemeral_retention`.
pub async fn init_topics(config: &KafkaConfig) -> Result<Vec<(String, TopicOutcome)>, KafkaError> {
    let admin: AdminClient<DefaultClientContext> = config.client().create()?;
    let updates_retention = config.updates_retention.as_millis().to_string();
    let ephemeral_retention = config.ephemeral_retention.as_millis().to_string();
    let specs: Vec<(String, &str)> = topics::EVENT_TOPICS
        .iter()
        .map(|name| (config.topic(name), EVENT_RETENTION_MS))
        .chain([
            (config.topic(topics::UPDATES), updates_retention.as_str()),
            (
                config.topic(topics::EPHEMERAL),
                ephemeral_retention.as_str(),
            ),
        ])
        .collect();
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|(name, retention)| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication),
            )
            .set("retention.ms", retention)
            .set("cleanup.policy", "delete")
        })
        .collect();
    let results = admin
        .create_topics(new_topics.iter(), &AdminOptions::new())
        .await?;
    let mut outcomes = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(name) => outcomes.push((name, TopicOutcome::Created)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                outcomes.push((name, TopicOutcome::AlreadyExisted));
            }
            Err((name, code)) => {
                return Err(KafkaError::Other(format!("creating {name}: {code}")));
            }
        }
    }
    Ok(outcomes)
}
