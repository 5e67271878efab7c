//! The WebSocket's outgoing side, bounded in time: a client that stops reading stalls the
//! socket, and a send that cannot complete within the deadline ends the connection. Nothing
//! queues behind a stalled send (the subscriptions of that connection are not polled while it
//! waits), so a slow client costs one message of memory, and is then let go.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ws::Message;
use futures::Sink;
use tokio::time::Sleep;

/// Connections ended because a send missed its deadline, since start.
pub static SLOW_CLIENTS_DISCONNECTED: AtomicU64 = AtomicU64::new(0);

/// A sink whose readiness and flushes must complete within `deadline`.
pub struct SendDeadline<S> {
    inner: S,
    deadline: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> SendDeadline<S> {
    pub fn new(inner: S, deadline: Duration) -> Self {
        Self {
            inner,
            deadline,
            timer: None,
        }
    }

    /// `outcome` of the inner sink, or an error once the client has kept it pending for the
    /// whole deadline.
    fn bounded(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<Result<(), axum::Error>>,
    ) -> Poll<Result<(), axum::Error>> {
        if outcome.is_ready() {
            self.timer = None;
            return outcome;
        }
        let deadline = self.deadline;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.timer = None;
                SLOW_CLIENTS_DISCONNECTED.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    deadline_ms = deadline.as_millis() as u64,
                    "disconnected a WebSocket client too slow to read its messages"
                );
                Poll::Ready(Err(axum::Error::new(SlowClient(deadline))))
            }
        }
    }
}

/// Why a connection was ended.
#[derive(Debug, thiserror::Error)]
#[error("the client read nothing for {0:?} while messages waited (see --ws-send-timeout-ms)")]
pub struct SlowClient(Duration);

impl<S> Sink<Message> for SendDeadline<S>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    type Error = axum::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let outcome = Pin::new(&mut self.inner).poll_ready(cx);
        self.bounded(cx, outcome)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        Pin::new(&mut self.inner).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let outcome = Pin::new(&mut self.inner).poll_flush(cx);
        self.bounded(cx, outcome)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let outcome = Pin::new(&mut self.inner).poll_close(cx);
        self.bounded(cx, outcome)
    }
}
