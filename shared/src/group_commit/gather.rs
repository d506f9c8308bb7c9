//! Gathering a batch from a queue: the wait that turns many small statements
//! into a few large ones. Used by ingest's key writers and by the workers'
//! group-committed steps ([`super::GroupCommit`]).

use std::time::Duration;

use tokio::sync::mpsc;

/// Waits for the first item, then keeps receiving for `linger` (or until
/// `max_batch` items). Returns how many arrived: 0 once the queue is closed
/// and drained.
pub async fn gather<T>(
    queue: &mut mpsc::Receiver<T>,
    batch: &mut Vec<T>,
    max_batch: usize,
    linger: Duration,
) -> usize {
    if queue.recv_many(batch, max_batch).await == 0 {
        return 0;
    }
    let deadline = tokio::time::Instant::now() + linger;
    while batch.len() < max_batch && !linger.is_zero() {
        let room = max_batch - batch.len();
        match tokio::time::timeout_at(deadline, queue.recv_many(batch, room)).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    batch.len()
}

/// How long a flush slot gathers after the first item of a batch: `linger`
/// while items come faster than one per statement (the slot's last batch had
/// company), nothing when they come one at a time, so a quiet service adds
/// no wait. Gathering is what makes a busy service cheap: one statement and
/// one PostgreSQL wake-up serve many events.
pub fn linger_after(previous_batch: usize, linger: Duration) -> Duration {
    if previous_batch > 1 {
        linger
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_lingers_only_after_a_batch_that_had_company() {
        let linger = Duration::from_millis(2);
        assert_eq!(linger_after(0, linger), Duration::ZERO, "first batch");
        assert_eq!(linger_after(1, linger), Duration::ZERO, "one at a time");
        assert_eq!(linger_after(2, linger), linger);
        assert_eq!(linger_after(40, linger), linger);
    }

    #[tokio::test(start_paused = true)]
    async fn gather_takes_what_arrives_within_the_linger_and_no_more() {
        let (tx, mut rx) = mpsc::channel(16);
        let start = tokio::time::Instant::now();
        let sender = tokio::spawn(async move {
            for (at_ms, item) in [(0, 1), (1, 2), (2, 3), (4, 4)] {
                tokio::time::sleep_until(start + Duration::from_millis(at_ms)).await;
                tx.send(item).await.unwrap();
            }
        });
        let mut batch = Vec::new();
        let got = gather(&mut rx, &mut batch, 16, Duration::from_millis(3)).await;
        assert_eq!(
            (got, batch.clone()),
            (3, vec![1, 2, 3]),
            "item 4 comes after the linger"
        );
        batch.clear();
        assert_eq!(gather(&mut rx, &mut batch, 16, Duration::ZERO).await, 1);
        assert_eq!(batch, vec![4]);
        sender.await.unwrap();
        batch.clear();
        assert_eq!(
            gather(&mut rx, &mut batch, 16, Duration::from_millis(3)).await,
            0,
            "closed and drained"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn gather_stops_at_the_batch_limit_without_waiting_out_the_linger() {
        let (tx, mut rx) = mpsc::channel(16);
        for item in 0..5 {
            tx.send(item).await.unwrap();
        }
        let before = tokio::time::Instant::now();
        let mut batch = Vec::new();
        assert_eq!(
            gather(&mut rx, &mut batch, 4, Duration::from_secs(60)).await,
            4
        );
        assert_eq!(before.elapsed(), Duration::ZERO);
    }
}
