//! `aether-analytics`: messages per channel per day, computed from AetherConnect's public event log.
//!
//! An example of an analytics consumer, meant to be copied. It replays the messages topic from
//! offset 0 up to where the log ended when it started, counts the `MessageSent` events per
//! channel and UTC day, prints the counts and exits. It uses only `rdkafka`, `serde`,
//! `serde_json`, `chrono` and `clap`: everything it knows about AetherConnect is the wire format
//! documented in `docs/events.md`.
//!
//! What it relies on (one Kafka message = one event; the value is the JSON envelope):
//!
//! | envelope field | used for |
//! |---|---|
//! | `id` | de-duplication: the same event always has the same id |
//! | `type` | only `MessageSent` is counted; every other type is skipped |
//! | `version` | `MAJOR.MINOR`; only major `1` is understood, others are skipped and reported |
//! | `occurred_at` | RFC 3339 time; its UTC date is the day a message is counted on |
//! | `data.channel_id` | the channel a message was sent in (`MessageSent` v1) |
//!
//! Unknown fields are ignored, as the log's compatibility rules ask of every reader.
//!
//! Counting choice: this counts messages **sent**. A later `MessageDeleted` does not subtract
//! from the day the message was sent on (the message was sent; deletion is a separate fact), and
//! `MessageEdited` does not count as a message.
//!
//! Exit codes: 0 on success, 1 when the broker cannot be read (unreachable, unknown topic, no
//! progress), 2 for bad command-line flags.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, ValueEnum};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

/// The catalogue name of the topic that carries message events (keyed by channel id).
const MESSAGE_EVENTS: &str = "aether.messages.events.v1";

/// The only major version of `MessageSent` this consumer understands.
const KNOWN_MAJOR: &str = "1";

/// How long to wait for the broker's metadata and watermarks.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts the messages sent per channel per UTC day, from AetherConnect's event log.
///
/// Replays the messages topic from the beginning up to its end as of start, then prints the
/// counts and exits. Commits no consumer-group offsets.
#[derive(Debug, Parser)]
#[command(name = "aether-analytics", version)]
struct Args {
    /// Kafka bootstrap servers, `host:port[,host:port…]`.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9092")]
    kafka: String,
    /// The message events topic, without the prefix.
    #[arg(long, default_value = MESSAGE_EVENTS)]
    topic: String,
    /// Prepended to the topic name (deployments that prefix topics; tests do).
    #[arg(long, value_name = "PREFIX", default_value = "")]
    topic_prefix: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Give up when no message has arrived for this many seconds before the end was reached.
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Aligned columns for people: day, channel_id, messages.
    Table,
    /// A JSON array of `{"day", "channel_id", "messages"}` objects, for programs.
    Json,
}

fn main() -> ExitCode {
    // Bad or missing flags: clap prints what is wrong and exits with status 2.
    let args = Args::parse();
    if args.kafka.trim().is_empty() {
        clap::Error::raw(
            clap::error::ErrorKind::InvalidValue,
            "--kafka must name at least one broker, e.g. 127.0.0.1:9092\n",
        )
        .exit();
    }
    let topic = format!("{}{}", args.topic_prefix, args.topic);
    let mut counter = Counter::default();
    if let Err(error) = replay(
        &args.kafka,
        &topic,
        Duration::from_secs(args.idle_timeout),
        |value| counter.observe(value),
    ) {
        eprintln!("aether-analytics: {error}");
        return ExitCode::from(1);
    }
    let rows = counter.rows();
    match args.format {
        Format::Table => print_table(&rows),
        Format::Json => match serde_json::to_string_pretty(&rows) {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("aether-analytics: {error}");
                return ExitCode::from(1);
            }
        },
    }
    eprintln!("aether-analytics: {}", counter.summary(&topic));
    ExitCode::SUCCESS
}

// --- decoding and counting ----------------------------------------------------------------

/// The part of the event envelope this consumer reads. Serde ignores the other fields
/// (`aggregate_type`, `aggregate_id`, `sequence`, `actor`, `correlation_id`, `causation_id`), and
/// unknown ones that later compatible versions may add.
#[derive(Debug, Deserialize)]
struct Envelope {
    /// The event's id, stable across re-deliveries.
    id: String,
    /// The event type, e.g. `MessageSent`.
    #[serde(rename = "type")]
    event_type: String,
    /// `MAJOR.MINOR` of the event type.
    version: String,
    /// When the event happened (RFC 3339, UTC).
    occurred_at: DateTime<Utc>,
    /// The event's own fields; decoded per type, below.
    data: serde_json::Value,
}

/// The fields of `MessageSent` (v1) this consumer needs.
#[derive(Debug, Deserialize)]
struct MessageSent {
    channel_id: String,
}

/// One line of the output.
#[derive(Debug, PartialEq, Eq, Serialize)]
struct Row {
    /// The UTC day, `YYYY-MM-DD`.
    day: NaiveDate,
    channel_id: String,
    messages: u64,
}

#[derive(Debug, Default)]
struct Counter {
    /// Ids of the events already counted.
    ///
    /// The log is at-least-once-safe but not exactly-once: a relay crash between the broker's
    /// acknowledgement and its own bookkeeping, or a consumer restarting from an older
    /// checkpoint, can deliver an event twice. Every event has a stable `id`, so a consumer
    /// de-duplicates on it rather than trusting that each event appears once. (This example
    /// keeps the ids in memory; a long-running consumer keeps them, or its checkpoint, in its
    /// own store.)
    seen: HashSet<String>,
    /// Messages sent per (day, channel); a `BTreeMap` so the output is sorted by day, then
    /// channel.
    counts: BTreeMap<(NaiveDate, String), u64>,
    read: u64,
    duplicates: u64,
    undecodable: u64,
    /// `MessageSent` events of a major version this consumer does not know, per version.
    unknown_versions: HashMap<String, u64>,
}

impl Counter {
    /// Takes one Kafka message value (`None` for a message without a value).
    fn observe(&mut self, value: Option<&[u8]>) {
        self.read += 1;
        let Some(envelope) = value.and_then(|v| serde_json::from_slice::<Envelope>(v).ok()) else {
            // Not an event envelope: skipped and reported, so one bad message does not stop
            // the report.
            self.undecodable += 1;
            return;
        };
        if !self.seen.insert(envelope.id.clone()) {
            self.duplicates += 1;
            return;
        }
        if envelope.event_type != "MessageSent" {
            // MessageEdited, MessageDeleted and any type added later: not counted.
            return;
        }
        if envelope.version.split('.').next() != Some(KNOWN_MAJOR) {
            // A new major version changed `data` incompatibly: do not guess at its fields.
            *self
                .unknown_versions
                .entry(envelope.version.clone())
                .or_default() += 1;
            return;
        }
        let Ok(sent) = serde_json::from_value::<MessageSent>(envelope.data) else {
            self.undecodable += 1;
            return;
        };
        let day = envelope.occurred_at.date_naive();
        *self.counts.entry((day, sent.channel_id)).or_default() += 1;
    }

    /// The counts, sorted by day, then channel.
    fn rows(&self) -> Vec<Row> {
        self.counts
            .iter()
            .map(|((day, channel_id), messages)| Row {
                day: *day,
                channel_id: channel_id.clone(),
                messages: *messages,
            })
            .collect()
    }

    /// What was read, for stderr.
    fn summary(&self, topic: &str) -> String {
        let sent: u64 = self.counts.values().sum();
        let mut line = format!(
            "read {} messages from {topic}: {sent} MessageSent counted, {} duplicates skipped, \
             {} undecodable",
            self.read, self.duplicates, self.undecodable
        );
        if !self.unknown_versions.is_empty() {
            let mut versions: Vec<_> = self.unknown_versions.iter().collect();
            versions.sort();
            line.push_str(&format!(
                "; skipped MessageSent of unknown versions {versions:?}"
            ));
        }
        line
    }
}

fn print_table(rows: &[Row]) {
    let width = rows
        .iter()
        .map(|row| row.channel_id.len())
        .chain(std::iter::once("channel_id".len()))
        .max()
        .unwrap_or_default();
    println!("{:<10}  {:<width$}  {:>8}", "day", "channel_id", "messages");
    for row in rows {
        println!(
            "{:<10}  {:<width$}  {:>8}",
            row.day.to_string(),
            row.channel_id,
            row.messages
        );
    }
    let total: u64 = rows.iter().map(|row| row.messages).sum();
    println!("{:<10}  {:<width$}  {:>8}", "total", "", total);
}

// --- reading the topic --------------------------------------------------------------------

/// Reads every partition of `topic` from its first offset up to its high watermark as of the
/// call, handing each message's value to `visit`. Stops when every partition is read to that
/// end, or fails after `idle_timeout` without a message.
fn replay(
    bootstrap: &str,
    topic: &str,
    idle_timeout: Duration,
    mut visit: impl FnMut(Option<&[u8]>),
) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // A group id is required by the client, but partitions are assigned by hand below, so
        // the consumer never joins the group, and nothing is committed: each run replays from
        // offset 0, whatever ran before.
        .set("group.id", "aether-analytics-example")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("allow.auto.create.topics", "false")
        // Connection trouble shows up as the errors below (rdkafka hands librdkafka's own log
        // to the `log` crate, which this program does not set up).
        .set("log_level", "4")
        .create()
        .map_err(|e| format!("cannot create a Kafka consumer for {bootstrap}: {e}"))?;

    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| format!("cannot read the metadata of {topic} from {bootstrap}: {e}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(format!(
            "the topic {topic} does not exist on {bootstrap} (check --topic and --topic-prefix)"
        ));
    }

    // Where each partition ends now. Messages published after this are left for the next run,
    // so the report is a consistent snapshot and the program always terminates.
    let mut assignment = TopicPartitionList::new();
    let mut ends: Vec<(i32, i64)> = Vec::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
            .map_err(|e| format!("cannot read the offsets of {topic}/{partition}: {e}"))?;
        // Only partitions with something to read are assigned: fetching from an empty one
        // waits for data that may never come.
        if low < high {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(|e| e.to_string())?;
            ends.push((partition, high));
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    consumer
        .assign(&assignment)
        .map_err(|e| format!("cannot assign the partitions of {topic}: {e}"))?;

    let mut last_progress = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Err(error)) => return Err(format!("reading {topic}: {error}")),
            Some(Ok(message)) => {
                last_progress = Instant::now();
                let end = ends
                    .iter()
                    .find(|(partition, _)| *partition == message.partition())
                    .map_or(0, |(_, high)| *high);
                if message.offset() < end {
                    visit(message.payload());
                }
            }
            None => {}
        }
        // Offsets can have gaps (aborted transactions, compaction, control records), so a
        // partition is done when the consumer's position (the next offset it would read) has
        // reached the end, not when the message at offset end - 1 was seen.
        let positions = consumer
            .position()
            .map_err(|e| format!("cannot read the consumer's positions: {e}"))?;
        let finished = ends.iter().all(|(partition, high)| {
            positions
                .find_partition(topic, *partition)
                .is_some_and(|tp| matches!(tp.offset(), Offset::Offset(at) if at >= *high))
        });
        if finished {
            return Ok(());
        }
        if last_progress.elapsed() > idle_timeout {
            return Err(format!(
                "{topic}: no message for {} s before the end of the log was reached \
                 (is the broker up?)",
                idle_timeout.as_secs()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, event_type: &str, version: &str, at: &str, channel: &str) -> Vec<u8> {
        serde_json::json!({
            "id": id,
            "type": event_type,
            "version": version,
            "aggregate_type": "Message",
            "aggregate_id": "m",
            "sequence": 1,
            "occurred_at": at,
            "actor": null,
            "correlation_id": "c",
            "causation_id": "c",
            "data": {"message_id": "m", "channel_id": channel, "body": "hi", "new_field": 1},
            "a_field_from_the_future": true,
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn counts_messages_sent_per_utc_day_and_channel_once_each() {
        let mut counter = Counter::default();
        let sent = event("1", "MessageSent", "1.0", "2026-11-23T23:59:59Z", "b");
        counter.observe(Some(&sent));
        counter.observe(Some(&sent)); // delivered twice
        counter.observe(Some(&event(
            "2",
            "MessageSent",
            "1.1",
            "2026-11-23T22:00:00.5-03:00", // 2026-11-24 in UTC
            "b",
        )));
        counter.observe(Some(&event(
            "3",
            "MessageSent",
            "1.0",
            "2026-11-23T08:00:00Z",
            "a",
        )));
        counter.observe(Some(&event(
            "4",
            "MessageDeleted",
            "1.0",
            "2026-11-23T09:00:00Z",
            "a",
        )));
        counter.observe(Some(&event(
            "5",
            "MessageSent",
            "2.0",
            "2026-11-23T09:00:00Z",
            "a",
        )));
        counter.observe(Some(b"not json"));
        counter.observe(None);

        let day = |d: &str| d.parse::<NaiveDate>().unwrap();
        let row = |d: &str, c: &str, n| Row {
            day: day(d),
            channel_id: c.to_owned(),
            messages: n,
        };
        assert_eq!(
            counter.rows(),
            vec![
                row("2026-11-23", "a", 1),
                row("2026-11-23", "b", 1),
                row("2026-11-24", "b", 1)
            ]
        );
        assert_eq!(counter.duplicates, 1);
        assert_eq!(counter.undecodable, 2);
        assert_eq!(counter.unknown_versions.get("2.0"), Some(&1));
        assert_eq!(
            serde_json::to_value(&counter.rows()[0]).unwrap(),
            serde_json::json!({"day": "2026-11-23", "channel_id": "a", "messages": 1})
        );
    }

    #[test]
    fn decodes_the_documented_golden_example() {
        // The golden example of the log's contract: kept forever, so this must always decode.
        let golden = include_str!("../../../schemas/golden/MessageSent.v1.json");
        let mut counter = Counter::default();
        counter.observe(Some(golden.as_bytes()));
        assert_eq!(
            counter.rows(),
            vec![Row {
                day: "2024-07-01".parse().unwrap(),
                channel_id: "01906d93-7a20-769e-a568-cd8b4659389b".to_owned(),
                messages: 1,
            }]
        );
    }
}
