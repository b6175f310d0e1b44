//! Hand-off to a person: when to do it, and the ticket the person receives.

use serde::Serialize;

/// Why frontdesk did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffReason {
    /// The customer asked for a person.
    CustomerAsked,
    /// Retrieval found nothing close enough to the question.
    LowConfidence,
    /// The model said the sources do not answer the question.
    NotInSources,
    /// The model's answer had no citation that a source supports.
    Unsupported,
    /// The answer the sources support does not address the question.
    OffQuestion,
}

impl HandoffReason {
    pub fn describe(self) -> &'static str {
        match self {
            HandoffReason::CustomerAsked => "the customer asked to talk to a person",
            HandoffReason::LowConfidence => {
                "the knowledge base holds nothing close enough to the question"
            }
            HandoffReason::NotInSources => "the retrieved articles do not answer the question",
            HandoffReason::Unsupported => {
                "the drafted answer was not supported by the retrieved articles"
            }
            HandoffReason::OffQuestion => "the drafted answer did not address the question",
        }
    }
}

/// A candidate article for the person who takes over.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub path: String,
    pub title: String,
    pub section: String,
    pub similarity: f64,
}

/// One turn of the conversation so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Turn {
    pub role: &'static str,
    pub text: String,
}

/// What a person needs to take the case over.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ticket {
    /// Unique per ticket, for the help desk to refer to.
    pub id: String,
    pub question: String,
    pub reason: HandoffReason,
    /// One paragraph for the person taking over.
    pub summary: String,
    pub candidate_sources: Vec<Candidate>,
    pub conversation: Vec<Turn>,
}

impl Ticket {
    pub fn new(
        question: &str,
        reason: HandoffReason,
        candidates: Vec<Candidate>,
        conversation: Vec<Turn>,
    ) -> Ticket {
        let mut summary = format!(
            "The customer asked: \"{}\". frontdesk handed the case over because {}.",
            one_line(question, 300),
            reason.describe()
        );
        if conversation.len() > 1 {
            summary.push_str(&format!(
                " The conversation has {} earlier messages (below).",
                conversation.len() - 1
            ));
        }
        match candidates.first() {
            Some(c) => summary.push_str(&format!(
                " The closest article is \"{}\" ({}); check it and the other candidates before \
                 replying.",
                c.title, c.path
            )),
            None => summary.push_str(" No article in the knowledge base matched."),
        }
        Ticket {
            id: ticket_id(),
            question: question.to_string(),
            reason,
            summary,
            candidate_sources: candidates,
            conversation,
        }
    }
}

/// `T-` + the time in seconds + the process + a counter: unique without coordination.
fn ticket_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("T-{secs:x}-{:x}-{n}", std::process::id())
}

/// Whether the customer asks for a person rather than an answer.
pub fn asks_for_a_person(question: &str) -> bool {
    let q = question.to_lowercase();
    let words: Vec<&str> = q
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .collect();
    let has = |w: &str| words.contains(&w);
    let person = [
        "human",
        "person",
        "agent",
        "representative",
        "operator",
        "someone",
        "somebody",
        "staff",
        "people",
    ];
    let verbs = [
        "talk", "speak", "chat", "connect", "transfer", "want", "need", "get",
    ];
    (has("human") && !has("resources"))
        || has("representative")
        || (person.iter().any(|p| has(p)) && verbs.iter().any(|v| has(v)))
}

fn one_line(text: &str, max_chars: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max_chars {
        flat
    } else {
        format!("{}…", flat.chars().take(max_chars).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_for_a_person_are_recognised() {
        for q in [
            "Can I talk to a human please?",
            "I want to speak to a real person",
            "connect me to an agent",
            "Representative!",
        ] {
            assert!(asks_for_a_person(q), "{q}");
        }
        for q in [
            "How long does delivery take?",
            "Can someone else collect my parcel?",
            "Is the person who ordered charged?",
        ] {
            assert!(!asks_for_a_person(q), "{q}");
        }
    }

    #[test]
    fn the_summary_names_the_question_reason_and_closest_article() {
        let t = Ticket::new(
            "Where is my\nparcel?",
            HandoffReason::LowConfidence,
            vec![Candidate {
                path: "shipping/track.md".into(),
                title: "Track your parcel".into(),
                section: String::new(),
                similarity: 0.3,
            }],
            vec![Turn {
                role: "customer",
                text: "Where is my parcel?".into(),
            }],
        );
        assert!(
            t.summary.contains("\"Where is my parcel?\""),
            "{}",
            t.summary
        );
        assert!(t.summary.contains("nothing close enough"));
        assert!(t.summary.contains("Track your parcel"));
    }
}
