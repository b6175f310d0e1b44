//! Building blocks the structured loaders share: a text buffer that normalises whitespace the
//! way a browser would, and a builder that turns a stream of headings and text into sections.

use crate::kb::document::Section;

/// Collects text. Inline text has its runs of whitespace collapsed to one space; verbatim text
/// (code blocks) is kept as is; breaks between blocks become one newline or one blank line.
#[derive(Debug, Default)]
pub struct TextBuf {
    out: String,
    pending_space: bool,
}

impl TextBuf {
    pub fn push_inline(&mut self, s: &str) {
        for c in s.chars() {
            if c.is_whitespace() {
                self.pending_space = true;
                continue;
            }
            if self.pending_space
                && !self.out.is_empty()
                && !self.out.ends_with(char::is_whitespace)
            {
                self.out.push(' ');
            }
            self.pending_space = false;
            self.out.push(c);
        }
    }

    pub fn push_verbatim(&mut self, s: &str) {
        self.pending_space = false;
        self.out.push_str(s);
    }

    pub fn line_break(&mut self) {
        self.pending_space = false;
        let kept = self.out.trim_end_matches([' ', '\t']).len();
        self.out.truncate(kept);
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
    }

    pub fn paragraph_break(&mut self) {
        self.line_break();
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    /// The text so far, without leading blank lines or trailing whitespace; the buffer empties.
    pub fn take(&mut self) -> String {
        self.pending_space = false;
        let out = std::mem::take(&mut self.out);
        out.trim_start_matches(['\n', '\r']).trim_end().to_string()
    }
}

/// Turns "heading at level N" and text events into sections with their heading paths.
#[derive(Debug, Default)]
pub struct SectionBuilder {
    /// Open headings, outermost first: (level, title, anchor).
    stack: Vec<(usize, String, Option<String>)>,
    pub text: TextBuf,
    sections: Vec<Section>,
}

impl SectionBuilder {
    /// Closes the current section and opens one under `title`, below the open headings of a
    /// smaller level. A heading without text (an image, an empty `#`) is ignored: it would
    /// add a blank name to the heading path.
    pub fn heading(&mut self, level: usize, title: String, anchor: Option<String>) {
        if title.trim().is_empty() {
            return;
        }
        self.flush();
        while self.stack.last().is_some_and(|(l, _, _)| *l >= level) {
            self.stack.pop();
        }
        self.stack.push((level, title, anchor));
    }

    /// Closes the headings at `level` and deeper (the end of an explicit `<section>`), so the
    /// text after it belongs to the parent again.
    pub fn close_level(&mut self, level: usize) {
        self.flush();
        while self.stack.last().is_some_and(|(l, _, _)| *l >= level) {
            self.stack.pop();
        }
    }

    fn flush(&mut self) {
        let text = self.text.take();
        if text.is_empty() {
            return;
        }
        self.sections.push(Section {
            heading_path: self.stack.iter().map(|(_, t, _)| t.clone()).collect(),
            anchor: self.stack.last().and_then(|(_, _, a)| a.clone()),
            page: None,
            text,
        });
    }

    pub fn finish(mut self) -> Vec<Section> {
        self.flush();
        self.sections
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_collapsed_but_code_kept() {
        let mut b = TextBuf::default();
        b.push_inline("  Hello \n   world ");
        b.paragraph_break();
        b.push_verbatim("fn main() {\n    x\n}");
        b.paragraph_break();
        b.push_inline("end");
        assert_eq!(b.take(), "Hello world\n\nfn main() {\n    x\n}\n\nend");
    }

    #[test]
    fn heading_levels_nest_and_pop() {
        let mut s = SectionBuilder::default();
        s.text.push_inline("intro");
        s.heading(1, "A".into(), Some("a".into()));
        s.text.push_inline("in a");
        s.heading(2, "B".into(), Some("b".into()));
        s.text.push_inline("in b");
        s.heading(2, "C".into(), None);
        s.text.push_inline("in c");
        s.heading(3, " ".into(), Some("blank".into())); // ignored
        s.text.push_inline(" more c");
        s.heading(1, "D".into(), Some("d".into()));
        s.heading(2, "E".into(), Some("e".into())); // D has no text of its own
        s.text.push_inline("in e");
        let got: Vec<(Vec<String>, Option<String>, String)> = s
            .finish()
            .into_iter()
            .map(|x| (x.heading_path, x.anchor, x.text))
            .collect();
        let v = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                (v(&[]), None, "intro".into()),
                (v(&["A"]), Some("a".into()), "in a".into()),
                (v(&["A", "B"]), Some("b".into()), "in b".into()),
                (v(&["A", "C"]), None, "in c more c".into()),
                (v(&["D", "E"]), Some("e".into()), "in e".into()),
            ]
        );
    }
}
