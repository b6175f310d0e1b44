//! The tokenizer built from a GGUF file's metadata must give the same ids as the model's
//! reference tokenizer.json.

mod common;

use frontdesk::runtime::gguf::GgufFile;
use frontdesk::runtime::tokenizer;

const TEXTS: &[&str] = &[
    "Hello, world!",
    "How do I get a refund for order #12345?",
    "  leading spaces and trailing   ",
    "Tabs\tand\nnewlines\n\n\nand\r\nCRLF",
    "Numbers: 3.14159, 1,000,000 and 2026-12-04.",
    "Ünïcödé: café, naïve, Straße, 東京, Привет, مرحبا, 🙂🚀",
    "fn main() { println!(\"{}\", x.map(|v| v * 2).sum::<u32>()); }",
    "def f(x):\n    return {'a': [1, 2, 3]}  # comment",
    "I'm sure you've heard they'll say it's what we'd do",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>text after end",
    "Mixed<|im_end|>inline<|im_start|>tags",
    "URL: https://example.com/path?q=1&r=two#frag",
    "ALL CAPS SHOUTING AND lower and MiXeD",
    "a",
    "",
];

fn compare(gguf_path: &std::path::Path, json_path: &std::path::Path) {
    let gguf = GgufFile::open(gguf_path).unwrap();
    let from_gguf = tokenizer::from_gguf(&gguf).unwrap();
    let reference = tokenizer::from_json_file(json_path).unwrap();
    for text in TEXTS {
        let ours = from_gguf
            .encode_fast(*text, false)
            .unwrap()
            .get_ids()
            .to_vec();
        let theirs = reference
            .encode_fast(*text, false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(ours, theirs, "ids differ for {text:?}");
        // Round trip, keeping special tokens.
        assert_eq!(
            from_gguf.decode(&ours, false).unwrap(),
            *text,
            "round trip of {text:?}"
        );
    }
}

#[test]
fn qwen_gguf_tokenizer_matches_reference_json() {
    let gguf = common::require("qwen2.5-coder-0.5b");
    let json = common::require_file("qwen-tokenizer", "tokenizer.json");
    compare(&gguf.path, &json);
}

#[test]
fn qwen_chatml_special_tokens_have_their_ids() {
    let gguf = GgufFile::open(&common::require("qwen2.5-coder-0.5b").path).unwrap();
    let tok = tokenizer::from_gguf(&gguf).unwrap();
    let ids = tok
        .encode_fast("<|im_start|>user<|im_end|><|endoftext|>", false)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(ids[0], 151644);
    assert_eq!(ids[ids.len() - 2..], [151645, 151643]);
}

#[test]
fn gemma_gguf_tokenizer_matches_reference_json() {
    let gguf = common::require("gemma3-270m");
    let json = common::require_file("gemma3-tokenizer", "tokenizer.json");
    compare(&gguf.path, &json);
}
