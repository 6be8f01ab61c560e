//! The `buntime` command: parses arguments and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc instead of glibc's malloc. Under load a request's buffers are
/// allocated on one tokio worker and often freed on another; glibc then takes
/// the owning arena's lock (futex waits and context switches showed up in
/// profiles), where jemalloc's thread caches free without a shared lock.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read once at start. Freed pages go back to the
/// kernel after a second (default ten, and only when the allocator is next
/// busy) from one background thread, not the request path: compiling guests at
/// start leaves tens of MiB behind that glibc would have returned at once.
#[cfg(all(unix, not(target_env = "musl")))]
#[allow(unsafe_code, reason = "jemalloc reads this symbol by name")]
#[allow(non_upper_case_globals, reason = "jemalloc's name for it")]
// SAFETY: a NUL-terminated string that lives as long as the program, which
// is what jemalloc expects behind its `malloc_conf` pointer.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 85] =
    b"background_thread:true,max_background_threads:1,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    let cli = buntime::cli::Cli::parse();
    buntime::cli::init_logging();
    let runtime = match buntime::server::runtime_builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(buntime::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // The server has drained within its shutdown timeout; whatever is still
    // running (a connection cut mid-request, a guest call finishing under its
    // own deadline) does not hold the process.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}
