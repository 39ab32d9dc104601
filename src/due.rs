//! A timer for one deadline after another on the same object, each met far
//! more often than not: the upstream answer's deadline on a pooled
//! connection, set afresh for every request it carries.
//!
//! `tokio::time::timeout` puts a timer into the runtime's timer wheel when
//! it is first polled and takes it out when it is dropped: twice a request,
//! each under the timer driver's lock, and together with the drop about 2%
//! of a small GET's instructions. A [`DueTimer`] is set once and left set
//! while deadlines come later than the one it is set for; when it fires
//! before the deadline asked for now, it is set again for that one. With a
//! response timeout of a minute and requests coming in a stream, it is set
//! about once a minute, not twice a request. It never fires late. A timer
//! left set on a connection idle in the pool fires once more, waking for
//! nothing the task that last waited on it (a wake-up a timeout at most,
//! against two timer-wheel changes a request).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::runtime::{Handle, Id};
use tokio::time::{Instant, Sleep};

/// A timer kept across deadlines (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct DueTimer {
    /// The timer, and the runtime whose timer wheel holds it.
    armed: Option<(Pin<Box<Sleep>>, Id)>,
}

impl DueTimer {
    /// Ready once `due` has passed; the timer is set for it only if it is
    /// not set already for `due` or earlier. Must be polled within a tokio
    /// runtime; a timer left in another runtime's wheel (which may have
    /// shut down) is replaced, not polled.
    pub(crate) fn poll_until(&mut self, due: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let runtime = Handle::current().id();
        let sleep = match &mut self.armed {
            Some((sleep, armed_in)) if *armed_in == runtime => sleep,
            armed => {
                &mut armed
                    .insert((Box::pin(tokio::time::sleep_until(due)), runtime))
                    .0
            }
        };
        loop {
            if sleep.deadline() > due {
                sleep.as_mut().reset(due);
            }
            match sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                // Set for `due` or later, and fired: `due` has passed.
                Poll::Ready(()) if sleep.deadline() >= due => return Poll::Ready(()),
                // Fired for an earlier deadline.
                Poll::Ready(()) => sleep.as_mut().reset(due),
            }
        }
    }

    /// Waits for `work`, unless `due` (if any) passes first (`None`).
    pub(crate) async fn before<T>(
        &mut self,
        due: Option<Instant>,
        work: impl Future<Output = T>,
    ) -> Option<T> {
        let mut work = std::pin::pin!(work);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(done) = work.as_mut().poll(cx) {
                return Poll::Ready(Some(done));
            }
            match due {
                Some(due) => self.poll_until(due, cx).map(|()| None),
                None => Poll::Pending,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ready(timer: &mut DueTimer, due: Instant) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        timer.poll_until(due, &mut cx).is_ready()
    }

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_deadline_not_before() {
        let mut timer = DueTimer::default();
        let due = Instant::now() + Duration::from_secs(10);
        assert!(!ready(&mut timer, due));
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(!ready(&mut timer, due));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(ready(&mut timer, due));
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_leaves_the_timer_set_and_waits_past_its_firing() {
        let mut timer = DueTimer::default();
        let first = Instant::now() + Duration::from_secs(10);
        assert!(!ready(&mut timer, first));
        // The next request's deadline is later: the timer stays set for
        // the first, and its firing then does not end the second's wait.
        tokio::time::advance(Duration::from_secs(4)).await;
        let second = Instant::now() + Duration::from_secs(10);
        assert!(!ready(&mut timer, second));
        assert_eq!(
            timer.armed.as_ref().map(|(sleep, _)| sleep.deadline()),
            Some(first)
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(
            !ready(&mut timer, second),
            "fired for the first deadline, not the second"
        );
        assert_eq!(
            timer.armed.as_ref().map(|(sleep, _)| sleep.deadline()),
            Some(second)
        );
        tokio::time::advance(Duration::from_millis(3_999)).await;
        assert!(!ready(&mut timer, second));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(ready(&mut timer, second));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_sets_the_timer_sooner() {
        let mut timer = DueTimer::default();
        assert!(!ready(&mut timer, Instant::now() + Duration::from_secs(60)));
        let sooner = Instant::now() + Duration::from_secs(5);
        assert!(!ready(&mut timer, sooner));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(ready(&mut timer, sooner));
    }

    #[tokio::test(start_paused = true)]
    async fn before_gives_the_work_or_none_once_the_deadline_passed() {
        let mut timer = DueTimer::default();
        let due = Some(Instant::now() + Duration::from_secs(1));
        assert_eq!(timer.before(due, async { 7 }).await, Some(7));
        let slow = tokio::time::sleep(Duration::from_secs(2));
        let started = Instant::now();
        assert_eq!(timer.before(due, slow).await, None);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        // Without a deadline, only the work ends the wait.
        let slow = async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            8
        };
        assert_eq!(timer.before(None, slow).await, Some(8));
    }

    #[test]
    fn a_timer_set_in_a_runtime_since_shut_down_is_replaced_not_polled() {
        let mut timer = DueTimer::default();
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        first.block_on(async {
            assert!(!ready(&mut timer, Instant::now() + Duration::from_secs(60)));
        });
        drop(first);
        // Polling the old runtime's timer would panic (its driver is gone).
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        second.block_on(async {
            let due = Instant::now() + Duration::from_secs(1);
            assert!(!ready(&mut timer, due));
            tokio::time::advance(Duration::from_secs(1)).await;
            assert!(ready(&mut timer, due));
        });
    }
}
