//! The test OTLP receiver as a process of its own, for the load bench: the
//! collector's work (decoding every export) runs beside the services as a
//! real collector would, not on the load generator's threads. Prints
//! `{"endpoint":URL}`, then, when stdin closes, its counts (`OtlpReceiver::counts`: spans, and
//! spans per trace by root span name) and exits.

use std::io::Read;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let receiver = pixelflow_testkit::OtlpReceiver::counting().await;
    eprintln!("{}", serde_json::json!({ "endpoint": receiver.endpoint }));
    // Serves until stdin closes (the bench drops its end).
    tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await??;
    eprintln!("{}", receiver.counts());
    Ok(())
}
