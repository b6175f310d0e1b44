//! `frontdesk ask` end to end: the built-in sample help centre ingested into a real knowledge
//! base, the real embedder, and SmolLM2 (the small test model) or Qwen 0.5B (the default).

mod common;

use common::{assert_clean_failure, frontdesk, stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

fn sample_docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample/help-centre")
}

/// A data directory holding the sample as kb "sample", ingested once for all tests.
fn data_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = frontdesk()
            .arg("--data-dir")
            .arg(dir.path())
            .args(["ingest", "--kb", "sample"])
            .arg(sample_docs())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        dir
    })
    .path()
}

fn ask(args: &[&str]) -> Output {
    frontdesk()
        .arg("--data-dir")
        .arg(data_dir())
        .arg("ask")
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

#[test]
fn empty_and_overlong_questions_fail_cleanly_before_the_model_loads() {
    assert_clean_failure(&ask(&["   ", "--kb", "sample"]), "the question is empty");
    let huge = "why ".repeat(12_500);
    assert_clean_failure(
        &ask(&[huge.as_str(), "--kb", "sample"]),
        "the question is 50000 characters long; the limit is 4000",
    );
}

#[test]
fn a_knowledge_base_that_does_not_exist_is_named_with_what_to_do() {
    let out = ask(&["Where is my parcel?", "--kb", "nope"]);
    assert_clean_failure(&out, "nope");
    assert!(
        stderr(&out).contains("frontdesk ingest"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_off_topic_request_is_handed_off_without_asking_the_model() {
    // A poem is nothing like any help article: retrieval confidence is below the threshold,
    // so no model is even loaded (a missing model would not matter).
    let out = ask(&[
        "Can you write me a short poem about autumn leaves?",
        "--kb",
        "sample",
        "--json",
        "-m",
        "smollm2-135m",
    ]);
    let v = json(&out);
    assert_eq!(v["handoff"], true, "{v}");
    let ticket = &v["ticket"];
    assert_eq!(ticket["reason"], "low_confidence");
    assert!(ticket["summary"].as_str().unwrap().contains("poem"));
    assert!(v["confidence"].as_f64().unwrap() < 0.3);
    assert_eq!(v["citations"].as_array().unwrap().len(), 0);
    assert!(v["answer"].as_str().unwrap().contains("support team"));
}

#[test]
fn asking_for_a_person_hands_off_with_the_conversation_and_candidates() {
    let v = json(&ask(&[
        "My parcel is lost, I want to talk to a real person",
        "--kb",
        "sample",
        "--json",
        "-m",
        "smollm2-135m",
    ]));
    assert_eq!(v["handoff"], true);
    assert_eq!(v["ticket"]["reason"], "customer_asked");
    let candidates = v["ticket"]["candidate_sources"].as_array().unwrap();
    assert!(
        candidates
            .iter()
            .any(|c| c["path"] == "shipping/late-or-lost-parcel.md"),
        "{candidates:?}"
    );
    assert_eq!(v["ticket"]["conversation"][0]["role"], "customer");
    assert!(v["model"]["file_sha256"].as_str().unwrap().len() == 64);
}

#[test]
fn an_empty_knowledge_base_hands_off() {
    let data = tempfile::tempdir().unwrap();
    let docs = tempfile::tempdir().unwrap();
    std::fs::write(docs.path().join("a.md"), "# A\n\nSomething.\n").unwrap();
    let ingest = |dir: &Path| {
        frontdesk()
            .arg("--data-dir")
            .arg(data.path())
            .args(["ingest", "--kb", "thin"])
            .arg(dir)
            .output()
            .unwrap()
    };
    assert!(ingest(docs.path()).status.success());
    // The only document goes away: the knowledge base is published with nothing in it.
    std::fs::remove_file(docs.path().join("a.md")).unwrap();
    std::fs::write(docs.path().join("b.md"), "# B\n\nOther.\n").unwrap();
    assert!(ingest(docs.path()).status.success());
    let out = frontdesk()
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "ask",
            "How long does delivery take?",
            "--kb",
            "thin",
            "--json",
        ])
        .args(["-m", "smollm2-135m"])
        .output()
        .unwrap();
    let v = json(&out);
    assert_eq!(v["handoff"], true, "{v}");
}

/// The product: a customer question about the sample shop answered by the default model,
/// with a citation of the article that holds the answer, the citation checked.
#[test]
fn a_sample_question_is_answered_with_a_checked_citation() {
    let v = json(&ask(&[
        "Do I have to pay customs fees when my order is delivered to Great Britain?",
        "--kb",
        "sample",
        "--json",
    ]));
    assert_eq!(v["handoff"], false, "{v}");
    let citations = v["citations"].as_array().unwrap();
    assert!(!citations.is_empty(), "{v}");
    // Two articles state it: the UK delivery article and the delivery-costs article.
    let right = [
        "shipping/shipping-to-the-uk.md",
        "shipping/shipping-costs.md",
    ];
    assert!(
        citations
            .iter()
            .all(|c| right.contains(&c["path"].as_str().unwrap())),
        "{v}"
    );
    let answer = v["answer"].as_str().unwrap();
    assert!(
        answer.to_lowercase().contains("dut"),
        "no word of duties: {answer}"
    );
    for c in citations {
        assert!(answer.contains(&format!("[{}]", c["n"])), "{answer}");
    }
    assert!(v["timings"]["ttft_s"].as_f64().unwrap() > 0.0);
}
