//! auth against a real PostgreSQL: a fresh database per test, the real app
//! on port 0.

mod support;

use pixelflow_testkit::Exposition;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{spawn_auth, TestAuth, SECRET};

impl TestAuth {
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn validate(&self, authorization: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.http.get(format!("{}/validate", self.base));
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn metrics(&self) -> Exposition {
        pixelflow_testkit::scrape(&format!("{}/metrics", self.base)).await
    }

    async fn register(&self, email: &str, password: &str) -> String {
        let (status, body) = self
            .post("/register", json!({ "email": email, "password": password }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["user_id"].as_str().expect("user_id").to_string()
    }
}

#[tokio::test]
async fn register_login_and_validate_round_trip() {
    let auth = spawn_auth().await;
    let user_id = auth.register("Ada@Example.com", "correct horse").await;

    // Emails are case-insensitive.
    let (status, body) = auth
        .post(
            "/login",
            json!({ "email": "ada@example.com", "password": "correct horse" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().expect("token");
    assert!(body["expires_at"].as_str().is_some(), "{body}");

    let (status, body) = auth.validate(Some(&format!("Bearer {token}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "valid": true, "user_id": user_id }));
}

#[tokio::test]
async fn passwords_are_stored_as_argon2id_hashes() {
    let auth = spawn_auth().await;
    auth.register("hash@example.com", "correct horse").await;
    let pool = sqlx::PgPool::connect(&auth.database_url).await.expect("db");
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&pool)
        .await
        .expect("one user");
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains("correct horse"));
}

#[tokio::test]
async fn a_taken_email_is_a_conflict() {
    let auth = spawn_auth().await;
    auth.register("twice@example.com", "password-1").await;
    let (status, body) = auth
        .post(
            "/register",
            json!({ "email": "TWICE@example.com", "password": "password-2" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "email already registered");
}

#[tokio::test]
async fn one_address_in_two_unicode_spellings_is_one_account() {
    // "é" precomposed (U+00E9) and as "e" + a combining acute (U+0301) look
    // the same to the person typing: two accounts for them would be one
    // lockout away from confusion, and a second throttle key to spend.
    let auth = spawn_auth().await;
    auth.register("jos\u{e9}@example.com", "password-1").await;
    let (status, body) = auth
        .post(
            "/register",
            json!({ "email": "JOSE\u{301}@example.com", "password": "password-2" }),
        )
        .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::CONFLICT, &json!("email already registered"))
    );
    let (status, _) = auth
        .post(
            "/login",
            json!({ "email": "jose\u{301}@example.com", "password": "password-1" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_401() {
    let auth = spawn_auth().await;
    auth.register("known@example.com", "right password").await;
    let wrong = auth
        .post(
            "/login",
            json!({ "email": "known@example.com", "password": "wrong password" }),
        )
        .await;
    let unknown = auth
        .post(
            "/login",
            json!({ "email": "nobody@example.com", "password": "right password" }),
        )
        .await;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong, unknown);
}

#[tokio::test]
async fn missing_malformed_forged_and_expired_tokens_are_401() {
    let auth = spawn_auth().await;
    let user_id = auth.register("tokens@example.com", "correct horse").await;
    let forged = pixelflow_auth::TokenKeys::new(
        b"some-other-secret-key",
        std::time::Duration::from_secs(60),
    )
    .issue_at(user_id.parse().expect("uuid"), chrono::Utc::now())
    .expect("token")
    .0;
    let expired =
        pixelflow_auth::TokenKeys::new(SECRET.as_bytes(), std::time::Duration::from_secs(60))
            .issue_at(
                user_id.parse().expect("uuid"),
                chrono::Utc::now() - chrono::Duration::hours(1),
            )
            .expect("token")
            .0;
    let cases = [
        (None, "missing Authorization header"),
        (
            Some("Token abc".to_string()),
            "Authorization header must be 'Bearer <token>'",
        ),
        (Some("Bearer not.a.jwt".to_string()), "token invalid"),
        (Some(format!("Bearer {forged}")), "token invalid"),
        (Some(format!("Bearer {expired}")), "token expired"),
    ];
    for (header, message) in cases {
        let (status, body) = auth.validate(header.as_deref()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{header:?}");
        assert_eq!(body["error"], message, "{header:?}");
    }
    let metrics = auth.metrics().await;
    assert_eq!(
        metrics.value_or_zero("auth_token_validations_total", &[("status", "invalid")]),
        5.0
    );
    assert_eq!(
        metrics.value_or_zero("auth_token_validations_total", &[("status", "valid")]),
        0.0
    );
}

#[tokio::test]
async fn business_counters_start_at_zero_and_move_by_exactly_one_per_event() {
    let auth = spawn_auth().await;
    let before = auth.metrics().await;
    for (family, labels) in [
        ("auth_registrations_total", vec![]),
        ("auth_logins_total", vec![("status", "success")]),
        ("auth_logins_total", vec![("status", "failure")]),
        ("auth_token_validations_total", vec![("status", "valid")]),
        ("auth_token_validations_total", vec![("status", "invalid")]),
    ] {
        assert_eq!(
            before.value(family, &labels),
            Some(0.0),
            "{family} {labels:?} at start-up"
        );
    }

    auth.register("count@example.com", "correct horse").await;
    auth.post(
        "/login",
        json!({ "email": "count@example.com", "password": "nope nope" }),
    )
    .await;
    let (_, body) = auth
        .post(
            "/login",
            json!({ "email": "count@example.com", "password": "correct horse" }),
        )
        .await;
    let token = body["token"].as_str().expect("token").to_string();
    auth.validate(Some(&format!("Bearer {token}"))).await;

    let after = auth.metrics().await;
    assert_eq!(after.value_or_zero("auth_registrations_total", &[]), 1.0);
    assert_eq!(
        after.value_or_zero("auth_logins_total", &[("status", "success")]),
        1.0
    );
    assert_eq!(
        after.value_or_zero("auth_logins_total", &[("status", "failure")]),
        1.0
    );
    assert_eq!(
        after.value_or_zero("auth_token_validations_total", &[("status", "valid")]),
        1.0
    );
    assert_eq!(
        after.value_or_zero(
            "auth_requests_total",
            &[
                ("method", "POST"),
                ("endpoint", "/login"),
                ("status", "401")
            ]
        ),
        1.0
    );
    assert_eq!(
        after.value_or_zero(
            "auth_request_duration_seconds_count",
            &[("method", "POST"), ("endpoint", "/login")]
        ),
        2.0
    );
    assert_eq!(
        after.value_or_zero(
            "auth_db_query_duration_seconds_count",
            &[("query_type", "insert_user")]
        ),
        1.0
    );
    assert_eq!(
        after.value_or_zero(
            "auth_db_query_duration_seconds_count",
            &[("query_type", "select_user_by_email")]
        ),
        2.0
    );
}

#[tokio::test]
async fn the_exposition_meets_every_expectation_of_the_embedded_spec() {
    let auth = spawn_auth().await;
    auth.register("types@example.com", "correct horse").await;
    let metrics = auth.metrics().await;
    // The families, types, HELP, labels and documented label values of
    // verify.toml, the file `pixelflowctl verify` checks the stack with.
    pixelflow_testkit::assert_meets_spec("auth", &metrics);
    pixelflow_testkit::assert_promtool_clean(&metrics.text).await;
    assert!(
        !metrics.text.contains("types@example.com"),
        "an email leaked into metrics"
    );
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let auth = spawn_auth().await;
    let health = auth
        .http
        .get(format!("{}/health", auth.base))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), StatusCode::OK);
    let ready = auth
        .http
        .get(format!("{}/ready", auth.base))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(body["checks"][0]["name"], "database");
    assert_eq!(body["checks"][0]["ok"], true);
}
