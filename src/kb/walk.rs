//! Finding the files to ingest: walks files and folders (following symbolic links, with loops
//! detected), decides each file's format, and sets aside what cannot or should not be loaded,
//! each with its reason.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::kb::document::Format;
use crate::kb::error::{KbError, Result, SkipReason, Skipped};

/// 20 MiB: larger "documents" are nearly always exports, logs or archives.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 20 * 1024 * 1024;

/// How much of a text file is checked for NUL bytes.
const BINARY_SNIFF_BYTES: usize = 8192;

#[derive(Debug, Clone)]
pub struct WalkOptions {
    pub max_file_bytes: u64,
    /// Also enter hidden folders and read hidden files (`.name`).
    pub include_hidden: bool,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            include_hidden: false,
        }
    }
}

/// A file to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The path as reached from the root given (for opening the file).
    pub path: PathBuf,
    /// Relative to its ingest root; for a file given directly, its file name.
    pub rel_path: PathBuf,
    pub format: Format,
    pub size: u64,
}

#[derive(Debug, Default)]
pub struct Walked {
    pub files: Vec<SourceFile>,
    pub skipped: Vec<Skipped>,
}

/// Walks each root in turn. A root that does not exist is an error; anything wrong below a
/// root is a skipped entry. Files reached twice (through a link, or two roots) load once.
pub fn walk<P: AsRef<Path>>(roots: &[P], options: &WalkOptions) -> Result<Walked> {
    // Check every root first, so a typo fails before any work.
    for root in roots {
        let root = root.as_ref();
        fs::metadata(root).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => KbError::PathNotFound {
                path: root.to_path_buf(),
            },
            _ => KbError::io(root, e),
        })?;
    }
    let mut walked = Walked::default();
    // Canonical path → the path it was first found at.
    let mut seen: HashMap<PathBuf, PathBuf> = HashMap::new();
    for root in roots {
        walk_root(root.as_ref(), options, &mut seen, &mut walked);
    }
    Ok(walked)
}

fn walk_root(
    root: &Path,
    options: &WalkOptions,
    seen: &mut HashMap<PathBuf, PathBuf>,
    walked: &mut Walked,
) {
    // A file given directly is relative to its folder: its rel_path is its name.
    let base = if root.is_dir() {
        root
    } else {
        root.parent().unwrap_or(Path::new(""))
    };
    let mut entries = WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = entries.next() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                let path = err
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| root.to_path_buf());
                let reason = match err.loop_ancestor() {
                    Some(ancestor) => SkipReason::SymlinkLoop {
                        ancestor: ancestor.to_path_buf(),
                    },
                    None => SkipReason::Unreadable {
                        error: err
                            .io_error()
                            .map_or_else(|| err.to_string(), ToString::to_string),
                    },
                };
                walked.skipped.push(Skipped { path, reason });
                continue;
            }
        };
        let path = entry.path();
        // Roots are walked even when hidden: the user named them.
        let hidden = entry.depth() > 0 && entry.file_name().to_string_lossy().starts_with('.');
        if hidden && !options.include_hidden {
            if entry.file_type().is_dir() {
                entries.skip_current_dir();
            }
            walked.skipped.push(Skipped {
                path: path.to_path_buf(),
                reason: SkipReason::Hidden,
            });
            continue;
        }
        if entry.file_type().is_dir() {
            continue;
        }
        if !entry.file_type().is_file() {
            walked.skipped.push(Skipped {
                path: path.to_path_buf(),
                reason: SkipReason::NotRegularFile,
            });
            continue;
        }
        let rel_path = path
            .strip_prefix(base)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| path.to_path_buf());
        match check_file(path, &rel_path, options, seen) {
            Ok(file) => walked.files.push(file),
            Err(reason) => walked.skipped.push(Skipped {
                path: path.to_path_buf(),
                reason,
            }),
        }
    }
}

/// The checks that need no parsing: format, duplicates, size, readability, binary content.
fn check_file(
    path: &Path,
    rel_path: &Path,
    options: &WalkOptions,
    seen: &mut HashMap<PathBuf, PathBuf>,
) -> Result<SourceFile, SkipReason> {
    let unreadable = |e: std::io::Error| SkipReason::Unreadable {
        error: e.to_string(),
    };
    let format = Format::from_path(path).ok_or_else(|| SkipReason::UnsupportedFormat {
        extension: path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase()),
    })?;
    let canonical = fs::canonicalize(path).map_err(unreadable)?;
    if let Some(first) = seen.get(&canonical) {
        return Err(SkipReason::Duplicate { of: first.clone() });
    }
    seen.insert(canonical, path.to_path_buf());

    let size = fs::metadata(path).map_err(unreadable)?.len();
    if size == 0 {
        return Err(SkipReason::Empty);
    }
    if size > options.max_file_bytes {
        return Err(SkipReason::TooLarge {
            size,
            limit: options.max_file_bytes,
        });
    }
    // Opening proves the file readable; text formats are also sniffed for binary content.
    let mut head = Vec::with_capacity(BINARY_SNIFF_BYTES);
    fs::File::open(path)
        .and_then(|f| f.take(BINARY_SNIFF_BYTES as u64).read_to_end(&mut head))
        .map_err(unreadable)?;
    if format.is_text() && head.contains(&0) {
        return Err(SkipReason::Binary);
    }
    Ok(SourceFile {
        path: path.to_path_buf(),
        rel_path: rel_path.to_path_buf(),
        format,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use tempfile::TempDir;

    fn write(dir: &Path, rel: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        path
    }

    fn reason_for(walked: &Walked, name: &str) -> Option<SkipReason> {
        walked
            .skipped
            .iter()
            .find(|s| s.path.file_name().is_some_and(|f| f == name))
            .map(|s| s.reason.clone())
    }

    fn rel_paths(walked: &Walked) -> Vec<String> {
        walked
            .files
            .iter()
            .map(|f| f.rel_path.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn finds_files_by_format_and_skips_with_reasons() {
        let dir = TempDir::new().unwrap();
        let d = dir.path();
        write(d, "guide.md", b"# Guide\n");
        write(d, "sub/page.HTML", b"<p>hi</p>");
        write(d, "sub/notes.txt", b"notes");
        write(d, "sub/manual.pdf", b"%PDF-1.4 \0\0 binary is fine here");
        write(d, "empty.txt", b"");
        write(d, "image.png", b"\x89PNG");
        write(d, "Makefile", b"all:");
        write(d, "fake.txt", b"text\0\x01\x02 with NUL");
        write(d, ".hidden.md", b"# secret");
        write(d, ".git/config.md", b"# not docs");

        let walked = walk(&[d], &WalkOptions::default()).unwrap();
        assert_eq!(
            rel_paths(&walked),
            vec![
                "guide.md",
                "sub/manual.pdf",
                "sub/notes.txt",
                "sub/page.HTML"
            ]
        );
        let formats: Vec<Format> = walked.files.iter().map(|f| f.format).collect();
        assert_eq!(
            formats,
            vec![Format::Markdown, Format::Pdf, Format::Text, Format::Html]
        );
        assert_eq!(reason_for(&walked, "empty.txt"), Some(SkipReason::Empty));
        assert_eq!(reason_for(&walked, "fake.txt"), Some(SkipReason::Binary));
        assert_eq!(
            reason_for(&walked, "image.png"),
            Some(SkipReason::UnsupportedFormat {
                extension: Some("png".into())
            })
        );
        assert_eq!(
            reason_for(&walked, "Makefile"),
            Some(SkipReason::UnsupportedFormat { extension: None })
        );
        assert_eq!(reason_for(&walked, ".hidden.md"), Some(SkipReason::Hidden));
        // The hidden folder is skipped as a whole, not entered.
        assert_eq!(reason_for(&walked, ".git"), Some(SkipReason::Hidden));
        assert_eq!(reason_for(&walked, "config.md"), None);
        assert_eq!(walked.skipped.len(), 6);
    }

    #[test]
    fn oversized_file_is_skipped_without_reading_it() {
        let dir = TempDir::new().unwrap();
        let big = dir.path().join("big.txt");
        // 50 MB, sparse: cheap to make, and would be read as NULs if it were read at all.
        fs::File::create(&big).unwrap().set_len(50_000_000).unwrap();
        let walked = walk(&[dir.path()], &WalkOptions::default()).unwrap();
        assert!(walked.files.is_empty());
        assert_eq!(
            reason_for(&walked, "big.txt"),
            Some(SkipReason::TooLarge {
                size: 50_000_000,
                limit: DEFAULT_MAX_FILE_BYTES
            })
        );
        assert!(reason_for(&walked, "big.txt")
            .unwrap()
            .to_string()
            .contains("too large"));
    }

    #[test]
    fn symlink_loop_is_skipped_and_linked_files_load_once() {
        let dir = TempDir::new().unwrap();
        let d = dir.path();
        write(d, "docs/a.md", b"# A");
        symlink(d.join("docs"), d.join("docs/loop")).unwrap();
        symlink(d.join("docs/a.md"), d.join("docs/alias.md")).unwrap();
        symlink(d.join("missing.md"), d.join("docs/broken.md")).unwrap();

        let walked = walk(&[d.join("docs")], &WalkOptions::default()).unwrap();
        assert_eq!(rel_paths(&walked), vec!["a.md"]);
        assert_eq!(
            reason_for(&walked, "loop"),
            Some(SkipReason::SymlinkLoop {
                ancestor: d.join("docs")
            })
        );
        assert_eq!(
            reason_for(&walked, "alias.md"),
            Some(SkipReason::Duplicate {
                of: d.join("docs/a.md")
            })
        );
        assert!(matches!(
            reason_for(&walked, "broken.md"),
            Some(SkipReason::Unreadable { .. })
        ));
    }

    #[test]
    fn named_pipe_is_skipped_without_opening_it() {
        let dir = TempDir::new().unwrap();
        let fifo = dir.path().join("pipe.txt");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            return; // no mkfifo on this system
        }
        // Opening a pipe for reading blocks until a writer comes: this returning is the test.
        let walked = walk(&[dir.path()], &WalkOptions::default()).unwrap();
        assert!(walked.files.is_empty());
        assert_eq!(
            reason_for(&walked, "pipe.txt"),
            Some(SkipReason::NotRegularFile)
        );
    }

    #[test]
    fn file_roots_empty_folders_and_missing_paths() {
        let dir = TempDir::new().unwrap();
        let file = write(dir.path(), "deep/faq.rst", b"FAQ\n===\n");
        fs::create_dir(dir.path().join("empty")).unwrap();

        let walked = walk(&[&file], &WalkOptions::default()).unwrap();
        assert_eq!(rel_paths(&walked), vec!["faq.rst"]);

        let walked = walk(&[dir.path().join("empty")], &WalkOptions::default()).unwrap();
        assert!(walked.files.is_empty() && walked.skipped.is_empty());

        let missing = dir.path().join("nope");
        let err = walk(&[file.clone(), missing.clone()], &WalkOptions::default()).unwrap_err();
        assert!(matches!(&err, KbError::PathNotFound { path } if *path == missing));
        assert!(err.to_string().contains(&missing.display().to_string()));
    }
}
