//! Continuous batching: several generations share one model, and each decoding step feeds
//! the next token of every running sequence in one forward pass, so the weights are read
//! once per step instead of once per sequence (generation is bound by memory bandwidth).
//!
//! A [`Batcher`] owns the engine and a fixed number of slots. A request takes a free slot —
//! the one whose cached tokens share the longest prefix with its prompt, so a fixed system
//! prompt is read once per slot, not once per request — is prefilled on its own, and from
//! then on advances one token per [`Batcher::step`] with the others. Sequences end on their
//! own stop rules, when their deadline passes, or when their listener goes away.
//!
//! Models that cannot batch (candle's model code) get one slot on the engine's own cache:
//! requests then run one after another through the same interface.

use super::error::{Result, RuntimeError};
use super::generate::{
    shared_prefix, Engine, GenerateOptions, Generation, StopReason, TextStream, Timings,
};
use super::sampler::Sampler;
use super::transformer::{BatchItem, KvCache};
use candle_core::{Device, Tensor};
use std::time::Instant;

/// What a running sequence reports.
#[derive(Debug)]
pub enum Event {
    /// The next piece of final text (the pieces joined are the generation's text).
    Text(String),
    /// The sequence ended normally; the last event.
    Done(Generation),
    /// The sequence failed; the last event.
    Failed(RuntimeError),
}

/// Receives a sequence's events; returns false when no one listens any more (a client that
/// disconnected), which ends the sequence at once.
pub type Sink = Box<dyn FnMut(Event) -> bool + Send>;

/// One generation to run.
#[derive(Debug, Clone)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub options: GenerateOptions,
    /// Stop with [`RuntimeError::TimedOut`] once this instant passes.
    pub deadline: Option<Instant>,
}

struct Slot {
    /// This slot's KV cache; `None` is the engine's own (the one slot of a model that cannot
    /// batch).
    cache: Option<KvCache>,
    /// The tokens whose KV state `cache` holds, from position 0.
    cached: Vec<u32>,
    live: Option<Live>,
}

/// A sequence being generated.
struct Live {
    options: GenerateOptions,
    sink: Sink,
    sampler: Sampler,
    history: Vec<u32>,
    generated: Vec<u32>,
    stream: TextStream,
    /// Logits after the last token fed, waiting to be sampled.
    logits: Vec<f32>,
    started: Instant,
    deadline: Option<Instant>,
    prefill_s: f64,
    ttft_s: Option<f64>,
    prompt_tokens: usize,
    reused: usize,
}

/// How a live sequence left the step.
enum Outcome {
    Continue(u32),
    Finished(StopReason),
    Gone,
    Failed(RuntimeError),
}

pub struct Batcher {
    engine: Engine,
    slots: Vec<Slot>,
}

impl Batcher {
    /// Up to `max_sequences` concurrent generations (one when the model cannot batch).
    pub fn new(engine: Engine, max_sequences: usize) -> Batcher {
        let slots = match engine.model.new_sequence() {
            Some(first) => std::iter::once(first)
                .chain((1..max_sequences.max(1)).filter_map(|_| engine.model.new_sequence()))
                .map(|cache| Slot {
                    cache: Some(cache),
                    cached: Vec::new(),
                    live: None,
                })
                .collect(),
            None => vec![Slot {
                cache: None,
                cached: Vec::new(),
                live: None,
            }],
        };
        Batcher { engine, slots }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Sequences that can run at once.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Sequences running now.
    pub fn running(&self) -> usize {
        self.slots.iter().filter(|s| s.live.is_some()).count()
    }

    pub fn has_free_slot(&self) -> bool {
        self.running() < self.capacity()
    }

    /// Starts a generation: prefills its prompt (other sequences wait meanwhile) and leaves
    /// it to [`Batcher::step`]. Every outcome, errors included, reaches `sink`; returns
    /// whether the request started.
    pub fn start(&mut self, request: Request, mut sink: Sink) -> bool {
        match self.try_start(request) {
            Ok((slot, live)) => {
                self.slots[slot].live = Some(Live { sink, ..live });
                true
            }
            Err(e) => {
                sink(Event::Failed(e));
                false
            }
        }
    }

    fn try_start(&mut self, request: Request) -> Result<(usize, Live)> {
        let Request {
            prompt,
            options,
            deadline,
        } = request;
        let started = Instant::now();
        if prompt.is_empty() {
            return Err(RuntimeError::EmptyPrompt);
        }
        let context = self.engine.model.context_length;
        if prompt.len() >= context {
            return Err(RuntimeError::PromptTooLong {
                tokens: prompt.len(),
                context,
            });
        }
        // The free slot that already holds the longest part of this prompt.
        let slot = (0..self.slots.len())
            .filter(|&i| self.slots[i].live.is_none())
            .max_by_key(|&i| shared_prefix(&self.slots[i].cached, &prompt))
            .ok_or_else(|| RuntimeError::Inference("every sequence slot is busy".into()))?;
        let (mut logits, reused) = self.prefill(slot, &prompt)?;
        let forbidden = self.engine.tokens_starting_with(&options.forbidden_starts);
        super::generate::forbid_in(&mut logits, &forbidden);
        let prefill_s = started.elapsed().as_secs_f64();
        Ok((
            slot,
            Live {
                sampler: Sampler::new(&options.sampling),
                stream: TextStream::new(&options.stop_sequences),
                options,
                sink: Box::new(|_| true),
                history: prompt.clone(),
                generated: Vec::new(),
                logits,
                started,
                deadline,
                prefill_s,
                ttft_s: None,
                prompt_tokens: prompt.len(),
                reused,
            },
        ))
    }

    /// Feeds `prompt` into a slot after the prefix it already holds; returns the last logits
    /// and the number of prompt tokens reused.
    fn prefill(&mut self, slot: usize, prompt: &[u32]) -> Result<(Vec<f32>, usize)> {
        let batch = self.engine.batch_size;
        let engine = &mut self.engine;
        let slot = &mut self.slots[slot];
        let Some(cache) = slot.cache.as_mut() else {
            let (logits, reused) = engine.prefill(prompt)?;
            return Ok((logits.to_vec1::<f32>()?, reused));
        };
        // Always feed at least one token: its logits are the result.
        let common = shared_prefix(&slot.cached, prompt).min(prompt.len() - 1);
        cache.truncate(common);
        slot.cached.truncate(common);
        let mut logits = Vec::new();
        for chunk in prompt[common..].chunks(batch) {
            let fed = engine.model.forward_batch(&mut [BatchItem {
                cache,
                tokens: chunk,
            }]);
            match fed {
                Ok(l) => logits = l.to_vec(),
                Err(e) => {
                    // Some layers may hold this chunk already: the cache is no longer known.
                    cache.truncate(0);
                    slot.cached.clear();
                    return Err(e);
                }
            }
            slot.cached.extend_from_slice(chunk);
        }
        Ok((logits, common))
    }

    /// One decoding step: samples the next token of every running sequence, reports it, and
    /// feeds the ones that go on in one forward pass. Returns whether any sequence is still
    /// running.
    pub fn step(&mut self) -> bool {
        let context = self.engine.model.context_length;
        let mut feed: Vec<(usize, u32)> = Vec::new();
        for i in 0..self.slots.len() {
            let cached = self.slots[i].cached.len();
            let Some(live) = self.slots[i].live.as_mut() else {
                continue;
            };
            match advance(&self.engine, live, cached, context) {
                Outcome::Continue(next) => feed.push((i, next)),
                Outcome::Finished(reason) => self.finish(i, reason),
                Outcome::Gone => self.slots[i].live = None,
                Outcome::Failed(e) => self.fail(i, e),
            }
        }
        if !feed.is_empty() {
            if let Err(e) = self.feed(&feed) {
                let message = e.to_string();
                for &(i, _) in &feed {
                    self.slots[i].cached.clear();
                    if let Some(cache) = self.slots[i].cache.as_mut() {
                        cache.truncate(0);
                    }
                    self.fail(i, RuntimeError::Inference(message.clone()));
                }
            }
        }
        self.running() > 0
    }

    /// Feeds one token to each listed slot: one batched pass, or the engine's own cache.
    fn feed(&mut self, feed: &[(usize, u32)]) -> Result<()> {
        let vocab_logits = if self.slots[feed[0].0].cache.is_none() {
            let next = feed[0].1;
            vec![self.engine.feed(&[next])?.to_vec1::<f32>()?]
        } else {
            let tokens: Vec<[u32; 1]> = feed.iter().map(|&(_, t)| [t]).collect();
            let mut caches: Vec<Option<&mut KvCache>> =
                self.slots.iter_mut().map(|s| s.cache.as_mut()).collect();
            let mut items: Vec<BatchItem> = feed
                .iter()
                .zip(&tokens)
                .filter_map(|(&(i, _), t)| {
                    caches[i].take().map(|cache| BatchItem { cache, tokens: t })
                })
                .collect();
            let all = self.engine.model.forward_batch(&mut items)?;
            let vocab = all.len() / feed.len();
            all.chunks_exact(vocab).map(<[f32]>::to_vec).collect()
        };
        for (&(i, next), logits) in feed.iter().zip(vocab_logits) {
            let slot = &mut self.slots[i];
            if slot.cache.is_some() {
                slot.cached.push(next);
            } else {
                slot.cached = self.engine.cached.clone();
            }
            if let Some(live) = slot.live.as_mut() {
                live.logits = logits;
            }
        }
        Ok(())
    }

    fn finish(&mut self, slot: usize, stop_reason: StopReason) {
        let Some(mut live) = self.slots[slot].live.take() else {
            return;
        };
        if stop_reason != StopReason::StopSequence {
            if let Ok(decoded) = self.engine.decode(&live.generated) {
                let sink = &mut live.sink;
                live.stream.finish(&decoded, &mut |piece| {
                    sink(Event::Text(piece.to_string()));
                });
            }
        }
        let total_s = live.started.elapsed().as_secs_f64();
        let ttft_s = live.ttft_s.unwrap_or(total_s);
        let generation = Generation {
            text: std::mem::take(&mut live.stream.emitted),
            tokens: live.generated,
            prompt_tokens: live.prompt_tokens,
            reused_prompt_tokens: live.reused,
            stop_reason,
            timings: Timings {
                prefill_s: live.prefill_s,
                ttft_s,
                decode_s: total_s - ttft_s,
                total_s,
            },
        };
        (live.sink)(Event::Done(generation));
    }

    fn fail(&mut self, slot: usize, error: RuntimeError) {
        if let Some(mut live) = self.slots[slot].live.take() {
            (live.sink)(Event::Failed(error));
        }
    }
}

/// Samples and reports one token of a live sequence and decides whether it goes on.
fn advance(engine: &Engine, live: &mut Live, cached: usize, context: usize) -> Outcome {
    if live.options.max_tokens == 0 {
        return Outcome::Finished(StopReason::MaxTokens);
    }
    if let Some(deadline) = live.deadline {
        if Instant::now() >= deadline {
            let seconds = (deadline - live.started).as_secs_f64();
            return Outcome::Failed(RuntimeError::TimedOut { seconds });
        }
    }
    let logits = Tensor::from_slice(&live.logits, live.logits.len(), &Device::Cpu);
    let next = match logits
        .map_err(RuntimeError::from)
        .and_then(|l| live.sampler.sample(&l, &live.history))
    {
        Ok(next) => next,
        Err(e) => return Outcome::Failed(e),
    };
    live.ttft_s
        .get_or_insert_with(|| live.started.elapsed().as_secs_f64());
    if engine.stop_tokens.contains(&next) {
        return Outcome::Finished(StopReason::EndOfTurn);
    }
    live.generated.push(next);
    live.history.push(next);
    let decoded = match engine.decode(&live.generated) {
        Ok(d) => d,
        Err(e) => return Outcome::Failed(e),
    };
    let mut listening = true;
    let sink = &mut live.sink;
    let stopped = live.stream.push(&decoded, &mut |piece| {
        listening &= sink(Event::Text(piece.to_string()));
    });
    if !listening {
        return Outcome::Gone;
    }
    if stopped {
        return Outcome::Finished(StopReason::StopSequence);
    }
    if live.generated.len() >= live.options.max_tokens {
        return Outcome::Finished(StopReason::MaxTokens);
    }
    if cached >= context {
        return Outcome::Finished(StopReason::ContextFull);
    }
    Outcome::Continue(next)
}
