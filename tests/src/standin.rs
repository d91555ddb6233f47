//! The skeleton every SaaS stand-in shares: a server on a free loopback port that stops on
//! request or when dropped ([`StandInServer`]), waits that end early once it stops
//! ([`Stop::pause`], for latencies and slow answers), a log of requests in arrival order
//! ([`RequestLog`]) and queues of scripted replies per path ([`Script`]). Each stand-in adds
//! its own routes, request record and reply type.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Locks, carrying on with the data if another test thread panicked while holding the lock:
/// a panicking test must not take a stand-in down for the others.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The stop signal of one stand-in, shared by its server and its handlers.
#[derive(Clone)]
pub struct Stop(Arc<watch::Sender<bool>>);

impl Default for Stop {
    fn default() -> Self {
        Stop(Arc::new(watch::channel(false).0))
    }
}

impl Stop {
    fn signal(&self) {
        self.0.send_replace(true);
    }

    /// Resolves once the stand-in stops.
    pub async fn stopped(&self) {
        let mut stop = self.0.subscribe();
        let _ = stop.wait_for(|stop| *stop).await;
    }

    /// Sleeps, unless the stand-in stops first (then `false`).
    pub async fn pause(&self, duration: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(duration) => true,
            _ = self.stopped() => false,
        }
    }
}

/// A stand-in's HTTP server on `127.0.0.1` and a free port. Stops serving on
/// [`StandInServer::shutdown`] or when dropped.
pub struct StandInServer {
    addr: SocketAddr,
    stop: Stop,
    task: Option<JoinHandle<()>>,
}

impl StandInServer {
    /// Binds `127.0.0.1:0` and serves `router` until `stop` is signalled; `name` is for
    /// panics and logs.
    pub async fn start(name: &'static str, router: Router, stop: Stop) -> Self {
        crate::logs::init();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding 127.0.0.1:0 for the {name} stand-in: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("reading the {name} stand-in's address: {e}"));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move { stopped.stopped().await });
            if let Err(error) = serve.await {
                tracing::error!(%error, "{name} stand-in stopped");
            }
        });
        StandInServer { addr, stop, task: Some(task) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets answers in flight finish for at most `grace` (waits through
    /// [`Stop::pause`] end at once), then cuts off whatever is left.
    pub async fn shutdown(mut self, grace: Duration) {
        self.stop.signal();
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(grace, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for StandInServer {
    fn drop(&mut self) {
        self.stop.signal();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Every request a stand-in received, in arrival order.
pub struct RequestLog<R>(Mutex<Vec<R>>);

impl<R> Default for RequestLog<R> {
    fn default() -> Self {
        RequestLog(Mutex::new(Vec::new()))
    }
}

impl<R: Clone> RequestLog<R> {
    /// Records `request`; returns its place, for [`RequestLog::update`] once it is answered.
    pub fn push(&self, request: R) -> usize {
        let mut log = lock(&self.0);
        log.push(request);
        log.len() - 1
    }

    pub fn update(&self, index: usize, change: impl FnOnce(&mut R)) {
        if let Some(request) = lock(&self.0).get_mut(index) {
            change(request);
        }
    }

    pub fn all(&self) -> Vec<R> {
        lock(&self.0).clone()
    }

    pub fn matching(&self, wanted: impl Fn(&R) -> bool) -> Vec<R> {
        lock(&self.0).iter().filter(|r| wanted(r)).cloned().collect()
    }

    pub fn count(&self, wanted: impl Fn(&R) -> bool) -> usize {
        lock(&self.0).iter().filter(|r| wanted(r)).count()
    }

    /// Forgets what was recorded (long benchmarks).
    pub fn clear(&self) {
        lock(&self.0).clear();
    }
}

/// Scripted replies, one first-in-first-out queue per path prefix.
pub struct Script<R>(Mutex<Vec<(String, VecDeque<R>)>>);

impl<R> Default for Script<R> {
    fn default() -> Self {
        Script(Mutex::new(Vec::new()))
    }
}

impl<R> Script<R> {
    /// Queues `replies` for the next requests whose path starts with `prefix`.
    pub fn push(&self, prefix: &str, replies: impl IntoIterator<Item = R>) {
        let mut queues = lock(&self.0);
        match queues.iter_mut().find(|(queued, _)| queued == prefix) {
            Some((_, queue)) => queue.extend(replies),
            None => queues.push((prefix.to_owned(), replies.into_iter().collect())),
        }
    }

    /// The next reply for a request to `path`: from the longest matching prefix that still
    /// has one; `None` when no reply is waiting.
    pub fn next(&self, path: &str) -> Option<R> {
        lock(&self.0)
            .iter_mut()
            .filter(|(prefix, queue)| path.starts_with(prefix.as_str()) && !queue.is_empty())
            .max_by_key(|(prefix, _)| prefix.len())
            .and_then(|(_, queue)| queue.pop_front())
    }

    /// Replies still queued under exactly `prefix`.
    pub fn pending(&self, prefix: &str) -> usize {
        lock(&self.0).iter().find(|(queued, _)| queued == prefix).map_or(0, |(_, queue)| queue.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_with_a_reply_waiting_answers() {
        let script = Script::default();
        script.push("/v1/customers", ["short"]);
        script.push("/v1/customers/", ["long-1", "long-2"]);
        assert_eq!(script.next("/v1/customers/u1/attributes"), Some("long-1"));
        assert_eq!(script.pending("/v1/customers/"), 1);
        assert_eq!(script.next("/v1/customers/u1/attributes"), Some("long-2"));
        assert_eq!(script.next("/v1/customers/u1/attributes"), Some("short"));
        assert_eq!(script.next("/v1/customers/u1/attributes"), None);
        assert_eq!(script.next("/v1/campaigns"), None);
    }

    #[tokio::test]
    async fn a_pause_ends_early_once_the_stand_in_stops() {
        let stop = Stop::default();
        assert!(stop.pause(Duration::from_millis(1)).await);
        let server = StandInServer::start("test", Router::new(), stop.clone()).await;
        server.shutdown(Duration::from_secs(1)).await;
        let started = tokio::time::Instant::now();
        assert!(!stop.pause(Duration::from_secs(30)).await);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
