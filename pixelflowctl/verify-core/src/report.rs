//! Check results and how they are shown: a table grouped by service, JSON,
//! or JUnit XML for CI.

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub service: String,
    pub check: String,
    pub expected: String,
    pub actual: String,
    pub outcome: Outcome,
    /// For flow deltas: whether the assertion was exact or a lower bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<bool>,
}

impl Check {
    pub fn new(
        service: &str,
        check: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
        pass: bool,
    ) -> Self {
        Self {
            service: service.into(),
            check: check.into(),
            expected: expected.into(),
            actual: actual.into(),
            outcome: if pass { Outcome::Pass } else { Outcome::Fail },
            exact: None,
        }
    }

    pub fn skip(service: &str, check: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            check: check.into(),
            expected: String::new(),
            actual: why.into(),
            outcome: Outcome::Skip,
            exact: None,
        }
    }
}

pub fn table(checks: &[Check]) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    table.set_header(["SERVICE", "CHECK", "EXPECTED", "ACTUAL", "RESULT"]);
    let mut sorted: Vec<&Check> = checks.iter().collect();
    sorted.sort_by(|a, b| a.service.cmp(&b.service));
    for c in sorted {
        let result = match (c.outcome, c.exact) {
            (Outcome::Pass, Some(false)) => "pass (at least)",
            (Outcome::Pass, _) => "pass",
            (Outcome::Fail, _) => "FAIL",
            (Outcome::Skip, _) => "skip",
        };
        table.add_row([
            c.service.as_str(),
            c.check.as_str(),
            c.expected.as_str(),
            c.actual.as_str(),
            result,
        ]);
    }
    let (pass, fail, skip) = counts(checks);
    format!("{table}\n{pass} passed, {fail} failed, {skip} skipped")
}

pub fn counts(checks: &[Check]) -> (usize, usize, usize) {
    let n = |o| checks.iter().filter(|c| c.outcome == o).count();
    (n(Outcome::Pass), n(Outcome::Fail), n(Outcome::Skip))
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: a test suite per service, a test case per check.
pub fn junit(checks: &[Check]) -> String {
    let mut services: Vec<&str> = checks.iter().map(|c| c.service.as_str()).collect();
    services.dedup();
    services.sort_unstable();
    services.dedup();
    let (_, fail, skip) = counts(checks);
    let mut out = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"pixelflowctl verify\" tests=\"{}\" failures=\"{fail}\" skipped=\"{skip}\">\n", checks.len());
    for service in services {
        let mine: Vec<&Check> = checks.iter().filter(|c| c.service == service).collect();
        let failures = mine.iter().filter(|c| c.outcome == Outcome::Fail).count();
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">\n",
            xml(service),
            mine.len()
        ));
        for c in mine {
            out.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\"",
                xml(service),
                xml(&c.check)
            ));
            match c.outcome {
                Outcome::Pass => out.push_str("/>\n"),
                Outcome::Fail => out.push_str(&format!(
                    ">\n      <failure message=\"expected {}, found {}\"/>\n    </testcase>\n",
                    xml(&c.expected),
                    xml(&c.actual)
                )),
                Outcome::Skip => out.push_str(&format!(
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                    xml(&c.actual)
                )),
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
