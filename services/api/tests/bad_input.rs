//! The bad-input battery for api: every malformed request gets its 4xx and
//! a JSON error, none a 5xx; api stays up; no task or event is half-written.

mod support;

use support::{spawn_api_with, Options};

const MAX_UPLOAD: usize = 64 * 1024;

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
    status: u16,
}

#[tokio::test]
async fn every_bad_request_is_a_json_4xx_and_leaves_nothing_behind() {
    let api = spawn_api_with(Options {
        extra: vec![("MAX_UPLOAD_BYTES", MAX_UPLOAD.to_string())],
        ..Options::default()
    })
    .await;
    let (bearer, user_id) = api.user().await;
    let expired = pixelflow_auth::TokenKeys::new(
        support::SECRET.as_bytes(),
        std::time::Duration::from_secs(60),
    )
    .issue_at(
        user_id.parse().expect("uuid"),
        chrono::Utc::now() - chrono::Duration::hours(2),
    )
    .expect("token")
    .0;
    let forged =
        pixelflow_auth::TokenKeys::new(b"not-the-real-secret!", std::time::Duration::from_secs(60))
            .issue_at(user_id.parse().expect("uuid"), chrono::Utc::now())
            .expect("token")
            .0;
    let png = pixelflow_testkit::png(8, 8);
    let upload =
        |name, authorization: Option<String>, content_type: Option<&str>, body: Vec<u8>, status| {
            Case {
                name,
                method: "POST",
                path: "/api/upload".into(),
                authorization,
                content_type: content_type.map(str::to_string),
                body,
                status,
            }
        };
    let get = |name, path: &str, status| Case {
        name,
        method: "GET",
        path: path.into(),
        authorization: Some(bearer.clone()),
        content_type: None,
        body: Vec::new(),
        status,
    };
    let me = Some(bearer.clone());
    let boundary = "XyZ";
    let multipart_without_image = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"\r\n\r\nabc\r\n--{boundary}--\r\n"
    )
    .into_bytes();
    let multipart_ct = format!("multipart/form-data; boundary={boundary}");
    let cases = vec![
        upload("no token", None, Some("image/png"), png.clone(), 401),
        upload(
            "not a bearer token",
            Some("Basic dXNlcjpwYXNz".into()),
            Some("image/png"),
            png.clone(),
            401,
        ),
        upload(
            "garbage token",
            Some("Bearer garbage".into()),
            Some("image/png"),
            png.clone(),
            401,
        ),
        upload(
            "expired token",
            Some(format!("Bearer {expired}")),
            Some("image/png"),
            png.clone(),
            401,
        ),
        upload(
            "forged token",
            Some(format!("Bearer {forged}")),
            Some("image/png"),
            png.clone(),
            401,
        ),
        upload(
            "SQL in token",
            Some("Bearer ' OR 1=1 --".into()),
            Some("image/png"),
            png.clone(),
            401,
        ),
        upload("no content type", me.clone(), None, png.clone(), 415),
        upload(
            "text/plain",
            me.clone(),
            Some("text/plain"),
            png.clone(),
            415,
        ),
        upload(
            "JSON body",
            me.clone(),
            Some("application/json"),
            br#"{"image":"abc"}"#.to_vec(),
            415,
        ),
        upload("empty body", me.clone(), Some("image/png"), Vec::new(), 400),
        upload(
            "oversized body",
            me.clone(),
            Some("image/png"),
            vec![0u8; MAX_UPLOAD + 1],
            413,
        ),
        upload(
            "non-image bytes",
            me.clone(),
            Some("image/png"),
            b"hello, I am not a picture".to_vec(),
            400,
        ),
        upload(
            "truncated PNG header",
            me.clone(),
            Some("image/png"),
            png[..20].to_vec(),
            400,
        ),
        upload(
            "PNG claiming 100000x100000",
            me.clone(),
            Some("image/png"),
            pixelflow_testkit::png_claiming(100_000, 100_000),
            422,
        ),
        upload(
            "PNG claiming 10000x10000, over the pixel cap",
            me.clone(),
            Some("image/png"),
            pixelflow_testkit::png_claiming(10_000, 10_000),
            422,
        ),
        upload(
            "JPEG declared as PNG",
            me.clone(),
            Some("image/png"),
            pixelflow_testkit::jpeg(8, 8),
            400,
        ),
        upload(
            "GIF",
            me.clone(),
            Some("image/png"),
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
            415,
        ),
        upload(
            "multipart without image",
            me.clone(),
            Some(&multipart_ct),
            multipart_without_image,
            400,
        ),
        upload(
            "broken multipart",
            me.clone(),
            Some(&multipart_ct),
            b"--XyZ\r\nnonsense".to_vec(),
            400,
        ),
        upload(
            "multipart without boundary",
            me.clone(),
            Some("multipart/form-data"),
            png.clone(),
            400,
        ),
        get("task id not a UUID", "/api/tasks/not-a-uuid", 400),
        get("SQL in task id", "/api/tasks/1%27%20OR%20%271%27=%271", 400),
        get(
            "very long task id",
            &format!("/api/tasks/{}", "9".repeat(5000)),
            400,
        ),
        get(
            "unknown task",
            &format!("/api/tasks/{}", uuid::Uuid::new_v4()),
            404,
        ),
        get(
            "unknown task result",
            &format!("/api/tasks/{}/result", uuid::Uuid::new_v4()),
            404,
        ),
        get("limit not a number", "/api/tasks?limit=abc", 400),
        get("limit too large", "/api/tasks?limit=100000", 400),
        get("unknown route", "/api/nothing-here", 404),
    ];

    for case in cases {
        let mut request = api
            .http
            .request(
                case.method.parse().expect("method"),
                format!("{}{}", api.base, case.path),
            )
            .body(case.body);
        if let Some(a) = &case.authorization {
            request = request.header("Authorization", a);
        }
        if let Some(ct) = &case.content_type {
            request = request.header("Content-Type", ct);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, case.status, "{}: {text}", case.name);
        let body: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: error body is not JSON ({e}): {text}", case.name));
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{}: {body}",
            case.name
        );
    }

    let health = api
        .http
        .get(format!("{}/health", api.base))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200, "api is still up");
    let pool = api.pool().await;
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&pool)
        .await
        .expect("tasks");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM task_outbox")
        .fetch_one(&pool)
        .await
        .expect("outbox");
    assert_eq!(
        (tasks, events),
        (0, 0),
        "a rejected request stored something"
    );
    let metrics = api.metrics().await;
    assert!(
        !metrics.text.contains("status=\"5"),
        "a bad request caused a 5xx:\n{}",
        metrics.text
    );
    assert_eq!(metrics.value_or_zero("api_tasks_created_total", &[]), 0.0);
}
