//! What a loader produces: a document split into sections along its own headings or pages.

use std::path::{Path, PathBuf};

/// The source formats the loaders read, decided by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Markdown,
    Html,
    Text,
    Rst,
    AsciiDoc,
    Pdf,
    Xml,
}

impl Format {
    /// The format for a path's extension (case-insensitive), `None` when no loader reads it.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "md" | "markdown" => Format::Markdown,
            "html" | "htm" => Format::Html,
            "txt" => Format::Text,
            "rst" => Format::Rst,
            "adoc" | "asciidoc" => Format::AsciiDoc,
            "pdf" => Format::Pdf,
            "xml" | "page" | "docbook" => Format::Xml,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Markdown => "Markdown",
            Format::Html => "HTML",
            Format::Text => "plain text",
            Format::Rst => "reStructuredText",
            Format::AsciiDoc => "AsciiDoc",
            Format::Pdf => "PDF",
            Format::Xml => "XML",
        }
    }

    /// Binary formats are exempt from the NUL-byte check and from UTF-8 decoding.
    pub fn is_text(self) -> bool {
        !matches!(self, Format::Pdf)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Relative to the ingest root (for a file given directly: its file name).
    pub path: PathBuf,
    pub title: String,
    pub format: Format,
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    /// The headings above this text, outermost first, e.g. `["Billing", "Refunds"]`; empty for
    /// text before the first heading.
    pub heading_path: Vec<String>,
    /// Fragment that links to the section: the HTML `id`, or the slug a renderer would give.
    pub anchor: Option<String>,
    /// 1-based page number, for PDFs.
    pub page: Option<u32>,
    pub text: String,
}
