//! Helpers shared by the integration tests: real model files fetched by scripts/fetch-models.
#![allow(dead_code)]

use frontdesk::runtime::catalog::{models_dir, Catalog};
use frontdesk::runtime::{resolve_model, Engine, LoadOptions, ResolvedModel};
use frontdesk::runtime::{GenerateOptions, SamplingParams};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The models folder the tests read: `FRONTDESK_MODELS` when set (a worktree whose own
/// `models/` holds no weights can point at a checkout that has them), else this checkout's.
pub fn repo_models() -> PathBuf {
    match std::env::var_os("FRONTDESK_MODELS") {
        Some(dir) if !dir.is_empty() => models_dir(Some(&PathBuf::from(dir))),
        _ => models_dir(Some(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"),
        )),
    }
}

/// A catalogue model that the tests need; fails with the command that fetches it.
pub fn require(name: &str) -> ResolvedModel {
    resolve_model(name, &repo_models()).unwrap_or_else(|e| {
        panic!("test model '{name}' unavailable: {e}\n(run: scripts/fetch-models {name})")
    })
}

/// A catalogue file by its path under models/, checked to exist.
pub fn require_file(model: &str, file_suffix: &str) -> PathBuf {
    let catalog = Catalog::builtin().unwrap();
    let entry = catalog
        .get(model)
        .unwrap_or_else(|| panic!("no catalogue entry {model}"));
    let file = entry
        .files
        .iter()
        .find(|f| f.path.ends_with(file_suffix))
        .unwrap();
    let path = repo_models().join(&file.path);
    assert!(
        path.is_file(),
        "{} missing (run: scripts/fetch-models {model})",
        path.display()
    );
    path
}

pub fn load(name: &str) -> Engine {
    Engine::load(&require(name), &LoadOptions::default()).expect("model loads")
}

pub fn frontdesk() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_frontdesk"));
    cmd.env("FRONTDESK_MODELS", repo_models())
        .env("FRONTDESK_THREADS", "2")
        .env_remove("FRONTDESK_MODEL");
    cmd
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The contract for bad input: non-zero exit, one line on stderr, no panic.
pub fn assert_clean_failure(out: &Output, expect: &str) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert!(!err.contains("panicked"), "panicked: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "expected one line, got: {err}"
    );
    assert!(err.contains(expect), "expected '{expect}' in: {err}");
}

/// `frontdesk generate --prompt hi -m MODEL [--models-dir DIR]`, for the bad-input tests.
pub fn generate_hi(model: impl AsRef<OsStr>, models_dir: Option<&Path>) -> Output {
    let mut cmd = frontdesk();
    cmd.args(["generate", "--prompt", "hi", "-m"]).arg(model);
    if let Some(dir) = models_dir {
        cmd.arg("--models-dir").arg(dir);
    }
    cmd.output().unwrap()
}

pub fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampling: SamplingParams::greedy(),
        stop_sequences: vec![],
        forbidden_starts: Vec::new(),
    }
}
