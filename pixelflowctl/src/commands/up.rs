//! `pixelflowctl up`: images, network, volumes, then containers in
//! dependency order, each service starting as soon as what it depends on
//! is started or healthy (as its `depends_on` condition says), independent
//! services side by side. Containers whose config hash has not changed are
//! left alone; a changed one is stopped gracefully before it is replaced.

use std::time::{Duration, Instant};

use super::Context;
use crate::stack::{converge, status};
use crate::{images, ExitStatus};

/// Build or pull what is missing, then start the stack and wait until it is
/// healthy.
///
/// Creates the network, volumes and containers, starts each service once
/// what it depends on is started or healthy (as its `depends_on` condition
/// says) and waits until each is healthy. Unchanged containers are left
/// alone; changed ones are stopped gracefully (SIGTERM, their
/// stop_grace_period) and replaced. An image is rebuilt when what it is
/// built from changed.
///
/// Services with `profiles:` start only when one of their profiles is
/// listed in COMPOSE_PROFILES, or when named.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Services to bring up, with what they depend on (default: all).
    pub services: Vec<String>,
    /// Leave these services out (repeatable), e.g. `--without grafana
    /// --without jaeger` where their images cannot be had. Services that
    /// depend on one are left out too; the services run without Jaeger
    /// (their spans are dropped, reported once in each one's log).
    #[arg(long, value_name = "SERVICE")]
    pub without: Vec<String>,
    /// How long to wait for each service to become healthy (builds and
    /// pulls do not count).
    #[arg(long, default_value = "180s", value_parser = crate::parse::duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub source: images::SourceArgs,
    /// Build the services' images even when what they are built from has
    /// not changed (without it, an edited source is rebuilt and an
    /// unchanged one is not).
    #[arg(long)]
    pub build: bool,
    /// Recreate containers of this project even when another folder's
    /// compose file made them (another checkout with the same project
    /// name): without it, up refuses and names that folder.
    #[arg(long)]
    pub force: bool,
    /// Run N containers of SERVICE (repeatable), e.g. `--scale worker=3`;
    /// overrides the compose file's `deploy.replicas`. Replicas are
    /// numbered as compose numbers them; each worker replica is its own
    /// static consumer-group member (from its host name, `worker-2`), the
    /// first publishes the file's ports and the others ports the engine
    /// picks (see `ps`). Replicas beyond the topic's partitions stay idle.
    #[arg(long, value_name = "SERVICE=N", value_parser = crate::parse::scale)]
    pub scale: Vec<(String, u32)>,
}

/// `project` with the replicas `scale` asks for; an error names a service
/// the compose file does not have.
pub fn scaled(
    project: &crate::compose::Project,
    scale: &[(String, u32)],
) -> anyhow::Result<crate::compose::Project> {
    let mut project = project.clone();
    for (name, replicas) in scale {
        let Some(service) = project.services.get_mut(name) else {
            anyhow::bail!(
                "--scale {name}={replicas}: no service {name} in {}",
                project.file.display()
            );
        };
        service.deploy.get_or_insert_with(Default::default).replicas = Some(*replicas);
    }
    Ok(project)
}

/// What `up` says of replicas that the topic's partitions leave idle: a
/// consumer group hands each partition to one member.
pub fn idle_replicas(project: &crate::compose::Project, wanted: &[String]) -> Vec<String> {
    wanted
        .iter()
        .filter_map(|name| {
            let service = &project.services[name];
            let consumes = service.environment.contains_key("KAFKA_GROUP_ID")
                || service.environment.contains_key("KAFKA_GROUP_INSTANCE_ID");
            let partitions: u32 = service
                .environment
                .get("KAFKA_TOPIC_PARTITIONS")
                .and_then(|p| p.parse().ok())
                .unwrap_or(3);
            let replicas = service.replicas();
            (consumes && replicas > partitions).then(|| {
                format!(
                    "{name}: {replicas} replicas, but the topic has {partitions} partitions (KAFKA_TOPIC_PARTITIONS): {} will stay idle. Raise KAFKA_TOPIC_PARTITIONS before the topic is first created (an existing topic keeps its count)",
                    replicas - partitions
                )
            })
        })
        .collect()
}

pub async fn run(cx: &Context<'_>, args: &Args) -> anyhow::Result<ExitStatus> {
    let (engine, printer) = (cx.engine, cx.printer);
    let project = &scaled(cx.project, &args.scale)?;
    let started = Instant::now();
    let wanted = converge::wanted(project, &args.services, &args.without, printer);
    for warning in idle_replicas(project, &wanted) {
        printer.status(format!("warning: {warning}"));
    }
    let options = args.source.options(project, args.build, printer);
    converge::converge(
        engine,
        project,
        &wanted,
        &options,
        args.timeout,
        args.force,
        printer,
    )
    .await?;
    printer.status(format!("up in {:.1}s", started.elapsed().as_secs_f64()));
    status::show(engine, project, &wanted, printer).await?;
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn project(text: &str) -> crate::compose::Project {
        crate::compose::Project::parse(Path::new("compose/docker-compose.yml"), text, &|_| None)
            .expect("parses")
    }

    const FILE: &str = "services:\n  worker:\n    image: w\n    environment: { KAFKA_GROUP_ID: g, KAFKA_TOPIC_PARTITIONS: '3' }\n  api:\n    image: a\n";

    #[test]
    fn replicas_beyond_the_partitions_are_said_to_stay_idle() {
        let four = scaled_with(4);
        let warnings = idle_replicas(&four, &["worker".into(), "api".into()]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("4 replicas") && warnings[0].contains("1 will stay idle"));
        let fits = scaled_with(3);
        assert!(idle_replicas(&fits, &["worker".into()]).is_empty());
        // A service that consumes nothing may run any number.
        let api = scaled(&project(FILE), &[("api".into(), 9)]).expect("scaled");
        assert!(idle_replicas(&api, &["api".into()]).is_empty());
    }

    fn scaled_with(replicas: u32) -> crate::compose::Project {
        scaled(&project(FILE), &[("worker".into(), replicas)]).expect("scaled")
    }

    #[test]
    fn scaling_a_service_the_file_lacks_is_refused_by_name() {
        let err = scaled(&project(FILE), &[("wroker".into(), 2)]).unwrap_err();
        assert!(err.to_string().contains("no service wroker"), "{err}");
    }
}
