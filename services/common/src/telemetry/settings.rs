//! Whether and where spans go, from the standard `OTEL_*` variables.

use crate::settings::{Env, SettingsError};

/// Whether and where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tracing {
    /// `OTEL_SDK_DISABLED=true`: no spans, no ids.
    Off,
    /// `OTEL_TRACES_EXPORTER=none`: ids in logs and headers, nothing exported.
    IdsOnly,
    /// Export over OTLP/HTTP to the endpoint the SDK reads from `OTEL_*`.
    Otlp { endpoint: String },
}

impl Tracing {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        if env.or("OTEL_SDK_DISABLED", false)? {
            return Ok(Tracing::Off);
        }
        match env.raw("OTEL_TRACES_EXPORTER").as_deref() {
            None | Some("otlp") => {}
            Some("none") => return Ok(Tracing::IdsOnly),
            Some(other) => {
                return Err(SettingsError::Invalid {
                    name: "OTEL_TRACES_EXPORTER",
                    value: other.into(),
                    reason: "expected otlp or none".into(),
                })
            }
        }
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(protocol) = env.raw(name) {
                if protocol != "http/protobuf" {
                    return Err(SettingsError::Invalid {
                        name,
                        value: protocol,
                        reason: "only http/protobuf is built in (the OTLP/HTTP port, 4318)".into(),
                    });
                }
                break;
            }
        }
        // Where the SDK will send spans, for the one report of a failure.
        let endpoint = env
            .raw("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| {
                env.raw("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
            })
            .unwrap_or_else(|| "http://localhost:4318/v1/traces".into());
        Ok(Tracing::Otlp { endpoint })
    }
}
