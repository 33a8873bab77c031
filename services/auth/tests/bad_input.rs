//! The bad-input battery: every malformed request gets a 4xx with a JSON
//! error, never a 5xx; the service stays up; nothing half-written remains.

mod support;

use serde_json::Value;

struct Case {
    name: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
}

fn json_case(name: &'static str, path: &'static str, body: String, status: u16) -> Case {
    Case {
        name,
        path,
        content_type: Some("application/json"),
        body: body.into_bytes(),
        status,
    }
}

#[tokio::test]
async fn every_bad_request_is_a_json_4xx_and_leaves_nothing_behind() {
    let support::TestAuth {
        base, database_url, ..
    } = support::spawn_auth().await;
    let long = "a".repeat(10_000);
    let cases = vec![
        json_case(
            "malformed JSON",
            "/register",
            r#"{"email": "a@b.co", "password":"#.into(),
            400,
        ),
        json_case("JSON array", "/register", "[1,2,3]".into(), 400),
        json_case("empty body", "/register", String::new(), 400),
        json_case(
            "missing password",
            "/register",
            r#"{"email":"a@example.com"}"#.into(),
            400,
        ),
        json_case(
            "missing email",
            "/register",
            r#"{"password":"long enough"}"#.into(),
            400,
        ),
        json_case(
            "wrong field types",
            "/register",
            r#"{"email":1,"password":true}"#.into(),
            400,
        ),
        json_case(
            "malformed email",
            "/register",
            r#"{"email":"not-an-email","password":"long enough"}"#.into(),
            400,
        ),
        json_case(
            "short password",
            "/register",
            r#"{"email":"short@example.com","password":"1234567"}"#.into(),
            400,
        ),
        json_case(
            "SQL in email",
            "/register",
            r#"{"email":"x' OR '1'='1; DROP TABLE users; --","password":"long enough"}"#.into(),
            400,
        ),
        json_case(
            "very long email",
            "/register",
            format!(r#"{{"email":"{long}@example.com","password":"long enough"}}"#),
            400,
        ),
        json_case(
            "very long password",
            "/register",
            format!(r#"{{"email":"long@example.com","password":"{long}"}}"#),
            400,
        ),
        json_case(
            "oversized body",
            "/register",
            format!(
                r#"{{"email":"big@example.com","password":"{}"}}"#,
                "p".repeat(100_000)
            ),
            413,
        ),
        json_case(
            "SQL in login",
            "/login",
            r#"{"email":"' OR '1'='1","password":"' OR '1'='1"}"#.into(),
            // Not an email, so no account can have it: refused as input
            // before the throttle or a password check sees it.
            400,
        ),
        json_case("malformed login JSON", "/login", "{{{".into(), 400),
        Case {
            name: "text/plain body",
            path: "/register",
            content_type: Some("text/plain"),
            body: br#"{"email":"plain@example.com","password":"long enough"}"#.to_vec(),
            status: 400,
        },
        Case {
            name: "no content type",
            path: "/login",
            content_type: None,
            body: br#"{"email":"none@example.com","password":"long enough"}"#.to_vec(),
            status: 400,
        },
        Case {
            name: "binary garbage",
            path: "/register",
            content_type: Some("application/json"),
            body: vec![0xff, 0xfe, 0x00, 0x01, 0x89, 0x50],
            status: 400,
        },
    ];
    let http = reqwest::Client::new();
    for case in cases {
        let mut request = http.post(format!("{base}{}", case.path)).body(case.body);
        if let Some(ct) = case.content_type {
            request = request.header("Content-Type", ct);
        }
        let response = request.send().await.expect(case.name);
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{}: error body is not JSON: {e}", case.name));
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{}: {body}",
            case.name
        );
    }

    let health = http
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200, "auth is still up");
    let pool = sqlx::PgPool::connect(&database_url).await.expect("db");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&pool)
        .await
        .expect("the users table is intact");
    assert_eq!(users, 0, "a rejected request stored a user");

    let metrics = pixelflow_testkit::scrape(&format!("{base}/metrics")).await;
    assert!(
        !metrics.text.contains("status=\"5"),
        "a bad request caused a 5xx:\n{}",
        metrics.text
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let base = support::spawn_auth().await.base;
    let http = reqwest::Client::new();
    let response = http
        .get(format!("{base}/users/42"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "no such route");
    let response = http
        .get(format!("{base}/register"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "method not allowed");
}
