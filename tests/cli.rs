//! The `frontdesk` binary as a user runs it: real models, real files, bad input.

mod common;

use common::{assert_clean_failure, frontdesk, stderr, stdout};
use std::io::Write;
use std::process::Stdio;

fn smollm_copy(dir: &std::path::Path) -> std::path::PathBuf {
    let src = common::require("smollm2-135m").path;
    let dst = dir.join(src.file_name().unwrap());
    std::fs::copy(&src, &dst).unwrap();
    dst
}

fn truncated_smollm_copy(dir: &std::path::Path, len: u64) -> std::path::PathBuf {
    let copy = smollm_copy(dir);
    let f = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
    f.set_len(len).unwrap();
    copy
}

#[test]
fn streamed_output_equals_json_output() {
    let args = [
        "generate",
        "-m",
        "smollm2-135m",
        "--seed",
        "11",
        "--max-tokens",
        "24",
        "--prompt",
        "Name two colours.",
    ];
    let streamed = frontdesk().args(args).output().unwrap();
    assert!(streamed.status.success(), "{}", stderr(&streamed));
    let json = frontdesk().args(args).arg("--json").output().unwrap();
    assert!(json.status.success(), "{}", stderr(&json));
    let parsed: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let text = parsed["text"].as_str().unwrap();
    assert!(!text.is_empty());
    assert_eq!(stdout(&streamed), format!("{text}\n"));
    assert_eq!(parsed["seed"], 11);
    assert_eq!(parsed["model"]["name"], "smollm2-135m");
}

#[test]
fn missing_model_names_the_fetch_command() {
    let empty = tempfile::tempdir().unwrap();
    let out = common::generate_hi("smollm2-135m", Some(empty.path()));
    assert_clean_failure(&out, "run: scripts/fetch-models smollm2-135m");
}

#[test]
fn default_model_is_the_catalogue_default() {
    let empty = tempfile::tempdir().unwrap();
    // No -m: the default must come from the catalogue.
    let out = frontdesk()
        .args(["generate", "--prompt", "hi", "--models-dir"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert_clean_failure(&out, "scripts/fetch-models qwen2.5-coder-0.5b");
}

#[test]
fn truncated_catalogue_file_is_reported_with_sizes() {
    let dir = tempfile::tempdir().unwrap();
    truncated_smollm_copy(dir.path(), 1_000_000);
    let out = common::generate_hi("smollm2-135m", Some(dir.path()));
    assert_clean_failure(&out, "truncated: expected 98362432 bytes, found 1000000");
}

#[test]
fn wrong_hash_is_refused_and_verify_fails() {
    let dir = tempfile::tempdir().unwrap();
    let copy = smollm_copy(dir.path());
    let mut bytes = std::fs::read(&copy).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&copy, &bytes).unwrap();
    let out = common::generate_hi("smollm2-135m", Some(dir.path()));
    assert_clean_failure(&out, "wrong sha256");
    let verify = frontdesk()
        .args(["models", "verify", "smollm2-135m", "--models-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!verify.status.success());
    assert!(
        stdout(&verify).contains("hash mismatch"),
        "{}",
        stdout(&verify)
    );
}

#[test]
fn verify_passes_on_the_fetched_file() {
    let out = frontdesk()
        .args(["models", "verify", "smollm2-135m"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 files verified"));
    let list = frontdesk().arg("models").output().unwrap();
    assert!(list.status.success());
    let line = stdout(&list)
        .lines()
        .find(|l| l.starts_with("smollm2-135m"))
        .unwrap()
        .to_string();
    assert!(line.contains("verified"), "{line}");
}

#[test]
fn a_file_that_is_not_gguf_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.gguf");
    std::fs::write(&path, "these are not weights").unwrap();
    let out = common::generate_hi(&path, None);
    assert_clean_failure(&out, "is not a GGUF file");
}

#[test]
fn truncated_real_gguf_given_by_path_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let copy = truncated_smollm_copy(dir.path(), 20_000_000);
    let out = common::generate_hi(&copy, None);
    assert_clean_failure(&out, "is truncated: its tensors need");
}

#[test]
fn nonexistent_path_and_unknown_name_are_told_apart() {
    let out = common::generate_hi("/nonexistent/model.gguf", None);
    assert_clean_failure(&out, "/nonexistent/model.gguf");
    let out = common::generate_hi("gpt-7", None);
    assert_clean_failure(&out, "unknown model 'gpt-7'");
    let out = frontdesk()
        .args([
            "generate",
            "--prompt",
            "hi",
            "-m",
            "nobody/nothing:model.gguf",
        ])
        .env("HF_HOME", "/nonexistent")
        .output()
        .unwrap();
    assert_clean_failure(&out, "not in the Hugging Face cache");
}

#[test]
fn empty_prompt_is_refused() {
    let out = frontdesk()
        .args(["generate", "-m", "smollm2-135m", "--prompt", "  \n"])
        .output()
        .unwrap();
    assert_clean_failure(&out, "the prompt is empty");
}

#[test]
fn prompt_longer_than_the_context_is_refused() {
    let mut child = frontdesk()
        .args(["generate", "-m", "smollm2-135m", "--prompt", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // SmolLM2 declares 8,192 positions (the own transformer holds them all).
    let long = "support ".repeat(10_000);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(long.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_clean_failure(&out, "context window is 8192");
}

#[test]
fn invalid_sampling_settings_are_refused() {
    let out = frontdesk()
        .args([
            "generate",
            "-m",
            "smollm2-135m",
            "--prompt",
            "hi",
            "--top-p",
            "0",
        ])
        .output()
        .unwrap();
    assert_clean_failure(&out, "--top-p");
    let out = frontdesk()
        .args([
            "generate",
            "-m",
            "smollm2-135m",
            "--prompt",
            "hi",
            "--temperature=-1",
        ])
        .output()
        .unwrap();
    assert_clean_failure(&out, "--temperature");
}

#[test]
fn chat_reads_one_message_per_line_and_remembers() {
    // The default model: SmolLM2-135M's greedy reply to the first line is a string of near-ties
    // (gaps of 0.1 in the logits), so whether it ever repeats the colour depends on rounding.
    // A reply may itself hold blank lines, so the first reply is taken from a run with the
    // first line alone (greedy decoding is deterministic) and the second is what follows it.
    let chat = |input: &[u8]| {
        let mut child = frontdesk()
            .args([
                "chat",
                "-m",
                "qwen2.5-coder-0.5b",
                "--temperature",
                "0",
                "--max-tokens",
                "40",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let first = chat(b"My favourite colour is green.\n");
    assert!(
        first.ends_with("\n\n") && first.trim().len() > 1,
        "one reply: {first:?}"
    );
    let both = chat(b"My favourite colour is green.\n\nWhat is my favourite colour?\n");
    let second = both
        .strip_prefix(first.as_str())
        .unwrap_or_else(|| panic!("the first reply comes first: {both:?}"));
    assert!(
        !second.trim().is_empty(),
        "two messages, two replies: {both:?}"
    );
    assert!(
        second.to_lowercase().contains("green"),
        "the second reply should remember: {both:?}"
    );
}

#[test]
fn bench_json_has_the_fields_tools_read() {
    let out = frontdesk()
        .args([
            "bench",
            "-m",
            "smollm2-135m",
            "-p",
            "16",
            "-n",
            "4",
            "-r",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["model"], "smollm2-135m");
    assert_eq!(
        v["file_sha256"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    assert_eq!(v["threads"], 2);
    assert!(v["load_s"].as_f64().unwrap() > 0.0);
    assert!(v["peak_rss_mb"].as_f64().unwrap() > 50.0);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["test"], "pp16");
    assert_eq!(results[1]["test"], "tg4");
    for r in results {
        assert_eq!(r["runs"], 2);
        assert!(r["tok_per_s_mean"].as_f64().unwrap() > 0.0);
        assert!(r["tok_per_s_stddev"].as_f64().unwrap() >= 0.0);
    }
}

#[test]
fn help_explains_each_command_with_an_example() {
    for cmd in ["generate", "chat", "bench", "models"] {
        let out = frontdesk().args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success());
        let help = stdout(&out);
        assert!(
            help.contains("Examples:") && help.contains(&format!("frontdesk {cmd}")),
            "{cmd}: {help}"
        );
    }
}

#[test]
fn a_model_in_a_hugging_face_cache_is_found_offline() {
    let home = tempfile::tempdir().unwrap();
    let repo = home
        .path()
        .join("hub/models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF");
    let snapshot = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    std::os::unix::fs::symlink(
        common::require("smollm2-135m").path,
        snapshot.join("smollm2.gguf"),
    )
    .unwrap();
    let out = frontdesk()
        .env("HF_HOME", home.path())
        .args([
            "generate",
            "--json",
            "--max-tokens",
            "4",
            "--prompt",
            "Hello",
        ])
        .args([
            "-m",
            "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:smollm2.gguf",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["model"]["architecture"], "llama");
    assert_eq!(
        v["model"]["name"],
        "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:smollm2.gguf"
    );
}
