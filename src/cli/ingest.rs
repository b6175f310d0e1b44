//! `frontdesk ingest`: documents in, a new generation of a knowledge base out.

use super::common::Context;
use crate::kb::{ingest, IngestOptions, IngestProgress, KbDir, Stage};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Add documents to a knowledge base (or bring it up to date).
///
/// Reads Markdown, HTML, plain text, reStructuredText, AsciiDoc, PDF (text layer) and
/// DocBook/Mallard XML files under each PATH, cuts them into chunks, embeds them with
/// all-MiniLM-L6-v2 and stores them in the knowledge base --kb. Run it again on the same
/// folders to update: unchanged files are kept as they are, changed ones are embedded again,
/// and files no longer there are removed. The previous version of the knowledge base stays in
/// use until the new one is complete, so a failed or interrupted ingest changes nothing.
///
/// Hidden, empty, binary, oversized and unsupported files are skipped; -v/--verbose lists
/// each with its reason.
///
/// Examples:
///   frontdesk ingest ./docs
///   frontdesk ingest ./handbook ./faq.md --kb support --verbose
///   frontdesk --data-dir /srv/frontdesk ingest /srv/docs --kb public
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct IngestArgs {
    /// Files or folders to read (folders are walked recursively).
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<PathBuf>,

    /// The knowledge base to write, a folder under DATA_DIR/kb/.
    #[arg(long, default_value = "default", value_name = "NAME")]
    kb: String,
}

pub fn run(ctx: &Context, args: IngestArgs) -> anyhow::Result<ExitCode> {
    let kb = KbDir::new(&ctx.data_dir, &args.kb)?;
    let options = IngestOptions::new(&ctx.models_dir);
    let progress = Bars::new(std::io::stderr().is_terminal());
    let report = ingest(&kb, &args.paths, &options, &progress)?;
    progress.clear();

    if ctx.verbose > 0 {
        for skipped in &report.skipped {
            eprintln!("skipped {}: {}", skipped.path.display(), skipped.reason);
        }
    }
    println!(
        "kb {}: {} files, {} documents ({} added, {} updated, {} unchanged, {} removed), \
         {} chunks embedded ({} in the kb), {} skipped, {:.1}s, {:.1} chunks/s",
        kb.name(),
        report.files_seen,
        report.documents,
        report.added,
        report.updated,
        report.unchanged,
        report.removed,
        report.chunks_embedded,
        report.chunks,
        report.skipped.len(),
        report.seconds,
        report.chunks_per_second(),
    );
    Ok(ExitCode::SUCCESS)
}

/// One progress bar per stage, drawn on stderr only when it is a terminal.
struct Bars {
    multi: MultiProgress,
    loading: ProgressBar,
    embedding: ProgressBar,
    indexing: ProgressBar,
}

impl Bars {
    fn new(draw: bool) -> Bars {
        let target = if draw {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let bar = |label: &str, unit: &str| {
            let style = ProgressStyle::with_template(&format!(
                "{label:<10} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} {{eta}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            multi.add(ProgressBar::hidden().with_style(style))
        };
        Bars {
            loading: bar("loading", "files"),
            embedding: bar("embedding", "chunks"),
            indexing: bar("indexing", "documents"),
            multi,
        }
    }

    fn bar(&self, stage: Stage) -> &ProgressBar {
        match stage {
            Stage::Loading => &self.loading,
            Stage::Embedding => &self.embedding,
            Stage::Indexing => &self.indexing,
        }
    }

    fn clear(&self) {
        let _ = self.multi.clear();
    }
}

impl IngestProgress for Bars {
    fn start(&self, stage: Stage, total: u64) {
        let bar = self.bar(stage);
        bar.set_length(total);
        bar.set_position(0);
        bar.reset_eta();
    }

    fn advance(&self, stage: Stage, n: u64) {
        self.bar(stage).inc(n);
    }

    fn finish(&self, stage: Stage) {
        self.bar(stage).finish();
    }
}
