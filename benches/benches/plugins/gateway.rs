//! `gateway_check`: the gateway plugin in front of the warm hello app, next
//! to the same server with the gateway off, once with only a rate limit
//! (one token drawn from the client's bucket in `state` per request, a limit
//! high enough never to answer 429) and once with only CORS (a request from
//! an allowed origin, which gets the CORS headers). The request log is off
//! in both, so each difference is that one check plus the plugin's call
//! and its request counter.

use criterion::Criterion;

use super::bench_core_plugin;

const GATEWAY: &str = "@buntime/plugin-gateway";
const ORIGIN: &str = "https://app.example.com";

pub(crate) fn gateway(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rate = format!(
        r#"["{GATEWAY}", {{ "requestLog": null,
            "rateLimit": {{ "requests": 1000000000, "window": "1h" }} }}]"#
    );
    let cors = format!(
        r#"["{GATEWAY}", {{ "requestLog": null,
            "cors": {{ "origins": ["{ORIGIN}"], "credentials": true }} }}]"#
    );
    let headers = [("origin", ORIGIN)];
    let mut group = c.benchmark_group("gateway_check");
    for (label, entry) in [
        ("without_gateway", None),
        ("gateway_rate_limit", Some(rate.as_str())),
        ("gateway_cors", Some(cors.as_str())),
    ] {
        bench_core_plugin(&rt, &mut group, label, GATEWAY, entry, &headers);
    }
    group.finish();
}
