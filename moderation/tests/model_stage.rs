//! The model stage on the real weights (fetched by `scripts/fetch-model.sh`; `scripts/test.sh`
//! does it): candle's embeddings match sentence-transformers' within 1e-4, the committed head
//! tells toxic from clean on sentences it was not trained on, and the batcher answers every
//! request, batched or alone.

#![cfg(feature = "model")]

use std::sync::OnceLock;
use std::time::Duration;

use aether_moderation::model::{
    default_head_path, default_model_dir, Batcher, Batching, Classifier, Embedder, Head,
};

#[derive(serde::Deserialize)]
struct Reference {
    sentences: Vec<String>,
    embeddings: Vec<Vec<f32>>,
}

fn embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| {
        Embedder::load(&default_model_dir())
            .unwrap_or_else(|error| panic!("{error}: run `bash scripts/fetch-model.sh`"))
    })
}

#[test]
fn candle_embeddings_match_sentence_transformers_within_1e_4() {
    let reference: Reference =
        serde_json::from_str(include_str!("fixtures/minilm_embeddings.json"))
            .expect("the fixture is JSON");
    let texts: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    // Batched (padded to the longest) and one by one must both match.
    let batched = embedder().embed(&texts).expect("embeds");
    for (i, text) in texts.iter().enumerate() {
        let alone = embedder().embed(&[text]).expect("embeds");
        for (got, label) in [(&batched[i], "batched"), (&alone[0], "alone")] {
            assert_eq!(got.len(), 384);
            let worst = got
                .iter()
                .zip(&reference.embeddings[i])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-4, "{text:?} ({label}) differs by {worst}");
        }
    }
}

#[test]
fn odd_inputs_get_unit_vectors_and_huge_ones_are_truncated() {
    let huge = "word ".repeat(5_000);
    let odd = ["", " ", "\u{200b}\u{200b}", "🔥🔥🔥", huge.as_str()];
    for vector in embedder().embed(&odd).expect("embeds") {
        let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3 || norm == 0.0, "norm {norm}");
        assert!(vector.iter().all(|x| x.is_finite()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_flags_abuse_and_passes_chat_and_the_batcher_answers_everyone() {
    let head = Head::load(&default_head_path()).expect("the committed head loads");
    let embedder = Embedder::load(&default_model_dir()).expect("the model loads");
    let classifier = Classifier::new(embedder, head).expect("dimensions agree");
    let (batcher, _task) = Batcher::spawn(
        classifier,
        Batching {
            max_size: 8,
            max_wait: Duration::from_millis(20),
        },
    );
    let texts = [
        ("you pathetic moron, nobody here can stand you", true),
        ("go away you worthless loser", true),
        ("the release went out this morning, thanks all", false),
        (
            "could you review my pull request when you have time?",
            false,
        ),
    ];
    let answers = futures_join(&batcher, &texts).await;
    for ((text, toxic), score) in texts.iter().zip(answers) {
        let score = score.expect("scored");
        assert!(score.model_version.starts_with("all-MiniLM-L6-v2"));
        assert_eq!(score.toxic, *toxic, "{text:?} scored {}", score.score);
    }
}

async fn futures_join(
    batcher: &Batcher,
    texts: &[(&str, bool)],
) -> Vec<Result<aether_moderation::model::Score, aether_moderation::model::ModelError>> {
    let handles: Vec<_> = texts
        .iter()
        .map(|(text, _)| {
            let batcher = batcher.clone();
            let text = (*text).to_owned();
            tokio::spawn(async move { batcher.score(text).await })
        })
        .collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("joined"));
    }
    out
}

#[test]
fn a_missing_model_is_reported_not_panicked() {
    let dir = std::env::temp_dir().join("aether-no-model-here");
    let error = Embedder::load(&dir).expect_err("nothing to load");
    assert!(
        error.to_string().contains("scripts/fetch-model.sh"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_through_the_batcher_get_a_score_in_one_batch_and_never_crash_it() {
    let head = Head::load(&default_head_path()).expect("the committed head loads");
    let embedder = Embedder::load(&default_model_dir()).expect("the model loads");
    let classifier = Classifier::new(embedder, head).expect("dimensions agree");
    let (batcher, _task) = Batcher::spawn(classifier, Batching::default());
    let huge = "\u{1F525}".repeat(20_000);
    let zero_width = "y\u{200b}o\u{200b}u\u{200b} i\u{200b}d\u{200b}i\u{200b}o\u{200b}t";
    let texts: Vec<(&str, bool)> = [
        "",
        " \t ",
        "\u{200b}\u{200c}\u{200d}\u{2060}",
        "🔥😡🔥",
        zero_width,
        "ты ничтожество",
        "\u{202e}reversed\u{202c}",
        huge.as_str(),
    ]
    .into_iter()
    .map(|text| (text, false))
    .collect();
    for (answer, (text, _)) in futures_join(&batcher, &texts).await.into_iter().zip(&texts) {
        let score = answer.unwrap_or_else(|error| panic!("{text:?}: {error}"));
        assert!(
            score.score.is_finite() && (0.0..=1.0).contains(&score.score),
            "{text:?} scored {}",
            score.score
        );
    }
    // The stage still answers after them.
    let after = batcher.score("thanks, that helped".to_owned()).await;
    assert!(after.is_ok(), "{after:?}");
}
