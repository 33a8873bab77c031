//! The one client of api the suites share: a user's bearer token, uploads,
//! and tasks read back with their status typed.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use crate::eventually;

/// Where a task is, as api answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaskStatus {
    Pending,
    Processing,
    Completed,
    Failed,
}

impl TaskStatus {
    /// COMPLETED or FAILED: nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// A task as api answers it: the status typed, the whole answer kept.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub status: TaskStatus,
    pub error: Option<String>,
    pub json: Value,
}

impl Task {
    fn from_json(json: Value) -> Option<Self> {
        Some(Self {
            id: json["id"].as_str()?.to_string(),
            status: TaskStatus::deserialize(&json["status"]).ok()?,
            error: json["error"].as_str().map(str::to_string),
            json,
        })
    }
}

/// What api answered an upload.
#[derive(Debug)]
pub struct Uploaded {
    pub status: StatusCode,
    pub body: Value,
    /// The `traceparent` header, when there was one.
    pub traceparent: Option<String>,
}

impl Uploaded {
    /// The new task's id; panics naming the answer when there is none.
    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("upload answered {} {}", self.status, self.body))
            .to_string()
    }
}

/// One user of api at `api` (a base URL).
#[derive(Clone)]
pub struct ApiClient {
    pub http: reqwest::Client,
    pub api: String,
    /// The `Authorization` header value.
    pub bearer: String,
}

impl ApiClient {
    /// A fresh user, registered and logged in through auth at `auth`.
    pub async fn register(http: &reqwest::Client, auth: &str, api: &str) -> Self {
        let (bearer, _) = crate::new_user(http, auth).await;
        Self::with_bearer(http, api, bearer)
    }

    pub fn with_bearer(http: &reqwest::Client, api: &str, bearer: String) -> Self {
        Self {
            http: http.clone(),
            api: api.trim_end_matches('/').to_string(),
            bearer,
        }
    }

    /// Uploads `body` as `content_type`, whatever api answers.
    pub async fn try_upload(&self, content_type: &str, body: Vec<u8>) -> Uploaded {
        let response = self
            .http
            .post(format!("{}/api/upload", self.api))
            .header("Authorization", &self.bearer)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("upload answered");
        let status = response.status();
        let traceparent = response
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Uploaded {
            status,
            body: response.json().await.unwrap_or(Value::Null),
            traceparent,
        }
    }

    /// Uploads a PNG, which api must accept (201); the task's id.
    pub async fn upload(&self, png: Vec<u8>) -> String {
        self.upload_traced(png).await.0
    }

    /// [`ApiClient::upload`], with the `traceparent` api answered.
    pub async fn upload_traced(&self, png: Vec<u8>) -> (String, String) {
        let uploaded = self.try_upload("image/png", png).await;
        assert_eq!(
            uploaded.status, 201,
            "upload answered {} {}",
            uploaded.status, uploaded.body
        );
        (uploaded.id(), uploaded.traceparent.unwrap_or_default())
    }

    /// `GET path` as this user: the status and the JSON body.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.api))
            .header("Authorization", &self.bearer)
            .send()
            .await
            .expect("api answered");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The task, or `None` when api does not answer it as one (down, or
    /// not this user's).
    pub async fn task(&self, id: &str) -> Option<Task> {
        let response = self
            .http
            .get(format!("{}/api/tasks/{id}", self.api))
            .header("Authorization", &self.bearer)
            .send()
            .await
            .ok()?;
        Task::from_json(response.json().await.ok()?)
    }

    pub async fn status(&self, id: &str) -> Option<TaskStatus> {
        self.task(id).await.map(|t| t.status)
    }

    /// Waits until the task is `status`.
    pub async fn wait_for(&self, id: &str, status: TaskStatus, within: Duration) {
        eventually(&format!("task {id} to be {status:?}"), within, || async {
            (self.status(id).await == Some(status)).then_some(())
        })
        .await;
    }

    /// Waits until the task is COMPLETED or FAILED; what it became.
    pub async fn settled(&self, id: &str, within: Duration) -> Task {
        eventually(&format!("task {id} to settle"), within, || async {
            self.task(id).await.filter(|t| t.status.is_final())
        })
        .await
    }
}
