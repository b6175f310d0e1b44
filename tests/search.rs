//! Search and retrieval evaluation over a small knowledge base built by the test itself with
//! the store, vector and layout APIs and real all-MiniLM-L6-v2 vectors.

mod common;

use frontdesk::kb::embedder::MODEL_NAME;
use frontdesk::kb::layout::{ChunkSettings, EmbeddingModel, FORMAT_VERSION};
use frontdesk::kb::{
    Chunk, ChunkOptions, DocumentRecord, Embedder, Hit, KbDir, KbError, Manifest, Mode, Searcher,
    Store, VectorIndex,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

const KB: &str = "help";

/// (path, title, [(heading, anchor, text)])
type Doc = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str, &'static str)],
);

const DOCS: &[Doc] = &[
    (
        "billing/refunds.md",
        "Refunds",
        &[
            (
                "Refund policy",
                "refund-policy",
                "You can request a refund within 30 days of purchase. Refunds are returned to \
                 the original card within five business days.",
            ),
            (
                "Refund exceptions",
                "refund-exceptions",
                "Gift cards and downloaded software are not refundable.",
            ),
        ],
    ),
    (
        "shipping/delivery.md",
        "Shipping",
        &[(
            "Delivery times",
            "delivery-times",
            "Parcels are dispatched from our warehouse within two days. International shipping \
             to Europe and Asia takes up to ten days. Tracking numbers are emailed once the \
             parcel leaves the warehouse.",
        )],
    ),
    (
        "account/passwords.md",
        "Passwords",
        &[(
            "Reset your password",
            "reset-your-password",
            "To reset your password, open Settings, choose Security and click Reset password. \
             A reset link is emailed to you and expires after one hour.",
        )],
    ),
    (
        "legal/privacy.md",
        "Privacy",
        &[(
            "Personal data",
            "personal-data",
            "We store personal data only on servers located within the European Union. You may \
             ask us to delete all personal data we hold about you; we erase it within 30 days. \
             We never sell data to advertisers.",
        )],
    ),
    (
        "support/hours.md",
        "Opening hours",
        &[(
            "Phone support",
            "phone-support",
            "The support team answers phone calls Monday to Friday from 9:00 to 17:00 Central \
             European Time. On public holidays the hotline is closed.",
        )],
    ),
    (
        "products/battery.md",
        "Battery care",
        &[(
            "Storage",
            "storage",
            "Charge the battery to 80 percent for long storage. Avoid leaving the device inside \
             a hot car; heat shortens battery life.",
        )],
    ),
];

struct Fixture {
    data_dir: PathBuf,
    searcher: Mutex<Searcher>,
}

fn embedder() -> Embedder {
    Embedder::load(&common::repo_models()).unwrap_or_else(|e| {
        panic!("embedding model unavailable: {e}\n(run: scripts/fetch-models minilm-l6)")
    })
}

fn manifest(model: &str, documents: u64, chunks: u64) -> Manifest {
    Manifest {
        format_version: FORMAT_VERSION,
        embedding_model: EmbeddingModel {
            name: model.to_string(),
            sha256: String::new(),
            text: String::new(),
        },
        dimensions: 384,
        chunking: ChunkSettings::from(&ChunkOptions::default()),
        created: 0,
        documents,
        chunks,
    }
}

/// Builds `help` (the documents above), `oldmodel` (a manifest naming another model) and
/// `empty` once.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let data_dir = tempfile::tempdir().unwrap().keep();
        let embedder = embedder();
        build_kb(&data_dir, &embedder);

        let old = KbDir::new(&data_dir, "oldmodel").unwrap();
        let mut writer = old.lock().unwrap();
        let pending = writer.begin().unwrap();
        pending
            .write_manifest(&manifest("some-other-model", 0, 0))
            .unwrap();
        writer.publish(pending).unwrap();

        // `empty`: a published generation with a store of no documents and no vector file.
        let empty = KbDir::new(&data_dir, "empty").unwrap();
        let mut writer = empty.lock().unwrap();
        let pending = writer.begin().unwrap();
        drop(Store::create(&pending.store_path()).unwrap());
        pending.write_manifest(&manifest(MODEL_NAME, 0, 0)).unwrap();
        writer.publish(pending).unwrap();

        let kb = KbDir::new(&data_dir, KB).unwrap();
        let searcher = Searcher::open(&kb, embedder).unwrap();
        Fixture {
            data_dir,
            searcher: Mutex::new(searcher),
        }
    })
}

fn build_kb(data_dir: &Path, embedder: &Embedder) {
    let kb = KbDir::new(data_dir, KB).unwrap();
    let mut writer = kb.lock().unwrap();
    let pending = writer.begin().unwrap();
    let mut store = Store::create(&pending.store_path()).unwrap();
    let mut vectors = VectorIndex::create(embedder.dimensions(), 16).unwrap();
    let mut total = 0;
    for (path, title, sections) in DOCS {
        let chunks: Vec<Chunk> = sections
            .iter()
            .enumerate()
            .map(|(i, (heading, anchor, text))| Chunk {
                path: PathBuf::from(path),
                title: title.to_string(),
                heading_path: vec![title.to_string(), heading.to_string()],
                anchor: Some(anchor.to_string()),
                page: None,
                section: i,
                byte_range: 0..text.len(),
                text: text.to_string(),
                tokens: text.split_whitespace().count(),
            })
            .collect();
        let record = DocumentRecord {
            path: path.to_string(),
            title: title.to_string(),
            format: "markdown".into(),
            sha256: "0".repeat(64),
            size: 1,
            mtime: 0,
        };
        let (_, ids) = store.put_document(&record, &chunks).unwrap();
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        for (id, v) in ids.iter().zip(embedder.embed_documents(&texts).unwrap()) {
            vectors.add(*id, &v).unwrap();
        }
        total += chunks.len() as u64;
    }
    drop(store);
    vectors.save(&pending.vectors_path()).unwrap();
    pending
        .write_manifest(&manifest(MODEL_NAME, DOCS.len() as u64, total))
        .unwrap();
    writer.publish(pending).unwrap();
}

fn search(query: &str, k: usize, mode: Mode) -> Vec<Hit> {
    fixture()
        .searcher
        .lock()
        .unwrap()
        .search(query, k, mode)
        .unwrap()
}

fn paths(hits: &[Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.path.as_str()).collect()
}

#[test]
fn paraphrase_without_shared_words_is_found_by_meaning() {
    for (query, page) in [
        ("forgot my login secret", "account/passwords.md"),
        ("I want my money back", "billing/refunds.md"),
    ] {
        // No word of the query is in the page: keywords alone cannot find it.
        let bm25 = search(query, 10, Mode::Bm25);
        assert!(!paths(&bm25).contains(&page), "{query}: bm25 {bm25:?}");
        let vector = search(query, 3, Mode::Vector);
        assert_eq!(vector[0].path, page, "{query}: vector {vector:?}");
        let hybrid = search(query, 3, Mode::Hybrid);
        assert_eq!(hybrid[0].path, page, "{query}: hybrid {hybrid:?}");
    }
}

#[test]
fn keyword_question_is_found_by_bm25_with_location_and_snippet() {
    let hits = search("parcel tracking", 3, Mode::Bm25);
    let top = &hits[0];
    assert_eq!(top.path, "shipping/delivery.md", "{hits:?}");
    assert_eq!(top.title, "Shipping");
    assert_eq!(top.heading_path, vec!["Shipping", "Delivery times"]);
    assert_eq!(top.anchor.as_deref(), Some("delivery-times"));
    assert_eq!(top.page, None);
    assert!(top.score > 0.0);
    assert!(top.snippet.to_lowercase().contains("tracking"), "{top:?}");
    assert!(top.snippet.chars().count() <= 200);
}

#[test]
fn hybrid_returns_each_page_once_best_first() {
    let hits = search("refund for software", 10, Mode::Hybrid);
    let all = paths(&hits);
    let distinct: HashSet<&str> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "{all:?}");
    assert_eq!(all.len(), DOCS.len(), "every page once: {all:?}");
    assert_eq!(all[0], "billing/refunds.md");
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert_eq!(search("refund", 2, Mode::Hybrid).len(), 2);
}

#[test]
fn empty_query_is_a_typed_error() {
    let searcher = fixture().searcher.lock().unwrap();
    assert!(matches!(
        searcher.search("  \n", 5, Mode::Hybrid),
        Err(KbError::EmptyQuery)
    ));
}

#[test]
fn opening_a_missing_kb_names_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let kb = KbDir::new(dir.path(), "nothing").unwrap();
    let err = Searcher::open(&kb, embedder()).unwrap_err();
    assert!(matches!(err, KbError::KbNotFound { .. }), "{err}");
    assert!(err.to_string().contains("frontdesk ingest"), "{err}");
}

fn cli(args: &[&str]) -> std::process::Output {
    common::frontdesk()
        .arg("--data-dir")
        .arg(&fixture().data_dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_search_json_lists_hits() {
    let out = cli(&[
        "search",
        "forgot my login secret",
        "--kb",
        KB,
        "--k",
        "3",
        "--json",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let hits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0]["path"], "account/passwords.md");
    for key in [
        "chunk_id",
        "path",
        "title",
        "heading_path",
        "anchor",
        "page",
        "score",
        "snippet",
    ] {
        assert!(hits[0].get(key).is_some(), "missing {key}");
    }
}

#[test]
fn cli_search_text_shows_location_headings_and_snippet() {
    let out = cli(&["search", "parcel tracking", "--kb", KB, "--mode", "bm25"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = common::stdout(&out);
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(" 1. shipping/delivery.md#delivery-times"),
        "{text}"
    );
    assert!(text.contains("Shipping › Delivery times"), "{text}");
}

#[test]
fn cli_search_missing_kb_is_a_clean_error() {
    let out = cli(&["search", "refund", "--kb", "does-not-exist"]);
    common::assert_clean_failure(&out, "frontdesk ingest");
}

#[test]
fn cli_search_empty_query_is_a_clean_error() {
    let out = cli(&["search", "   ", "--kb", KB]);
    common::assert_clean_failure(&out, "empty");
}

#[test]
fn cli_search_other_embedding_model_says_reingest() {
    let out = cli(&["search", "refund", "--kb", "oldmodel"]);
    common::assert_clean_failure(&out, "re-ingest");
}

#[test]
fn cli_search_empty_kb_finds_nothing() {
    for mode in ["bm25", "vector", "hybrid"] {
        let out = cli(&[
            "search", "refund", "--kb", "empty", "--mode", mode, "--json",
        ]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        let hits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(hits, serde_json::json!([]), "{mode}");
    }
    let out = cli(&["search", "refund", "--kb", "empty"]);
    assert!(common::stdout(&out).contains("no matches"));
}

fn write(name: &str, text: &str) -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn cli_eval_retrieval_json() {
    let questions = write(
        "q.jsonl",
        concat!(
            r#"{"id": "1", "question": "I want my money back", "relevant": ["billing/refunds.md"], "answer": "Within 30 days.", "answerable": true}"#,
            "\n",
            r#"{"id": "2", "question": "forgot my login secret", "relevant": ["account/passwords.md"], "answer": "Use Settings.", "answerable": true}"#,
            "\n\n",
            r#"{"id": "3", "question": "where is my parcel tracking number", "relevant": ["shipping/delivery.md"], "answer": "By email.", "answerable": true}"#,
            "\n",
            r#"{"id": "4", "question": "Do you sell my personal data?", "relevant": ["legal/privacy.md", "support/hours.md"], "answer": "No.", "answerable": true}"#,
            "\n",
            r#"{"id": "5", "question": "What is the CEO's favourite colour?", "relevant": [], "answer": null, "answerable": false}"#,
            "\n",
        ),
    );
    let out = cli(&[
        "eval",
        "retrieval",
        "--kb",
        KB,
        "--questions",
        questions.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let top: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(top, vec!["modes", "questions"]);
    assert_eq!(report["questions"], 4);
    let modes = report["modes"].as_object().unwrap();
    let names: HashSet<&str> = modes.keys().map(String::as_str).collect();
    assert_eq!(names, HashSet::from(["bm25", "vector", "hybrid"]));
    for scores in modes.values() {
        let keys: HashSet<&str> = scores
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            HashSet::from([
                "recall@1",
                "recall@5",
                "recall@10",
                "mrr@10",
                "ndcg@10",
                "latency_ms"
            ])
        );
        let latency = &scores["latency_ms"];
        let (p50, p95) = (
            latency["p50"].as_f64().unwrap(),
            latency["p95"].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && p50 <= p95, "{latency}");
        for (key, v) in scores.as_object().unwrap() {
            if key == "latency_ms" {
                continue;
            }
            let v = v.as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v));
        }
    }
    assert_eq!(report["modes"]["hybrid"]["recall@10"], 1.0);
    // bm25 cannot find the two paraphrases: they share no word with their pages.
    assert!(report["modes"]["bm25"]["recall@10"].as_f64().unwrap() < 1.0);

    // --verbose lists the misses per mode: here bm25's miss of question 2.
    let out = cli(&[
        "eval",
        "retrieval",
        "--kb",
        KB,
        "--questions",
        questions.to_str().unwrap(),
        "--verbose",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = common::stdout(&out);
    assert!(
        text.contains("[bm25] 2 \"forgot my login secret\": missed account/passwords.md"),
        "{text}"
    );
    assert!(text.contains("hybrid"), "{text}");
}

#[test]
fn cli_eval_malformed_line_names_it() {
    let questions = write(
        "bad.jsonl",
        "{\"id\": \"1\", \"question\": \"refund?\", \"relevant\": [\"billing/refunds.md\"], \"answerable\": true}\n{\"id\": \"2\", \"question\": \n",
    );
    let out = cli(&[
        "eval",
        "retrieval",
        "--kb",
        KB,
        "--questions",
        questions.to_str().unwrap(),
    ]);
    common::assert_clean_failure(&out, "line 2");
}

#[test]
fn help_explains_search_and_eval_with_examples() {
    for args in [
        &["search", "--help"][..],
        &["eval", "--help"][..],
        &["eval", "retrieval", "--help"][..],
    ] {
        let out = common::frontdesk().args(args).output().unwrap();
        assert!(out.status.success(), "{}", common::stderr(&out));
        let help = common::stdout(&out);
        assert!(
            help.contains("Examples:") && help.contains(&format!("frontdesk {}", args[0])),
            "{args:?}: {help}"
        );
    }
}
