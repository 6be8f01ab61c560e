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

fn main() -> ExitCode {
    let cli = buntime::cli::Cli::parse();
    buntime::cli::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(buntime::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
