use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = pixelflowctl::Cli::parse();
    // One thread: pixelflowctl waits on the network and the engine, it does
    // not compute; a single-threaded runtime starts faster (verify's whole
    // run is a few milliseconds) and keeps output ordering simple.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
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
