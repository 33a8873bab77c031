//! Closed-loop HTTP load for the benches: clients that send the next
//! request as soon as the last is answered, and the figures of a run.

use std::time::{Duration, Instant};

pub struct Stats {
    pub requests: usize,
    pub errors: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Stats {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
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
    let mut stats = Stats {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for task in tasks {
        let (latencies, errors) = task.await.expect("load task");
        stats.latencies.extend(latencies);
        stats.errors += errors;
    }
    stats.elapsed = start.elapsed();
    stats.requests = stats.latencies.len();
    stats.latencies.sort();
    stats
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
    pub fn of(interval: Option<(f64, f64)>, target: f64) -> Self {
        match interval {
            Some((low, _)) if low >= target => Verdict::Met,
            Some((_, high)) if high < target => Verdict::NotMet,
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
}
