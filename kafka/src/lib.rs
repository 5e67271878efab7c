//! Kafka plumbing shared by the relay, projectors and the log tools: client settings, the topic
//! catalogue on the broker, an idempotent producer, and reading a topic back.

pub mod admin;
pub mod backoff;
pub mod read;
pub mod trace;

use std::time::Duration;

use rdkafka::ClientConfig;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("kafka: {0}")]
    Other(String),
}

/// How to reach the broker and how topics are laid out.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`
    pub bootstrap: String,
    /// Prepended to every topic name; empty in production, unique per test.
    pub topic_prefix: String,
    /// Partitions of each event topic.
    pub partitions: i32,
    pub replication: i32,
    /// Retention of the ephemeral updates topic.
    pub updates_retention: Duration,
    /// Retention of the typing-and-presence topic: signals matter for seconds.
    pub ephemeral_retention: Duration,
    /// How long a produce may take before it is reported failed (and retried by the caller).
    pub delivery_timeout: Duration,
    /// Produce requests the producer keeps unanswered per broker connection, 1 to 5 (the
    /// idempotent producer's de-duplication window). See [`DEFAULT_MAX_IN_FLIGHT`].
    pub max_in_flight: u32,
    /// How long the producer waits for more records before sending a batch (`linger.ms`).
    pub linger: Duration,
    /// How long a follower's fetch may wait for records (`fetch.wait.max.ms`). A broker that
    /// answers as soon as records arrive (Kafka) costs nothing for a longer wait; one that
    /// always waits it out (tansu 0.6) delays each hop by up to this much, and answers each
    /// follower's empty fetches this often.
    pub follow_wait: Duration,
}

/// Followers whose events users wait for (projectors, subscriptions) fetch at most this long.
pub const DEFAULT_FOLLOW_WAIT: Duration = Duration::from_millis(10);

/// One produce request in flight per broker connection. librdkafka 2.12's idempotent producer
/// compares a partition's *messages* in flight with its 5-request window, so while a batch is
/// out and the next one is ready, the broker thread wakes again and again until the broker
/// answers. In the write-path benchmark (2 cores, tansu 0.6) that thread used 0.56–0.58 cores
/// at 5 and 0.02–0.32 at 1, while the broker accepted as many records. A cluster that answers
/// faster may gain from more (`--kafka-max-in-flight`).
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 1;
/// Most produce requests in flight the idempotent producer allows.
pub const MAX_IN_FLIGHT_LIMIT: u32 = 5;
/// Waiting up to 20 ms for a fuller batch: fewer, larger produce requests (end to end at 64
/// clients, same benchmark: 1,500, 1,628 and 1,947 messages/s at 5, 10 and 20 ms).
pub const DEFAULT_LINGER: Duration = Duration::from_millis(20);

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap: "127.0.0.1:9092".to_owned(),
            topic_prefix: String::new(),
            partitions: 6,
            replication: 1,
            updates_retention: Duration::from_secs(24 * 60 * 60),
            ephemeral_retention: Duration::from_secs(60),
            delivery_timeout: Duration::from_secs(30),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            linger: DEFAULT_LINGER,
            follow_wait: DEFAULT_FOLLOW_WAIT,
        }
    }
}

impl KafkaConfig {
    /// The broker-side name of a catalogue topic.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{}", self.topic_prefix, name)
    }

    /// Settings every client shares.
    pub fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("allow.auto.create.topics", "false")
            .set("log_level", "4");
        if let Ok(debug) = std::env::var("AETHER_KAFKA_DEBUG") {
            // librdkafka's own debug contexts, e.g. `fetch,msg`: for diagnosing a broker.
            config.set("debug", debug).set("log_level", "7");
        }
        config
    }

    /// A consumer that reads what it is assigned and commits nothing (its progress lives beside
    /// its output), tuned to follow topics live: the broker answers a fetch with what is there
    /// now instead of holding it open for more bytes, so an event reaches a reader in
    /// milliseconds rather than after the default 500 ms fetch wait.
    pub fn follower(&self, group: &str) -> ClientConfig {
        let mut config = self.client();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set(
                "fetch.wait.max.ms",
                self.follow_wait.as_millis().clamp(1, 10_000).to_string(),
            );
        config
    }

    /// An idempotent producer: `acks=all`, retries without duplicates, order kept per partition.
    pub fn producer(&self) -> Result<rdkafka::producer::FutureProducer, KafkaError> {
        Ok(self
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", self.linger.as_millis().to_string())
            .set(
                "max.in.flight.requests.per.connection",
                self.max_in_flight.clamp(1, MAX_IN_FLIGHT_LIMIT).to_string(),
            )
            // Record batches of at most 64 KiB: every consumer's fetch can hold a whole batch
            // (a Kafka-compatible broker used in tests, tansu 0.6, stops answering fetches when a
            // stored batch is larger than the fetch allows).
            .set("batch.size", "65536")
            .set("compression.type", "none")
            .set(
                "message.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
            )
            .create()?)
    }
}
