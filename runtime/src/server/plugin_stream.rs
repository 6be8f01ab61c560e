//! Server-sent-event streams from plugin routes: a `handle` response whose
//! head lists `events` becomes a live `text/event-stream` of the published
//! events matching them (within the plugin's subscribe grant), optionally
//! preceded by the response body as an initial event, optionally driven by
//! a plugin export (`poll`) that produces the events itself, optionally
//! narrowed by conditions on the payload's fields (`match`) — how keyval's
//! queue listener hands each message to exactly one stream.
//!
//! Event names come from guests (the head's `event`, a poll's items, topics)
//! and an SSE field ends at a line break, so every name goes through
//! [`event_name`], which escapes CR and LF: a name can neither add a field
//! to the stream nor make the SSE writer panic.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use buntime_pdk::ResponseHead;
use buntime_pdk::http::{FieldMatch, StreamPoll};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::Deserialize;
use tokio::sync::broadcast;

use super::error::bad_gateway;
use super::error::{ApiError, ErrorDetail, ErrorKind};
use crate::capabilities::{
    Capability, Event, EventsGrant, StreamRefused, StreamTicket, TopicPattern,
};
use crate::plugins::Plugin;

/// Shortest interval between two `poll` calls.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How often a quiet stream sends a `ping` event.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often a quiet stream checks for shutdown.
const WAKE: Duration = Duration::from_millis(250);

/// `name` as an SSE `event` field: CR and LF (which would end the field and
/// start a forged one) written as the two characters `\r` and `\n`.
pub(crate) fn event_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains(['\r', '\n']) {
        name.replace('\r', "\\r").replace('\n', "\\n").into()
    } else {
        name.into()
    }
}

/// An SSE event named `name` (escaped by [`event_name`]).
fn named(name: &str) -> SseEvent {
    SseEvent::default().event(event_name(name))
}

/// Turns `head` (with `events`) into a live event stream for `client`, or
/// refuses it when the caps on open streams are reached.
pub(super) fn event_stream(
    plugin: &Arc<Plugin>,
    head: ResponseHead,
    stopping: &Arc<AtomicBool>,
    detail: ErrorDetail,
    client: Option<std::net::IpAddr>,
) -> Response {
    let patterns = head.events;
    let grant = plugin.grants.get::<EventsGrant>(Capability::EVENTS);
    let mut parsed = Vec::new();
    for p in &patterns {
        let pattern = match TopicPattern::parse(p) {
            Ok(t) => t,
            Err(e) => {
                let e = plugin.malformed("handle", e);
                return bad_gateway(&e);
            }
        };
        if !grant.is_some_and(|g| g.covers(p)) {
            tracing::warn!(
                plugin = plugin.name(),
                pattern = p,
                "capability `events` denied: streaming a topic outside the subscribe grant"
            );
            return ApiError::new(ErrorKind::CapabilityDenied, format!(
                    "plugin `{}` may not stream `{p}`: grant it in the manifest (`capabilities`: {{\"events\": {{\"subscribe\": [\"{p}\"]}}}})",
                    plugin.name()
                ),
            )
            .into_response();
        }
        parsed.push(pattern);
    }
    let Some(cx) = plugin
        .instances
        .module()
        .options()
        .guest_context::<crate::capabilities::GuestContext>()
    else {
        return ApiError::new(ErrorKind::Internal, "the plugin has no host context")
            .into_response();
    };
    let ticket = match cx.host.events.open_stream(client) {
        Ok(t) => t,
        Err(e) => return stream_refused(&e),
    };
    let name = head.event;
    let matching = head.matching;
    let mut pending = VecDeque::new();
    if let Some(body) = head.body {
        pending.push_back(named(name.as_deref().unwrap_or("initial")).data(body));
    }
    let poll = head.poll.map(|p| Poller {
        plugin: Arc::downgrade(plugin),
        interval: Duration::from_millis(p.interval_ms).max(MIN_POLL_INTERVAL),
        due: true,
        last: Instant::now(),
        spec: p,
    });
    let state = StreamState {
        _listening: ticket,
        rx: cx.host.events.subscribe(),
        patterns: parsed,
        matching,
        stopping: stopping.clone(),
        detail,
        name,
        pending,
        poll,
    };
    // Ends when the client leaves (the stream is dropped with the
    // connection), when the server shuts down (so the drain is not held),
    // or when a polled plugin is unloaded or fails.
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        let event = s.next().await?;
        Some((Ok::<_, Infallible>(event), s))
    })
    .boxed();
    // The keep-alive is a `ping` event (not a comment) because clients of
    // the original keyval API wait for `ping` to know a quiet stream lives.
    Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(KEEP_ALIVE)
                .event(SseEvent::default().event("ping").data("{}")),
        )
        .into_response()
}

/// The answer to a stream over a cap: 429 when this client has too many
/// open, 503 when the server has.
pub(super) fn stream_refused(e: &StreamRefused) -> Response {
    let kind = match e {
        StreamRefused::Client(_) => ErrorKind::TooManyStreams,
        StreamRefused::Server(_) => ErrorKind::StreamsExhausted,
    };
    tracing::debug!(%e, "event stream refused");
    ApiError::new(kind, e.to_string()).into_response()
}

struct Poller {
    /// Weak, so an open stream never keeps a retired plugin alive.
    plugin: Weak<Plugin>,
    spec: StreamPoll,
    interval: Duration,
    due: bool,
    last: Instant,
}

/// JSON text as one line (an event's `data:`): as written unless it has
/// line breaks (whitespace outside strings), then printed again compactly.
fn one_line(raw: &serde_json::value::RawValue) -> String {
    let text = raw.get();
    if !text.contains(['\n', '\r']) {
        return text.to_owned();
    }
    serde_json::from_str::<serde_json::Value>(text)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

#[derive(Deserialize)]
struct Produced {
    event: String,
    /// Forwarded as the producer wrote it.
    #[serde(default)]
    data: Option<Box<serde_json::value::RawValue>>,
}

struct StreamState {
    /// Counts this stream as a listener for lifecycle events and against
    /// the caps on open streams.
    _listening: StreamTicket,
    rx: broadcast::Receiver<Event>,
    patterns: Vec<TopicPattern>,
    /// Conditions on the payload (the head's `match`): all must pass.
    matching: Vec<FieldMatch>,
    stopping: Arc<AtomicBool>,
    /// Whether a failed poll's detail may reach the client.
    detail: ErrorDetail,
    name: Option<String>,
    pending: VecDeque<SseEvent>,
    poll: Option<Poller>,
}

impl StreamState {
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.stopping.load(Ordering::Relaxed) {
                return None;
            }
            if let Some(p) = &mut self.poll
                && (p.due || p.last.elapsed() >= p.interval)
            {
                p.due = false;
                p.last = Instant::now();
                let plugin = p.plugin.upgrade()?;
                let input = Bytes::from(serde_json::to_vec(&p.spec.input).unwrap_or_default());
                let (result, _) = plugin
                    .call(&p.spec.function, input, http::Extensions::new())
                    .await;
                let produced = result.map_err(|e| e.to_string()).and_then(|out| {
                    serde_json::from_slice::<Vec<Produced>>(&out).map_err(|e| e.to_string())
                });
                match produced {
                    Ok(items) => self.pending.extend(items.into_iter().map(|i| {
                        named(&i.event).data(
                            i.data
                                .as_deref()
                                .map_or_else(|| "null".to_owned(), one_line),
                        )
                    })),
                    Err(e) => {
                        tracing::warn!(
                            plugin = plugin.name(),
                            function = p.spec.function,
                            "event stream poll failed: {e}"
                        );
                        // The client sees the failure, and in production
                        // not its detail (trap text), which the log keeps.
                        let shown = match self.detail {
                            ErrorDetail::Full => e,
                            ErrorDetail::Hidden => {
                                "the stream's producer failed; the server log has the details"
                                    .to_owned()
                            }
                        };
                        return Some(SseEvent::default().event("error").data(shown));
                    }
                }
                continue;
            }
            let wait = match &self.poll {
                Some(p) => WAKE.min(p.interval.saturating_sub(p.last.elapsed())),
                None => WAKE,
            };
            match tokio::time::timeout(wait, self.rx.recv()).await {
                Ok(Ok(event))
                    if self.patterns.iter().any(|p| p.matches(&event.topic))
                        && self.matching.iter().all(|m| m.passes(&event.data)) =>
                {
                    if let Some(p) = &mut self.poll {
                        p.due = true;
                        continue;
                    }
                    return Some(match &self.name {
                        Some(n) => named(n).data(match &event.text {
                            Some(text) => text.to_string(),
                            None => serde_json::to_string(&event.data).unwrap_or_default(),
                        }),
                        None => named(&event.topic)
                            .data(serde_json::to_string(&event).unwrap_or_default()),
                    });
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                // Missed events: a poller must look again.
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    if let Some(p) = &mut self.poll {
                        p.due = true;
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::event_name;

    #[test]
    fn event_names_cannot_break_a_line() {
        assert_eq!(event_name("plain.topic"), "plain.topic");
        assert_eq!(event_name("a\r\ndata: forged"), "a\\r\\ndata: forged");
        // The escaped name is a valid SSE field (axum panics on a line break).
        let _ = axum::response::sse::Event::default().event(event_name("x\ny"));
    }
}
