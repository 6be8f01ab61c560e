//! The process's own figures, under the names every Prometheus client
//! library uses (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! …), so existing dashboards and alerts work unchanged.
//!
//! Read at scrape time from the kernel: CPU time from the process CPU clock,
//! file-descriptor limits from `getrlimit`, memory, threads and open
//! descriptors from `/proc/self` (Linux). A figure the platform cannot give
//! is left out rather than reported as zero.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The `process_*` families, read when encoded.
#[derive(Debug)]
pub(crate) struct ProcessFigures {
    /// When the server started, as the uptime clock saw it.
    pub(crate) started: Instant,
}

/// What `/proc/self/status` says about the process.
#[derive(Debug, Default, PartialEq, Eq)]
struct Status {
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    threads: Option<u64>,
}

/// Reads the `VmRSS`, `VmSize` (kB) and `Threads` lines of a
/// `/proc/<pid>/status` text.
fn parse_status(text: &str) -> Status {
    let mut status = Status::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let number = value
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok());
        match key {
            "VmRSS" => status.resident_bytes = number.map(|kb| kb.saturating_mul(1024)),
            "VmSize" => status.virtual_bytes = number.map(|kb| kb.saturating_mul(1024)),
            "Threads" => status.threads = number,
            _ => {}
        }
    }
    status
}

fn cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    (Duration::from_secs(secs) + Duration::from_nanos(nanos)).as_secs_f64()
}

fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    // The directory handle being read is one of the entries.
    Some((entries.count() as u64).saturating_sub(1))
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: f64) -> std::fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

impl Collector for ProcessFigures {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let m = e.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(cpu_seconds()).encode(m)?;
        let started = SystemTime::now()
            .checked_sub(self.started.elapsed())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
        if let Some(started) = started {
            gauge(
                &mut e,
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds.",
                started.as_secs_f64(),
            )?;
        }
        let status = std::fs::read_to_string("/proc/self/status")
            .map(|t| parse_status(&t))
            .unwrap_or_default();
        let figures = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                status.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                status.virtual_bytes,
            ),
            ("process_threads", "Number of OS threads.", status.threads),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                open_fds(),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                rustix::process::getrlimit(rustix::process::Resource::Nofile).current,
            ),
        ];
        for (name, help, value) in figures {
            if let Some(v) = value {
                // Gauges are f64 in the exposition; these stay far below 2^53.
                gauge(&mut e, name, help, v as f64)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_in_bytes() {
        let text = "Name:\tbuntime\nVmSize:\t  204800 kB\nVmRSS:\t   51200 kB\nThreads:\t7\n";
        assert_eq!(
            parse_status(text),
            Status {
                resident_bytes: Some(51200 * 1024),
                virtual_bytes: Some(204800 * 1024),
                threads: Some(7),
            }
        );
        assert_eq!(parse_status("garbage\nVmRSS: x kB"), Status::default());
    }
}
