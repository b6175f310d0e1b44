//! Splitting sections into chunks for embedding and retrieval. Chunks follow the document's
//! structure: one never spans two sections, and a section is cut at paragraph breaks first,
//! then sentence (or line) ends, then between words, so each chunk reads as a whole.
//! Neighbouring chunks of a section share a few words of overlap so that a sentence cut at a
//! boundary is still found with its context.

use std::ops::Range;
use std::path::PathBuf;

use crate::kb::document::Document;
use crate::kb::error::{KbError, Result};

/// A chunk also stays under this many bytes per token of budget. Real text runs 2–6 bytes per
/// token; the cap only bites where the counter underrates a text, such as a long unbroken
/// string (minified code, base64) that `WordEstimate` counts as one word.
const MAX_BYTES_PER_TOKEN: usize = 16;

/// Whether `text[range]` fits in `tokens`, in tokens and in bytes.
fn fits(text: &str, range: Range<usize>, tokens: usize, counter: &dyn TokenCounter) -> bool {
    range.len() <= tokens * MAX_BYTES_PER_TOKEN && counter.count(&text[range]) <= tokens
}

/// Counts tokens the way the embedding model will see them.
pub trait TokenCounter {
    fn count(&self, text: &str) -> usize;

    /// The tokens of each word of `text` (`words` are its whitespace-separated words, in
    /// order), from one pass over the whole text — for a counter whose count of any run of
    /// whole words is the sum of its words' counts (WordPiece after BERT's pre-tokenizer is).
    /// `None` (the default) when that does not hold: every count is then made afresh.
    fn word_counts(&self, _text: &str, _words: &[Range<usize>]) -> Option<Vec<usize>> {
        None
    }
}

/// A section's counter: counts of runs of whole words come from prefix sums of the per-word
/// counts, so packing a section costs one tokenizer pass instead of one per candidate chunk.
/// Any other text goes to the inner counter.
struct SectionCounter<'a> {
    text: &'a str,
    inner: &'a dyn TokenCounter,
    /// Start and end byte of each word, and `prefix[i]` = tokens of words `..i`.
    starts: Vec<usize>,
    ends: Vec<usize>,
    prefix: Vec<usize>,
}

impl<'a> SectionCounter<'a> {
    fn new(text: &'a str, inner: &'a dyn TokenCounter) -> SectionCounter<'a> {
        let words = words(text, 0..text.len());
        let counts = inner.word_counts(text, &words);
        let mut prefix = vec![0];
        if let Some(counts) = &counts {
            for c in counts {
                prefix.push(prefix[prefix.len() - 1] + c);
            }
        }
        SectionCounter {
            text,
            inner,
            starts: if counts.is_some() {
                words.iter().map(|w| w.start).collect()
            } else {
                Vec::new()
            },
            ends: if counts.is_some() {
                words.iter().map(|w| w.end).collect()
            } else {
                Vec::new()
            },
            prefix,
        }
    }

    /// `s`'s byte range in the section text, when `s` is a slice of it.
    fn range_of(&self, s: &str) -> Option<Range<usize>> {
        let base = self.text.as_ptr() as usize;
        let at = (s.as_ptr() as usize).checked_sub(base)?;
        (at + s.len() <= self.text.len()).then_some(at..at + s.len())
    }
}

impl TokenCounter for SectionCounter<'_> {
    fn count(&self, s: &str) -> usize {
        if self.prefix.len() > 1 {
            if let Some(r) = self.range_of(s) {
                let first = self.starts.partition_point(|&w| w < r.start);
                let last = self.ends.partition_point(|&e| e <= r.end);
                // Whole words only: the range starts at a word's start and ends at a word's end
                // (any whitespace around them holds no tokens).
                let starts_at_word = self.starts.get(first) == Some(&r.start)
                    || self.text
                        [r.start..self.starts.get(first).copied().unwrap_or(r.end).min(r.end)]
                        .chars()
                        .all(char::is_whitespace);
                let ends_at_word = last == 0
                    || self.text[self.ends[last - 1].max(r.start)..r.end]
                        .chars()
                        .all(char::is_whitespace);
                if starts_at_word && ends_at_word {
                    return if last > first {
                        self.prefix[last] - self.prefix[first]
                    } else {
                        0
                    };
                }
            }
        }
        self.inner.count(s)
    }
}

/// An estimate for when no tokenizer is at hand: whitespace-separated words × 1.3, rounded up.
/// English prose averages about 1.3 WordPiece/BPE tokens per word; code, numbers and other
/// languages run higher, so give the real tokenizer when it is loaded.
#[derive(Debug, Clone, Copy, Default)]
pub struct WordEstimate;

impl TokenCounter for WordEstimate {
    fn count(&self, text: &str) -> usize {
        (text.split_whitespace().count() * 13).div_ceil(10)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkOptions {
    /// Upper bound on a chunk's tokens.
    pub max_tokens: usize,
    /// Tokens a chunk repeats from the end of the previous chunk of the same section.
    pub overlap_tokens: usize,
    /// A section's last chunk with fewer new tokens than this takes units from the chunk
    /// before it (same section only), so sections do not end in a scrap.
    pub min_tail_tokens: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        ChunkOptions {
            max_tokens: 128,
            overlap_tokens: 16,
            min_tail_tokens: 16,
        }
    }
}

impl ChunkOptions {
    fn validate(&self) -> Result<()> {
        let reason = if self.max_tokens < 8 {
            "max_tokens must be at least 8 — a smaller budget cannot hold a sentence"
        } else if self.overlap_tokens * 2 > self.max_tokens {
            "overlap_tokens must be at most half of max_tokens — lower the overlap"
        } else {
            return Ok(());
        };
        Err(KbError::InvalidChunking {
            reason: format!(
                "{reason} (max_tokens {}, overlap_tokens {})",
                self.max_tokens, self.overlap_tokens
            ),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The document's path, relative to its ingest root.
    pub path: PathBuf,
    pub title: String,
    pub heading_path: Vec<String>,
    pub anchor: Option<String>,
    pub page: Option<u32>,
    /// Index of the section in `Document::sections`.
    pub section: usize,
    /// Where `text` lies in the section's text: `section.text[byte_range] == text`.
    pub byte_range: Range<usize>,
    pub text: String,
    pub tokens: usize,
}

pub fn chunk_document(
    doc: &Document,
    options: &ChunkOptions,
    counter: &dyn TokenCounter,
) -> Result<Vec<Chunk>> {
    options.validate()?;
    let mut chunks = Vec::new();
    for (index, section) in doc.sections.iter().enumerate() {
        let counter = SectionCounter::new(&section.text, counter);
        let counter = &counter;
        for range in chunk_text(&section.text, options, counter) {
            let text = section.text[range.clone()].to_string();
            chunks.push(Chunk {
                path: doc.path.clone(),
                title: doc.title.clone(),
                heading_path: section.heading_path.clone(),
                anchor: section.anchor.clone(),
                page: section.page,
                section: index,
                tokens: counter.count(&section.text[range.clone()]),
                byte_range: range,
                text,
            });
        }
    }
    Ok(chunks)
}

/// A chunk while packing: its start (inside the previous chunk when it overlaps), the units it
/// adds, and its end.
struct Packed {
    start: usize,
    units: Range<usize>,
    end: usize,
}

/// The byte ranges of one section's chunks (options already validated).
fn chunk_text(text: &str, options: &ChunkOptions, counter: &dyn TokenCounter) -> Vec<Range<usize>> {
    let max = options.max_tokens;
    // Each unit fits beside a full overlap, so any unit can start a chunk.
    let units = units(text, max - options.overlap_tokens, counter);
    let word_starts = word_starts(text);
    let overlap_start = |start: usize, end: usize| -> Option<usize> {
        if options.overlap_tokens == 0 {
            return None;
        }
        // The earliest word start (after the chunk's own start) whose tail fits the overlap.
        let lo = word_starts.partition_point(|&w| w <= start);
        let hi = word_starts.partition_point(|&w| w < end);
        word_starts[lo..hi]
            .iter()
            .rev()
            .take_while(|&&w| counter.count(&text[w..end]) <= options.overlap_tokens)
            .last()
            .copied()
    };
    // The start of a chunk whose first new unit is `first`, overlapping `prev` when it fits.
    let chunk_start = |prev: Option<&Packed>, first: usize| -> usize {
        let own = units[first].start;
        prev.and_then(|p| overlap_start(p.start, p.end))
            .filter(|&s| fits(text, s..units[first].end, max, counter))
            .unwrap_or(own)
    };

    let mut packed: Vec<Packed> = Vec::new();
    let mut i = 0;
    while i < units.len() {
        let start = chunk_start(packed.last(), i);
        let mut j = i + 1;
        while j < units.len() && fits(text, start..units[j].end, max, counter) {
            j += 1;
        }
        packed.push(Packed {
            start,
            units: i..j,
            end: units[j - 1].end,
        });
        i = j;
    }

    // A scrap at the end of the section: move whole units into it from the chunk before, while
    // both still fit, until it has enough of its own.
    let new_tokens = |p: &Packed| counter.count(&text[units[p.units.start].start..p.end]);
    while let [.., prev, last] = packed.as_mut_slice() {
        if new_tokens(last) >= options.min_tail_tokens || prev.units.len() < 2 {
            break;
        }
        let moved = prev.units.end - 1;
        let shorter = Packed {
            start: prev.start,
            units: prev.units.start..moved,
            end: units[moved - 1].end,
        };
        let start = chunk_start(Some(&shorter), moved);
        if !fits(text, start..last.end, max, counter) {
            break;
        }
        *prev = shorter;
        last.start = start;
        last.units.start = moved;
    }
    packed.into_iter().map(|p| p.start..p.end).collect()
}

/// The pieces chunks are made of, in order, each within `budget` tokens: paragraphs, or for a
/// paragraph too long its sentences, or for a sentence too long its words, or for a word too
/// long (a URL, a base64 blob) as much of it as fits.
fn units(text: &str, budget: usize, counter: &dyn TokenCounter) -> Vec<Range<usize>> {
    let fits = |r: &Range<usize>| fits(text, r.clone(), budget, counter);
    let mut out = Vec::new();
    for para in paragraphs(text) {
        if fits(&para) {
            out.push(para);
            continue;
        }
        for sentence in sentences(text, para) {
            if fits(&sentence) {
                out.push(sentence);
                continue;
            }
            for word in words(text, sentence) {
                if fits(&word) {
                    out.push(word);
                } else {
                    split_word(text, word, budget, counter, &mut out);
                }
            }
        }
    }
    out
}

/// Runs of non-blank lines, trimmed.
fn paragraphs(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut current: Option<Range<usize>> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let line_start = offset;
        offset += line.len();
        if line.trim().is_empty() {
            out.extend(current.take());
            continue;
        }
        let start = line_start + (line.len() - line.trim_start().len());
        let end = line_start + line.trim_end().len();
        current = Some(current.map_or(start..end, |c| c.start..end));
    }
    out.extend(current);
    out
}

/// Sentences of a paragraph: ends at `.`, `!` or `?` (with any closing quotes or brackets)
/// before whitespace, and at line breaks (list items, code lines).
fn sentences(text: &str, para: Range<usize>) -> Vec<Range<usize>> {
    let s = &text[para.clone()];
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = if c == '\n' {
            Some(i)
        } else if matches!(c, '.' | '!' | '?') {
            let mut end = i + c.len_utf8();
            while let Some(&(j, q)) = chars.peek() {
                if !matches!(q, '"' | '\'' | ')' | ']' | '”' | '’') {
                    break;
                }
                end = j + q.len_utf8();
                chars.next();
            }
            chars
                .peek()
                .is_some_and(|&(_, n)| n.is_whitespace())
                .then_some(end)
        } else {
            None
        };
        if let Some(end) = end {
            push_trimmed(s, start..end, para.start, &mut out);
            start = end;
        }
    }
    push_trimmed(s, start..s.len(), para.start, &mut out);
    out
}

fn push_trimmed(s: &str, r: Range<usize>, base: usize, out: &mut Vec<Range<usize>>) {
    let piece = &s[r.clone()];
    let lead = piece.len() - piece.trim_start().len();
    let trimmed = piece.trim();
    if !trimmed.is_empty() {
        let start = base + r.start + lead;
        out.push(start..start + trimmed.len());
    }
}

fn words(text: &str, range: Range<usize>) -> Vec<Range<usize>> {
    let s = &text[range.clone()];
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(st)) => {
                out.push(range.start + st..range.start + i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(st) = start {
        out.push(range.start + st..range.end);
    }
    out
}

/// Byte offsets where a word begins.
fn word_starts(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut prev_space = true;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if prev_space && !space {
            out.push(i);
        }
        prev_space = space;
    }
    out
}

/// Cuts one word into the longest pieces within `budget` (tokens and bytes), at char boundaries. A piece holds
/// at least one character, so a counter that rates every character over budget still ends.
fn split_word(
    text: &str,
    word: Range<usize>,
    budget: usize,
    counter: &dyn TokenCounter,
    out: &mut Vec<Range<usize>>,
) {
    let bounds: Vec<usize> = text[word.clone()]
        .char_indices()
        .map(|(i, _)| word.start + i)
        .chain(std::iter::once(word.end))
        .collect();
    let mut from = 0;
    while from + 1 < bounds.len() {
        let start = bounds[from];
        // Ends from + 1 ..= last; find the furthest that fits (at least from + 1).
        let rest = &bounds[from + 1..];
        let fitting = rest.partition_point(|&end| fits(text, start..end, budget, counter));
        let to = from + fitting.max(1);
        out.push(start..bounds[to]);
        from = to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kb::document::{Format, Section};

    fn doc(sections: Vec<Section>) -> Document {
        Document {
            path: PathBuf::from("guide/billing.md"),
            title: "Billing".into(),
            format: Format::Markdown,
            sections,
        }
    }

    fn section(heading: &[&str], anchor: &str, text: String) -> Section {
        Section {
            heading_path: heading.iter().map(|s| s.to_string()).collect(),
            anchor: Some(anchor.into()),
            page: None,
            text,
        }
    }

    /// `n` sentences of `words` words each, numbered so every word is distinct.
    fn sentences_of(tag: &str, n: usize, words: usize) -> String {
        (0..n)
            .map(|i| {
                let body: Vec<String> = (0..words).map(|w| format!("{tag}{i}w{w}")).collect();
                format!("{}.", body.join(" "))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn long_section_text() -> String {
        let mut paras = Vec::new();
        for p in 0..12 {
            paras.push(sentences_of(&format!("p{p}s"), 3 + p % 5, 6 + p * 3));
        }
        // One sentence of 400 words with no punctuation, and one 3,000-letter "word".
        paras.push(
            (0..400)
                .map(|w| format!("run{w}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
        paras.push("x".repeat(3000));
        paras.join("\n\n")
    }

    /// Counts a token per 4 bytes of each word, so a long word is many tokens.
    struct ByteCounter;
    impl TokenCounter for ByteCounter {
        fn count(&self, text: &str) -> usize {
            text.split_whitespace().map(|w| w.len().div_ceil(4)).sum()
        }
    }

    #[test]
    fn word_estimate_is_words_times_1_3() {
        assert_eq!(WordEstimate.count(""), 0);
        assert_eq!(WordEstimate.count("one"), 2);
        assert_eq!(WordEstimate.count("a b  c\n d e f g h i j"), 13);
    }

    #[test]
    fn chunks_stay_within_budget_and_cover_all_words() {
        let d = doc(vec![section(&["Billing"], "billing", long_section_text())]);
        for counter in [&WordEstimate as &dyn TokenCounter, &ByteCounter] {
            let options = ChunkOptions::default();
            let chunks = chunk_document(&d, &options, counter).unwrap();
            assert!(chunks.len() > 10, "{}", chunks.len());
            for c in &chunks {
                assert!(c.tokens <= options.max_tokens, "{} tokens", c.tokens);
                assert_eq!(c.tokens, counter.count(&c.text));
            }
            // Nothing but whitespace falls between chunks: every word (or piece of one) is kept.
            let text = &d.sections[0].text;
            let mut covered = 0;
            for c in &chunks {
                assert!(text[covered.min(c.byte_range.start)..c.byte_range.start]
                    .trim()
                    .is_empty());
                covered = covered.max(c.byte_range.end);
            }
            assert!(text[covered..].trim().is_empty());
        }
    }

    #[test]
    fn an_unbroken_string_is_cut_even_when_the_counter_sees_one_word() {
        let blob = "QUJD".repeat(5000); // 20,000 bytes, one "word" of 2 estimated tokens
        let d = doc(vec![section(
            &[],
            "a",
            format!("Before.\n\n{blob}\n\nAfter."),
        )]);
        let options = ChunkOptions::default();
        let chunks = chunk_document(&d, &options, &WordEstimate).unwrap();
        let cap = options.max_tokens * MAX_BYTES_PER_TOKEN;
        assert!(chunks.len() >= 5, "{}", chunks.len());
        assert!(chunks.iter().all(|c| c.text.len() <= cap));
        let joined: String = chunks
            .iter()
            .map(|c| c.text.as_str())
            .collect::<Vec<_>>()
            .concat();
        assert_eq!(joined.matches("QUJD").count(), 5000);
    }

    #[test]
    fn byte_ranges_slice_back_to_the_chunk_text() {
        let d = doc(vec![
            section(&["A"], "a", "Ünïcödé — text… ".repeat(300)),
            section(&["B"], "b", long_section_text()),
        ]);
        let chunks = chunk_document(&d, &ChunkOptions::default(), &WordEstimate).unwrap();
        for c in &chunks {
            assert_eq!(&d.sections[c.section].text[c.byte_range.clone()], c.text);
            assert_eq!(c.text.trim(), c.text, "chunks are trimmed");
        }
    }

    #[test]
    fn neighbouring_chunks_overlap_within_the_overlap_budget() {
        let d = doc(vec![section(&["A"], "a", sentences_of("s", 60, 12))]);
        let options = ChunkOptions::default();
        let chunks = chunk_document(&d, &options, &WordEstimate).unwrap();
        assert!(chunks.len() >= 3);
        for pair in chunks.windows(2) {
            let (a, b) = (&pair[0].byte_range, &pair[1].byte_range);
            assert!(b.start > a.start && b.start < a.end, "{a:?} then {b:?}");
            let shared = &d.sections[0].text[b.start..a.end];
            let n = WordEstimate.count(shared);
            assert!(
                n > 0 && n <= options.overlap_tokens,
                "overlap of {n} tokens"
            );
            assert!(pair[1].text.starts_with(shared));
        }
        // Without overlap, chunks only touch.
        let none = ChunkOptions {
            overlap_tokens: 0,
            ..options
        };
        let chunks = chunk_document(&d, &none, &WordEstimate).unwrap();
        for pair in chunks.windows(2) {
            assert!(pair[1].byte_range.start > pair[0].byte_range.end);
        }
    }

    #[test]
    fn chunks_never_cross_sections() {
        let d = doc(vec![
            section(&["Billing"], "billing", sentences_of("bill", 40, 10)),
            section(
                &["Billing", "Refunds"],
                "refunds",
                "Short refunds section.".into(),
            ),
            section(&["Accounts"], "accounts", sentences_of("acct", 40, 10)),
        ]);
        let chunks = chunk_document(&d, &ChunkOptions::default(), &WordEstimate).unwrap();
        for c in &chunks {
            let s = &d.sections[c.section];
            assert_eq!((&c.heading_path, &c.anchor), (&s.heading_path, &s.anchor));
            assert_eq!(
                (c.path.as_path(), c.title.as_str()),
                (d.path.as_path(), "Billing")
            );
            let tags = ["bill", "refunds", "acct"];
            let present = tags.iter().filter(|t| c.text.contains(*t)).count();
            assert_eq!(present, 1, "chunk mixes sections: {}", c.text);
        }
        let refunds: Vec<_> = chunks.iter().filter(|c| c.section == 1).collect();
        assert_eq!(refunds.len(), 1, "a tiny section stays its own chunk");
        assert_eq!(refunds[0].text, "Short refunds section.");
    }

    #[test]
    fn splits_prefer_paragraphs_then_sentences() {
        // Paragraphs of ~40 tokens: chunks end at paragraph ends.
        let text = (0..20)
            .map(|p| sentences_of(&format!("p{p}_"), 3, 10))
            .collect::<Vec<_>>()
            .join("\n\n");
        let d = doc(vec![section(&["A"], "a", text.clone())]);
        let chunks = chunk_document(&d, &ChunkOptions::default(), &WordEstimate).unwrap();
        assert!(chunks.len() > 2);
        for c in &chunks[..chunks.len() - 1] {
            assert!(text[c.byte_range.end..].starts_with("\n\n"), "{}", c.text);
        }
        // One paragraph of many sentences: chunks end at a full stop.
        let text = sentences_of("s", 80, 9);
        let d = doc(vec![section(&["A"], "a", text)]);
        let chunks = chunk_document(&d, &ChunkOptions::default(), &WordEstimate).unwrap();
        assert!(chunks.len() > 2);
        assert!(chunks.iter().all(|c| c.text.ends_with('.')));
    }

    #[test]
    fn small_section_is_one_chunk_and_page_is_kept() {
        let mut s = section(&[], "x", "Page one text.".into());
        s.anchor = None;
        s.page = Some(4);
        let chunks =
            chunk_document(&doc(vec![s]), &ChunkOptions::default(), &WordEstimate).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            (chunks[0].page, chunks[0].byte_range.clone()),
            (Some(4), 0..14)
        );
    }

    #[test]
    fn a_scrap_at_the_end_takes_units_from_the_chunk_before() {
        // Sentences of 5 words (7 tokens); 3 fit in 20 tokens. 7 sentences pack greedily as
        // 3 + 3 + 1, leaving a 7-token scrap; rebalanced they are 3 + 2 + 2.
        let d = doc(vec![section(&["A"], "a", sentences_of("s", 7, 5))]);
        let options = ChunkOptions {
            max_tokens: 20,
            overlap_tokens: 0,
            min_tail_tokens: 8,
        };
        let chunks = chunk_document(&d, &options, &WordEstimate).unwrap();
        let sentence_counts: Vec<usize> =
            chunks.iter().map(|c| c.text.matches('.').count()).collect();
        assert_eq!(sentence_counts, vec![3, 2, 2]);
        assert!(chunks.iter().all(|c| c.tokens <= 20));
        // With the feature off, the greedy packing shows.
        let off = ChunkOptions {
            min_tail_tokens: 0,
            ..options
        };
        let chunks = chunk_document(&d, &off, &WordEstimate).unwrap();
        let sentence_counts: Vec<usize> =
            chunks.iter().map(|c| c.text.matches('.').count()).collect();
        assert_eq!(sentence_counts, vec![3, 3, 1]);
    }

    #[test]
    fn bad_settings_are_errors() {
        let d = doc(vec![section(&[], "a", "text".into())]);
        for (max, overlap) in [(4, 0), (64, 40)] {
            let options = ChunkOptions {
                max_tokens: max,
                overlap_tokens: overlap,
                min_tail_tokens: 0,
            };
            let err = chunk_document(&d, &options, &WordEstimate).unwrap_err();
            assert!(matches!(err, KbError::InvalidChunking { .. }), "{err}");
        }
    }

    /// Counts words and punctuation marks, like a pre-tokenizer that splits both; additive
    /// over whitespace, and says so when `per_word`.
    struct PieceCounter {
        per_word: bool,
    }

    impl TokenCounter for PieceCounter {
        fn count(&self, text: &str) -> usize {
            text.split_whitespace()
                .map(|w| 1 + w.chars().filter(|c| c.is_ascii_punctuation()).count())
                .sum()
        }
        fn word_counts(&self, text: &str, words: &[Range<usize>]) -> Option<Vec<usize>> {
            self.per_word
                .then(|| words.iter().map(|w| self.count(&text[w.clone()])).collect())
        }
    }

    #[test]
    fn per_word_counts_give_the_same_chunks_as_counting_every_candidate() {
        let mut text = sentences_of("alpha", 40, 9);
        text.push_str("\n\nShort one, with: punctuation; here.\n\n");
        text.push_str(&sentences_of("beta", 25, 13));
        text.push_str("\n\nx");
        let d = doc(vec![section(&["Billing", "Refunds"], "refunds", text)]);
        for (max, overlap) in [(64, 8), (40, 0), (128, 32), (16, 4)] {
            let options = ChunkOptions {
                max_tokens: max,
                overlap_tokens: overlap,
                min_tail_tokens: 8,
            };
            let fast = chunk_document(&d, &options, &PieceCounter { per_word: true }).unwrap();
            let slow = chunk_document(&d, &options, &PieceCounter { per_word: false }).unwrap();
            assert_eq!(fast, slow, "max {max} overlap {overlap}");
            assert!(fast.len() > 2);
        }
    }
}
