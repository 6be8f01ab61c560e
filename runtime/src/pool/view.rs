//! The pool as the `pool` capability sees it ([`PoolView`]).

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::Pools;
use crate::capabilities::PoolView;

impl PoolView for Pools {
    fn stats(&self) -> Value {
        let workers: Vec<Value> = self
            .snapshot()
            .iter()
            .map(|p| {
                let s = &p.stats;
                json!({
                    "app": p.key(),
                    "active": p.active(),
                    "idle": p.idle_count(),
                    "requests": s.requests.get(),
                    "errors": s.errors.get(),
                })
            })
            .collect();
        json!({
            "apps": workers.len(),
            "capacity": self.capacity(),
            "evictions": self.evictions.load(Ordering::Relaxed),
            "workers": workers,
        })
    }
}
