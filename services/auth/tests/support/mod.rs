//! Spawns auth in-process on port 0 against a fresh database.

#![allow(dead_code)] // each test file uses a different part of this module

use pixelflow_auth::{Application, Settings};
use pixelflow_common::settings::Env;

pub const SECRET: &str = "test-secret-0123456789-0123456789abcdef";

pub struct TestAuth {
    pub base: String,
    pub http: reqwest::Client,
    pub database_url: String,
}

pub async fn spawn_auth() -> TestAuth {
    let database_url = pixelflow_testkit::fresh_database().await;
    let env = Env::pairs(&[
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("DATABASE_URL", &database_url),
        ("JWT_SECRET", SECRET),
        ("DATABASE_MAX_CONNECTIONS", "3"),
    ]);
    let app = Application::build(Settings::from_env(&env).expect("settings"))
        .await
        .expect("auth builds");
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run(std::future::pending()));
    TestAuth {
        base,
        http: reqwest::Client::new(),
        database_url,
    }
}
