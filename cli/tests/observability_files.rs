//! The Grafana dashboards and Prometheus alert rules under `infra/observability/` name only
//! metrics the code exports: every metric a panel's or a rule's expression names must appear
//! on the `/metrics` of a running `aether dev` (API, edge and embedded projectors) or of the
//! distributed relay and projector roles, after a little traffic. A renamed or removed metric
//! fails here instead of leaving an empty panel or an alert that can never fire.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use common::dev_process::spawn_dev;
use common::processes::Deployment;
use common::{scrape, Client, PATIENCE};
use serde_json::Value;

/// Series Prometheus makes itself for every target, not the code.
const FROM_PROMETHEUS: [&str; 1] = ["up"];

fn observability() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent folder")
        .join("infra/observability")
}

fn files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    found.sort();
    found
}

/// Every `expr` of every panel (rows' panels too) of the dashboards, with where it is.
fn dashboard_expressions() -> Vec<(String, String)> {
    fn walk(panels: &Value, file: &str, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("untitled");
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((format!("{file}: panel {title:?}"), expr.to_owned()));
                }
            }
            walk(&panel["panels"], file, out);
        }
    }
    let mut out = Vec::new();
    for path in files(&observability().join("grafana/dashboards"), "json") {
        let text = std::fs::read_to_string(&path).expect("dashboard readable");
        let dashboard: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let file = path.file_name().unwrap_or_default().to_string_lossy();
        walk(&dashboard["panels"], &file, &mut out);
    }
    out
}

/// Every `expr` of every rule of the rule files, with where it is.
fn rule_expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in files(&observability().join("prometheus/rules"), "yml") {
        let text = std::fs::read_to_string(&path).expect("rule file readable");
        let rules: serde_norway::Value = serde_norway::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        let file = path.file_name().unwrap_or_default().to_string_lossy();
        for group in rules["groups"].as_sequence().into_iter().flatten() {
            for rule in group["rules"].as_sequence().into_iter().flatten() {
                let name = rule["alert"]
                    .as_str()
                    .or_else(|| rule["record"].as_str())
                    .unwrap_or("unnamed");
                let expr = rule["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{file}: rule {name} has no expr"));
                out.push((format!("{file}: rule {name}"), expr.to_owned()));
                if rule["alert"].is_string() {
                    assert!(
                        rule["annotations"]["summary"].is_string(),
                        "{file}: alert {name} has no summary for whoever is paged"
                    );
                }
            }
        }
    }
    out
}

/// The metric names a PromQL expression selects: identifiers that are not functions,
/// keywords, label names (inside `{}` or a `by (...)` list), strings, ranges or numbers.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 8] = [
        "and", "or", "unless", "bool", "offset", "inf", "nan", "atan2",
    ];
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |from: usize, close: char| {
        let mut j = from + 1;
        while j < chars.len() && chars[j] != close {
            j += 1;
        }
        j + 1
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_to(i, c);
        } else if c == '{' {
            i = skip_to(i, '}');
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            // `sum by (le) (...)`: an aggregation whose grouping comes first is called too.
            let following: String = chars[next..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .collect();
            let called =
                chars.get(next) == Some(&'(') || following == "by" || following == "without";
            if GROUPING.contains(&word.as_str()) {
                if called {
                    i = skip_to(next, ')');
                }
            } else if !called && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_are_read_from_promql_as_prometheus_would() {
    let expr = "topk(10, histogram_quantile(0.95, sum by (le, operation) \
                (rate(aether_a_seconds_bucket{outcome=\"ok\", job=~\"x_y\"}[$__rate_interval])))) \
                / on (instance) group_left (role) aether_b > 0.05 and up{job=\"z\"} == bool 1";
    let names: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(names, ["aether_a_seconds_bucket", "aether_b", "up"]);
    assert!(metric_names("max(aether_made_up_total) > 1e3").contains("aether_made_up_total"));
}

/// The series names of a scrape (`name` of `name{labels} value`): histograms appear as their
/// `_bucket`, `_sum` and `_count` series, as PromQL names them.
fn series_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn addr_of(url: &str) -> anyhow::Result<SocketAddr> {
    url.strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .context("no address in the URL")?
        .parse()
        .context("not an address")
}

/// Scrapes `addr` until its text names `family` (a role registers some series once it is
/// active), or returns the last text.
async fn scrape_with(addr: SocketAddr, family: &str) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = scrape(addr).await?;
        if series_names(&text).contains(family) || tokio::time::Instant::now() >= deadline {
            return Ok(text);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn every_metric_a_dashboard_or_an_alert_names_is_exported() -> anyhow::Result<()> {
    let expressions: Vec<(String, String)> = dashboard_expressions()
        .into_iter()
        .chain(rule_expressions())
        .collect();
    assert!(
        expressions.len() >= 20,
        "the dashboards and rules hold only {} expressions",
        expressions.len()
    );

    // The embedded mode: API, edge and projectors in one process, after a sign-up and a
    // message (histograms show once they hold a sample).
    let dir = tempfile::tempdir()?;
    let dev = spawn_dev(dir.path(), &[])?;
    let dev_addr = addr_of(&dev.url)?;
    let mut anonymous = Client::new(dev_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    alice
        .ok(
            "mutation { createServer(input: {name: \"observed\"}) { id } }",
            serde_json::json!({}),
        )
        .await?;
    let mut exported =
        series_names(&scrape_with(dev_addr, "aether_projector_batch_seconds_bucket").await?);

    // The distributed relay and a projector process.
    let deployment = Deployment::start("observability", Duration::from_secs(60)).await?;
    let cwd = deployment.dir.path().to_path_buf();
    let (relay, relay_addr) = deployment
        .serve("relay", &["--role", "relay"], &cwd)
        .await?;
    exported.extend(series_names(
        &scrape_with(relay_addr, "aether_outbox_depth_events").await?,
    ));
    let (projector, projector_addr) = deployment
        .serve(
            "catalog",
            &["--role", "projector", "--projection", "catalog"],
            &cwd,
        )
        .await?;
    exported.extend(series_names(
        &scrape_with(projector_addr, "aether_projector_lag_seconds").await?,
    ));
    exported.extend(FROM_PROMETHEUS.map(str::to_owned));

    let mut missing = Vec::new();
    let mut named = BTreeSet::new();
    for (place, expr) in &expressions {
        for name in metric_names(expr) {
            if !exported.contains(&name) {
                missing.push(format!("{place}: {name}"));
            }
            named.insert(name);
        }
    }
    deployment.finish(vec![relay, projector]).await?;
    assert!(
        missing.is_empty(),
        "metrics named but not exported:\n{}\nexported: {exported:?}",
        missing.join("\n")
    );
    // The families the issue asks the dashboards to show are there.
    for family in [
        "aether_graphql_operations_total",
        "aether_relay_lag_seconds",
        "aether_projector_lag_seconds",
        "aether_projector_dead_letters_total",
        "aether_websocket_connections",
        "aether_subscription_deliveries_total",
        "aether_ready",
    ] {
        assert!(named.contains(family), "no panel or rule reads {family}");
    }
    Ok(())
}
