//! `/_/metrics` in the Prometheus text formats: the exposition passes
//! `promtool check metrics`, and a real Prometheus server scrapes it and
//! answers queries over it. Both tools come with Debian's `prometheus`
//! package, which `./x setup` installs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use buntime_fixtures as fx;
use serde_json::Value;

use super::{TestServer, client, get};
use crate::plugins::{config, echo, install_plugin};

/// A server with the echo app at `/echo` behind the no-op plugin.
async fn server_with_plugin() -> TestServer {
    TestServer::start_plugins(|root| {
        echo(root);
        install_plugin(
            root,
            "noop",
            r#"{ "name": "noop", "version": "1.0.0" }"#,
            fx::PLUGIN_NOOP,
        );
        config(root, r#"{ plugins: ["noop"] }"#);
    })
    .await
}

/// `/_/metrics` asked for with `accept`: the content type and the body.
async fn scrape(server: &TestServer, accept: &str) -> (String, String) {
    let res = client()
        .get(server.url("/_/metrics"))
        .header("accept", accept)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let kind = res.headers()["content-type"]
        .to_str()
        .expect("content type")
        .to_owned();
    (kind, res.text().await.expect("body"))
}

/// The sample lines of `text` whose series starts with `series`.
fn samples<'a>(text: &'a str, series: &'a str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(series)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prometheus_exposition_passes_promtool_and_counts_by_label() {
    let server = server_with_plugin().await;
    for _ in 0..3 {
        assert_eq!(get(&server.url("/echo/hi")).await.status(), 200);
    }
    let posted = client()
        .post(server.url("/echo/form"))
        .body("x")
        .send()
        .await
        .expect("request");
    assert_eq!(posted.status(), 200);

    let (kind, text) = scrape(&server, "text/plain; version=0.0.4").await;
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let read = samples(&text, "buntime_http_requests_total{app=\"echo\"");
    assert!(
        read.iter()
            .any(|l| l.contains("method=\"read\",status=\"2xx\"} 3")),
        "{read:?}"
    );
    assert!(
        read.iter()
            .any(|l| l.contains("method=\"write\",status=\"2xx\"} 1")),
        "{read:?}"
    );
    let buckets = samples(
        &text,
        "buntime_app_request_duration_seconds_bucket{app=\"echo\"",
    );
    assert!(
        buckets.iter().any(|l| l.contains("le=\"+Inf\"} 4")),
        "{buckets:?}"
    );
    let hooks = samples(&text, "buntime_plugin_hook_calls_total{plugin=\"noop\"");
    assert!(
        hooks.iter().any(|l| l.contains("hook=\"on_request\"} 4")),
        "{hooks:?}"
    );
    for family in [
        "buntime_http_server_requests_total{method=\"read\",status=\"2xx\"}",
        "buntime_http_requests_in_flight ",
        "buntime_http_connections_open ",
        "buntime_pool_instances{app=\"echo\"",
        "buntime_pool_instantiations_total{app=\"echo\"",
        "buntime_pool_evictions_total ",
        "buntime_engine_modules_compiled_total ",
        "buntime_engine_compile_duration_seconds_count ",
    ] {
        assert!(!samples(&text, family).is_empty(), "no {family} in\n{text}");
    }
    // The process's own figures, under the standard unprefixed names.
    let figure = |series: &str| -> f64 {
        samples(&text, series)
            .first()
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert!(figure("process_cpu_seconds_total ") > 0.0);
    assert!(figure("process_resident_memory_bytes ") > 1e6);
    assert!(figure("process_virtual_memory_bytes ") >= figure("process_resident_memory_bytes "));
    assert!(figure("process_threads ") >= 2.0);
    // At least the listener and the scrape's own connection.
    assert!(figure("process_open_fds ") >= 2.0);
    assert!(figure("process_max_fds ") >= figure("process_open_fds "));
    let started = figure("process_start_time_seconds ");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(started <= now && now - started < 3600.0, "{started} {now}");
    // The scrape itself is in flight while it is encoded.
    assert!(
        samples(&text, "buntime_http_requests_in_flight ")
            .contains(&"buntime_http_requests_in_flight 1"),
        "{text}"
    );
    promtool_check(&text);

    // OpenMetrics for a client that prefers it, JSON for everyone else.
    let (kind, open) = scrape(
        &server,
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    )
    .await;
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(open.ends_with("# EOF\n"), "{open}");
    let (kind, json) = scrape(&server, "*/*").await;
    assert!(kind.starts_with("application/json"), "{kind}");
    let json: Value = serde_json::from_str(&json).expect("json");
    assert_eq!(json["requests"], 4, "{json}");
    server.stop().await;
}

/// The Prometheus text exposition at `metrics_url` (a `/_/metrics` URL,
/// read as a loopback client without a key).
pub(crate) async fn prometheus_text(metrics_url: &str) -> String {
    super::client()
        .get(metrics_url)
        .header("accept", "text/plain")
        .send()
        .await
        .expect("exposition")
        .text()
        .await
        .expect("text")
}

/// Runs `promtool check metrics` over `text`; fails with its findings.
pub(crate) fn promtool_check(text: &str) {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`; `./x setup` installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Prometheus server on a loopback port, killed when dropped.
struct Prometheus {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`) every 250 ms,
    /// with its config, storage and log in `dir`.
    fn start(dir: &Path, target: &str) -> Self {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 250ms\n  scrape_timeout: 200ms\n\
                 scrape_configs:\n  - job_name: buntime\n    metrics_path: /_/metrics\n\
                 \x20   static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("prometheus.yml");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("prometheus (Debian package `prometheus`; `./x setup` installs it)");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Polls an instant `query` until `holds` accepts its result vector, for
    /// at most 20 s; fails with Prometheus's log.
    async fn query_until(&self, query: &str, holds: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let answer = client()
                .get(format!("{}/api/v1/query", self.base))
                .query(&[("query", query)])
                .send()
                .await;
            if let Ok(res) = answer
                && let Ok(body) = res.json::<Value>().await
            {
                if let Some(result) = body["data"]["result"].as_array()
                    && holds(result)
                {
                    return result.clone();
                }
                last = body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "prometheus never answered `{query}` as expected; last answer {last}\nlog:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of an instant vector's first sample.
fn first_value(result: &[Value]) -> Option<f64> {
    result.first()?["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_server_scrapes_buntime_and_answers_queries() {
    let server = server_with_plugin().await;
    for _ in 0..5 {
        assert_eq!(get(&server.url("/echo/hi")).await.status(), 200);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let target = server.base.trim_start_matches("http://");
    let prometheus = Prometheus::start(dir.path(), target);

    let counted = prometheus
        .query_until(
            r#"sum(buntime_http_requests_total{app="echo",method="read",status="2xx"})"#,
            |r| first_value(r) == Some(5.0),
        )
        .await;
    assert_eq!(first_value(&counted), Some(5.0));
    let median = prometheus
        .query_until(
            r#"histogram_quantile(0.5, sum by (le) (buntime_app_request_duration_seconds_bucket{app="echo"}))"#,
            |r| first_value(r).is_some_and(f64::is_finite),
        )
        .await;
    let median = first_value(&median).unwrap_or(f64::NAN);
    assert!(median > 0.0 && median <= 10.0, "median {median}");
    let hooks = prometheus
        .query_until(
            r#"buntime_plugin_hook_calls_total{plugin="noop",hook="on_request"}"#,
            |r| first_value(r) == Some(5.0),
        )
        .await;
    assert_eq!(first_value(&hooks), Some(5.0));
    drop(prometheus);
    server.stop().await;
}

/// The value of the one sample line that starts with `series` and
/// contains each of `labels`.
fn value_of(text: &str, series: &str, labels: &[&str]) -> f64 {
    let found: Vec<&str> = samples(text, series)
        .into_iter()
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .collect();
    assert_eq!(found.len(), 1, "{series} {labels:?}: {found:?} in\n{text}");
    found[0]
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{}", found[0]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recycles_and_evictions_are_counted_per_app_version_and_sites_per_app() {
    // One app version warm at a time.
    let server = TestServer::start_with_pool(1, |root| {
        super::install_echo(root, "other/1.0.0", None);
        super::install_echo(root, "warm/1.0.0", Some(r#"{ ttl: "1m", maxRequests: 2 }"#));
        super::install_site(root);
    })
    .await;
    assert_eq!(get(&server.url("/other/x")).await.status(), 200);
    // `warm` evicts `other`, then recycles its instance after every second
    // request.
    for _ in 0..4 {
        assert_eq!(get(&server.url("/warm/x")).await.status(), 200);
    }
    for path in ["/site/", "/site/assets/app.js"] {
        assert_eq!(get(&server.url(path)).await.status(), 200, "{path}");
    }
    assert_eq!(get(&server.url("/site/nothing.js")).await.status(), 404);
    let text = prometheus_text(&server.url("/_/metrics")).await;
    promtool_check(&text);
    let warm = [r#"app="warm""#, r#"version="1.0.0""#];
    assert_eq!(value_of(&text, "buntime_pool_recycled_total{", &warm), 2.0);
    assert_eq!(value_of(&text, "buntime_pool_retired_total{", &warm), 2.0);
    let other = [r#"app="other""#, r#"version="1.0.0""#];
    // Still reported after `other` left the pool.
    assert_eq!(
        value_of(&text, "buntime_pool_app_evictions_total{", &other),
        1.0
    );
    assert!(
        samples(&text, "buntime_pool_app_evictions_total{")
            .iter()
            .all(|l| !l.contains(r#"app="warm""#))
    );
    // The static site's requests, next to the WASM apps'.
    let site = |status: &str| {
        value_of(
            &text,
            "buntime_http_requests_total{",
            &[r#"app="site""#, r#"method="read""#, status],
        )
    };
    assert_eq!(site(r#"status="2xx""#), 2.0);
    assert_eq!(site(r#"status="4xx""#), 1.0);
    assert_eq!(
        value_of(
            &text,
            "buntime_http_requests_total{",
            &[r#"app="warm""#, r#"status="2xx""#]
        ),
        4.0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_plugin_routes_are_counted_per_plugin() {
    let server = TestServer::start_plugins(|root| {
        crate::plugins::kit(root, "routed", r#""base": "routed""#);
    })
    .await;
    for _ in 0..3 {
        assert_eq!(get(&server.url("/_/routed/hello")).await.status(), 200);
    }
    let posted = client()
        .post(server.url("/_/routed/pool"))
        .send()
        .await
        .expect("request");
    // Refused: the kit has no `pool` grant.
    assert_eq!(posted.status(), 403);
    let text = prometheus_text(&server.url("/_/metrics")).await;
    promtool_check(&text);
    let routed = |method: &str, status: &str| {
        value_of(
            &text,
            "buntime_plugin_route_requests_total{",
            &[r#"plugin="routed""#, method, status],
        )
    };
    assert_eq!(routed(r#"method="read""#, r#"status="2xx""#), 3.0);
    assert_eq!(routed(r#"method="write""#, r#"status="4xx""#), 1.0);
    server.stop().await;
}
