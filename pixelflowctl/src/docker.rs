//! A thin, crate-private wrapper over bollard: the operations pixelflowctl
//! needs, each error naming the operation that failed.

use std::collections::HashMap;

use bollard::container::{
    Config, CreateContainerOptions, InspectContainerOptions, ListContainersOptions, LogOutput,
    LogsOptions, RemoveContainerOptions, RestartContainerOptions, StartContainerOptions,
};
use bollard::image::{BuildImageOptions, CreateImageOptions};
use bollard::models::{ContainerInspectResponse, ContainerSummary};
use bollard::network::CreateNetworkOptions;
use bollard::volume::{CreateVolumeOptions, RemoveVolumeOptions};
use bollard::Docker;
use futures::{Stream, StreamExt};

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("Docker is not reachable ({reason}). Start the engine (`dockerd &`, or `systemctl start docker`) or point DOCKER_HOST at it.")]
    Unreachable { reason: String },
    #[error("{operation}: {message}")]
    Failed { operation: String, message: String },
}

impl DockerError {
    fn failed(operation: impl Into<String>, e: bollard::errors::Error) -> Self {
        let message = match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code,
                message,
            } => {
                format!("{message} (HTTP {status_code})")
            }
            other => other.to_string(),
        };
        Self::Failed {
            operation: operation.into(),
            message,
        }
    }

    /// Docker's text when it refuses to bind a host port.
    pub fn port_in_use(&self) -> bool {
        matches!(self, Self::Failed { message, .. }
            if message.contains("port is already allocated") || message.contains("address already in use"))
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
}

pub type Result<T> = std::result::Result<T, DockerError>;

#[derive(Clone)]
pub struct Engine {
    docker: Docker,
}

impl Engine {
    /// Connects (DOCKER_HOST or the local socket) and agrees on an API
    /// version the engine speaks (Docker 20.10 speaks 1.41).
    pub async fn connect() -> Result<Self> {
        let unreachable = |e: bollard::errors::Error| DockerError::Unreachable {
            reason: e.to_string(),
        };
        let docker = Docker::connect_with_local_defaults().map_err(unreachable)?;
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        docker.ping().await.map_err(unreachable)?;
        Ok(Self { docker })
    }

    /// The image's id, or `None` when it is not present.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(i.id),
            Err(e) if DockerError::is_not_found(&e) => Ok(None),
            Err(e) => Err(DockerError::failed(format!("inspect image {image}"), e)),
        }
    }

    /// Pulls `image`, calling `progress` with each status line.
    pub async fn pull(&self, image: &str, mut progress: impl FnMut(String)) -> Result<()> {
        let options = CreateImageOptions {
            from_image: image,
            ..Default::default()
        };
        let mut stream = self.docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| DockerError::failed(format!("pull {image}"), e))?;
            let line = [
                info.id.unwrap_or_default(),
                info.status.unwrap_or_default(),
                info.progress.unwrap_or_default(),
            ]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
            progress(line);
        }
        Ok(())
    }

    /// Builds `tag` from a tar build context, calling `progress` with each
    /// build step.
    pub async fn build(
        &self,
        tag: &str,
        dockerfile: &str,
        args: HashMap<String, String>,
        context: Vec<u8>,
        mut progress: impl FnMut(String),
    ) -> Result<()> {
        let options = BuildImageOptions {
            dockerfile: dockerfile.to_string(),
            t: tag.to_string(),
            rm: true,
            buildargs: args,
            ..Default::default()
        };
        let mut stream = self.docker.build_image(options, None, Some(context.into()));
        let operation = format!("build {tag}");
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| DockerError::failed(operation.clone(), e))?;
            if let Some(error) = info.error {
                return Err(DockerError::Failed {
                    operation,
                    message: error,
                });
            }
            if let Some(line) = info
                .stream
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
            {
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

    pub async fn restart(&self, name: &str, timeout_secs: isize) -> Result<()> {
        self.docker
            .restart_container(name, Some(RestartContainerOptions { t: timeout_secs }))
            .await
            .map_err(|e| DockerError::failed(format!("restart container {name}"), e))
    }

    pub async fn inspect(&self, name: &str) -> Result<ContainerInspectResponse> {
        self.docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| DockerError::failed(format!("inspect container {name}"), e))
    }

    /// Removes a container, stopping it first; a missing one is fine.
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
