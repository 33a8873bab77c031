//! What bounds api's storage and memory: the per-user byte quota, the
//! retention of originals and finished tasks, deleting a task, refusals
//! before a body is read, the bytes of uploads in flight, and CORS for
//! browsers.

mod support;

use std::time::Duration;

use pixelflow_testkit::eventually;
use reqwest::StatusCode;
use serde_json::Value;
use support::{spawn_api_with, Options};

fn with(extra: &[(&'static str, &str)]) -> Options {
    Options {
        extra: extra.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        ..Options::default()
    }
}

#[tokio::test]
async fn an_upload_beyond_the_users_storage_quota_is_a_json_413_naming_the_quota() {
    let image = pixelflow_testkit::png(64, 48);
    // Room for two such images, not three.
    let quota = (image.len() * 2 + image.len() / 2).to_string();
    let api = spawn_api_with(with(&[("USER_STORAGE_QUOTA_BYTES", &quota)])).await;
    let (bearer, _) = api.user().await;
    for _ in 0..2 {
        let (status, body) = api.upload(&bearer, "image/png", image.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = api.upload(&bearer, "image/png", image.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("storage quota") && error.contains("USER_STORAGE_QUOTA_BYTES"),
        "{body}"
    );
    // Deleting a task makes room; another user has a quota of their own.
    let (_, list) = api.get(&bearer, "/api/tasks").await;
    let id = list[0]["id"].as_str().expect("a task").to_string();
    let deleted = api
        .http
        .delete(format!("{}/api/tasks/{id}", api.base))
        .header("Authorization", &bearer)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let (status, _) = api.upload(&bearer, "image/png", image.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (other, _) = api.user().await;
    let (status, _) = api.upload(&other, "image/png", image).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_task_is_deleted_by_its_owner_only() {
    let api = spawn_api_with(Options::default()).await;
    let (alice, _) = api.user().await;
    let (bob, _) = api.user().await;
    let (_, task) = api
        .upload(&alice, "image/png", pixelflow_testkit::png(8, 8))
        .await;
    let id = task["id"].as_str().expect("id");
    let delete = |bearer: &str| {
        api.http
            .delete(format!("{}/api/tasks/{id}", api.base))
            .header("Authorization", bearer.to_string())
            .send()
    };
    let by_bob = delete(&bob).await.expect("answered");
    assert_eq!(
        by_bob.status(),
        StatusCode::NOT_FOUND,
        "as if it did not exist"
    );
    assert_eq!(
        api.get(&alice, &format!("/api/tasks/{id}")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        delete(&alice).await.expect("answered").status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.get(&alice, &format!("/api/tasks/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        delete(&alice).await.expect("answered").status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn finished_tasks_lose_their_original_then_themselves_after_their_retention() {
    let api = spawn_api_with(with(&[
        ("ORIGINAL_RETENTION_SECONDS", "1"),
        ("TASK_RETENTION_SECONDS", "3"),
        ("OUTBOX_POLL_INTERVAL_MS", "200"),
    ]))
    .await;
    let (bearer, _) = api.user().await;
    let (_, done) = api
        .upload(&bearer, "image/png", pixelflow_testkit::png(64, 48))
        .await;
    let (_, waiting) = api
        .upload(&bearer, "image/png", pixelflow_testkit::png(64, 48))
        .await;
    let pool = api.pool().await;
    // No worker runs here: the test finishes one task as the worker
    // would (thumbnail stored, the original kept by ORIGINAL_RETENTION).
    sqlx::query(
        "UPDATE tasks SET status = 'COMPLETED', result = 'thumb'::bytea, \
         stored_bytes = stored_bytes + 5, updated_at = clock_timestamp() WHERE id = $1::uuid",
    )
    .bind(done["id"].as_str())
    .execute(&pool)
    .await
    .expect("finished");
    let row = |id: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (Option<i32>, i64)>(
                "SELECT octet_length(image), stored_bytes FROM tasks WHERE id = $1::uuid",
            )
            .bind(id)
            .fetch_optional(&pool)
            .await
            .expect("query")
        }
    };
    let done_id = done["id"].as_str().expect("id").to_string();
    eventually(
        "the original to be dropped",
        Duration::from_secs(20),
        || async { (row(done_id.clone()).await == Some((None, 5))).then_some(()) },
    )
    .await;
    eventually(
        "the finished task to be deleted",
        Duration::from_secs(20),
        || async { row(done_id.clone()).await.is_none().then_some(()) },
    )
    .await;
    let waiting = row(waiting["id"].as_str().expect("id").to_string()).await;
    assert!(
        waiting.is_some_and(|(image, _)| image.is_some()),
        "a task still to process keeps its image: {waiting:?}"
    );
    // The gauges say what is stored.
    eventually("the storage gauges", Duration::from_secs(30), || async {
        let m = api.metrics().await;
        let stored = m.value("api_stored_image_bytes", &[])?;
        let ratio = m.value("api_user_storage_quota_max_ratio", &[])?;
        (stored > 0.0 && ratio > 0.0 && ratio <= 1.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_user_at_the_active_task_limit_is_refused_before_the_body_is_sent() {
    let api = spawn_api_with(with(&[("MAX_ACTIVE_TASKS_PER_USER", "1")])).await;
    let (bearer, _) = api.user().await;
    let (status, _) = api
        .upload(&bearer, "image/png", pixelflow_testkit::png(8, 8))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // A request head that announces 9 MB and sends none of it: the answer
    // comes anyway, so api never waited for (or read) the body.
    let answer = raw_request(
        &api.base,
        &format!(
            "POST /api/upload HTTP/1.1\r\nHost: api\r\nAuthorization: {bearer}\r\nContent-Type: image/png\r\nContent-Length: 9000000\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("active tasks limit"), "{answer}");
}

#[tokio::test]
async fn uploads_beyond_the_bytes_in_flight_get_a_503_with_retry_after() {
    // Room for one upload of 1 MB in flight. The probes below create a
    // task each until the held upload has taken the room: on a loaded
    // machine that can be more than the active-task limit, whose 429 would
    // then come first, so it is out of the way.
    let api = spawn_api_with(with(&[
        ("UPLOAD_BYTES_IN_FLIGHT", "1000000"),
        ("MAX_UPLOAD_BYTES", "1000000"),
        ("MAX_ACTIVE_TASKS_PER_USER", "100000"),
    ]))
    .await;
    let (bearer, _) = api.user().await;
    // The first holds its room while it sends nothing of its body.
    let first = tokio::spawn(raw_request_held(
        api.base.clone(),
        format!(
            "POST /api/upload HTTP/1.1\r\nHost: api\r\nAuthorization: {bearer}\r\nContent-Type: image/png\r\nContent-Length: 1000000\r\n\r\n"
        ),
    ));
    let refused = eventually("the room to be taken", Duration::from_secs(10), || async {
        let (status, body) = api
            .upload(&bearer, "image/png", pixelflow_testkit::png(64, 48))
            .await;
        (status == StatusCode::SERVICE_UNAVAILABLE).then_some(body)
    })
    .await;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("too many uploads in progress")),
        "{refused}"
    );
    first.abort();
    eventually(
        "the room to be free again",
        Duration::from_secs(10),
        || async {
            let (status, _) = api
                .upload(&bearer, "image/png", pixelflow_testkit::png(64, 48))
                .await;
            (status == StatusCode::CREATED).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn browsers_from_the_allowed_origin_are_answered_and_others_refused() {
    let api = spawn_api_with(with(&[("CORS_ALLOWED_ORIGINS", "http://localhost:3000")])).await;
    let preflight = |origin: &str| {
        api.http
            .request(reqwest::Method::OPTIONS, format!("{}/api/upload", api.base))
            .header("Origin", origin.to_string())
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("http://localhost:3000").await.expect("answered");
    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        header(&allowed, "access-control-allow-origin"),
        "http://localhost:3000"
    );
    assert!(header(&allowed, "access-control-allow-headers").contains("authorization"));
    assert!(header(&allowed, "access-control-allow-methods").contains("POST"));
    let refused = preflight("http://evil.example").await.expect("answered");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&refused, "access-control-allow-origin"), "");
    let body: Value = refused.json().await.expect("a JSON error");
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("CORS_ALLOWED_ORIGINS")));
    // A request itself: the allowed origin may read the answer.
    let (bearer, _) = api.user().await;
    let listed = api
        .http
        .get(format!("{}/api/tasks", api.base))
        .header("Origin", "http://localhost:3000")
        .header("Authorization", &bearer)
        .send()
        .await
        .expect("answered");
    assert_eq!(listed.status(), StatusCode::OK);
    assert_eq!(
        header(&listed, "access-control-allow-origin"),
        "http://localhost:3000"
    );
}

/// Sends `head` on a new connection; what came back before the server
/// answered (it must answer without more from the client).
async fn raw_request(base: &str, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut buffer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
        .await
        .expect("an answer without the body")
        .expect("read");
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

/// Sends `head` and keeps the connection open without sending its body.
/// Its reservation can lose the race with a probe that holds a little room
/// at that moment (a 503, answered at once): then it asks again, so the
/// room ends up held by this request, as the test needs.
async fn raw_request_held(base: String, head: String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://").to_string();
    loop {
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut buffer = vec![0u8; 4096];
        // Held: the server waits for a body that never comes, and this
        // read with it. Answered: try again.
        let _ = stream.read(&mut buffer).await;
    }
}
