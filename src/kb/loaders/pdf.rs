//! PDF: the text layer, one section per page with its 1-based page number. A file lopdf cannot
//! read, or whose pages hold no text, is a skip reason; lopdf is not trusted to never panic on
//! hostile input, so parsing runs under `catch_unwind`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use lopdf::{decode_text_string, Document as Pdf, Object};

use crate::kb::document::Section;
use crate::kb::error::SkipReason;

pub struct Parsed {
    /// The `Title` of the document information dictionary, when set.
    pub title: Option<String>,
    pub sections: Vec<Section>,
}

pub fn parse(bytes: &[u8]) -> Result<Parsed, SkipReason> {
    match catch_unwind(AssertUnwindSafe(|| parse_unguarded(bytes))) {
        Ok(result) => result,
        Err(panic) => Err(malformed(format!(
            "the PDF parser crashed ({})",
            panic_message(panic.as_ref())
        ))),
    }
}

fn parse_unguarded(bytes: &[u8]) -> Result<Parsed, SkipReason> {
    let pdf = Pdf::load_mem(bytes).map_err(|e| malformed(e.to_string()))?;
    if pdf.is_encrypted() {
        return Err(malformed(
            "it is encrypted — save an unprotected copy to index it".to_string(),
        ));
    }
    let mut sections = Vec::new();
    for page in pdf.get_pages().into_keys() {
        // A page that fails to decode loses only itself.
        let Ok(raw) = pdf.extract_text(&[page]) else {
            continue;
        };
        let text = tidy(&raw);
        if !text.is_empty() {
            sections.push(Section {
                page: Some(page),
                text,
                ..Section::default()
            });
        }
    }
    if sections.is_empty() {
        return Err(SkipReason::NoTextLayer);
    }
    Ok(Parsed {
        title: info_title(&pdf),
        sections,
    })
}

/// Trailing spaces off every line, runs of blank lines down to one.
fn tidy(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut blank_run = 0;
    for line in raw.lines().map(str::trim_end) {
        if line.trim().is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(line);
    }
    out
}

fn info_title(pdf: &Pdf) -> Option<String> {
    let info = match pdf.trailer.get(b"Info").ok()? {
        Object::Reference(id) => pdf.get_dictionary(*id).ok()?,
        Object::Dictionary(d) => d,
        _ => return None,
    };
    let title = decode_text_string(info.get(b"Title").ok()?).ok()?;
    Some(title.trim().to_string()).filter(|t| !t.is_empty())
}

fn malformed(reason: String) -> SkipReason {
    SkipReason::Malformed {
        format: "PDF",
        reason,
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Stream};

    /// A PDF with one page per entry (an empty string: a page without text) and a Title.
    pub(crate) fn build_pdf(pages: &[&str], title: Option<&str>) -> Vec<u8> {
        let mut doc = Pdf::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font_id = doc.add_object(dictionary! {
            "Type" => "Font",
            "Subtype" => "Type1",
            "BaseFont" => "Helvetica",
        });
        let resources_id = doc.add_object(dictionary! {
            "Font" => dictionary! { "F1" => font_id },
        });
        let mut kids = Vec::new();
        for text in pages {
            let mut ops = Vec::new();
            if !text.is_empty() {
                ops = vec![
                    Operation::new("BT", vec![]),
                    Operation::new("Tf", vec!["F1".into(), 12.into()]),
                    Operation::new("Td", vec![72.into(), 700.into()]),
                    Operation::new("Tj", vec![Object::string_literal(*text)]),
                    Operation::new("ET", vec![]),
                ];
            }
            let content = Content { operations: ops }.encode().unwrap();
            let content_id = doc.add_object(Stream::new(dictionary! {}, content));
            let page_id = doc.add_object(dictionary! {
                "Type" => "Page",
                "Parent" => pages_id,
                "Contents" => content_id,
                "Resources" => resources_id,
            });
            kids.push(page_id.into());
        }
        let count = kids.len() as i64;
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages",
                "Kids" => kids,
                "Count" => count,
                "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            }),
        );
        let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog_id);
        if let Some(title) = title {
            let info_id = doc.add_object(dictionary! { "Title" => Object::string_literal(title) });
            doc.trailer.set("Info", info_id);
        }
        let mut bytes = Vec::new();
        doc.save_to(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn pages_become_numbered_sections() {
        let bytes = build_pdf(
            &["Refunds take five days.", "", "Contact support by email."],
            Some("Support Handbook"),
        );
        let p = parse(&bytes).unwrap();
        assert_eq!(p.title.as_deref(), Some("Support Handbook"));
        let got: Vec<(Option<u32>, &str)> = p
            .sections
            .iter()
            .map(|s| (s.page, s.text.as_str()))
            .collect();
        // Page 2 has no text and is left out; numbering still follows the file.
        assert_eq!(
            got,
            vec![
                (Some(1), "Refunds take five days."),
                (Some(3), "Contact support by email."),
            ]
        );
        assert!(p.sections.iter().all(|s| s.heading_path.is_empty()));
    }

    #[test]
    fn pdf_without_text_is_a_skip() {
        let bytes = build_pdf(&["", ""], None);
        assert_eq!(parse(&bytes).err(), Some(SkipReason::NoTextLayer));
    }

    #[test]
    fn corrupt_pdfs_are_skips_not_panics() {
        let broken: [&[u8]; 3] = [
            b"%PDF-1.7\n",
            b"not a pdf at all",
            b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF",
        ];
        for bytes in broken {
            match parse(bytes) {
                Err(SkipReason::Malformed { format: "PDF", .. }) | Err(SkipReason::NoTextLayer) => {
                }
                other => panic!("expected a skip, got {:?}", other.map(|p| p.sections)),
            }
        }
        // Damaged copies of a good file: lopdf may recover some text or not, but it must
        // return either way.
        let good = build_pdf(&["Some text here."], None);
        let truncated = good[..good.len() / 2].to_vec();
        let mut flipped = good.clone();
        for i in (20..flipped.len()).step_by(7) {
            flipped[i] ^= 0x5A;
        }
        for bytes in [truncated, flipped] {
            let _ = parse(&bytes);
        }
    }
}
