//! What the dev loop tells: one line per event on stdout, or with
//! `--output json` one JSON object per line, logs included, so the stream
//! can be read by a program as it goes.

use serde::Serialize;

use crate::printer::{Output, Printer};

/// Seconds, to the millisecond.
fn secs(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Now, in unix seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// The time of each phase of one reload, as far as it got.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Phases {
    pub build_s: f64,
    pub package_s: f64,
    pub stop_s: f64,
    pub start_s: f64,
    pub ready_s: f64,
}

impl Phases {
    pub fn set(&mut self, phase: fn(&mut Phases) -> &mut f64, took: std::time::Duration) {
        *phase(self) = secs(took);
    }

    fn text(&self) -> String {
        format!(
            "build {:.1}s, package {:.1}s, stop {:.1}s, start {:.1}s, ready {:.1}s",
            self.build_s, self.package_s, self.stop_s, self.start_s, self.ready_s
        )
    }
}

/// `verify --no-flow` of one reloaded service.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub passed: usize,
    pub failed: usize,
    /// The failed checks, as `check: actual`.
    pub failures: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Where the loop builds, and why there.
    Builder { how: String },
    /// The stack is up and the loop watches.
    Watching { services: Vec<String>, seconds: f64 },
    /// A service runs its new build, ready, with verify's verdict.
    Reloaded {
        service: String,
        trigger: Vec<String>,
        #[serde(flatten)]
        phases: Phases,
        seconds: f64,
        /// When the new build answered `/ready` (unix seconds): with an
        /// edit's modification time, edit to serving.
        ready_at: f64,
        verify: Verified,
    },
    /// The build failed: the containers keep serving the last good one.
    BuildFailed {
        services: Vec<String>,
        trigger: Vec<String>,
        output: String,
    },
    /// The new build does not run: it exited, crashed or never became
    /// ready. The loop goes on.
    NotReady {
        service: String,
        trigger: Vec<String>,
        #[serde(flatten)]
        phases: Phases,
        error: String,
    },
    /// A component re-read its configuration (Prometheus, Grafana), or
    /// the stack was brought in line with an edited compose file.
    Reconfigured {
        component: String,
        trigger: Vec<String>,
        outcome: String,
        ok: bool,
    },
    /// A line one of the watched services wrote.
    Log { service: String, line: String },
    /// The loop stopped; the stack is left running unless taken down.
    Stopped { down: bool },
}

impl Event {
    /// Prints the event as `printer`'s output asks.
    pub fn show(&self, printer: &Printer) {
        if printer.output == Output::Json {
            if let Ok(line) = serde_json::to_string(self) {
                printer.out(line);
            }
            return;
        }
        printer.out(self.text());
    }

    fn text(&self) -> String {
        let trigger = |t: &[String]| match t {
            [] => String::new(),
            [one] => format!(" ({one})"),
            [first, rest @ ..] => format!(" ({first} and {} more)", rest.len()),
        };
        match self {
            Event::Builder { how } => format!("dev: building {how}"),
            Event::Watching { services, seconds } => format!(
                "dev: up in {seconds:.1}s; watching {} (Ctrl-C stops watching and leaves the stack running)",
                services.join(", ")
            ),
            Event::Reloaded {
                service,
                trigger: t,
                phases,
                seconds,
                verify,
                ..
            } => {
                let verdict = if verify.failed == 0 {
                    format!("verify --no-flow: {} passed", verify.passed)
                } else {
                    format!(
                        "verify --no-flow: FAILED {} ({})",
                        verify.failed,
                        verify.failures.join("; ")
                    )
                };
                format!(
                    "{service}: reloaded{} in {seconds:.1}s: {}; {verdict}",
                    trigger(t),
                    phases.text()
                )
            }
            Event::BuildFailed {
                services,
                trigger: t,
                output,
            } => format!(
                "{}: build failed{}; still serving the last good build\n{output}",
                services.join(", "),
                trigger(t)
            ),
            Event::NotReady {
                service,
                trigger: t,
                phases,
                error,
            } => format!(
                "{service}: the new build does not run{} ({}): {error}\n{service}: stopped until the next save; fix it and save again",
                trigger(t),
                phases.text()
            ),
            Event::Reconfigured {
                component,
                trigger: t,
                outcome,
                ..
            } => format!("{component}: {outcome}{}", trigger(t)),
            Event::Log { service, line } => format!("{service} | {line}"),
            Event::Stopped { down: true } => "dev: stopped watching; the stack is down".into(),
            Event::Stopped { down: false } => {
                "dev: stopped watching; the stack is still running (pixelflowctl down takes it down)".into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_reads_as_one_line_with_its_phases_and_verdict() {
        let event = Event::Reloaded {
            service: "api".into(),
            trigger: vec!["services/api/src/main.rs".into()],
            phases: Phases {
                build_s: 1.23,
                package_s: 0.1,
                stop_s: 0.3,
                start_s: 0.1,
                ready_s: 0.6,
            },
            seconds: 2.33,
            ready_at: 1_796_000_000.5,
            verify: Verified {
                passed: 27,
                failed: 0,
                failures: Vec::new(),
            },
        };
        assert_eq!(
            event.text(),
            "api: reloaded (services/api/src/main.rs) in 2.3s: build 1.2s, package 0.1s, stop 0.3s, start 0.1s, ready 0.6s; verify --no-flow: 27 passed"
        );
        let json = serde_json::to_value(&event).expect("JSON");
        assert_eq!(json["event"], "reloaded");
        assert_eq!(json["build_s"], 1.23);
        assert_eq!(json["verify"]["passed"], 27);
    }
}
