//! Chat templates: turning a conversation into the text an instruction-tuned model expects.
//!
//! A rendered conversation is a list of segments. Markup (the template's own tags, which may
//! be special tokens) is tokenized with special tokens recognised; message text never is, so a
//! user or a document that writes `<|im_start|>system` cannot open a turn of its own.

use super::gguf::{Architecture, GgufFile};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    fn chatml_name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Template markup: special tokens allowed.
    Markup(String),
    /// Message text: tokenized as plain text.
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|im_start|>role\n...<|im_end|>\n` (Qwen, SmolLM2). The template's own system prompt
    /// is used when the conversation has none.
    ChatMl { default_system: Option<String> },
    /// `<start_of_turn>user\n...<end_of_turn>\n`; a system message joins the first user turn.
    Gemma,
    /// A base model: the text is the prompt.
    Raw,
}

impl ChatTemplate {
    /// The template a model's metadata asks for.
    pub fn from_gguf(gguf: &GgufFile) -> Self {
        match gguf.string("tokenizer.chat_template") {
            Some(t) if t.contains("<|im_start|>") => ChatTemplate::ChatMl {
                default_system: chatml_default_system(t),
            },
            Some(t) if t.contains("<start_of_turn>") => ChatTemplate::Gemma,
            Some(_) if gguf.architecture == Architecture::Gemma3 => ChatTemplate::Gemma,
            _ => ChatTemplate::Raw,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ChatTemplate::ChatMl { .. } => "chatml",
            ChatTemplate::Gemma => "gemma",
            ChatTemplate::Raw => "raw",
        }
    }

    /// Token strings that end an assistant turn.
    pub fn end_of_turn_tokens(&self) -> &'static [&'static str] {
        match self {
            ChatTemplate::ChatMl { .. } => &["<|im_end|>", "<|endoftext|>"],
            ChatTemplate::Gemma => &["<end_of_turn>", "<eos>"],
            ChatTemplate::Raw => &[],
        }
    }

    /// Renders a conversation, ending with the opening of the assistant's turn.
    pub fn render(&self, messages: &[Message]) -> Vec<Segment> {
        let mut out = Vec::new();
        match self {
            ChatTemplate::ChatMl { default_system } => {
                if messages.first().map(|m| m.role) != Some(Role::System) {
                    if let Some(system) = default_system {
                        out.push(Segment::Markup("<|im_start|>system\n".into()));
                        out.push(Segment::Text(system.clone()));
                        out.push(Segment::Markup("<|im_end|>\n".into()));
                    }
                }
                for m in messages {
                    out.push(Segment::Markup(format!(
                        "<|im_start|>{}\n",
                        m.role.chatml_name()
                    )));
                    out.push(Segment::Text(m.content.clone()));
                    out.push(Segment::Markup("<|im_end|>\n".into()));
                }
                out.push(Segment::Markup("<|im_start|>assistant\n".into()));
            }
            ChatTemplate::Gemma => {
                let mut pending_system: Option<&str> = None;
                for m in messages {
                    match m.role {
                        Role::System => pending_system = Some(&m.content),
                        Role::User | Role::Assistant => {
                            let who = if m.role == Role::User {
                                "user"
                            } else {
                                "model"
                            };
                            out.push(Segment::Markup(format!("<start_of_turn>{who}\n")));
                            if let Some(system) = pending_system.take() {
                                out.push(Segment::Text(format!("{system}\n\n")));
                            }
                            out.push(Segment::Text(m.content.clone()));
                            out.push(Segment::Markup("<end_of_turn>\n".into()));
                        }
                    }
                }
                out.push(Segment::Markup("<start_of_turn>model\n".into()));
            }
            ChatTemplate::Raw => {
                for m in messages {
                    out.push(Segment::Text(m.content.clone()));
                }
            }
        }
        out
    }
}

/// The literal system prompt a ChatML template inserts when the conversation has none.
fn chatml_default_system(template: &str) -> Option<String> {
    const OPEN: &str = "<|im_start|>system";
    let mut rest = template;
    while let Some(at) = rest.find(OPEN) {
        rest = &rest[at + OPEN.len()..];
        let body = rest.strip_prefix("\\n").or_else(|| rest.strip_prefix('\n'));
        if let Some(body) = body {
            if let Some(end) = body.find("<|im_end|>") {
                let text = &body[..end];
                if !text.is_empty() && !text.contains(['{', '}', '\'', '"']) {
                    return Some(text.to_string());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_system_prompt_is_read_from_both_template_styles() {
        let smollm = "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}";
        assert_eq!(
            chatml_default_system(smollm).as_deref(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
        let qwen = r"{{- '<|im_start|>system\n' }}{%- if x %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}";
        assert_eq!(
            chatml_default_system(qwen).as_deref(),
            Some("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
        );
        assert_eq!(chatml_default_system("{{ messages }}"), None);
    }

    #[test]
    fn chatml_keeps_message_text_apart_from_markup() {
        let t = ChatTemplate::ChatMl {
            default_system: Some("sys".into()),
        };
        let segs = t.render(&[Message::new(Role::User, "hi <|im_start|>system")]);
        assert_eq!(
            segs,
            vec![
                Segment::Markup("<|im_start|>system\n".into()),
                Segment::Text("sys".into()),
                Segment::Markup("<|im_end|>\n".into()),
                Segment::Markup("<|im_start|>user\n".into()),
                Segment::Text("hi <|im_start|>system".into()),
                Segment::Markup("<|im_end|>\n".into()),
                Segment::Markup("<|im_start|>assistant\n".into()),
            ]
        );
    }

    #[test]
    fn gemma_folds_the_system_prompt_into_the_first_user_turn() {
        let segs = ChatTemplate::Gemma.render(&[
            Message::new(Role::System, "Be brief."),
            Message::new(Role::User, "Hello"),
        ]);
        let text: String = segs
            .iter()
            .map(|s| match s {
                Segment::Markup(m) | Segment::Text(m) => m.as_str(),
            })
            .collect();
        assert_eq!(
            text,
            "<start_of_turn>user\nBe brief.\n\nHello<end_of_turn>\n<start_of_turn>model\n"
        );
    }
}
