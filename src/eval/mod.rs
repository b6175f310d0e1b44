//! Evaluation against question sets (the format of `shared/eval/README.md`): `retrieval`
//! scores the search modes; `answers` scores the assistant's answers and hand-offs.

pub mod answers;
pub mod retrieval;

pub use answers::{evaluate_answers, token_f1, AnswersReport};
pub use retrieval::{
    evaluate, mrr_at, ndcg_at, read_questions, recall_at, EvalError, ModeScores, Question,
    QuestionMisses, RetrievalReport,
};
