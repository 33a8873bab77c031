//! Login throttling per email: `limit` attempts within `window` that have
//! not ended in success; further logins for that email are refused with 429
//! until the window ends, so a password cannot be guessed at the speed of
//! the hardware. An attempt counts when it starts, so a burst of concurrent
//! guesses is held to the limit too; a success clears the email's count.
//! The trade-off of any per-account throttle: someone guessing at an email
//! also delays its owner's login, by at most `window`.
//!
//! In memory, per process: a restart forgets, and several auth replicas
//! would each allow `limit`. The map is bounded: past [`MAX_TRACKED`]
//! emails, expired entries are dropped, and if every entry is still live
//! the half with the fewest failures goes (the throttle then errs on the
//! side of letting a login be tried, never of locking everyone out, and a
//! spray of fresh emails cannot wipe the count of one being guessed at).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_TRACKED: usize = 100_000;

struct Failures {
    count: u32,
    since: Instant,
}

pub struct LoginThrottle {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<String, Failures>>,
}

impl LoginThrottle {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        // A panic while holding the lock leaves counts, not broken
        // invariants: keep using them.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts an attempt for `email`, or `Err(seconds to wait)` when it has
    /// used up its attempts.
    pub fn attempt(&self, email: &str, now: Instant) -> Result<(), u64> {
        let mut map = self.map();
        if let Some(f) = map.get(email) {
            let age = now.duration_since(f.since);
            if f.count >= self.limit && age < self.window {
                return Err((self.window - age).as_secs().max(1));
            }
        }
        if map.len() >= MAX_TRACKED && !map.contains_key(email) {
            let window = self.window;
            map.retain(|_, f| now.duration_since(f.since) < window);
            if map.len() >= MAX_TRACKED {
                // Half goes, those with the fewest failures first (the
                // older of equals): an email under attack has many, and a
                // spray of fresh emails, one attempt each, evicts its own
                // entries before it could evict that one.
                let mut ranks: Vec<(u32, Instant)> =
                    map.values().map(|f| (f.count, f.since)).collect();
                ranks.sort_unstable();
                let cut = ranks[ranks.len() / 2];
                map.retain(|_, f| (f.count, f.since) > cut);
            }
        }
        let entry = map.entry(email.to_string()).or_insert(Failures {
            count: 0,
            since: now,
        });
        if now.duration_since(entry.since) >= self.window {
            *entry = Failures {
                count: 0,
                since: now,
            };
        }
        entry.count += 1;
        Ok(())
    }

    pub fn succeeded(&self, email: &str) {
        self.map().remove(email);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_email_is_refused_after_its_attempts_until_the_window_ends() {
        let throttle = LoginThrottle::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(throttle.attempt("a@x", t0), Ok(()));
        }
        assert_eq!(
            throttle.attempt("a@x", t0 + Duration::from_secs(10)),
            Err(50)
        );
        assert_eq!(throttle.attempt("b@x", t0), Ok(()), "other emails are not");
        assert_eq!(
            throttle.attempt("a@x", t0 + Duration::from_secs(60)),
            Ok(())
        );
    }

    #[test]
    fn a_success_clears_the_count() {
        let throttle = LoginThrottle::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(throttle.attempt("a@x", t0), Ok(()));
        assert_eq!(throttle.attempt("a@x", t0), Ok(()));
        throttle.succeeded("a@x");
        assert_eq!(throttle.attempt("a@x", t0), Ok(()));
    }

    #[test]
    fn the_map_stays_bounded_under_a_spray_of_emails() {
        let throttle = LoginThrottle::new(5, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED + 10) {
            let _ = throttle.attempt(&format!("{i}@x"), t0 + Duration::from_micros(i as u64));
        }
        assert!(throttle.map().len() <= MAX_TRACKED);
    }

    #[test]
    fn a_spray_of_fresh_emails_does_not_wipe_the_count_of_one_under_attack() {
        let throttle = LoginThrottle::new(5, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(throttle.attempt("victim@x", t0), Ok(()));
        }
        for i in 0..(MAX_TRACKED + 10) {
            let _ = throttle.attempt(&format!("{i}@x"), t0 + Duration::from_micros(i as u64));
        }
        assert!(throttle.map().len() <= MAX_TRACKED);
        assert!(
            throttle
                .attempt("victim@x", t0 + Duration::from_secs(1))
                .is_err(),
            "the victim's email is still locked"
        );
    }
}
