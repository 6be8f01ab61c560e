//! `buntime health [--ready]`: probes the server running on this machine and
//! exits 0 when it answers healthy, 1 otherwise.
//!
//! Container health checks run it (the Dockerfile's `HEALTHCHECK`, compose's
//! `healthcheck`), so it needs no shell, `curl` or `wget` in the image: the
//! binary that serves is the binary that probes. It reads the same `PORT` and
//! `RUNTIME_HOST` as `buntime serve`, so the probe and the server agree on
//! where to meet without extra settings.

use std::process::ExitCode;
use std::time::Duration;

/// `--ready` probes readiness (`/_/api/health/ready`: worker dirs readable, no
/// shutdown under way); without it, liveness (`/_/api/health/live`).
pub(super) async fn run(ready: bool, url: Option<String>, timeout: Duration) -> ExitCode {
    let url = match url {
        Some(u) => u,
        None => match local_url(ready) {
            Ok(u) => u,
            Err(e) => {
                eprintln!("unhealthy: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    // A proxy from the environment must not sit between a probe and its own
    // server.
    let client = match reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("unhealthy: cannot make an HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    match client.get(&url).send().await {
        Ok(res) if res.status().is_success() => {
            println!("healthy: {url} answered {}", res.status());
            ExitCode::SUCCESS
        }
        Ok(res) => {
            let status = res.status();
            let body = res.text().await.unwrap_or_default();
            eprintln!("unhealthy: {url} answered {status}: {}", body.trim());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!(
                "unhealthy: no answer from {url} within {timeout:?}: {e} (is `buntime serve` running with the same PORT and RUNTIME_HOST?)"
            );
            ExitCode::FAILURE
        }
    }
}

/// The URL of the local server's health route, from `PORT` and `RUNTIME_HOST`
/// as `buntime serve` reads them; a wildcard listen address is probed on
/// loopback.
fn local_url(ready: bool) -> anyhow::Result<String> {
    let port = match std::env::var("PORT").ok().filter(|p| !p.trim().is_empty()) {
        None => 8000,
        Some(p) => p
            .trim()
            .parse::<u16>()
            .map_err(|_| anyhow::anyhow!("PORT: `{p}` is not a port number (0-65535)"))?,
    };
    let host = std::env::var("RUNTIME_HOST").unwrap_or_default();
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    let host = match host {
        "" | "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" => "[::1]".to_owned(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_owned(),
    };
    let path = if ready {
        "/_/api/health/ready"
    } else {
        "/_/api/health/live"
    };
    Ok(format!("http://{host}:{port}{path}"))
}
