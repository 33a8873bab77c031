//! A drill's own user and its uploads: what must survive the fault.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

/// What api answered one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upload {
    /// 201: a task, by id.
    Accepted(String),
    /// Refused: the status, whether the body was a JSON error and whether
    /// it said when to come back (`Retry-After`).
    Refused {
        status: u16,
        json_error: bool,
        retry_after: bool,
    },
    /// No answer at all (refused connection, timeout).
    NoAnswer(String),
}

/// A user registered and logged in for the drill.
pub struct User {
    http: reqwest::Client,
    api: String,
    bearer: String,
}

impl User {
    /// Registers and logs in a fresh user (before the fault: a drill on
    /// auth or PostgreSQL would refuse both).
    pub async fn sign_up(http: &reqwest::Client, auth: &str, api: &str) -> anyhow::Result<Self> {
        let user = pixelflow_verify::flow::Credentials::fresh("drill");
        user.register(http, auth).await?;
        let token = user.login(http, auth).await?;
        Ok(Self {
            http: http.clone(),
            api: api.to_string(),
            bearer: format!("Bearer {token}"),
        })
    }

    /// Uploads `png`.
    pub async fn upload(&self, png: Vec<u8>) -> Upload {
        let sent = self
            .http
            .post(format!("{}/api/upload", self.api))
            .header("Authorization", &self.bearer)
            .header("Content-Type", "image/png")
            .timeout(Duration::from_secs(15))
            .body(png)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return Upload::NoAnswer(e.to_string()),
        };
        let status = response.status().as_u16();
        let retry_after = response.headers().contains_key("retry-after");
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match (status, body["id"].as_str()) {
            (201, Some(id)) => Upload::Accepted(id.to_string()),
            _ => Upload::Refused {
                status,
                json_error: body["error"].is_string(),
                retry_after,
            },
        }
    }

    /// The task's status (PENDING, PROCESSING, COMPLETED, FAILED).
    pub async fn status(&self, id: &str) -> anyhow::Result<String> {
        let task: Value = self
            .http
            .get(format!("{}/api/tasks/{id}", self.api))
            .header("Authorization", &self.bearer)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .with_context(|| format!("task {id}: no answer from api"))?
            .json()
            .await
            .with_context(|| format!("task {id}: not JSON"))?;
        task["status"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("task {id}: no status in {task}"))
    }
}
