//! HTTP load for the benches, closed loop (clients that send the next
//! request as soon as the last is answered: what a server can take) and
//! open loop (requests on a fixed schedule: how a server answers a given
//! rate), and the figures of a run.

use std::time::{Duration, Instant};

pub struct Stats {
    pub errors: usize,
    pub elapsed: Duration,
    /// Of the answered requests, sorted.
    pub latencies: Vec<Duration>,
}

impl Stats {
    /// The figures of a load that began at `start` and ends now.
    fn finished(mut latencies: Vec<Duration>, errors: usize, start: Instant) -> Self {
        latencies.sort();
        Self {
            errors,
            elapsed: start.elapsed(),
            latencies,
        }
    }

    /// Requests answered with a success.
    pub fn requests(&self) -> usize {
        self.latencies.len()
    }

    pub fn rps(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64()
    }
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }
}

/// A numeric setting from the environment.
pub fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `concurrency` clients in a closed loop on `url` for `duration`.
pub async fn load(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    concurrency: usize,
    duration: Duration,
) -> Stats {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, url, bearer) = (http.clone(), url.to_string(), bearer.map(str::to_string));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let mut request = http.get(&url);
                if let Some(b) = &bearer {
                    request = request.header("Authorization", b);
                }
                match request.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(sent.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (answered, failed) = task.await.expect("load task");
        latencies.extend(answered);
        errors += failed;
    }
    Stats::finished(latencies, errors, start)
}

/// `rate` requests per second on `url` for `duration`, open loop: each
/// request leaves at its scheduled time whether or not earlier ones were
/// answered, and its latency runs from that scheduled time. A server that
/// stalls therefore pays for every request it held up, not only the one
/// it was slow to answer (no coordinated omission). A thread of its own
/// keeps the schedule, with `thread::sleep`'s precision rather than the
/// runtime timer's millisecond.
pub async fn open_loop(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    rate: f64,
    duration: Duration,
) -> Stats {
    let count = (rate * duration.as_secs_f64()).round() as u64;
    let (due, mut departures) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let start = Instant::now() + Duration::from_millis(5);
    let pacer = std::thread::spawn(move || {
        for i in 0..count {
            let at = start + Duration::from_secs_f64(i as f64 / rate);
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if due.send(at).is_err() {
                break;
            }
        }
    });
    let mut requests = tokio::task::JoinSet::new();
    while let Some(scheduled) = departures.recv().await {
        let mut request = http.get(url);
        if let Some(b) = bearer {
            request = request.header("Authorization", b);
        }
        requests.spawn(async move {
            match request.send().await {
                Ok(r) if r.status().is_success() => {
                    r.bytes().await.ok().map(|_| scheduled.elapsed())
                }
                _ => None,
            }
        });
    }
    pacer.join().expect("pacer thread");
    let (mut latencies, mut errors) = (Vec::with_capacity(count as usize), 0);
    while let Some(answered) = requests.join_next().await {
        match answered.expect("request task") {
            Some(latency) => latencies.push(latency),
            None => errors += 1,
        }
    }
    Stats::finished(latencies, errors, start)
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A distribution-free interval for the median of `values` (one per round)
/// at `confidence` (0.95): the order statistics `x(k)` and `x(n+1-k)` for
/// the largest `k` whose binomial coverage, `1 - 2 P(Bin(n, 1/2) < k)`, is
/// still at least `confidence`. No assumption on how rounds spread, which
/// on this machine is neither normal nor steady. `None` when there are too
/// few rounds for any such interval (fewer than 6 at 0.95), or so many
/// (over a thousand) that `2^-n` underflows.
pub fn median_interval(mut values: Vec<f64>, confidence: f64) -> Option<(f64, f64)> {
    let n = values.len();
    let tail = (1.0 - confidence) / 2.0;
    // P(Bin(n, 1/2) <= j), summed term by term: C(n, j) / 2^n.
    let mut term = 0.5f64.powi(i32::try_from(n).ok()?);
    let mut below = 0.0; // P(X < k) for the k being tried
    let mut k = 0;
    while k < n / 2 {
        let next = below + term; // P(X < k + 1)
        if next > tail {
            break;
        }
        below = next;
        term = term * (n - k) as f64 / (k + 1) as f64;
        k += 1;
    }
    if k == 0 {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some((values[k - 1], values[n - k]))
}

/// What an interval says about a lower target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The whole interval is at or above the target.
    Met,
    /// The whole interval is below it.
    NotMet,
    /// The interval straddles it: more rounds, or a quieter machine.
    Undecided,
}

impl Verdict {
    /// Against a floor: met when the whole interval is at or above it.
    pub fn of(interval: Option<(f64, f64)>, target: f64) -> Self {
        match interval {
            Some((low, _)) if low >= target => Verdict::Met,
            Some((_, high)) if high < target => Verdict::NotMet,
            _ => Verdict::Undecided,
        }
    }

    /// Against a ceiling: met when the whole interval is at or below it,
    /// not met when all of it is above.
    pub fn at_most(interval: Option<(f64, f64)>, target: f64) -> Self {
        match interval {
            Some((_, high)) if high <= target => Verdict::Met,
            Some((low, _)) if low > target => Verdict::NotMet,
            _ => Verdict::Undecided,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet => "not met",
            Verdict::Undecided => "undecided",
        }
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rounds(n: usize) -> Vec<f64> {
        // Out of order on purpose: the interval sorts.
        (1..=n).rev().map(|i| i as f64).collect()
    }

    #[test]
    fn fifteen_rounds_bound_the_median_by_the_4th_and_12th_values() {
        assert_eq!(median_interval(rounds(15), 0.95), Some((4.0, 12.0)));
    }

    #[test]
    fn thirty_rounds_bound_the_median_by_the_10th_and_21st_values() {
        assert_eq!(median_interval(rounds(30), 0.95), Some((10.0, 21.0)));
    }

    #[test]
    fn six_rounds_give_the_widest_interval_and_five_give_none() {
        // 1 - 2/64 = 0.969 >= 0.95 with the extremes; with five, 1 - 2/32 < 0.95.
        assert_eq!(median_interval(rounds(6), 0.95), Some((1.0, 6.0)));
        assert_eq!(median_interval(rounds(5), 0.95), None);
        assert_eq!(median_interval(Vec::new(), 0.95), None);
    }

    #[test]
    fn a_target_is_met_only_when_the_whole_interval_clears_it() {
        assert_eq!(Verdict::of(Some((0.91, 0.95)), 0.9), Verdict::Met);
        assert_eq!(Verdict::of(Some((0.80, 0.89)), 0.9), Verdict::NotMet);
        assert_eq!(Verdict::of(Some((0.88, 0.92)), 0.9), Verdict::Undecided);
        assert_eq!(Verdict::of(None, 0.9), Verdict::Undecided);
    }

    #[test]
    fn a_ceiling_is_met_only_when_the_whole_interval_is_under_it() {
        assert_eq!(Verdict::at_most(Some((1.02, 1.08)), 1.1), Verdict::Met);
        assert_eq!(Verdict::at_most(Some((1.12, 1.20)), 1.1), Verdict::NotMet);
        assert_eq!(
            Verdict::at_most(Some((1.05, 1.15)), 1.1),
            Verdict::Undecided
        );
        assert_eq!(Verdict::at_most(None, 1.1), Verdict::Undecided);
    }

    /// A server that answers one request at a time, each after 20 ms.
    async fn one_at_a_time() -> String {
        let busy = std::sync::Arc::new(tokio::sync::Mutex::new(()));
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let busy = busy.clone();
                async move {
                    let _held = busy.lock().await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn open_loop_sends_on_schedule_and_charges_the_queue_to_the_latency() {
        let url = one_at_a_time().await;
        let http = reqwest::Client::new();
        // 200 a second for 0.1 s: 20 requests, sent whatever the answers;
        // a closed loop would have sent about 5 in that time.
        let stats = open_loop(&http, &url, None, 200.0, Duration::from_millis(100)).await;
        assert_eq!((stats.requests(), stats.errors), (20, 0));
        // The last waits for the 19 before it (380 ms of service) less the
        // 95 ms by which its schedule came later: the queue is in its
        // latency, not hidden by a client that waited before sending.
        let slowest = *stats.latencies.last().expect("latencies");
        assert!(slowest >= Duration::from_millis(280), "{slowest:?}");
    }
}
