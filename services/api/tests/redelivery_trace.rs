//! A task's redelivered event stays in its upload's trace. Alone in its
//! test binary: it installs a tracing subscriber for its thread, and
//! `tracing` caches each callsite's interest process-wide, so another
//! test's thread registering the same callsites at the same moment could
//! leave them disabled for this one (seen under load as an upload answered
//! without a `traceparent`).

mod support;

use reqwest::StatusCode;
use support::{spawn_api_with, Options};

#[tokio::test]
async fn a_task_left_pending_after_its_event_went_out_gets_its_event_again_in_its_trace() {
    // Tracing on, as in the services: this test's runtime is one thread,
    // so api's tasks all run under this default.
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let _tracing =
        tracing::subscriber::set_default(pixelflow_common::telemetry::traced_subscriber(
            "api",
            tracing_subscriber::EnvFilter::new("warn"),
            opentelemetry::trace::TracerProvider::tracer(&provider, "api"),
            std::io::sink,
        ));
    let api = spawn_api_with(Options {
        extra: vec![("TASK_REDELIVER_AFTER_SECONDS", "1".into())],
        ..Options::default()
    })
    .await;
    let (bearer, _) = api.user().await;
    let (status, task, traceparent) = api
        .upload_traced(&bearer, "image/png", pixelflow_testkit::png(8, 8))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = task["id"].as_str().expect("id").to_string();
    let trace_id = pixelflow_verify::flow::trace_id_of;
    let upload_trace = traceparent
        .as_deref()
        .and_then(trace_id)
        .expect("api answers with a traceparent");
    // No worker runs, as if the first event had been lost: the task stays
    // PENDING and its event goes out again.
    let records = api.consume_records(2).await;
    assert!(records.iter().all(|r| r.key == id), "{records:?}");
    assert_eq!(records[0].payload, records[1].payload, "the same event");
    let parents: Vec<String> = records
        .iter()
        .map(|r| r.traceparent.clone().expect("a traceparent header"))
        .collect();
    for parent in &parents {
        assert_eq!(
            trace_id(parent).as_deref(),
            Some(upload_trace.as_str()),
            "both publications are in the upload's trace: {parents:?}"
        );
    }
    assert_ne!(
        parents[0], parents[1],
        "each from a publish span of its own"
    );
    let (_, task) = api.get(&bearer, &format!("/api/tasks/{id}")).await;
    assert_eq!(task["status"], "PENDING");
}
