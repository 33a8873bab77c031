//! `pixelflowctl drill`: a fault on the running stack, through the Docker
//! API, and proof that the observability saw it: the alerts it must raise
//! reach their states in Prometheus and Alertmanager within their bounds,
//! no other alert fires, and once the fault is undone nothing uploaded is
//! lost or counted twice.
//!
//! A [`Plan`] first (where everything answers, the container to break, its
//! restart policy), then: a user and a baseline, the fault, a watch until
//! the alerts reach what was asked, the fault undone (always: on failure
//! and on Ctrl-C too), the recovery, the verdicts.

pub mod catalog;
pub mod timeline;
mod traffic;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use pixelflow_verify::{Check, Exposition};
use serde_json::Value;

use crate::compose::Project;
use crate::docker::Engine;
use crate::printer::{Output, Printer};
use crate::stack::{self, Published};
use crate::verify::CouldNotRun;
use crate::{health, ExitStatus};
use catalog::{Drill, Fault};
use timeline::{Bounds, Timeline, Until};
use traffic::{Upload, User};

/// What the command line asked.
pub struct Options {
    pub drill: &'static Drill,
    pub until: Until,
    /// The most the fault is held while waiting for the alerts.
    pub hold: Option<Duration>,
    /// The most the recovery (and with --until firing, the alerts'
    /// resolution) may take.
    pub recovery: Duration,
    pub junit: Option<PathBuf>,
}

/// Uploads accepted while the fault lasts, at most: each must end
/// COMPLETED (api refuses a user's 21st active task).
const UPLOADS_DURING: usize = 8;
/// How often the drill looks, and uploads.
const TICK: Duration = Duration::from_secs(2);
/// Uploads before a worker fault, at most, until one is seen in the
/// worker's hands.
const BUSY_TASKS: usize = 10;

/// Where the stack answers and what the drill breaks, decided before
/// anything is touched.
struct Plan {
    auth: String,
    api: String,
    worker: String,
    prometheus: String,
    alertmanager: String,
    container: String,
    restart_policy: Option<bollard::models::RestartPolicy>,
}

impl Plan {
    async fn new(engine: &Engine, project: &Project, drill: &Drill) -> anyhow::Result<Self> {
        let published = Published::find(project).await;
        let mut needed = vec!["auth", "api", "worker", "prometheus", "alertmanager"];
        if !needed.contains(&drill.service) {
            needed.push(drill.service);
        }
        let down: Vec<&str> = needed
            .into_iter()
            .filter(|s| published.not_running(s))
            .collect();
        if !down.is_empty() {
            return Err(CouldNotRun(format!(
                "{} not running in project {}: a drill needs the stack up (pixelflowctl up)",
                down.join(", "),
                project.name
            ))
            .into());
        }
        let url = |service: &str, port: u16| {
            published
                .port(project, service, port)
                .map(|p| format!("http://127.0.0.1:{p}"))
                .ok_or_else(|| CouldNotRun(format!("{service} publishes no port for {port}")))
        };
        let container = stack::container_of(engine, project, drill.service)
            .await?
            .name;
        let restart_policy = engine
            .inspect(&container)
            .await?
            .host_config
            .and_then(|h| h.restart_policy);
        Ok(Self {
            auth: url("auth", 50051)?,
            api: url("api", 8080)?,
            worker: url("worker", 8081)?,
            prometheus: url("prometheus", 9090)?,
            alertmanager: url("alertmanager", 9093)?,
            container,
            restart_policy,
        })
    }
}

/// The counters whose deltas the drill checks, read from the services.
#[derive(Debug, Clone, Copy)]
struct Counters {
    created: f64,
    success: f64,
    failure: f64,
    publish_errors: f64,
}

impl Counters {
    async fn read(http: &reqwest::Client, plan: &Plan) -> anyhow::Result<Self> {
        let api = exposition(http, "api", &plan.api).await?;
        let worker = exposition(http, "worker", &plan.worker).await?;
        Ok(Self {
            created: api.value_or_zero("api_tasks_created_total", &[]),
            publish_errors: api.value_or_zero("api_kafka_publish_errors_total", &[]),
            success: worker.value_or_zero("worker_tasks_processed_total", &[("status", "success")]),
            failure: worker.value_or_zero("worker_tasks_processed_total", &[("status", "failure")]),
        })
    }
}

/// `service`'s metrics now, scraped as verify scrapes them.
async fn exposition(
    http: &reqwest::Client,
    service: &str,
    base: &str,
) -> Result<Exposition, pixelflow_verify::ScrapeError> {
    pixelflow_verify::scrape::scrape(http, service, &format!("{base}/metrics"))
        .await
        .map(|scrape| scrape.exposition)
}

/// What the traffic met while the fault lasted.
#[derive(Debug, Default)]
struct Traffic {
    accepted: Vec<String>,
    refused: Vec<Upload>,
    /// api's `/ready` status codes seen while the fault lasted.
    ready_during: Vec<u16>,
}

pub async fn run(
    engine: &Engine,
    project: &Project,
    options: &Options,
    printer: &Printer,
) -> anyhow::Result<ExitStatus> {
    let drill = options.drill;
    let plan = Plan::new(engine, project, drill).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot make an HTTP client")?;
    let bounds = Bounds::default();
    let before = quiet(&http, &plan, drill, printer).await?;
    let mut timeline = Timeline::new(&before);
    let user = User::sign_up(&http, &plan.auth, &plan.api)
        .await
        .context("cannot make the drill's user")?;
    let baseline = Counters::read(&http, &plan)
        .await
        .map_err(|e| CouldNotRun(format!("{e:#}")))?;
    // The worker's log from here on tells which task it completed how often.
    let log_since = unix_now();
    let mut traffic = Traffic::default();
    if matches!(drill.fault, Fault::Kill | Fault::Pause) {
        printer.status(format!("{}: keeping the worker busy", drill.name));
        keep_worker_busy(&user, &mut traffic).await?;
    }

    printer.status(format!(
        "{}: {} {} (until {})",
        drill.name,
        match drill.fault {
            Fault::Stop => "stopping",
            Fault::Kill => "killing (SIGKILL)",
            Fault::Pause => "pausing",
        },
        drill.service,
        match options.until {
            Until::Pending => "its alerts are pending",
            Until::Firing => "its alerts fire and reach Alertmanager",
        }
    ));
    let fault_at = Instant::now();
    let injected = inject(engine, &plan, drill).await;
    let held = match &injected {
        Ok(()) => {
            timeline.note(
                Duration::ZERO,
                format!(
                    "fault: {} {} (the engine took {:.1}s)",
                    fault_word(drill.fault),
                    drill.service,
                    fault_at.elapsed().as_secs_f64()
                ),
            );
            if matches!(drill.fault, Fault::Kill | Fault::Pause) {
                timeline.note(fault_at.elapsed(), in_hand(&user, &traffic).await);
            }
            let hold = options
                .hold
                .unwrap_or_else(|| default_hold(drill, options.until, bounds));
            tokio::select! {
                () = watch_fault(&http, &plan, drill, options.until, hold, &user, &mut traffic, &mut timeline, fault_at, printer) => Held::Done,
                _ = tokio::signal::ctrl_c() => Held::Interrupted,
            }
        }
        Err(_) => Held::NotInjected,
    };
    // Whatever happened, the stack is put back.
    let restored = restore(engine, project, &plan, drill).await;
    timeline.note(
        fault_at.elapsed(),
        match &restored {
            Ok(()) => format!("restored: {} healthy", drill.service),
            Err(e) => format!("restore failed: {e:#}"),
        },
    );
    injected?;
    restored?;
    if let Held::Interrupted = held {
        printer.status(format!(
            "{}: interrupted; the stack is restored",
            drill.name
        ));
        report(drill, &timeline, &[interrupted()], options, printer)?;
        return Ok(ExitStatus::Failure);
    }

    printer.status(format!("{}: waiting for the recovery", drill.name));
    let recovered = recover(
        &http,
        &plan,
        drill,
        options,
        &user,
        &traffic,
        &mut timeline,
        fault_at,
    )
    .await;
    let after = Counters::read(&http, &plan).await?;
    let completions = completions(engine, project, log_since).await?;
    let mut checks = timeline::alert_checks(drill, &timeline, options.until, bounds);
    if recovered.interrupted {
        checks.push(interrupted());
    }
    checks.extend(outcome_checks(
        drill,
        &traffic,
        &recovered,
        &completions,
        baseline,
        after,
    ));
    report(drill, &timeline, &checks, options, printer)?;
    let (_, failed, _) = pixelflow_verify::report::counts(&checks);
    Ok(if failed == 0 {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// The check a drill cut short by Ctrl-C fails.
fn interrupted() -> Check {
    Check::new(
        "drill",
        "ran to its end",
        "not interrupted",
        "interrupted (Ctrl-C)",
        false,
    )
}

enum Held {
    Done,
    Interrupted,
    NotInjected,
}

fn fault_word(fault: Fault) -> &'static str {
    match fault {
        Fault::Stop => "stopped",
        Fault::Kill => "SIGKILL to",
        Fault::Pause => "paused",
    }
}

/// How long the fault is held at most: until pending, the pending bound;
/// until firing, the longest `for:` and Alertmanager's intake on top.
fn default_hold(drill: &Drill, until: Until, bounds: Bounds) -> Duration {
    let longest = drill
        .expects
        .iter()
        .map(|e| e.for_)
        .max()
        .unwrap_or_default();
    match until {
        Until::Pending => bounds.pending + Duration::from_secs(10),
        Until::Firing => bounds.pending + longest + bounds.firing_slack,
    }
}

/// Prometheus' and Alertmanager's alerts, as the timeline takes them.
async fn alerts(
    http: &reqwest::Client,
    plan: &Plan,
) -> Result<
    (
        std::collections::BTreeMap<timeline::Key, timeline::State>,
        std::collections::BTreeSet<timeline::Key>,
    ),
    String,
> {
    use crate::verify::prometheus::get_json;
    let prometheus = format!("{}/api/v1/alerts", plan.prometheus);
    let prometheus = timeline::prometheus_alerts(
        &get_json(http, &prometheus)
            .await
            .map_err(|e| format!("{prometheus}: {e}"))?,
    )?;
    let alertmanager = format!("{}/api/v2/alerts", plan.alertmanager);
    let alertmanager = timeline::alertmanager_alerts(
        &get_json(http, &alertmanager)
            .await
            .map_err(|e| format!("{alertmanager}: {e}"))?,
    )?;
    Ok((prometheus, alertmanager))
}

/// The alerts active now, once none of those the drill expects is: an
/// alert still pending or firing from an earlier fault could not be told
/// from the drill's own. Waits for them to resolve, at most 5 minutes.
async fn quiet(
    http: &reqwest::Client,
    plan: &Plan,
    drill: &Drill,
    printer: &Printer,
) -> anyhow::Result<std::collections::BTreeMap<timeline::Key, timeline::State>> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (active, _) = alerts(http, plan).await.map_err(CouldNotRun)?;
        let busy: Vec<String> = drill
            .expects
            .iter()
            .filter(|e| active.keys().any(|k| e.matches(&k.alert, k.job.as_deref())))
            .map(|e| e.name())
            .collect();
        if busy.is_empty() {
            return Ok(active);
        }
        if Instant::now() > deadline {
            return Err(CouldNotRun(format!(
                "{} still active after 5 minutes: the drill could not tell its own alerts from an earlier fault's",
                busy.join(", ")
            ))
            .into());
        }
        printer.status(format!(
            "{}: waiting for {} to resolve first (an earlier fault's)",
            drill.name,
            busy.join(", ")
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Uploads tasks for the worker, in batches, and returns as soon as one
/// is in its hands. A 7000×7000 image takes it about a tenth of a second,
/// so none may be caught, or the one caught may be done by the time the
/// fault comes: the timeline says which, and the drill goes on either way.
async fn keep_worker_busy(user: &User, traffic: &mut Traffic) -> anyhow::Result<()> {
    let image = pixelflow_verify::flow::png_plain(7000, 7000)?;
    while traffic.accepted.len() < BUSY_TASKS {
        let batch = traffic.accepted.len();
        for _ in 0..BUSY_TASKS / 2 {
            match user.upload(image.clone()).await {
                Upload::Accepted(id) => traffic.accepted.push(id),
                other => anyhow::bail!("an upload before the fault was not accepted: {other:?}"),
            }
        }
        // The oldest unfinished one is in hand or next.
        let deadline = Instant::now() + Duration::from_secs(20);
        'batch: while Instant::now() < deadline {
            let mut finished = true;
            for id in &traffic.accepted[batch..] {
                match user.status(id).await?.as_str() {
                    "PROCESSING" => return Ok(()),
                    "COMPLETED" | "FAILED" => {}
                    _ => {
                        finished = false;
                        break;
                    }
                }
            }
            if finished {
                break 'batch;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// The timeline's word on the task in hand when the fault came.
async fn in_hand(user: &User, traffic: &Traffic) -> String {
    for id in &traffic.accepted {
        if let Ok(status) = user.status(id).await {
            if status == "PROCESSING" {
                return format!("task {id} in the worker's hands");
            }
        }
    }
    "no task in the worker's hands any more (it had finished them)".to_string()
}

async fn inject(engine: &Engine, plan: &Plan, drill: &Drill) -> anyhow::Result<()> {
    match drill.fault {
        Fault::Stop => {
            engine
                .stop(&plan.container, Duration::from_secs(10))
                .await?
        }
        Fault::Kill => {
            engine
                .set_restart_policy(
                    &plan.container,
                    bollard::models::RestartPolicy {
                        name: Some(bollard::models::RestartPolicyNameEnum::NO),
                        maximum_retry_count: None,
                    },
                )
                .await?;
            engine.kill(&plan.container, "SIGKILL").await?;
        }
        Fault::Pause => engine.pause(&plan.container).await?,
    }
    Ok(())
}

/// Undoes the fault: the container running again, under its own restart
/// policy, and healthy.
async fn restore(
    engine: &Engine,
    project: &Project,
    plan: &Plan,
    drill: &Drill,
) -> anyhow::Result<()> {
    let service = &project.services[drill.service];
    match drill.fault {
        Fault::Pause => {
            engine.unpause(&plan.container).await?;
            // The engine's healthcheck timed out while it was frozen: it
            // says "unhealthy" until its next probe. Its own check, run
            // here, says when it serves again.
            let deadline = Instant::now() + Duration::from_secs(60);
            while !health::passes_own_check(engine, service, &plan.container).await {
                if Instant::now() > deadline {
                    anyhow::bail!(
                        "{} does not pass its healthcheck 60 s after it was thawed",
                        drill.service
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            return Ok(());
        }
        Fault::Stop | Fault::Kill => {
            if let Some(policy) = &plan.restart_policy {
                engine
                    .set_restart_policy(&plan.container, policy.clone())
                    .await?;
            }
            let running = engine.observe(&plan.container).await?.is_running();
            if !running {
                engine.start(&plan.container).await?;
            }
        }
    }
    health::wait(
        engine,
        drill.service,
        service,
        &plan.container,
        Duration::from_secs(180),
    )
    .await
}

/// While the fault lasts: the alerts, the first metric movement, api's
/// readiness and the uploads, every [`TICK`], until the expected alerts
/// reach `until` or `hold` runs out.
#[allow(clippy::too_many_arguments)]
async fn watch_fault(
    http: &reqwest::Client,
    plan: &Plan,
    drill: &Drill,
    until: Until,
    hold: Duration,
    user: &User,
    traffic: &mut Traffic,
    timeline: &mut Timeline,
    fault_at: Instant,
    printer: &Printer,
) {
    let mut moved = false;
    let mut uploads = 0;
    let mut ticks = 0_u32;
    let bar = printer.spinner(format!("{}: the fault is on", drill.name));
    let mut said = Duration::ZERO;
    let image = pixelflow_verify::flow::png(64, 48).unwrap_or_default();
    loop {
        let at = fault_at.elapsed();
        match alerts(http, plan).await {
            Ok((prometheus, alertmanager)) => timeline.observe(at, &prometheus, &alertmanager),
            Err(e) => timeline.note(at, format!("cannot read the alerts: {e}")),
        }
        if !moved {
            if let Ok(result) =
                crate::verify::prometheus::query(http, &plan.prometheus, drill.signal).await
            {
                if !result.is_empty() {
                    moved = true;
                    timeline.note(at, format!("first metric movement: {}", drill.signal));
                }
            }
        }
        if let Ok(r) = http.get(format!("{}/ready", plan.api)).send().await {
            traffic.ready_during.push(r.status().as_u16());
        }
        // Traffic: the refused keep coming (they cost nothing); the
        // accepted stop at UPLOADS_DURING.
        // Spread out where they are accepted (the UPLOADS_DURING last
        // about a minute: tasks keep coming while the alerts' windows
        // fill); every tick where they are refused.
        let due = drill.refuses_uploads || ticks.is_multiple_of(4);
        ticks += 1;
        if due && (uploads < UPLOADS_DURING || drill.refuses_uploads) {
            match user.upload(image.clone()).await {
                Upload::Accepted(id) => {
                    uploads += 1;
                    traffic.accepted.push(id);
                }
                refused => traffic.refused.push(refused),
            }
        }
        if timeline.reached(drill.expects, until) && traffic.refused.len() + uploads >= 3 {
            bar.finish_and_clear();
            return;
        }
        if at >= hold {
            timeline.note(at, format!("gave up waiting after {}s", hold.as_secs()));
            bar.finish_and_clear();
            return;
        }
        let seen = timeline.events.last().map_or("", |e| e.what.as_str());
        let progress = format!("{}: +{}s since the fault; {seen}", drill.name, at.as_secs());
        if printer.interactive() {
            bar.set_message(progress);
        } else if at >= said + Duration::from_secs(30) {
            // In a log, a line every 30 s rather than a spinner.
            said = at;
            printer.status(progress);
        }
        tokio::time::sleep(TICK).await;
    }
}

/// What recovery showed: every accepted task's final status, and whether
/// api was ready and its outbox empty at the end.
#[derive(Debug, Default)]
struct Recovered {
    statuses: Vec<(String, String)>,
    ready_after: Option<u16>,
    outbox_pending: Option<f64>,
    /// Ctrl-C stopped the wait: what was seen so far is reported.
    interrupted: bool,
}

/// After the fault: every accepted task finished, the outbox drained, api
/// ready; with `--until firing` the expected alerts resolved too.
#[allow(clippy::too_many_arguments)]
async fn recover(
    http: &reqwest::Client,
    plan: &Plan,
    drill: &Drill,
    options: &Options,
    user: &User,
    traffic: &Traffic,
    timeline: &mut Timeline,
    fault_at: Instant,
) -> Recovered {
    let deadline = Instant::now() + options.recovery;
    let mut recovered = Recovered::default();
    let mut noted = false;
    loop {
        let at = fault_at.elapsed();
        if let Ok((prometheus, alertmanager)) = alerts(http, plan).await {
            timeline.observe(at, &prometheus, &alertmanager);
        }
        let mut statuses = Vec::new();
        for id in &traffic.accepted {
            let status = user
                .status(id)
                .await
                .unwrap_or_else(|e| format!("unknown ({e:#})"));
            statuses.push((id.clone(), status));
        }
        recovered.statuses = statuses;
        recovered.ready_after = http
            .get(format!("{}/ready", plan.api))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16());
        recovered.outbox_pending = exposition(http, "api", &plan.api)
            .await
            .ok()
            .and_then(|api| api.value("api_outbox_pending_messages", &[]));
        let done = recovered
            .statuses
            .iter()
            .all(|(_, s)| s == "COMPLETED" || s == "FAILED")
            && recovered.ready_after == Some(200)
            && recovered.outbox_pending == Some(0.0);
        if done && !noted {
            noted = true;
            timeline.note(
                at,
                "recovered: every task finished, the outbox empty, api ready",
            );
        }
        let resolved = options.until == Until::Pending || timeline.all_resolved(drill.expects);
        if (done && resolved) || Instant::now() > deadline {
            if Instant::now() > deadline {
                timeline.note(
                    at,
                    format!(
                        "gave up waiting for the recovery after {}s",
                        options.recovery.as_secs()
                    ),
                );
            }
            return recovered;
        }
        // The fault is already undone: Ctrl-C only cuts the wait short.
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            _ = tokio::signal::ctrl_c() => {
                timeline.note(fault_at.elapsed(), "interrupted (Ctrl-C) while waiting for the recovery");
                recovered.interrupted = true;
                return recovered;
            }
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// How often the worker logged each task completed since `since` (unix
/// seconds): its log outlives a killed process, where its counters start
/// again from zero.
async fn completions(
    engine: &Engine,
    project: &Project,
    since: i64,
) -> anyhow::Result<std::collections::BTreeMap<String, usize>> {
    use futures::StreamExt;
    let container = stack::container_of(engine, project, "worker").await?.name;
    let mut lines = std::pin::pin!(engine.logs(&container, false, None, since));
    let mut counted = std::collections::BTreeMap::new();
    while let Some(line) = lines.next().await {
        let Ok(line) = serde_json::from_str::<Value>(&line?) else {
            continue;
        };
        if line["message"] == "task completed" {
            if let Some(id) = line["task_id"].as_str() {
                *counted.entry(id.to_string()).or_insert(0) += 1;
            }
        }
    }
    Ok(counted)
}

/// The verdicts on what must survive: tasks lost, counted twice, the
/// counters' deltas, the uploads' answers and api's readiness.
fn outcome_checks(
    drill: &Drill,
    traffic: &Traffic,
    recovered: &Recovered,
    completions: &std::collections::BTreeMap<String, usize>,
    before: Counters,
    after: Counters,
) -> Vec<Check> {
    let accepted = traffic.accepted.len() as f64;
    let lost: Vec<String> = recovered
        .statuses
        .iter()
        .filter(|(_, s)| s != "COMPLETED")
        .map(|(id, s)| format!("{id} {s}"))
        .collect();
    let twice: Vec<String> = traffic
        .accepted
        .iter()
        .filter_map(|id| {
            let n = completions.get(id).copied().unwrap_or(0);
            (n > 1).then(|| format!("{id} x{n}"))
        })
        .collect();
    let mut checks = vec![
        Check::new(
            "tasks",
            "tasks lost",
            "0: every accepted upload COMPLETED",
            if lost.is_empty() {
                format!("0 of {accepted}")
            } else {
                format!("{} of {accepted}: {}", lost.len(), lost.join(", "))
            },
            lost.is_empty(),
        ),
        Check::new(
            "tasks",
            "tasks counted twice (the worker's \"task completed\" lines)",
            "0",
            if twice.is_empty() {
                "0".to_string()
            } else {
                format!("{}: {}", twice.len(), twice.join(", "))
            },
            twice.is_empty(),
        ),
        exact(
            "api",
            "api_tasks_created_total",
            accepted,
            after.created - before.created,
        ),
    ];
    // A killed worker's counters start again from zero: the restarted
    // one's are its own (whether a task was counted twice is in its log,
    // above).
    if drill.fault == Fault::Kill && drill.service == "worker" {
        checks.push(exact(
            "worker",
            "worker_tasks_processed_total{status=\"failure\"} of the restarted worker",
            0.0,
            after.failure,
        ));
    } else {
        checks.push(exact(
            "worker",
            "worker_tasks_processed_total{status=\"success\"}",
            accepted,
            after.success - before.success,
        ));
        checks.push(exact(
            "worker",
            "worker_tasks_processed_total{status=\"failure\"}",
            0.0,
            after.failure - before.failure,
        ));
    }
    let publish_errors = after.publish_errors - before.publish_errors;
    checks.push(if drill.name == "kafka-down" {
        let mut check = Check::new(
            "api",
            "api_kafka_publish_errors_total moved",
            "at least 1 (each retry counts: a lower bound)",
            format!("+{publish_errors}"),
            publish_errors >= 1.0,
        );
        check.exact = Some(false);
        check
    } else {
        exact("api", "api_kafka_publish_errors_total", 0.0, publish_errors)
    });
    if drill.refuses_uploads {
        let well_refused = traffic
            .refused
            .iter()
            .filter(|u| {
                matches!(
                    u,
                    Upload::Refused {
                        status: 503,
                        json_error: true,
                        retry_after: true
                    }
                )
            })
            .count();
        checks.push(Check::new(
            "api",
            "uploads during the fault refused with a JSON 503 and Retry-After",
            "all, and at least one",
            format!("{well_refused} of {}", traffic.refused.len()),
            well_refused > 0 && well_refused == traffic.refused.len(),
        ));
        let unready = traffic.ready_during.contains(&503);
        checks.push(Check::new(
            "api",
            "/ready false during the fault, true after",
            "503 then 200",
            format!(
                "{} then {}",
                if unready { "503" } else { "never 503" },
                recovered
                    .ready_after
                    .map_or("no answer".into(), |s| s.to_string())
            ),
            unready && recovered.ready_after == Some(200),
        ));
    } else {
        checks.push(Check::new(
            "api",
            "uploads during the fault accepted",
            "all (201)",
            if traffic.refused.is_empty() {
                "all".to_string()
            } else {
                format!("{} refused: {:?}", traffic.refused.len(), traffic.refused)
            },
            traffic.refused.is_empty(),
        ));
    }
    checks.push(Check::new(
        "api",
        "the outbox drained",
        "api_outbox_pending_messages 0",
        recovered
            .outbox_pending
            .map_or("no answer".into(), |v| v.to_string()),
        recovered.outbox_pending == Some(0.0),
    ));
    checks
}

fn exact(service: &str, counter: &str, expected: f64, actual: f64) -> Check {
    let mut check = Check::new(
        service,
        format!("{counter} delta"),
        format!("exactly {expected}"),
        format!("{actual}"),
        actual == expected,
    );
    check.exact = Some(true);
    check
}

/// The timeline and the verdicts: a table each, or one JSON object; and
/// JUnit when asked.
fn report(
    drill: &Drill,
    timeline: &Timeline,
    checks: &[Check],
    options: &Options,
    printer: &Printer,
) -> anyhow::Result<()> {
    if let Some(path) = &options.junit {
        std::fs::write(path, pixelflow_verify::report::junit(checks))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    match printer.output {
        Output::Json => printer.out(serde_json::to_string_pretty(&serde_json::json!({
            "drill": drill.name,
            "until": options.until,
            "timeline": timeline,
            "checks": checks,
        }))?),
        Output::Text => {
            let mut table = comfy_table::Table::new();
            table.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
            table.set_header(["SINCE FAULT", "EVENT"]);
            for event in &timeline.events {
                table.add_row([format!("{:+.1}s", event.at_s), event.what.clone()]);
            }
            printer.out(format!("drill {}\n{table}", drill.name));
            printer.out(pixelflow_verify::report::table(checks));
        }
    }
    Ok(())
}
