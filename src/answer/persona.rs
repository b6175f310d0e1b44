//! Who the assistant is: the company's name, the assistant's name and tone, and what a
//! customer is told at a hand-off. Read from a small TOML file; the built-in default is the
//! sample help centre's (`data/sample/persona.toml`).

use serde::Deserialize;
use std::path::Path;

/// The built-in persona, compiled in so `frontdesk ask` works with no configuration.
const BUILTIN: &str = include_str!("../../data/sample/persona.toml");

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persona {
    pub company: String,
    pub assistant_name: String,
    pub tone: String,
    pub support_email: String,
    pub support_hours: String,
    pub handoff_message: String,
}

impl Persona {
    /// The sample help centre's persona.
    pub fn builtin() -> Persona {
        // The file is part of the source tree and checked by a test.
        Persona::parse(BUILTIN).expect("data/sample/persona.toml is valid")
    }

    pub fn parse(text: &str) -> Result<Persona, String> {
        let persona: Persona = toml::from_str(text).map_err(|e| e.message().to_string())?;
        for (key, value) in [
            ("company", &persona.company),
            ("assistant_name", &persona.assistant_name),
            ("handoff_message", &persona.handoff_message),
        ] {
            if value.trim().is_empty() {
                return Err(format!("'{key}' is empty"));
            }
        }
        Ok(persona)
    }

    pub fn load(path: &Path) -> Result<Persona, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        Persona::parse(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_persona_parses() {
        let p = Persona::builtin();
        assert!(!p.company.is_empty() && !p.handoff_message.is_empty());
    }

    #[test]
    fn unknown_keys_and_empty_names_are_errors() {
        let good = toml::to_string(&toml::Table::from_iter([
            ("company".to_string(), "A".into()),
            ("assistant_name".to_string(), "B".into()),
            ("tone".to_string(), "".into()),
            ("support_email".to_string(), "".into()),
            ("support_hours".to_string(), "".into()),
            ("handoff_message".to_string(), "C".into()),
        ]))
        .unwrap();
        assert!(Persona::parse(&good).is_ok());
        assert!(Persona::parse(&format!("{good}\nextra = 1")).is_err());
        assert!(Persona::parse(&good.replace("\"A\"", "\" \""))
            .unwrap_err()
            .contains("company"));
    }
}
