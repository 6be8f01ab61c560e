//! Change events and watch streams.
//!
//! Every committed write publishes one event per written key on the topic
//! `keyval/<tenant>/<hex key>` (`@` for the root), carrying
//! `[{"key", "value", "versionstamp"}]` (`value` and `versionstamp` null when
//! deleted). A watch is a server-sent-events stream of those topics — exact
//! topics for keys, `<hex prefix>*` for a prefix — so a change reaches a
//! watcher as it is committed, with no polling of the database.

use buntime_pdk::plugin::events;

use crate::keys;
use crate::store::{Entry, EntryOut, Store};

/// The topic of `key`'s changes in `store`.
pub fn topic(store: &Store, key: &[u8]) -> String {
    format!("{}{}", topic_root(store), keys::hex(key))
}

/// `keyval/<tenant>/`.
pub fn topic_root(store: &Store) -> String {
    format!("keyval/{}/", store.tenant.as_deref().unwrap_or("@"))
}

/// A written key as a watcher sees it.
pub fn change(key: &[u8], entry: Option<&Entry>) -> EntryOut {
    match entry {
        Some(e) => e.out(),
        None => EntryOut::absent(key),
    }
}

/// Publishes the changes of a commit. A failure to publish is logged and
/// does not undo the write (the data is committed either way).
pub fn publish(store: &Store, changes: &[(Vec<u8>, Option<Entry>)]) {
    for (key, entry) in changes {
        let data = [change(key, entry.as_ref())];
        if let Err(e) = events::publish(&topic(store, key), &data) {
            extism_pdk::warn!("keyval: change event not published: {e}");
        }
    }
}
