//! Evaluation against question sets (the format of `shared/eval/README.md`): `retrieval`
//! scores the search modes; answer quality arrives with `answers`.

pub mod retrieval;

pub use retrieval::{
    evaluate, mrr_at, ndcg_at, read_questions, recall_at, EvalError, ModeScores, Question,
    QuestionMisses, RetrievalReport,
};
