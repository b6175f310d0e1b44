//! Continuous batching on real weights: sequences that share forward passes produce what
//! each would alone, leave when their listener goes, stop at their deadline, and reuse a
//! shared prompt prefix.

mod common;

use frontdesk::runtime::batch::{Batcher, Event, Request, Sink};
use frontdesk::runtime::{
    Backend, Engine, GenerateOptions, Generation, LoadOptions, Message, Role, RuntimeError,
    SamplingParams,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROMPTS: [&str; 5] = [
    "What is the capital of France?",
    "Write a Python function that returns the square of a number.",
    "My order arrived damaged. What should I do?",
    "Hi",
    "List three colours of the rainbow, then explain in a long paragraph why the sky is blue.",
];

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampling: SamplingParams::greedy(),
        stop_sequences: Vec::new(),
        forbidden_starts: Vec::new(),
    }
}

fn prompt(engine: &Engine, text: &str) -> Vec<u32> {
    engine
        .chat_prompt(&[Message::new(Role::User, text)])
        .unwrap()
}

/// Everything a sequence reported.
#[derive(Default)]
struct Record {
    pieces: Vec<String>,
    done: Option<Generation>,
    failed: Option<RuntimeError>,
}

fn recorder() -> (Arc<Mutex<Record>>, Sink) {
    let record = Arc::new(Mutex::new(Record::default()));
    let sink_record = record.clone();
    let sink: Sink = Box::new(move |event| {
        let mut r = sink_record.lock().unwrap();
        match event {
            Event::Text(t) => r.pieces.push(t),
            Event::Done(g) => r.done = Some(g),
            Event::Failed(e) => r.failed = Some(e),
        }
        true
    });
    (record, sink)
}

fn request(prompt: Vec<u32>, options: GenerateOptions) -> Request {
    Request {
        prompt,
        options,
        deadline: None,
    }
}

/// Runs every prompt alone on a fresh engine (the reference), then all of them together on
/// a batcher, starting one more every few steps so that prefill and decode interleave.
fn batched_equals_alone(model: &str, backend: Backend) {
    let options = LoadOptions {
        backend,
        ..Default::default()
    };
    let mut alone = Engine::load(&common::require(model), &options).unwrap();
    let max_tokens = 24;
    let expected: Vec<Generation> = PROMPTS
        .iter()
        .map(|p| {
            let ids = prompt(&alone, p);
            alone
                .generate(&ids, &greedy(max_tokens), &mut |_| {})
                .unwrap()
        })
        .collect();

    let engine = Engine::load(&common::require(model), &options).unwrap();
    let mut batcher = Batcher::new(engine, 4);
    let mut records = Vec::new();
    let mut waiting: Vec<Request> = PROMPTS
        .iter()
        .map(|p| request(prompt(batcher.engine(), p), greedy(max_tokens)))
        .rev()
        .collect();
    let mut steps = 0;
    loop {
        if steps % 3 == 0 && batcher.has_free_slot() {
            if let Some(r) = waiting.pop() {
                let (record, sink) = recorder();
                assert!(batcher.start(r, sink));
                records.push(record);
            }
        }
        let running = batcher.step();
        steps += 1;
        if !running && waiting.is_empty() {
            break;
        }
        assert!(steps < 1000, "the batch never finished");
    }
    for (i, (record, want)) in records.iter().zip(&expected).enumerate() {
        let r = record.lock().unwrap();
        assert!(r.failed.is_none(), "sequence {i} failed: {:?}", r.failed);
        let done = r.done.as_ref().expect("every sequence ends");
        assert_eq!(
            done.tokens, want.tokens,
            "{model} ({backend:?}): prompt {i} batched differs from alone"
        );
        assert_eq!(done.text, want.text);
        assert_eq!(r.pieces.concat(), done.text, "pieces join to the text");
        assert_eq!(done.stop_reason, want.stop_reason);
    }
}

#[test]
fn batched_sequences_generate_what_each_would_alone_smollm2() {
    batched_equals_alone("smollm2-135m", Backend::Own);
}

#[test]
fn batched_sequences_generate_what_each_would_alone_qwen() {
    batched_equals_alone("qwen2.5-coder-0.5b", Backend::Own);
}

#[test]
fn a_model_that_cannot_batch_runs_requests_one_at_a_time() {
    let options = LoadOptions {
        backend: Backend::Candle,
        ..Default::default()
    };
    let engine = Engine::load(&common::require("smollm2-135m"), &options).unwrap();
    let batcher = Batcher::new(engine, 8);
    assert_eq!(batcher.capacity(), 1);
    batched_equals_alone("smollm2-135m", Backend::Candle);
}

#[test]
fn a_sequence_whose_listener_left_stops_and_the_others_go_on() {
    let mut batcher = Batcher::new(common::load("smollm2-135m"), 4);
    let (kept, kept_sink) = recorder();
    let stream = prompt(batcher.engine(), PROMPTS[4]);
    assert!(batcher.start(request(stream.clone(), greedy(40)), kept_sink));
    // This listener hangs up after its third piece of text.
    let heard = Arc::new(Mutex::new(0usize));
    let counter = heard.clone();
    let leaving: Sink = Box::new(move |event| {
        if let Event::Text(_) = event {
            *counter.lock().unwrap() += 1;
        }
        *counter.lock().unwrap() < 3
    });
    assert!(batcher.start(request(stream, greedy(40)), leaving));
    assert_eq!(batcher.running(), 2);
    let mut steps = 0;
    while batcher.step() {
        steps += 1;
        if steps == 10 {
            assert_eq!(batcher.running(), 1, "the abandoned sequence was dropped");
        }
    }
    assert_eq!(
        *heard.lock().unwrap(),
        3,
        "nothing was sent after the hang-up"
    );
    let kept = kept.lock().unwrap();
    let done = kept.done.as_ref().expect("the other sequence finished");
    assert_eq!(done.tokens.len(), 40);
}

#[test]
fn a_sequence_past_its_deadline_fails_with_timed_out() {
    let mut batcher = Batcher::new(common::load("smollm2-135m"), 2);
    let (record, sink) = recorder();
    let mut r = request(prompt(batcher.engine(), PROMPTS[4]), greedy(10_000));
    r.deadline = Some(Instant::now() + Duration::from_millis(300));
    assert!(batcher.start(r, sink));
    let started = Instant::now();
    while batcher.step() {
        assert!(started.elapsed() < Duration::from_secs(30), "never stopped");
    }
    let record = record.lock().unwrap();
    assert!(
        matches!(record.failed, Some(RuntimeError::TimedOut { .. })),
        "{:?}",
        record.failed
    );
    assert!(record.done.is_none());
}

#[test]
fn a_request_reuses_the_slot_that_holds_its_prefix() {
    let mut batcher = Batcher::new(common::load("smollm2-135m"), 2);
    let system = "You are the support assistant of an online shop. Answer briefly and politely, \
                  from the sources only.";
    let ask = |engine: &Engine, q: &str| {
        engine
            .chat_prompt(&[
                Message::new(Role::System, system),
                Message::new(Role::User, q),
            ])
            .unwrap()
    };
    let first = ask(batcher.engine(), "Where is my parcel?");
    let second = ask(batcher.engine(), "Can I pay by invoice?");
    let shared = first
        .iter()
        .zip(&second)
        .take_while(|(a, b)| a == b)
        .count();
    assert!(shared > 20);
    for p in [first, second] {
        let (record, sink) = recorder();
        assert!(batcher.start(request(p, greedy(4)), sink));
        while batcher.step() {}
        let record = record.lock().unwrap();
        let done = record.done.as_ref().unwrap();
        if done.reused_prompt_tokens > 0 {
            assert_eq!(done.reused_prompt_tokens, shared);
            return;
        }
    }
    panic!("the second request did not reuse the first one's system prompt");
}

#[test]
fn bad_requests_fail_through_the_sink() {
    let mut batcher = Batcher::new(common::load("smollm2-135m"), 2);
    let (record, sink) = recorder();
    assert!(!batcher.start(request(Vec::new(), greedy(4)), sink));
    assert!(matches!(
        record.lock().unwrap().failed,
        Some(RuntimeError::EmptyPrompt)
    ));
    let (record, sink) = recorder();
    let context = batcher.engine().context_length();
    assert!(!batcher.start(request(vec![1; context + 1], greedy(4)), sink));
    assert!(matches!(
        record.lock().unwrap().failed,
        Some(RuntimeError::PromptTooLong { .. })
    ));
    assert_eq!(batcher.running(), 0);
}
