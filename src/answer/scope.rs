//! Whether the answer drafted for a question addresses it. Retrieval always finds
//! *something*: a question about buying the company's shares finds the payments page, and a
//! small model then copies a true sentence from it that answers nothing that was asked.

use super::citations::content_words;

/// Whether `answer` shares a content word with `question` (words of five letters or more
/// match on their first five: "refund" and "refunded"). A cited answer that shares none is
/// a true sentence about something else — the question's premise went unanswered.
pub fn addresses(answer: &str, question: &str) -> bool {
    let asked = content_words(question);
    content_words(answer).iter().any(|a| {
        asked.iter().any(|q| {
            a == q || (a.len() >= 5 && q.len() >= 5 && a.as_bytes()[..5] == q.as_bytes()[..5])
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_addresses_a_question_when_they_share_a_content_word() {
        let q = "Should I buy Larkspur shares, or is the stock going to drop this year?";
        assert!(!addresses(
            "We don't accept cash on delivery, bank transfers or cheques.",
            q
        ));
        assert!(addresses(
            "Refunds are sent within 5 days.",
            "When am I refunded?"
        ));
        assert!(addresses(
            "Click Unsubscribe at the bottom of any newsletter.",
            "You keep sending me newsletters, how do I make it stop?"
        ));
    }
}
