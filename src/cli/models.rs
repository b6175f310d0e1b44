//! `frontdesk models`: the catalogue and the state of each file on disk.

use super::common::Context;
use crate::runtime::catalog::{file_state, Catalog, Check, FileState};
use clap::{Args, Subcommand};
use std::process::ExitCode;

/// List the model catalogue and check downloaded files.
///
/// Files are fetched with scripts/fetch-models; frontdesk itself never uses the network.
///
/// Examples:
///   frontdesk models
///   frontdesk models verify
///   frontdesk models verify smollm2-135m
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ModelsArgs {
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// List every model and the state of its files (the default).
    List,
    /// Re-hash downloaded files against the catalogue; exits non-zero on any mismatch.
    Verify {
        /// Models to verify (default: every model with files present).
        names: Vec<String>,
    },
}

pub fn run(ctx: &Context, args: ModelsArgs) -> anyhow::Result<ExitCode> {
    let catalog = Catalog::builtin()?;
    match args.action.unwrap_or(Action::List) {
        Action::List => {
            println!("models directory: {}", ctx.models_dir.display());
            println!(
                "{:<20} {:<20} {:<10} {:>9}  state",
                "name", "role", "arch", "size"
            );
            for model in &catalog.models {
                let size: u64 = model.files.iter().map(|f| f.size).sum();
                let states = model
                    .files
                    .iter()
                    .map(|f| file_state(&ctx.models_dir, f, Check::Hash))
                    .collect::<Result<Vec<_>, _>>()?;
                let mark = if model.default { " (default)" } else { "" };
                println!(
                    "{:<20} {:<20} {:<10} {:>6.0} MB  {}{mark}",
                    model.name,
                    model.role,
                    model.architecture,
                    size as f64 / 1e6,
                    summarize(&states)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Verify { names } => {
            for n in &names {
                anyhow::ensure!(
                    catalog.get(n).is_some(),
                    "unknown model '{n}' (see `frontdesk models`)"
                );
            }
            let mut bad = 0;
            let mut checked = 0;
            for model in catalog
                .models
                .iter()
                .filter(|m| names.is_empty() || names.contains(&m.name))
            {
                for file in &model.files {
                    let state = file_state(&ctx.models_dir, file, Check::Rehash)?;
                    if state == FileState::Missing && names.is_empty() {
                        continue;
                    }
                    checked += 1;
                    if state != FileState::Verified {
                        bad += 1;
                    }
                    println!("{:<20} {:<45} {state}", model.name, file.path);
                }
            }
            if bad > 0 {
                anyhow::bail!("{bad} of {checked} files failed verification — run scripts/fetch-models NAME to fetch them again");
            }
            println!("{checked} files verified");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn summarize(states: &[FileState]) -> String {
    if states.iter().all(|s| *s == FileState::Verified) {
        "verified".into()
    } else if states.iter().all(|s| *s == FileState::Missing) {
        "missing".into()
    } else {
        states
            .iter()
            .find(|s| **s != FileState::Verified && **s != FileState::Missing)
            .or_else(|| states.iter().find(|s| **s == FileState::Missing))
            .map(|s| format!("incomplete: {s}"))
            .unwrap_or_default()
    }
}
