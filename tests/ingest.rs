//! The ingest pipeline and `frontdesk ingest`: the real embedding model, real files written by
//! each test, real SQLite and usearch files in a temporary data directory.

mod common;

use common::{assert_clean_failure, frontdesk, stderr, stdout};
use frontdesk::kb::{ingest, IngestOptions, IngestReport, KbDir, NoProgress, Store, VectorIndex};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

const REFUND: &str = "Refunds are paid back to the original card within five working days.";

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Two Markdown files and one HTML file.
fn tiny_folder(dir: &Path) {
    write(
        dir,
        "billing.md",
        &format!("# Billing\n\n## Refunds\n\n{REFUND}\n\n## Invoices\n\nInvoices are emailed on the first day of each month.\n"),
    );
    write(
        dir,
        "account.md",
        "# Account\n\nTo reset your password, open Settings and choose Security.\n",
    );
    write(
        dir,
        "shipping.html",
        "<html><head><title>Shipping</title></head><body><main><h1>Shipping</h1>\
         <p>Parcels leave our warehouse every weekday at noon.</p></main></body></html>",
    );
}

fn run_ingest(data: &Path, name: &str, root: &Path) -> IngestReport {
    let kb = KbDir::new(data, name).unwrap();
    let options = IngestOptions::new(common::repo_models());
    ingest(&kb, &[root.to_path_buf()], &options, &NoProgress).expect("ingest succeeds")
}

/// The published store and vector index of a knowledge base.
fn open(data: &Path, name: &str) -> (u64, Store, VectorIndex) {
    let generation = KbDir::new(data, name).unwrap().open_current().unwrap();
    let store = Store::open_read_only(&generation.store_path()).unwrap();
    let vectors = VectorIndex::load(&generation.vectors_path(), 384).unwrap();
    (generation.number, store, vectors)
}

fn cli_ingest(data: &Path, name: &str, paths: &[&Path]) -> Output {
    let mut cmd = frontdesk();
    cmd.arg("--data-dir")
        .arg(data)
        .args(["ingest", "--kb", name]);
    for p in paths {
        cmd.arg(p);
    }
    cmd.output().unwrap()
}

/// Every chunk id of the store.
fn chunk_ids(store: &Store, paths: &[&str]) -> Vec<i64> {
    let mut ids = Vec::new();
    for path in paths {
        let hits = store.bm25_search(path, 1000).unwrap();
        ids.extend(hits.into_iter().map(|(id, _)| id));
    }
    ids
}

#[test]
fn tiny_folder_is_ingested_searchable_and_indexed() {
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    tiny_folder(docs.path());
    let started = Instant::now();
    let report = run_ingest(data.path(), "tiny", docs.path());
    eprintln!(
        "tiny folder: {} chunks in {:.2}s wall ({:.2}s in ingest, {:.1} chunks/s)",
        report.chunks_embedded,
        started.elapsed().as_secs_f64(),
        report.seconds,
        report.chunks_per_second()
    );
    assert_eq!(report.files_seen, 3);
    assert_eq!(
        (
            report.added,
            report.updated,
            report.unchanged,
            report.removed
        ),
        (3, 0, 0, 0)
    );
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.documents, 3);
    assert!(report.chunks >= 3, "{report:?}");
    assert_eq!(report.chunks_embedded as u64, report.chunks);

    let (number, store, vectors) = open(data.path(), "tiny");
    assert_eq!(number, report.generation);
    assert_eq!(store.counts().unwrap(), (3, report.chunks));
    assert_eq!(
        store.document_paths().unwrap(),
        vec!["account.md", "billing.md", "shipping.html"]
    );
    let hits = store.bm25_search("original card", 3).unwrap();
    let best = store.chunk(hits[0].0).unwrap().unwrap();
    assert_eq!(best.path, "billing.md");
    assert!(best.text.contains(REFUND), "{}", best.text);
    assert_eq!(vectors.len() as u64, report.chunks, "one vector per chunk");
    for id in chunk_ids(&store, &["billing", "password", "warehouse"]) {
        assert!(vectors.contains(id), "chunk {id} has no vector");
    }
    let manifest = KbDir::new(data.path(), "tiny")
        .unwrap()
        .open_current()
        .unwrap()
        .read_manifest()
        .unwrap();
    assert_eq!(manifest.dimensions, 384);
    assert_eq!(manifest.embedding_model.name, "minilm-l6");
    assert_eq!(manifest.embedding_model.sha256.len(), 64);
    assert!(manifest.chunking.max_tokens <= 254);
    assert_eq!((manifest.documents, manifest.chunks), (3, report.chunks));
}

#[test]
fn reingest_embeds_only_what_changed_and_drops_what_is_gone() {
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    tiny_folder(docs.path());
    let first = run_ingest(data.path(), "inc", docs.path());

    let again = run_ingest(data.path(), "inc", docs.path());
    assert_eq!(again.chunks_embedded, 0);
    assert_eq!(
        (again.added, again.updated, again.unchanged, again.removed),
        (0, 0, 3, 0)
    );
    assert_eq!(again.chunks, first.chunks);
    assert_eq!(again.generation, first.generation + 1);

    write(
        docs.path(),
        "account.md",
        "# Account\n\nTo change your email address, open Settings and choose Profile.\n",
    );
    let changed = run_ingest(data.path(), "inc", docs.path());
    assert_eq!(
        (
            changed.added,
            changed.updated,
            changed.unchanged,
            changed.removed
        ),
        (0, 1, 2, 0)
    );
    let (_, store, vectors) = open(data.path(), "inc");
    let account = store.bm25_search("email address Profile", 10).unwrap();
    let account_chunks: Vec<_> = store
        .chunks(&account.iter().map(|h| h.0).collect::<Vec<_>>())
        .unwrap()
        .into_iter()
        .filter(|c| c.path == "account.md")
        .collect();
    assert_eq!(changed.chunks_embedded, account_chunks.len());
    assert!(account_chunks[0].text.contains("email address"));
    assert!(store.bm25_search("reset password", 10).unwrap().is_empty());
    assert_eq!(vectors.len() as u64, changed.chunks);
    drop((store, vectors));

    let (_, store, _) = open(data.path(), "inc");
    let billing_ids = chunk_ids(&store, &["Refunds Invoices Billing"]);
    assert!(!billing_ids.is_empty());
    drop(store);
    std::fs::remove_file(docs.path().join("billing.md")).unwrap();
    let removed = run_ingest(data.path(), "inc", docs.path());
    assert_eq!(
        (
            removed.added,
            removed.updated,
            removed.unchanged,
            removed.removed
        ),
        (0, 0, 2, 1)
    );
    assert_eq!(removed.chunks_embedded, 0);
    let (_, store, vectors) = open(data.path(), "inc");
    assert_eq!(
        store.document_paths().unwrap(),
        vec!["account.md", "shipping.html"]
    );
    assert!(store.bm25_search("original card", 10).unwrap().is_empty());
    for id in billing_ids {
        assert!(
            store.chunk(id).unwrap().is_none(),
            "chunk {id} still stored"
        );
        assert!(!vectors.contains(id), "vector {id} still indexed");
    }
    assert_eq!(vectors.len() as u64, store.counts().unwrap().1);
}

/// Generation number and document paths of a published knowledge base.
fn snapshot(data: &Path, name: &str) -> (u64, Vec<String>) {
    let (number, store, _) = open(data, name);
    (number, store.document_paths().unwrap())
}

#[test]
fn bad_input_fails_cleanly_and_keeps_the_previous_kb() {
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    tiny_folder(docs.path());
    let out = cli_ingest(data.path(), "keep", &[docs.path()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stdout(&out);
    assert!(
        summary.contains("3 files") && summary.contains("3 added") && summary.contains("chunks/s"),
        "{summary}"
    );
    let before = snapshot(data.path(), "keep");

    let empty = tempfile::tempdir().unwrap();
    let out = cli_ingest(data.path(), "keep", &[empty.path()]);
    assert_clean_failure(&out, "no documents to ingest");
    assert!(stderr(&out).contains(&empty.path().display().to_string()));
    assert_eq!(snapshot(data.path(), "keep"), before);

    let missing: PathBuf = empty.path().join("does-not-exist");
    let out = cli_ingest(data.path(), "keep", &[&missing]);
    assert_clean_failure(&out, "does not exist");
    assert_eq!(snapshot(data.path(), "keep"), before);

    let junk = tempfile::tempdir().unwrap();
    std::fs::write(junk.path().join("data.txt"), b"\x00\x01\x02binary\x00").unwrap();
    std::fs::write(junk.path().join("empty.md"), b"").unwrap();
    let out = cli_ingest(data.path(), "keep", &[junk.path()]);
    assert_clean_failure(&out, "(2 files skipped)");
    assert_eq!(snapshot(data.path(), "keep"), before);

    let out = frontdesk()
        .arg("--data-dir")
        .arg(data.path())
        .args(["ingest", "--kb", "keep", "--verbose"])
        .arg(junk.path())
        .arg(docs.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("data.txt: binary content") && err.contains("empty.md: empty file"),
        "{err}"
    );
    assert!(stdout(&out).contains("3 unchanged"), "{}", stdout(&out));

    let out = cli_ingest(data.path(), "../escape", &[docs.path()]);
    assert_clean_failure(&out, "invalid knowledge-base name");
}

#[test]
fn corrupt_store_is_reported_with_what_to_do() {
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    tiny_folder(docs.path());
    run_ingest(data.path(), "broken", docs.path());
    let generation = KbDir::new(data.path(), "broken")
        .unwrap()
        .open_current()
        .unwrap();
    std::fs::write(
        generation.store_path(),
        "this is not a database, just some text ".repeat(200),
    )
    .unwrap();
    let out = cli_ingest(data.path(), "broken", &[docs.path()]);
    assert_clean_failure(&out, "is not a knowledge-base database");
    let err = stderr(&out);
    assert!(
        err.contains("delete the knowledge-base folder and ingest again"),
        "{err}"
    );
    assert!(
        err.contains(&generation.store_path().display().to_string()),
        "{err}"
    );
}

#[test]
fn corrupt_vectors_or_missing_model_fail_cleanly_and_keep_the_kb() {
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    tiny_folder(docs.path());
    run_ingest(data.path(), "vec", docs.path());
    let before = snapshot(data.path(), "vec");

    let no_models = tempfile::tempdir().unwrap();
    let out = frontdesk()
        .arg("--data-dir")
        .arg(data.path())
        .arg("--models-dir")
        .arg(no_models.path())
        .args(["ingest", "--kb", "vec"])
        .arg(docs.path())
        .output()
        .unwrap();
    assert_clean_failure(&out, "scripts/fetch-models minilm-l6");
    assert_eq!(snapshot(data.path(), "vec"), before);

    let generation = KbDir::new(data.path(), "vec")
        .unwrap()
        .open_current()
        .unwrap();
    std::fs::write(generation.vectors_path(), "not an index ".repeat(100)).unwrap();
    let out = cli_ingest(data.path(), "vec", &[docs.path()]);
    assert_clean_failure(&out, "re-ingest into a new --kb name");
    assert!(
        stderr(&out).contains(&generation.vectors_path().display().to_string()),
        "{}",
        stderr(&out)
    );
    let kb = KbDir::new(data.path(), "vec").unwrap();
    assert_eq!(kb.open_current().unwrap().number, before.0);
}

#[test]
fn second_ingest_while_locked_is_refused() {
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    tiny_folder(docs.path());
    let kb = KbDir::new(data.path(), "busy").unwrap();
    let writer = kb.lock().unwrap();
    let out = cli_ingest(data.path(), "busy", &[docs.path()]);
    assert_clean_failure(&out, "another ingest is running on kb busy");
    assert!(stderr(&out).contains(&format!("pid {}", std::process::id())));
    assert!(kb.current().unwrap().is_none());
    drop(writer);
}

#[test]
fn killed_ingest_leaves_the_previous_generation_current() {
    let docs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    tiny_folder(docs.path());
    run_ingest(data.path(), "kill", docs.path());
    let before = snapshot(data.path(), "kill");

    let many = tempfile::tempdir().unwrap();
    // Enough text to keep the embedder busy for seconds even with the integer kernels.
    let filler = "Customers asking about this item should check the tracking page first, \
                  then write to support with the order number and a photo of the parcel. "
        .repeat(12);
    for i in 0..100 {
        write(
            many.path(),
            &format!("topic-{i:03}.md"),
            &format!(
                "# Topic {i}\n\nQuestion {i} is about order number {i} and its delivery.\n\n\
                 ## Details\n\nItem {i}. {filler}\n\n\
                 ## Returns\n\nItem {i} can be sent back within thirty days. {filler}\n"
            ),
        );
    }
    let kb_dir = KbDir::new(data.path(), "kill").unwrap().dir().to_path_buf();
    let mut child = frontdesk()
        .arg("--data-dir")
        .arg(data.path())
        .args(["ingest", "--kb", "kill"])
        .arg(many.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the pending generation exists (the ingest holds the lock and is embedding
    // over a thousand chunks, several seconds), then a little longer, then kill -9.
    let pending = kb_dir.join(format!("gen-{}.tmp", before.0 + 1));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pending.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(pending.exists(), "the ingest never started a generation");
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the ingest finished before it was killed"
    );
    assert!(pending.exists(), "killed mid-way: the .tmp folder is left");

    assert_eq!(
        snapshot(data.path(), "kill"),
        before,
        "old generation intact"
    );

    let out = cli_ingest(data.path(), "kill", &[many.path()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("100 added"), "{}", stdout(&out));
    let (number, store, vectors) = open(data.path(), "kill");
    assert!(number > before.0);
    assert_eq!(store.counts().unwrap().0, 100);
    assert_eq!(vectors.len() as u64, store.counts().unwrap().1);
    let leftovers: Vec<_> = std::fs::read_dir(&kb_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
