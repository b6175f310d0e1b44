//! Anchors that renderers give headings without an explicit id, so a citation can link to
//! the section. Each function copies one renderer's rule.

/// GitHub's rule for Markdown headings: lowercase; keep letters, digits, `-` and `_`; spaces
/// become `-`; everything else is dropped.
pub fn github(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// docutils' rule (reStructuredText, Sphinx): lowercase, runs of other characters become one
/// `-`, no leading or trailing `-`.
pub fn docutils(heading: &str) -> String {
    joined(heading, '-')
}

/// Asciidoctor's default: `_` prefix, runs of other characters become one `_`.
pub fn asciidoctor(heading: &str) -> String {
    format!("_{}", joined(heading, '_'))
}

fn joined(heading: &str, sep: char) -> String {
    let mut out = String::new();
    let mut gap = false;
    for c in heading.to_lowercase().chars() {
        if c.is_alphanumeric() {
            if gap && !out.is_empty() {
                out.push(sep);
            }
            gap = false;
            out.push(c);
        } else {
            gap = true;
        }
    }
    out
}

/// Numbers repeated slugs the way GitHub does (`intro`, `intro-1`, `intro-2`).
#[derive(Default)]
pub struct UniqueSlugs {
    seen: std::collections::HashMap<String, usize>,
}

impl UniqueSlugs {
    pub fn unique(&mut self, slug: String) -> String {
        let n = self.seen.entry(slug.clone()).or_insert(0);
        let out = if *n == 0 { slug } else { format!("{slug}-{n}") };
        *n += 1;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_slugs() {
        assert_eq!(github("Billing & Refunds"), "billing--refunds");
        assert_eq!(github("What's new in 3.11?"), "whats-new-in-311");
        assert_eq!(github("snake_case API"), "snake_case-api");
    }

    #[test]
    fn docutils_and_asciidoctor_ids() {
        assert_eq!(docutils("json — JSON encoder"), "json-json-encoder");
        assert_eq!(docutils("  Basic Usage! "), "basic-usage");
        assert_eq!(asciidoctor("Getting Started"), "_getting_started");
    }

    #[test]
    fn repeated_slugs_are_numbered() {
        let mut u = UniqueSlugs::default();
        assert_eq!(u.unique("intro".into()), "intro");
        assert_eq!(u.unique("intro".into()), "intro-1");
        assert_eq!(u.unique("intro".into()), "intro-2");
    }
}
