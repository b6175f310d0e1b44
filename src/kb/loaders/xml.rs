//! DocBook and Mallard XML: text content, with sections from the section elements and their
//! `title` children. Metadata blocks (`info`) are left out except for their title.

use roxmltree::{Node, ParsingOptions};

use super::sections::{SectionBuilder, TextBuf};
use crate::kb::document::Section;
use crate::kb::error::SkipReason;

pub struct Parsed {
    /// The title of the outermost titled element (book, article, page).
    pub title: Option<String>,
    pub sections: Vec<Section>,
}

/// Elements that open a section (DocBook 4/5 and Mallard `page` / `section`).
const SECTIONING: &[&str] = &[
    "book",
    "article",
    "part",
    "chapter",
    "appendix",
    "preface",
    "glossary",
    "bibliography",
    "index",
    "colophon",
    "section",
    "simplesect",
    "sect1",
    "sect2",
    "sect3",
    "sect4",
    "sect5",
    "refentry",
    "refsection",
    "refsect1",
    "refsect2",
    "refsect3",
    "page",
    "topic",
    "task",
    "reference",
    "concept",
];
const METADATA: &[&str] = &[
    "info",
    "articleinfo",
    "bookinfo",
    "chapterinfo",
    "sectioninfo",
    "sect1info",
    "sect2info",
    "sect3info",
    "prefaceinfo",
    "appendixinfo",
    "refentryinfo",
];
const DROPPED: &[&str] = &["remark", "comment", "indexterm", "annotation"];
const VERBATIM: &[&str] = &["programlisting", "screen", "literallayout", "synopsis"];
const PARAGRAPH_BLOCKS: &[&str] = &[
    "para",
    "simpara",
    "formalpara",
    "p",
    "itemizedlist",
    "orderedlist",
    "variablelist",
    "list",
    "terms",
    "table",
    "informaltable",
    "note",
    "tip",
    "warning",
    "caution",
    "important",
    "example",
    "figure",
    "blockquote",
    "programlisting",
    "screen",
    "literallayout",
    "synopsis",
    "procedure",
    "steps",
    "tr",
    "tbody",
    // Titles of tables, examples and figures (section titles become headings instead).
    "title",
];
const LINE_BLOCKS: &[&str] = &["listitem", "item", "step", "row", "varlistentry", "term"];

enum Step<N> {
    Open(N),
    Close(N),
}

pub fn parse(text: &str) -> Result<Parsed, SkipReason> {
    // DocBook 4 files carry a DOCTYPE; its internal entities are expanded, external ones are
    // an error from roxmltree (reported as a skip).
    let options = ParsingOptions {
        allow_dtd: true,
        ..ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, options).map_err(|e| {
        SkipReason::Malformed {
            format: "XML",
            reason: e.to_string(),
        }
    })?;

    let mut builder = SectionBuilder::default();
    let mut title = None;
    // Open sectioning elements (the heading level of their titles).
    let mut depth = 0usize;
    // Inside a title that names a section: the node and its text so far.
    let mut heading: Option<(Node, TextBuf)> = None;
    let mut verbatim_depth = 0usize;

    // Depth-first without recursion, so deep nesting cannot overflow the stack.
    let mut stack = vec![Step::Open(doc.root())];
    while let Some(step) = stack.pop() {
        match step {
            Step::Open(node) => {
                if node.is_text() {
                    let t = node.text().unwrap_or_default();
                    let out = match heading.as_mut() {
                        Some((_, buf)) => buf,
                        None => &mut builder.text,
                    };
                    if verbatim_depth > 0 {
                        out.push_verbatim(t);
                    } else {
                        out.push_inline(t);
                    }
                    continue;
                }
                if !node.is_element() && !node.is_root() {
                    continue;
                }
                let name = node.tag_name().name();
                let in_metadata = node
                    .parent_element()
                    .is_some_and(|p| METADATA.contains(&p.tag_name().name()));
                if (in_metadata && name != "title")
                    || DROPPED.contains(&name)
                    || (METADATA.contains(&name) && !has_title_child(node))
                {
                    // Authors, dates, links, remarks: not content. The subtree is not entered.
                    continue;
                }
                if SECTIONING.contains(&name) {
                    depth += 1;
                } else if name == "title" && heading.is_none() && names_section(node) {
                    heading = Some((node, TextBuf::default()));
                } else if VERBATIM.contains(&name) {
                    verbatim_depth += 1;
                    builder.text.paragraph_break();
                }
                stack.push(Step::Close(node));
                let children: Vec<_> = node.children().collect();
                stack.extend(children.into_iter().rev().map(Step::Open));
            }
            Step::Close(node) => {
                let name = node.tag_name().name();
                match heading.take() {
                    Some((h, mut buf)) if h == node => {
                        let text = buf.take();
                        if !text.is_empty() {
                            if title.is_none() {
                                title = Some(text.clone());
                            }
                            builder.heading(depth, text, section_id(node));
                        }
                        continue;
                    }
                    other => heading = other,
                }
                if heading.is_some() {
                    continue;
                }
                if SECTIONING.contains(&name) {
                    builder.close_level(depth);
                    depth = depth.saturating_sub(1);
                } else if VERBATIM.contains(&name) {
                    verbatim_depth = verbatim_depth.saturating_sub(1);
                    builder.text.paragraph_break();
                } else if PARAGRAPH_BLOCKS.contains(&name) {
                    builder.text.paragraph_break();
                } else if LINE_BLOCKS.contains(&name) {
                    builder.text.line_break();
                }
            }
        }
    }
    Ok(Parsed {
        title,
        sections: builder.finish(),
    })
}

/// Metadata elements are skipped whole unless they hold the section's title.
fn has_title_child(node: Node) -> bool {
    node.children()
        .any(|c| c.is_element() && c.tag_name().name() == "title")
}

/// A `title` directly in a sectioning element, or in its `info` block.
fn names_section(title: Node) -> bool {
    let Some(parent) = title.parent_element() else {
        return false;
    };
    let parent_name = parent.tag_name().name();
    if SECTIONING.contains(&parent_name) {
        return true;
    }
    METADATA.contains(&parent_name)
        && parent
            .parent_element()
            .is_some_and(|g| SECTIONING.contains(&g.tag_name().name()))
}

/// The `xml:id` or `id` of the sectioning element a title names.
fn section_id(title: Node) -> Option<String> {
    title
        .ancestors()
        .skip(1)
        .find(|n| n.is_element() && SECTIONING.contains(&n.tag_name().name()))
        .and_then(|s| {
            s.attribute((roxmltree::NS_XML_URI, "id"))
                .or_else(|| s.attribute("id"))
        })
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outline(p: &Parsed) -> Vec<(Vec<&str>, Option<&str>, &str)> {
        p.sections
            .iter()
            .map(|s| {
                (
                    s.heading_path.iter().map(String::as_str).collect(),
                    s.anchor.as_deref(),
                    s.text.as_str(),
                )
            })
            .collect()
    }

    #[test]
    fn docbook_sections_titles_and_ids() {
        let xml = r#"<?xml version="1.0"?>
<!DOCTYPE article [ <!ENTITY product "FrontDesk"> ]>
<article xmlns="http://docbook.org/ns/docbook" xml:id="guide">
  <info><title>Admin Guide</title><author><personname>Jo</personname></author></info>
  <para>About &product;.</para>
  <section xml:id="install">
    <title>Installing</title>
    <para>Run the   installer.</para>
    <programlisting>./install --prefix /opt
  done</programlisting>
    <remark>internal note</remark>
    <section xml:id="upgrade"><title>Upgrading</title><para>Stop it first.</para>
      <example><title>Example 1</title><para>stop &amp;&amp; upgrade</para></example></section>
    <para>Back in installing.</para>
  </section>
</article>"#;
        let p = parse(xml).unwrap();
        assert_eq!(p.title.as_deref(), Some("Admin Guide"));
        assert_eq!(
            outline(&p),
            vec![
                (vec!["Admin Guide"], Some("guide"), "About FrontDesk."),
                (
                    vec!["Admin Guide", "Installing"],
                    Some("install"),
                    "Run the installer.\n\n./install --prefix /opt\n  done"
                ),
                (
                    vec!["Admin Guide", "Installing", "Upgrading"],
                    Some("upgrade"),
                    "Stop it first.\n\nExample 1\n\nstop && upgrade"
                ),
                (
                    vec!["Admin Guide", "Installing"],
                    Some("install"),
                    "Back in installing."
                ),
            ]
        );
        let all: String = p.sections.iter().map(|s| s.text.as_str()).collect();
        assert!(!all.contains("Jo") && !all.contains("internal note"));
    }

    #[test]
    fn mallard_page() {
        let xml = r#"<page xmlns="http://projectmallard.org/1.0/" type="topic" id="printing">
  <info><link type="guide" xref="index"/><desc>Print a page.</desc></info>
  <title>Print a document</title>
  <p>Press <keyseq><key>Ctrl</key><key>P</key></keyseq>.</p>
  <section id="duplex"><title>Both sides</title><p>Choose <gui>Two-sided</gui>.</p></section>
</page>"#;
        let p = parse(xml).unwrap();
        assert_eq!(p.title.as_deref(), Some("Print a document"));
        assert_eq!(
            outline(&p),
            vec![
                (vec!["Print a document"], Some("printing"), "Press CtrlP."),
                (
                    vec!["Print a document", "Both sides"],
                    Some("duplex"),
                    "Choose Two-sided."
                ),
            ]
        );
    }

    #[test]
    fn malformed_xml_is_a_skip() {
        assert!(matches!(
            parse("<article><para>open"),
            Err(SkipReason::Malformed { format: "XML", .. })
        ));
    }
}
