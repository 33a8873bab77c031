//! The settings of tracing-opentelemetry's layer that the traced subscriber
//! changes from the library's defaults, and `PIXELFLOW_TRACING_DEFAULTS`,
//! which puts any of them back. It exists to measure what each change
//! saves (`tests/bench-tracing` runs a pair per lever): leave it unset.

use std::fmt;

/// The variable: a comma-separated list of [`Defaults::NAMES`], or `all`.
pub const VARIABLE: &str = "PIXELFLOW_TRACING_DEFAULTS";

/// Which of the library's defaults to restore; all `false` is the tuned
/// subscriber the services run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Defaults {
    /// `with_location(true)`: source file, line and module on every span.
    pub location: bool,
    /// `with_threads(true)`: thread name and id on every span.
    pub threads: bool,
    /// `with_target(true)`: the span's target as an attribute.
    pub target: bool,
    /// `with_tracked_inactivity(true)`: busy and idle time, a clock read at
    /// every enter and exit (every poll of an async span).
    pub inactivity: bool,
    /// `with_context_activation(true)`: the span made the current
    /// OpenTelemetry context at every enter, undone at every exit.
    pub context: bool,
    /// Every log line inside a span copied into it as a span event.
    pub events: bool,
    /// Libraries' spans traced too (at `info`), not only our crates'.
    pub library: bool,
}

impl Defaults {
    pub const NAMES: [&'static str; 7] = [
        "location",
        "threads",
        "target",
        "inactivity",
        "context",
        "events",
        "library",
    ];

    /// The library's defaults, everything restored.
    pub const ALL: Defaults = Defaults {
        location: true,
        threads: true,
        target: true,
        inactivity: true,
        context: true,
        events: true,
        library: true,
    };

    /// `location,threads`, `all` or empty.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut defaults = Defaults::default();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let flag = match name {
                "all" => {
                    defaults = Defaults::ALL;
                    continue;
                }
                "location" => &mut defaults.location,
                "threads" => &mut defaults.threads,
                "target" => &mut defaults.target,
                "inactivity" => &mut defaults.inactivity,
                "context" => &mut defaults.context,
                "events" => &mut defaults.events,
                "library" => &mut defaults.library,
                other => {
                    return Err(format!(
                        "{VARIABLE}: unknown {other:?}; expected all or some of {}",
                        Defaults::NAMES.join(", ")
                    ))
                }
            };
            *flag = true;
        }
        Ok(defaults)
    }

    /// From the process's environment, as the SDK reads its `OTEL_BSP_*`.
    pub fn from_process_env() -> Result<Self, String> {
        std::env::var(VARIABLE).map_or(Ok(Defaults::default()), |list| Defaults::parse(&list))
    }

    /// Whether the layer must hear of enters and exits: only what these
    /// two keep up needs them.
    pub(super) fn enters_and_exits(&self) -> bool {
        self.inactivity || self.context
    }
}

impl fmt::Display for Defaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags = [
            self.location,
            self.threads,
            self.target,
            self.inactivity,
            self.context,
            self.events,
            self.library,
        ];
        let names: Vec<&str> = Defaults::NAMES
            .iter()
            .zip(flags)
            .filter_map(|(name, on)| on.then_some(*name))
            .collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_restores_exactly_the_levers_it_names() {
        let defaults = Defaults::parse("threads, events").expect("valid");
        assert_eq!(
            defaults,
            Defaults {
                threads: true,
                events: true,
                ..Defaults::default()
            }
        );
        assert_eq!(defaults.to_string(), "threads,events");
    }

    #[test]
    fn all_restores_every_default_and_empty_none() {
        assert_eq!(Defaults::parse("all"), Ok(Defaults::ALL));
        assert_eq!(Defaults::parse(""), Ok(Defaults::default()));
        assert_eq!(Defaults::ALL.to_string(), Defaults::NAMES.join(","));
    }

    #[test]
    fn an_unknown_lever_is_refused_with_the_names_that_exist() {
        let error = Defaults::parse("location,colour").expect_err("unknown");
        assert!(
            error.contains("\"colour\"") && error.contains("inactivity"),
            "{error}"
        );
    }
}
