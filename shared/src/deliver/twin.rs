//! The in-memory twin of every destination's port: records what it is asked to send and
//! answers from a script (success once the script runs out), for unit tests and for the
//! worker's tests that need no HTTP.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::time::Instant;

use super::lock;
use super::send::{Port, SendError};

pub struct Recording<R> {
    attempts: Mutex<Vec<(R, Result<(), SendError>)>>,
    script: Mutex<VecDeque<Result<(), SendError>>>,
}

impl<R> Default for Recording<R> {
    fn default() -> Self {
        Recording { attempts: Mutex::new(Vec::new()), script: Mutex::new(VecDeque::new()) }
    }
}

impl<R: Clone> Recording<R> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers for the next sends, in order.
    pub fn script(&self, outcomes: impl IntoIterator<Item = Result<(), SendError>>) {
        lock(&self.script).extend(outcomes);
    }

    /// What arrived (sends answered with success).
    pub fn delivered(&self) -> Vec<R> {
        lock(&self.attempts).iter().filter(|(_, o)| o.is_ok()).map(|(r, _)| r.clone()).collect()
    }

    /// Every send, whatever it was answered.
    pub fn attempts(&self) -> usize {
        lock(&self.attempts).len()
    }
}

#[async_trait]
impl<R: Clone + Send + Sync> Port<R> for Recording<R> {
    async fn send(&self, request: &R, _deadline: Instant) -> Result<(), SendError> {
        let outcome = lock(&self.script).pop_front().unwrap_or(Ok(()));
        lock(&self.attempts).push((request.clone(), outcome.clone()));
        outcome
    }
}
