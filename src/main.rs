use std::process::ExitCode;

fn main() -> ExitCode {
    match frontdesk::cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("frontdesk: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
