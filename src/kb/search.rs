//! Search over one published generation of a knowledge base: BM25 (FTS5), vector (usearch)
//! or hybrid (reciprocal rank fusion of both), one hit per page.

use crate::kb::embedder::{Embedder, MODEL_NAME};
use crate::kb::error::{KbError, Result};
use crate::kb::layout::{Generation, KbDir};
use crate::kb::store::{Store, StoredChunk};
use crate::kb::vectors::VectorIndex;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// How deep each ranking is read before fusion and page merging (at least; more for large k).
pub const CANDIDATES: usize = 50;
/// The constant of reciprocal rank fusion: a page at rank r (from 1) scores w / (RRF_K + r).
/// Smaller than the customary 60, so the first ranks count for more: pages are few (k pages,
/// not chunks) and the top of each ranking is where the answers are.
pub const RRF_K: f64 = 20.0;
/// The weights of the BM25 and vector rankings in the fusion: the vector ranking is the
/// stronger one alone (recall@10 0.55 against 0.40 on the Python FAQ), so it counts more.
/// With k = 20 this raised hybrid MRR@10 from 0.384 to 0.410 on the Python FAQ and from 0.852
/// to 0.873 on the sample help centre's questions.
pub const FUSION_WEIGHTS: [f64; 2] = [0.8, 1.0];
/// Longest snippet, in characters.
pub const SNIPPET_CHARS: usize = 200;

/// Which ranking `Searcher::search` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Keywords through SQLite FTS5 (BM25).
    Bm25,
    /// Meaning through the embedding model and the vector index.
    Vector,
    /// Reciprocal rank fusion of the two.
    Hybrid,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Bm25, Mode::Vector, Mode::Hybrid];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Bm25 => "bm25",
            Mode::Vector => "vector",
            Mode::Hybrid => "hybrid",
        }
    }
}

/// One page found: its best chunk, where it is, and a short excerpt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub chunk_id: i64,
    /// The document's path relative to its ingest root.
    pub path: String,
    pub title: String,
    pub heading_path: Vec<String>,
    pub anchor: Option<String>,
    pub page: Option<u32>,
    /// Higher is better. BM25: the negated SQLite bm25(); vector: cosine similarity;
    /// hybrid: the RRF score.
    pub score: f64,
    pub snippet: String,
}

/// A read-only view of the generation that was current when it was opened.
pub struct Searcher {
    generation: Generation,
    store: Store,
    vectors: VectorIndex,
    embedder: Embedder,
}

impl std::fmt::Debug for Searcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Searcher")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Searcher {
    /// Reads `CURRENT` once and opens that generation: the store read-only and the vectors in
    /// memory. A later ingest publishing a new generation does not change what this searcher
    /// sees. The manifest's embedding model must be the embedder's.
    pub fn open(kb: &KbDir, embedder: Embedder) -> Result<Searcher> {
        let generation = kb.open_current()?;
        let manifest = generation.read_manifest()?;
        if manifest.embedding_model.name != MODEL_NAME
            || manifest.dimensions != embedder.dimensions()
        {
            return Err(KbError::EmbeddingMismatch {
                name: kb.name().to_string(),
                expected: format!("{MODEL_NAME} ({} dimensions)", embedder.dimensions()),
                found: format!(
                    "{} ({} dimensions)",
                    manifest.embedding_model.name, manifest.dimensions
                ),
            });
        }
        let store = Store::open_read_only(&generation.store_path())?;
        let vectors_path = generation.vectors_path();
        // A knowledge base of no chunks may have been published without a vector file.
        let vectors = if manifest.chunks == 0 && !vectors_path.exists() {
            VectorIndex::create(manifest.dimensions, 0)?
        } else {
            VectorIndex::load(&vectors_path, manifest.dimensions)?
        };
        Ok(Searcher {
            generation,
            store,
            vectors,
            embedder,
        })
    }

    /// Chunks by id, in the order given (ids not found are left out).
    pub fn chunks(&self, ids: &[i64]) -> Result<Vec<StoredChunk>> {
        let mut found = self.store.chunks(ids)?;
        found.sort_by_key(|c| ids.iter().position(|&id| id == c.id));
        Ok(found)
    }

    /// The generation this searcher reads.
    pub fn generation(&self) -> &Generation {
        &self.generation
    }

    /// The `k` best pages for `query`, best first; each page appears once, with its best chunk.
    pub fn search(&self, query: &str, k: usize, mode: Mode) -> Result<Vec<Hit>> {
        if query.trim().is_empty() {
            return Err(KbError::EmptyQuery);
        }
        if k == 0 {
            return Ok(Vec::new());
        }
        let depth = CANDIDATES.max(k.saturating_mul(5));
        let ranked: Vec<(i64, f64)> = match mode {
            Mode::Bm25 => self.store.bm25_search(query, depth)?,
            Mode::Vector => self.vector_ranking(query, depth)?,
            Mode::Hybrid => {
                let bm25: Vec<i64> = self
                    .store
                    .bm25_search(query, depth)?
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                let vector: Vec<i64> = self
                    .vector_ranking(query, depth)?
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                // Fused by page, not by chunk: a page whose best BM25 chunk and best vector
                // chunk differ still gets credit from both rankings.
                let mut all = bm25.clone();
                all.extend(&vector);
                let pages: HashMap<i64, String> = self
                    .store
                    .chunks(&all)?
                    .into_iter()
                    .map(|c| (c.id, c.path))
                    .collect();
                rrf_by_page(&[&bm25, &vector], &FUSION_WEIGHTS, RRF_K, |id| {
                    pages.get(&id).map(String::as_str)
                })
            }
        };
        let scores: HashMap<i64, f64> = ranked.iter().copied().collect();
        let ids: Vec<i64> = ranked.iter().map(|&(id, _)| id).collect();
        let chunks = self.store.chunks(&ids)?;
        let best = dedupe_pages(chunks, |c: &StoredChunk| c.path.as_str());
        Ok(best
            .into_iter()
            .take(k)
            .map(|c| Hit {
                chunk_id: c.id,
                score: scores.get(&c.id).copied().unwrap_or(0.0),
                snippet: snippet(&c.text, query, SNIPPET_CHARS),
                path: c.path,
                title: c.title,
                heading_path: c.heading_path,
                anchor: c.anchor,
                page: c.page,
            })
            .collect())
    }

    /// Chunk ids by cosine similarity to the query, best first.
    fn vector_ranking(&self, query: &str, depth: usize) -> Result<Vec<(i64, f64)>> {
        let vector = self.embedder.embed_query(query)?;
        Ok(self
            .vectors
            .search(&vector, depth)?
            .into_iter()
            .map(|(id, distance)| (id, 1.0 - f64::from(distance)))
            .collect())
    }
}

/// Weighted reciprocal rank fusion: each id scores the sum of weight / (`k` + rank) over the
/// rankings it appears in (rank from 1; `weights[i]` for ranking i, 1 where none is given).
/// Best first; equal scores keep the order in which ids were first met, reading the rankings
/// rank by rank.
pub fn rrf(rankings: &[&[i64]], weights: &[f64], k: f64) -> Vec<(i64, f64)> {
    let mut scores: HashMap<i64, f64> = HashMap::new();
    let mut order: Vec<i64> = Vec::new();
    let depth = rankings.iter().map(|r| r.len()).max().unwrap_or(0);
    for rank in 0..depth {
        for (i, ranking) in rankings.iter().enumerate() {
            let Some(&id) = ranking.get(rank) else {
                continue;
            };
            let score = scores.entry(id).or_insert_with(|| {
                order.push(id);
                0.0
            });
            *score += weights.get(i).copied().unwrap_or(1.0) / (k + (rank + 1) as f64);
        }
    }
    let mut fused: Vec<(i64, f64)> = order.into_iter().map(|id| (id, scores[&id])).collect();
    // A stable sort keeps first-met order among equal scores.
    fused.sort_by(|a, b| b.1.total_cmp(&a.1));
    fused
}

/// Reciprocal rank fusion of pages: each ranking of chunk ids is read as a ranking of pages
/// (a page ranks where its best chunk does) and the page rankings are fused with [`rrf`].
/// Each page is represented by its best chunk across the rankings, read rank by rank; ids with
/// no page are dropped.
pub fn rrf_by_page<'a>(
    rankings: &[&[i64]],
    weights: &[f64],
    k: f64,
    page: impl Fn(i64) -> Option<&'a str>,
) -> Vec<(i64, f64)> {
    let mut representative: HashMap<&str, i64> = HashMap::new();
    let depth = rankings.iter().map(|r| r.len()).max().unwrap_or(0);
    for rank in 0..depth {
        for ranking in rankings {
            if let Some(p) = ranking.get(rank).and_then(|&id| page(id)) {
                representative.entry(p).or_insert(ranking[rank]);
            }
        }
    }
    let page_rankings: Vec<Vec<i64>> = rankings
        .iter()
        .map(|ranking| {
            let ids = ranking
                .iter()
                .filter_map(|&id| page(id).map(|p| representative[p]));
            let mut seen = HashSet::new();
            ids.filter(|id| seen.insert(*id)).collect()
        })
        .collect();
    let refs: Vec<&[i64]> = page_rankings.iter().map(Vec::as_slice).collect();
    rrf(&refs, weights, k)
}

/// Keeps the first item of each page (the input is best first), in order.
pub fn dedupe_pages<T>(items: Vec<T>, page: impl Fn(&T) -> &str) -> Vec<T> {
    let mut seen: HashSet<String> = HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(page(item).to_string()))
        .collect()
}

/// Words too common to rank or place a snippet by: articles, pronouns, auxiliaries and the
/// question words customers start with.
pub(crate) const STOP_WORDS: &[&str] = &[
    "a", "about", "am", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can",
    "could", "did", "do", "does", "doing", "for", "from", "get", "had", "has", "have", "how", "i",
    "i'm", "if", "in", "into", "is", "it", "it's", "its", "me", "my", "of", "on", "or", "our",
    "should", "so", "some", "than", "that", "the", "their", "them", "then", "there", "these",
    "they", "this", "those", "to", "too", "us", "was", "we", "were", "what", "when", "where",
    "which", "who", "whom", "why", "will", "with", "would", "you", "your",
];

fn query_terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_lowercase();
        if !STOP_WORDS.contains(&word.as_str()) && !terms.contains(&word) {
            terms.push(word);
        }
    }
    terms
}

/// A window of at most `max_chars` characters of `text` (whitespace collapsed) placed where
/// the most distinct query terms occur; a word matches a term when it starts with it. The
/// window is cut at word boundaries where it can be and marked with `…` where it was cut.
pub fn snippet(text: &str, query: &str, max_chars: usize) -> String {
    let flat: Vec<char> = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .collect();
    if flat.len() <= max_chars {
        return flat.into_iter().collect();
    }
    if max_chars < 3 {
        return flat[..max_chars].iter().collect();
    }
    let terms = query_terms(query);
    // (char index of the word start, index of the term it matches)
    let mut matches: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < flat.len() {
        if !flat[i].is_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        while i < flat.len() && flat[i].is_alphanumeric() {
            i += 1;
        }
        let word: String = flat[start..i]
            .iter()
            .flat_map(|c| c.to_lowercase())
            .collect();
        if let Some(t) = terms.iter().position(|t| word.starts_with(t.as_str())) {
            matches.push((start, t));
        }
    }
    let inner = max_chars - 2; // room for an ellipsis at each end
    let lead = inner / 5; // context shown before the first match
    let mut best_start = 0;
    let mut best_count = 0;
    for &(pos, _) in &matches {
        let start = pos.saturating_sub(lead);
        let distinct: HashSet<usize> = matches
            .iter()
            .filter(|&&(p, _)| p >= start && p < start + inner)
            .map(|&(_, t)| t)
            .collect();
        if distinct.len() > best_count {
            best_count = distinct.len();
            best_start = start;
        }
    }
    let mut start = best_start.min(flat.len().saturating_sub(inner));
    let mut end = (start + inner).min(flat.len());
    // Cut at word boundaries: drop a partial word at either end when there is room.
    if start > 0 && flat[start - 1] != ' ' {
        if let Some(space) = flat[start..end].iter().position(|&c| c == ' ') {
            if space < inner / 4 {
                start += space + 1;
            }
        }
    }
    if end < flat.len() && flat[end] != ' ' {
        if let Some(space) = flat[start..end].iter().rposition(|&c| c == ' ') {
            if end - (start + space) < inner / 4 {
                end = start + space;
            }
        }
    }
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.extend(flat[start..end].iter());
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    if end < flat.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_fuses_two_rankings_in_the_expected_order() {
        // bm25: 1 2 3 4 ; vector: 3 1 5
        // 1: 1/61 + 1/62   3: 1/63 + 1/61   2: 1/62   5: 1/63   4: 1/64
        let fused = rrf(&[&[1, 2, 3, 4], &[3, 1, 5]], &[], 60.0);
        let ids: Vec<i64> = fused.iter().map(|&(id, _)| id).collect();
        assert_eq!(ids, vec![1, 3, 2, 5, 4]);
        let expect1 = 1.0 / 61.0 + 1.0 / 62.0;
        assert!((fused[0].1 - expect1).abs() < 1e-12);
        assert!((fused[4].1 - 1.0 / 64.0).abs() < 1e-12);
    }

    #[test]
    fn page_fusion_credits_a_page_from_both_rankings_through_different_chunks() {
        // Chunks 1 and 2 are page "a"; 3 is "b"; 4 is "c". BM25 ranks b's chunk first and a's
        // chunk 1 second; the vector ranking has a's other chunk 2 first. Chunk by chunk, "b"
        // would tie with "a"'s best chunk; page by page, "a" is first in one ranking and second
        // in the other.
        let page = |id: i64| match id {
            1 | 2 => Some("a"),
            3 => Some("b"),
            4 => Some("c"),
            _ => None,
        };
        let fused = rrf_by_page(&[&[3, 1, 4], &[2, 4, 3, 99]], &[], 60.0, page);
        let order: Vec<i64> = fused.iter().map(|&(id, _)| id).collect();
        // Page "a" is represented by its best chunk across both rankings, read rank by rank:
        // chunk 2 (vector rank 1) is met before chunk 1 (BM25 rank 2).
        assert_eq!(order, vec![2, 3, 4]);
        assert!((fused[0].1 - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-12);
    }

    #[test]
    fn rrf_ties_keep_first_met_order() {
        // 7 and 8 both score 1/61 + 1/62.
        let fused = rrf(&[&[7, 8], &[8, 7]], &[], 60.0);
        let ids: Vec<i64> = fused.iter().map(|&(id, _)| id).collect();
        assert_eq!(ids, vec![7, 8]);
        assert!(rrf(&[], &[], 60.0).is_empty());
        // A lighter ranking loses the tie it would otherwise win by being read first.
        let weighted = rrf(&[&[7, 8], &[8, 7]], &[0.8, 1.0], 60.0);
        assert_eq!(weighted[0].0, 8);
    }

    #[test]
    fn dedupe_keeps_each_pages_best_chunk_in_order() {
        let items = vec![
            ("a.md", 1),
            ("b.md", 2),
            ("a.md", 3),
            ("c.md", 4),
            ("b.md", 5),
        ];
        let kept = dedupe_pages(items, |i| i.0);
        assert_eq!(kept, vec![("a.md", 1), ("b.md", 2), ("c.md", 4)]);
    }

    #[test]
    fn short_text_is_the_whole_snippet_with_whitespace_collapsed() {
        assert_eq!(
            snippet("Refunds\n\n take  5 days.", "refund", 200),
            "Refunds take 5 days."
        );
    }

    #[test]
    fn snippet_centres_on_the_query_terms() {
        let filler = "lorem ipsum dolor sit amet ".repeat(20);
        let text = format!("{filler}Refunds are paid within five business days. {filler}");
        let s = snippet(&text, "When are refunds paid?", 200);
        assert!(s.chars().count() <= 200, "{s}");
        assert!(
            s.contains("Refunds are paid within five business days."),
            "{s}"
        );
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
    }

    #[test]
    fn snippet_respects_char_boundaries_with_non_ascii_text() {
        let filler = "Größe über Maß — naïve café ".repeat(15);
        let text = format!("{filler}Rückerstattung dauert fünf Tage. {filler}日本語のテキスト");
        for max in [10, 50, 120, 200] {
            let s = snippet(&text, "rückerstattung", max);
            assert!(s.chars().count() <= max, "{max}: {s}");
            assert!(std::str::from_utf8(s.as_bytes()).is_ok());
        }
        assert!(snippet(&text, "rückerstattung", 200).contains("Rückerstattung dauert"));
        let cjk = "日本語".repeat(100);
        let s = snippet(&cjk, "x", 20);
        assert!(s.starts_with('日') && s.ends_with('…'), "{s}");
        assert!(s.chars().count() <= 20, "{s}");
    }

    #[test]
    fn snippet_without_matches_starts_at_the_beginning() {
        let text = "alpha beta gamma delta ".repeat(30);
        let s = snippet(&text, "zebra", 60);
        assert!(s.starts_with("alpha beta"), "{s}");
        assert!(s.ends_with('…') && s.chars().count() <= 60, "{s}");
    }
}
