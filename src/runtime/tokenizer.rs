//! Building a `tokenizers::Tokenizer` from a GGUF file's own vocabulary, so a model is one file.
//!
//! Two vocabulary kinds occur in the catalogue: byte-level BPE (`tokenizer.ggml.model = gpt2`:
//! Qwen2.5, SmolLM2) whose pre-tokenizer is named by `tokenizer.ggml.pre`, and SentencePiece
//! BPE (`llama`: Gemma) whose merges are implied by the token scores.

use super::error::{Result, RuntimeError};
use super::gguf::{value_as_u64, GgufFile};
use candle_core::quantized::gguf_file::Value;
use std::path::Path;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::Vocab;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Replace, NFC};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_NORMAL: u64 = 1;
const TOKEN_CONTROL: u64 = 3;
const TOKEN_USER_DEFINED: u64 = 4;
const TOKEN_BYTE: u64 = 6;

// The Qwen2 split pattern, as its tokenizer.json has it.
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
// Llama 3 style: like Qwen2 but digits in groups of up to three.
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn tok_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Tokenizer(e.to_string())
}

/// Loads a `tokenizer.json` (the optional override of the GGUF vocabulary).
pub fn from_json_file(path: &Path) -> Result<Tokenizer> {
    if !path.is_file() {
        return Err(RuntimeError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    Tokenizer::from_file(path)
        .map_err(|e| RuntimeError::Tokenizer(format!("{}: {e}", path.display())))
}

/// Builds the tokenizer described by the GGUF metadata.
pub fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer> {
    let missing = |key: &str| RuntimeError::MissingMetadata {
        path: gguf.path.clone(),
        key: key.into(),
    };
    let kind = gguf
        .string("tokenizer.ggml.model")
        .ok_or_else(|| missing("tokenizer.ggml.model"))?;
    let tokens = gguf
        .string_array("tokenizer.ggml.tokens")
        .ok_or_else(|| missing("tokenizer.ggml.tokens"))?;
    let types = token_types(gguf, tokens.len());
    let mut tokenizer = match kind {
        "gpt2" => byte_level_bpe(gguf, &tokens)?,
        "llama" => sentencepiece_bpe(gguf, &tokens, &types)?,
        other => {
            return Err(RuntimeError::Tokenizer(format!(
                "vocabulary kind '{other}' is not supported (supported: gpt2, llama); pass --tokenizer tokenizer.json"
            )))
        }
    };
    // Control and user-defined tokens are matched whole before the model sees the text.
    let added: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, t)| **t == TOKEN_CONTROL || **t == TOKEN_USER_DEFINED)
        .map(|(tok, t)| AddedToken::from(tok.to_string(), *t == TOKEN_CONTROL).normalized(false))
        .collect();
    tokenizer
        .add_special_tokens(
            added
                .iter()
                .filter(|t| t.special)
                .cloned()
                .collect::<Vec<_>>(),
        )
        .map_err(tok_err)?;
    tokenizer
        .add_tokens(added.into_iter().filter(|t| !t.special))
        .map_err(tok_err)?;
    Ok(tokenizer)
}

fn token_types(gguf: &GgufFile, n: usize) -> Vec<u64> {
    match gguf.metadata("tokenizer.ggml.token_type") {
        Some(Value::Array(items)) if items.len() == n => items
            .iter()
            .map(|v| value_as_u64(v).unwrap_or(TOKEN_NORMAL))
            .collect(),
        _ => vec![TOKEN_NORMAL; n],
    }
}

fn vocab_map(tokens: &[&str]) -> Vocab {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect()
}

fn byte_level_bpe(gguf: &GgufFile, tokens: &[&str]) -> Result<Tokenizer> {
    let merges: Vec<(String, String)> = gguf
        .string_array("tokenizer.ggml.merges")
        .ok_or_else(|| RuntimeError::MissingMetadata {
            path: gguf.path.clone(),
            key: "tokenizer.ggml.merges".into(),
        })?
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| RuntimeError::Tokenizer(format!("malformed merge rule '{m}'")))
        })
        .collect::<Result<_>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab_map(tokens), merges)
        .build()
        .map_err(tok_err)?;
    let mut tokenizer = Tokenizer::new(bpe);
    let pre = gguf.string("tokenizer.ggml.pre").unwrap_or("default");
    let byte_level_only = ByteLevel::new(false, false, false);
    let pre_tokenizer: PreTokenizerWrapper = match pre {
        "qwen2" => {
            tokenizer.with_normalizer(Some(NFC)).map_err(tok_err)?;
            split_then_bytes(QWEN2_PATTERN, byte_level_only)?
        }
        "llama3" | "llama-bpe" | "smaug-bpe" => split_then_bytes(LLAMA3_PATTERN, byte_level_only)?,
        // SmolLM2: single digits, then GPT-2's own split.
        "smollm" => PreSequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])
        .into(),
        _ => ByteLevel::new(false, true, true).into(),
    };
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::new(false, true, true)));
    Ok(tokenizer)
}

fn split_then_bytes(pattern: &str, bytes: ByteLevel) -> Result<PreTokenizerWrapper> {
    let split = Split::new(
        SplitPattern::Regex(pattern.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(tok_err)?;
    Ok(PreSequence::new(vec![split.into(), bytes.into()]).into())
}

/// SentencePiece BPE: a pair merges when the joined piece is in the vocabulary, and the
/// higher the joined piece's score, the earlier it merges.
fn sentencepiece_bpe(gguf: &GgufFile, tokens: &[&str], types: &[u64]) -> Result<Tokenizer> {
    let scores: Vec<f32> = match gguf.metadata("tokenizer.ggml.scores") {
        Some(Value::Array(items)) if items.len() == tokens.len() => {
            items.iter().map(|v| v.to_f32().unwrap_or(0.0)).collect()
        }
        _ => {
            return Err(RuntimeError::MissingMetadata {
                path: gguf.path.clone(),
                key: "tokenizer.ggml.scores".into(),
            })
        }
    };
    let vocab = vocab_map(tokens);
    let mut ranked: Vec<(f32, u32, String, String)> = Vec::new();
    for (id, piece) in tokens.iter().enumerate() {
        if types[id] != TOKEN_NORMAL && types[id] != TOKEN_USER_DEFINED {
            continue;
        }
        for (split, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(split);
            if vocab.contains_key(left) && vocab.contains_key(right) {
                ranked.push((scores[id], id as u32, left.to_string(), right.to_string()));
            }
        }
    }
    // Higher score first; ties by id, then by the left piece's id as SentencePiece does.
    ranked.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then(vocab[&a.2].cmp(&vocab[&b.2]))
    });
    let merges: Vec<(String, String)> = ranked.into_iter().map(|(_, _, l, r)| (l, r)).collect();
    let unk = gguf
        .u32("tokenizer.ggml.unknown_token_id")
        .and_then(|id| tokens.get(id as usize))
        .map(|s| s.to_string());
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(types.contains(&TOKEN_BYTE))
        .fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    let mut tokenizer = Tokenizer::new(builder.build().map_err(tok_err)?);
    let add_space_prefix = gguf
        .bool("tokenizer.ggml.add_space_prefix")
        .unwrap_or(false);
    if add_space_prefix {
        let seq = tokenizers::normalizers::Sequence::new(vec![
            tokenizers::normalizers::Prepend::new("▁".into()).into(),
            Replace::new(" ", "▁").map_err(tok_err)?.into(),
        ]);
        tokenizer.with_normalizer(Some(seq)).map_err(tok_err)?;
    } else {
        tokenizer
            .with_normalizer(Some(Replace::new(" ", "▁").map_err(tok_err)?))
            .map_err(tok_err)?;
    }
    let decoder: DecoderWrapper = DecoderSequence::new(vec![
        Replace::new("▁", " ").map_err(tok_err)?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ])
    .into();
    tokenizer.with_decoder(Some(decoder));
    Ok(tokenizer)
}
