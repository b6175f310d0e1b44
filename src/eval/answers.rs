//! Answer evaluation: every question of a questions file asked through the `Assistant`, then
//! scored — token F1 of the answer against the reference answer, citation precision (a cited
//! page is one of the question's relevant pages), answer rate on answerable questions,
//! hand-off rate on unanswerable ones, and time to first token and total time.

use super::retrieval::{Percentiles, Question};
use crate::answer::{Answer, AnswerError, Assistant};
use serde::Serialize;
use std::collections::HashMap;

/// The JSON of `eval answers --json` (DESIGN's names).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswersReport {
    pub questions: usize,
    pub answerable: usize,
    pub unanswerable: usize,
    /// Answered (not handed off) among the answerable.
    pub answer_rate: f64,
    /// Handed off among the unanswerable.
    pub handoff_rate_unanswerable: f64,
    /// Citations naming a relevant page, among all citations of answers to answerable
    /// questions (1 when there are none).
    pub citation_precision: f64,
    /// Mean token F1 against the reference answer over answerable questions with one
    /// (0 for a hand-off).
    pub answer_f1: f64,
    /// Over the questions the model was asked.
    pub ttft_s: Percentiles,
    pub total_s: Percentiles,
    #[serde(skip)]
    pub outcomes: Vec<Outcome>,
}

/// One question's result, for `--verbose`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub id: String,
    pub answerable: bool,
    pub handoff: bool,
    pub f1: Option<f64>,
    pub cited: Vec<String>,
}

/// Asks every question (each on its own, no history) and scores the answers. `on_answer`
/// sees each question's answer as it comes (progress).
pub fn evaluate_answers(
    assistant: &mut Assistant,
    questions: &[Question],
    on_answer: &mut dyn FnMut(&Question, &Answer),
) -> Result<AnswersReport, AnswerError> {
    let mut outcomes = Vec::with_capacity(questions.len());
    let (mut ttft, mut total) = (Vec::new(), Vec::new());
    let (mut cited, mut cited_relevant) = (0usize, 0usize);
    for q in questions {
        let answer = assistant.ask(&q.question, &[])?;
        on_answer(q, &answer);
        if answer.timings.ttft_s > 0.0 {
            ttft.push(answer.timings.ttft_s);
        }
        total.push(answer.timings.total_s);
        let paths: Vec<String> = answer.citations.iter().map(|c| c.path.clone()).collect();
        if q.answerable && !answer.handoff {
            cited += paths.len();
            cited_relevant += paths.iter().filter(|p| q.relevant.contains(p)).count();
        }
        let f1 = q
            .answer
            .as_deref()
            .filter(|_| q.answerable)
            .map(|reference| {
                if answer.handoff {
                    0.0
                } else {
                    token_f1(&answer.answer, reference)
                }
            });
        outcomes.push(Outcome {
            id: q.id.clone(),
            answerable: q.answerable,
            handoff: answer.handoff,
            f1,
            cited: paths,
        });
    }
    let answerable: Vec<&Outcome> = outcomes.iter().filter(|o| o.answerable).collect();
    let unanswerable: Vec<&Outcome> = outcomes.iter().filter(|o| !o.answerable).collect();
    let share = |part: usize, whole: usize| {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64
        }
    };
    let f1s: Vec<f64> = answerable.iter().filter_map(|o| o.f1).collect();
    Ok(AnswersReport {
        questions: outcomes.len(),
        answerable: answerable.len(),
        unanswerable: unanswerable.len(),
        answer_rate: share(
            answerable.iter().filter(|o| !o.handoff).count(),
            answerable.len(),
        ),
        handoff_rate_unanswerable: share(
            unanswerable.iter().filter(|o| o.handoff).count(),
            unanswerable.len(),
        ),
        citation_precision: if cited == 0 {
            1.0
        } else {
            cited_relevant as f64 / cited as f64
        },
        answer_f1: if f1s.is_empty() {
            0.0
        } else {
            f1s.iter().sum::<f64>() / f1s.len() as f64
        },
        ttft_s: Percentiles::of(&ttft),
        total_s: Percentiles::of(&total),
        outcomes,
    })
}

/// SQuAD-style token F1: lower-cased words (letters and digits), counted with multiplicity.
pub fn token_f1(answer: &str, reference: &str) -> f64 {
    let tokens = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let (a, r) = (tokens(answer), tokens(reference));
    if a.is_empty() || r.is_empty() {
        return if a.is_empty() && r.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &r {
        *counts.entry(t.as_str()).or_default() += 1;
    }
    let mut common = 0usize;
    for t in &a {
        if let Some(n) = counts.get_mut(t.as_str()) {
            if *n > 0 {
                *n -= 1;
                common += 1;
            }
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / a.len() as f64;
    let recall = common as f64 / r.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_f1_counts_shared_words_with_multiplicity() {
        assert_eq!(token_f1("Refunds take 5 days.", "refunds take 5 days"), 1.0);
        assert_eq!(token_f1("nothing here", "refunds take days"), 0.0);
        // "the" twice in the answer, once in the reference: it matches once. 2 shared of 4
        // answer words and 3 reference words: p = 1/2, r = 2/3, F1 = 4/7.
        let f = token_f1("the the refunds take", "the refunds arrive");
        assert!((f - 4.0 / 7.0).abs() < 1e-12, "{f}");
        assert_eq!(token_f1("", ""), 1.0);
    }
}
