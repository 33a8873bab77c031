//! A thin, crate-private wrapper over bollard: the operations pixelflowctl
//! needs, each error naming the operation that failed.

pub mod state;

use std::collections::HashMap;

use bollard::container::{
    Config, CreateContainerOptions, InspectContainerOptions, ListContainersOptions, LogOutput,
    LogsOptions, RemoveContainerOptions, RestartContainerOptions, StartContainerOptions,
    StopContainerOptions,
};
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::image::{BuildImageOptions, CreateImageOptions};
use bollard::models::{ContainerInspectResponse, ContainerSummary};
use bollard::network::CreateNetworkOptions;
use bollard::volume::{CreateVolumeOptions, RemoveVolumeOptions};
use bollard::Docker;
use futures::{Stream, StreamExt};

/// What went wrong talking to the engine. The bollard error is kept, so
/// callers decide on its typed status (404, 409…) rather than on Docker's
/// English; the message shown is the engine's own text. bollard's error is
/// kept but not chained as the source: its text is already in the message,
/// and `{:#}` would print it twice.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine did not answer: at connection, or lost in the middle of
    /// `operation`.
    #[error("Docker is not reachable ({}{}). Start the engine (`dockerd &`, or `systemctl start docker`) or point DOCKER_HOST at it.", .operation.as_ref().map(|o| format!("{o}: ")).unwrap_or_default(), describe(.error))]
    Unreachable {
        operation: Option<String>,
        error: bollard::errors::Error,
    },
    #[error("{operation}: {}", describe(.error))]
    Failed {
        operation: String,
        error: bollard::errors::Error,
    },
    /// A build step failed: the engine's error and the build's last lines.
    #[error("{operation}: {message}\n--- last build output ---\n{}", .last_lines.join("\n"))]
    Build {
        operation: String,
        message: String,
        last_lines: Vec<String>,
    },
}

/// The engine's own text for an error: bollard's `Display` of a stream
/// error is only "Docker stream error", the reason sits in its field.
pub fn describe(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (HTTP {status_code})"),
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

impl DockerError {
    /// `operation` failed; a failure to reach the engine at all (its socket
    /// gone, the connection refused or cut) is [`DockerError::Unreachable`],
    /// whichever operation met it, so the exit code says so.
    fn failed(operation: impl Into<String>, error: bollard::errors::Error) -> Self {
        let operation = operation.into();
        if Self::is_transport(&error) {
            return Self::Unreachable {
                operation: Some(operation),
                error,
            };
        }
        Self::Failed { operation, error }
    }

    fn is_transport(e: &bollard::errors::Error) -> bool {
        use bollard::errors::Error;
        matches!(
            e,
            Error::IOError { .. }
                | Error::HyperResponseError { .. }
                | Error::HyperLegacyError { .. }
                | Error::SocketNotFoundError(_)
        )
    }

    /// The engine's HTTP status, when it answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Failed {
                error: bollard::errors::Error::DockerResponseServerError { status_code, .. },
                ..
            } => Some(*status_code),
            _ => None,
        }
    }

    fn is_not_found(e: &bollard::errors::Error) -> bool {
        matches!(
            e,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }
        )
    }

    /// 304: the container was already stopped (or started).
    fn is_not_modified(e: &bollard::errors::Error) -> bool {
        matches!(
            e,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 304,
                ..
            }
        )
    }
}

pub type Result<T> = std::result::Result<T, DockerError>;

/// An image present in the engine.
#[derive(Debug, Clone)]
pub struct Image {
    pub id: String,
    pub labels: HashMap<String, String>,
}

/// One event of a pull: a layer's status and, while downloading or
/// extracting, its bytes so far and in all.
#[derive(Debug, Clone, Default)]
pub struct PullEvent {
    pub layer: Option<String>,
    pub status: String,
    pub current: Option<u64>,
    pub total: Option<u64>,
}

/// What a build needs besides the tag.
pub struct BuildRequest {
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    pub args: HashMap<String, String>,
    pub labels: HashMap<String, String>,
    /// The build context as a tar archive.
    pub context: Vec<u8>,
}

#[derive(Clone)]
pub struct Engine {
    docker: Docker,
}

impl Engine {
    /// Connects (DOCKER_HOST or the local socket) and agrees on an API
    /// version the engine speaks (Docker 20.10 speaks 1.41).
    pub async fn connect() -> Result<Self> {
        let unreachable = |error| DockerError::Unreachable {
            operation: None,
            error,
        };
        let docker = Docker::connect_with_local_defaults().map_err(unreachable)?;
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        docker.ping().await.map_err(unreachable)?;
        Ok(Self { docker })
    }

    /// The image's id, or `None` when it is not present.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>> {
        Ok(self.image(image).await?.map(|i| i.id))
    }

    /// The image's id and labels, or `None` when it is not present.
    pub async fn image(&self, image: &str) -> Result<Option<Image>> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(Some(Image {
                id: i.id.unwrap_or_default(),
                labels: i.config.and_then(|c| c.labels).unwrap_or_default(),
            })),
            Err(e) if DockerError::is_not_found(&e) => Ok(None),
            Err(e) => Err(DockerError::failed(format!("inspect image {image}"), e)),
        }
    }

    /// Pulls `image`, calling `progress` with each event of the engine.
    pub async fn pull(&self, image: &str, mut progress: impl FnMut(PullEvent)) -> Result<()> {
        let options = CreateImageOptions {
            from_image: image,
            ..Default::default()
        };
        let mut stream = self.docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| DockerError::failed(format!("pull {image}"), e))?;
            let detail = info.progress_detail.unwrap_or_default();
            progress(PullEvent {
                layer: info.id,
                status: info.status.unwrap_or_default(),
                current: detail.current.and_then(|c| u64::try_from(c).ok()),
                total: detail.total.and_then(|t| u64::try_from(t).ok()),
            });
        }
        Ok(())
    }

    /// Builds `tag` from a tar build context with the engine's default
    /// builder, calling `progress` with each line of build output. A failed
    /// step's error carries the engine's text and the last lines of output.
    pub async fn build(
        &self,
        tag: &str,
        request: BuildRequest,
        mut progress: impl FnMut(&str),
    ) -> Result<()> {
        const KEPT: usize = 25;
        let options = BuildImageOptions {
            dockerfile: request.dockerfile,
            t: tag.to_string(),
            rm: true,
            forcerm: true,
            buildargs: request.args,
            labels: request.labels,
            ..Default::default()
        };
        let mut stream = self
            .docker
            .build_image(options, None, Some(request.context.into()));
        let operation = format!("build {tag}");
        let mut last_lines: std::collections::VecDeque<String> = Default::default();
        let fail =
            |message: String, last_lines: std::collections::VecDeque<String>| DockerError::Build {
                operation: operation.clone(),
                message: message.trim().to_string(),
                last_lines: last_lines.into(),
            };
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                // A failed step arrives as a stream error holding the
                // engine's text ("the --mount option requires BuildKit",
                // "The command ... returned a non-zero code: 101").
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(fail(error, last_lines))
                }
                Err(e) => return Err(DockerError::failed(operation.clone(), e)),
            };
            if let Some(error) = info.error {
                return Err(fail(error, last_lines));
            }
            for line in info
                .stream
                .iter()
                .flat_map(|s| s.lines())
                .map(str::trim_end)
                .filter(|l| !l.trim().is_empty())
            {
                if last_lines.len() == KEPT {
                    last_lines.pop_front();
                }
                last_lines.push_back(line.to_string());
                progress(line);
            }
        }
        Ok(())
    }

    pub async fn ensure_network(&self, name: &str, labels: HashMap<String, String>) -> Result<()> {
        match self.docker.inspect_network::<String>(name, None).await {
            Ok(_) => return Ok(()),
            Err(e) if DockerError::is_not_found(&e) => {}
            Err(e) => return Err(DockerError::failed(format!("inspect network {name}"), e)),
        }
        let options = CreateNetworkOptions {
            name: name.to_string(),
            driver: "bridge".to_string(),
            labels,
            ..Default::default()
        };
        self.docker
            .create_network(options)
            .await
            .map(|_| ())
            .map_err(|e| DockerError::failed(format!("create network {name}"), e))
    }

    pub async fn ensure_volume(&self, name: &str, labels: HashMap<String, String>) -> Result<()> {
        match self.docker.inspect_volume(name).await {
            Ok(_) => return Ok(()),
            Err(e) if DockerError::is_not_found(&e) => {}
            Err(e) => return Err(DockerError::failed(format!("inspect volume {name}"), e)),
        }
        let options = CreateVolumeOptions {
            name: name.to_string(),
            driver: "local".to_string(),
            labels,
            ..Default::default()
        };
        self.docker
            .create_volume(options)
            .await
            .map(|_| ())
            .map_err(|e| DockerError::failed(format!("create volume {name}"), e))
    }

    /// Containers (running or not) carrying every label in `labels`.
    pub async fn containers(&self, labels: &[String]) -> Result<Vec<ContainerSummary>> {
        let options = ListContainersOptions {
            all: true,
            filters: HashMap::from([("label".to_string(), labels.to_vec())]),
            ..Default::default()
        };
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(|e| DockerError::failed("list containers", e))
    }

    pub async fn create(&self, name: &str, config: Config<String>) -> Result<String> {
        let options = CreateContainerOptions {
            name: name.to_string(),
            platform: None,
        };
        self.docker
            .create_container(Some(options), config)
            .await
            .map(|r| r.id)
            .map_err(|e| DockerError::failed(format!("create container {name}"), e))
    }

    pub async fn start(&self, name: &str) -> Result<()> {
        self.docker
            .start_container(name, None::<StartContainerOptions<String>>)
            .await
            .map_err(|e| DockerError::failed(format!("start container {name}"), e))
    }

    /// Restarts with SIGTERM (the image's stop signal) and `grace` before
    /// SIGKILL, as `docker restart -t` does.
    pub async fn restart(&self, name: &str, grace: std::time::Duration) -> Result<()> {
        let t = isize::try_from(grace.as_secs()).unwrap_or(isize::MAX);
        self.docker
            .restart_container(name, Some(RestartContainerOptions { t }))
            .await
            .map_err(|e| DockerError::failed(format!("restart container {name}"), e))
    }

    /// Stops with SIGTERM and `grace` before SIGKILL; a stopped or missing
    /// container is fine.
    pub async fn stop(&self, name: &str, grace: std::time::Duration) -> Result<()> {
        let t = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
        match self
            .docker
            .stop_container(name, Some(StopContainerOptions { t }))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if DockerError::is_not_found(&e) || DockerError::is_not_modified(&e) => Ok(()),
            Err(e) => Err(DockerError::failed(format!("stop container {name}"), e)),
        }
    }

    /// Runs `argv` in the running container; returns its exit code and its
    /// output (stdout and stderr merged).
    pub async fn exec(&self, name: &str, argv: Vec<String>) -> Result<(i64, String)> {
        self.exec_in(name, argv, None, Vec::new()).await
    }

    /// [`Engine::exec`] in folder `workdir` with `env` (`KEY=value`) added.
    pub async fn exec_in(
        &self,
        name: &str,
        argv: Vec<String>,
        workdir: Option<String>,
        env: Vec<String>,
    ) -> Result<(i64, String)> {
        let operation = || format!("exec in container {name}");
        let created = self
            .docker
            .create_exec(
                name,
                CreateExecOptions {
                    cmd: Some(argv),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    working_dir: workdir,
                    env: (!env.is_empty()).then_some(env),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| DockerError::failed(operation(), e))?;
        let mut text = String::new();
        if let StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&created.id, None::<StartExecOptions>)
            .await
            .map_err(|e| DockerError::failed(operation(), e))?
        {
            while let Some(chunk) = output.next().await {
                let chunk = chunk.map_err(|e| DockerError::failed(operation(), e))?;
                text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
        }
        let inspected = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| DockerError::failed(operation(), e))?;
        Ok((inspected.exit_code.unwrap_or(-1), text))
    }

    pub async fn inspect(&self, name: &str) -> Result<ContainerInspectResponse> {
        self.docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| DockerError::failed(format!("inspect container {name}"), e))
    }

    /// Sends `signal` (`SIGHUP`, `SIGKILL`…) to the container's main process.
    pub async fn kill(&self, name: &str, signal: &str) -> Result<()> {
        self.docker
            .kill_container(
                name,
                Some(bollard::container::KillContainerOptions { signal }),
            )
            .await
            .map_err(|e| DockerError::failed(format!("send {signal} to container {name}"), e))
    }

    /// Freezes every process of the container (the engine's pause).
    pub async fn pause(&self, name: &str) -> Result<()> {
        self.docker
            .pause_container(name)
            .await
            .map_err(|e| DockerError::failed(format!("pause container {name}"), e))
    }

    /// Thaws a paused container; one that is not paused is fine.
    pub async fn unpause(&self, name: &str) -> Result<()> {
        match self.docker.unpause_container(name).await {
            Ok(()) => Ok(()),
            Err(e) if DockerError::is_not_found(&e) || e.to_string().contains("is not paused") => {
                Ok(())
            }
            Err(e) => Err(DockerError::failed(format!("unpause container {name}"), e)),
        }
    }

    /// Sets the container's restart policy, as `docker update --restart`.
    pub async fn set_restart_policy(
        &self,
        name: &str,
        policy: bollard::models::RestartPolicy,
    ) -> Result<()> {
        self.docker
            .update_container(
                name,
                bollard::container::UpdateContainerOptions::<String> {
                    restart_policy: Some(policy),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| DockerError::failed(format!("update the restart policy of {name}"), e))
    }

    /// Extracts the tar archive `tar` into the container's `/` (the
    /// container may be stopped): how `dev` puts a new binary in place.
    pub async fn upload(&self, name: &str, tar: Vec<u8>) -> Result<()> {
        let options = bollard::container::UploadToContainerOptions {
            path: "/".to_string(),
            ..Default::default()
        };
        self.docker
            .upload_to_container(name, Some(options), tar.into())
            .await
            .map_err(|e| DockerError::failed(format!("copy into container {name}"), e))
    }

    /// `path` in the container, as a tar archive.
    pub async fn download(&self, name: &str, path: &str) -> Result<Vec<u8>> {
        let options = bollard::container::DownloadFromContainerOptions {
            path: path.to_string(),
        };
        let mut stream = self.docker.download_from_container(name, Some(options));
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                DockerError::failed(format!("copy {path} out of container {name}"), e)
            })?;
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// The engine's operating system and architecture (`linux`, `x86_64`).
    pub async fn platform(&self) -> Result<(String, String)> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| DockerError::failed("read the engine's info", e))?;
        Ok((
            info.os_type.unwrap_or_default(),
            info.architecture.unwrap_or_default(),
        ))
    }

    /// The container's state and health, parsed.
    pub async fn observe(&self, name: &str) -> Result<state::Observed> {
        Ok(state::Observed::from_inspect(self.inspect(name).await?))
    }

    /// Removes a container (killing it if it still runs: stop it first to
    /// let it finish its work); a missing one is fine.
    pub async fn remove(&self, name: &str) -> Result<()> {
        let options = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if DockerError::is_not_found(&e) => Ok(()),
            Err(e) => Err(DockerError::failed(format!("remove container {name}"), e)),
        }
    }

    pub async fn remove_network(&self, name: &str) -> Result<()> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) if DockerError::is_not_found(&e) => Ok(()),
            Err(e) => Err(DockerError::failed(format!("remove network {name}"), e)),
        }
    }

    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        match self
            .docker
            .remove_volume(name, Some(RemoveVolumeOptions { force: false }))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if DockerError::is_not_found(&e) => Ok(()),
            Err(e) => Err(DockerError::failed(format!("remove volume {name}"), e)),
        }
    }

    /// Volumes and networks carrying `label` (name=value).
    pub async fn labelled_volumes(&self, label: &str) -> Result<Vec<String>> {
        let options = bollard::volume::ListVolumesOptions {
            filters: HashMap::from([("label".to_string(), vec![label.to_string()])]),
        };
        let list = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(|e| DockerError::failed("list volumes", e))?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect())
    }

    pub async fn labelled_networks(&self, label: &str) -> Result<Vec<String>> {
        let options = bollard::network::ListNetworksOptions {
            filters: HashMap::from([("label".to_string(), vec![label.to_string()])]),
        };
        let list = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(|e| DockerError::failed("list networks", e))?;
        Ok(list.into_iter().filter_map(|n| n.name).collect())
    }

    /// The container's output as lines, stdout and stderr merged.
    pub fn logs(
        &self,
        name: &str,
        follow: bool,
        tail: Option<usize>,
        since: i64,
    ) -> impl Stream<Item = Result<String>> + '_ {
        self.logs_with(name, follow, tail, since, false)
    }

    /// Like [`logs`](Self::logs); with `timestamps` each line starts with
    /// the engine's RFC 3339 time and a space.
    pub fn logs_with(
        &self,
        name: &str,
        follow: bool,
        tail: Option<usize>,
        since: i64,
        timestamps: bool,
    ) -> impl Stream<Item = Result<String>> + '_ {
        let options = LogsOptions::<String> {
            follow,
            stdout: true,
            stderr: true,
            timestamps,
            since,
            tail: tail.map_or_else(|| "all".to_string(), |n| n.to_string()),
            ..Default::default()
        };
        let operation = format!("logs of {name}");
        self.docker
            .logs(name, Some(options))
            .map(move |item| match item {
                Ok(
                    LogOutput::StdOut { message }
                    | LogOutput::StdErr { message }
                    | LogOutput::Console { message }
                    | LogOutput::StdIn { message },
                ) => Ok(String::from_utf8_lossy(&message)
                    .trim_end_matches(['\n', '\r'])
                    .to_string()),
                Err(e) => Err(DockerError::failed(operation.clone(), e)),
            })
    }
}
