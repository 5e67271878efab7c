//! Latency summaries and CPU accounting from `/proc`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

/// A duration in whole microseconds, saturating at `u32::MAX` (71 minutes).
pub fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Summary {
    /// Summarises latencies given in microseconds (sorts them in place).
    pub fn of_micros(samples: &mut [u32]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let ms = |us: u32| f64::from(us) / 1_000.0;
        let total: u64 = samples.iter().map(|&us| u64::from(us)).sum();
        Self {
            count: samples.len(),
            p50_ms: ms(percentile(samples, 0.50)),
            p95_ms: ms(percentile(samples, 0.95)),
            p99_ms: ms(percentile(samples, 0.99)),
            max_ms: ms(samples[samples.len() - 1]),
            mean_ms: total as f64 / samples.len() as f64 / 1_000.0,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "count": self.count,
            "p50_ms": round(self.p50_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "mean_ms": round(self.mean_ms, 3),
        })
    }
}

/// The nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10_f64.powi(digits);
    (value * scale).round() / scale
}

/// CPU time consumed so far, in clock ticks: the whole machine and the processes that matter.
#[derive(Clone, Debug, Default)]
pub struct CpuSample {
    /// All CPUs, every state (`/proc/stat`, first line).
    total: u64,
    /// Idle and waiting for I/O.
    idle: u64,
    /// User + system time of this process (API role, relay, mirror and load generator).
    this_process: u64,
    /// Every process named `postgres` (the server and its backends), with the time of the
    /// waited-for children the server has reaped: a backend whose connection closed before the
    /// later sample still counts.
    postgres: u64,
    /// Every process whose name starts with `tansu` (the broker).
    broker: u64,
    /// This process's threads, by name with digits dropped (`rdk:broker1` → `rdk:broker`).
    threads: BTreeMap<String, u64>,
}

/// Where the CPU went between two samples, in cores (1.0 = one core busy the whole time).
#[derive(Clone, Debug, Default)]
pub struct CpuUse {
    pub cores: usize,
    pub busy: f64,
    pub this_process: f64,
    pub postgres: f64,
    pub broker: f64,
    pub other: f64,
    pub threads: Vec<(String, f64)>,
}

impl CpuSample {
    /// Reads `/proc`; on a system without it every figure is 0.
    pub fn take() -> Self {
        let mut sample = Self::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
            if let Some(line) = stat.lines().find(|line| line.starts_with("cpu ")) {
                let fields: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|f| f.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal (guest time is inside user)
                sample.total = fields.iter().take(8).sum();
                sample.idle =
                    fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
            }
        }
        let me = std::process::id().to_string();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(pid) = name
                    .to_str()
                    .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                else {
                    continue;
                };
                let Some((comm, ticks)) = process_ticks(&format!("/proc/{pid}/stat"), true) else {
                    continue;
                };
                if pid == me {
                    sample.this_process = ticks;
                } else if comm == "postgres" {
                    sample.postgres += ticks;
                } else if comm.starts_with("tansu") {
                    sample.broker += ticks;
                }
            }
        }
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                let path = task.path().join("stat");
                if let Some((comm, ticks)) = process_ticks(&path.to_string_lossy(), false) {
                    let name: String = comm.chars().filter(|c| !c.is_ascii_digit()).collect();
                    *sample.threads.entry(name).or_default() += ticks;
                }
            }
        }
        sample
    }

    /// The CPU used from `self` to `later`.
    pub fn until(&self, later: &CpuSample) -> CpuUse {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let total = later.total.saturating_sub(self.total);
        if total == 0 {
            return CpuUse {
                cores,
                ..CpuUse::default()
            };
        }
        // Ticks of the whole machine per core-second cancel out: cores = ticks * cores / total.
        let share = |ticks: u64| ticks as f64 * cores as f64 / total as f64;
        let busy = share(total.saturating_sub(later.idle.saturating_sub(self.idle)));
        let this_process = share(later.this_process.saturating_sub(self.this_process));
        let postgres = share(later.postgres.saturating_sub(self.postgres));
        let broker = share(later.broker.saturating_sub(self.broker));
        let mut threads: Vec<(String, f64)> = later
            .threads
            .iter()
            .map(|(name, &ticks)| {
                let before = self.threads.get(name).copied().unwrap_or(0);
                (name.clone(), share(ticks.saturating_sub(before)))
            })
            .filter(|(_, cores)| *cores > 0.0)
            .collect();
        threads.sort_by(|a, b| b.1.total_cmp(&a.1));
        CpuUse {
            cores,
            busy,
            this_process,
            postgres,
            broker,
            other: (busy - this_process - postgres - broker).max(0.0),
            threads,
        }
    }
}

impl CpuUse {
    pub fn to_json(&self) -> Value {
        json!({
            "cores": self.cores,
            "busy_cores": round(self.busy, 2),
            "bench_process_cores": round(self.this_process, 2),
            "postgres_cores": round(self.postgres, 2),
            "broker_cores": round(self.broker, 2),
            "other_cores": round(self.other, 2),
            "bench_threads_cores": self
                .threads
                .iter()
                .map(|(name, cores)| json!({ "thread": name, "cores": round(*cores, 2) }))
                .collect::<Vec<_>>(),
        })
    }
}

/// A process's (or thread's) name and user + system clock ticks from its `stat` file; with
/// `reaped`, plus the ticks of the children it has waited for (a process's own figure only: a
/// thread's `stat` repeats its process's).
fn process_ticks(path: &str, reaped: bool) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name: state (field 3) … utime (field 14), stime (field 15).
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    if !reaped {
        return Some((comm, utime + stime));
    }
    // cutime (field 16), cstime (field 17).
    let cutime: u64 = rest.get(13)?.parse().ok()?;
    let cstime: u64 = rest.get(14)?.parse().ok()?;
    Some((comm, utime + stime + cutime + cstime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<u32> = (1..=100).rev().map(|ms| ms * 1_000).collect();
        let summary = Summary::of_micros(&mut samples);
        assert_eq!(summary.count, 100);
        assert_eq!(summary.p50_ms, 50.0);
        assert_eq!(summary.p99_ms, 99.0);
        assert_eq!(summary.max_ms, 100.0);
        assert_eq!(Summary::of_micros(&mut []).count, 0);
    }

    #[test]
    fn stat_lines_with_spaces_in_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stat");
        std::fs::write(
            &path,
            "42 (tokio runtime) S 1 2 3 4 5 6 7 8 9 10 150 25 300 40 20 0 1 0",
        )
        .expect("write");
        assert_eq!(
            process_ticks(&path.to_string_lossy(), false),
            Some(("tokio runtime".to_owned(), 175))
        );
        // A server's reaped children (closed connections' backends) count with it.
        assert_eq!(
            process_ticks(&path.to_string_lossy(), true),
            Some(("tokio runtime".to_owned(), 515))
        );
    }
}
