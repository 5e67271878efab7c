//! What the rebuild benchmark found, and how it is written: a console table, `rebuild.json`
//! and `rebuild.md`.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::chat_log::Mix;
use crate::report::{cpu_cell, Machine, Report};
use crate::stats::{round, CpuUse};

/// The target for a rebuild into PostgreSQL (batched), on 2 cores.
pub const TARGET_PER_S: f64 = 50_000.0;

fn per_s(count: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count / seconds
    } else {
        0.0
    }
}

/// Filling the topics (setup, not a result).
#[derive(Clone, Debug, Default)]
pub struct FillResult {
    pub acked: u64,
    pub failed: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub in_flight: usize,
    pub mix: Mix,
    pub cpu: CpuUse,
}

impl FillResult {
    pub fn per_s(&self) -> f64 {
        per_s(self.acked as f64, self.seconds)
    }
}

/// A `KafkaSource` reading every event from offset 0, nothing stored.
#[derive(Clone, Debug, Default)]
pub struct ConsumeResult {
    pub read: i64,
    pub expected: i64,
    pub malformed: u64,
    pub polls: u64,
    pub seconds: f64,
    pub cpu: CpuUse,
}

impl ConsumeResult {
    pub fn per_s(&self) -> f64 {
        per_s(self.read as f64, self.seconds)
    }

    fn complete(&self) -> bool {
        self.read >= self.expected
    }
}

/// One rebuild: a projection version into its store from offset 0 until caught up.
#[derive(Clone, Debug, Default)]
pub struct RebuildRow {
    /// `audit v1 (PostgreSQL)`.
    pub store: String,
    /// Replayed from memory straight into the store (no broker), not a real rebuild.
    pub from_memory: bool,
    pub batch: usize,
    /// Events the checkpoint passed at the end.
    pub events: i64,
    /// The log end.
    pub expected: i64,
    /// Events that changed the read model (the rest were ignored: not its events).
    pub applied: u64,
    pub parked: u64,
    /// From creating the source to caught up (`prepare` excluded).
    pub seconds: f64,
    /// Store transactions.
    pub batches: u64,
    /// Time inside `ReadStore::apply`, summed.
    pub store_seconds: f64,
    pub caught_up: bool,
    pub error: Option<String>,
    /// What the read model holds afterwards.
    pub check: Option<String>,
    pub cpu: CpuUse,
}

impl RebuildRow {
    pub fn per_s(&self) -> f64 {
        per_s(self.events as f64, self.seconds)
    }

    /// Share of the wall time spent applying batches (the rest: reading the log).
    pub fn store_share(&self) -> f64 {
        per_s(self.store_seconds, self.seconds)
    }

    /// Events per second of store time: the store's own ceiling if reading were free.
    pub fn store_per_s(&self) -> f64 {
        per_s(self.events as f64, self.store_seconds)
    }

    fn is_postgres(&self) -> bool {
        self.store.contains("(PostgreSQL)")
    }

    fn is_audit(&self) -> bool {
        self.store.starts_with("audit ")
    }
}

#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub events: usize,
    pub batches: Vec<usize>,
    pub users: usize,
    pub servers: usize,
    pub channels: usize,
    pub members: usize,
    pub seed: u64,
    pub partitions: i32,
    pub in_flight: usize,
    pub postgres: String,
    pub kafka: String,
    pub mongo: Option<String>,
    pub topic_prefix: String,
}

#[derive(Clone, Debug, Default)]
pub struct RebuildResults {
    pub started_at: DateTime<Utc>,
    pub wall_s: f64,
    pub machine: Machine,
    pub settings: Settings,
    /// `/proc/loadavg` before and after the run.
    pub load_before: String,
    pub load_after: String,
    pub fill: FillResult,
    pub log_end: i64,
    /// First and last raw-consume run.
    pub consume: Vec<ConsumeResult>,
    pub rows: Vec<RebuildRow>,
    pub notes: Vec<String>,
}

impl RebuildResults {
    /// The best complete raw-consume rate: the ceiling of any rebuild from this broker.
    fn raw_per_s(&self) -> f64 {
        self.consume
            .iter()
            .filter(|c| c.complete())
            .map(ConsumeResult::per_s)
            .fold(0.0, f64::max)
    }

    fn ratio(&self, row: &RebuildRow) -> Option<f64> {
        let raw = self.raw_per_s();
        (raw > 0.0 && !row.from_memory).then(|| row.per_s() / raw)
    }

    /// The fastest complete audit rebuild into PostgreSQL (every event becomes a row, batched)
    /// from the broker (the row the target is about), or from memory (the store's ceiling).
    fn best_postgres(&self, from_memory: bool) -> Option<&RebuildRow> {
        self.rows
            .iter()
            .filter(|r| {
                r.is_postgres() && r.is_audit() && r.caught_up && r.from_memory == from_memory
            })
            .max_by(|a, b| a.per_s().total_cmp(&b.per_s()))
    }

    pub fn to_json(&self) -> Value {
        let m = &self.machine;
        let s = &self.settings;
        let consume: Vec<Value> = self
            .consume
            .iter()
            .map(|c| {
                json!({
                    "read": c.read,
                    "expected": c.expected,
                    "malformed": c.malformed,
                    "polls": c.polls,
                    "seconds": round(c.seconds, 3),
                    "events_per_s": round(c.per_s(), 1),
                    "cpu": c.cpu.to_json(),
                })
            })
            .collect();
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "store": r.store,
                    "source": if r.from_memory { "memory" } else { "kafka" },
                    "batch_size": r.batch,
                    "events": r.events,
                    "expected": r.expected,
                    "applied": r.applied,
                    "parked": r.parked,
                    "caught_up": r.caught_up,
                    "error": r.error,
                    "seconds": round(r.seconds, 3),
                    "events_per_s": round(r.per_s(), 1),
                    "ratio_to_raw_consume": self.ratio(r).map(|x| round(x, 3)),
                    "batches": r.batches,
                    "store_seconds": round(r.store_seconds, 3),
                    "store_share": round(r.store_share(), 3),
                    "events_per_store_s": round(r.store_per_s(), 1),
                    "check": r.check,
                    "cpu": r.cpu.to_json(),
                })
            })
            .collect();
        let best = self.best_postgres(false).map_or(0.0, RebuildRow::per_s);
        let ceiling = self.best_postgres(true).map_or(0.0, RebuildRow::per_s);
        let f = &self.fill;
        json!({
            "benchmark": "rebuild",
            "date": self.started_at.to_rfc3339(),
            "wall_s": round(self.wall_s, 1),
            "build_profile": m.build_profile,
            "git_revision": m.git_revision,
            "machine": {
                "nproc": m.nproc,
                "cpu_model": m.cpu_model,
                "memory": m.memory,
                "kernel": m.kernel,
                "loadavg_before": self.load_before,
                "loadavg_after": self.load_after,
                "shared": format!(
                    "PostgreSQL, the broker and the benchmark run on these {} cores; other \
                     engineers' builds may run on them too (see loadavg)", m.nproc),
            },
            "postgres": {
                "version": m.postgres_version,
                "settings": m.postgres_settings.iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect::<serde_json::Map<_, _>>(),
            },
            "broker": m.broker,
            "settings": {
                "events": s.events,
                "batch_sizes": s.batches,
                "users": s.users,
                "servers": s.servers,
                "channels_per_server": s.channels,
                "members_per_server": s.members,
                "seed": s.seed,
                "partitions": s.partitions,
                "produce_in_flight": s.in_flight,
                "postgres": s.postgres,
                "kafka": s.kafka,
                "mongo": s.mongo,
                "topic_prefix": s.topic_prefix,
            },
            "fill": {
                "acked": f.acked,
                "failed": f.failed,
                "first_error": f.first_error,
                "seconds": round(f.seconds, 3),
                "events_per_s": round(f.per_s(), 1),
                "max_in_flight": f.in_flight,
                "mix": {
                    "user_registered": f.mix.users,
                    "server_events": f.mix.server_events,
                    "message_sent": f.mix.sent,
                    "message_edited": f.mix.edited,
                    "message_deleted": f.mix.deleted,
                    "envelope_bytes": f.mix.body_bytes,
                },
                "cpu": f.cpu.to_json(),
            },
            "log_end": self.log_end,
            "raw_consume": consume,
            "raw_consume_best_per_s": round(self.raw_per_s(), 1),
            "rebuilds": rows,
            "notes": self.notes,
            "target": {
                "postgres_events_per_s": TARGET_PER_S,
                "best_postgres_audit_per_s": round(best, 1),
                "met": best >= TARGET_PER_S,
                "fraction_of_target": round(best / TARGET_PER_S, 3),
                "best_postgres_audit_from_memory_per_s": round(ceiling, 1),
                "store_alone_meets_target": ceiling >= TARGET_PER_S,
            },
        })
    }

    pub fn to_markdown(&self) -> String {
        let m = &self.machine;
        let s = &self.settings;
        let f = &self.fill;
        let mut out = String::new();
        let _ = writeln!(out, "# Rebuild benchmark\n");
        let _ = writeln!(
            out,
            "A projection version rebuilt from offset 0 of the event topics by a \
             `StreamProjector` (`stop_when_caught_up`, as `aether projections rebuild` runs it), \
             into a fresh database per run, beside the raw consume rate of the same topics \
             (`KafkaSource`, no store) in the same run.\n"
        );
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(
            out,
            "| date | {} |",
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
        let _ = writeln!(out, "| build profile | {} |", m.build_profile);
        let _ = writeln!(out, "| git revision | {} |", m.git_revision);
        let _ = writeln!(out, "| nproc | {} ({}) |", m.nproc, m.cpu_model);
        let _ = writeln!(out, "| memory | {} |", m.memory);
        let _ = writeln!(
            out,
            "| sharing | PostgreSQL, the broker and the benchmark share these {} cores, and so do \
             other engineers' builds on this machine: load average before `{}`, after `{}` |",
            m.nproc, self.load_before, self.load_after
        );
        let _ = writeln!(out, "| PostgreSQL | {} |", m.postgres_version);
        let settings: Vec<String> = m
            .postgres_settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(out, "| PostgreSQL settings | {} |", settings.join(", "));
        let _ = writeln!(out, "| broker | {} |", m.broker);
        let _ = writeln!(
            out,
            "| history | {} events on {} partitions per topic: {} users, {} servers × {} \
             channels and {} members; {} sent, {} edited, {} deleted messages; {:.0} B per \
             envelope on average |",
            s.events,
            s.partitions,
            f.mix.users,
            s.servers,
            s.channels,
            s.members,
            f.mix.sent,
            f.mix.edited,
            f.mix.deleted,
            per_s(f.mix.body_bytes as f64, s.events as f64)
        );
        let _ = writeln!(out, "| whole run | {:.0} s |\n", self.wall_s);
        for note in &self.notes {
            let _ = writeln!(out, "**Note:** {note}\n");
        }

        let _ = writeln!(out, "## Setup: filling the topics\n");
        let _ = writeln!(
            out,
            "{} events acknowledged ({} failed) in {:.1} s: {:.0} events/s, the relay's producer \
             (idempotent, acks=all), ≤ {} in flight. CPU cores: {}.\n",
            f.acked,
            f.failed,
            f.seconds,
            f.per_s(),
            f.in_flight,
            cpu_cell(&f.cpu)
        );

        let _ = writeln!(out, "## Raw consume and rebuilds\n");
        let _ = writeln!(
            out,
            "| run | batch | events | seconds | events/s | ÷ raw consume | store share of time \
             | events per store-second | CPU cores: bench / postgres / broker / other (busy) | \
             read model afterwards |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|---|");
        for (n, c) in self.consume.iter().enumerate() {
            let which = if n == 0 { "first" } else { "last" };
            let _ = writeln!(
                out,
                "| raw consume ({which}), `KafkaSource`, no store | — | {}{} | {:.1} | {:.0} | — \
                 | — | — | {} | — |",
                c.read,
                if c.complete() {
                    String::new()
                } else {
                    format!(" of {} (time limit)", c.expected)
                },
                c.seconds,
                c.per_s(),
                cpu_cell(&c.cpu)
            );
        }
        for r in &self.rows {
            let events = if r.caught_up {
                r.events.to_string()
            } else {
                format!(
                    "{} of {} ({})",
                    r.events,
                    r.expected,
                    r.error.as_deref().unwrap_or("not caught up")
                )
            };
            let ratio = self
                .ratio(r)
                .map_or_else(|| "—".to_owned(), |x| format!("{x:.2}"));
            let what = if r.from_memory {
                format!("{}, replayed from memory (no broker)", r.store)
            } else {
                format!("{}, rebuilt from the broker", r.store)
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1} | **{:.0}** | {} | {:.0} % | {:.0} | {} | {} |",
                what,
                r.batch,
                events,
                r.seconds,
                r.per_s(),
                ratio,
                100.0 * r.store_share(),
                r.store_per_s(),
                cpu_cell(&r.cpu),
                r.check.as_deref().unwrap_or("—"),
            );
        }
        let _ = writeln!(
            out,
            "\n*store share*: time inside `ReadStore::apply` (one transaction per batch: the \
             sequence guard, the rows, the checkpoint) ÷ wall time; the rest is reading and \
             decoding the log. *events per store-second*: what the store alone would sustain \
             if reading were free. *Replayed from memory*: the events the first raw consume read, \
             applied through `ReadStore::apply` in batches with the checkpoint, exactly as the \
             projector applies them, with no broker in the loop: the store's own ceiling.\n"
        );

        let best_rate = self.best_postgres(false).map_or(0.0, RebuildRow::per_s);
        let ceiling = self.best_postgres(true).map_or(0.0, RebuildRow::per_s);
        let verdict = if best_rate >= TARGET_PER_S {
            "met".to_owned()
        } else {
            format!(
                "not met: {:.0} of {:.0} events/s ({:.0} %)",
                best_rate,
                TARGET_PER_S,
                100.0 * best_rate / TARGET_PER_S
            )
        };
        let _ = writeln!(
            out,
            "Target (≥ {TARGET_PER_S:.0} events/s into PostgreSQL, batched, on 2 cores; the \
             audit projection, every event a row, rebuilt from the broker): {verdict}. Raw \
             consume (best of both runs): {:.0} events/s. The same store replayed from memory: \
             {:.0} events/s ({}).",
            self.raw_per_s(),
            ceiling,
            if ceiling >= TARGET_PER_S {
                "the store alone meets the target"
            } else {
                "the store alone does not meet the target either"
            }
        );
        out
    }
}

impl Report for RebuildResults {
    const NAME: &'static str = "rebuild";

    fn to_json(&self) -> Value {
        RebuildResults::to_json(self)
    }

    fn to_markdown(&self) -> String {
        RebuildResults::to_markdown(self)
    }
}
