//! `events`: publish and subscribe by topic.
//!
//! Topics are dot-separated names (`keyval.changed`); patterns use `*` and `?`
//! wildcards. A grant lists what a plugin may publish and what it subscribes
//! to: `"events": {"publish": ["keyval.*"], "subscribe": ["worker_*"]}`.
//! Subscribed events reach the plugin's `on_event` export. The host publishes
//! the lifecycle topics [`WORKER_SPAWN`], [`WORKER_TERMINATE`] and
//! [`PLUGIN_LOADED`]; guests cannot publish those.
//!
//! A plugin route can also hand a client a live stream: a `handle` response
//! head with `"events": ["keyval.*"]` becomes a `text/event-stream` of every
//! matching event (within the plugin's `subscribe` grant), ending when the
//! client leaves.
//!
//! `events_publish({"topic", "data"})` → `null`; a topic that is empty or
//! holds a control character (CR, LF, ...) is refused (`invalid_argument`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

use super::hosts::glob_match;
use super::state::no_context;
use super::{Capability, CapabilitySpec, GrantContext, GrantValue, string_list};
use crate::wasm::{HostError, HostFunction, ResultEncoding};

/// Published when the pool creates an app instance.
pub const WORKER_SPAWN: &str = "worker_spawn";
/// Published when the pool retires an app instance.
pub const WORKER_TERMINATE: &str = "worker_terminate";
/// Published when a plugin has loaded (and after a reload).
pub const PLUGIN_LOADED: &str = "plugin_loaded";

const RESERVED: [&str; 3] = [WORKER_SPAWN, WORKER_TERMINATE, PLUGIN_LOADED];

/// Largest event payload (JSON text).
pub(super) const MAX_EVENT_BYTES: usize = 256 << 10;
/// Longest topic pattern: room for a topic that embeds a hex-encoded key of
/// 2 KiB (keyval's watch streams).
pub(super) const MAX_PATTERN_LEN: usize = 4200;

/// The `events` capability.
pub(super) struct EventsSpec;

impl CapabilitySpec for EventsSpec {
    fn capability(&self) -> Capability {
        Capability::EVENTS
    }

    fn syntax(&self) -> &'static str {
        "\"events\": {\"publish\": [\"myplugin.*\"], \"subscribe\": [\"worker_*\"]}"
    }

    fn parse(&self, declared: &Value, _: &GrantContext<'_>) -> Result<Option<GrantValue>, String> {
        let map = match declared {
            Value::Bool(false) => return Ok(None),
            Value::Object(map) => map,
            other => return Err(format!("expected an object, found {other}")),
        };
        for key in map.keys() {
            if key != "publish" && key != "subscribe" {
                return Err(format!(
                    "unknown key `{key}` (allowed: `publish`, `subscribe`)"
                ));
            }
        }
        let patterns = |key: &str| -> Result<Vec<TopicPattern>, String> {
            map.get(key)
                .map(|v| string_list(v, &format!("`{key}`")))
                .transpose()?
                .unwrap_or_default()
                .iter()
                .map(|p| TopicPattern::parse(p))
                .collect()
        };
        Ok(Some(Arc::new(EventsGrant {
            publish: patterns("publish")?,
            subscribe: patterns("subscribe")?,
        })))
    }

    fn host_functions(&self) -> Vec<HostFunction> {
        vec![HostFunction::new_sync(
            "events_publish",
            Capability::EVENTS,
            1,
            ResultEncoding::Envelope,
            |state, args| {
                (|| {
                    let cx = state.context().ok_or_else(no_context)?.clone();
                    let input = state
                        .block(args[0])
                        .map_err(|e| HostError::invalid_argument(e.to_string()))?;
                    if input.len() > MAX_EVENT_BYTES {
                        return Err(HostError::new(
                            "limit_exceeded",
                            format!("an event may be at most {MAX_EVENT_BYTES} bytes"),
                        ));
                    }
                    let req: PublishReq = serde_json::from_slice(input)
                        .map_err(|e| HostError::invalid_argument(e.to_string()))?;
                    // A topic names the events of a stream (`text/event-stream`),
                    // where a line break would end the field.
                    if req.topic.is_empty() || req.topic.chars().any(char::is_control) {
                        return Err(HostError::invalid_argument(format!(
                            "topic {:?} is not valid: a topic is a non-empty name without control characters (CR, LF, ...), e.g. `myplugin.changed`",
                            req.topic
                        )));
                    }
                    let grant = state.grants().get::<EventsGrant>(Capability::EVENTS);
                    if RESERVED.contains(&req.topic.as_str()) {
                        return Err(HostError::new(
                            "capability_denied",
                            format!("`{}` is published by the host only", req.topic),
                        ));
                    }
                    if !grant.is_some_and(|g| g.may_publish(&req.topic)) {
                        state.record_denial(Capability::EVENTS);
                        return Err(HostError::new(
                            "capability_denied",
                            format!(
                                "publishing to `{}` is not granted; add it to the manifest's `capabilities`: {{\"events\": {{\"publish\": [\"{}\"]}}}}",
                                req.topic, req.topic
                            ),
                        ));
                    }
                    cx.host.events.publish(Event {
                        topic: req.topic,
                        data: req.data,
                        source: cx.name.clone(),
                    });
                    Ok(None)
                })()
            },
        )]
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishReq {
    topic: String,
    #[serde(default)]
    data: Value,
}

/// A topic glob.
///
/// ```
/// use buntime::capabilities::TopicPattern;
/// let p = TopicPattern::parse("keyval.*").unwrap();
/// assert!(p.matches("keyval.changed"));
/// assert!(!p.matches("authn.login"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicPattern(String);

impl TopicPattern {
    /// Parses a pattern of letters, digits, `.`, `-`, `_`, `:`, `/`, `@` and
    /// wildcards, at most 4200 bytes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let ok = |c: char| c.is_ascii_alphanumeric() || "._-:/@*?".contains(c);
        if text.is_empty() || text.len() > MAX_PATTERN_LEN || !text.chars().all(ok) {
            return Err(format!(
                "invalid topic pattern `{text}`: use letters, digits, `.`, `-`, `_`, `:`, `/`, `@` and the wildcards `*` and `?`"
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// Whether `topic` matches.
    pub fn matches(&self, topic: &str) -> bool {
        glob_match(self.0.as_bytes(), topic.as_bytes())
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The parsed `events` grant.
#[derive(Debug, Clone, Default)]
pub struct EventsGrant {
    /// What may be published.
    pub publish: Vec<TopicPattern>,
    /// What is delivered to `on_event` and may be streamed to clients.
    pub subscribe: Vec<TopicPattern>,
}

impl EventsGrant {
    /// Whether publishing `topic` is allowed.
    pub fn may_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|p| p.matches(topic))
    }

    /// Whether `topic` is subscribed.
    pub fn subscribes(&self, topic: &str) -> bool {
        self.subscribe.iter().any(|p| p.matches(topic))
    }

    /// Whether a requested stream `pattern` stays within the subscriptions.
    pub fn covers(&self, pattern: &str) -> bool {
        self.subscribe.iter().any(|p| p.matches(pattern))
    }
}

pub use buntime_pdk::hooks::Event;

/// The process-wide event bus. Cheap to clone; slow subscribers skip events
/// rather than slow publishers down.
#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
    interest: Arc<Interest>,
}

/// Who could receive a lifecycle event: building and sending two of them
/// for every fresh instance (`ttl: 0`) is wasted when nobody listens.
#[derive(Debug, Default)]
struct Interest {
    /// A plugin of the current chain subscribes to a lifecycle topic.
    plugins: AtomicBool,
    /// Event streams open right now (any of them may match).
    streams: AtomicUsize,
}

/// Held by an open event stream; counts it as a listener until dropped.
#[derive(Debug)]
pub struct StreamTicket(Arc<Interest>);

impl Drop for StreamTicket {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(1024).0,
            interest: Arc::default(),
        }
    }
}

impl EventBus {
    /// Whether a [`WORKER_SPAWN`] or [`WORKER_TERMINATE`] event would reach
    /// anyone (a subscribed plugin or an open stream).
    pub fn wants_lifecycle(&self) -> bool {
        self.interest.plugins.load(Ordering::Relaxed)
            || self.interest.streams.load(Ordering::Relaxed) > 0
    }

    /// Records whether the current plugin chain subscribes to lifecycle topics.
    pub fn set_lifecycle_subscribers(&self, any: bool) {
        self.interest.plugins.store(any, Ordering::Relaxed);
    }

    /// Counts an event stream as a listener while the ticket lives.
    pub fn stream_opened(&self) -> StreamTicket {
        self.interest.streams.fetch_add(1, Ordering::Relaxed);
        StreamTicket(self.interest.clone())
    }

    /// Publishes `event` to every current subscriber.
    pub fn publish(&self, event: Event) {
        let _ = self.sender.send(event);
    }

    /// Publishes a host event.
    pub fn publish_host(&self, topic: &str, data: Value) {
        self.publish(Event {
            topic: topic.to_owned(),
            data,
            source: "buntime".into(),
        });
    }

    /// A new subscription to every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::EventBus;

    #[test]
    fn lifecycle_events_are_wanted_only_while_someone_listens() {
        let bus = EventBus::default();
        assert!(!bus.wants_lifecycle(), "nobody listens on a new bus");
        let stream = bus.stream_opened();
        let again = bus.clone().stream_opened();
        assert!(bus.wants_lifecycle());
        drop(stream);
        assert!(bus.wants_lifecycle(), "one stream is still open");
        drop(again);
        assert!(!bus.wants_lifecycle());
        bus.set_lifecycle_subscribers(true);
        assert!(bus.wants_lifecycle(), "a plugin subscribes");
        bus.set_lifecycle_subscribers(false);
        assert!(!bus.wants_lifecycle());
    }
}
