//! One plugin hook call as the request path makes it: inside its span when
//! the request is traced, with the span's outcome set from the hook's
//! failure. Shared by the chain (`pipeline.rs`) and plugin routes.

use bytes::Bytes;

use crate::plugins::{HookError, Plugin};
use crate::telemetry::{CallSpan, InSpan};

/// `plugin.call(hook, …)`, inside `span` when the request is traced: the
/// span is current while the call runs (`telemetry/current.rs`), for the
/// host functions' spans and for the log lines written meanwhile, which
/// name it. The span comes boxed
/// ([`SpanParent::hook`](crate::telemetry::SpanParent::hook)).
#[inline]
pub(crate) async fn call_hook(
    plugin: &Plugin,
    hook: &'static str,
    input: Bytes,
    ext: http::Extensions,
    span: Option<Box<CallSpan>>,
) -> (Result<Bytes, HookError>, http::Extensions) {
    // One `.await` for both cases: each await point of a call's future gets
    // its own slot in this future, so two would double its size (and the
    // bytes copied with it on every hook call).
    let current = span.as_deref().map(CallSpan::parent);
    let (result, ext) = InSpan::new(plugin.call(hook, input, ext), current).await;
    if let Some(span) = span {
        (*span).end(
            result
                .as_ref()
                .err()
                .map(|e| (e.failure.kind(), e.to_string())),
        );
    }
    (result, ext)
}
