//! Trains the moderation head and evaluates it, reproducibly.
//!
//! Reads `moderation/data/toxicity.jsonl` (see `moderation/data/generate.py`), embeds every text
//! with all-MiniLM-L6-v2, fits a logistic regression on the `train` split (full-batch gradient
//! descent from zero weights: no randomness, the same head every run), then scores the `test`
//! split with the head and with the rule stage (`rustrict`) alone, prints precision, recall and F1
//! of both, and writes the head to `moderation/model/head.json` and the figures to
//! `moderation/results/evaluation.md`.
//!
//! When a Python with `alt-profanity-check` is at `$AETHER_PEER_PYTHON` (default
//! `.venv-peer/bin/python`), the same held-out split is scored with it too
//! (`moderation/data/eval_peer.py`) and its figures join the table.
//!
//! Usage: cargo run -p aether-moderation --features model --bin train-head [-- --check]
//! `--check` trains and evaluates without writing anything.

use std::path::Path;
use std::time::Instant;

use aether_moderation::model::{default_model_dir, Embedder, Head};
use aether_moderation::{RuleStage, Screening};

const EPOCHS: usize = 2_000;
const LEARNING_RATE: f32 = 2.0;
const L2: f32 = 1e-4;
const THRESHOLD: f32 = 0.5;

#[derive(serde::Deserialize)]
struct Example {
    text: String,
    label: u8,
    split: String,
}

#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
    tn: usize,
}

impl Counts {
    fn add(&mut self, predicted: bool, actual: bool) {
        match (predicted, actual) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
    }
    fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
    fn row(&self, name: &str) -> String {
        format!(
            "| {name} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {} |",
            self.precision(),
            self.recall(),
            self.f1(),
            self.tp,
            self.fp,
            self.fn_,
            self.tn
        )
    }
}

/// The peer filter's counts on the held-out split, if its Python is installed.
fn peer(root: &Path) -> Option<Counts> {
    let python = std::env::var_os("AETHER_PEER_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("../.venv-peer/bin/python"));
    if !python.exists() {
        eprintln!(
            "alt-profanity-check not installed at {}: no peer row",
            python.display()
        );
        return None;
    }
    let output = std::process::Command::new(python)
        .arg(root.join("data/eval_peer.py"))
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    let counts: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let get = |key: &str| counts[key].as_u64().and_then(|n| usize::try_from(n).ok());
    Some(Counts {
        tp: get("tp")?,
        fp: get("fp")?,
        fn_: get("fn")?,
        tn: get("tn")?,
    })
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn train(xs: &[Vec<f32>], ys: &[f32]) -> (Vec<f32>, f32) {
    let dims = xs.first().map_or(0, Vec::len);
    let n = xs.len() as f32;
    let (mut w, mut b) = (vec![0.0f32; dims], 0.0f32);
    for _ in 0..EPOCHS {
        let mut grad_w = vec![0.0f32; dims];
        let mut grad_b = 0.0f32;
        for (x, y) in xs.iter().zip(ys) {
            let p = sigmoid(w.iter().zip(x).map(|(w, x)| w * x).sum::<f32>() + b);
            let error = p - y;
            for (g, xi) in grad_w.iter_mut().zip(x) {
                *g += error * xi;
            }
            grad_b += error;
        }
        for (wi, g) in w.iter_mut().zip(&grad_w) {
            *wi -= LEARNING_RATE * (g / n + L2 * *wi);
        }
        b -= LEARNING_RATE * grad_b / n;
    }
    (w, b)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let check = std::env::args().any(|arg| arg == "--check");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = std::fs::read_to_string(root.join("data/toxicity.jsonl"))?;
    let examples: Vec<Example> = data
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let model_dir = default_model_dir();
    let embedder = Embedder::load(&model_dir)?;

    let started = Instant::now();
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let mut embeddings = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(32) {
        embeddings.extend(embedder.embed(chunk)?);
    }
    let embed_ms = started.elapsed().as_secs_f64() * 1e3 / texts.len() as f64;
    // Latency of one message alone (what a quiet server sees) over the first 64 texts.
    let sample = &texts[..texts.len().min(64)];
    let started = Instant::now();
    for text in sample {
        embedder.embed(&[text])?;
    }
    let alone_ms = started.elapsed().as_secs_f64() * 1e3 / sample.len() as f64;

    let (mut train_x, mut train_y) = (Vec::new(), Vec::new());
    for (example, embedding) in examples.iter().zip(&embeddings) {
        if example.split == "train" {
            train_x.push(embedding.clone());
            train_y.push(f32::from(example.label));
        }
    }
    let (weights, bias) = train(&train_x, &train_y);
    let head = Head {
        model_version: format!("all-MiniLM-L6-v2+logreg-{}x{}", train_x.len(), EPOCHS),
        weights,
        bias,
        threshold: THRESHOLD,
    };

    let rules = RuleStage::new();
    let (mut model, mut rule, mut train_fit) =
        (Counts::default(), Counts::default(), Counts::default());
    for (example, embedding) in examples.iter().zip(&embeddings) {
        let actual = example.label == 1;
        let predicted = head.score(embedding) >= head.threshold;
        if example.split == "train" {
            train_fit.add(predicted, actual);
            continue;
        }
        model.add(predicted, actual);
        let flagged = matches!(rules.screen(&example.text), Screening::Offensive { .. });
        rule.add(flagged, actual);
    }
    let test_n = model.tp + model.fp + model.fn_ + model.tn;
    let peer_row = peer(root)
        .map(|counts| format!("\n{}", counts.row("alt-profanity-check 1.x (peer, PyPI)")))
        .unwrap_or_default();
    let report = format!(
        "# Moderation head: evaluation\n\n\
         Written by `cargo run -p aether-moderation --features model --bin train-head` from \
         `moderation/data/toxicity.jsonl` ({} examples: {} train, {} held-out test; test templates \
         never appear in training). Threshold {:.2}; model `{}`.\n\n\
         | on the held-out test set | precision | recall | F1 | TP | FP | FN | TN |\n\
         |---|---|---|---|---|---|---|---|\n\
         {}\n{}{}\n\n\
         Fit on the training split (not a quality figure): F1 {:.3}.\n\n\
         Model stage cost on this machine ({} threads available, this build): {:.2} ms per \
         message alone (batch of 1), {:.2} ms per message in batches of 32 (embedding; the head \
         adds one 384-term dot product).\n",
        examples.len(),
        train_x.len(),
        test_n,
        head.threshold,
        head.model_version,
        model.row("MiniLM + logistic regression (model stage)"),
        rule.row("rustrict alone (rule stage)"),
        peer_row,
        train_fit.f1(),
        std::thread::available_parallelism().map_or(1, usize::from),
        alone_ms,
        embed_ms,
    );
    println!("{report}");
    if !check {
        std::fs::write(
            root.join("model/head.json"),
            serde_json::to_string_pretty(&head)? + "\n",
        )?;
        std::fs::write(root.join("results/evaluation.md"), report)?;
    }
    Ok(())
}
