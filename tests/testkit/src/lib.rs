//! Test support shared by the services' integration tests and the
//! end-to-end test. Real parts only: each test gets a fresh PostgreSQL
//! database and its own topic on a real Kafka-protocol broker.
//!
//! Where the servers are comes from the environment, with the addresses
//! `.ci/run` starts them on as defaults:
//! - `PIXELFLOW_TEST_DATABASE_URL` (default
//!   `postgres://postgres:postgres@127.0.0.1:55432/postgres`): a role allowed
//!   to create databases;
//! - `PIXELFLOW_TEST_KAFKA_BROKERS` (default `127.0.0.1:19092`).

mod broker;
mod client;
mod held;
mod images;
mod metrics;
mod otlp;
mod outage;
mod postgres;

use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};

pub use broker::Broker;
pub use client::{ApiClient, Task, TaskStatus, Uploaded};
pub use held::HeldStores;
pub use images::{jpeg, photo, photo_jpeg, photo_png, png, png_claiming, png_plain};
pub use metrics::{assert_meets_spec, assert_promtool_clean, scrape};
pub use otlp::{OtlpReceiver, RecordedSpan};
pub use outage::{broker_outage_loses_nothing, BrokerSwitch, DURING_OUTAGE};
pub use pixelflow_verify::Exposition;
pub use postgres::PrivatePostgres;

/// Every database a test creates has this prefix; `tests/run` drops
/// leftovers from earlier runs by it.
pub const DATABASE_PREFIX: &str = "pf_test_";

pub fn admin_database_url() -> String {
    std::env::var("PIXELFLOW_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:55432/postgres".into())
}

pub fn kafka_brokers() -> String {
    std::env::var("PIXELFLOW_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

/// A name no other test uses: `prefix` and a random suffix.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Creates an empty database and returns its URL.
pub async fn fresh_database() -> String {
    let admin = admin_database_url();
    let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!("cannot reach the test PostgreSQL at {admin} (set PIXELFLOW_TEST_DATABASE_URL): {e}")
    });
    let name = unique(DATABASE_PREFIX);
    conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    let (base, _) = admin
        .rsplit_once('/')
        .unwrap_or_else(|| panic!("{admin} has no database part"));
    format!("{base}/{name}")
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub async fn accepting(port: u16, what: &str) {
    eventually(
        &format!("{what} to accept connections on port {port}"),
        Duration::from_secs(30),
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
}

/// Polls `probe` until it returns `Some`, for at most `timeout`. For state
/// that lives in another process (a database row, a metric, a port) and so
/// cannot be awaited directly.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    loop {
        interval.tick().await;
        if let Some(value) = probe().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
    }
}

/// A user registered and logged in through auth at `auth_base`: the
/// `Authorization` header value and the user id.
pub async fn new_user(http: &reqwest::Client, auth_base: &str) -> (String, String) {
    let email = format!("{}@example.com", unique("user-"));
    let credentials = serde_json::json!({ "email": email, "password": "correct horse" });
    let post = |path: &str| {
        http.post(format!("{auth_base}{path}"))
            .json(&credentials)
            .send()
    };
    let registered = post("/register").await.expect("register");
    assert_eq!(registered.status(), 201, "register");
    let registered: serde_json::Value = registered.json().await.expect("register JSON");
    let login: serde_json::Value = post("/login")
        .await
        .expect("login")
        .json()
        .await
        .expect("login JSON");
    (
        format!("Bearer {}", login["token"].as_str().expect("token")),
        registered["user_id"].as_str().expect("user_id").to_string(),
    )
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
}

/// The workspace at `from` copied to `to`, without its build output
/// (`target`) or `.git`: a checkout of its own for a test that edits it.
pub fn copy_workspace(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        let (source, dest) = (entry.path(), to.join(&name));
        if source.is_dir() {
            copy_workspace(&source, &dest);
        } else {
            std::fs::copy(&source, &dest).expect("copy");
        }
    }
}

/// Every variable the compose file moves a host port with: a test stack
/// gives each a free port, so it runs beside a user's.
pub const PORT_VARIABLES: [&str; 11] = [
    "AUTH_PORT",
    "API_PORT",
    "WORKER_PORT",
    "PROMETHEUS_PORT",
    "ALERTMANAGER_PORT",
    "GRAFANA_PORT",
    "JAEGER_UI_PORT",
    "JAEGER_OTLP_GRPC_PORT",
    "JAEGER_OTLP_HTTP_PORT",
    "POSTGRES_PORT",
    "KAFKA_HOST_PORT",
];
