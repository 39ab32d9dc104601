//! Request bodies on their way upstream: the route's size limit, and the
//! moment a body has been sent in full (when the response timeout starts).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::Notify;

/// What the forwarder learns about a body while hyper sends it.
#[derive(Debug, Default)]
pub(crate) struct BodyWatch {
    exceeded: AtomicBool,
    finished: AtomicBool,
    notify: Notify,
}

impl BodyWatch {
    /// Whether the body went over its limit (and so failed).
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Acquire)
    }

    /// Resolves once the body has been read to its end.
    pub(crate) async fn finished(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.finished.load(Ordering::Acquire) {
            notified.await;
        }
    }

    fn finish(&self) {
        if !self.finished.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }
}

/// A request body that fails once more than `limit` bytes have passed and
/// reports its end through a [`BodyWatch`].
pub(crate) struct LimitedBody {
    inner: Incoming,
    remaining: u64,
    watch: Arc<BodyWatch>,
}

/// The error a [`LimitedBody`] ends with.
#[derive(Debug, thiserror::Error)]
#[error("request body over the limit")]
struct BodyLimitExceeded;

impl LimitedBody {
    pub(crate) fn new(inner: Incoming, limit: u64) -> (LimitedBody, Arc<BodyWatch>) {
        let watch = Arc::new(BodyWatch::default());
        if inner.is_end_stream() {
            watch.finish();
        }
        let body = LimitedBody {
            inner,
            remaining: limit,
            watch: watch.clone(),
        };
        (body, watch)
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => {
                self.watch.finish();
                return Poll::Ready(None);
            }
            Poll::Pending => return Poll::Pending,
        };
        let length = frame.data_ref().map_or(0, |data| data.len() as u64);
        let Some(left) = self.remaining.checked_sub(length) else {
            self.watch.exceeded.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(BodyLimitExceeded.into())));
        };
        self.remaining = left;
        if self.inner.is_end_stream() {
            self.watch.finish();
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
