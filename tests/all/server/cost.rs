//! The per-request cost breakdown (`RUNTIME_COST_HEADER`): each guest call
//! made for a request — plugin hooks and the app — reports its time and its
//! instance's memory in the response's `Server-Timing` header.

use super::TestServer;
use crate::plugins::{config, echo, kit};

/// Two kit plugins in front of the echo app: `busy` computes for a while in
/// `on_request`, `idle` does nothing.
fn setup(root: &std::path::Path) {
    echo(root);
    kit(root, "idle", r#""base": "idle""#);
    kit(root, "busy", r#""base": "busy""#);
    config(
        root,
        r#"{ plugins: [["idle", {}], ["busy", { burn: "3000000" }]] }"#,
    );
}

/// One `Server-Timing` entry: `desc`, `dur` (ms), `mem` (bytes).
#[derive(Debug)]
struct Entry {
    desc: String,
    dur: f64,
    mem: u64,
}

fn entries(header: &str) -> Vec<Entry> {
    header
        .split(", ")
        .map(|entry| {
            let mut parts = entry.split(';');
            assert_eq!(parts.next(), Some("guest"), "{header}");
            let mut e = Entry {
                desc: String::new(),
                dur: -1.0,
                mem: 0,
            };
            for p in parts {
                let (k, v) = p.split_once('=').unwrap_or_else(|| panic!("{header}"));
                match k {
                    "desc" => e.desc = v.trim_matches('"').to_owned(),
                    "dur" => e.dur = v.parse().unwrap_or_else(|_| panic!("{header}")),
                    "mem" => e.mem = v.parse().unwrap_or_else(|_| panic!("{header}")),
                    _ => panic!("unknown parameter {k}: {header}"),
                }
            }
            e
        })
        .collect()
}

/// `GET /echo/x`, which must succeed.
async fn get_echo(server: &TestServer) -> reqwest::Response {
    let res = super::client()
        .get(server.url("/echo/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    res
}

#[tokio::test]
async fn each_guest_call_reports_its_time_and_memory_and_a_busy_plugin_costs_more() {
    let server = TestServer::start_plugins_with(setup, |s| s.with_cost_header(true)).await;
    let (mut busy, mut idle) = (0.0, 0.0);
    // Summed over a few requests, so that one request of the idle plugin
    // delayed by the machine cannot outweigh the busy plugin's work.
    for _ in 0..5 {
        let res = get_echo(&server).await;
        let header = res
            .headers()
            .get("server-timing")
            .expect("server-timing")
            .to_str()
            .expect("ascii")
            .to_owned();
        let all = entries(&header);
        let find = |desc: &str| {
            all.iter()
                .find(|e| e.desc == desc)
                .unwrap_or_else(|| panic!("no `{desc}` in {header}"))
        };
        // Calls in order: the hooks on the way in, then the app.
        let order: Vec<&str> = all.iter().map(|e| e.desc.as_str()).collect();
        let at = |d: &str| order.iter().position(|o| *o == d);
        let app = order
            .iter()
            .position(|d| d.ends_with(" handle"))
            .unwrap_or_else(|| panic!("no app call in {header}"));
        assert!(at("idle on_request") < at("busy on_request"), "{header}");
        assert!(at("busy on_request") < Some(app), "{header}");
        for e in &all {
            assert!(e.dur >= 0.0 && e.mem > 0, "{e:?} in {header}");
        }
        busy += find("busy on_request").dur;
        idle += find("idle on_request").dur;
    }
    assert!(busy > idle, "busy {busy} ms, idle {idle} ms");
    server.stop().await;
}

#[tokio::test]
async fn without_the_flag_responses_carry_no_breakdown() {
    let server = TestServer::start_plugins_with(setup, |s| s).await;
    let res = get_echo(&server).await;
    assert!(res.headers().get("server-timing").is_none());
    server.stop().await;
}

/// The value of the sample `series` (name and labels, exactly) in `text`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no `{series}` in\n{text}"))
        .parse()
        .unwrap_or_else(|e| panic!("`{series}`: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_requests_a_busy_plugin_costs_more_in_the_exposition() {
    // No debug header: the series are always on.
    let server = TestServer::start_plugins_with(setup, |s| s).await;
    // Enough requests that each guest has several sampled calls (one in
    // 8 per worker thread, the first of each thread included).
    for _ in 0..48 {
        get_echo(&server).await;
    }
    let text = super::metrics::prometheus_text(&server.url("/_/metrics")).await;
    super::metrics::promtool_check(&text);
    let seconds = |guest: &str| {
        sample(
            &text,
            &format!(r#"buntime_guest_call_seconds_total{{guest="{guest}",kind="plugin"}}"#),
        )
    };
    let (busy, idle) = (seconds("busy"), seconds("idle"));
    assert!(busy > idle && idle > 0.0, "busy {busy} s, idle {idle} s");
    for guest in ["busy", "idle"] {
        let labels = format!(r#"guest="{guest}",kind="plugin""#);
        let sampled = sample(
            &text,
            &format!("buntime_guest_call_duration_seconds_count{{{labels}}}"),
        );
        assert!(
            (6.0..=48.0).contains(&sampled),
            "{guest}: {sampled} sampled"
        );
        // A kit plugin has at least one page of linear memory.
        let peak = sample(
            &text,
            &format!("buntime_guest_memory_peak_bytes{{{labels}}}"),
        );
        assert!(peak >= 65_536.0, "{guest}: peak {peak}");
        let memory = sample(
            &text,
            &format!("buntime_guest_memory_bytes_count{{{labels}}}"),
        );
        assert_eq!(
            memory, sampled,
            "{guest}: one memory reading per sampled call"
        );
    }
    // The app is counted under its `name@version`.
    let app = text
        .lines()
        .find(|l| l.starts_with("buntime_guest_call_seconds_total{") && l.contains(r#"kind="app""#))
        .unwrap_or_else(|| panic!("no app series in\n{text}"));
    assert!(app.contains(r#"guest="echo@"#), "{app}");
    let app_seconds: f64 = app
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("value");
    assert!(app_seconds > 0.0, "{app}");
    server.stop().await;
}
