//! Trace and span ids: random, never zero (the W3C "invalid" id), from a
//! per-thread generator seeded from the operating system.
//!
//! The generator is wyrand (a 64-bit state stepped by a constant, mixed by
//! a 128-bit multiply): a few instructions per id, no lock, and statistically
//! good enough for ids (they need to be unique and spread, not secret, as
//! the SDK's `SmallRng` ids are not either). A thread whose seed cannot be
//! read from the OS seeds from the clock and the thread's identity instead,
//! so ids stay distinct across threads.

use std::cell::Cell;

use opentelemetry::trace::{SpanId, TraceId};

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

/// A fresh trace id.
pub(super) fn trace_id() -> TraceId {
    loop {
        let id = (u128::from(next()) << 64) | u128::from(next());
        if id != 0 {
            return TraceId::from(id);
        }
    }
}

/// A fresh span id.
pub(super) fn span_id() -> SpanId {
    loop {
        let id = next();
        if id != 0 {
            return SpanId::from(id);
        }
    }
}

fn next() -> u64 {
    STATE.with(|state| {
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let m = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        (m >> 64) as u64 ^ m as u64
    })
}

fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_ok() {
        return u64::from_ne_bytes(bytes);
    }
    // No OS randomness: std's per-process hash keys (themselves from the
    // OS when it has any), the clock and the thread.
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    std::thread::current().id().hash(&mut h);
    std::time::SystemTime::now().hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_valid_and_distinct() {
        let traces: HashSet<TraceId> = (0..10_000).map(|_| trace_id()).collect();
        let spans: HashSet<SpanId> = (0..10_000).map(|_| span_id()).collect();
        assert_eq!((traces.len(), spans.len()), (10_000, 10_000));
        assert!(!traces.contains(&TraceId::INVALID));
        assert!(!spans.contains(&SpanId::INVALID));
        // Both halves of a trace id vary (a ratio sampler reads the low one).
        let (mut high, mut low) = (HashSet::new(), HashSet::new());
        for id in &traces {
            let bytes = id.to_bytes();
            high.insert(bytes[..8].to_vec());
            low.insert(bytes[8..].to_vec());
        }
        assert_eq!((high.len(), low.len()), (10_000, 10_000));
    }

    #[test]
    fn threads_draw_different_ids() {
        let other = std::thread::spawn(|| (0..100).map(|_| span_id()).collect::<Vec<_>>())
            .join()
            .expect("thread");
        let here: HashSet<SpanId> = (0..100).map(|_| span_id()).collect();
        assert!(other.iter().all(|id| !here.contains(id)));
    }

    #[test]
    fn the_low_half_of_trace_ids_spreads_evenly() {
        // What a ratio sampler sees: about half the ids below the midpoint.
        let below = (0..20_000)
            .filter(|_| trace_id().to_bytes()[8] < 0x80)
            .count();
        assert!((9_000..11_000).contains(&below), "{below} of 20000");
    }
}
