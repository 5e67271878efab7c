//! The WebSocket's outgoing side, bounded in time: a client that stops reading stalls the
//! socket, and a send that cannot complete within the deadline ends the connection. Nothing
//! queues behind a stalled send (the subscriptions of that connection are not polled while it
//! waits), so a slow client costs one message of memory, and is then let go.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::Sleep;

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
                Poll::Ready(Err(axum::Error::new(SlowClient(deadline))))
            }
        }
    }
}

/// Why a connection was ended.
#[derive(Clone, Debug, thiserror::Error)]
#[error("too slow: the client read nothing for {0:?} while messages waited")]
pub struct SlowClient(Duration);

impl SlowClient {
    /// The slow client a failed send was ended for, if that is why it failed.
    pub fn of(error: &axum::Error) -> Option<&SlowClient> {
        std::error::Error::source(error).and_then(|inner| inner.downcast_ref::<SlowClient>())
    }
}

/// How long a slow client's close frame may wait for room: a client that was only paused
/// (a phone waking up) then reads why it was disconnected; one that never reads costs no more.
pub const SLOW_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Ends the connection of a client too slow to read, and tells it why (close code 1008,
/// policy) if its socket makes room for that within [`SLOW_CLOSE_GRACE`], however short the
/// send deadline is.
pub async fn close_too_slow<S>(sink: &mut SendDeadline<S>, why: &SlowClient)
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    tracing::info!(
        deadline_ms = why.0.as_millis() as u64,
        "disconnected a WebSocket client too slow to read its messages"
    );
    let frame = CloseFrame {
        code: close_code::POLICY,
        reason: why.to_string().into(),
    };
    let close = sink.inner.send(Message::Close(Some(frame)));
    let _ = tokio::time::timeout(SLOW_CLOSE_GRACE, close).await;
}

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

/// Passes `stream` through, noting whether it ended because the client sent a message larger
/// than the connection allows.
pub fn watch_for_oversized<S>(stream: S) -> (impl Stream<Item = S::Item>, Arc<AtomicBool>)
where
    S: Stream<Item = Result<Message, axum::Error>>,
{
    let too_big = Arc::new(AtomicBool::new(false));
    let seen = too_big.clone();
    let stream = stream.inspect(move |item| {
        if let Err(error) = item {
            if is_too_big(error) {
                seen.store(true, Ordering::Relaxed);
            }
        }
    });
    (stream, too_big)
}

fn is_too_big(error: &axum::Error) -> bool {
    std::error::Error::source(error)
        .and_then(|inner| inner.downcast_ref::<tungstenite::Error>())
        .is_some_and(|inner| matches!(inner, tungstenite::Error::Capacity(_)))
}

/// Tells the client why its connection ends (close code 1009, "message too big"), within the
/// sink's own send deadline.
pub async fn close_too_big<S>(sink: &mut S, limit: usize)
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    let frame = CloseFrame {
        code: close_code::SIZE,
        reason: format!("message too big: the limit is {limit} bytes").into(),
    };
    tracing::info!(
        limit,
        "closed a WebSocket that sent a message over the limit"
    );
    let _ = sink.send(Message::Close(Some(frame))).await;
}
