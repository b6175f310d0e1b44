//! Loader and generation edge cases on tiny GGUF files that the tests write themselves:
//! a working two-token-context toy model, and files broken in specific ways.

mod common;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use frontdesk::runtime::{Engine, LoadOptions, ResolvedModel, StopReason};
use std::path::{Path, PathBuf};

const DIM: usize = 8;
const FF: usize = 16;
const CONTEXT: u32 = 24;

/// GPT-2's reversible byte-to-character map, so a vocabulary of 256 single "bytes" can
/// spell any text.
fn byte_tokens() -> Vec<String> {
    let mut printable: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut extra = 256;
    let mut chars = vec![0u32; 256];
    for b in 0..256u32 {
        if printable.contains(&b) {
            chars[b as usize] = b;
        } else {
            chars[b as usize] = extra;
            extra += 1;
        }
    }
    printable.clear();
    chars
        .iter()
        .map(|&c| char::from_u32(c).unwrap().to_string())
        .collect()
}

fn tensor(shape: &[usize], seed: u64) -> QTensor {
    typed_tensor(shape, seed, GgmlDType::F32)
}

fn typed_tensor(shape: &[usize], seed: u64, dtype: GgmlDType) -> QTensor {
    let n: usize = shape.iter().product();
    let mut state = seed
        .wrapping_mul(2862933555777941757)
        .wrapping_add(3037000493);
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.5
        })
        .collect();
    QTensor::quantize(
        &Tensor::from_vec(values, shape, &Device::Cpu).unwrap(),
        dtype,
    )
    .unwrap()
}

/// Writes a tiny llama-architecture model. `edit` may change or drop metadata before writing.
fn write_tiny_llama(path: &Path, edit: impl FnOnce(&mut Vec<(String, Value)>)) {
    write_tiny_llama_with(path, edit, GgmlDType::F32)
}

/// `write_tiny_llama` with the query projection stored as `q_type`.
fn write_tiny_llama_with(
    path: &Path,
    edit: impl FnOnce(&mut Vec<(String, Value)>),
    q_type: GgmlDType,
) {
    let mut tokens = byte_tokens();
    tokens.push("<|im_start|>".into());
    tokens.push("<|im_end|>".into());
    let vocab = tokens.len();
    let mut types = vec![Value::I32(1); 256];
    types.extend([Value::I32(3), Value::I32(3)]);
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("llama.context_length".into(), Value::U32(CONTEXT)),
        ("llama.embedding_length".into(), Value::U32(DIM as u32)),
        ("llama.block_count".into(), Value::U32(1)),
        ("llama.feed_forward_length".into(), Value::U32(FF as u32)),
        ("llama.attention.head_count".into(), Value::U32(2)),
        ("llama.attention.head_count_kv".into(), Value::U32(2)),
        (
            "llama.rope.dimension_count".into(),
            Value::U32((DIM / 2) as u32),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(1e-5),
        ),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        ("tokenizer.ggml.merges".into(), Value::Array(vec![])),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(257)),
        (
            "tokenizer.chat_template".into(),
            Value::String("{{ '<|im_start|>' }}".into()),
        ),
    ];
    edit(&mut meta);
    let tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), tensor(&[vocab, DIM], 1)),
        ("output_norm.weight".into(), tensor(&[DIM], 2)),
        ("output.weight".into(), tensor(&[vocab, DIM], 3)),
        ("blk.0.attn_norm.weight".into(), tensor(&[DIM], 4)),
        (
            "blk.0.attn_q.weight".into(),
            typed_tensor(&[DIM, DIM], 5, q_type),
        ),
        ("blk.0.attn_k.weight".into(), tensor(&[DIM, DIM], 6)),
        ("blk.0.attn_v.weight".into(), tensor(&[DIM, DIM], 7)),
        ("blk.0.attn_output.weight".into(), tensor(&[DIM, DIM], 8)),
        ("blk.0.ffn_norm.weight".into(), tensor(&[DIM], 9)),
        ("blk.0.ffn_gate.weight".into(), tensor(&[FF, DIM], 10)),
        ("blk.0.ffn_up.weight".into(), tensor(&[FF, DIM], 11)),
        ("blk.0.ffn_down.weight".into(), tensor(&[DIM, FF], 12)),
    ];
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &meta_refs, &tensor_refs).unwrap();
}

fn local(path: &Path) -> ResolvedModel {
    ResolvedModel {
        path: path.to_path_buf(),
        name: "tiny".into(),
        sha256: None,
    }
}

fn tiny(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.gguf");
    write_tiny_llama(&path, |_| {});
    path
}

#[test]
fn tiny_model_generates_until_its_context_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::load(&local(&tiny(dir.path())), &LoadOptions::default()).unwrap();
    assert_eq!(engine.context_length(), CONTEXT as usize);
    let prompt = engine.raw_prompt("hello world").unwrap();
    assert_eq!(prompt.len(), 11, "one token per byte");
    let g = engine
        .generate(&prompt, &common::greedy(100), &mut |_| {})
        .unwrap();
    // Either the toy model happens to pick its end token, or it runs into the context wall;
    // it may never feed a position past the context.
    match g.stop_reason {
        StopReason::ContextFull => assert_eq!(prompt.len() + g.tokens.len(), CONTEXT as usize + 1),
        StopReason::EndOfTurn => assert!(prompt.len() + g.tokens.len() <= CONTEXT as usize),
        other => panic!("unexpected stop: {other:?}"),
    }
}

#[test]
fn tiny_model_refuses_a_prompt_that_fills_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::load(&local(&tiny(dir.path())), &LoadOptions::default()).unwrap();
    let prompt = engine.raw_prompt(&"x".repeat(CONTEXT as usize)).unwrap();
    let err = engine
        .generate(&prompt, &common::greedy(1), &mut |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("context window is 24"), "{err}");
}

#[test]
fn unknown_architecture_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mamba.gguf");
    write_tiny_llama(&path, |m| m[0].1 = Value::String("mamba".into()));
    let out = common::generate_hi(&path, None);
    common::assert_clean_failure(&out, "architecture 'mamba'");
}

#[test]
fn missing_hyperparameter_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nocontext.gguf");
    write_tiny_llama(&path, |m| m.retain(|(k, _)| k != "llama.context_length"));
    let out = common::generate_hi(&path, None);
    common::assert_clean_failure(&out, "missing metadata 'llama.context_length'");
}

#[test]
fn a_model_without_layers_is_refused() {
    // The forward pass keeps only the last layer's output rows; a file with no layers has
    // none to keep, so it is refused at load.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nolayers.gguf");
    write_tiny_llama(&path, |m| {
        for (k, v) in m.iter_mut() {
            if k == "llama.block_count" {
                *v = Value::U32(0);
            }
        }
    });
    let out = common::generate_hi(&path, None);
    common::assert_clean_failure(&out, "0 layers");
}

#[test]
fn missing_weights_are_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_llama(&path, |m| {
        m.retain(|(k, _)| k != "llama.rope.dimension_count")
    });
    let out = common::generate_hi(&path, None);
    common::assert_clean_failure(&out, "cannot load the weights");
}

#[test]
fn a_weight_type_the_kernels_lack_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_llama_with(&path, |_| {}, GgmlDType::BF16);
    let out = common::generate_hi(&path, None);
    common::assert_clean_failure(&out, "blk.0.attn_q.weight");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("BF16"),
        "the type is named: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn truncated_tensor_data_is_detected_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let out = common::generate_hi(&path, None);
    common::assert_clean_failure(&out, "is truncated");
}

#[test]
fn file_cut_inside_the_header_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..300]).unwrap();
    let out = common::generate_hi(&path, None);
    common::assert_clean_failure(&out, "damaged GGUF");
}

#[test]
fn toy_model_generates_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path());
    let out = common::frontdesk()
        .args([
            "generate",
            "--raw",
            "--json",
            "--temperature",
            "0",
            "--max-tokens",
            "3",
            "--prompt",
            "abc",
            "-m",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&common::stdout(&out)).unwrap();
    assert_eq!(json["model"]["architecture"], "llama");
    assert!(json["generated_tokens"].as_u64().unwrap() <= 3);
}
