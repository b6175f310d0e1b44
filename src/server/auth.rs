//! API keys: who may call the server, and which knowledge bases each caller sees.
//!
//! Keys come from `--api-key KEY[=KB,KB…]` (repeatable; `FRONTDESK_API_KEY` holds a
//! comma-free list separated by spaces) and from `--api-keys FILE`, a TOML file of
//! `[[key]]` tables with `key`, an optional `name` and an optional `kbs` list. A key without
//! a list sees every knowledge base the server serves. With no key at all the server is open,
//! which `serve` allows on a loopback address only.

use serde::Deserialize;
use std::path::Path;

/// One caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub secret: String,
    /// For logs and metrics; never the secret.
    pub name: String,
    /// The knowledge bases it may use; `None`: all served.
    pub kbs: Option<Vec<String>>,
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No keys are configured (loopback only).
    Open,
    Key {
        name: String,
        kbs: Option<Vec<String>>,
    },
}

impl Caller {
    pub fn may_use(&self, kb: &str) -> bool {
        match self {
            Caller::Open | Caller::Key { kbs: None, .. } => true,
            Caller::Key {
                kbs: Some(list), ..
            } => list.iter().any(|k| k == kb),
        }
    }

    /// Conversations belong to the caller that started them.
    pub fn id(&self) -> &str {
        match self {
            Caller::Open => "",
            Caller::Key { name, .. } => name,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("an API key is empty — give at least 16 characters")]
    Empty,
    #[error("API key '{0}…' is shorter than 16 characters — use a long random string (e.g. openssl rand -hex 24)")]
    TooShort(String),
    #[error("API key '{0}…' is given twice")]
    Duplicate(String),
    #[error("cannot read the API key file {path}: {reason}")]
    File { path: String, reason: String },
}

#[derive(Debug, Clone, Default)]
pub struct Keys {
    keys: Vec<ApiKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    key: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    key: String,
    name: Option<String>,
    kbs: Option<Vec<String>>,
}

const MIN_KEY_CHARS: usize = 16;

impl Keys {
    /// Parses `KEY` or `KEY=KB,KB` arguments and an optional key file.
    pub fn load(args: &[String], file: Option<&Path>) -> Result<Keys, KeyError> {
        let mut keys = Keys::default();
        for arg in args {
            let (secret, kbs) = match arg.split_once('=') {
                Some((s, list)) => (
                    s,
                    Some(
                        list.split(',')
                            .map(str::trim)
                            .filter(|k| !k.is_empty())
                            .map(String::from)
                            .collect(),
                    ),
                ),
                None => (arg.as_str(), None),
            };
            keys.add(secret.trim(), None, kbs)?;
        }
        if let Some(path) = file {
            let fail = |reason: String| KeyError::File {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
            let parsed: KeyFile = toml::from_str(&text).map_err(|e| fail(e.message().into()))?;
            for entry in parsed.key {
                keys.add(entry.key.trim(), entry.name, entry.kbs)?;
            }
        }
        Ok(keys)
    }

    fn add(
        &mut self,
        secret: &str,
        name: Option<String>,
        kbs: Option<Vec<String>>,
    ) -> Result<(), KeyError> {
        let shown: String = secret.chars().take(4).collect();
        if secret.is_empty() {
            return Err(KeyError::Empty);
        }
        if secret.chars().count() < MIN_KEY_CHARS {
            return Err(KeyError::TooShort(shown));
        }
        if self.keys.iter().any(|k| k.secret == secret) {
            return Err(KeyError::Duplicate(shown));
        }
        let name = name.unwrap_or_else(|| format!("key-{}", self.keys.len() + 1));
        self.keys.push(ApiKey {
            secret: secret.to_string(),
            name,
            kbs,
        });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn all(&self) -> &[ApiKey] {
        &self.keys
    }

    /// The caller behind an `Authorization` header value, `None` when it is refused.
    pub fn check(&self, authorization: Option<&str>) -> Option<Caller> {
        if self.keys.is_empty() {
            return Some(Caller::Open);
        }
        let given = authorization?.trim();
        let given = given
            .strip_prefix("Bearer ")
            .or_else(|| given.strip_prefix("bearer "))?
            .trim();
        // Compare every key in full so the time taken does not tell how much matched.
        let mut found = None;
        for key in &self.keys {
            if constant_time_eq(key.secret.as_bytes(), given.as_bytes()) {
                found = Some(key);
            }
        }
        found.map(|k| Caller::Key {
            name: k.name.clone(),
            kbs: k.kbs.clone(),
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "alpha-0123456789abcdef";
    const B: &str = "bravo-0123456789abcdef";

    #[test]
    fn keys_grant_their_own_knowledge_bases() {
        let keys = Keys::load(&[A.to_string(), format!("{B}=billing, shop")], None).unwrap();
        let a = keys.check(Some(&format!("Bearer {A}"))).unwrap();
        let b = keys.check(Some(&format!("Bearer {B}"))).unwrap();
        assert!(a.may_use("anything"));
        assert!(b.may_use("shop") && b.may_use("billing"));
        assert!(!b.may_use("internal"));
        assert_ne!(a.id(), b.id());
    }

    #[test]
    fn missing_wrong_or_malformed_keys_are_refused() {
        let keys = Keys::load(&[A.to_string()], None).unwrap();
        assert_eq!(keys.check(None), None);
        assert_eq!(keys.check(Some("Bearer wrong-key-0123456789")), None);
        assert_eq!(keys.check(Some(A)), None, "the Bearer scheme is required");
        assert_eq!(keys.check(Some(&format!("Bearer {A}x"))), None);
    }

    #[test]
    fn without_keys_everyone_is_let_in() {
        assert_eq!(Keys::default().check(None), Some(Caller::Open));
    }

    #[test]
    fn short_empty_and_duplicate_keys_are_rejected() {
        assert_eq!(
            Keys::load(&["short".into()], None).unwrap_err(),
            KeyError::TooShort("shor".into())
        );
        assert_eq!(Keys::load(&["".into()], None).unwrap_err(), KeyError::Empty);
        assert!(matches!(
            Keys::load(&[A.into(), A.into()], None).unwrap_err(),
            KeyError::Duplicate(_)
        ));
    }

    #[test]
    fn a_key_file_names_keys_and_their_knowledge_bases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        std::fs::write(
            &path,
            format!("[[key]]\nkey = \"{A}\"\nname = \"helpdesk\"\nkbs = [\"shop\"]\n"),
        )
        .unwrap();
        let keys = Keys::load(&[], Some(&path)).unwrap();
        let caller = keys.check(Some(&format!("Bearer {A}"))).unwrap();
        assert_eq!(caller.id(), "helpdesk");
        assert!(caller.may_use("shop") && !caller.may_use("other"));
        std::fs::write(&path, "[[key]]\nsecret = 1\n").unwrap();
        assert!(matches!(
            Keys::load(&[], Some(&path)).unwrap_err(),
            KeyError::File { .. }
        ));
    }
}
