//! The servers a benchmark runs against: only local ones, a throw-away database on them, and a
//! description of the machine and the servers for the results.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{ensure, Context};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::report::Machine;

/// The servers a benchmark of the distributed mode runs against, each on loopback by default.
#[derive(Debug, clap::Args)]
pub struct Servers {
    /// PostgreSQL server (an admin URL: the benchmark creates and drops its own database).
    #[arg(
        long,
        env = "AETHER_TEST_POSTGRES",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/postgres"
    )]
    pub postgres: String,
    /// Kafka-compatible broker, `host:port`.
    #[arg(long, env = "AETHER_TEST_KAFKA", default_value = "127.0.0.1:9092")]
    pub kafka: String,
    /// MongoDB-compatible server of the timeline read model (the benchmark uses its own
    /// database in it and drops it afterwards).
    #[arg(
        long,
        env = "AETHER_TEST_MONGO",
        default_value = "mongodb://127.0.0.1:27017/?directConnection=true"
    )]
    pub mongo: String,
}

impl Servers {
    /// Refuses any server off loopback: load is only ever sent to this machine.
    pub fn ensure_local(&self) -> anyhow::Result<()> {
        ensure_local(&self.postgres, &self.kafka)?;
        ensure_local_mongo(&self.mongo)
    }
}

/// Refuses servers that are not on this machine: a benchmark must never load someone else's.
pub fn ensure_local(postgres: &str, kafka: &str) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(postgres).context("--postgres")?;
    let host = options.get_host();
    ensure!(
        host.starts_with('/') || is_loopback(host),
        "--postgres must be on this machine (loopback or a Unix socket), not {host}"
    );
    for server in kafka.split(',') {
        let host = server
            .rsplit_once(':')
            .map_or(server, |(host, _)| host)
            .trim();
        ensure!(
            is_loopback(host),
            "--kafka must be on this machine (loopback), not {server}"
        );
    }
    Ok(())
}

/// Refuses a MongoDB URI whose hosts are not on this machine.
pub fn ensure_local_mongo(uri: &str) -> anyhow::Result<()> {
    let rest = uri
        .split_once("://")
        .map(|(_, rest)| rest)
        .context("--mongo: not a mongodb:// URI")?;
    let hosts = rest.split(['/', '?']).next().unwrap_or_default();
    let hosts = hosts.rsplit_once('@').map_or(hosts, |(_, hosts)| hosts);
    ensure!(!hosts.is_empty(), "--mongo: no host in {uri}");
    for server in hosts.split(',') {
        let host = if server.starts_with('[') {
            server.split_once(']').map_or(server, |(host, _)| host)
        } else {
            server.rsplit_once(':').map_or(server, |(host, _)| host)
        };
        ensure!(
            is_loopback(host),
            "--mongo must be on this machine (loopback), not {server}"
        );
    }
    Ok(())
}

pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `aether_bench_<random>`, created on the admin URL's server and dropped at the end.
pub struct BenchDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl BenchDatabase {
    pub async fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!("aether_bench_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(admin_url)
            .await
            .context("connecting to PostgreSQL")?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let base = admin_url
            .split_once('?')
            .map_or(admin_url, |(base, _)| base);
        let base = base.rsplit_once('/').map_or(base, |(base, _)| base);
        let query = admin_url
            .split_once('?')
            .map_or(String::new(), |(_, q)| format!("?{q}"));
        Ok(Self {
            admin_url: admin_url.to_owned(),
            url: format!("{base}/{name}{query}"),
            name,
        })
    }

    pub async fn drop_database(&self) -> anyhow::Result<()> {
        let mut admin = PgConnection::connect(&self.admin_url).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await?;
        admin.close().await?;
        Ok(())
    }
}

pub fn redact_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Machine {
    pub async fn probe(watch: &PgPool, kafka: &str) -> Self {
        let load_at_start = crate::report::load_average();
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let memory = read("/proc/meminfo")
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or_else(
                || "unknown".to_owned(),
                |kb| format!("{:.1} GiB", kb as f64 / 1_048_576.0),
            );
        let git_revision = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .map(|rev| {
                let dirty = std::process::Command::new("git")
                    .args(["status", "--porcelain", "--untracked-files=no"])
                    .output()
                    .is_ok_and(|out| !out.stdout.is_empty());
                if dirty {
                    format!("{rev} (with uncommitted changes)")
                } else {
                    rev
                }
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let postgres_version: String = sqlx::query_scalar("SELECT version()")
            .fetch_one(watch)
            .await
            .unwrap_or_default();
        let mut postgres_settings = Vec::new();
        for name in [
            "synchronous_commit",
            "fsync",
            "wal_sync_method",
            "shared_buffers",
            "max_connections",
        ] {
            let value: String = sqlx::query_scalar(&format!("SHOW {name}"))
                .fetch_one(watch)
                .await
                .unwrap_or_else(|_| "?".to_owned());
            postgres_settings.push((name.to_owned(), value));
        }
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            git_revision,
            build_profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            postgres_version,
            postgres_settings,
            broker: broker_description(kafka),
            load_at_start,
        }
    }
}

/// What serves `kafka`: a local process whose name starts with `tansu` and whose command line
/// names `kafka`'s port, if there is one, with its storage engine's scheme and, when cargo
/// installed it, its build profile.
fn broker_description(kafka: &str) -> String {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return format!("Kafka-compatible broker at {kafka}");
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if !comm.starts_with("tansu") {
            continue;
        }
        let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().all(String::is_empty) {
            // A zombie (an old broker that was restarted) has no command line.
            continue;
        }
        // Several brokers may run (the tests' and a benchmark's own): the one listening on
        // `kafka`'s port.
        let port = kafka.rsplit_once(':').map(|(_, port)| format!(":{port}"));
        if port.is_some_and(|port| !args.iter().any(|arg| arg.ends_with(&port))) {
            continue;
        }
        let storage = args
            .iter()
            .position(|a| a == "--storage-engine")
            .and_then(|i| args.get(i + 1))
            .and_then(|engine| {
                engine
                    .split_once("://")
                    .map(|(scheme, _)| scheme.to_owned())
            })
            .unwrap_or_else(|| "?".to_owned());
        let exe = std::fs::read_link(path.join("exe")).ok();
        let profile =
            cargo_install_profile(comm, exe.as_deref()).unwrap_or_else(|| "unknown".to_owned());
        return format!(
            "{comm} at {kafka} (storage engine: {storage}; cargo-install profile: {profile})"
        );
    }
    format!("Kafka-compatible broker at {kafka}")
}

/// The profile (`release`, `dev`) `cargo install` built `binary` with, from the records of the
/// install root it runs from (`<root>/bin/<binary>`: `cargo install --root`), else of
/// `$CARGO_HOME`.
fn cargo_install_profile(binary: &str, exe: Option<&Path>) -> Option<String> {
    let root = exe
        .and_then(Path::parent)
        .and_then(Path::parent)
        .filter(|root| root.join(".crates2.json").is_file());
    let home = root.map(Path::to_path_buf).or_else(|| {
        std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
    })?;
    let records: Value =
        serde_json::from_slice(&std::fs::read(home.join(".crates2.json")).ok()?).ok()?;
    records["installs"]
        .as_object()?
        .iter()
        .find(|(key, install)| {
            key.starts_with(&format!("{binary} "))
                && install["bins"]
                    .as_array()
                    .is_some_and(|bins| bins.iter().any(|b| b == binary))
        })
        .and_then(|(_, install)| install["profile"].as_str().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_servers() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("10.0.0.1"));
        assert!(!is_loopback("example.com"));
    }

    #[test]
    fn only_local_mongo() {
        assert!(ensure_local_mongo("mongodb://127.0.0.1:27017/?directConnection=true").is_ok());
        assert!(ensure_local_mongo("mongodb://u:p@localhost/db").is_ok());
        assert!(ensure_local_mongo("mongodb://[::1]:27017").is_ok());
        assert!(ensure_local_mongo("mongodb://10.0.0.1:27017").is_err());
        assert!(ensure_local_mongo("mongodb://127.0.0.1,db.example.com").is_err());
        assert!(ensure_local_mongo("localhost:27017").is_err());
    }

    #[test]
    fn passwords_are_not_written_down() {
        assert_eq!(
            redact_password("postgres://postgres:secret@127.0.0.1:5432/postgres"),
            "postgres://postgres:***@127.0.0.1:5432/postgres"
        );
        assert_eq!(
            redact_password("postgres://127.0.0.1/postgres"),
            "postgres://127.0.0.1/postgres"
        );
    }
}
