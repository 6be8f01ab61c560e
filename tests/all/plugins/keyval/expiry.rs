//! Keyval entries with a TTL: they expire at their time in milliseconds,
//! and an expired entry counts as absent.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{api, atomic, client, keys_of, list, send, set, start};

#[tokio::test]
async fn entries_expire_with_millisecond_ttl() {
    let server = start().await;
    let set_at = Instant::now();
    let (status, _) = send(
        client()
            .put(api(&server, "/keys/tmp/a?expiresIn=300"))
            .body("1"),
    )
    .await;
    let written_by = Instant::now();
    assert_eq!(status, 200);
    atomic(
        &server,
        json!({"mutations": [{"type": "set", "key": ["tmp", "b"], "value": 2, "expiresIn": 900}]}),
    )
    .await;
    set(&server, json!(["tmp", "c"]), json!(3)).await;

    // Timed on this side: the entry was written after `set_at` and read
    // before `answered`, so if less than its TTL separates the two it must
    // still be there (less 10 ms for the store's millisecond clock). Timed
    // from when the read was asked instead, a slow answer read after the
    // expiry would fail the test.
    let (status, _) = send(client().get(api(&server, "/keys/tmp/a"))).await;
    let answered = Instant::now();
    if answered.duration_since(set_at) < Duration::from_millis(290) {
        assert_eq!(status, 200, "visible before it expires");
    }
    // It goes at its TTL, in milliseconds: the entry was written by
    // `written_by`, so a read asked for 300 ms (and a margin) after that
    // must miss it — a TTL rounded up to whole seconds would not.
    loop {
        let asked = Instant::now();
        let (status, _) = send(client().get(api(&server, "/keys/tmp/a"))).await;
        if status == 404 {
            break;
        }
        let late = asked.duration_since(written_by);
        assert!(
            late < Duration::from_millis(350),
            "still visible {late:?} after it was written with a 300 ms TTL"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The other entry with a TTL goes too; the one without stays.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let keys = keys_of(&list(&server, json!({"prefix": ["tmp"]})).await);
        if keys == vec![json!(["tmp", "c"])] {
            break;
        }
        assert!(
            keys.contains(&json!(["tmp", "c"])) && Instant::now() < deadline,
            "{keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // An expired entry counts as absent for checks.
    let (status, body) = atomic(&server, json!({"checks": [{"key": ["tmp", "a"], "versionstamp": null}], "mutations": [{"type": "set", "key": ["tmp", "a"], "value": "new"}]})).await;
    assert_eq!(status, 200, "{body}");
    let bad = send(
        client()
            .put(api(&server, "/keys/tmp/x?expiresIn=-1"))
            .body("1"),
    )
    .await;
    assert_eq!(bad.0, 400, "{}", bad.1);
    server.stop().await;
}
