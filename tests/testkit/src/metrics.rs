//! Reading a `/metrics` exposition the way `pixelflowctl verify` will: with
//! prometheus-parse.

use prometheus_parse::{Scrape, Value};

pub struct Metrics {
    pub text: String,
    scrape: Scrape,
}

impl Metrics {
    pub fn parse(text: String) -> Self {
        // prometheus-parse skips lines it cannot read without a word; a
        // skipped sample would make every later assertion about it wrong.
        for line in text.lines() {
            if let prometheus_parse::LineInfo::Ignored = prometheus_parse::LineInfo::parse(line) {
                if !line.starts_with('#') {
                    panic!("prometheus-parse cannot read this line: {line}");
                }
            }
        }
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .unwrap_or_else(|e| panic!("exposition does not parse: {e}\n{text}"));
        Self { text, scrape }
    }

    /// Scrapes `url`.
    pub async fn scrape(url: &str) -> Self {
        let response = reqwest::get(url)
            .await
            .unwrap_or_else(|e| panic!("cannot scrape {url}: {e}"));
        assert_eq!(response.status(), 200, "scrape of {url}");
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("cannot read {url}: {e}"));
        Self::parse(text)
    }

    /// The value of the sample `name` whose labels include `labels`, or
    /// `None` when there is none. Histogram `_count` and `_sum` work too.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .find_map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
                _ => None,
            })
    }

    /// Like [`get`](Self::get), with a missing sample read as 0: a labelled
    /// series appears on first use.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// The `# TYPE` of a family, read from the text.
    pub fn type_of(&self, family: &str) -> Option<&str> {
        let prefix = format!("# TYPE {family} ");
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
    }

    /// Whether a family has `# HELP`.
    pub fn has_help(&self, family: &str) -> bool {
        self.scrape.docs.contains_key(family)
    }
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
