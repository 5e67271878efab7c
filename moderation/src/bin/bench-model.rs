//! What the model stage costs on this machine's CPU: per-message latency scoring one message at
//! a time (batch 1), and throughput in batches of 8, 16 and 32, over the held-out messages of
//! `moderation/data/toxicity.jsonl` (short chat messages, 5 to 15 words).
//!
//! Prints the figures and writes them to `bench/results/moderation.md` (`--check` only prints).
//! A release build gives the figures to quote:
//!
//! ```text
//! cargo run --release -p aether-moderation --features model --bin bench-model
//! ```
//!
//! A dev build is close (the tensor and tokenizer crates are optimised in it too, see the
//! workspace `Cargo.toml`); the report says which profile produced it.

use std::path::Path;
use std::time::{Duration, Instant};

use aether_moderation::model::{default_model_dir, Classifier, Embedder, Head};

/// Texts scored alone for the batch-1 latency (the held-out set, cycled).
const SINGLES: usize = 200;
/// Messages scored for each batched figure.
const BATCHED: usize = 512;
const BATCH_SIZES: [usize; 3] = [8, 16, 32];

#[derive(serde::Deserialize)]
struct Example {
    text: String,
    split: String,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let check = std::env::args().any(|arg| arg == "--check");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = std::fs::read_to_string(root.join("data/toxicity.jsonl"))?;
    let texts: Vec<String> = data
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(serde_json::from_str::<Example>)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|example| example.split == "test")
        .map(|example| example.text)
        .collect();
    if texts.is_empty() {
        return Err("no held-out messages in moderation/data/toxicity.jsonl".into());
    }
    let started = Instant::now();
    let classifier = Classifier::new(Embedder::load(&default_model_dir())?, Head::builtin()?)?;
    let load = started.elapsed();
    let cycled = |count: usize| -> Vec<&str> {
        texts
            .iter()
            .cycle()
            .take(count)
            .map(String::as_str)
            .collect()
    };
    // Warm up: first passes allocate and fault pages in.
    classifier.score(&cycled(32))?;

    let mut singles = Vec::with_capacity(SINGLES);
    for text in cycled(SINGLES) {
        let at = Instant::now();
        classifier.score(&[text])?;
        singles.push(at.elapsed());
    }
    singles.sort();
    let mean = singles.iter().sum::<Duration>() / SINGLES as u32;

    let mut batched = Vec::new();
    for size in BATCH_SIZES {
        let messages = cycled(BATCHED);
        let at = Instant::now();
        for batch in messages.chunks(size) {
            classifier.score(batch)?;
        }
        let took = at.elapsed();
        batched.push((
            size,
            took / BATCHED as u32,
            BATCHED as f64 / took.as_secs_f64(),
        ));
    }

    let profile = if cfg!(debug_assertions) {
        "dev (candle, gemm and tokenizers at opt-level 3)"
    } else {
        "release"
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut report = format!(
        "# Model stage: cost per message\n\n\
         `cargo run --release -p aether-moderation --features model --bin bench-model` \
         (`moderation/src/bin/bench-model.rs`): all-MiniLM-L6-v2 (candle, CPU, f32) and the \
         committed head, on the {} held-out messages of `moderation/data/toxicity.jsonl` \
         (5 to 15 words each), cycled.\n\n\
         - build: {profile}\n- cores available: {cores}\n- model load: {:.0} ms\n\n\
         ## Batch 1 (one message per forward pass, {SINGLES} messages)\n\n\
         | mean | p50 | p99 |\n|---|---|---|\n| {:.2} ms | {:.2} ms | {:.2} ms |\n\n\
         ## Batched ({BATCHED} messages per row)\n\n\
         | batch size | per message | messages/s |\n|---|---|---|\n",
        texts.len(),
        ms(load),
        ms(mean),
        ms(percentile(&singles, 0.5)),
        ms(percentile(&singles, 0.99)),
    );
    for (size, per_message, rate) in &batched {
        report.push_str(&format!(
            "| {size} | {:.2} ms | {rate:.0} |\n",
            ms(*per_message)
        ));
    }
    report.push_str(
        "\nTarget: at most 5 ms per message batched. The moderator scores up to 16 messages per \
         forward pass (`--moderation-batch`).\n",
    );
    print!("{report}");
    if !check {
        let path = root.join("../bench/results/moderation.md");
        std::fs::write(&path, &report)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
