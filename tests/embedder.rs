//! The sentence embedder with the real all-MiniLM-L6-v2 (`scripts/fetch-models minilm-l6`).

mod common;

use frontdesk::kb::chunker::TokenCounter;
use frontdesk::kb::embedder::{Embedder, Precision, MAX_SEQUENCE_TOKENS};
use std::sync::OnceLock;

fn embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| {
        Embedder::load(&common::repo_models()).unwrap_or_else(|e| {
            panic!("embedding model unavailable: {e}\n(run: scripts/fetch-models minilm-l6)")
        })
    })
}

/// candle's f32 BERT: the reference the integer engine is held to.
fn reference() -> &'static Embedder {
    static REFERENCE: OnceLock<Embedder> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        Embedder::load_with(&common::repo_models(), Precision::F32).unwrap_or_else(|e| {
            panic!("embedding model unavailable: {e}\n(run: scripts/fetch-models minilm-l6)")
        })
    })
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    // The vectors are unit length, so the dot product is the cosine.
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn vectors_have_384_dimensions_and_unit_length() {
    let e = embedder();
    assert_eq!(e.dimensions(), 384);
    let docs = e
        .embed_documents(&[
            "Reset your password from the login page.",
            "Shipping takes 3 days.",
        ])
        .unwrap();
    let query = e.embed_query("How do I reset my password?").unwrap();
    for v in docs.iter().chain(std::iter::once(&query)) {
        assert_eq!(v.len(), 384);
        assert!(v.iter().all(|x| x.is_finite()));
        assert!((norm(v) - 1.0).abs() < 1e-4, "norm {}", norm(v));
    }
    // Not a constant vector: different texts give different vectors.
    assert!(max_abs_diff(&docs[0], &docs[1]) > 1e-2);
}

#[test]
fn paraphrases_are_closer_than_unrelated_sentences() {
    let e = embedder();
    let money = e.embed_query("How do I get my money back?").unwrap();
    let refund = e.embed_query("What is your refund policy?").unwrap();
    let giraffe = e
        .embed_query("The giraffe is the tallest land animal.")
        .unwrap();
    let related = cosine(&money, &refund);
    let unrelated = cosine(&money, &giraffe);
    assert!(
        related > unrelated + 0.2,
        "paraphrase {related} vs unrelated {unrelated}"
    );
}

#[test]
fn batching_with_very_different_lengths_matches_one_at_a_time() {
    let e = embedder();
    let long = "Our support team answers every ticket within one business day. ".repeat(12);
    let texts = [
        "Hi",
        long.as_str(),
        "Where can I download my invoice?",
        "",
        "Billing questions go to the finance team, who reply by email.",
    ];
    let batched = e.embed_documents(&texts).unwrap();
    assert_eq!(batched.len(), texts.len());
    for (text, together) in texts.iter().zip(&batched) {
        let alone = e.embed_query(text).unwrap();
        let diff = max_abs_diff(&alone, together);
        assert!(diff < 1e-4, "{text:?}: batched differs by {diff}");
    }
}

#[test]
fn more_texts_than_one_batch_keep_their_order() {
    let e = embedder();
    let texts: Vec<String> = (0..70)
        .map(|i| format!("Ticket number {i}: {}", "please help ".repeat(i % 9)))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let all = e.embed_documents(&refs).unwrap();
    assert_eq!(all.len(), 70);
    for i in [0, 31, 32, 33, 69] {
        let alone = e.embed_query(refs[i]).unwrap();
        let diff = max_abs_diff(&alone, &all[i]);
        assert!(diff < 1e-4, "text {i} out of place (diff {diff})");
    }
}

#[test]
fn a_5000_word_text_is_truncated_not_an_error() {
    let e = embedder();
    let words: Vec<String> = (0..5000).map(|i| format!("word{}", i % 97)).collect();
    let huge = words.join(" ");
    assert!(e.token_counter().count(&huge) > MAX_SEQUENCE_TOKENS);
    let v = e.embed_query(&huge).unwrap();
    assert!((norm(&v) - 1.0).abs() < 1e-4);
    // Truncation keeps the start: what follows the window changes nothing.
    let longer = format!("{huge} completely different trailing words about giraffes");
    let w = e.embed_query(&longer).unwrap();
    assert!(max_abs_diff(&v, &w) < 1e-5);
}

#[test]
fn empty_text_gives_a_finite_unit_vector() {
    let e = embedder();
    for text in ["", "   \n\t"] {
        let v = e.embed_query(text).unwrap();
        assert_eq!(v.len(), 384);
        assert!(v.iter().all(|x| x.is_finite()), "{text:?} gave NaN");
        // Documented: the embedding of [CLS] [SEP], normalised.
        assert!((norm(&v) - 1.0).abs() < 1e-4, "{text:?} norm {}", norm(&v));
    }
    assert!(e.embed_documents(&[]).unwrap().is_empty());
}

#[test]
fn embeddings_are_deterministic() {
    let e = embedder();
    let text = "Can I change the delivery address after ordering?";
    let a = e.embed_query(text).unwrap();
    let b = e.embed_query(text).unwrap();
    let c = e.embed_documents(&[text, text]).unwrap();
    assert_eq!(a, b);
    assert!(max_abs_diff(&a, &c[0]) < 1e-4);
    assert!(max_abs_diff(&c[0], &c[1]) < 1e-6);
}

#[test]
fn token_counter_counts_wordpieces_without_special_tokens() {
    let e = embedder();
    let counter = e.token_counter();
    assert_eq!(counter.count(""), 0);
    assert_eq!(counter.count("hello world"), 2);
    // An unusual word splits into several WordPieces: more tokens than words.
    assert!(counter.count("unbelievably hyperparameterized") > 2);
}

#[test]
fn a_missing_model_folder_names_the_fetch_command() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-models-here");
    let err = Embedder::load(&missing).unwrap_err().to_string();
    assert!(err.contains("scripts/fetch-models minilm-l6"), "{err}");
    assert!(err.contains("not downloaded"), "{err}");
}

#[test]
fn a_corrupt_model_file_is_reported_with_the_fetch_command() {
    let dir = tempfile::tempdir().unwrap();
    let models = common::repo_models();
    let sub = dir.path().join("all-minilm-l6-v2");
    std::fs::create_dir(&sub).unwrap();
    for name in ["config.json", "tokenizer.json"] {
        std::fs::copy(models.join("all-minilm-l6-v2").join(name), sub.join(name)).unwrap();
    }
    // Right name, wrong size: a truncated download.
    std::fs::write(sub.join("model.safetensors"), b"not a model").unwrap();
    let err = Embedder::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
    assert!(err.contains("scripts/fetch-models minilm-l6"), "{err}");
}

/// The similarity matrix printed by sentence-transformers' quickstart for all-MiniLM-L6-v2
/// (PyTorch pipeline), to four decimals: an end-to-end check against the reference
/// implementation, not only of properties. candle's f32 model matches it to rounding; the
/// default integer engine to about a hundredth.
#[test]
fn similarities_match_the_sentence_transformers_reference() {
    let want = [0.6660, 0.1046, 0.1411];
    for (e, tolerance) in [(reference(), 6e-4), (embedder(), 0.02)] {
        let v = e
            .embed_documents(&[
                "The weather is lovely today.",
                "It's so sunny outside!",
                "He drove to the stadium.",
            ])
            .unwrap();
        let got = [
            cosine(&v[0], &v[1]),
            cosine(&v[0], &v[2]),
            cosine(&v[1], &v[2]),
        ];
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() < tolerance,
                "{:?}: got {got:?}, reference {want:?}",
                e.precision()
            );
        }
    }
}

/// The integer engine against candle's f32 model on real support articles (the built-in
/// sample), whole and cut to a sentence: every vector within 0.99 in cosine, and each text's
/// nearest neighbour among the others the same under both.
#[test]
fn the_integer_engine_agrees_with_the_f32_reference_on_real_documents() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample/help-centre");
    let mut texts = Vec::new();
    for entry in walkdir::WalkDir::new(&root).sort_by_file_name() {
        let entry = entry.unwrap();
        if entry.path().extension().is_some_and(|e| e == "md") {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let first_line = text.lines().next().unwrap_or_default().to_string();
            texts.push(text);
            texts.push(first_line);
        }
    }
    assert!(
        texts.len() >= 50,
        "sample articles missing under {}",
        root.display()
    );
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert_eq!(embedder().precision(), Precision::Int8);
    let fast = embedder().embed_documents(&refs).unwrap();
    let exact = reference().embed_documents(&refs).unwrap();
    let nearest = |vs: &[Vec<f32>], i: usize| {
        (0..vs.len())
            .filter(|&j| j != i)
            .max_by(|&a, &b| cosine(&vs[i], &vs[a]).total_cmp(&cosine(&vs[i], &vs[b])))
            .unwrap()
    };
    let mut same_neighbour = 0;
    for i in 0..texts.len() {
        let c = cosine(&fast[i], &exact[i]);
        assert!(
            c > 0.99,
            "text {i} ({:?}…): cosine {c}",
            &texts[i][..40.min(texts[i].len())]
        );
        same_neighbour += usize::from(nearest(&fast, i) == nearest(&exact, i));
    }
    assert!(
        same_neighbour * 100 >= texts.len() * 95,
        "nearest neighbours agree for only {same_neighbour} of {}",
        texts.len()
    );
}
