use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = pixelflowctl::Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(pixelflowctl::run(cli)) {
        Ok(status) => status.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            pixelflowctl::exit_status(&e).into()
        }
    }
}
