//! The worker outside Lambda: consumes an in-process queue (`relay serve`, tests,
//! benchmarks) with the same [`Worker::process`] the Lambda runs, at most `concurrency`
//! messages at once. A message handed back is redelivered with a growing delay, as SQS
//! would after its visibility timeout, and dead-lettered after `max_receives`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::Worker;
use crate::queue::Consumer;

#[derive(Debug, Clone)]
pub struct LocalRunner {
    /// Messages processed at once.
    pub concurrency: usize,
    /// Time given to one message, as a Lambda timeout would.
    pub job_time: Duration,
    /// First redelivery delay after a transient failure; doubles per receive, up to a minute.
    pub retry_delay: Duration,
}

impl Default for LocalRunner {
    fn default() -> Self {
        LocalRunner { concurrency: 10, job_time: Duration::from_secs(300), retry_delay: Duration::from_secs(2) }
    }
}

impl LocalRunner {
    /// Runs until `shutdown` resolves, then waits for messages in flight.
    pub async fn run(&self, worker: Arc<Worker>, queue: Arc<dyn Consumer>, shutdown: impl Future<Output = ()>) {
        let slots = Arc::new(Semaphore::new(self.concurrency.max(1)));
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let deliveries = tokio::select! {
                _ = &mut shutdown => break,
                d = queue.receive(1, Duration::from_secs(1)) => d,
            };
            let Some(delivery) = deliveries.into_iter().next() else { continue };
            let (worker, queue, runner) = (worker.clone(), queue.clone(), self.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let disposition = worker.process(&delivery.body, Instant::now() + runner.job_time).await;
                if disposition.ack() {
                    queue.ack(delivery.receipt);
                } else {
                    let backoff =
                        runner.retry_delay.saturating_mul(1 << delivery.receive_count.min(5).saturating_sub(1));
                    queue.nack(delivery.receipt, backoff.min(Duration::from_secs(60)));
                }
            });
        }
        // Wait for what is in flight: every permit back means every task finished.
        let _ = slots.acquire_many(self.concurrency.max(1) as u32).await;
    }
}
