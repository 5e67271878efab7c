//! Writes the JSON Schema of the envelope and of every public event type to `schemas/json/`,
//! and the generated sections of `docs/events.md`.
//!
//! A schema that already exists for the same version is only replaced if the new one is
//! compatible with it (`aether_schemas::compat`); an incompatible change is refused, because
//! published events are forever: it needs a new version of the event type and an upcaster.
//! Golden examples under `schemas/golden/` are never written here.

use std::fs;
use std::process::ExitCode;

use aether_schemas::{compat, generate};
use serde_json::Value;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let dir = generate::schema_dir();
    let mut writes = Vec::new();
    let mut refused = Vec::new();
    for file in generate::schema_files().map_err(|e| e.to_string())? {
        let path = dir.join(&file.name);
        let text = generate::render(&file.schema);
        if let Ok(existing) = fs::read_to_string(&path) {
            if existing == text {
                continue;
            }
            let published: Value = serde_json::from_str(&existing)
                .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
            let broken = compat::incompatibilities(&published, &file.schema);
            if !broken.is_empty() {
                let reasons: Vec<String> = broken.iter().map(|b| format!("  - {b}")).collect();
                refused.push(format!("{}:\n{}", file.name, reasons.join("\n")));
                continue;
            }
        }
        writes.push((path, text));
    }
    if !refused.is_empty() {
        return Err(refusal(&refused));
    }

    let doc_path = generate::events_doc_path();
    let doc = fs::read_to_string(&doc_path)
        .map_err(|e| format!("reading {}: {e}", doc_path.display()))?;
    let updated = generate::update_events_doc(&doc).map_err(|e| e.to_string())?;
    if updated != doc {
        writes.push((doc_path, updated));
    }

    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if writes.is_empty() {
        println!("the schemas and docs/events.md are up to date");
    }
    for (path, text) in writes {
        fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Nothing is written when any published schema would change incompatibly.
fn refusal(refused: &[String]) -> String {
    format!(
        "refused to overwrite published schemas with incompatible ones; nothing was \
         written:\n{}\n\n\
         A published event version is forever (docs/architecture.md, log rule 8). Keep the old \
         type as it is, or give the event type a new major version (a new schemas/json/<Type>.v<N>.json is \
         then written beside the old one), add a golden example for it under schemas/golden/, \
         and an upcaster from the old version in aether_schemas::catalog::upcast.",
        refused.join("\n")
    )
}
