//! Delivering the log feed (`crate::log_feed`): one task per server drains
//! the feed's bounded queue in batches and hands each subscribed plugin's
//! `on_event` the records its grant covers, one call per batch; while a
//! live stream is open, each record is also published on the event bus
//! (topic `log.<level>`) for plugin routes that stream it.
//!
//! The task awaits each delivery, so a slow subscriber holds the queue, not
//! the request path: the queue fills and further records are dropped and
//! counted. The feed topics never go through the bus's own `on_event`
//! delivery (`events.rs` skips them), so a plugin gets each record once.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use tracing::Level;

use super::{Chain, PluginHost};
use crate::capabilities::{Capability, Event, EventsGrant};
use crate::log_feed::{FeedDelivery, LEVELS, LogRecord, delivering, topic};

/// Most records in one `on_event` call.
const BATCH: usize = 256;

/// What `on_event` receives: `{"topic": "log.records", "data": {"records":
/// [...], "dropped": n}, "source": "buntime"}` (`dropped`: records the feed
/// has dropped so far, its queue full).
#[derive(Serialize)]
struct Batch<'a> {
    topic: &'static str,
    data: Records<'a>,
    source: &'static str,
}

#[derive(Serialize)]
struct Records<'a> {
    records: Vec<&'a LogRecord>,
    dropped: u64,
}

/// The least severe level any plugin of `chain` subscribes to (`None`: the
/// feed is off and costs nothing).
pub(super) fn wanted_level(chain: &Chain) -> Option<Level> {
    LEVELS.iter().rev().copied().find(|level| {
        chain.plugins.iter().any(|p| {
            p.grants
                .get::<EventsGrant>(Capability::EVENTS)
                .is_some_and(|g| g.subscribes(topic(*level)))
        })
    })
}

impl PluginHost {
    /// Starts the delivery task (once per feed: the feed has one receiver).
    pub(super) fn spawn_log_delivery(self: &Arc<Self>) {
        let Some(mut rx) = self.engine.log_feed().take_receiver() else {
            return;
        };
        let host = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            // Ends when the engine (the sending side) is gone.
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let Some(host) = host.upgrade() else { break };
                delivering(host.deliver_logs(&batch)).await;
                batch.clear();
            }
        });
    }

    async fn deliver_logs(&self, batch: &[LogRecord]) {
        let events = &self.services.events;
        if events.open_streams() > 0 {
            for record in batch {
                let text = serde_json::to_string(record).unwrap_or_default();
                events.publish(Event {
                    topic: topic(record.severity).to_owned(),
                    data: serde_json::to_value(record).unwrap_or_default(),
                    source: "buntime".into(),
                    text: Some(text.into()),
                });
            }
        }
        let chain = self.current();
        for p in &chain.plugins {
            let Some(grant) = p.grants.get::<EventsGrant>(Capability::EVENTS) else {
                continue;
            };
            if !p.hooks.on_event {
                continue;
            }
            let wanted = LEVELS.map(|l| grant.subscribes(topic(l)));
            let records: Vec<&LogRecord> = batch
                .iter()
                .filter(|r| {
                    LEVELS
                        .iter()
                        .position(|l| *l == r.severity)
                        .is_some_and(|i| wanted[i])
                })
                .collect();
            if records.is_empty() {
                continue;
            }
            let input = Batch {
                topic: "log.records",
                data: Records {
                    records,
                    dropped: self.engine.log_feed().dropped(),
                },
                source: "buntime",
            };
            let input = Bytes::from(serde_json::to_vec(&input).unwrap_or_default());
            let mut ext = http::Extensions::new();
            ext.insert(FeedDelivery);
            let _ = p.call("on_event", input, ext).await;
        }
    }
}
