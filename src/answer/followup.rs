//! Follow-up questions: "and how long does that take?" means nothing to the search on its
//! own. A short question that points back ("that", "it", "and …") is read together with the
//! customer's previous question.

use super::handoff::Turn;

/// Words that point back to something said before.
const POINTING_BACK: &[&str] = &[
    "it", "its", "that", "this", "those", "these", "they", "them", "their", "there", "one", "ones",
    "same", "also", "else",
];

/// Openings of a question that continues the previous one.
const CONTINUING: &[&str] = &[
    "and",
    "but",
    "also",
    "what about",
    "how about",
    "then",
    "so",
];

/// Longer questions stand on their own even when they say "it".
const MAX_FOLLOW_UP_WORDS: usize = 10;

/// The customer's previous question when `question` reads as a follow-up to it.
pub fn earlier_question<'h>(question: &str, history: &'h [Turn]) -> Option<&'h str> {
    let earlier = history
        .iter()
        .rev()
        .find(|t| t.role == "customer" && !t.text.trim().is_empty())?;
    let lower = question.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() || words.len() > MAX_FOLLOW_UP_WORDS {
        return None;
    }
    let opening = words.join(" ");
    let continues = CONTINUING
        .iter()
        .any(|c| opening == *c || opening.starts_with(&format!("{c} ")));
    let points_back = words.iter().any(|w| POINTING_BACK.contains(w));
    (continues || points_back).then_some(earlier.text.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(texts: &[(&'static str, &str)]) -> Vec<Turn> {
        texts
            .iter()
            .map(|(role, text)| Turn {
                role,
                text: text.to_string(),
            })
            .collect()
    }

    #[test]
    fn a_short_question_that_points_back_takes_the_previous_question() {
        let h = history(&[
            ("customer", "How do I return a jacket?"),
            ("assistant", "Start a return in your account [1]."),
        ]);
        assert_eq!(
            earlier_question("And how long does that take?", &h),
            Some("How do I return a jacket?")
        );
        assert_eq!(
            earlier_question("what about shoes?", &h),
            Some("How do I return a jacket?")
        );
    }

    #[test]
    fn a_question_that_stands_alone_is_left_alone() {
        let h = history(&[("customer", "How do I return a jacket?")]);
        assert_eq!(earlier_question("Can I pay with PayPal?", &h), None);
        assert_eq!(
            earlier_question(
                "Is it possible to change the delivery address of an order that has already been shipped to me?",
                &h
            ),
            None
        );
    }

    #[test]
    fn without_an_earlier_customer_question_there_is_nothing_to_follow() {
        assert_eq!(earlier_question("and that?", &[]), None);
        let h = history(&[("assistant", "Hello! How can I help?")]);
        assert_eq!(earlier_question("and that?", &h), None);
    }
}
