//! Which offset each partition may commit while several of its events are
//! in flight at once: only up to the first unfinished one. A crash then
//! redelivers exactly the events that had not finished (and none that
//! had, beyond the ones after a gap, which are no-ops when repeated).

use std::collections::{BTreeMap, HashMap};

/// A topic's partition.
pub type Partition = (String, i32);

#[derive(Default)]
pub struct Offsets {
    partitions: HashMap<Partition, Progress>,
}

#[derive(Default)]
struct Progress {
    /// Offsets started and not finished, with how many deliveries of each
    /// are in flight (a rebalance can hand back one still in hand).
    in_flight: BTreeMap<i64, usize>,
    /// The highest offset finished.
    finished: Option<i64>,
    /// The next offset to read, as last committed.
    committed: Option<i64>,
}

impl Offsets {
    pub fn started(&mut self, partition: Partition, offset: i64) {
        let progress = self.partitions.entry(partition).or_default();
        // Where this consumer started reading is where the group's commit
        // already stands: nothing to commit until it moves past.
        progress.committed.get_or_insert(offset);
        *progress.in_flight.entry(offset).or_default() += 1;
    }

    /// Marks `offset` done; the offset to commit for its partition (the next
    /// one to read) when that moved forward. An event never finished (given
    /// up at shutdown) holds its partition's commits back for good.
    pub fn finished(&mut self, partition: &Partition, offset: i64) -> Option<i64> {
        let progress = self.partitions.get_mut(partition)?;
        match progress.in_flight.get_mut(&offset) {
            Some(1) => {
                progress.in_flight.remove(&offset);
            }
            Some(count) => *count -= 1,
            None => return None,
        }
        progress.finished = progress.finished.max(Some(offset));
        let finished = progress.finished?;
        let next = match progress.in_flight.first_key_value() {
            Some((&first, _)) => first.min(finished + 1),
            None => finished + 1,
        };
        if progress
            .committed
            .is_some_and(|committed| committed >= next)
        {
            return None;
        }
        progress.committed = Some(next);
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("image-tasks".to_string(), n)
    }

    #[test]
    fn a_commit_waits_for_the_first_unfinished_offset() {
        let mut offsets = Offsets::default();
        for offset in 10..13 {
            offsets.started(p(0), offset);
        }
        // 11 and 12 finish before 10: nothing may be committed yet.
        assert_eq!(offsets.finished(&p(0), 12), None);
        assert_eq!(offsets.finished(&p(0), 11), None);
        // 10 finishes: everything up to 12 is done, read on from 13.
        assert_eq!(offsets.finished(&p(0), 10), Some(13));
    }

    #[test]
    fn in_order_finishes_commit_one_by_one() {
        let mut offsets = Offsets::default();
        offsets.started(p(0), 0);
        offsets.started(p(0), 1);
        assert_eq!(offsets.finished(&p(0), 0), Some(1));
        assert_eq!(offsets.finished(&p(0), 1), Some(2));
    }

    #[test]
    fn partitions_commit_independently() {
        let mut offsets = Offsets::default();
        offsets.started(p(0), 5);
        offsets.started(p(1), 7);
        offsets.started(p(0), 6);
        assert_eq!(offsets.finished(&p(1), 7), Some(8));
        assert_eq!(offsets.finished(&p(0), 6), None);
        assert_eq!(offsets.finished(&p(0), 5), Some(7));
    }

    #[test]
    fn an_abandoned_offset_holds_its_partition_back() {
        let mut offsets = Offsets::default();
        offsets.started(p(0), 3);
        offsets.started(p(0), 4);
        // 3 is never finished (shutdown while the database was away).
        assert_eq!(offsets.finished(&p(0), 4), None);
        offsets.started(p(0), 5);
        assert_eq!(offsets.finished(&p(0), 5), None);
    }

    #[test]
    fn a_redelivered_offset_in_flight_twice_is_done_when_both_are() {
        let mut offsets = Offsets::default();
        offsets.started(p(0), 8);
        offsets.started(p(0), 8);
        assert_eq!(offsets.finished(&p(0), 8), None);
        assert_eq!(offsets.finished(&p(0), 8), Some(9));
        // A stray finish of something never started changes nothing.
        assert_eq!(offsets.finished(&p(0), 8), None);
        assert_eq!(offsets.finished(&p(3), 1), None);
    }
}
