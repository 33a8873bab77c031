//! Argon2id password hashing, off the async runtime and bounded.
//!
//! A hash takes tens of milliseconds of CPU and 19 MiB of memory by design.
//! Run on the blocking pool without a bound, a few hundred concurrent logins
//! mean gigabytes of memory and a stalled service. [`Hasher`] runs at most
//! `concurrency` hashes at once; a request that cannot start one within
//! `queue_timeout` is refused as busy (503 with `Retry-After`), so memory
//! stays near `concurrency × 19 MiB` above the idle footprint whatever the
//! load.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password hashing task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("every password hashing slot stayed busy for {0:?}")]
    Busy(Duration),
}

/// Argon2 allocates 19 MiB per hash and frees it after. glibc raises its
/// mmap threshold after such a free, so later buffers come from the
/// per-thread arenas of the blocking pool's many threads and stay resident:
/// with two slots, a flood of 400 logins left auth at 399 MiB. A fixed
/// threshold (the default 128 KiB, which also turns the raising off) keeps
/// every such buffer an mmap that is returned on free: the flood then peaks
/// near the slots' 2 × 19 MiB.
fn return_large_buffers_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    static ONCE: std::sync::Once = std::sync::Once::new();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    ONCE.call_once(|| {
        // SAFETY: mallopt only sets an allocator parameter; glibc documents
        // it as safe to call at any time from any thread.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    });
}

/// Runs Argon2id with a bound on how many hashes run at once.
#[derive(Clone)]
pub struct Hasher {
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
}

impl Hasher {
    pub fn new(concurrency: usize, queue_timeout: Duration) -> Self {
        return_large_buffers_to_the_os();
        Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            queue_timeout,
        }
    }

    /// Runs `work` on the blocking pool once a slot is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let permit = tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| PasswordError::Busy(self.queue_timeout))?
            // The semaphore is never closed.
            .map_err(|_| PasswordError::Busy(self.queue_timeout))?;
        tokio::task::spawn_blocking(move || {
            let _slot = permit;
            work()
        })
        .await?
    }

    /// A PHC string (`$argon2id$v=19$...`) with a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| PasswordError::Hash(e.to_string()))
        })
        .await
    }

    /// Whether `password` matches `phc`. A malformed stored hash is an
    /// error, not a mismatch: it means the data is broken.
    pub async fn verify(&self, password: String, phc: String) -> Result<bool, PasswordError> {
        self.run(move || {
            let parsed = PasswordHash::new(&phc).map_err(|e| PasswordError::Hash(e.to_string()))?;
            Ok(Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> Hasher {
        Hasher::new(2, Duration::from_secs(5))
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let hasher = hasher();
        let phc = hasher.hash("correct horse".into()).await.expect("hash");
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(hasher
            .verify("correct horse".into(), phc.clone())
            .await
            .expect("verify"));
        assert!(!hasher
            .verify("wrong horse".into(), phc)
            .await
            .expect("verify"));
    }

    #[tokio::test]
    async fn the_same_password_hashes_differently_each_time() {
        let hasher = hasher();
        let a = hasher.hash("same password".into()).await.expect("hash");
        let b = hasher.hash("same password".into()).await.expect("hash");
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn a_hash_that_cannot_get_a_slot_in_time_is_refused_as_busy() {
        let hasher = Hasher::new(1, Duration::from_millis(50));
        // Hold the only slot, as a long hash would.
        let held = hasher.slots.clone().acquire_owned().await.expect("slot");
        let refused = hasher.hash("x".into()).await;
        assert!(
            matches!(refused, Err(PasswordError::Busy(_))),
            "{refused:?}"
        );
        drop(held);
        assert!(hasher.hash("x".into()).await.is_ok());
    }
}
