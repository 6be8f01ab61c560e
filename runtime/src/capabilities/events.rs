//! `events`: publish and subscribe by topic.
//!
//! Topics are dot-separated names (`keyval.changed`); patterns use `*` and `?`
//! wildcards. A grant lists what a plugin may publish and what it subscribes
//! to: `"events": {"publish": ["keyval.*"], "subscribe": ["worker_*"]}`.
//! Subscribed events reach the plugin's `on_event` export. The host publishes
//! the lifecycle topics [`WORKER_SPAWN`], [`WORKER_TERMINATE`] and
//! [`PLUGIN_LOADED`] and the log feed's `log.*` (`crate::log_feed`); guests
//! cannot publish those.
//!
//! A plugin route can also hand a client a live stream: a `handle` response
//! head with `"events": ["keyval.*"]` becomes a `text/event-stream` of every
//! matching event (within the plugin's `subscribe` grant), ending when the
//! client leaves. Open streams are capped ([`StreamLimits`]): in total
//! (`RUNTIME_MAX_STREAMS`) and per client address
//! (`RUNTIME_MAX_STREAMS_PER_CLIENT`); a stream over a cap is refused before
//! it opens, and a closed stream frees its slot at once.
//!
//! `events_publish({"topic", "data"})` → `null`. A topic is 1 to
//! [`MAX_PATTERN_LEN`] bytes without control characters (CR, LF, ...), the
//! whole request at most [`MAX_EVENT_BYTES`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

use super::args::{argument, parse};
use super::{Capability, CapabilitySpec, GrantContext, GrantValue, string_list};
use crate::capabilities::GuestContext;
use crate::grants::glob_match;
use crate::wasm::{HostError, HostFunction, ResultEncoding};

/// Published when the pool creates an app instance.
pub const WORKER_SPAWN: &str = "worker_spawn";
/// Published when the pool retires an app instance.
pub const WORKER_TERMINATE: &str = "worker_terminate";
/// Published when a plugin has loaded (and after a reload).
pub const PLUGIN_LOADED: &str = "plugin_loaded";

const RESERVED: [&str; 3] = [WORKER_SPAWN, WORKER_TERMINATE, PLUGIN_LOADED];

/// Largest event payload (the JSON text of `{"topic", "data"}`).
pub const MAX_EVENT_BYTES: usize = 256 << 10;
/// Longest topic or topic pattern: room for a topic that embeds a
/// hex-encoded key of 2 KiB (keyval's watch streams).
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
                    let cx = GuestContext::of(state)?;
                    let input = argument(state, args[0])?;
                    if input.len() > MAX_EVENT_BYTES {
                        return Err(HostError::new(
                            "limit_exceeded",
                            format!(
                                "an event may be at most {MAX_EVENT_BYTES} bytes of JSON; this one is {}",
                                input.len()
                            ),
                        ));
                    }
                    let req: PublishReq = parse(input)?;
                    if req.topic.is_empty() || req.topic.len() > MAX_PATTERN_LEN {
                        return Err(HostError::new(
                            "limit_exceeded",
                            format!(
                                "an event topic must be 1 to {MAX_PATTERN_LEN} bytes; this one is {}",
                                req.topic.len()
                            ),
                        ));
                    }
                    // A topic names the events of a stream (`text/event-stream`),
                    // where a line break would end the field.
                    if req.topic.chars().any(char::is_control) {
                        return Err(HostError::invalid_argument(format!(
                            "topic {:?} is not valid: a topic is a name without control characters (CR, LF, ...), e.g. `myplugin.changed`",
                            req.topic
                        )));
                    }
                    let grant = state.grants().get::<EventsGrant>(Capability::EVENTS);
                    if RESERVED.contains(&req.topic.as_str())
                        || req.topic.starts_with(crate::log_feed::TOPIC_PREFIX)
                    {
                        return Err(HostError::new(
                            "capability_denied",
                            format!("`{}` is published by the host only", req.topic),
                        ));
                    }
                    if !grant.is_some_and(|g| g.may_publish(&req.topic)) {
                        return Err(state.deny(
                            Capability::EVENTS,
                            "events_publish",
                            format!("publishing to `{}` is not granted", req.topic),
                            format!("\"events\": {{\"publish\": [\"{}\"]}}", req.topic),
                        ));
                    }
                    let (data, text) = match req.data {
                        Some(raw) => {
                            let data = serde_json::from_str(raw.get())
                                .map_err(|e| HostError::invalid_argument(e.to_string()))?;
                            // An event stream's `data:` is one line; text with a
                            // line break (whitespace) is printed again instead.
                            let one_line = !raw.get().contains(['\n', '\r']);
                            (data, one_line.then(|| Arc::from(raw.get())))
                        }
                        None => (Value::Null, None),
                    };
                    cx.host.events.publish(Event {
                        topic: req.topic,
                        data,
                        source: cx.name.clone(),
                        text,
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
    /// Kept as text too, so streams forward it as published.
    #[serde(default)]
    data: Option<Box<serde_json::value::RawValue>>,
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

pub use crate::config::{DEFAULT_MAX_STREAMS, DEFAULT_MAX_STREAMS_PER_CLIENT, StreamLimits};

/// A stream refused by a cap of [`StreamLimits`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamRefused {
    /// The client has [`StreamLimits::per_client`] streams open.
    #[error(
        "this client has {0} event streams open, the most allowed per client; close one (or raise RUNTIME_MAX_STREAMS_PER_CLIENT)"
    )]
    Client(usize),
    /// The server has [`StreamLimits::total`] streams open.
    #[error(
        "the server has {0} event streams open, its most; try again later (or raise RUNTIME_MAX_STREAMS)"
    )]
    Server(usize),
}

/// Who could receive a lifecycle event: building and sending two of them
/// for every fresh instance (`ttl: 0`) is wasted when nobody listens. Also
/// the count of open streams that [`StreamLimits`] caps.
#[derive(Debug, Default)]
struct Interest {
    /// A plugin of the current chain subscribes to a lifecycle topic.
    plugins: AtomicBool,
    /// Event streams open right now (any of them may match).
    streams: AtomicUsize,
    /// Open streams per client address.
    clients: Mutex<HashMap<IpAddr, usize>>,
    /// The caps.
    limits: Mutex<StreamLimits>,
}

/// Held by an open event stream; counts it (as a listener and against the
/// caps) until dropped.
#[derive(Debug)]
pub struct StreamTicket {
    interest: Arc<Interest>,
    client: Option<IpAddr>,
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        self.interest.streams.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.client {
            let mut clients = self
                .interest
                .clients
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(n) = clients.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    clients.remove(&ip);
                }
            }
        }
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

    /// Sets the caps on open streams (streams already open stay open).
    pub fn set_stream_limits(&self, limits: StreamLimits) {
        *self
            .interest
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = limits;
    }

    /// Event streams open now (plugin routes' and `/_/api/sse`).
    pub fn open_streams(&self) -> usize {
        self.interest.streams.load(Ordering::Relaxed)
    }

    /// Counts a stream from `client` (its address, when known) as open while
    /// the ticket lives; refused when a cap of [`StreamLimits`] is reached.
    pub fn open_stream(&self, client: Option<IpAddr>) -> Result<StreamTicket, StreamRefused> {
        let limits = *self
            .interest
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The per-client count is checked and taken under its lock; the
        // total with one atomic step, so neither can be overshot.
        let mut clients = self
            .interest
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(ip) = client
            && clients.get(&ip).copied().unwrap_or(0) >= limits.per_client
        {
            return Err(StreamRefused::Client(limits.per_client));
        }
        let taken = self
            .interest
            .streams
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limits.total).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(StreamRefused::Server(limits.total));
        }
        if let Some(ip) = client {
            *clients.entry(ip).or_default() += 1;
        }
        Ok(StreamTicket {
            interest: self.interest.clone(),
            client,
        })
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
            text: None,
        });
    }

    /// A new subscription to every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::{EventBus, StreamLimits, StreamRefused};

    #[test]
    fn open_streams_are_capped_per_client_and_in_total_and_freed_on_drop() {
        let bus = EventBus::default();
        bus.set_stream_limits(StreamLimits {
            total: 3,
            per_client: 2,
        });
        let (a, b) = (Some([10, 0, 0, 1].into()), Some([10, 0, 0, 2].into()));
        let a1 = bus.open_stream(a).unwrap();
        let _a2 = bus.open_stream(a).unwrap();
        assert_eq!(bus.open_stream(a).unwrap_err(), StreamRefused::Client(2));
        let _b1 = bus.open_stream(b).unwrap();
        assert_eq!(bus.open_stream(b).unwrap_err(), StreamRefused::Server(3));
        assert_eq!(bus.open_stream(None).unwrap_err(), StreamRefused::Server(3));
        drop(a1);
        let _again = bus.open_stream(a).expect("a closed stream frees its slot");
    }

    #[test]
    fn lifecycle_events_are_wanted_only_while_someone_listens() {
        let bus = EventBus::default();
        assert!(!bus.wants_lifecycle(), "nobody listens on a new bus");
        let stream = bus.open_stream(None).unwrap();
        let again = bus.clone().open_stream(None).unwrap();
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
