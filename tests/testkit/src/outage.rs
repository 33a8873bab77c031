//! The broker outage every suite runs, on processes and on the Docker
//! stack alike: the broker away for 30 s while uploads continue, then back.
//! Every upload is answered 201 meanwhile, the outbox gauge shows the
//! waiting events, and afterwards every task completes, each event is
//! acknowledged once and each task counted once.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::client::{ApiClient, TaskStatus};
use crate::{eventually, scrape};

/// Uploads made while the broker is away, one every [`PACE`].
pub const DURING_OUTAGE: usize = 10;
/// The spacing of the outage's uploads: pacing, not a wait for something.
const PACE: Duration = Duration::from_secs(3);

/// Turning the broker off and on, as the suite can: a process killed and
/// restarted, a container stopped and started.
pub trait BrokerSwitch {
    fn off(&mut self) -> impl Future<Output = ()>;
    fn on(&mut self) -> impl Future<Output = ()>;
}

/// Runs the outage against the stack `client` uploads to, whose api and
/// worker serve their metrics at `api_metrics` and `worker_metrics`.
pub async fn broker_outage_loses_nothing(
    broker: &mut impl BrokerSwitch,
    client: &ApiClient,
    api_metrics: &str,
    worker_metrics: &str,
) {
    let success = [("status", "success")];
    let published = || async {
        scrape(api_metrics)
            .await
            .value_or_zero("api_kafka_messages_published_total", &[])
    };
    let succeeded = || async {
        scrape(worker_metrics)
            .await
            .value_or_zero("worker_tasks_processed_total", &success)
    };
    let (published_before, succeeded_before) = (published().await, succeeded().await);

    broker.off().await;
    let outage = Instant::now();
    let mut tasks = Vec::new();
    let mut pending_seen = 0.0_f64;
    for _ in 0..DURING_OUTAGE {
        tasks.push(client.upload(crate::png(64, 48)).await);
        pending_seen = pending_seen.max(
            scrape(api_metrics)
                .await
                .value_or_zero("api_outbox_pending_messages", &[]),
        );
        tokio::time::sleep(PACE).await;
    }
    assert!(outage.elapsed() >= Duration::from_secs(30));
    assert!(
        pending_seen >= 1.0,
        "the outbox gauge shows the waiting events (saw {pending_seen})"
    );
    broker.on().await;

    for id in &tasks {
        let task = client.settled(id, Duration::from_secs(180)).await;
        assert_eq!(task.status, TaskStatus::Completed, "{}", task.json);
    }
    eventually("the outbox to drain", Duration::from_secs(30), || async {
        let pending = scrape(api_metrics)
            .await
            .value("api_outbox_pending_messages", &[]);
        (pending == Some(0.0)).then_some(())
    })
    .await;
    let expected = DURING_OUTAGE as f64;
    assert_eq!(
        published().await - published_before,
        expected,
        "each event acknowledged once"
    );
    eventually("every success counted", Duration::from_secs(10), || async {
        (succeeded().await - succeeded_before >= expected).then_some(())
    })
    .await;
    assert_eq!(
        succeeded().await - succeeded_before,
        expected,
        "each task counted once"
    );
}
