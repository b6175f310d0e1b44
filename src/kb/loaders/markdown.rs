//! Markdown (CommonMark with tables): each heading opens a section; its anchor is the slug
//! GitHub would give it (or an explicit `{#id}`).

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use super::sections::{SectionBuilder, TextBuf};
use super::slug::{github, UniqueSlugs};
use crate::kb::document::Section;

pub struct Parsed {
    /// The first level-1 heading, if any.
    pub title: Option<String>,
    pub sections: Vec<Section>,
}

pub fn parse(text: &str) -> Parsed {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_HEADING_ATTRIBUTES
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS;
    let mut builder = SectionBuilder::default();
    let mut slugs = UniqueSlugs::default();
    let mut title = None;
    // Some while inside a heading: its level, explicit id and text so far.
    let mut heading: Option<(usize, Option<String>, TextBuf)> = None;
    let mut in_code_block = false;
    let mut in_metadata = false;

    for event in Parser::new_ext(text, options) {
        let out = match heading.as_mut() {
            Some((_, _, buf)) => buf,
            None => &mut builder.text,
        };
        match event {
            Event::Start(Tag::Heading { level, id, .. }) => {
                heading = Some((
                    level as usize,
                    id.map(|s| s.to_string()),
                    TextBuf::default(),
                ));
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, id, mut buf)) = heading.take() {
                    let text = buf.take();
                    if level == 1 && title.is_none() && !text.is_empty() {
                        title = Some(text.clone());
                    }
                    let anchor = slugs.unique(id.unwrap_or_else(|| github(&text)));
                    builder.heading(level, text, Some(anchor).filter(|a| !a.is_empty()));
                }
            }
            Event::Start(Tag::MetadataBlock(_)) => in_metadata = true,
            Event::End(TagEnd::MetadataBlock(_)) => in_metadata = false,
            Event::Start(Tag::CodeBlock(_)) => {
                in_code_block = true;
                out.paragraph_break();
            }
            Event::End(TagEnd::CodeBlock) => {
                in_code_block = false;
                out.paragraph_break();
            }
            Event::Text(_) if in_metadata => {}
            Event::Text(t) if in_code_block => out.push_verbatim(&t),
            Event::Text(t) | Event::Code(t) | Event::InlineMath(t) => out.push_inline(&t),
            Event::DisplayMath(t) => {
                out.paragraph_break();
                out.push_verbatim(&t);
                out.paragraph_break();
            }
            Event::SoftBreak => out.push_inline(" "),
            Event::HardBreak => out.line_break(),
            Event::Start(Tag::Item) => {
                out.line_break();
                out.push_inline("- ");
            }
            Event::Start(Tag::TableCell) => out.push_inline(" "),
            Event::End(TagEnd::TableCell) => out.push_inline(" |"),
            Event::End(TagEnd::TableRow | TagEnd::TableHead | TagEnd::Item) => out.line_break(),
            Event::End(
                TagEnd::Paragraph
                | TagEnd::BlockQuote(_)
                | TagEnd::List(_)
                | TagEnd::Table
                | TagEnd::FootnoteDefinition,
            )
            | Event::Rule => out.paragraph_break(),
            // Raw HTML is markup, not prose; its text rarely matters and its tags would be noise.
            _ => {}
        }
    }
    Parsed {
        title,
        sections: builder.finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "---\ntitle: ignored front matter\n---\n\
Intro line\nwrapped.\n\n\
# Billing\n\nHow we bill.\n\n\
## Refunds & Returns\n\nAsk within **30 days**.\n\n```sh\nrefund --id 42\n  indented\n```\n\n\
## Refunds & Returns\n\nSecond one.\n\n\
### Custom {#my-id}\n\nWith `code`.\n\n\
# Accounts\n\n- one\n- two\n";

    #[test]
    fn headings_split_sections_with_paths_and_slugs() {
        let p = parse(DOC);
        assert_eq!(p.title.as_deref(), Some("Billing"));
        let got: Vec<(Vec<&str>, Option<&str>)> = p
            .sections
            .iter()
            .map(|s| {
                (
                    s.heading_path.iter().map(String::as_str).collect(),
                    s.anchor.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (vec![], None),
                (vec!["Billing"], Some("billing")),
                (
                    vec!["Billing", "Refunds & Returns"],
                    Some("refunds--returns")
                ),
                (
                    vec!["Billing", "Refunds & Returns"],
                    Some("refunds--returns-1")
                ),
                (
                    vec!["Billing", "Refunds & Returns", "Custom"],
                    Some("my-id")
                ),
                (vec!["Accounts"], Some("accounts")),
            ]
        );
        assert_eq!(p.sections[0].text, "Intro line wrapped.");
        assert_eq!(p.sections[1].text, "How we bill.");
        assert_eq!(p.sections[4].text, "With code.");
        assert_eq!(p.sections[5].text, "- one\n- two");
    }

    #[test]
    fn code_blocks_are_kept_verbatim_and_metadata_dropped() {
        let p = parse(DOC);
        let refunds = &p.sections[2].text;
        assert!(refunds.starts_with("Ask within 30 days."), "{refunds}");
        assert!(refunds.contains("refund --id 42\n  indented"), "{refunds}");
        assert!(!p.sections.iter().any(|s| s.text.contains("front matter")));
    }

    #[test]
    fn no_h1_means_no_title() {
        assert_eq!(parse("## Only h2\n\ntext").title, None);
    }
}
