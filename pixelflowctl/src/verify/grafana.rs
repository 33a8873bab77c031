//! Grafana: its health, the provisioned Prometheus datasource's health, and
//! every dashboard of the project's `dashboards/` provisioned with its
//! panels. Each answer is judged by its status: 401 is an authentication
//! failure, 404 something not provisioned, 503 unhealthy.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::Value;

use super::dashboards::Dashboard;
use super::report::Check;

/// The datasource uid compose/grafana/provisioning gives Prometheus.
pub const DATASOURCE_UID: &str = "pixelflow-prometheus";

/// The datasource uid compose/grafana/provisioning gives Jaeger. Only its
/// provisioning is checked: its health is Jaeger's, which verify checks
/// itself (and which a stack may leave out).
pub const JAEGER_DATASOURCE_UID: &str = "pixelflow-jaeger";

/// Where Grafana is and how to log in.
#[derive(Debug, Clone)]
pub struct Grafana {
    pub url: String,
    pub user: String,
    pub password: crate::parse::Secret,
}

const COMPONENT: &str = super::Component::Grafana.name();

/// Grafana's health, its datasources, and, given the project's dashboards,
/// that each is provisioned with its panels.
pub async fn checks(
    http: &reqwest::Client,
    grafana: &Grafana,
    dashboards: Option<&Path>,
) -> Vec<Check> {
    let mut out = Vec::new();
    let health_url = format!("{}/api/health", grafana.url);
    let health = match http.get(&health_url).send().await {
        Err(e) => {
            return vec![Check::new(
                COMPONENT,
                "health",
                format!("an answer from {health_url}"),
                format!("not reachable: {e}"),
                false,
            )]
        }
        Ok(response) => response,
    };
    let status = health.status();
    let body: Value = health.json().await.unwrap_or(Value::Null);
    let healthy = status == StatusCode::OK && body["database"] == "ok";
    out.push(Check::new(
        COMPONENT,
        "health",
        "HTTP 200, database ok",
        format!("HTTP {}, database {}", status.as_u16(), body["database"]),
        healthy,
    ));
    if !healthy {
        return out;
    }

    let (status, body) = get(
        http,
        grafana,
        &format!("/api/datasources/uid/{DATASOURCE_UID}/health"),
    )
    .await;
    out.push(Check::new(
        COMPONENT,
        format!("datasource {DATASOURCE_UID} healthy"),
        "HTTP 200, status OK",
        describe(status, &body, grafana, "datasource"),
        status == Some(StatusCode::OK) && body["status"] == "OK",
    ));
    let (status, body) = get(
        http,
        grafana,
        &format!("/api/datasources/uid/{JAEGER_DATASOURCE_UID}"),
    )
    .await;
    out.push(Check::new(
        COMPONENT,
        format!("datasource {JAEGER_DATASOURCE_UID} provisioned"),
        "HTTP 200, type jaeger",
        if status == Some(StatusCode::OK) {
            format!("HTTP 200, type {}", body["type"])
        } else {
            describe(status, &body, grafana, "datasource")
        },
        status == Some(StatusCode::OK) && body["type"] == "jaeger",
    ));

    let Some(dashboards) = dashboards else {
        return out;
    };
    match super::dashboards::load(dashboards) {
        Err(e) => out.push(Check::new(
            COMPONENT,
            "dashboards provisioned",
            format!("the dashboards in {}", dashboards.display()),
            e,
            false,
        )),
        Ok(files) => {
            for Dashboard { uid, panels, file } in files {
                let (status, body) =
                    get(http, grafana, &format!("/api/dashboards/uid/{uid}")).await;
                let served = body["dashboard"]["panels"].as_array().map(Vec::len);
                let ok = status == Some(StatusCode::OK) && served == Some(panels);
                let actual = if status == Some(StatusCode::OK) {
                    format!("{} panels", served.unwrap_or(0))
                } else {
                    describe(status, &body, grafana, "dashboard")
                };
                out.push(Check::new(
                    COMPONENT,
                    format!("dashboard {uid} provisioned ({file})"),
                    format!("{panels} panels"),
                    actual,
                    ok,
                ));
            }
        }
    }
    out
}

/// A GET with the credentials: the status (none when there was no answer)
/// and the JSON body (or the error as a string).
async fn get(http: &reqwest::Client, grafana: &Grafana, path: &str) -> (Option<StatusCode>, Value) {
    match http
        .get(format!("{}{path}", grafana.url))
        .basic_auth(&grafana.user, Some(grafana.password.expose()))
        .send()
        .await
    {
        Err(e) => (None, Value::String(e.to_string())),
        Ok(response) => {
            let status = response.status();
            (Some(status), response.json().await.unwrap_or(Value::Null))
        }
    }
}

/// What an answer says, for the report.
fn describe(status: Option<StatusCode>, body: &Value, grafana: &Grafana, what: &str) -> String {
    let message = body["message"].as_str().unwrap_or_default();
    match status {
        None => format!("no answer: {}", body.as_str().unwrap_or_default()),
        Some(StatusCode::UNAUTHORIZED) => format!(
            "authentication failed as {:?} (HTTP 401): set --grafana-user/--grafana-password or GRAFANA_USER/GRAFANA_PASSWORD",
            grafana.user
        ),
        Some(StatusCode::NOT_FOUND) => format!("{what} not provisioned (HTTP 404)"),
        Some(status) if status.is_success() => {
            format!("HTTP {}: {}", status.as_u16(), body["status"])
        }
        Some(status) => format!("HTTP {}: {message}", status.as_u16()),
    }
}
