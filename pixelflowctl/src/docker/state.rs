//! A container's state as the engine reports it, parsed once at the edge
//! into enums: the rest of pixelflowctl decides on these, never on the
//! engine's strings.

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, HealthStatusEnum};

/// Where a container is in its life, as `docker ps` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    /// The engine's word for it (the list API's `State`).
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "created" => Self::Created,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "restarting" => Self::Restarting,
            "removing" => Self::Removing,
            "exited" => Self::Exited,
            "dead" => Self::Dead,
            _ => return None,
        })
    }

    fn from_inspect(status: ContainerStateStatusEnum) -> Option<Self> {
        Some(match status {
            ContainerStateStatusEnum::CREATED => Self::Created,
            ContainerStateStatusEnum::RUNNING => Self::Running,
            ContainerStateStatusEnum::PAUSED => Self::Paused,
            ContainerStateStatusEnum::RESTARTING => Self::Restarting,
            ContainerStateStatusEnum::REMOVING => Self::Removing,
            ContainerStateStatusEnum::EXITED => Self::Exited,
            ContainerStateStatusEnum::DEAD => Self::Dead,
            ContainerStateStatusEnum::EMPTY => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Removing => "removing",
            Self::Exited => "exited",
            Self::Dead => "dead",
        }
    }

    /// Not running and not about to: its health verdict, if any, is the
    /// last one from before it stopped, and says nothing now.
    pub fn is_stopped(self) -> bool {
        matches!(self, Self::Created | Self::Exited | Self::Dead)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The healthcheck's verdict; a container without a healthcheck has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    fn from_inspect(health: HealthStatusEnum) -> Option<Self> {
        match health {
            HealthStatusEnum::STARTING => Some(Self::Starting),
            HealthStatusEnum::HEALTHY => Some(Self::Healthy),
            HealthStatusEnum::UNHEALTHY => Some(Self::Unhealthy),
            HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What inspecting a container tells about its state and health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// `None` when the engine gave no status it names.
    pub status: Option<Status>,
    pub health: Option<Health>,
    /// The last health probe's exit code and output.
    pub probe: String,
    /// How often its restart policy restarted it.
    pub restarts: i64,
    /// Its last exit code, also while its restart policy restarts it.
    pub last_exit: Option<i64>,
}

impl Observed {
    pub fn from_inspect(info: ContainerInspectResponse) -> Self {
        let state = info.state.unwrap_or_default();
        let probe = state
            .health
            .as_ref()
            .and_then(|h| h.log.as_ref())
            .and_then(|log| log.last())
            .map(|l| {
                format!(
                    "exit {}: {}",
                    l.exit_code.unwrap_or_default(),
                    l.output.as_deref().unwrap_or_default().trim()
                )
            })
            .unwrap_or_default();
        Self {
            status: state.status.and_then(Status::from_inspect),
            health: state
                .health
                .and_then(|h| h.status)
                .and_then(Health::from_inspect),
            probe,
            restarts: info.restart_count.unwrap_or_default(),
            last_exit: state.exit_code,
        }
    }

    pub fn is_running(&self) -> bool {
        self.status == Some(Status::Running)
    }

    /// The exit code, once it exited for good (not while restarting).
    pub fn exit(&self) -> Option<i64> {
        matches!(self.status, Some(Status::Exited | Status::Dead))
            .then_some(self.last_exit)
            .flatten()
    }

    /// The health that means something now: none for a stopped container.
    pub fn current_health(&self) -> Option<Health> {
        match self.status {
            Some(status) if status.is_stopped() => None,
            _ => self.health,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerState, Health as EngineHealth};

    fn inspected(status: ContainerStateStatusEnum, health: Option<HealthStatusEnum>) -> Observed {
        Observed::from_inspect(ContainerInspectResponse {
            state: Some(ContainerState {
                status: Some(status),
                exit_code: Some(3),
                health: health.map(|h| EngineHealth {
                    status: Some(h),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            restart_count: Some(1),
            ..Default::default()
        })
    }

    #[test]
    fn every_word_of_the_list_api_parses_and_prints_back() {
        for word in [
            "created",
            "running",
            "paused",
            "restarting",
            "removing",
            "exited",
            "dead",
        ] {
            assert_eq!(Status::parse(word).map(Status::as_str), Some(word));
        }
        assert_eq!(Status::parse("sleeping"), None);
    }

    #[test]
    fn an_exit_code_counts_only_once_the_container_exited() {
        let exited = inspected(ContainerStateStatusEnum::EXITED, None);
        assert_eq!(exited.exit(), Some(3));
        let restarting = inspected(ContainerStateStatusEnum::RESTARTING, None);
        assert_eq!((restarting.exit(), restarting.last_exit), (None, Some(3)));
    }

    #[test]
    fn a_stopped_container_has_no_current_health() {
        let stopped = inspected(
            ContainerStateStatusEnum::EXITED,
            Some(HealthStatusEnum::UNHEALTHY),
        );
        assert_eq!(
            (stopped.health, stopped.current_health()),
            (Some(Health::Unhealthy), None)
        );
        let running = inspected(
            ContainerStateStatusEnum::RUNNING,
            Some(HealthStatusEnum::HEALTHY),
        );
        assert_eq!(running.current_health(), Some(Health::Healthy));
        let unchecked = inspected(
            ContainerStateStatusEnum::RUNNING,
            Some(HealthStatusEnum::NONE),
        );
        assert_eq!(unchecked.health, None);
    }
}
