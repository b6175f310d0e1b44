//! Loaders: the bytes of one file to a `Document`, one module per format. A file that cannot
//! be read as its format is a `SkipReason`, never an error that stops the ingest.

mod decode;
mod html;
mod markdown;
mod pdf;
mod sections;
mod slug;
mod text;
mod xml;

use std::io::Read;
use std::path::Path;

use crate::kb::document::{Document, Format, Section};
use crate::kb::error::{SkipReason, Skipped};
use crate::kb::walk::{SourceFile, Walked};

pub use decode::decode_text;

/// Documents that loaded, and every file that did not (from the walk and from loading).
#[derive(Debug, Default)]
pub struct Loaded {
    pub documents: Vec<Document>,
    pub skipped: Vec<Skipped>,
}

/// Loads every file the walk found; its skipped files are carried over.
pub fn load_all(walked: Walked, max_file_bytes: u64) -> Loaded {
    let mut loaded = Loaded {
        documents: Vec::with_capacity(walked.files.len()),
        skipped: walked.skipped,
    };
    for file in &walked.files {
        match load_file(file, max_file_bytes) {
            Ok(doc) => loaded.documents.push(doc),
            Err(reason) => loaded.skipped.push(Skipped {
                path: file.path.clone(),
                reason,
            }),
        }
    }
    loaded
}

/// Reads one file (at most `max_file_bytes`, in case it grew since the walk) and parses it.
pub fn load_file(file: &SourceFile, max_file_bytes: u64) -> Result<Document, SkipReason> {
    let unreadable = |e: std::io::Error| SkipReason::Unreadable {
        error: e.to_string(),
    };
    let mut bytes = Vec::new();
    std::fs::File::open(&file.path)
        .map_err(unreadable)?
        .take(max_file_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > max_file_bytes {
        return Err(SkipReason::TooLarge {
            size: bytes.len() as u64,
            limit: max_file_bytes,
        });
    }
    parse(file.format, &file.rel_path, &bytes)
}

/// Parses the bytes of a file in `format`; `rel_path` is stored in the document and gives the
/// fallback title (its stem).
pub fn parse(format: Format, rel_path: &Path, bytes: &[u8]) -> Result<Document, SkipReason> {
    if bytes.is_empty() {
        return Err(SkipReason::Empty);
    }
    if format.is_text() && bytes.iter().take(8192).any(|&b| b == 0) {
        return Err(SkipReason::Binary);
    }
    let (title, sections) = match format {
        Format::Pdf => {
            let p = pdf::parse(bytes)?;
            (p.title, p.sections)
        }
        _ => {
            let text = decode_text(bytes)?;
            match format {
                Format::Markdown => {
                    let p = markdown::parse(&text);
                    (p.title, p.sections)
                }
                Format::Html => {
                    let p = html::parse(&text);
                    if p.is_navigation_only() {
                        return Err(SkipReason::Navigation);
                    }
                    (p.title, p.sections)
                }
                Format::Rst => {
                    let p = text::parse_rst(&text);
                    (p.title, p.sections)
                }
                Format::AsciiDoc => {
                    let p = text::parse_adoc(&text);
                    (p.title, p.sections)
                }
                Format::Xml => {
                    let p = xml::parse(&text)?;
                    (p.title, p.sections)
                }
                Format::Text | Format::Pdf => {
                    let p = text::parse_plain(&text);
                    (p.title, p.sections)
                }
            }
        }
    };
    let sections: Vec<Section> = sections
        .into_iter()
        .filter(|s| !s.text.trim().is_empty())
        .collect();
    if sections.is_empty() {
        return Err(SkipReason::NoText);
    }
    let title = title.unwrap_or_else(|| file_stem(rel_path));
    Ok(Document {
        path: rel_path.to_path_buf(),
        title,
        format,
        sections,
    })
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn dispatch_by_format_with_title_fallback() {
        let doc = parse(Format::Markdown, Path::new("faq/billing.md"), b"## Q\n\nA.").unwrap();
        assert_eq!(doc.path, PathBuf::from("faq/billing.md"));
        assert_eq!(doc.title, "billing", "no H1: the file stem");
        assert_eq!(doc.sections[0].anchor.as_deref(), Some("q"));

        let doc = parse(Format::Text, Path::new("notes.txt"), b"plain words").unwrap();
        assert_eq!((doc.title.as_str(), doc.format), ("notes", Format::Text));
    }

    #[test]
    fn binary_with_text_extension_is_skipped() {
        let mut bytes = b"looks like text".to_vec();
        bytes.push(0);
        bytes.extend_from_slice(b"\x01\x02 more");
        assert_eq!(
            parse(Format::Text, Path::new("x.txt"), &bytes).err(),
            Some(SkipReason::Binary)
        );
    }

    #[test]
    fn invalid_utf8_is_skipped_and_empty_is_skipped() {
        let latin1 = b"Ol\xE9! Voil\xE0 le caf\xE9 cr\xE8me.";
        assert!(matches!(
            parse(Format::Markdown, Path::new("x.md"), latin1),
            Err(SkipReason::NotUtf8 { .. })
        ));
        assert_eq!(
            parse(Format::Html, Path::new("x.html"), b"").err(),
            Some(SkipReason::Empty)
        );
        assert_eq!(
            parse(Format::Html, Path::new("x.html"), b"<nav>only nav</nav>").err(),
            Some(SkipReason::NoText)
        );
    }
}
