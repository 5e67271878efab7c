//! The workspace's dependency rules, read from `cargo metadata` (dev-dependencies included):
//! what keeps the domain pure, the write and read sides apart, and the wiring of roles in this
//! binary crate rather than in a library.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// `(crate, crates it must never depend on, why)`.
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "aether-domain",
        &[
            "aether-schemas",
            "aether-kafka",
            "aether-test-support",
            "aether-commands",
            "aether-projections",
            "aether-query-api",
            "aether-realtime-edge",
            "aether-cli",
        ],
        "the domain is pure: no other workspace crate",
    ),
    (
        "aether-schemas",
        &["aether-commands"],
        "the public log's schemas do not know the write side",
    ),
    (
        "aether-projections",
        &["aether-commands", "aether-realtime-edge"],
        "the read side learns of changes only from the log",
    ),
    (
        "aether-commands",
        &["aether-projections", "aether-realtime-edge"],
        "the write side never reads a read model",
    ),
    (
        "aether-moderation",
        &[
            "aether-commands",
            "aether-projections",
            "aether-query-api",
            "aether-realtime-edge",
            "aether-cli",
        ],
        "the write side runs the rule stage in its command path, so moderation must not depend on it",
    ),
    (
        "aether-realtime-edge",
        &["aether-cli"],
        "the edge is transport only: roles are wired in the binary crate",
    ),
];

/// Every workspace crate and the workspace crates it depends on, of any kind.
fn workspace_edges(metadata: &Value) -> BTreeMap<String, Vec<(String, String)>> {
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let members: Vec<String> = packages
        .iter()
        .filter_map(|package| package["name"].as_str().map(str::to_owned))
        .collect();
    packages
        .iter()
        .filter_map(|package| {
            let name = package["name"].as_str()?.to_owned();
            let dependencies = package["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|dependency| {
                    let target = dependency["name"].as_str()?;
                    members.contains(&target.to_owned()).then(|| {
                        let kind = dependency["kind"].as_str().unwrap_or("normal").to_owned();
                        (target.to_owned(), kind)
                    })
                })
                .collect();
            Some((name, dependencies))
        })
        .collect()
}

/// The edges that break a rule, as `crate -> dependency (kind): why`.
fn violations(metadata: &Value) -> Vec<String> {
    let edges = workspace_edges(metadata);
    let mut broken = Vec::new();
    for (from, forbidden, why) in RULES {
        for (to, kind) in edges.get(*from).into_iter().flatten() {
            if forbidden.contains(&to.as_str()) {
                broken.push(format!("{from} -> {to} ({kind}): {why}"));
            }
        }
    }
    broken
}

fn metadata() -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

#[test]
fn no_crate_depends_on_what_its_rule_forbids() {
    let metadata = metadata();
    let edges = workspace_edges(&metadata);
    for (name, _, _) in RULES {
        assert!(edges.contains_key(*name), "{name} is not in the workspace");
    }
    let broken = violations(&metadata);
    assert!(
        broken.is_empty(),
        "forbidden dependencies:\n{}",
        broken.join("\n")
    );
}

#[test]
fn a_forbidden_edge_is_reported_dev_dependencies_included() {
    let metadata = serde_json::json!({ "packages": [
        { "name": "aether-projections", "dependencies": [
            { "name": "aether-domain", "kind": null },
            { "name": "aether-commands", "kind": "dev" },
            { "name": "serde", "kind": null },
        ] },
        { "name": "aether-domain", "dependencies": [] },
        { "name": "aether-commands", "dependencies": [
            { "name": "aether-domain", "kind": null },
        ] },
    ] });
    assert_eq!(
        violations(&metadata),
        vec![
            "aether-projections -> aether-commands (dev): the read side learns of changes only \
             from the log"
                .to_owned()
        ]
    );
}
