//! What the write-path benchmark found, and how it is written: a console table,
//! `write-path.json` and `write-path.md`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::stats::{round, CpuUse, Summary};

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The target for sustained end-to-end throughput on 2 cores.
pub const TARGET_PER_S: f64 = 5_000.0;

/// The machine and the servers the figures come from.
#[derive(Clone, Debug, Default)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub memory: String,
    pub kernel: String,
    pub git_revision: String,
    pub build_profile: &'static str,
    pub postgres_version: String,
    /// `SHOW` of the settings that decide commit cost.
    pub postgres_settings: Vec<(String, String)>,
    pub broker: String,
    /// `/proc/loadavg` (1, 5 and 15 minutes) when the run started: how busy the machine
    /// already was with work that is not the benchmark's.
    pub load_at_start: String,
}

/// One load level: `clients` loops of `sendMessage` for the configured time.
#[derive(Clone, Debug, Default)]
pub struct LevelResult {
    pub clients: usize,
    /// From the first request to the last response.
    pub load_s: f64,
    pub accepted: u64,
    pub failed: u64,
    pub first_error: Option<String>,
    /// HTTP round trip of `sendMessage`, as the client saw it.
    pub request: Summary,
    /// From the first request until the outbox was empty: every accepted message on Kafka.
    pub drained_at_s: Option<f64>,
    /// Outbox rows still there when the drain wait gave up.
    pub left_in_outbox: i64,
    /// The relay's record: broker acknowledgement minus the command's `occurred_at`.
    pub command_to_kafka: Summary,
    pub cpu: CpuUse,
}

impl LevelResult {
    pub fn accepted_per_s(&self) -> f64 {
        per_s(self.accepted, self.load_s)
    }

    /// Messages per second until the last of them reached Kafka.
    pub fn end_to_end_per_s(&self) -> Option<f64> {
        self.drained_at_s.map(|s| per_s(self.accepted, s))
    }
}

/// Baseline 1: the same envelope bytes produced straight to the broker.
#[derive(Clone, Debug, Default)]
pub struct ProduceResult {
    pub acked: u64,
    pub failed: u64,
    /// From the first send to the last acknowledgement.
    pub seconds: f64,
    pub max_in_flight: usize,
    pub body_bytes: usize,
    pub ack: Summary,
    pub cpu: CpuUse,
}

/// Baseline 2: the same rows inserted straight into PostgreSQL.
#[derive(Clone, Debug, Default)]
pub struct InsertResult {
    pub table: String,
    pub triggers: bool,
    pub tasks: usize,
    pub rows: u64,
    pub failed: u64,
    pub seconds: f64,
    pub latency: Summary,
    pub cpu: CpuUse,
}

#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub levels: Vec<usize>,
    pub seconds: u64,
    pub warmup_s: u64,
    pub pool: u32,
    /// Commands per PostgreSQL transaction at most; 0: one transaction per command.
    pub group_commit: usize,
    pub partitions: i32,
    pub channels: usize,
    pub postgres: String,
    pub kafka: String,
}

#[derive(Clone, Debug, Default)]
pub struct Results {
    pub started_at: DateTime<Utc>,
    pub wall_s: f64,
    pub machine: Machine,
    pub settings: Settings,
    pub levels: Vec<LevelResult>,
    pub produce: ProduceResult,
    pub insert: InsertResult,
    pub insert_plain: InsertResult,
    /// What went wrong or was skipped during the run.
    pub notes: Vec<String>,
    /// `/proc/loadavg` when the run ended.
    pub load_at_end: String,
}

fn per_s(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

impl ProduceResult {
    pub fn per_s(&self) -> f64 {
        per_s(self.acked, self.seconds)
    }
}

impl InsertResult {
    pub fn per_s(&self) -> f64 {
        per_s(self.rows, self.seconds)
    }
}

impl Results {
    /// The level with the highest end-to-end throughput.
    pub fn best(&self) -> Option<&LevelResult> {
        self.levels.iter().max_by(|a, b| {
            let rate = |l: &LevelResult| l.end_to_end_per_s().unwrap_or(0.0);
            rate(a).total_cmp(&rate(b))
        })
    }

    fn best_rate(&self) -> f64 {
        self.best()
            .and_then(LevelResult::end_to_end_per_s)
            .unwrap_or(0.0)
    }

    fn ratio(&self, baseline: f64) -> Option<f64> {
        (baseline > 0.0).then(|| self.best_rate() / baseline)
    }

    pub fn to_json(&self) -> Value {
        let m = &self.machine;
        let s = &self.settings;
        let levels: Vec<Value> = self
            .levels
            .iter()
            .map(|l| {
                json!({
                    "clients": l.clients,
                    "load_s": round(l.load_s, 3),
                    "accepted": l.accepted,
                    "failed": l.failed,
                    "first_error": l.first_error,
                    "accepted_per_s": round(l.accepted_per_s(), 1),
                    "request_latency": l.request.to_json(),
                    "drained_at_s": l.drained_at_s.map(|d| round(d, 3)),
                    "left_in_outbox": l.left_in_outbox,
                    "end_to_end_per_s": l.end_to_end_per_s().map(|r| round(r, 1)),
                    "command_to_kafka": l.command_to_kafka.to_json(),
                    "cpu": l.cpu.to_json(),
                })
            })
            .collect();
        let insert = |i: &InsertResult| {
            json!({
                "table": i.table,
                "triggers": i.triggers,
                "concurrent_tasks": i.tasks,
                "rows": i.rows,
                "failed": i.failed,
                "seconds": round(i.seconds, 3),
                "rows_per_s": round(i.per_s(), 1),
                "latency": i.latency.to_json(),
                "cpu": i.cpu.to_json(),
            })
        };
        let ratio = |baseline: f64| self.ratio(baseline).map(|r| round(r, 4));
        json!({
            "benchmark": "write-path",
            "date": self.started_at.to_rfc3339(),
            "wall_s": round(self.wall_s, 1),
            "build_profile": m.build_profile,
            "git_revision": m.git_revision,
            "load_average": { "start": m.load_at_start, "end": self.load_at_end },
            "machine": {
                "nproc": m.nproc,
                "cpu_model": m.cpu_model,
                "memory": m.memory,
                "kernel": m.kernel,
                "shared": format!(
                    "PostgreSQL, the broker, the API role (with relay and mirror) and the load \
                     generator all run on these {} cores", m.nproc),
            },
            "postgres": {
                "version": m.postgres_version,
                "settings": m.postgres_settings.iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect::<serde_json::Map<_, _>>(),
            },
            "broker": m.broker,
            "settings": {
                "levels": s.levels,
                "seconds_per_level": s.seconds,
                "warmup_s": s.warmup_s,
                "api_postgres_pool": s.pool,
                "api_group_commit": s.group_commit,
                "partitions": s.partitions,
                "channels": s.channels,
                "postgres": s.postgres,
                "kafka": s.kafka,
            },
            "levels": levels,
            "best_level_clients": self.best().map(|l| l.clients),
            "raw_produce": {
                "acked": self.produce.acked,
                "failed": self.produce.failed,
                "seconds": round(self.produce.seconds, 3),
                "msgs_per_s": round(self.produce.per_s(), 1),
                "max_in_flight": self.produce.max_in_flight,
                "body_bytes": self.produce.body_bytes,
                "ack_latency": self.produce.ack.to_json(),
                "cpu": self.produce.cpu.to_json(),
            },
            "raw_insert": insert(&self.insert),
            "raw_insert_plain": insert(&self.insert_plain),
            "ratios": {
                "end_to_end_vs_raw_produce": ratio(self.produce.per_s()),
                "end_to_end_vs_raw_insert": ratio(self.insert.per_s()),
                "end_to_end_vs_raw_insert_plain": ratio(self.insert_plain.per_s()),
            },
            "notes": self.notes,
            "target": {
                "end_to_end_per_s": TARGET_PER_S,
                "best_end_to_end_per_s": round(self.best_rate(), 1),
                "met": self.best_rate() >= TARGET_PER_S,
                "fraction_of_target": round(self.best_rate() / TARGET_PER_S, 3),
            },
        })
    }

    /// The figures as Markdown: what `write-path.md` holds and the console shows.
    pub fn to_markdown(&self) -> String {
        let m = &self.machine;
        let s = &self.settings;
        let mut out = String::new();
        let _ = writeln!(out, "# Write-path benchmark\n");
        let _ = writeln!(
            out,
            "`sendMessage` (GraphQL over HTTP) → `ChatCommands` → PostgreSQL event store + outbox \
             → relay → Kafka, in one process, beside raw Kafka produce and raw PostgreSQL inserts \
             of the same bytes in the same run.\n"
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
        let _ = writeln!(out, "| kernel | {} |", m.kernel);
        let _ = writeln!(
            out,
            "| load average (1/5/15 min) | {} at the start, {} at the end |",
            m.load_at_start, self.load_at_end
        );
        let _ = writeln!(
            out,
            "| sharing | PostgreSQL, the broker, the API role (relay and Kafka mirror included) and \
             the load generator all share these {} cores |",
            m.nproc
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
            "| run | levels {:?} clients × {} s (after a {} s warm-up), API pool {} connections, \
             group commit {}, {} partitions, {} channels; whole run {:.0} s |\n",
            s.levels,
            s.seconds,
            s.warmup_s,
            s.pool,
            match s.group_commit {
                0 => "off (a transaction per command)".to_owned(),
                max => format!("up to {max} commands per transaction"),
            },
            s.partitions,
            s.channels,
            self.wall_s
        );

        for note in &self.notes {
            let _ = writeln!(out, "**Note:** {note}\n");
        }
        let _ = writeln!(out, "## End to end, per load level\n");
        let _ = writeln!(
            out,
            "| clients | accepted | failed | accepted/s | request p50 / p99 ms | drained at s | \
             end-to-end msg/s | command→Kafka p50 / p99 / max ms | CPU cores: bench process / \
             postgres / broker / other (busy) |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for l in &self.levels {
            let drained = l.drained_at_s.map_or_else(
                || format!("not drained ({} left)", l.left_in_outbox),
                |d| format!("{d:.2}"),
            );
            let e2e = l
                .end_to_end_per_s()
                .map_or_else(|| "—".to_owned(), |r| format!("{r:.0}"));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {:.1} / {:.1} | {} | {} | {:.0} / {:.0} / {:.0} | {} |",
                l.clients,
                l.accepted,
                l.failed,
                l.accepted_per_s(),
                l.request.p50_ms,
                l.request.p99_ms,
                drained,
                e2e,
                l.command_to_kafka.p50_ms,
                l.command_to_kafka.p99_ms,
                l.command_to_kafka.max_ms,
                cpu_cell(&l.cpu),
            );
        }
        for l in self.levels.iter().filter(|l| l.failed > 0) {
            let _ = writeln!(
                out,
                "\n{} clients: first error: {}",
                l.clients,
                l.first_error.as_deref().unwrap_or("?")
            );
        }
        for l in &self.levels {
            if l.command_to_kafka.count as u64 != l.accepted {
                let _ = writeln!(
                    out,
                    "\n{} clients: the relay recorded {} command→Kafka latencies for {} accepted \
                     messages.",
                    l.clients, l.command_to_kafka.count, l.accepted
                );
            }
        }

        let _ = writeln!(out, "\n## Raw baselines (same run, API role stopped)\n");
        let _ = writeln!(
            out,
            "| baseline | concurrency | count | per second | latency p50 / p99 ms | CPU cores: \
             bench process / postgres / broker / other (busy) |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---|");
        let p = &self.produce;
        let _ = writeln!(
            out,
            "| rdkafka produce, idempotent, acks=all ({} B envelope + the relay's headers) | ≤ {} \
             in flight | {} | {:.0} | {:.1} / {:.1} | {} |",
            p.body_bytes,
            p.max_in_flight,
            p.acked,
            p.per_s(),
            p.ack.p50_ms,
            p.ack.p99_ms,
            cpu_cell(&p.cpu)
        );
        for i in [&self.insert, &self.insert_plain] {
            let what = if i.triggers {
                format!(
                    "INSERT INTO {}, one row per transaction, triggers run (hash chain, outbox, \
                     NOTIFY)",
                    i.table
                )
            } else {
                format!(
                    "INSERT INTO {} (same columns and indexes, no triggers), one row per \
                     transaction",
                    i.table
                )
            };
            let _ = writeln!(
                out,
                "| {} | {} tasks | {} | {:.0} | {:.1} / {:.1} | {} |",
                what,
                i.tasks,
                i.rows,
                i.per_s(),
                i.latency.p50_ms,
                i.latency.p99_ms,
                cpu_cell(&i.cpu)
            );
        }

        let _ = writeln!(out, "\n## Ratios and target\n");
        let best = self.best();
        let best_rate = self.best_rate();
        let _ = writeln!(
            out,
            "Best level: {} clients, {:.0} messages/s end to end (accepted messages ÷ time until \
             the last one was acknowledged by Kafka).\n",
            best.map_or(0, |l| l.clients),
            best_rate
        );
        let fmt_ratio = |r: Option<f64>| r.map_or_else(|| "—".to_owned(), |r| format!("{r:.3}"));
        let _ = writeln!(out, "| ratio | value |\n|---|---:|");
        let _ = writeln!(
            out,
            "| end-to-end / raw produce | {} |",
            fmt_ratio(self.ratio(p.per_s()))
        );
        let _ = writeln!(
            out,
            "| end-to-end / raw insert into `events` (triggers) | {} |",
            fmt_ratio(self.ratio(self.insert.per_s()))
        );
        let _ = writeln!(
            out,
            "| end-to-end / raw insert, no triggers | {} |",
            fmt_ratio(self.ratio(self.insert_plain.per_s()))
        );
        let verdict = if best_rate >= TARGET_PER_S {
            "met".to_owned()
        } else {
            format!(
                "not met: {:.0} of {:.0} messages/s ({:.0} %), short by {:.0}/s (×{:.1} needed)",
                best_rate,
                TARGET_PER_S,
                100.0 * best_rate / TARGET_PER_S,
                TARGET_PER_S - best_rate,
                if best_rate > 0.0 {
                    TARGET_PER_S / best_rate
                } else {
                    f64::INFINITY
                }
            )
        };
        let _ = writeln!(
            out,
            "\nTarget (≥ {TARGET_PER_S:.0} messages/s sustained end to end on 2 cores): {verdict}."
        );
        if let Some(best) = best {
            if !best.cpu.threads.is_empty() {
                let threads: Vec<String> = best
                    .cpu
                    .threads
                    .iter()
                    .take(8)
                    .map(|(name, cores)| format!("{name} {cores:.2}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "\nBench-process threads at {} clients (cores): {}.",
                    best.clients,
                    threads.join(", ")
                );
            }
        }
        out
    }
}

impl Report for Results {
    const NAME: &'static str = "write-path";

    fn to_json(&self) -> Value {
        Results::to_json(self)
    }

    fn to_markdown(&self) -> String {
        Results::to_markdown(self)
    }
}

/// A benchmark's results: JSON for tools, Markdown for people.
pub trait Report {
    /// The results files' stem under `bench/results/`.
    const NAME: &'static str;
    fn to_json(&self) -> Value;
    fn to_markdown(&self) -> String;
}

/// Prints the Markdown; from a release build also writes `<NAME>.json` and `<NAME>.md` under
/// `dir` (a debug build's figures are not worth keeping).
pub fn publish<R: Report>(report: &R, dir: &Path) -> anyhow::Result<()> {
    println!("\n{}", report.to_markdown());
    if cfg!(debug_assertions) {
        eprintln!("debug build: not writing results to {}", dir.display());
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (json, markdown) = (
        dir.join(format!("{}.json", R::NAME)),
        dir.join(format!("{}.md", R::NAME)),
    );
    std::fs::write(
        &json,
        serde_json::to_string_pretty(&report.to_json())? + "\n",
    )?;
    std::fs::write(&markdown, report.to_markdown())?;
    println!("written: {}, {}", json.display(), markdown.display());
    Ok(())
}

/// CPU use as a table cell: this process / PostgreSQL / broker / other (busy of cores).
pub fn cpu_cell(cpu: &CpuUse) -> String {
    format!(
        "{:.2} / {:.2} / {:.2} / {:.2} ({:.2} of {})",
        cpu.this_process, cpu.postgres, cpu.broker, cpu.other, cpu.busy, cpu.cores
    )
}
