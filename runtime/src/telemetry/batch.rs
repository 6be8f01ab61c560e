//! The span processor: ended spans are encoded into batches where they end
//! (`encode.rs`), and a batch reaches the export task only when it is full or
//! when the schedule delay passes.
//!
//! Ending a span is its encoding into a batch's bytes under a mutex held
//! for that only; no span goes through a channel, and the export task wakes
//! once per batch (the batch span processor's semantics with its default
//! sizes, fixed: 512 spans per batch, at most 2048 waiting, counting the
//! batches being filled, one export at a time). A channel wake-up per span
//! would be a scheduling round-trip per span, four per request with one
//! plugin, often to the other core. When the exporter cannot keep up, whole
//! batches are dropped and counted, and the request path never waits for it.
//!
//! Each runtime worker thread fills a batch of its own ([`Shards`]): with
//! one batch for the process, every span ended took a lock and wrote bytes
//! that the other cores had just written, so the lock's and the buffer's
//! cache lines moved between cores several times per request.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::encode;
#[cfg(test)]
use super::record::Named;
use super::record::SpanRecord;

/// Why an export, flush or shutdown did not complete.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum ExportError {
    #[error("{0}")]
    Failed(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("the trace exporter has stopped")]
    Stopped,
}

/// Where batches go (the OTLP exporter of `export.rs`).
pub(super) trait Export: Send + Sync + 'static {
    /// Bytes every batch leaves free at its front for the request's head.
    fn room(&self) -> usize;
    /// Sends `batch`.
    fn export(&self, batch: Batch) -> impl Future<Output = Result<(), ExportError>> + Send;
    /// Nothing more will be exported.
    fn shutdown(&self) -> Result<(), ExportError> {
        Ok(())
    }
}

/// Encoded spans: `room` free bytes, then one `ScopeSpans.spans` field per
/// span.
#[derive(Debug)]
pub(super) struct Batch {
    pub(super) bytes: Vec<u8>,
    pub(super) spans: usize,
}

impl Batch {
    fn new(room: usize, capacity: usize) -> Self {
        let mut bytes = Vec::with_capacity(capacity.max(room));
        bytes.resize(room, 0);
        Self { bytes, spans: 0 }
    }
}

/// How spans are batched (`OTEL_BSP_*`).
#[derive(Debug, Clone, Copy)]
pub(super) struct BatchSettings {
    /// Spans per export.
    pub(super) batch_size: usize,
    /// Spans that may wait for export, the batch being filled included.
    pub(super) queue_size: usize,
    /// How long a span may wait in a partial batch.
    pub(super) delay: Duration,
    /// How long one export may take.
    pub(super) export_timeout: Duration,
}

/// What one encoded span is expected to take, to size a batch's buffer
/// before the first one is full (later ones are sized like the last).
const SPAN_BYTES: usize = 320;

/// The span processor (see the module doc).
#[derive(Debug)]
pub(super) struct BatchingProcessor {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The batches being filled, one per worker thread.
    filling: Shards,
    batch_size: usize,
    /// The exporter's [`Export::room`].
    room: usize,
    /// Full batches and control messages to the export task; bounded, so a
    /// stalled exporter costs dropped batches, not memory.
    to_export: mpsc::Sender<Message>,
    dropped: AtomicU64,
    warned: AtomicBool,
}

#[derive(Debug)]
enum Message {
    Export(Batch),
    /// Export what is waiting, shut the exporter down, answer and stop.
    Shutdown(Reply),
}

/// Where the export task answers a shutdown.
type Reply = oneshot::Sender<Result<(), ExportError>>;

impl BatchingProcessor {
    /// Starts the export task on the current tokio runtime. The exporter
    /// carries the resource and scope every batch is framed with.
    pub(super) fn start<E: Export>(exporter: E, settings: BatchSettings) -> Self {
        let batch_size = settings.batch_size.max(1);
        let room = exporter.room();
        let workers = tokio::runtime::Handle::try_current()
            .map_or(1, |h| h.metrics().num_workers())
            .max(1);
        // The queue counts spans; the channel holds whole batches beside the
        // ones being filled.
        let batches = (settings.queue_size / batch_size)
            .saturating_sub(workers)
            .max(1);
        let (to_export, inbox) = mpsc::channel(batches);
        let shared = Arc::new(Shared {
            filling: Shards::new(workers, || Batch::new(room, room + batch_size * SPAN_BYTES)),
            batch_size,
            room,
            to_export,
            dropped: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        });
        tokio::spawn(export_task(exporter, inbox, shared.clone(), settings));
        Self { shared }
    }

    /// Adds `span`, ended at `end`, to the batch being filled; hands the
    /// batch to the export task when it is full (or drops it, counted, when
    /// the task is that far behind).
    pub(super) fn end(&self, span: &SpanRecord, end: SystemTime) {
        let full = {
            let mut filling = self.shared.filling.mine();
            encode::span(&mut filling.bytes, span, end);
            filling.spans += 1;
            if filling.spans < self.shared.batch_size {
                return;
            }
            self.shared.replace(&mut filling)
        };
        match self.shared.to_export.try_send(Message::Export(full)) {
            Ok(()) => {}
            Err(
                mpsc::error::TrySendError::Full(Message::Export(batch))
                | mpsc::error::TrySendError::Closed(Message::Export(batch)),
            ) => self.shared.drop_spans(batch.spans),
            Err(_) => {}
        }
    }

    /// Exports every span ended so far and stops the exporter, `timeout` in
    /// all; warns of the spans dropped along the way.
    pub(super) async fn shutdown(&self, timeout: Duration) -> Result<(), ExportError> {
        let result = self.request(Message::Shutdown, timeout).await;
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "spans dropped because the exporter fell behind");
        }
        result
    }

    /// Sends `message` and waits for its answer, `timeout` in all (a full
    /// channel makes room as the task exports).
    async fn request(
        &self,
        message: impl FnOnce(Reply) -> Message,
        timeout: Duration,
    ) -> Result<(), ExportError> {
        let (reply, answer) = oneshot::channel();
        let exchange = async {
            self.shared
                .to_export
                .send(message(reply))
                .await
                .map_err(|_| ExportError::Stopped)?;
            answer.await.map_err(|_| ExportError::Stopped)?
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(ExportError::Timeout(timeout)))
    }
}

impl Shared {
    /// Takes the spans of every batch being filled, as one batch (a batch's
    /// spans are fields one after the other, so batches join end to end).
    fn take(&self) -> Batch {
        let mut all = Batch::new(self.room, 0);
        for shard in self.filling.all() {
            let mut filling = shard.lock().unwrap_or_else(PoisonError::into_inner);
            if filling.spans == 0 {
                continue;
            }
            let batch = self.replace(&mut filling);
            drop(filling);
            if all.spans == 0 {
                all = batch;
            } else {
                all.bytes.extend_from_slice(&batch.bytes[self.room..]);
                all.spans += batch.spans;
            }
        }
        all
    }

    /// Swaps `filling` for an empty batch sized like it.
    fn replace(&self, filling: &mut Batch) -> Batch {
        let capacity = filling.bytes.len() + filling.bytes.len() / 8;
        std::mem::replace(filling, Batch::new(self.room, capacity))
    }

    /// Counts `n` spans dropped, warning once.
    fn drop_spans(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the trace exporter is not keeping up: dropping spans (sample fewer requests with OTEL_TRACES_SAMPLER_ARG, or check the collector's speed)"
            );
        }
    }
}

/// The batches being filled, one per runtime worker thread, each on a cache
/// line of its own. A thread takes a shard on its first span (in turn, so
/// the runtime's workers get one each) and keeps it; a thread outside the
/// runtime shares one the same way.
#[derive(Debug)]
struct Shards(Box<[Padded]>);

/// One shard, aligned so that two never share a cache line (128 bytes: the
/// line pair x86 prefetches together).
#[derive(Debug)]
#[repr(align(128))]
struct Padded(Mutex<Batch>);

/// Hands out shard numbers in turn.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard number (`usize::MAX`: none yet).
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

impl Shards {
    fn new(n: usize, batch: impl Fn() -> Batch) -> Self {
        Self((0..n.max(1)).map(|_| Padded(Mutex::new(batch()))).collect())
    }

    /// This thread's batch, locked.
    fn mine(&self) -> std::sync::MutexGuard<'_, Batch> {
        let number = SHARD.with(|s| {
            if s.get() == usize::MAX {
                s.set(NEXT_SHARD.fetch_add(1, Ordering::Relaxed));
            }
            s.get()
        });
        self.0[number % self.0.len()]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn all(&self) -> impl Iterator<Item = &Mutex<Batch>> {
        self.0.iter().map(|p| &p.0)
    }
}

/// Exports batches one at a time; flushes the partial batch every
/// `settings.delay`.
async fn export_task<E: Export>(
    exporter: E,
    mut inbox: mpsc::Receiver<Message>,
    shared: Arc<Shared>,
    settings: BatchSettings,
) {
    let mut tick = tokio::time::interval(settings.delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
    loop {
        let message = tokio::select! {
            message = inbox.recv() => message,
            _ = tick.tick() => {
                let batch = shared.take();
                if batch.spans > 0 {
                    let _ = export(&exporter, batch, settings.export_timeout).await;
                }
                continue;
            }
        };
        let mut replies = match message {
            Some(Message::Export(batch)) => {
                let _ = export(&exporter, batch, settings.export_timeout).await;
                continue;
            }
            Some(Message::Shutdown(reply)) => vec![reply],
            None => return,
        };
        // A shutdown: what is queued goes out first, and any shutdown
        // queued behind it is answered by the same pass.
        let mut result = Ok(());
        while let Ok(message) = inbox.try_recv() {
            match message {
                Message::Export(batch) => {
                    if let Err(e) = export(&exporter, batch, settings.export_timeout).await {
                        result = Err(e);
                    }
                }
                Message::Shutdown(reply) => replies.push(reply),
            }
        }
        let batch = shared.take();
        if batch.spans > 0
            && let Err(e) = export(&exporter, batch, settings.export_timeout).await
        {
            result = Err(e);
        }
        let result = exporter.shutdown().and(result);
        for reply in replies {
            let _ = reply.send(result.clone());
        }
        return;
    }
}

/// One export, given up after `timeout`.
async fn export<E: Export>(
    exporter: &E,
    batch: Batch,
    timeout: Duration,
) -> Result<(), ExportError> {
    let n = batch.spans;
    let result = match tokio::time::timeout(timeout, exporter.export(batch)).await {
        Ok(result) => result,
        Err(_) => Err(ExportError::Timeout(timeout)),
    };
    if let Err(e) = &result {
        tracing::warn!(spans = n, error = %e, "trace export failed; its spans are lost");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceFlags, TraceId, TraceState};
    use opentelemetry_proto::tonic::trace::v1::ScopeSpans;

    fn settings(batch_size: usize, queue_size: usize) -> BatchSettings {
        BatchSettings {
            batch_size,
            queue_size,
            delay: Duration::from_secs(3600),
            export_timeout: Duration::from_secs(5),
        }
    }

    fn record(name: String) -> SpanRecord {
        let context = SpanContext::new(
            TraceId::from(1),
            SpanId::from(2),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        );
        SpanRecord::start(
            &context,
            (SpanId::INVALID, false),
            Named::Name(&name, None),
            SpanKind::Internal,
        )
    }

    /// Keeps what it is given.
    #[derive(Debug, Clone, Default)]
    struct Collect(Arc<Mutex<Vec<String>>>);

    impl Collect {
        fn names(&self) -> Vec<String> {
            self.0.lock().expect("lock").clone()
        }
    }

    impl Export for Collect {
        fn room(&self) -> usize {
            3
        }

        async fn export(&self, batch: Batch) -> Result<(), ExportError> {
            use prost::Message as _;
            let spans = ScopeSpans::decode(&batch.bytes[3..]).expect("encoded spans");
            assert_eq!(spans.spans.len(), batch.spans);
            let mut names = self.0.lock().expect("lock");
            names.extend(spans.spans.into_iter().map(|s| s.name));
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn full_batches_go_out_at_once_and_the_rest_at_shutdown() {
        let exporter = Collect::default();
        let processor = BatchingProcessor::start(exporter.clone(), settings(4, 64));
        for i in 0..10 {
            processor.end(&record(format!("s{i}")), SystemTime::now());
        }
        // Two full batches of four go out without a flush. Waited for by
        // deadline, not by a count of tries (only a failing run waits long).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while exporter.names().len() < 8 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(
            exporter.names().len(),
            8,
            "the two full batches within 10 s, not the partial one: {:?}",
            exporter.names()
        );
        processor
            .shutdown(Duration::from_secs(5))
            .await
            .expect("shutdown");
        let expected: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
        assert_eq!(exporter.names(), expected);
        // Stopped: a second shutdown says so instead of waiting.
        let after = processor.shutdown(Duration::from_secs(5)).await;
        assert!(matches!(after, Err(ExportError::Stopped)), "{after:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_worker_fills_a_batch_of_its_own_and_a_flush_joins_them() {
        let exporter = Collect::default();
        let processor = BatchingProcessor::start(exporter.clone(), settings(4, 64));
        let shards = &processor.shared.filling;
        assert_eq!(shards.0.len(), 2, "one batch per worker");
        // A thread keeps its shard.
        let mine = || -> *const Batch { &*shards.mine() };
        assert!(std::ptr::eq(mine(), mine()));
        // Partial batches in both shards (as two workers leave them).
        for (k, shard) in shards.all().enumerate() {
            let mut batch = shard.lock().expect("lock");
            for i in 0..3 {
                encode::span(
                    &mut batch.bytes,
                    &record(format!("w{k}s{i}")),
                    SystemTime::now(),
                );
                batch.spans += 1;
            }
        }
        processor
            .shutdown(Duration::from_secs(5))
            .await
            .expect("shutdown");
        // One export carried both (the exporter checks its span count).
        assert_eq!(
            exporter.names(),
            ["w0s0", "w0s1", "w0s2", "w1s0", "w1s1", "w1s2"]
        );
    }

    /// An exporter that never finishes an export.
    #[derive(Debug)]
    struct Stuck;

    impl Export for Stuck {
        fn room(&self) -> usize {
            0
        }

        async fn export(&self, _batch: Batch) -> Result<(), ExportError> {
            std::future::pending().await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_stuck_exporter_costs_dropped_batches_not_memory_or_waiting() {
        let processor = BatchingProcessor::start(
            Stuck,
            BatchSettings {
                export_timeout: Duration::from_secs(3600),
                ..settings(2, 6)
            },
        );
        // At most one batch in the (stuck) export and two in the channel;
        // every later batch is dropped, and ending a span never waits.
        for _ in 0..100 {
            processor.end(&record("s".to_owned()), SystemTime::now());
        }
        let dropped = processor.shared.dropped.load(Ordering::Relaxed);
        assert!(
            (94..=96).contains(&dropped),
            "dropped {dropped} of 100 spans"
        );
        // Shutdown gives up after its timeout instead of hanging.
        let result = processor.shutdown(Duration::from_millis(50)).await;
        assert!(matches!(result, Err(ExportError::Timeout(_))), "{result:?}");
    }
}
