//! The decode memory that all the tasks in flight may hold at once.
//!
//! Each task reserves what its decode will hold, judged from the image's
//! header ([`crate::thumbnail::decode_cost`]), before it decodes, and waits
//! while there is not enough room. The budget is `MAX_DECODE_BYTES`, the
//! same figure that bounds one decode: so the worker holds no more decoded
//! pixels with `WORKER_CONCURRENCY` tasks in flight than one task may hold
//! alone. With the pixel cap (`MAX_IMAGE_PIXELS`, 64 MP), the largest PNG
//! costs 2 × 4 × 64 MP = 488 MiB of the default 512 MiB: such images are
//! decoded one at a time (beside them, only what fits in the 24 MiB left),
//! while DCT-scaled JPEGs (a 64 MP JPEG decodes at 1/8: 8 MB) run side by
//! side. So memory is bounded by the budget, plus at most
//! `WORKER_CONCURRENCY` originals (each at most api's `MAX_UPLOAD_BYTES`)
//! and thumbnails.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone)]
pub struct DecodeBudget {
    kib: Arc<Semaphore>,
    total_kib: u32,
}

impl DecodeBudget {
    pub fn new(bytes: u64) -> Self {
        let total_kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Self {
            kib: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    fn kib(&self, bytes: u64) -> u32 {
        u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_kib)
    }

    /// Room for `bytes` (the whole budget at most: a larger decode is
    /// refused by the decoder's own limit), held until the permit drops.
    pub async fn reserve(&self, bytes: u64) -> OwnedSemaphorePermit {
        let kib = self.kib(bytes);
        self.kib
            .clone()
            .acquire_many_owned(kib)
            .await
            .unwrap_or_else(|_| unreachable!("the budget's semaphore is never closed"))
    }

    /// Room for `bytes` now, if there is.
    #[cfg(test)]
    pub fn try_reserve(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        self.kib
            .clone()
            .try_acquire_many_owned(self.kib(bytes))
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thumbnail::decode_cost;
    use crate::thumbnail::tests_support::LIMITS;

    #[test]
    fn two_of_the_largest_pngs_the_pixel_cap_allows_are_never_decoded_at_once() {
        let budget = DecodeBudget::new(LIMITS.max_alloc);
        let largest = decode_cost(&pixelflow_testkit::png_claiming(8000, 8000), &LIMITS)
            .expect("within the cap");
        let first = budget.try_reserve(largest).expect("room for one");
        assert!(budget.try_reserve(largest).is_none());
        // Its 488 MiB leave 24 MiB: a 1 MP photograph still fits beside
        // it, a 4 MP one waits.
        let small =
            decode_cost(&pixelflow_testkit::png_claiming(1152, 864), &LIMITS).expect("1 MP");
        assert!(budget.try_reserve(small).is_some());
        let medium =
            decode_cost(&pixelflow_testkit::png_claiming(2304, 1728), &LIMITS).expect("4 MP");
        assert!(budget.try_reserve(medium).is_none());
        drop(first);
        assert!(budget.try_reserve(largest).is_some());
    }

    #[test]
    fn dct_scaled_jpegs_at_the_cap_run_side_by_side() {
        let budget = DecodeBudget::new(LIMITS.max_alloc);
        let jpeg = pixelflow_testkit::jpeg(8000, 8000);
        let cost = decode_cost(&jpeg, &LIMITS).expect("within the cap");
        // Decoded at 1/8: 1000 × 1000 pixels, not 64 MP.
        assert_eq!(cost, 2 * 4 * 1000 * 1000);
        let held: Vec<_> = (0..8)
            .map(|_| budget.try_reserve(cost).expect("room"))
            .collect();
        assert_eq!(held.len(), 8);
    }

    #[tokio::test]
    async fn a_reservation_waits_for_room_and_gets_it_when_freed() {
        let budget = DecodeBudget::new(1024 * 1024);
        let all = budget.reserve(1024 * 1024).await;
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { drop(budget.reserve(1).await) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(all);
        waiting.await.expect("room once freed");
    }
}
