//! The model thread: owns the engine (in a [`Batcher`]), the knowledge bases and the
//! embedder, and serves jobs from a bounded queue. Generations run batched; retrieval,
//! embeddings and source look-ups run between decoding steps. HTTP handlers never touch the
//! model: they send a job and read its events from a channel, and dropping that channel (a
//! client that left) ends the job's generation at the next step.

use super::metrics::Metrics;
use crate::answer::audit::{AuditLog, ModelRecord};
use crate::answer::handoff::Turn;
use crate::answer::{Answer, AnswerError, Pending, Prepared, Support};
use crate::kb::{Embedder, StoredChunk, TokenCounter};
use crate::runtime::batch::{Batcher, Event, Request, Sink};
use crate::runtime::{GenerateOptions, Generation, Message, RuntimeError};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc::UnboundedSender, oneshot};

/// Work for the model thread.
pub enum Job {
    /// A plain chat completion: the messages rendered with the model's template.
    Chat {
        messages: Vec<Message>,
        options: GenerateOptions,
        deadline: Instant,
        events: UnboundedSender<Event>,
    },
    /// A support question answered from a knowledge base.
    Support {
        kb: String,
        question: String,
        history: Vec<Turn>,
        deadline: Instant,
        events: UnboundedSender<SupportEvent>,
    },
    /// A hand-off the customer asked for, with the conversation so far.
    Handoff {
        kb: String,
        conversation: Vec<Turn>,
        reply: oneshot::Sender<Answer>,
    },
    /// Texts to embed; the reply holds the vectors and the number of tokens read.
    Embed {
        texts: Vec<String>,
        reply: oneshot::Sender<Result<Embedded, String>>,
    },
    /// A stored passage, for a citation the widget opens.
    Source {
        kb: String,
        chunk_id: i64,
        reply: oneshot::Sender<Result<Option<StoredChunk>, String>>,
    },
}

/// Embedding vectors and the number of tokens read.
pub type Embedded = (Vec<Vec<f32>>, usize);

/// What a support job reports.
#[derive(Debug)]
pub enum SupportEvent {
    /// A piece of the model's draft (provisional: the final answer is checked).
    Draft(String),
    /// The checked answer or hand-off, and the tokens the model read and wrote for it; the
    /// last event.
    Answer(Box<Answer>, Usage),
    /// The last event of a job that failed.
    Failed(JobError),
}

/// Tokens of one generation (zero when the model was not asked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no knowledge base named '{0}' is served here")]
    UnknownKb(String),
    #[error(transparent)]
    Answer(#[from] AnswerError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// The bounded queue in front of the model thread.
#[derive(Clone)]
pub struct Queue {
    jobs: SyncSender<Job>,
    metrics: Arc<Metrics>,
}

/// Why a job was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full: try again later (HTTP 429).
    Full,
    /// The model thread has stopped (HTTP 503).
    Stopped,
}

impl Queue {
    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        // Counted before sending so the model thread never sees the depth go below zero.
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        let sent = self.jobs.try_send(job);
        if sent.is_err() {
            self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
        }
        match sent {
            Ok(()) => Ok(()),
            Err(mpsc::TrySendError::Full(_)) => Err(Refused::Full),
            Err(mpsc::TrySendError::Disconnected(_)) => Err(Refused::Stopped),
        }
    }
}

/// What the model thread serves.
pub struct Worker {
    pub batcher: Batcher,
    /// Knowledge bases by name.
    pub kbs: HashMap<String, Support>,
    pub embedder: Embedder,
    pub audit: Option<AuditLog>,
    pub model: ModelRecord,
}

/// A support answer waiting for its generation.
struct Waiting {
    kb: String,
    pending: Pending,
    events: UnboundedSender<SupportEvent>,
}

/// How a support generation ended, from the batcher's sink to the model thread.
enum Finished {
    Done(Generation),
    Failed(RuntimeError),
    Abandoned,
}

impl Worker {
    /// Starts the model thread with a queue of `queue` waiting jobs. The thread ends when
    /// every [`Queue`] is dropped and the last job is done.
    pub fn spawn(
        self,
        queue: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Queue, std::thread::JoinHandle<()>)> {
        let (jobs, receiver) = mpsc::sync_channel(queue);
        let thread_metrics = metrics.clone();
        let handle = std::thread::Builder::new()
            .name("frontdesk-model".into())
            .spawn(move || self.run(receiver, thread_metrics))?;
        Ok((Queue { jobs, metrics }, handle))
    }

    fn run(mut self, jobs: Receiver<Job>, metrics: Arc<Metrics>) {
        let (finished_tx, finished) = mpsc::channel::<(u64, Finished)>();
        let mut waiting: HashMap<u64, Waiting> = HashMap::new();
        let mut next_id = 0u64;
        let mut open = true;
        loop {
            // Take new jobs while a sequence slot is free; wait for one only when idle.
            while open && self.batcher.has_free_slot() {
                let idle = self.batcher.running() == 0 && waiting.is_empty();
                let job = if idle {
                    // A timeout keeps the thread responsive to metrics without busy-waiting.
                    match jobs.recv_timeout(Duration::from_secs(1)) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                } else {
                    match jobs.try_recv() {
                        Ok(job) => job,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                };
                metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                next_id += 1;
                self.handle(job, next_id, &finished_tx, &mut waiting, &metrics);
            }
            if self.batcher.running() > 0 {
                self.batcher.step();
            }
            metrics
                .running
                .store(self.batcher.running() as u64, Ordering::Relaxed);
            while let Ok((id, outcome)) = finished.try_recv() {
                if let Some(w) = waiting.remove(&id) {
                    self.complete(w, outcome, &metrics);
                }
            }
            if !open && self.batcher.running() == 0 && waiting.is_empty() {
                return;
            }
        }
    }

    fn handle(
        &mut self,
        job: Job,
        id: u64,
        finished: &Sender<(u64, Finished)>,
        waiting: &mut HashMap<u64, Waiting>,
        metrics: &Arc<Metrics>,
    ) {
        match job {
            Job::Chat {
                messages,
                options,
                deadline,
                events,
            } => {
                if Instant::now() >= deadline {
                    let _ = events.send(Event::Failed(timed_out_in_queue()));
                    return;
                }
                let prompt = match self.batcher.engine().chat_prompt(&messages) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = events.send(Event::Failed(e));
                        return;
                    }
                };
                let counted = metrics.clone();
                let sink: Sink = Box::new(move |event| {
                    if let Event::Done(g) = &event {
                        counted.count_generation(g);
                    }
                    events.send(event).is_ok()
                });
                let request = Request {
                    prompt,
                    options,
                    deadline: Some(deadline),
                };
                self.batcher.start(request, sink);
            }
            Job::Support {
                kb,
                question,
                history,
                deadline,
                events,
            } => {
                if Instant::now() >= deadline {
                    let _ = events.send(SupportEvent::Failed(timed_out_in_queue().into()));
                    return;
                }
                let Some(support) = self.kbs.get(&kb) else {
                    let _ = events.send(SupportEvent::Failed(JobError::UnknownKb(kb)));
                    return;
                };
                let pending = match support.prepare(self.batcher.engine(), &question, &history) {
                    Ok(Prepared::Done(answer)) => {
                        self.record(&kb, &answer, metrics);
                        let _ =
                            events.send(SupportEvent::Answer(Box::new(answer), Usage::default()));
                        return;
                    }
                    Ok(Prepared::Generate(pending)) => pending,
                    Err(e) => {
                        let _ = events.send(SupportEvent::Failed(e.into()));
                        return;
                    }
                };
                let request = Request {
                    prompt: pending.prompt.clone(),
                    options: support.settings().generate.clone(),
                    deadline: Some(deadline),
                };
                let drafts = events.clone();
                let done = finished.clone();
                let counted = metrics.clone();
                let sink: Sink = Box::new(move |event| {
                    let outcome = match event {
                        Event::Text(piece) => {
                            if drafts.send(SupportEvent::Draft(piece)).is_ok() {
                                return true;
                            }
                            Finished::Abandoned
                        }
                        Event::Done(g) => {
                            counted.count_generation(&g);
                            Finished::Done(g)
                        }
                        Event::Failed(e) => Finished::Failed(e),
                    };
                    let _ = done.send((id, outcome));
                    false
                });
                waiting.insert(
                    id,
                    Waiting {
                        kb,
                        pending,
                        events,
                    },
                );
                self.batcher.start(request, sink);
            }
            Job::Handoff {
                kb,
                conversation,
                reply,
            } => {
                // The route checked the name; a knowledge base never leaves while serving.
                if let Some(support) = self.kbs.get(&kb) {
                    let answer = support.hand_off_on_request(conversation);
                    self.record(&kb, &answer, metrics);
                    let _ = reply.send(answer);
                }
            }
            Job::Embed { texts, reply } => {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let counter = self.embedder.token_counter();
                let tokens = refs.iter().map(|t| counter.count(t)).sum();
                let vectors = self
                    .embedder
                    .embed_documents(&refs)
                    .map(|v| (v, tokens))
                    .map_err(|e| e.to_string());
                let _ = reply.send(vectors);
            }
            Job::Source {
                kb,
                chunk_id,
                reply,
            } => {
                let chunk = match self.kbs.get(&kb) {
                    Some(support) => support
                        .searcher()
                        .chunks(&[chunk_id])
                        .map(|c| c.into_iter().next())
                        .map_err(|e| e.to_string()),
                    None => Ok(None),
                };
                let _ = reply.send(chunk);
            }
        }
    }

    /// Checks a finished draft and sends the answer.
    fn complete(&mut self, w: Waiting, outcome: Finished, metrics: &Metrics) {
        let Some(support) = self.kbs.get(&w.kb) else {
            return;
        };
        match outcome {
            Finished::Done(generation) => {
                let answer = support.finish(w.pending, &generation);
                self.record(&w.kb, &answer, metrics);
                let usage = Usage {
                    prompt_tokens: generation.prompt_tokens,
                    completion_tokens: generation.tokens.len(),
                };
                let _ = w.events.send(SupportEvent::Answer(Box::new(answer), usage));
            }
            Finished::Failed(e) => {
                let _ = w.events.send(SupportEvent::Failed(e.into()));
            }
            Finished::Abandoned => {}
        }
    }

    /// The audit log entry and the answer counters.
    fn record(&self, kb: &str, answer: &Answer, metrics: &Metrics) {
        metrics.count_answer(answer);
        let (Some(audit), Some(support)) = (&self.audit, self.kbs.get(kb)) else {
            return;
        };
        if let Err(e) = audit.record(
            kb,
            &answer.question,
            answer,
            &self.model,
            support.settings(),
        ) {
            tracing::warn!("audit log: {e}");
        }
    }
}

fn timed_out_in_queue() -> RuntimeError {
    RuntimeError::TimedOut { seconds: 0.0 }
}
