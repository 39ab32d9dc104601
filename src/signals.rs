//! The process signals the gateway handles (SIGTERM, SIGINT, SIGHUP),
//! taken over when asked for rather than when first waited on: until a
//! signal is taken over it takes its default action, which for these is to
//! end the process at once. (Unix only, as the whole gateway is: its
//! sockets use Linux options.)

use std::future::Future;

use tokio::signal::unix::SignalKind;

/// One signal, taken over.
pub struct Signal {
    /// `None` if it could not be taken over: it then never arrives here.
    handler: Option<tokio::signal::unix::Signal>,
}

impl Signal {
    /// Takes SIGHUP over now (on the runtime).
    pub fn hangup() -> Signal {
        Signal::take_over(SignalKind::hangup())
    }

    fn take_over(kind: SignalKind) -> Signal {
        let handler = match tokio::signal::unix::signal(kind) {
            Ok(handler) => Some(handler),
            Err(error) => {
                tracing::warn!(
                    %error,
                    signal = kind.as_raw_value(),
                    "cannot handle a signal: it will take its default action"
                );
                None
            }
        };
        Signal { handler }
    }

    /// Resolves when the signal arrives (again); never without a handler.
    pub async fn received(&mut self) {
        if let Some(handler) = &mut self.handler {
            if handler.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, and logs that the process is
/// shutting down. Both are taken over when this is called.
pub fn shutdown() -> impl Future<Output = ()> {
    let mut interrupt = Signal::take_over(SignalKind::interrupt());
    let mut term = Signal::take_over(SignalKind::terminate());
    async move {
        tokio::select! {
            () = interrupt.received() => {}
            () = term.received() => {}
        }
        tracing::info!("shutting down");
    }
}
