//! The audit log: every answer `ask` gives (or hands off) is written to `frontdesk.sqlite` in
//! the data directory — time, knowledge base, question, answer, hand-off reason, citations,
//! the chunks the model saw, the model file's hash, the settings and seed, latencies — enough
//! to replay it. `stats` reads it back.

use super::{Answer, AnswerSettings};
use crate::eval::retrieval::Percentiles;
use rusqlite::{params, Connection};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The audit database's file name in the data directory.
pub const FILE_NAME: &str = "frontdesk.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS answers (
    id            INTEGER PRIMARY KEY,
    unix_time     REAL NOT NULL,
    kb            TEXT NOT NULL,
    question      TEXT NOT NULL,
    answer        TEXT NOT NULL,
    handoff       INTEGER NOT NULL,
    reason        TEXT,
    confidence    REAL NOT NULL,
    citations     TEXT NOT NULL,
    chunk_ids     TEXT NOT NULL,
    draft         TEXT,
    model         TEXT NOT NULL,
    model_sha256  TEXT NOT NULL,
    settings      TEXT NOT NULL,
    seed          INTEGER NOT NULL,
    ttft_s        REAL NOT NULL,
    total_s       REAL NOT NULL
);
";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot write the audit log {path}: {reason} — check that the data directory is writable, or move the file aside if it is not frontdesk's")]
    Write { path: PathBuf, reason: String },
    #[error("cannot read the audit log {path}: {reason}")]
    Read { path: PathBuf, reason: String },
}

pub struct AuditLog {
    conn: Connection,
    path: PathBuf,
}

/// The model an answer came from.
#[derive(Debug, Clone)]
pub struct ModelRecord {
    pub name: String,
    pub sha256: String,
}

impl AuditLog {
    /// Opens (creating when needed) `frontdesk.sqlite` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<AuditLog, AuditError> {
        let path = data_dir.join(FILE_NAME);
        let fail = |e: &dyn std::fmt::Display| AuditError::Write {
            path: path.clone(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(data_dir).map_err(|e| fail(&e))?;
        let conn = Connection::open(&path).map_err(|e| fail(&e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| fail(&e))?;
        conn.execute_batch(SCHEMA).map_err(|e| fail(&e))?;
        Ok(AuditLog { conn, path })
    }

    pub fn record(
        &self,
        kb: &str,
        question: &str,
        answer: &Answer,
        model: &ModelRecord,
        settings: &AnswerSettings,
    ) -> Result<i64, AuditError> {
        let fail = |e: &dyn std::fmt::Display| AuditError::Write {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let citations = serde_json::to_string(&answer.citations).map_err(|e| fail(&e))?;
        let chunk_ids: Vec<i64> = answer.sources.iter().map(|s| s.chunk_id).collect();
        let reason = answer
            .ticket
            .as_ref()
            .and_then(|t| serde_json::to_value(t.reason).ok())
            .and_then(|v| v.as_str().map(str::to_string));
        let settings_json = serde_json::json!({
            "sources": settings.sources,
            "min_confidence": settings.min_confidence,
            "max_tokens": settings.generate.max_tokens,
            "sampling": settings.generate.sampling,
            "stop": settings.generate.stop_sequences,
        });
        self.conn
            .execute(
                "INSERT INTO answers (unix_time, kb, question, answer, handoff, reason, confidence,
                 citations, chunk_ids, draft, model, model_sha256, settings, seed, ttft_s, total_s)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                params![
                    now,
                    kb,
                    question,
                    answer.answer,
                    answer.handoff,
                    reason,
                    answer.confidence,
                    citations,
                    serde_json::to_string(&chunk_ids).map_err(|e| fail(&e))?,
                    answer.draft,
                    model.name,
                    model.sha256,
                    settings_json.to_string(),
                    settings.generate.sampling.seed as i64,
                    answer.timings.ttft_s,
                    answer.timings.total_s,
                ],
            )
            .map_err(|e| fail(&e))?;
        Ok(self.conn.last_insert_rowid())
    }
}

/// What `frontdesk stats` prints.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub answers: u64,
    pub handoffs: u64,
    pub handoff_rate: f64,
    /// Answers (not hand-offs) with at least one citation, among answers.
    pub citation_rate: f64,
    pub ttft_s: Percentiles,
    pub total_s: Percentiles,
}

/// Reads the statistics of the audit log in `data_dir` (all zeros when there is none yet).
pub fn stats(data_dir: &Path) -> Result<Stats, AuditError> {
    let path = data_dir.join(FILE_NAME);
    if !path.exists() {
        return Ok(Stats::default());
    }
    let fail = |e: &dyn std::fmt::Display| AuditError::Read {
        path: path.clone(),
        reason: e.to_string(),
    };
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| fail(&e))?;
    let mut stmt = conn
        .prepare("SELECT handoff, citations, ttft_s, total_s FROM answers")
        .map_err(|e| fail(&e))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, bool>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, f64>(2)?,
                r.get::<_, f64>(3)?,
            ))
        })
        .map_err(|e| fail(&e))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| fail(&e))?;
    let answers = rows.len() as u64;
    let handoffs = rows.iter().filter(|r| r.0).count() as u64;
    let answered: Vec<_> = rows.iter().filter(|r| !r.0).collect();
    let cited = answered.iter().filter(|r| r.1 != "[]").count();
    let ttft: Vec<f64> = rows.iter().map(|r| r.2).filter(|&t| t > 0.0).collect();
    let total: Vec<f64> = rows.iter().map(|r| r.3).collect();
    let share = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Ok(Stats {
        answers,
        handoffs,
        handoff_rate: share(handoffs, answers),
        citation_rate: share(cited as u64, answered.len() as u64),
        ttft_s: Percentiles::of(&ttft),
        total_s: Percentiles::of(&total),
    })
}
