//! Traces end to end: the three binaries as processes export to a test
//! OTLP receiver (real protobuf decoding). One upload is one trace with
//! spans from api, auth and worker, linked parent to child, also when api
//! restarts between storing the task and publishing its event; and the log
//! lines of the flow carry that trace's id.

use std::collections::HashMap;
use std::time::Duration;

use pixelflow_e2e::{run_flow, Service, Stack};
use pixelflow_testkit::{OtlpReceiver, RecordedSpan};
use serde_json::Value;

const SECRET: &str = "e2e-secret-0123456789-0123456789abcdef";

/// Exports within a tenth of a second of a span's end, so the test waits
/// on the receiver, not on the SDK's 5 s default.
fn exporting_to(receiver: &OtlpReceiver) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.clone()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
    ]
}

/// The chain of spans from `span` up to the root of its trace.
fn ancestry<'a>(span: &'a RecordedSpan, trace: &'a [RecordedSpan]) -> Vec<&'a RecordedSpan> {
    let by_id: HashMap<&str, &RecordedSpan> =
        trace.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let mut chain = vec![span];
    let mut current = span;
    while let Some(parent) = by_id.get(current.parent_span_id.as_str()) {
        chain.push(parent);
        current = parent;
    }
    chain
}

fn find<'a>(trace: &'a [RecordedSpan], service: &str, name: &str) -> Option<&'a RecordedSpan> {
    trace
        .iter()
        .find(|s| s.service == service && s.name == name)
}

/// The worker's processing span has arrived.
fn has_worker_processing(trace: &[RecordedSpan]) -> bool {
    trace
        .iter()
        .any(|s| s.service == "worker" && s.name.ends_with(" process") && s.kind == 5)
}

fn describe(trace: &[RecordedSpan]) -> String {
    trace
        .iter()
        .map(|s| {
            format!(
                "{}:{} {} <- {}",
                s.service, s.name, s.span_id, s.parent_span_id
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The api upload's server span, asserted to be the root of the trace
/// (the client sent no traceparent).
fn upload_root(trace: &[RecordedSpan]) -> &RecordedSpan {
    let root = find(trace, "api", "POST /api/upload")
        .unwrap_or_else(|| panic!("api's upload span:\n{}", describe(trace)));
    assert!(
        root.parent_span_id.is_empty(),
        "the upload starts the trace"
    );
    assert_eq!(root.kind, 2, "a server span");
    assert_eq!(
        root.attributes.get("http.route").map(String::as_str),
        Some("/api/upload")
    );
    assert_eq!(
        root.int_attributes.get("http.response.status_code"),
        Some(&201),
        "the status code, as an int: {:?}",
        root.attributes
    );
    root
}

fn log_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test]
async fn one_upload_is_one_trace_across_api_auth_and_worker_and_its_logs_carry_the_trace_id() {
    let receiver = OtlpReceiver::start().await;
    let stack = Stack::fresh(SECRET).await;
    let logs = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::new();
    let [auth, api, worker] = stack
        .start_all(logs.path(), &exporting_to(&receiver), &http)
        .await;
    let done = run_flow(&http, &auth, &api).await;
    let trace_id = done
        .trace_id
        .clone()
        .expect("api answers the upload with a traceparent");

    let trace = receiver
        .wait_for_trace(&trace_id, Duration::from_secs(30), |spans| {
            has_worker_processing(spans)
                && spans.iter().any(|s| s.name == "image encode")
                && spans.iter().any(|s| s.name == "UPDATE tasks complete")
        })
        .await;
    let root = upload_root(&trace);

    // api asked auth, and auth's server span continues api's client span.
    let validate = find(&trace, "auth", "GET /validate")
        .unwrap_or_else(|| panic!("auth's validate span:\n{}", describe(&trace)));
    let call = find(&trace, "api", "GET auth /validate").expect("api's call to auth");
    assert_eq!(
        call.int_attributes.get("http.response.status_code"),
        Some(&200),
        "auth's answer, as an int: {:?}",
        call.attributes
    );
    assert_eq!(
        validate.parent_span_id, call.span_id,
        "auth continues api's call"
    );
    assert_eq!(
        call.parent_span_id, root.span_id,
        "the call is the upload's"
    );

    // The worker's spans hang under the upload, through the outbox insert
    // and the publication.
    let processing = trace
        .iter()
        .find(|s| s.service == "worker" && s.kind == 5)
        .expect("worker span");
    let chain = ancestry(processing, &trace);
    let names: Vec<String> = chain
        .iter()
        .map(|s| format!("{}:{}", s.service, s.name))
        .collect();
    assert_eq!(
        names.last().map(String::as_str),
        Some("api:POST /api/upload"),
        "the worker's parent chain reaches the upload: {names:?}"
    );
    assert!(names.iter().any(|n| n.ends_with(" publish")), "{names:?}");
    assert!(
        names.iter().any(|n| n == "api:INSERT task_outbox"),
        "{names:?}"
    );
    for step in [
        "image decode",
        "image resize",
        "image encode",
        "UPDATE tasks claim",
    ] {
        let span = find(&trace, "worker", step)
            .unwrap_or_else(|| panic!("worker's {step} span:\n{}", describe(&trace)));
        assert_eq!(
            span.parent_span_id, processing.span_id,
            "{step} is the processing's"
        );
    }
    for statement in ["INSERT tasks", "COUNT active tasks"] {
        assert!(
            find(&trace, "api", statement).is_some(),
            "api's {statement} span"
        );
    }

    // Every log line the flow's upload produced carries the trace id.
    let (_, worker_log) = worker.terminate().await;
    let (_, api_log) = api.terminate().await;
    let (_, auth_log) = auth.terminate().await;
    let lines_of = |log: &str| -> Vec<Value> {
        log_lines(log)
            .into_iter()
            .filter(|l| l["trace_id"] == trace_id.as_str())
            .collect()
    };
    let completed = lines_of(&worker_log)
        .into_iter()
        .find(|l| l["message"] == "task completed")
        .expect("the worker's 'task completed' line carries the trace id");
    assert_eq!(completed["task_id"], done.task_id.as_str());
    assert_eq!(completed["span_id"], processing.span_id.as_str());
    let api_lines = lines_of(&api_log);
    assert!(
        api_lines
            .iter()
            .any(|l| l["message"] == "request handled" && l["endpoint"] == "/api/upload"),
        "api's upload line carries the trace id: {api_lines:?}"
    );
    assert!(
        api_lines
            .iter()
            .any(|l| l["message"] == "task event published"),
        "the relay's line carries the trace id: {api_lines:?}"
    );
    assert!(
        lines_of(&auth_log)
            .iter()
            .any(|l| l["endpoint"] == "/validate" && l["span_id"] == validate.span_id.as_str()),
        "auth's validate line carries the trace and its span"
    );
    // No span outside ours: libraries' internals are not exported.
    for span in receiver.spans() {
        assert!(
            ["api", "auth", "worker"].contains(&span.service.as_str()),
            "{span:?}"
        );
    }
}

#[tokio::test]
async fn the_trace_holds_when_api_restarts_between_storing_a_task_and_publishing_it() {
    let receiver = OtlpReceiver::start().await;
    let stack = Stack::fresh(SECRET).await;
    let logs = tempfile::tempdir().expect("tempdir");
    let env = exporting_to(&receiver);
    let auth = stack.auth_with(logs.path(), &env);
    let worker = stack.worker_with(logs.path(), &env);
    let http = reqwest::Client::new();
    auth.ready(&http).await;
    worker.ready(&http).await;

    // The first api cannot reach any broker: the upload is stored with its
    // event, which stays in the outbox.
    let dead_broker = format!("127.0.0.1:{}", pixelflow_testkit::free_port());
    let mut first_env = env.clone();
    first_env.push(("KAFKA_BROKERS", dead_broker));
    first_env.push(("KAFKA_MESSAGE_TIMEOUT_MS", "1000".to_string()));
    let first = stack.api_with(logs.path(), &first_env);
    pixelflow_testkit::accepting(stack.ports.1, "the first api").await;

    let client = pixelflow_testkit::ApiClient::register(&http, &auth.base, &first.base).await;
    let (task_id, traceparent) = client.upload_traced(pixelflow_testkit::png(64, 48)).await;
    let trace_id = pixelflow_verify::flow::trace_id_of(&traceparent).expect("a traceparent");
    let (status, _) = first.terminate().await;
    assert!(status.success(), "the first api stops cleanly");

    // A new api process, with the broker, publishes the stored event.
    let second: Service = stack.api_with(logs.path(), &env);
    second.ready(&http).await;
    let trace = receiver
        .wait_for_trace(&trace_id, Duration::from_secs(60), has_worker_processing)
        .await;
    let root = upload_root(&trace);
    let processing = trace
        .iter()
        .find(|s| s.service == "worker" && s.kind == 5)
        .expect("worker span");
    let chain = ancestry(processing, &trace);
    assert_eq!(
        chain.last().map(|s| s.span_id.as_str()),
        Some(root.span_id.as_str()),
        "the worker's chain reaches the first api's upload:\n{}",
        describe(&trace)
    );
    assert_eq!(
        processing.attributes.get("task_id").map(String::as_str),
        Some(task_id.as_str())
    );
    drop(second);
}

#[tokio::test]
async fn with_no_collector_the_flow_works_and_each_service_reports_the_failure_once() {
    let stack = Stack::fresh(SECRET).await;
    let logs = tempfile::tempdir().expect("tempdir");
    // Nothing listens there: every export is refused.
    let env = vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", pixelflow_testkit::free_port()),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
    ];
    let http = reqwest::Client::new();
    let [auth, api, worker] = stack.start_all(logs.path(), &env, &http).await;
    // Twice: several batches fail in every service.
    for _ in 0..2 {
        let done = run_flow(&http, &auth, &api).await;
        assert!(
            done.trace_id.is_some(),
            "ids are made whether or not exported"
        );
    }
    for service in [worker, api, auth] {
        let name = service.name;
        let (status, log) = service.terminate().await;
        assert!(status.success(), "{name} stops cleanly");
        let reports: Vec<Value> = log_lines(&log)
            .into_iter()
            .filter(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("cannot export traces"))
            })
            .collect();
        assert_eq!(reports.len(), 1, "{name} reports the collector once: {log}");
        assert_eq!(reports[0]["level"], "WARN");
    }
}
