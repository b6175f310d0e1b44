//! HTML: the main content only (navigation, scripts and page furniture dropped), split at
//! `h1`–`h6`. Sphinx pages (the Python docs) keep the article in `div[role=main]` / `div.body`.

use ego_tree::{NodeId, NodeRef};
use scraper::node::Element;
use scraper::{Html, Node};

use super::sections::{SectionBuilder, TextBuf};
use crate::kb::document::Section;

pub struct Parsed {
    /// `<title>` without a site suffix, else the first `h1`.
    pub title: Option<String>,
    pub sections: Vec<Section>,
    /// Characters of visible text, and how many of them are inside links.
    pub text_chars: usize,
    pub link_chars: usize,
    /// Whether links were left out because the page is navigation.
    pub dropped_links: bool,
}

impl Parsed {
    /// A page that is nearly all links (a table of contents, an index, a site map) answers
    /// no question itself and outranks real pages on every word it lists.
    pub fn is_navigation(&self) -> bool {
        self.text_chars > 0
            && self.link_chars as f64 > NAVIGATION_LINK_SHARE * self.text_chars as f64
    }

    /// A navigation page with (nearly) no text outside its links: nothing to index.
    pub fn is_navigation_only(&self) -> bool {
        if !self.dropped_links {
            return false;
        }
        let lines = self
            .sections
            .iter()
            .flat_map(|s| s.text.lines())
            .filter(|l| !l.trim().is_empty())
            .count();
        self.text_chars < MIN_OWN_TEXT || self.text_chars < MIN_OWN_LINE * lines
    }
}

/// Share of a page's text inside links above which the page is navigation.
const NAVIGATION_LINK_SHARE: f64 = 0.6;
/// A navigation page whose text outside links is shorter than this, or comes in lines shorter
/// than `MIN_OWN_LINE` on average (an index's "(built-in function)" after each link), says
/// nothing of its own. A chapter's table of contents with an introduction passes.
const MIN_OWN_TEXT: usize = 40;
const MIN_OWN_LINE: usize = 30;

/// Elements whose whole subtree is not content.
const DROPPED: &[&str] = &[
    "script", "style", "nav", "header", "footer", "aside", "noscript", "template", "iframe",
    "object", "svg", "canvas", "button", "form", "select", "head",
];

const PARAGRAPH_BLOCKS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "ul",
    "ol",
    "dl",
    "table",
    "blockquote",
    "figure",
    "pre",
    "hr",
    "details",
    "summary",
];
const LINE_BLOCKS: &[&str] = &["li", "dt", "dd", "tr", "br", "figcaption", "caption"];

/// Depth-first walk without recursion: deeply nested markup cannot overflow the stack.
enum Step<N> {
    Open(N),
    Close(N),
}

/// The page's content. A navigation page (see [`Parsed::is_navigation`]) keeps only its text
/// outside links — the introduction of a chapter's table of contents, say — which is what it
/// says about itself; an index with nothing else is left with little or no text.
pub fn parse(text: &str) -> Parsed {
    let html = Html::parse_document(text);
    let parsed = parse_tree(&html, false);
    if parsed.is_navigation() {
        parse_tree(&html, true)
    } else {
        parsed
    }
}

fn parse_tree(html: &Html, drop_links: bool) -> Parsed {
    let main = main_element(html);
    let mut builder = SectionBuilder::default();
    let mut first_h1 = None;
    let mut heading: Option<(NodeId, usize, Option<String>, TextBuf)> = None;
    let mut pre_depth = 0usize;
    let mut link_depth = 0usize;
    let (mut text_chars, mut link_chars) = (0usize, 0usize);

    let mut stack = vec![Step::Open(main)];
    while let Some(step) = stack.pop() {
        match step {
            Step::Open(node) => match node.value() {
                Node::Text(t) => {
                    let visible = t.chars().filter(|c| !c.is_whitespace()).count();
                    text_chars += visible;
                    if link_depth > 0 {
                        link_chars += visible;
                    }
                    let out = match heading.as_mut() {
                        Some((_, _, _, buf)) => buf,
                        None => &mut builder.text,
                    };
                    if pre_depth > 0 {
                        out.push_verbatim(t);
                    } else {
                        out.push_inline(t);
                    }
                }
                Node::Element(el) => {
                    if is_dropped(el) || (drop_links && el.name() == "a") {
                        continue;
                    }
                    let name = el.name();
                    if let Some(level) = heading_level(name) {
                        if heading.is_none() {
                            let anchor = heading_anchor(node);
                            heading = Some((node.id(), level, anchor, TextBuf::default()));
                        }
                    } else if heading.is_none() {
                        block_break(&mut builder.text, name);
                    }
                    if name == "pre" {
                        pre_depth += 1;
                    }
                    if name == "a" {
                        link_depth += 1;
                    }
                    stack.push(Step::Close(node));
                    let children: Vec<_> = node.children().collect();
                    stack.extend(children.into_iter().rev().map(Step::Open));
                }
                _ => {}
            },
            Step::Close(node) => {
                let Node::Element(el) = node.value() else {
                    continue;
                };
                let name = el.name();
                if name == "pre" {
                    pre_depth = pre_depth.saturating_sub(1);
                }
                if name == "a" {
                    link_depth = link_depth.saturating_sub(1);
                }
                match heading.take() {
                    Some((id, level, anchor, mut buf)) if id == node.id() => {
                        let title = buf.take();
                        if level == 1 && first_h1.is_none() && !title.is_empty() {
                            first_h1 = Some(title.clone());
                        }
                        builder.heading(level, title, anchor);
                    }
                    other => {
                        heading = other;
                        if heading.is_none() {
                            block_break(&mut builder.text, name);
                        }
                    }
                }
            }
        }
    }

    Parsed {
        title: page_title(html).or(first_h1),
        sections: builder.finish(),
        text_chars,
        link_chars,
        dropped_links: drop_links,
    }
}

fn block_break(out: &mut TextBuf, name: &str) {
    if PARAGRAPH_BLOCKS.contains(&name) || heading_level(name).is_some() {
        out.paragraph_break();
    } else if LINE_BLOCKS.contains(&name) {
        out.line_break();
    } else if name == "td" || name == "th" {
        out.push_inline(" ");
    }
}

fn heading_level(name: &str) -> Option<usize> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

fn is_dropped(el: &Element) -> bool {
    DROPPED.contains(&el.name())
        || el.attr("role") == Some("navigation")
        || el.attr("role") == Some("search")
        || el.attr("hidden").is_some()
        || el.attr("aria-hidden") == Some("true")
        // Sphinx's "¶" permalink after every heading.
        || (el.name() == "a" && el.classes().any(|c| c == "headerlink"))
}

/// The element that holds the article: Sphinx's `div[role=main]` / `div.body`, else `main`,
/// `article`, any `[role=main]`, else `body`, else the whole document.
fn main_element(html: &Html) -> NodeRef<'_, Node> {
    let elements = || {
        html.tree
            .root()
            .descendants()
            .filter_map(|n| n.value().as_element().map(|e| (n, e)))
    };
    let preferences: [&dyn Fn(&Element) -> bool; 6] = [
        &|e| e.name() == "div" && e.attr("role") == Some("main"),
        &|e| e.name() == "div" && e.classes().any(|c| c == "body"),
        &|e| e.name() == "main",
        &|e| e.name() == "article",
        &|e| e.attr("role") == Some("main"),
        &|e| e.name() == "body",
    ];
    preferences
        .iter()
        .find_map(|wanted| elements().find(|(_, e)| wanted(e)).map(|(n, _)| n))
        .unwrap_or_else(|| html.tree.root())
}

/// The heading's own `id`, else its Sphinx permalink's target, else the `id` of the `section`
/// (or old-Sphinx `div.section`) it opens.
fn heading_anchor(node: NodeRef<'_, Node>) -> Option<String> {
    let own = node.value().as_element().and_then(|e| e.id());
    let permalink = || {
        node.descendants()
            .filter_map(|n| n.value().as_element())
            .find(|e| e.name() == "a" && e.classes().any(|c| c == "headerlink"))
            .and_then(|e| e.attr("href"))
            .and_then(|h| h.strip_prefix('#'))
    };
    let section = || {
        node.ancestors()
            .filter_map(|n| n.value().as_element())
            .find(|e| e.name() == "section" || e.classes().any(|c| c == "section"))
            .and_then(|e| e.id())
    };
    own.or_else(permalink)
        .or_else(section)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
}

fn page_title(html: &Html) -> Option<String> {
    let title = html
        .tree
        .root()
        .descendants()
        .find(|n| n.value().as_element().is_some_and(|e| e.name() == "title"))?;
    let mut buf = TextBuf::default();
    for t in title.descendants().filter_map(|n| n.value().as_text()) {
        buf.push_inline(t);
    }
    let full = buf.take();
    // "json — JSON encoder and decoder — Python 3.11.4 documentation": the site name follows
    // the last " — ".
    let title = full.rsplit_once(" — ").map_or(full.as_str(), |(t, _)| t);
    Some(title.trim().to_string()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed down from a Sphinx 7 page of the Python 3.11 docs.
    const SPHINX: &str = r##"<!DOCTYPE html>
<html lang="en"><head>
  <meta charset="utf-8" />
  <title>json — JSON encoder and decoder — Python 3.11.4 documentation</title>
  <script>var DOCUMENTATION_OPTIONS = {VERSION: '3.11.4'};</script>
  <style>body { color: red }</style>
</head><body>
  <div class="related" role="navigation" aria-label="Related">
    <ul><li><a href="index.html">Python 3.11.4 Documentation</a> &#187;</li></ul>
  </div>
  <div class="document"><div class="documentwrapper"><div class="bodywrapper">
    <div class="body" role="main">
      <section id="module-json">
        <span id="json-json-encoder-and-decoder"></span>
        <h1><code>json</code> — JSON encoder and decoder<a class="headerlink" href="#module-json" title="Permalink">¶</a></h1>
        <p><strong>Source code:</strong> <a href="x">Lib/json/__init__.py</a></p>
        <p>JSON is a lightweight   data
           interchange format.</p>
        <section id="basic-usage">
          <h2>Basic Usage<a class="headerlink" href="#basic-usage">¶</a></h2>
          <pre><span>import</span> json
    json.dumps([1, 2])</pre>
          <script>trackClick();</script>
          <section id="encoders">
            <h3 id="custom-encoders">Encoders</h3>
            <p>Extend <code>JSONEncoder</code>.</p>
          </section>
        </section>
        <section id="cli">
          <h2>Command Line Interface</h2>
          <p>Use python -m json.tool.</p>
        </section>
      </section>
    </div>
  </div></div>
  <div class="sphinxsidebar" role="navigation"><h3>Table of Contents</h3><p>SIDEBAR TEXT</p></div>
  </div>
  <footer>FOOTER TEXT</footer>
</body></html>"##;

    #[test]
    fn sphinx_page_keeps_main_text_headings_and_anchors() {
        let p = parse(SPHINX);
        assert_eq!(p.title.as_deref(), Some("json — JSON encoder and decoder"));
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
        let h1 = "json — JSON encoder and decoder";
        assert_eq!(
            got,
            vec![
                (vec![h1], Some("module-json")),
                (vec![h1, "Basic Usage"], Some("basic-usage")),
                (vec![h1, "Basic Usage", "Encoders"], Some("custom-encoders")),
                (vec![h1, "Command Line Interface"], Some("cli")),
            ]
        );
        assert_eq!(
            p.sections[0].text,
            "Source code: Lib/json/__init__.py\n\nJSON is a lightweight data interchange format."
        );
        // <pre> keeps its line breaks and indentation.
        assert_eq!(p.sections[1].text, "import json\n    json.dumps([1, 2])");
        assert_eq!(p.sections[2].text, "Extend JSONEncoder.");
    }

    #[test]
    fn navigation_scripts_styles_and_permalinks_are_dropped() {
        let p = parse(SPHINX);
        let all: String = p.sections.iter().map(|s| s.text.as_str()).collect();
        for noise in [
            "DOCUMENTATION_OPTIONS",
            "color: red",
            "trackClick",
            "Python 3.11.4 Documentation",
            "SIDEBAR TEXT",
            "FOOTER TEXT",
            "¶",
        ] {
            assert!(!all.contains(noise), "{noise:?} leaked into {all:?}");
        }
        assert!(!p
            .sections
            .iter()
            .flat_map(|s| &s.heading_path)
            .any(|h| h.contains('¶')));
    }

    #[test]
    fn plain_page_without_main_uses_body_and_drops_nav() {
        let html = "<html><body><nav><a>Home</a></nav><header>Site</header>\
            <div role=\"navigation\">Menu</div><h1>Welcome</h1><p>Hello &amp; bye</p>\
            <aside>Ad</aside></body></html>";
        let p = parse(html);
        assert_eq!(p.title.as_deref(), Some("Welcome"));
        assert_eq!(p.sections.len(), 1);
        assert_eq!(p.sections[0].heading_path, vec!["Welcome".to_string()]);
        assert_eq!(p.sections[0].anchor, None);
        assert_eq!(p.sections[0].text, "Hello & bye");
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let html = format!(
            "{}deep text{}",
            "<div>".repeat(50_000),
            "</div>".repeat(50_000)
        );
        let p = parse(&html);
        assert_eq!(p.sections.len(), 1);
        assert_eq!(p.sections[0].text, "deep text");
    }

    /// A list of `n` links with a few words each, as a table of contents or an index has.
    fn links(n: usize, after: &str) -> String {
        (0..n)
            .map(|i| {
                format!("<li><a href=\"p{i}.html\">Module number {i} reference</a>{after}</li>")
            })
            .collect()
    }

    #[test]
    fn an_index_of_links_is_navigation_only() {
        let html = format!(
            "<html><body><div role=\"main\"><h1>Index</h1><ul>{}</ul></div></body></html>",
            links(60, " (in module os)")
        );
        let p = parse(&html);
        assert!(
            p.dropped_links && p.is_navigation_only(),
            "{:?}",
            p.sections
        );
    }

    #[test]
    fn a_table_of_contents_keeps_its_introduction_without_the_links() {
        let html = format!(
            "<html><body><div role=\"main\"><h1>Internet Data Handling</h1>\
             <p>This chapter describes modules which support handling data formats commonly \
             used on the internet.</p><ul>{}</ul></div></body></html>",
            links(40, "")
        );
        let p = parse(&html);
        assert!(p.dropped_links && !p.is_navigation_only());
        let all: String = p.sections.iter().map(|s| s.text.as_str()).collect();
        assert!(all.contains("handling data formats"), "{all}");
        assert!(!all.contains("Module number"), "{all}");
    }

    #[test]
    fn an_article_with_some_links_keeps_them() {
        let p = parse(SPHINX);
        assert!(!p.dropped_links && !p.is_navigation() && !p.is_navigation_only());
        let html = "<html><body><h1>Refunds</h1><p>Refunds take five days. See \
                    <a href=\"/billing\">billing</a> for invoices.</p></body></html>";
        let p = parse(html);
        assert!(!p.dropped_links);
        assert!(p
            .sections
            .iter()
            .any(|s| s.text.contains("See billing for invoices")));
    }
}
