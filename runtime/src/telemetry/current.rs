//! The span current on this thread: the server span of the sampled request
//! being polled, or the span of the guest call running inside it.
//!
//! [`InSpan`] makes a span current around every poll of a future (the
//! request's in the service, each guest call's in the server), and puts the
//! one that was current before back after it. Whatever runs inside starts
//! its spans under the current one: the hooks and the app call under the
//! server span, the `http` and `sql` host functions under the call that
//! made them ([`SpanParent::with_current`]). The log lines written
//! meanwhile name the same span (`log_ids.rs`).
//!
//! A thread-local rather than a value in the request's and the call's
//! `http::Extensions` (where the span parent used to travel): an extension
//! is a boxed value in a hash map, allocated, hashed, looked up and freed
//! for every call of a sampled request, which was about a tenth of what
//! tracing added to it. Here a poll costs two thread-local writes. It is
//! the usual way to carry a trace context in async Rust (`tracing`'s
//! current span, OpenTelemetry's `Context`); a guest call runs inside its
//! caller's poll, on a fiber or not, so its host functions find the call's
//! span here. The thread-local holds a pointer to the span the polled
//! [`InSpan`] borrows, rather than a copy of it: a value with a destructor
//! in a thread-local is checked for registration on every access, and a
//! span's context is about 80 bytes to move in and out on every poll.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

use super::SpanParent;
use super::log_ids;

thread_local! {
    /// The span whose work runs on this thread now: the one the
    /// [`InSpan`] being polled borrows, set for the length of that poll.
    static CURRENT: Cell<Option<NonNull<SpanParent>>> = const { Cell::new(None) };
}

impl SpanParent {
    /// `f` of the span current on this thread (`None` outside a sampled
    /// request).
    #[allow(
        unsafe_code,
        reason = "reads the span the InSpan being polled on this thread borrows"
    )]
    pub(crate) fn with_current<R>(f: impl FnOnce(Option<&SpanParent>) -> R) -> R {
        // SAFETY: `CURRENT` is set only by `InSpan::poll`, on this thread,
        // to a span the `InSpan` borrows (so it outlives the poll), and is
        // put back before that poll returns or unwinds; while it is set,
        // the span is only read. The reference given to `f` cannot outlive
        // this call (`f` is generic over its lifetime).
        f(CURRENT.get().map(|span| unsafe { span.as_ref() }))
    }

    /// A copy of the span current on this thread.
    pub(crate) fn current() -> Option<SpanParent> {
        Self::with_current(|span| span.cloned())
    }
}

pin_project_lite::pin_project! {
    /// A future polled with a span current (see the module doc); with
    /// `None`, the future as it is.
    pub(crate) struct InSpan<'a, F> {
        #[pin]
        future: F,
        span: Option<&'a SpanParent>,
    }
}

impl<'a, F> InSpan<'a, F> {
    /// `future`, polled with `span` current.
    pub(crate) fn new(future: F, span: Option<&'a SpanParent>) -> Self {
        Self { future, span }
    }
}

impl<F: Future> Future for InSpan<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Some(span) = *this.span else {
            return this.future.poll(cx);
        };
        let _entered = Entered(CURRENT.replace(Some(NonNull::from(span))));
        log_ids::scoped(span.log_ids(), || this.future.poll(cx))
    }
}

/// Puts the span that was current before back, also when the poll panics.
struct Entered(Option<NonNull<SpanParent>>);

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.set(self.0);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::TraceConfig;
    use crate::telemetry::Telemetry;

    fn current_ids() -> Option<log_ids::TraceIds> {
        SpanParent::with_current(|span| span.map(SpanParent::log_ids))
    }

    #[test]
    fn a_span_is_current_only_while_its_future_is_polled() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // Nothing listens there; nothing is exported before the test
            // ends (the first export waits for the schedule's delay).
            let vars = HashMap::from([(
                "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
                "http://127.0.0.1:9".to_owned(),
            )]);
            let config = TraceConfig::from_map(&vars).unwrap().expect("tracing on");
            let telemetry = Telemetry::start(Some(&config)).unwrap();
            let req = http::Request::new(());
            let request = telemetry.request(&req, None).expect("sampled");
            let hook = request
                .parent()
                .hook(&crate::telemetry::CallSpanFields::hook(
                    "plugin",
                    "on_request",
                ));
            let (server, call) = (request.parent().log_ids(), hook.parent().log_ids());
            assert_ne!(server, call);

            let seen = InSpan::new(
                async {
                    let mut seen = vec![current_ids(), log_ids::current()];
                    tokio::task::yield_now().await;
                    seen.push(current_ids());
                    // A call inside the request: its own span while it runs.
                    let inner = InSpan::new(
                        async {
                            tokio::task::yield_now().await;
                            (current_ids(), log_ids::current())
                        },
                        Some(hook.parent()),
                    )
                    .await;
                    seen.extend([inner.0, inner.1, current_ids()]);
                    // A copy outlives the poll it was taken in.
                    seen.push(telemetry.current().map(|span| span.log_ids()));
                    // With tracing off the server asks for nothing.
                    assert!(Telemetry::off().current().is_none());
                    seen
                },
                Some(request.parent()),
            )
            .await;
            let expected = [server, server, server, call, call, server, server];
            assert_eq!(seen, expected.map(Some));
            assert_eq!(current_ids(), None);
            assert_eq!(log_ids::current(), None);
            // Without a span, the future runs as it is.
            let plain = InSpan::new(async { current_ids() }, None).await;
            assert_eq!(plain, None);
        });
    }
}
