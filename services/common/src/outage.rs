//! One log line per outage, not one per failed retry. A dependency that is
//! down (the broker, mostly) fails every retry, and a line for each buried
//! the log: a 30 s broker outage was 30 ERROR lines from the worker alone.
//! The first failure is logged at error level with its error, then a
//! reminder at most once per [`REMIND_EVERY`] with the count and how long
//! it has lasted, and the recovery at info level. The services' error
//! counters still count every failure.

use std::fmt::Display;
use std::time::Duration;

use tokio::time::Instant;

/// How often a lasting outage is logged again.
pub const REMIND_EVERY: Duration = Duration::from_secs(60);

/// The failures of one kind of attempt (receiving from Kafka, publishing).
#[derive(Debug)]
pub struct Outage {
    /// The failure's log message: "cannot receive from Kafka".
    failing: &'static str,
    /// The recovery's: "receiving from Kafka again".
    recovered: &'static str,
    ongoing: Option<Ongoing>,
}

#[derive(Debug)]
struct Ongoing {
    since: Instant,
    failures: u64,
    last_logged: Instant,
}

impl Outage {
    pub const fn new(failing: &'static str, recovered: &'static str) -> Self {
        Self {
            failing,
            recovered,
            ongoing: None,
        }
    }

    /// An attempt failed with `error`.
    pub fn failed(&mut self, error: &dyn Display) {
        let now = Instant::now();
        let Some(ongoing) = &mut self.ongoing else {
            tracing::error!(%error, "{}", self.failing);
            self.ongoing = Some(Ongoing {
                since: now,
                failures: 1,
                last_logged: now,
            });
            return;
        };
        ongoing.failures += 1;
        if now.duration_since(ongoing.last_logged) >= REMIND_EVERY {
            ongoing.last_logged = now;
            tracing::error!(
                %error,
                failures = ongoing.failures,
                seconds = now.duration_since(ongoing.since).as_secs(),
                "{} (still; logged once a minute)",
                self.failing
            );
        }
    }

    /// An attempt worked: ends the outage, if there was one, and says
    /// whether there was (its end is logged).
    pub fn worked(&mut self) -> bool {
        let Some(ongoing) = self.ongoing.take() else {
            return false;
        };
        tracing::info!(
            failures = ongoing.failures,
            seconds = ongoing.since.elapsed().as_secs(),
            "{}",
            self.recovered
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::tests::Captured;

    fn levels_and_messages(captured: &Captured) -> Vec<(String, String)> {
        captured
            .lines()
            .iter()
            .map(|line| {
                (
                    line["level"].as_str().unwrap_or_default().to_string(),
                    line["message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_is_logged_when_it_starts_once_a_minute_while_it_lasts_and_when_it_ends() {
        let (captured, _default) = Captured::install("worker");
        let mut outage = Outage::new("cannot receive from Kafka", "receiving from Kafka again");
        assert!(!outage.worked(), "no outage yet");
        // 150 failures, one a second: the first, then a reminder at 60 s
        // and at 120 s.
        for _ in 0..150 {
            outage.failed(&"broker transport failure");
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert!(outage.worked(), "the outage ended");
        assert!(!outage.worked(), "and is over");
        let text = captured.text();
        let error = |m: &str| ("ERROR".to_string(), m.to_string());
        assert_eq!(
            levels_and_messages(&captured),
            [
                error("cannot receive from Kafka"),
                error("cannot receive from Kafka (still; logged once a minute)"),
                error("cannot receive from Kafka (still; logged once a minute)"),
                ("INFO".into(), "receiving from Kafka again".into()),
            ],
            "{text}"
        );
        let lines = captured.lines();
        let last = lines.last().expect("a line");
        assert_eq!(
            (last["failures"].as_u64(), last["seconds"].as_u64()),
            (Some(150), Some(150))
        );
        // A new outage is logged as new.
        outage.failed(&"broker transport failure");
        assert_eq!(captured.text().lines().count(), 5);
    }
}
