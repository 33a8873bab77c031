//! Scraping a service's `/metrics` for a test, read by pixelflow-verify
//! exactly as `pixelflowctl verify` reads it, and checked against the
//! embedded spec.

use pixelflow_verify::{Exposition, Outcome};

/// Scrapes `url` and reads it; panics when the scrape fails or a line is
/// unreadable (prometheus-parse would skip it without a word, and every
/// later assertion about it would be wrong).
pub async fn scrape(url: &str) -> Exposition {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("cannot scrape {url}: {e}"));
    assert_eq!(response.status(), 200, "scrape of {url}");
    let text = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("cannot read {url}: {e}"));
    let exposition = Exposition::parse(&text);
    assert!(
        exposition.unreadable.is_empty(),
        "prometheus-parse cannot read these lines of {url}: {:?}",
        exposition.unreadable
    );
    exposition
}

/// Panics, naming each failed check, unless `exposition` meets what the
/// embedded spec (pixelflowctl/verify-core/verify.toml) says of `service`:
/// every family with its type, HELP, labels and documented label values.
pub fn assert_meets_spec(service: &str, exposition: &Exposition) {
    let spec = pixelflow_verify::embedded_spec();
    let service_spec = spec
        .services
        .get(service)
        .unwrap_or_else(|| panic!("verify.toml has no service {service}"));
    let failed: Vec<String> = pixelflow_verify::checks::run(service, service_spec, exposition)
        .into_iter()
        .filter(|c| c.outcome != Outcome::Pass)
        .map(|c| format!("{}: expected {}, saw {}", c.check, c.expected, c.actual))
        .collect();
    assert!(
        failed.is_empty(),
        "{service}'s /metrics does not meet verify.toml:\n{}",
        failed.join("\n")
    );
}

/// Runs `promtool check metrics` (Debian's `prometheus` package) over the
/// exposition and panics with what it found, if anything.
pub async fn assert_promtool_clean(text: &str) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool (apt-get install prometheus): {e}"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(text.as_bytes())
        .await
        .expect("write to promtool");
    drop(stdin);
    let output = child.wait_with_output().await.expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics: {}\n{said}",
        output.status
    );
}
