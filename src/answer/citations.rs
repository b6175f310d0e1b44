//! Citations are checked, not trusted. Each sentence's `[n]` markers must name a source that
//! was in the prompt, and that source must support the sentence: most of the sentence's
//! content words occur in it, and every figure it gives. Unsupported markers are dropped, and
//! a sentence with a figure that no source gives is not shown at all. A sentence the model left
//! uncited gets the source that supports it best, when one does. An answer left with no
//! supported citation is no answer.

use super::prompt::Source;
use std::collections::{BTreeSet, HashSet};

/// Share of a sentence's content words that must occur in a source for it to support the
/// sentence.
pub const MIN_SUPPORT: f64 = 0.5;
/// Support a source needs to be given to a sentence the model left uncited.
pub const MIN_ATTRIBUTION_SUPPORT: f64 = 0.75;
/// A sentence with fewer content words ("Happy to help!") makes no claim to check.
const MIN_CLAIM_WORDS: usize = 3;

/// The answer after checking.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The answer with only supported markers left.
    pub text: String,
    /// Source numbers (from 1) cited by the checked text, in order of first use.
    pub cited: Vec<usize>,
    /// Markers removed: out of range, or the source does not support the sentence.
    pub dropped: usize,
    /// Markers added to sentences the model left uncited.
    pub attributed: usize,
}

pub fn check(answer: &str, sources: &[Source]) -> Checked {
    let source_texts: Vec<String> = sources
        .iter()
        .map(|s| format!("{} {} {}", s.title, s.section, s.text))
        .collect();
    let source_words: Vec<HashSet<String>> =
        source_texts.iter().map(|t| content_words(t)).collect();
    let source_figures: Vec<HashSet<Figure>> = source_texts.iter().map(|t| figures(t)).collect();
    let source_lines: Vec<Vec<Vec<LineToken>>> =
        source_texts.iter().map(|t| sentence_tokens(t)).collect();
    let mut out = Checked {
        text: String::new(),
        cited: Vec::new(),
        dropped: 0,
        attributed: 0,
    };
    let mut seen: HashSet<String> = HashSet::new();
    let all = sentences(answer);
    let last = all.len().saturating_sub(1);
    for (index, sentence) in all.into_iter().enumerate() {
        let (bare, markers) = strip_markers(sentence);
        // Stray markers ("[1]." on its own), sentences the model repeats, and a source's
        // heading line copied out ("Refunds › Timing") say nothing new.
        if !bare.chars().any(char::is_alphanumeric)
            || is_list_number(&bare)
            || !seen.insert(bare.to_lowercase())
            || is_heading_echo(&bare, sources)
        {
            continue;
        }
        let words = content_words(&bare);
        // A figure the sources do not give ("within 7 days" where they say 14, and 7 only
        // in "7 years") is the costliest thing a small model gets wrong. Cited or not, a
        // sentence with a figure that no source gives is not shown.
        let claimed = figures(&bare);
        let gives = |n: usize| claimed.iter().all(|f| source_figures[n].contains(f));
        if !(0..sources.len()).any(gives) && !claimed.is_empty() {
            out.dropped += markers.len();
            continue;
        }
        let overlap = |n: usize| -> f64 {
            let found = words
                .iter()
                .filter(|w| source_words[n - 1].contains(*w))
                .count();
            found as f64 / words.len().max(1) as f64
        };
        // A sentence that turns around what a source it matches says ("we sell your data"
        // where the page says "we never sell your personal data") is as costly as a wrong
        // figure, and as easy for a small model to write: it is not shown.
        let polarity = Polarity::of(&bare);
        if (1..=sources.len())
            .any(|n| overlap(n) >= MIN_SUPPORT && polarity.contradicts(&source_lines[n - 1]))
        {
            tracing::debug!("left out a sentence that turns its source around: {bare}");
            out.dropped += markers.len();
            continue;
        }
        let support = |n: usize| -> f64 {
            // "Yes [1]." claims nothing a source could be checked against: its marker goes,
            // so an answer made only of such sentences has no supported citation.
            if words.len() < MIN_CLAIM_WORDS {
                return 0.0;
            }
            // Nor does a source support a figure it does not give, however many words match.
            if !gives(n - 1) {
                return 0.0;
            }
            overlap(n)
        };
        // One source per claim: of the markers whose source supports the sentence, the best
        // supporting one stays (the first given on a tie).
        let mut kept = BTreeSet::new();
        let mut best: Option<(usize, f64)> = None;
        for n in markers {
            let s = if (1..=sources.len()).contains(&n) {
                support(n)
            } else {
                0.0
            };
            if s < MIN_SUPPORT {
                out.dropped += 1;
                continue;
            }
            match best {
                Some((_, b)) if b >= s => out.dropped += 1,
                Some(_) => {
                    out.dropped += 1;
                    best = Some((n, s));
                }
                None => best = Some((n, s)),
            }
        }
        kept.extend(best.map(|(n, _)| n));
        // A question makes no claim; an uncited claim gets a source only when one clearly
        // supports it.
        if kept.is_empty() && words.len() >= MIN_CLAIM_WORDS && !bare.trim_end().ends_with('?') {
            let best = (1..=sources.len())
                .map(|n| (n, support(n)))
                .filter(|&(_, s)| s >= MIN_ATTRIBUTION_SUPPORT)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((n, _)) = best {
                kept.insert(n);
                out.attributed += 1;
            }
        }
        let bare = bare.trim();
        // A last sentence cut off mid-way (the token limit, a stop sequence) and left uncited.
        let unfinished = index == last && !bare.ends_with(['.', '!', '?', ':']);
        if bare.is_empty() || (unfinished && kept.is_empty()) {
            continue;
        }
        if !out.text.is_empty() {
            out.text.push(' ');
        }
        // The marker goes before the sentence's final punctuation, as the model writes it.
        let (body, end) = match bare.char_indices().last() {
            Some((i, '.' | '!' | '?')) => (&bare[..i], &bare[i..]),
            _ => (bare, ""),
        };
        out.text.push_str(body.trim_end());
        for n in &kept {
            out.text.push_str(&format!(" [{n}]"));
            if !out.cited.contains(n) {
                out.cited.push(*n);
            }
        }
        out.text.push_str(end);
    }
    out
}

/// Whether `sentence` is one of the sources' title or heading lines, or a run of its
/// segments ("How do I delete my account? › What happens next").
fn is_heading_echo(sentence: &str, sources: &[Source]) -> bool {
    let norm = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    let sentence = norm(
        sentence
            .trim_start_matches(|c: char| c == '›' || c.is_whitespace())
            .trim_end_matches(['.', ':']),
    );
    sentence.contains(" › ")
        || sources.iter().any(|s| {
            sentence == norm(&s.title) || s.section.split(" › ").any(|h| sentence == norm(h))
        })
}

/// Sentences: cut after `.`, `!` or `?` followed by whitespace (markers right after the
/// punctuation stay with their sentence), and at line breaks.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut start = 0;
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if matches!(bytes[i], b'.' | b'!' | b'?') {
                // Markers written after the full stop belong to this sentence.
                let mut end = i + 1;
                loop {
                    let rest = &line[end..];
                    let trimmed = rest.trim_start();
                    if trimmed.starts_with('[') {
                        if let Some(close) = trimmed.find(']') {
                            end += rest.len() - trimmed.len() + close + 1;
                            continue;
                        }
                    }
                    break;
                }
                if end >= bytes.len() || bytes[end].is_ascii_whitespace() {
                    out.push(&line[start..end]);
                    start = end;
                    i = end;
                    continue;
                }
            }
            i += 1;
        }
        if start < line.len() && !line[start..].trim().is_empty() {
            out.push(&line[start..]);
        }
    }
    out
}

/// The sentence without its `[n]` / `[n, m]` markers, and the numbers they held.
fn strip_markers(sentence: &str) -> (String, Vec<usize>) {
    let mut bare = String::new();
    let mut numbers = Vec::new();
    let mut rest = sentence;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else {
            break;
        };
        let inside = &rest[open + 1..open + close];
        let parsed: Option<Vec<usize>> = inside
            .split(',')
            .map(|p| p.trim().trim_start_matches("Source").trim().parse().ok())
            .collect();
        bare.push_str(&rest[..open]);
        match parsed {
            Some(ns) if !ns.is_empty() => numbers.extend(ns),
            _ => bare.push_str(&rest[open..=open + close]),
        }
        rest = &rest[open + close + 1..];
    }
    bare.push_str(rest);
    let bare = bare.split_whitespace().collect::<Vec<_>>().join(" ");
    let bare = bare.replace(" .", ".").replace(" ,", ",");
    (bare, numbers)
}

/// A numbered list's marker left on its own ("2." once its item was dropped).
fn is_list_number(sentence: &str) -> bool {
    let s = sentence.trim().trim_end_matches(['.', ')', ':']);
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

/// The lower-case runs of letters and digits of `text`, in order.
fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// A number with the word after it, when a word follows ("14 days"): the unit is part of
/// the claim. Plural `s` dropped, so "14-day" and "14 days" are the same figure.
type Figure = (String, Option<String>);

fn figures(text: &str) -> HashSet<Figure> {
    let tokens: Vec<String> = tokens(text).collect();
    let unit = |w: &String| {
        let w = w.strip_suffix('s').filter(|s| s.len() >= 2).unwrap_or(w);
        w.to_string()
    };
    let mut out = HashSet::new();
    for (i, t) in tokens.iter().enumerate() {
        if t.chars().all(|c| c.is_ascii_digit()) {
            let next = tokens
                .get(i + 1)
                .filter(|w| w.chars().all(char::is_alphabetic));
            out.insert((t.clone(), next.map(unit)));
        }
    }
    out
}

/// Lower-case words of three or more letters or digits, not stop words, with a plural "s"
/// taken off: what a sentence claims, roughly.
pub fn content_words(text: &str) -> HashSet<String> {
    tokens(text).filter_map(content_word).collect()
}

/// `token` (lower case) as a content word, or `None` for a stop word or a short one.
fn content_word(token: String) -> Option<String> {
    if token.chars().count() < 3 && !token.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if crate::kb::search::STOP_WORDS.contains(&token.as_str()) {
        return None;
    }
    Some(match token.strip_suffix('s') {
        Some(stem) if stem.len() >= 3 && !stem.ends_with('s') => stem.to_string(),
        _ => token,
    })
}

/// Tokens that turn a statement around; "don't" and "can't" leave a "t" token.
fn is_negation(token: &str) -> bool {
    matches!(
        token,
        "not" | "no" | "never" | "cannot" | "nothing" | "nobody" | "neither" | "nor" | "t"
    )
}

/// `text` without what stands between double quotes: a quoted "No information" names a
/// status or a button, it does not negate anything.
fn unquoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '“' => quoted = true,
            '”' => quoted = false,
            _ if !quoted => out.push(c),
            _ => {}
        }
    }
    out
}

/// Share of a sentence's content words that one source sentence must hold for their
/// negations to be compared: below it, the sentences are not saying the same thing, and a
/// negation in one says nothing about the other.
const CONTRADICTION_MATCH: f64 = 0.75;

/// Tokens before a source sentence's first matching word that a negation may stand in and
/// still bear on it ("we never sell", "we don't share").
const NEGATION_REACH: usize = 3;

/// A token of a source sentence and its content word, if it is one.
type LineToken = (String, Option<String>);

/// The tokens of each sentence of `text`, quoted text left out, with their content words:
/// what [`Polarity::contradicts`] reads of a source, made once per check rather than once
/// per sentence of the answer.
fn sentence_tokens(text: &str) -> Vec<Vec<LineToken>> {
    sentences(&unquoted(text))
        .into_iter()
        .map(|line| {
            tokens(line)
                .map(|t| {
                    let word = content_word(t.clone());
                    (t, word)
                })
                .collect()
        })
        .collect()
}

/// What a sentence claims, for comparing negations: whether it is negated, and its content
/// words other than the negations. Quoted text and a leading "Yes" or "No" (which answers the
/// customer) are not part of the claim.
struct Polarity {
    negated: bool,
    words: HashSet<String>,
}

impl Polarity {
    fn of(sentence: &str) -> Polarity {
        let mut said: Vec<String> = tokens(&unquoted(sentence)).collect();
        if matches!(said.first().map(String::as_str), Some("yes" | "no")) {
            said.remove(0);
        }
        Polarity {
            negated: said.iter().any(|t| is_negation(t)),
            words: said
                .into_iter()
                .filter(|t| !is_negation(t))
                .filter_map(content_word)
                .collect(),
        }
    }

    /// Whether this claim is negated where the source sentence (of `lines`, from
    /// `sentence_tokens`) that holds most of its content words, at least
    /// `CONTRADICTION_MATCH` of them, is not, or the other way round. Only the stretch of that
    /// source sentence from just before its first matching word to its last counts, so a
    /// negation elsewhere in it ("if you didn't ask for it, … your password stays the same")
    /// does not.
    fn contradicts(&self, lines: &[Vec<LineToken>]) -> bool {
        if self.words.len() < MIN_CLAIM_WORDS {
            return false;
        }
        // (distinct words matched, negated) of the best-matching source sentence.
        let mut best: Option<(usize, bool)> = None;
        for toks in lines {
            let hits: Vec<(usize, &String)> = toks
                .iter()
                .enumerate()
                .filter_map(|(i, (_, w))| w.as_ref().map(|w| (i, w)))
                .filter(|(_, w)| self.words.contains(*w))
                .collect();
            let (Some((first, _)), Some((last, _))) = (hits.first(), hits.last()) else {
                continue;
            };
            let matched = hits.iter().map(|(_, w)| w).collect::<HashSet<_>>().len();
            let negated_there = toks[first.saturating_sub(NEGATION_REACH)..=*last]
                .iter()
                .any(|(t, _)| is_negation(t));
            if best.is_none_or(|(n, _)| matched > n) {
                best = Some((matched, negated_there));
            }
        }
        match best {
            Some((matched, negated_there))
                if matched as f64 >= CONTRADICTION_MATCH * self.words.len() as f64 =>
            {
                negated_there != self.negated
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source {
            chunk_id: 1,
            path: "p.md".into(),
            title: "Refunds".into(),
            section: "Refunds › Timing".into(),
            anchor: None,
            text: text.into(),
        }
    }

    fn sources() -> Vec<Source> {
        vec![
            source("Card refunds appear within 3 to 10 working days after we issue them."),
            source("Returns are free within the EU; UK returns cost 4.95 euros."),
        ]
    }

    #[test]
    fn list_numbers_left_without_their_items_are_dropped() {
        let c = check(
            "1. 2. Card refunds appear within 3 to 10 working days [1]. 3. UK returns cost 4.95 euros [2].",
            &sources(),
        );
        assert_eq!(
            c.text,
            "Card refunds appear within 3 to 10 working days [1]. UK returns cost 4.95 euros [2]."
        );
    }

    #[test]
    fn a_figure_the_source_does_not_give_is_unsupported() {
        // Every other word matches the source; only the number is wrong.
        let c = check(
            "Card refunds appear within 7 working days [1]. UK returns cost 4.95 euros [2].",
            &sources(),
        );
        assert_eq!(c.cited, vec![2]);
        assert_eq!(c.dropped, 1);
        assert_eq!(c.text, "UK returns cost 4.95 euros [2].");
        // A figure one source gives does not make another source support it (the claim goes
        // to the source that gives it), and a figure is its number with its unit: "3 days" is
        // not in "3 to 10 working days".
        let c = check("UK returns cost 4.95 euros [1].", &sources());
        assert_eq!((c.cited, c.dropped, c.attributed), (vec![2], 1, 1));
        let c = check("Card refunds appear within 3 days [1].", &sources());
        assert!(c.cited.is_empty() && c.text.is_empty(), "{c:?}");
        let c = check(
            "Card refunds appear within 3 to 10 working days [1].",
            &sources(),
        );
        assert_eq!(c.cited, vec![1]);
    }

    #[test]
    fn supported_markers_stay_and_are_listed() {
        let c = check(
            "Card refunds appear within 3 to 10 working days [1]. UK returns cost 4.95 euros [2].",
            &sources(),
        );
        assert_eq!(c.cited, vec![1, 2]);
        assert_eq!(c.dropped, 0);
        assert_eq!(
            c.text,
            "Card refunds appear within 3 to 10 working days [1]. UK returns cost 4.95 euros [2]."
        );
    }

    #[test]
    fn a_marker_naming_the_wrong_or_no_source_is_dropped() {
        let c = check(
            "UK returns cost 4.95 euros [1]. Refunds take a week [7].",
            &sources(),
        );
        // [1] does not support the UK sentence; [2] does and is attributed instead. [7] does
        // not exist; "Refunds take a week" is supported by neither.
        assert_eq!(c.dropped, 2);
        assert_eq!(c.cited, vec![2]);
        assert_eq!(
            c.text,
            "UK returns cost 4.95 euros [2]. Refunds take a week."
        );
    }

    #[test]
    fn markers_after_the_full_stop_and_lists_of_numbers_are_read() {
        let c = check(
            "Card refunds appear within working days. [1, 2]",
            &sources(),
        );
        assert_eq!(c.cited, vec![1]);
        assert_eq!(c.dropped, 1);
    }

    #[test]
    fn an_invented_answer_has_no_supported_citation() {
        let c = check(
            "You can get a full refund in cash at any of our stores [1].",
            &sources(),
        );
        assert!(c.cited.is_empty(), "{c:?}");
    }

    #[test]
    fn stray_markers_and_repeated_sentences_are_left_out() {
        let c = check(
            "[1]. UK returns cost 4.95 euros [2]. UK returns cost 4.95 euros [2].",
            &sources(),
        );
        assert_eq!(c.text, "UK returns cost 4.95 euros [2].");
        assert_eq!(c.cited, vec![2]);
    }

    #[test]
    fn copied_heading_lines_and_questions_are_not_claims() {
        let c = check(
            "[1] Refunds › Timing. › Timing\nRefunds? Card refunds appear within 3 to 10 working days [1].",
            &sources(),
        );
        assert_eq!(
            c.text,
            "Refunds? Card refunds appear within 3 to 10 working days [1]."
        );
        assert_eq!(c.cited, vec![1]);
    }

    #[test]
    fn an_unfinished_uncited_last_sentence_is_left_out() {
        let c = check(
            "Card refunds appear within 3 to 10 working days [1]. If your order has been",
            &sources(),
        );
        assert_eq!(
            c.text,
            "Card refunds appear within 3 to 10 working days [1]."
        );
    }

    #[test]
    fn a_sentence_keeps_only_its_best_supporting_source() {
        let mut two = sources();
        two.push(source("Card refunds appear within 3 to 10 working days."));
        let c = check(
            "Card refunds appear within 3 to 10 working days [3][1].",
            &two,
        );
        assert_eq!(c.cited, vec![3]);
        assert_eq!(c.dropped, 1);
    }

    #[test]
    fn a_sentence_that_turns_its_source_around_is_not_shown() {
        let sources = vec![source(
            "We never sell your personal data, and we don't share it with other companies. \
             If you received a reset email you didn't ask for, ignore it: your password stays \
             the same unless someone clicks the link.",
        )];
        let checked = check(
            "Yes, we sell your personal data to other companies. [1] Your password stays the \
             same unless someone clicks the link. [1]",
            &sources,
        );
        assert_eq!(
            checked.text,
            "Your password stays the same unless someone clicks the link [1]."
        );
        let checked = check(
            "No, we never sell your personal data to other companies. [1]",
            &sources,
        );
        assert_eq!(checked.cited, [1], "{checked:?}");
        let contradicts = |sentence: &str, source: &str| {
            Polarity::of(sentence).contradicts(&sentence_tokens(source))
        };
        assert!(contradicts(
            "You can share your personal data with other companies.",
            "We don't share your personal data with other companies."
        ));
        assert!(!contradicts(
            "We do not share your personal data with other companies.",
            "We don't share your personal data with other companies."
        ));
        assert!(!contradicts(
            "If tracking says \"No information\", wait a day.",
            "Tracking says “No information available yet”: wait a day."
        ));
    }

    #[test]
    fn short_courtesies_need_no_citation_and_a_bare_yes_cannot_carry_one() {
        let c = check("Happy to help!", &sources());
        assert_eq!(c.text, "Happy to help!");
        assert!(c.cited.is_empty() && c.dropped == 0);
        let c = check("Yes [1].", &sources());
        assert_eq!(c.text, "Yes.");
        assert!(c.cited.is_empty());
        assert_eq!(c.dropped, 1);
    }
}
