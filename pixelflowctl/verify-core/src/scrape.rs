//! Scraping a service as Prometheus does: the HTTP answer (its status, its
//! `Content-Type`, how long it took), not only its text.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::exposition::Exposition;

/// How long Prometheus waits for a scrape unless its configuration says
/// otherwise (`scrape_timeout`).
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// One scrape's answer.
#[derive(Debug)]
pub struct Scrape {
    pub exposition: Exposition,
    /// The `Content-Type` header, if the answer had one.
    pub content_type: Option<String>,
    /// From sending the request to the end of the body.
    pub took: Duration,
    /// The replicas scraped and summed into this one (1 for a service that
    /// runs one).
    pub replicas: usize,
}

/// The scrapes of one moment, by service.
pub type Scrapes = BTreeMap<String, Scrape>;

/// A service that could not be scraped at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot scrape {service} at {url}: {error}")]
pub struct ScrapeError {
    pub service: String,
    pub url: String,
    pub error: String,
}

/// Scrapes `url`. The client's own timeout bounds the wait; a slow answer
/// that still comes is returned with its time, for the checks to judge.
pub async fn scrape(
    http: &reqwest::Client,
    service: &str,
    url: &str,
) -> Result<Scrape, ScrapeError> {
    let started = Instant::now();
    let failed = |error: String| ScrapeError {
        service: service.to_string(),
        url: url.to_string(),
        error,
    };
    let response = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| failed(e.to_string()))?;
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = response.text().await.map_err(|e| failed(e.to_string()))?;
    Ok(Scrape {
        exposition: Exposition::parse(&text),
        content_type,
        took: started.elapsed(),
        replicas: 1,
    })
}

/// The key of a service's further replica in a map of scrape URLs:
/// `worker/2`. [`scrape_all`] sums replicas into their service.
pub fn replica_key(service: &str, number: u32) -> String {
    if number <= 1 {
        service.to_string()
    } else {
        format!("{service}/{number}")
    }
}

/// The service a scrape URL's key names: `worker` for `worker/2`.
pub fn service_of(key: &str) -> &str {
    key.split_once('/').map_or(key, |(service, _)| service)
}

/// Scrapes every service at once; the first that fails stops the lot. A
/// service with several replicas (keys `worker`, `worker/2`…) is scraped at
/// each and comes back as one scrape, its series summed
/// ([`Exposition::summed`]): the slowest answer's time, the first
/// replica's `Content-Type` unless another's has a problem.
pub async fn scrape_all(
    http: &reqwest::Client,
    urls: &BTreeMap<String, String>,
) -> Result<Scrapes, ScrapeError> {
    let scrapes = futures::future::join_all(urls.iter().map(|(key, url)| async move {
        Ok::<_, ScrapeError>((key.clone(), scrape(http, key, url).await?))
    }))
    .await;
    let mut by_service: BTreeMap<String, Vec<Scrape>> = BTreeMap::new();
    for scrape in scrapes {
        let (key, scrape) = scrape?;
        by_service
            .entry(service_of(&key).to_string())
            .or_default()
            .push(scrape);
    }
    Ok(by_service
        .into_iter()
        .map(|(service, replicas)| (service, sum(replicas)))
        .collect())
}

fn sum(mut replicas: Vec<Scrape>) -> Scrape {
    if replicas.len() == 1 {
        return replicas.remove(0);
    }
    let took = replicas.iter().map(|r| r.took).max().unwrap_or_default();
    let content_type = replicas
        .iter()
        .find(|r| content_type_problem(r.content_type.as_deref()).is_some())
        .unwrap_or(&replicas[0])
        .content_type
        .clone();
    Scrape {
        replicas: replicas.len(),
        exposition: Exposition::summed(replicas.into_iter().map(|r| r.exposition).collect()),
        content_type,
        took,
    }
}

/// What Prometheus does with an answer's `Content-Type`: the text format
/// (`text/plain; version=0.0.4`) or OpenMetrics are read as such; anything
/// else is a scrape Prometheus 3 fails ("received unsupported
/// Content-Type") and Prometheus 2 reads by guessing.
pub fn content_type_problem(content_type: Option<&str>) -> Option<String> {
    let Some(value) = content_type else {
        return Some("no Content-Type header".into());
    };
    let mut parts = value.split(';').map(str::trim);
    let media = parts.next().unwrap_or_default().to_ascii_lowercase();
    let version = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("version"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string());
    match (media.as_str(), version.as_deref()) {
        ("text/plain", None | Some("0.0.4")) => None,
        ("application/openmetrics-text", _) => None,
        ("text/plain", Some(other)) => Some(format!(
            "{value}: text format version {other} is not one Prometheus reads (0.0.4)"
        )),
        _ => Some(format!(
            "{value}: not the Prometheus text format (text/plain; version=0.0.4)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_and_openmetrics_are_accepted_and_others_named() {
        assert_eq!(
            content_type_problem(Some("text/plain; version=0.0.4")),
            None
        );
        assert_eq!(
            content_type_problem(Some("text/plain; version=0.0.4; charset=utf-8")),
            None
        );
        assert_eq!(content_type_problem(Some("text/plain")), None);
        assert_eq!(
            content_type_problem(Some("application/openmetrics-text; version=1.0.0")),
            None
        );
        let json = content_type_problem(Some("application/json")).expect("refused");
        assert!(json.contains("application/json"), "{json}");
        assert!(content_type_problem(Some("text/plain; version=2.0")).is_some());
        assert!(content_type_problem(None).is_some());
    }
}
