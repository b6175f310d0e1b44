//! Retrieval evaluation: each answerable question is searched in every mode (k = 10), the
//! ranked distinct page paths are compared with the question's `relevant` pages, and recall@1,
//! @5, @10, MRR@10 and nDCG@10 (binary relevance) are averaged over the questions.

use crate::kb::{KbError, Mode, Searcher};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Hits read per question and mode.
pub const EVAL_K: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read the questions file {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    #[error("{path} line {line}: {reason} — each line must be one JSON object like {{\"id\": \"q1\", \"question\": \"...\", \"relevant\": [\"page.html\"], \"answerable\": true}}")]
    BadLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("{path} holds no answerable question with relevant pages — nothing to evaluate")]
    NoQuestions { path: PathBuf },

    #[error(transparent)]
    Kb(#[from] KbError),
}

/// One line of a questions file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Question {
    pub id: String,
    pub question: String,
    #[serde(default)]
    pub relevant: Vec<String>,
    #[serde(default)]
    pub answer: Option<String>,
    #[serde(default = "yes")]
    pub answerable: bool,
}

fn yes() -> bool {
    true
}

/// Reads a JSONL questions file; blank lines are skipped, any other bad line is an error
/// naming its line number (from 1).
pub fn read_questions(path: &Path) -> Result<Vec<Question>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|error| EvalError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let mut questions = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| EvalError::BadLine {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let q: Question = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        if q.question.trim().is_empty() {
            return Err(bad("the question is empty".into()));
        }
        if q.answerable && q.relevant.is_empty() {
            return Err(bad(
                "an answerable question needs at least one relevant page".into(),
            ));
        }
        questions.push(q);
    }
    Ok(questions)
}

/// The fraction of the relevant pages found in the first `k` of `ranked`.
pub fn recall_at(ranked: &[String], relevant: &[String], k: usize) -> f64 {
    let relevant: HashSet<&str> = relevant.iter().map(String::as_str).collect();
    if relevant.is_empty() {
        return 0.0;
    }
    let found: HashSet<&str> = ranked
        .iter()
        .take(k)
        .map(String::as_str)
        .filter(|p| relevant.contains(p))
        .collect();
    found.len() as f64 / relevant.len() as f64
}

/// 1 / rank of the first relevant page within the first `k`, else 0.
pub fn mrr_at(ranked: &[String], relevant: &[String], k: usize) -> f64 {
    ranked
        .iter()
        .take(k)
        .position(|p| relevant.contains(p))
        .map_or(0.0, |i| 1.0 / (i + 1) as f64)
}

/// Normalised discounted cumulative gain of the first `k` with binary relevance:
/// DCG = Σ 1 / log2(rank + 1) over relevant ranks; ideal DCG puts every relevant page first.
pub fn ndcg_at(ranked: &[String], relevant: &[String], k: usize) -> f64 {
    let relevant_set: HashSet<&str> = relevant.iter().map(String::as_str).collect();
    if relevant_set.is_empty() {
        return 0.0;
    }
    let gain = |i: usize| 1.0 / ((i + 2) as f64).log2();
    let mut seen = HashSet::new();
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, p)| relevant_set.contains(p.as_str()) && seen.insert(p.as_str()))
        .map(|(i, _)| gain(i))
        .sum();
    let ideal: f64 = (0..relevant_set.len().min(k)).map(gain).sum();
    dcg / ideal
}

/// Averages for one mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ModeScores {
    #[serde(rename = "recall@1")]
    pub recall_1: f64,
    #[serde(rename = "recall@5")]
    pub recall_5: f64,
    #[serde(rename = "recall@10")]
    pub recall_10: f64,
    #[serde(rename = "mrr@10")]
    pub mrr_10: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg_10: f64,
}

impl ModeScores {
    /// Scores of one question's ranking.
    pub fn of(ranked: &[String], relevant: &[String]) -> ModeScores {
        ModeScores {
            recall_1: recall_at(ranked, relevant, 1),
            recall_5: recall_at(ranked, relevant, 5),
            recall_10: recall_at(ranked, relevant, 10),
            mrr_10: mrr_at(ranked, relevant, 10),
            ndcg_10: ndcg_at(ranked, relevant, 10),
        }
    }

    /// The mean of several questions' scores (zeros for none).
    pub fn mean(all: &[ModeScores]) -> ModeScores {
        if all.is_empty() {
            return ModeScores::default();
        }
        let n = all.len() as f64;
        let sum = |f: fn(&ModeScores) -> f64| all.iter().map(f).sum::<f64>() / n;
        ModeScores {
            recall_1: sum(|s| s.recall_1),
            recall_5: sum(|s| s.recall_5),
            recall_10: sum(|s| s.recall_10),
            mrr_10: sum(|s| s.mrr_10),
            ndcg_10: sum(|s| s.ndcg_10),
        }
    }
}

/// The 50th and 95th percentile of a set of timings (search latency in milliseconds, answer
/// times in seconds): the `{"p50", "p95"}` of every JSON report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (zeros for none).
    pub fn of(samples: &[f64]) -> Percentiles {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if sorted.is_empty() {
                0.0
            } else {
                let rank = (q * sorted.len() as f64).ceil() as usize;
                sorted[rank.clamp(1, sorted.len()) - 1]
            }
        };
        Percentiles {
            p50: at(0.50),
            p95: at(0.95),
        }
    }
}

/// One mode's averages and latency: the DESIGN keys plus `latency_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ModeReport {
    #[serde(flatten)]
    pub scores: ModeScores,
    pub latency_ms: Percentiles,
}

/// The relevant pages one mode did not return in its first 10 for one question.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuestionMisses {
    pub id: String,
    pub question: String,
    pub mode: &'static str,
    pub missed: Vec<String>,
    /// What the mode returned instead (first pages).
    pub returned: Vec<String>,
}

/// The JSON of `eval retrieval --json`: `{"questions", "modes": {"bm25", "vector", "hybrid"}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetrievalReport {
    pub questions: usize,
    pub modes: BTreeMap<&'static str, ModeReport>,
    #[serde(skip)]
    pub misses: Vec<QuestionMisses>,
}

/// Runs every answerable question with relevant pages in every mode.
pub fn evaluate(searcher: &Searcher, questions: &[Question]) -> Result<RetrievalReport, EvalError> {
    let used: Vec<&Question> = questions
        .iter()
        .filter(|q| q.answerable && !q.relevant.is_empty())
        .collect();
    let mut modes = BTreeMap::new();
    let mut misses = Vec::new();
    for mode in Mode::ALL {
        let mut scores = Vec::with_capacity(used.len());
        let mut millis = Vec::with_capacity(used.len());
        for q in &used {
            let started = Instant::now();
            let hits = searcher.search(&q.question, EVAL_K, mode)?;
            millis.push(started.elapsed().as_secs_f64() * 1e3);
            let ranked: Vec<String> = hits.into_iter().map(|h| h.path).collect();
            scores.push(ModeScores::of(&ranked, &q.relevant));
            let missed: Vec<String> = q
                .relevant
                .iter()
                .filter(|r| !ranked.contains(r))
                .cloned()
                .collect();
            if !missed.is_empty() {
                misses.push(QuestionMisses {
                    id: q.id.clone(),
                    question: q.question.clone(),
                    mode: mode.name(),
                    missed,
                    returned: ranked.iter().take(3).cloned().collect(),
                });
            }
        }
        modes.insert(
            mode.name(),
            ModeReport {
                scores: ModeScores::mean(&scores),
                latency_ms: Percentiles::of(&millis),
            },
        );
    }
    Ok(RetrievalReport {
        questions: used.len(),
        modes,
        misses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    const EPS: f64 = 1e-9;

    #[test]
    fn one_relevant_page_at_rank_three() {
        let ranked = v(&["a", "b", "r", "c"]);
        let rel = v(&["r"]);
        assert_eq!(recall_at(&ranked, &rel, 1), 0.0);
        assert_eq!(recall_at(&ranked, &rel, 5), 1.0);
        assert!((mrr_at(&ranked, &rel, 10) - 1.0 / 3.0).abs() < EPS);
        // DCG = 1/log2(4) = 0.5; ideal = 1.
        assert!((ndcg_at(&ranked, &rel, 10) - 0.5).abs() < EPS);
    }

    #[test]
    fn two_relevant_pages_one_found() {
        let ranked = v(&["x", "r1", "y"]);
        let rel = v(&["r1", "r2"]);
        assert_eq!(recall_at(&ranked, &rel, 1), 0.0);
        assert!((recall_at(&ranked, &rel, 5) - 0.5).abs() < EPS);
        assert!((mrr_at(&ranked, &rel, 10) - 0.5).abs() < EPS);
        // DCG = 1/log2(3); ideal = 1 + 1/log2(3).
        let expect = (1.0 / 3f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!((ndcg_at(&ranked, &rel, 10) - expect).abs() < EPS);
    }

    #[test]
    fn two_relevant_pages_both_first_is_perfect() {
        let ranked = v(&["r2", "r1", "z"]);
        let rel = v(&["r1", "r2"]);
        assert_eq!(recall_at(&ranked, &rel, 1), 0.5);
        assert_eq!(recall_at(&ranked, &rel, 10), 1.0);
        assert_eq!(mrr_at(&ranked, &rel, 10), 1.0);
        assert!((ndcg_at(&ranked, &rel, 10) - 1.0).abs() < EPS);
    }

    #[test]
    fn no_hits_scores_zero_and_means_average() {
        let rel = v(&["r"]);
        let none = ModeScores::of(&[], &rel);
        assert_eq!(none, ModeScores::default());
        let perfect = ModeScores::of(&v(&["r"]), &rel);
        let mean = ModeScores::mean(&[none, perfect]);
        assert_eq!(mean.recall_1, 0.5);
        assert_eq!(mean.mrr_10, 0.5);
        assert_eq!(mean.ndcg_10, 0.5);
    }

    #[test]
    fn relevant_beyond_k_is_not_counted() {
        let mut ranked: Vec<String> = (0..12).map(|i| format!("p{i}")).collect();
        ranked[10] = "r".into();
        let rel = v(&["r"]);
        assert_eq!(recall_at(&ranked, &rel, 10), 0.0);
        assert_eq!(mrr_at(&ranked, &rel, 10), 0.0);
        assert_eq!(ndcg_at(&ranked, &rel, 10), 0.0);
    }

    #[test]
    fn bad_line_names_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.jsonl");
        std::fs::write(
            &path,
            "{\"id\":\"1\",\"question\":\"q?\",\"relevant\":[\"a\"],\"answerable\":true}\n\n{oops\n",
        )
        .unwrap();
        let err = read_questions(&path).unwrap_err();
        assert!(matches!(err, EvalError::BadLine { line: 3, .. }), "{err}");
        assert!(err.to_string().contains("line 3"));
    }

    #[test]
    fn reads_answerable_and_unanswerable_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.jsonl");
        std::fs::write(
            &path,
            "{\"id\":\"1\",\"question\":\"q?\",\"relevant\":[\"a\"],\"answer\":\"x\",\"answerable\":true}\n\
             {\"id\":\"2\",\"question\":\"r?\",\"relevant\":[],\"answer\":null,\"answerable\":false}\n",
        )
        .unwrap();
        let qs = read_questions(&path).unwrap();
        assert_eq!(qs.len(), 2);
        assert!(!qs[1].answerable);
    }

    #[test]
    fn latency_percentiles_use_nearest_rank() {
        let samples: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(
            Percentiles::of(&samples),
            Percentiles {
                p50: 10.0,
                p95: 19.0
            }
        );
        assert_eq!(Percentiles::of(&[7.0]), Percentiles { p50: 7.0, p95: 7.0 });
        assert_eq!(Percentiles::of(&[]), Percentiles::default());
    }
}
