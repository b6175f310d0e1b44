//! Line-based formats: plain text (one section), reStructuredText and AsciiDoc (sections at
//! the headings found by their underline or `=` prefix). The markup itself stays in the text:
//! it is readable, and a full rst or AsciiDoc parser is not worth its weight here.

use super::sections::SectionBuilder;
use super::slug::{asciidoctor, docutils, UniqueSlugs};
use crate::kb::document::Section;

pub struct Parsed {
    /// The first (outermost) heading, if any.
    pub title: Option<String>,
    pub sections: Vec<Section>,
}

pub fn parse_plain(text: &str) -> Parsed {
    let text = text.trim();
    let sections = if text.is_empty() {
        Vec::new()
    } else {
        vec![Section {
            text: text.to_string(),
            ..Section::default()
        }]
    };
    Parsed {
        title: None,
        sections,
    }
}

/// Characters docutils accepts as section adornment.
const RST_ADORNMENT: &[char] = &[
    '=', '-', '~', '^', '"', '\'', '`', '#', '*', '+', ':', '.', '_',
];

/// A line made of one adornment character repeated (at least 2), e.g. `=====`.
fn rst_adornment(line: &str) -> Option<char> {
    let line = line.trim_end();
    let first = line.chars().next()?;
    (RST_ADORNMENT.contains(&first)
        && line.chars().count() >= 2
        && line.chars().all(|c| c == first))
    .then_some(first)
}

/// reStructuredText: a title is a line underlined (and optionally overlined) with a repeated
/// adornment character at least as long as the title. Levels follow the order in which the
/// adornment styles first appear, as docutils assigns them.
pub fn parse_rst(text: &str) -> Parsed {
    let lines: Vec<&str> = text.lines().collect();
    let mut builder = SectionBuilder::default();
    let mut slugs = UniqueSlugs::default();
    let mut styles: Vec<(char, bool)> = Vec::new();
    let mut title = None;
    let mut i = 0;
    while i < lines.len() {
        if let Some((heading, style, consumed)) = rst_heading(&lines, i) {
            let level = match styles.iter().position(|s| *s == style) {
                Some(p) => p,
                None => {
                    styles.push(style);
                    styles.len() - 1
                }
            };
            if title.is_none() {
                title = Some(heading.clone());
            }
            let anchor = slugs.unique(docutils(&heading));
            builder.heading(level + 1, heading, Some(anchor).filter(|a| !a.is_empty()));
            i += consumed;
            continue;
        }
        builder.text.push_verbatim(lines[i]);
        builder.text.push_verbatim("\n");
        i += 1;
    }
    Parsed {
        title,
        sections: builder.finish(),
    }
}

/// A heading starting at line `i`: (title, (adornment, overlined), lines used).
fn rst_heading(lines: &[&str], i: usize) -> Option<(String, (char, bool), usize)> {
    let after_blank = i == 0 || lines[i - 1].trim().is_empty();
    // Overline, title, underline of the same character.
    if let (Some(over), Some(title), Some(under)) = (
        rst_adornment(lines[i]),
        lines.get(i + 1),
        lines.get(i + 2).and_then(|l| rst_adornment(l)),
    ) {
        let t = title.trim();
        if over == under
            && after_blank
            && !t.is_empty()
            && rst_adornment(t).is_none()
            && lines[i].trim_end().chars().count() >= t.chars().count()
        {
            return Some((t.to_string(), (over, true), 3));
        }
    }
    // Title then underline. A title starts at the margin and follows a blank line; otherwise
    // the underline is a table border or the last line of a paragraph.
    let title = lines[i];
    let under = lines.get(i + 1)?;
    let c = rst_adornment(under)?;
    let t = title.trim_end();
    if !after_blank
        || t.is_empty()
        || title.starts_with(char::is_whitespace)
        || rst_adornment(t).is_some()
        || under.trim_end().chars().count() < t.chars().count()
    {
        return None;
    }
    Some((t.to_string(), (c, false), 2))
}

/// AsciiDoc: `= Title` is the document title, `== Section` level 1, and so on. Lines inside
/// listing / literal / fenced blocks are never headings. `[[id]]` or `[#id]` on the line
/// before a heading sets its anchor; otherwise Asciidoctor's generated `_id`.
pub fn parse_adoc(text: &str) -> Parsed {
    let mut builder = SectionBuilder::default();
    let mut slugs = UniqueSlugs::default();
    let mut title = None;
    let mut in_block: Option<&str> = None;
    let mut explicit_id: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_end();
        if let Some(delim) = in_block {
            if trimmed == delim {
                in_block = None;
            }
        } else if matches!(trimmed, "----" | "...." | "```" | "////" | "++++") {
            in_block = Some(trimmed);
        } else if let Some((level, heading)) = adoc_heading(trimmed) {
            let anchor = explicit_id
                .take()
                .unwrap_or_else(|| slugs.unique(asciidoctor(&heading)));
            if title.is_none() {
                title = Some(heading.clone());
            }
            builder.heading(level + 1, heading, Some(anchor).filter(|a| a != "_"));
            continue;
        } else if let Some(id) = adoc_block_id(trimmed) {
            explicit_id = Some(id);
            continue;
        }
        explicit_id = None;
        // Comments and document attributes (`:toc:`) are left out; every other line is text.
        let comment = in_block == Some("////") || trimmed == "////" || trimmed.starts_with("//");
        if !comment && !is_adoc_attribute(trimmed) {
            builder.text.push_verbatim(line);
            builder.text.push_verbatim("\n");
        }
    }
    Parsed {
        title,
        sections: builder.finish(),
    }
}

/// `== Title` → (1, "Title"); the `=` run must be followed by a space and some text.
fn adoc_heading(line: &str) -> Option<(usize, String)> {
    let marks = line.chars().take_while(|&c| c == '=').count();
    if marks == 0 || marks > 6 {
        return None;
    }
    let rest = line[marks..].strip_prefix(' ')?.trim();
    (!rest.is_empty()).then(|| (marks - 1, rest.to_string()))
}

/// `:name: value` or `:name!:` at the start of a line.
fn is_adoc_attribute(line: &str) -> bool {
    line.strip_prefix(':')
        .and_then(|r| r.split_once(':'))
        .is_some_and(|(name, _)| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '_' || c == '!')
        })
}

fn adoc_block_id(line: &str) -> Option<String> {
    let id = line
        .strip_prefix("[[")
        .and_then(|r| r.strip_suffix("]]"))
        .map(|r| r.split(',').next().unwrap_or(r))
        .or_else(|| {
            line.strip_prefix("[#")
                .and_then(|r| r.strip_suffix(']'))
                .map(|r| r.split(['.', '%', ',']).next().unwrap_or(r))
        })?;
    (!id.is_empty() && !id.contains(char::is_whitespace)).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outline(p: &Parsed) -> Vec<(Vec<&str>, Option<&str>)> {
        p.sections
            .iter()
            .map(|s| {
                (
                    s.heading_path.iter().map(String::as_str).collect(),
                    s.anchor.as_deref(),
                )
            })
            .collect()
    }

    #[test]
    fn plain_text_is_one_section() {
        let p = parse_plain("\n  Line one.\n\nLine two.\n");
        assert_eq!(p.title, None);
        assert_eq!(p.sections.len(), 1);
        assert_eq!(p.sections[0].text, "Line one.\n\nLine two.");
        assert!(parse_plain(" \n\n").sections.is_empty());
    }

    #[test]
    fn rst_headings_are_detected_with_levels() {
        let doc = "\
=============
 User Guide
=============

Welcome text.

Billing
=======

How billing works.

Refunds
-------

Within 30 days.

+-------+-------+
| table | cell  |
+-------+-------+

A paragraph whose
last line
---------
is not a title: no blank line before it.

Too short
=====

still refunds text.

Accounts
========

Sign in.
";
        let p = parse_rst(doc);
        assert_eq!(p.title.as_deref(), Some("User Guide"));
        assert_eq!(
            outline(&p),
            vec![
                (vec!["User Guide"], Some("user-guide")),
                (vec!["User Guide", "Billing"], Some("billing")),
                (vec!["User Guide", "Billing", "Refunds"], Some("refunds")),
                (vec!["User Guide", "Accounts"], Some("accounts")),
            ]
        );
        assert_eq!(p.sections[0].text, "Welcome text.");
        let refunds = &p.sections[2].text;
        assert!(refunds.starts_with("Within 30 days."), "{refunds}");
        assert!(refunds.contains("| table | cell  |"), "{refunds}");
        assert!(refunds.contains("Too short\n=====\n"), "{refunds}");
        assert!(
            refunds.contains("last line\n---------\nis not"),
            "{refunds}"
        );
    }

    #[test]
    fn adoc_headings_ids_and_blocks() {
        let doc = "\
= Admin Manual
:toc:

Preamble.

== Install

Run it.

----
== not a heading inside a listing
----

[[upgrading]]
=== Upgrade Steps

Step one.

// a comment line
== Install

Again.
";
        let p = parse_adoc(doc);
        assert_eq!(p.title.as_deref(), Some("Admin Manual"));
        assert_eq!(
            outline(&p),
            vec![
                (vec!["Admin Manual"], Some("_admin_manual")),
                (vec!["Admin Manual", "Install"], Some("_install")),
                (
                    vec!["Admin Manual", "Install", "Upgrade Steps"],
                    Some("upgrading")
                ),
                (vec!["Admin Manual", "Install"], Some("_install-1")),
            ]
        );
        assert!(p.sections[1]
            .text
            .contains("== not a heading inside a listing"));
        assert_eq!(p.sections[0].text, "Preamble.");
        assert_eq!(p.sections[2].text, "Step one.");
        assert_eq!(p.sections[3].text, "Again.");
    }
}
