//! Answering a customer's question from the knowledge base: retrieve → prompt → generate →
//! check citations → answer, or hand the case to a person with a ticket.
//!
//! `persona` (who the assistant is), `prompt` (the grounded prompt; documents as data),
//! `citations` (markers checked against the sources), `handoff` (when not to answer, and the
//! ticket).

pub mod audit;
pub mod citations;
pub mod followup;
pub mod guard;
pub mod handoff;
pub mod persona;
pub mod prompt;
pub mod scope;

use crate::kb::{KbError, Mode, Searcher};
use crate::runtime::{
    Engine, GenerateOptions, Generation, Message, Role, RuntimeError, SamplingParams,
};
use handoff::{asks_for_a_person, Candidate, HandoffReason, Ticket, Turn};
use persona::Persona;
use prompt::Source;
use serde::Serialize;
use std::time::Instant;

/// Why a question could not be handled at all (as opposed to handed off).
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("the question is empty — ask something, e.g. frontdesk ask \"How long does delivery take?\"")]
    EmptyQuestion,
    #[error("the question is {chars} characters long; the limit is {max} — shorten it to the question itself")]
    QuestionTooLong { chars: usize, max: usize },
    #[error(transparent)]
    Kb(#[from] KbError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// How questions are answered.
#[derive(Debug, Clone)]
pub struct AnswerSettings {
    /// Passages given to the model (the best chunk of each of the best pages).
    pub sources: usize,
    /// Below this best vector similarity between question and knowledge base, hand off
    /// without asking the model.
    pub min_confidence: f64,
    /// A retrieved page reaches the model only when its similarity to the question is within
    /// this of the most similar page's: a small model cites whatever it is shown, so pages
    /// clearly less related than the best are left out.
    pub source_margin: f64,
    pub max_question_chars: usize,
    pub generate: GenerateOptions,
}

impl Default for AnswerSettings {
    fn default() -> Self {
        AnswerSettings {
            sources: 3,
            // Tuned on the development set (scripts/eval-answers-dev): the sample help
            // centre's answerable questions score 0.34 and up, and 86 of the 87 Python FAQ
            // questions 0.45 and up against the Python docs; below 0.33 lie 6 of the sample's
            // 10 unanswerable questions, and 76 % of the sample's questions asked of the
            // Python docs.
            min_confidence: 0.33,
            // On the sample's questions this keeps 29 of the 30 relevant pages retrieved and
            // leaves out half of the others.
            source_margin: 0.10,
            max_question_chars: 4000,
            generate: GenerateOptions {
                max_tokens: 160,
                // Support answers should not depend on the dice, and copying a fact from a
                // source is what we want (no repeat penalty).
                sampling: SamplingParams::greedy(),
                // The model starting to write a prompt of its own, sources copied out as an
                // "answer" included, ends the answer there.
                stop_sequences: vec![
                    "Sources:".into(),
                    "Customer question:".into(),
                    "End of sources".into(),
                ],
                // A small model's worst habit: replying with the sources list itself
                // ("[1] Title …"). An answer starts with words.
                forbidden_starts: vec!["[".into()],
            },
        }
    }
}

/// Following chunks added to each kept page per page left out by the source margin.
const FOLLOWING_PER_FREE_SOURCE: usize = 1;

/// Shorter shared text between the end of a chunk and the start of the next is chance.
const MIN_OVERLAP: usize = 12;

/// Appends `next` to `text`, leaving out the start of `next` that repeats the end of `text`
/// (consecutive chunks overlap by a few words).
fn append_without_overlap(text: &mut String, next: &str) {
    let longest = text.len().min(next.len());
    let overlap = (MIN_OVERLAP..=longest)
        .rev()
        .filter(|&n| next.is_char_boundary(n) && text.is_char_boundary(text.len() - n))
        .find(|&n| text.ends_with(&next[..n]))
        .unwrap_or(0);
    if overlap > 0 {
        text.push_str(&next[overlap..]);
    } else if !next.trim().is_empty() {
        text.push('\n');
        text.push_str(next.trim_start());
    }
}

/// Pages read by similarity to the question (for the confidence and the source margin).
const SIMILARITY_DEPTH: usize = 20;

/// Consecutive words of the system message that an answer may not repeat.
const LEAK_WINDOW: usize = 8;

impl AnswerSettings {
    /// The question without surrounding whitespace, or why it cannot be asked: empty, or
    /// longer than `max_question_chars` as sent.
    pub fn check_question<'q>(&self, question: &'q str) -> Result<&'q str, AnswerError> {
        let chars = question.chars().count();
        if chars > self.max_question_chars {
            return Err(AnswerError::QuestionTooLong {
                chars,
                max: self.max_question_chars,
            });
        }
        let question = question.trim();
        if question.is_empty() {
            return Err(AnswerError::EmptyQuestion);
        }
        Ok(question)
    }
}

/// A citation as the customer sees it: the source's number in the answer and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Citation {
    pub n: usize,
    pub path: String,
    pub title: String,
    pub section: String,
    pub anchor: Option<String>,
    pub chunk_id: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AnswerTimings {
    pub retrieval_s: f64,
    /// Until the model's first token (0 when the model was not asked).
    pub ttft_s: f64,
    pub total_s: f64,
}

/// The outcome of one question.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// The customer's question, as asked.
    #[serde(skip)]
    pub question: String,
    /// The checked answer, or the hand-off message.
    pub answer: String,
    pub handoff: bool,
    /// Best vector similarity between the question and the knowledge base (0–1).
    pub confidence: f64,
    pub citations: Vec<Citation>,
    pub ticket: Option<Ticket>,
    pub timings: AnswerTimings,
    /// What the model wrote before checking (None when it was not asked).
    #[serde(skip)]
    pub draft: Option<String>,
    /// The passages the model saw.
    #[serde(skip)]
    pub sources: Vec<Source>,
}

/// Everything of answering but running the model: retrieval, the grounded prompt, checking
/// the draft, the hand-off. The model runs in between — in [`Assistant::ask`] on its own
/// engine, or in the server's batch next to other conversations.
pub struct Support {
    searcher: Searcher,
    persona: Persona,
    settings: AnswerSettings,
}

/// A question made ready for the model.
pub enum Prepared {
    /// Answered without the model: a hand-off.
    Done(Answer),
    /// The prompt for the model; give its generation to [`Support::finish`].
    Generate(Pending),
}

/// A question between retrieval and the model's draft.
pub struct Pending {
    /// The prompt tokens (system message first, so its KV state can be reused).
    pub prompt: Vec<u32>,
    question: String,
    /// What was searched for: the question, with the one it follows up on.
    query: String,
    conversation: Vec<Turn>,
    confidence: f64,
    sources: Vec<Source>,
    system: String,
    retrieval_s: f64,
    started: Instant,
}

impl Support {
    pub fn new(searcher: Searcher, persona: Persona, settings: AnswerSettings) -> Support {
        Support {
            searcher,
            persona,
            settings,
        }
    }

    pub fn persona(&self) -> &Persona {
        &self.persona
    }

    pub fn settings(&self) -> &AnswerSettings {
        &self.settings
    }

    pub fn searcher(&self) -> &Searcher {
        &self.searcher
    }

    /// Retrieves the sources of `question` (with `history`, the conversation before it, for
    /// follow-ups) and either hands off at once or gives the prompt for `engine`'s model.
    pub fn prepare(
        &self,
        engine: &Engine,
        question: &str,
        history: &[Turn],
    ) -> Result<Prepared, AnswerError> {
        let started = Instant::now();
        let question = self.settings.check_question(question)?;
        // A follow-up ("and how long does that take?") is searched, and put to the model,
        // together with the question it follows.
        let earlier = followup::earlier_question(question, history);
        let query = match earlier {
            Some(e) => format!("{e} {question}"),
            None => question.to_string(),
        };

        // Each page's similarity to the question (its best chunk's), for the confidence and
        // for leaving out pages far less related than the best one.
        let similar = self
            .searcher
            .search(&query, SIMILARITY_DEPTH, Mode::Vector)?;
        let confidence = similar.first().map_or(0.0, |h| h.score.clamp(0.0, 1.0));
        let similarity = |path: &str| {
            similar
                .iter()
                .find(|h| h.path == path)
                .map_or(0.0, |h| h.score)
        };
        let hits = self
            .searcher
            .search(&query, self.settings.sources, Mode::Hybrid)?;
        let best = hits
            .iter()
            .map(|h| similarity(&h.path))
            .fold(f64::NEG_INFINITY, f64::max);
        let ids: Vec<i64> = hits
            .iter()
            .filter(|h| similarity(&h.path) >= best - self.settings.source_margin)
            .map(|h| h.chunk_id)
            .collect();
        // Passages that address the assistant instead of the customer never reach the model.
        let planted = |c: &crate::kb::StoredChunk| {
            let planted = guard::looks_like_injection(&c.text);
            if planted {
                tracing::warn!(
                    "left out chunk {} of {}: it reads as instructions to the assistant",
                    c.id,
                    c.path
                );
            }
            planted
        };
        let chunks: Vec<_> = self
            .searcher
            .chunks(&ids)?
            .into_iter()
            .filter(|c| !planted(c))
            .collect();
        // Pages left out above free room for more of the pages kept: the chunks that follow
        // each one in its document, where the rest of an answer (the steps after an
        // introduction) usually is.
        let following =
            self.settings.sources.saturating_sub(chunks.len()) * FOLLOWING_PER_FREE_SOURCE;
        let mut sources = Vec::with_capacity(chunks.len());
        for c in chunks {
            let mut text = c.text.clone();
            if following > 0 {
                // Chunk ids of one document are consecutive, in document order.
                let next: Vec<i64> = (1..=following as i64).map(|i| c.id + i).collect();
                for n in self.searcher.chunks(&next)? {
                    if n.document_id != c.document_id || planted(&n) {
                        break;
                    }
                    append_without_overlap(&mut text, &n.text);
                }
            }
            sources.push(Source {
                chunk_id: c.id,
                section: c.heading_path.join(" › "),
                path: c.path,
                title: c.title,
                anchor: c.anchor,
                text,
            });
        }
        let retrieval_s = started.elapsed().as_secs_f64();
        let mut conversation: Vec<Turn> = history.to_vec();
        conversation.push(Turn {
            role: "customer",
            text: question.to_string(),
        });

        let early = if asks_for_a_person(question) {
            Some(HandoffReason::CustomerAsked)
        } else if sources.is_empty() || confidence < self.settings.min_confidence {
            Some(HandoffReason::LowConfidence)
        } else {
            None
        };
        if let Some(reason) = early {
            let timings = AnswerTimings {
                retrieval_s,
                ttft_s: 0.0,
                total_s: started.elapsed().as_secs_f64(),
            };
            return Ok(Prepared::Done(self.hand_off(
                question,
                reason,
                conversation,
                confidence,
                timings,
                None,
                sources,
            )));
        }

        let system = prompt::system_message(&self.persona);
        let asked = match earlier {
            Some(e) => format!("{question} (following up on: {e})"),
            None => question.to_string(),
        };
        let messages = [
            Message::new(Role::System, system.clone()),
            Message::new(Role::User, prompt::user_message(&sources, &asked)),
        ];
        tracing::debug!("prompt: {}", messages[1].content);
        let prompt = engine.chat_prompt(&messages)?;
        Ok(Prepared::Generate(Pending {
            prompt,
            question: question.to_string(),
            query,
            conversation,
            confidence,
            sources,
            system,
            retrieval_s,
            started,
        }))
    }

    /// Checks the model's draft for a prepared question: the answer with its supported
    /// citations, or a hand-off when nothing supported is left.
    pub fn finish(&self, pending: Pending, generation: &Generation) -> Answer {
        let Pending {
            question,
            query,
            conversation,
            confidence,
            sources,
            system,
            retrieval_s,
            started,
            ..
        } = pending;
        let timings = AnswerTimings {
            retrieval_s,
            ttft_s: retrieval_s + generation.timings.ttft_s,
            total_s: started.elapsed().as_secs_f64(),
        };
        let mut draft = generation.text.trim().to_string();
        if guard::leaks(&draft, &system, LEAK_WINDOW) {
            tracing::warn!("the draft repeated the system message; not given");
            draft.clear();
        }
        tracing::info!(
            "model draft ({} prompt tokens, ttft {:.2}s): {draft}",
            generation.prompt_tokens,
            generation.timings.ttft_s
        );
        let checked = match check_draft(&draft, &sources, &query) {
            Ok(checked) => checked,
            Err(reason) => {
                return self.hand_off(
                    &question,
                    reason,
                    conversation,
                    confidence,
                    timings,
                    Some(draft),
                    sources,
                )
            }
        };
        let citations = checked
            .cited
            .iter()
            .map(|&n| {
                let s = &sources[n - 1];
                Citation {
                    n,
                    path: s.path.clone(),
                    title: s.title.clone(),
                    section: s.section.clone(),
                    anchor: s.anchor.clone(),
                    chunk_id: s.chunk_id,
                }
            })
            .collect();
        Answer {
            question,
            answer: checked.text,
            handoff: false,
            confidence,
            citations,
            ticket: None,
            timings,
            draft: Some(draft),
            sources,
        }
    }

    /// The customer asked for a person outright (the widget's button): a hand-off with the
    /// conversation so far, its last customer message as the question.
    pub fn hand_off_on_request(&self, conversation: Vec<Turn>) -> Answer {
        let question = conversation
            .iter()
            .rev()
            .find(|t| t.role == "customer")
            .map_or_else(|| "(no question yet)".to_string(), |t| t.text.clone());
        self.hand_off(
            &question,
            HandoffReason::CustomerAsked,
            conversation,
            0.0,
            AnswerTimings::default(),
            None,
            Vec::new(),
        )
    }

    /// The hand-off answer; the ticket's candidates are the passages retrieved.
    #[allow(clippy::too_many_arguments)]
    fn hand_off(
        &self,
        question: &str,
        reason: HandoffReason,
        conversation: Vec<Turn>,
        confidence: f64,
        timings: AnswerTimings,
        draft: Option<String>,
        sources: Vec<Source>,
    ) -> Answer {
        let candidates = sources
            .iter()
            .map(|s| Candidate {
                path: s.path.clone(),
                title: s.title.clone(),
                section: s.section.clone(),
                similarity: confidence,
            })
            .collect();
        Answer {
            question: question.to_string(),
            answer: self.persona.handoff_message.clone(),
            handoff: true,
            confidence,
            citations: Vec::new(),
            ticket: Some(Ticket::new(question, reason, candidates, conversation)),
            timings,
            draft,
            sources,
        }
    }
}

/// The model's draft for `query` with its citations checked against `sources`, or why it is
/// not given: nothing written, no supported citation left, or an answer to something else.
fn check_draft(
    draft: &str,
    sources: &[Source],
    query: &str,
) -> Result<citations::Checked, HandoffReason> {
    if draft.is_empty() {
        return Err(HandoffReason::NotInSources);
    }
    let checked = citations::check(draft, sources);
    if checked.cited.is_empty() {
        return Err(HandoffReason::Unsupported);
    }
    if !scope::addresses(&checked.text, query) {
        return Err(HandoffReason::OffQuestion);
    }
    Ok(checked)
}

/// A knowledge base, a model and a persona, ready for questions one at a time.
pub struct Assistant {
    support: Support,
    engine: Engine,
}

impl Assistant {
    pub fn new(
        searcher: Searcher,
        engine: Engine,
        persona: Persona,
        settings: AnswerSettings,
    ) -> Assistant {
        Assistant {
            support: Support::new(searcher, persona, settings),
            engine,
        }
    }

    pub fn persona(&self) -> &Persona {
        &self.support.persona
    }

    pub fn settings(&self) -> &AnswerSettings {
        &self.support.settings
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Answers `question`; `history` is the conversation before it (for follow-ups and the
    /// ticket).
    pub fn ask(&mut self, question: &str, history: &[Turn]) -> Result<Answer, AnswerError> {
        self.ask_streaming(question, history, &mut |_| {})
    }

    /// `ask`, with the model's draft passed to `on_draft` piece by piece as it is written.
    /// The draft is not the answer: the answer is the draft after its citations are checked,
    /// or a hand-off.
    pub fn ask_streaming(
        &mut self,
        question: &str,
        history: &[Turn],
        on_draft: &mut dyn FnMut(&str),
    ) -> Result<Answer, AnswerError> {
        match self.support.prepare(&self.engine, question, history)? {
            Prepared::Done(answer) => Ok(answer),
            Prepared::Generate(pending) => {
                let generation = self.engine.generate(
                    &pending.prompt,
                    &self.support.settings.generate,
                    on_draft,
                )?;
                Ok(self.support.finish(pending, &generation))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_is_given_only_when_cited_supported_and_on_the_question() {
        let sources = [Source {
            chunk_id: 1,
            path: "payments/methods.md".into(),
            title: "Payment methods".into(),
            section: String::new(),
            anchor: None,
            text: "We don't accept cash on delivery, bank transfers or cheques. Card payments \
                   are taken when your order ships."
                .into(),
        }];
        let query = "Can I pay cash on delivery?";
        let answer = "We don't accept cash on delivery, bank transfers or cheques. [1]";
        let checked = check_draft(answer, &sources, query).unwrap();
        assert_eq!(checked.cited, [1]);
        assert_eq!(
            check_draft(answer, &sources, "Should I buy your shares this year?").err(),
            Some(HandoffReason::OffQuestion)
        );
        assert_eq!(
            check_draft(
                "Bitcoin transfers arrive within minutes. [1]",
                &sources,
                query
            )
            .err(),
            Some(HandoffReason::Unsupported)
        );
        assert_eq!(
            check_draft("", &sources, query).err(),
            Some(HandoffReason::NotInSources)
        );
    }

    #[test]
    fn following_chunks_are_joined_without_their_overlap() {
        let mut text = "Go to Account. Select Reset password and follow the link".to_string();
        append_without_overlap(
            &mut text,
            "Select Reset password and follow the link. It expires in 60 minutes.",
        );
        assert_eq!(
            text,
            "Go to Account. Select Reset password and follow the link. It expires in 60 minutes."
        );
        let mut text = "First part ends here.".to_string();
        append_without_overlap(&mut text, "Second part starts here.");
        assert_eq!(text, "First part ends here.\nSecond part starts here.");
        let mut text = "ends with a".to_string();
        append_without_overlap(&mut text, "a new start that shares one letter");
        assert_eq!(text, "ends with a\na new start that shares one letter");
    }
}
