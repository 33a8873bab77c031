//! Spawns auth and api in-process on port 0, sharing one fresh database (as
//! they may in production), with api publishing to a topic of its own.

#![allow(dead_code)] // each test file uses a different part of this module

use std::time::Duration;

use pixelflow_common::settings::Env;
use pixelflow_testkit::Exposition;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers as _;
use rdkafka::Message;
use reqwest::StatusCode;
use serde_json::Value;

pub const SECRET: &str = "test-secret-0123456789-0123456789abcdef";

/// Starts auth against `database_url`; returns its base URL.
pub async fn spawn_auth(database_url: &str) -> String {
    let settings = pixelflow_auth::Settings::from_env(&Env::pairs(&[
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("DATABASE_URL", database_url),
        ("JWT_SECRET", SECRET),
        ("DATABASE_MAX_CONNECTIONS", "3"),
    ]))
    .expect("auth settings");
    let app = pixelflow_auth::Application::build(settings)
        .await
        .expect("auth builds");
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run(std::future::pending()));
    base
}

pub struct TestApi {
    pub base: String,
    pub http: reqwest::Client,
    pub database_url: String,
    pub topic: String,
    pub brokers: String,
    /// auth's base URL (unreachable when the test chose so).
    pub auth: String,
}

/// One record of the topic.
#[derive(Debug)]
pub struct Record {
    pub key: String,
    pub payload: Value,
    /// The `traceparent` header, when the record has one.
    pub traceparent: Option<String>,
}

pub struct Options {
    pub brokers: String,
    pub auth_url: Option<String>,
    pub extra: Vec<(&'static str, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            brokers: pixelflow_testkit::kafka_brokers(),
            auth_url: None,
            extra: Vec::new(),
        }
    }
}

pub async fn spawn_api() -> TestApi {
    spawn_api_with(Options::default()).await
}

pub async fn spawn_api_with(options: Options) -> TestApi {
    let database_url = pixelflow_testkit::fresh_database().await;
    let auth_url = match options.auth_url {
        Some(url) => url,
        None => spawn_auth(&database_url).await,
    };
    let topic = pixelflow_testkit::unique("image-tasks-");
    let mut pairs: Vec<(&str, String)> = vec![
        ("HOST", "127.0.0.1".into()),
        ("PORT", "0".into()),
        ("DATABASE_URL", database_url.clone()),
        ("DATABASE_MAX_CONNECTIONS", "4".into()),
        ("KAFKA_BROKERS", options.brokers.clone()),
        ("KAFKA_TOPIC", topic.clone()),
        ("AUTH_SERVICE_URL", auth_url.clone()),
        ("OUTBOX_POLL_INTERVAL_MS", "200".into()),
    ];
    pairs.extend(options.extra);
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let settings = pixelflow_api::Settings::from_env(&Env::pairs(&borrowed)).expect("api settings");
    let app = pixelflow_api::Application::build(settings)
        .await
        .expect("api builds");
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run(std::future::pending()));
    TestApi {
        base,
        http: reqwest::Client::new(),
        database_url,
        topic,
        brokers: options.brokers,
        auth: auth_url,
    }
}

impl TestApi {
    /// Registers and logs in a fresh user through auth; returns the bearer
    /// header value and the user id.
    pub async fn user(&self) -> (String, String) {
        pixelflow_testkit::new_user(&self.http, &self.auth).await
    }

    /// The testkit's client of this api, as the user `bearer` names.
    pub fn client(&self, bearer: &str) -> pixelflow_testkit::ApiClient {
        pixelflow_testkit::ApiClient::with_bearer(&self.http, &self.base, bearer.to_string())
    }

    pub async fn upload(
        &self,
        bearer: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let (status, task, _) = self.upload_traced(bearer, content_type, body).await;
        (status, task)
    }

    /// [`TestApi::upload`], with the `traceparent` api answered.
    pub async fn upload_traced(
        &self,
        bearer: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value, Option<String>) {
        let uploaded = self.client(bearer).try_upload(content_type, body).await;
        (uploaded.status, uploaded.body, uploaded.traceparent)
    }

    pub async fn get(&self, bearer: &str, path: &str) -> (StatusCode, Value) {
        self.client(bearer).get(path).await
    }

    pub async fn metrics(&self) -> Exposition {
        pixelflow_testkit::scrape(&format!("{}/metrics", self.base)).await
    }

    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.database_url).await.expect("db")
    }

    /// Reads `count` events from this api's topic, from the beginning, as
    /// (key, payload) pairs.
    pub async fn consume(&self, count: usize) -> Vec<(String, Value)> {
        self.consume_records(count)
            .await
            .into_iter()
            .map(|record| (record.key, record.payload))
            .collect()
    }

    /// Reads `count` records from this api's topic, from the beginning.
    pub async fn consume_records(&self, count: usize) -> Vec<Record> {
        let consumer: StreamConsumer = pixelflow_common::kafka::client_config(&self.brokers)
            .set("group.id", pixelflow_testkit::unique("test-reader-"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        consumer.subscribe(&[&self.topic]).expect("subscribe");
        let mut events = Vec::new();
        while events.len() < count {
            let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
                .await
                .expect("an event within 30 s")
                .expect("receive");
            let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
            let payload = serde_json::from_slice(message.payload().unwrap_or_default())
                .expect("the event is JSON");
            let traceparent = message.headers().and_then(|headers| {
                headers
                    .iter()
                    .find(|h| h.key == pixelflow_common::telemetry::TRACEPARENT)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            });
            events.push(Record {
                key,
                payload,
                traceparent,
            });
        }
        events
    }
}
