//! The log feed: runtime log records (`tracing` events) and guest log lines
//! (the `log` capability) offered to the plugins that subscribe to them.
//!
//! **Why an event topic.** A plugin already says what it receives with its
//! `events.subscribe` grant, the operator narrows that grant in
//! `buntime.jsonc`, events already reach `on_event`, and a plugin route can
//! already hand a client a live stream of topics from the event bus. So a
//! record is an event of topic `log.<level>` (`log.info`, `log.warn`, …),
//! published by the host only: no new capability, and the grant is the
//! level filter (a plugin granted `["log.warn", "log.error"]` makes the host
//! build nothing below warn).
//!
//! **Never on the request path's clock.** A record is built only when a
//! subscriber wants its level (one relaxed atomic load otherwise: nothing
//! allocated, nothing formatted), then handed to a bounded queue with
//! `try_send`: when the queue is full the record is dropped and counted
//! (`buntime_log_feed_dropped_total`), never waited for. One delivery task
//! per server (`plugins/host/logs.rs`) drains the queue in batches and calls
//! each subscriber's `on_event` once per batch.
//!
//! **No recursion.** What the delivery itself logs (a failing `on_event`, the
//! subscriber's own log lines while it handles a batch) is never fed back:
//! delivery runs inside [`delivering`], which the `tracing` layer checks, and
//! its guest calls carry a [`FeedDelivery`] marker, which the guest `log_*`
//! functions check.

mod layer;
mod record;

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use tokio::sync::mpsc;
use tracing::Level;

pub use layer::FeedLayer;
pub use record::{LogRecord, Source, level_name, topic};

/// Records waiting for delivery, at most; more are dropped and counted.
pub const QUEUE_CAPACITY: usize = 4096;

/// The prefix of the feed's topics (`log.info`, …); only the host publishes them.
pub const TOPIC_PREFIX: &str = "log.";

/// The levels, most severe first, as the feed ranks them (error 1 … trace 5).
pub const LEVELS: [Level; 5] = [
    Level::ERROR,
    Level::WARN,
    Level::INFO,
    Level::DEBUG,
    Level::TRACE,
];

/// `level`'s rank: 1 for error up to 5 for trace (0 means off).
fn rank(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// A marker in a guest call's extensions: the call delivers the feed, so
/// what the guest logs during it is not fed back.
#[derive(Debug, Clone, Copy)]
pub struct FeedDelivery;

/// What a guest's log lines are attributed to, in its call's extensions:
/// inserted by the server for a request only while the feed is on.
#[derive(Debug, Clone)]
pub struct LogTag {
    /// The request id (`x-request-id`).
    pub request_id: String,
    /// The W3C trace id of the request, when tracing knows it.
    pub trace_id: Option<String>,
}

tokio::task_local! {
    static DELIVERING: ();
}

/// Runs `f` as feed delivery: the `tracing` events it emits (on this task)
/// are not fed.
pub async fn delivering<F: std::future::Future>(f: F) -> F::Output {
    DELIVERING.scope((), f).await
}

fn in_delivery() -> bool {
    DELIVERING.try_with(|_| ()).is_ok()
}

/// Feeds that want something now, process-wide: the `tracing` layer's first
/// (and, when 0, only) check.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Every live feed, for the `tracing` layer (one per server; several in tests).
static FEEDS: RwLock<Vec<Weak<Inner>>> = RwLock::new(Vec::new());

#[derive(Debug)]
struct Inner {
    /// The least severe level a subscriber wants (a rank; 0: none).
    max_rank: AtomicU8,
    tx: mpsc::Sender<LogRecord>,
    rx: Mutex<Option<mpsc::Receiver<LogRecord>>>,
    /// Records dropped because the queue was full.
    dropped: crate::counter::Counter,
    /// Records queued.
    queued: crate::counter::Counter,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if *self.max_rank.get_mut() > 0 {
            ACTIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One server's feed. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LogFeed {
    inner: Arc<Inner>,
}

impl Default for LogFeed {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let inner = Arc::new(Inner {
            max_rank: AtomicU8::new(0),
            tx,
            rx: Mutex::new(Some(rx)),
            dropped: Default::default(),
            queued: Default::default(),
        });
        if let Ok(mut feeds) = FEEDS.write() {
            feeds.retain(|w| w.strong_count() > 0);
            feeds.push(Arc::downgrade(&inner));
        }
        Self { inner }
    }
}

impl LogFeed {
    /// Whether a subscriber wants records of `level`: one atomic load.
    #[inline]
    pub fn wants(&self, level: Level) -> bool {
        rank(level) <= self.inner.max_rank.load(Ordering::Relaxed)
    }

    /// The least severe level a subscriber wants (`None`: nobody subscribes).
    pub fn level(&self) -> Option<Level> {
        let rank = self.inner.max_rank.load(Ordering::Relaxed);
        LEVELS.get(usize::from(rank).checked_sub(1)?).copied()
    }

    /// Whether any subscriber wants anything.
    pub fn is_on(&self) -> bool {
        self.inner.max_rank.load(Ordering::Relaxed) > 0
    }

    /// Sets the least severe level wanted (`None`: nobody subscribes).
    pub fn set_level(&self, level: Option<Level>) {
        let new = level.map_or(0, rank);
        let old = self.inner.max_rank.swap(new, Ordering::Relaxed);
        match (old > 0, new > 0) {
            (false, true) => {
                ACTIVE.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                ACTIVE.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Queues `record` without waiting; a full queue drops it (counted).
    pub fn push(&self, record: LogRecord) {
        match self.inner.tx.try_send(record) {
            Ok(()) => self.inner.queued.add(1),
            Err(_) => self.inner.dropped.add(1),
        };
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.get()
    }

    /// Records queued for delivery so far.
    pub fn queued(&self) -> u64 {
        self.inner.queued.get()
    }

    /// The receiving end, for the one delivery task (`None` once taken).
    pub fn take_receiver(&self) -> Option<mpsc::Receiver<LogRecord>> {
        self.inner.rx.lock().ok()?.take()
    }

    /// Gives the receiving end back (a delivery task that ended).
    pub fn return_receiver(&self, rx: mpsc::Receiver<LogRecord>) {
        if let Ok(mut slot) = self.inner.rx.lock() {
            *slot = Some(rx);
        }
    }
}

/// Calls `f` with every live feed that wants `level`.
fn each_wanting(level: Level, mut f: impl FnMut(&LogFeed)) {
    let Ok(feeds) = FEEDS.read() else { return };
    for weak in feeds.iter() {
        if let Some(inner) = weak.upgrade() {
            let feed = LogFeed { inner };
            if feed.wants(level) {
                f(&feed);
            }
        }
    }
}

#[cfg(test)]
mod tests;
