//! Events and plugins: delivering published events to the `on_event` of
//! every subscribed plugin, and announcing what a new chain changed
//! (`plugin_loaded`, whether anyone listens to instance lifecycle events).

use std::sync::Arc;

use bytes::Bytes;

use super::{Chain, PluginHost};
use crate::capabilities::{
    Capability, Event, EventsGrant, PLUGIN_LOADED, WORKER_SPAWN, WORKER_TERMINATE,
};

impl PluginHost {
    /// After `chain` replaced `old`: tells the event bus whether any plugin
    /// now subscribes to `worker_spawn` / `worker_terminate` (they are only
    /// built when someone listens) and publishes `plugin_loaded` for every
    /// plugin that `old` did not have.
    pub(super) fn announce(&self, old: &Chain, chain: &Chain) {
        let lifecycle = chain.plugins.iter().any(|p| {
            p.hooks.on_event
                && p.grants
                    .get::<EventsGrant>(Capability::EVENTS)
                    .is_some_and(|g| g.subscribes(WORKER_SPAWN) || g.subscribes(WORKER_TERMINATE))
        });
        self.services.events.set_lifecycle_subscribers(lifecycle);
        self.engine
            .log_feed()
            .set_level(super::logs::wanted_level(chain));
        for p in &chain.plugins {
            if !old.plugins.iter().any(|o| Arc::ptr_eq(o, p)) {
                self.services.events.publish_host(
                    PLUGIN_LOADED,
                    serde_json::json!({ "plugin": p.manifest.name }),
                );
            }
        }
    }

    pub(super) fn spawn_event_delivery(self: &Arc<Self>) {
        let host = Arc::downgrade(self);
        let mut rx = self.services.events.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let event = match rx.recv().await {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            skipped = n,
                            "event delivery fell behind; events were skipped"
                        );
                        continue;
                    }
                    Err(_) => break,
                };
                let Some(host) = host.upgrade() else { break };
                host.deliver(event);
            }
        });
        if let Ok(mut t) = self.events.lock()
            && let Some(old) = t.replace(task)
        {
            old.abort();
        }
    }

    /// Hands `event` to every subscribed plugin's `on_event` (not the publisher's own).
    /// Log feed topics are delivered by `logs.rs`, in batches.
    fn deliver(&self, event: Event) {
        if event.topic.starts_with(crate::log_feed::TOPIC_PREFIX) {
            return;
        }
        let chain = self.current();
        let mut payload: Option<Bytes> = None;
        for p in &chain.plugins {
            let subscribed = p.hooks.on_event
                && p.manifest.name != event.source
                && p.grants
                    .get::<EventsGrant>(Capability::EVENTS)
                    .is_some_and(|g| g.subscribes(&event.topic));
            if !subscribed {
                continue;
            }
            let input = payload
                .get_or_insert_with(|| Bytes::from(serde_json::to_vec(&event).unwrap_or_default()))
                .clone();
            let p = p.clone();
            tokio::spawn(async move {
                let _ = p.call("on_event", input, http::Extensions::new()).await;
            });
        }
    }
}
