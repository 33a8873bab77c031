//! The one source of truth for PixelFlow's observability contract.
//!
//! `verify.toml` (embedded as [`spec::EMBEDDED`]) names every family each
//! service serves, its type, labels and documented label values, and how the
//! flow moves each counter. This crate reads an exposition the way
//! Prometheus does ([`exposition`]), checks it against the spec
//! ([`checks`]), runs the flow and checks its deltas ([`flow`]) and reports
//! ([`report`]). `pixelflowctl verify` adds the Docker, Prometheus, dashboard
//! and Grafana parts; the services' tests and the end-to-end tests call the
//! same functions, so a metric is added or changed in one file.

pub mod checks;
pub mod exposition;
pub mod flow;
pub mod report;
pub mod scrape;
pub mod sense;
pub mod spec;

pub use exposition::Exposition;
pub use report::{Check, Outcome};
pub use scrape::{Scrape, ScrapeError, Scrapes};
pub use spec::Spec;

/// The embedded spec, parsed. It is checked by this crate's tests, so a
/// failure here is a build that skipped them.
pub fn embedded_spec() -> Spec {
    Spec::parse(spec::EMBEDDED).unwrap_or_else(|e| panic!("the embedded verify.toml: {e}"))
}
