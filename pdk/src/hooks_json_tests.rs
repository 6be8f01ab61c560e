use super::*;
use crate::json_scan::testing;

/// Strings that need no escape, and every kind that does.
const TEXTS: &[&str] = &[
    "",
    "Origin",
    "https://app.example.com",
    "é 日本 😀",
    "a\"b",
    "back\\slash",
    "line\nbreak\r\t",
    "\u{1}\u{1f}\u{7f}",
];

fn pairs(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            (
                TEXTS[i % TEXTS.len()].into(),
                TEXTS[(i * 3 + 1) % TEXTS.len()].into(),
            )
        })
        .collect()
}

#[test]
fn continue_answers_are_serdes_bytes() {
    for n in 0..4 {
        for text in TEXTS {
            for flags in 0..8 {
                let changes = RequestChanges {
                    set_headers: pairs(n),
                    remove_headers: TEXTS[..n].iter().map(|s| (*s).into()).collect(),
                    path: (flags & 1 == 1).then(|| format!("/p/{text}")),
                    query: (flags & 2 == 2).then(|| (*text).into()),
                    response_headers: pairs((n + flags) % 4),
                    skip_on_response: flags & 4 == 4,
                };
                let d = RequestDecision::Continue(changes);
                assert_eq!(
                    String::from_utf8(d.to_json()).unwrap(),
                    serde_json::to_string(&d).unwrap()
                );
            }
        }
    }
}

#[test]
fn other_answers_are_serdes_bytes() {
    let mut head = ResponseHead::new(429);
    head.headers = pairs(3);
    head.body = Some("{\"code\":\"RATE_LIMITED\"}".into());
    for d in [
        RequestDecision::respond(head),
        RequestDecision::proxy(Upstream::new("http://10.0.0.5/x").set_header("host", "a\"b")),
    ] {
        assert_eq!(d.to_json(), serde_json::to_vec(&d).unwrap());
    }
}

/// Upstreams with every member present or not, and texts to escape.
fn upstreams() -> Vec<Upstream> {
    let mut out = Vec::new();
    for flags in 0..64u32 {
        let text = TEXTS[flags as usize % TEXTS.len()];
        let pick = |bit: u32, v: u64| (flags & (1 << bit) != 0).then_some(v);
        out.push(Upstream {
            url: format!("http://10.0.0.5:8080/v1/{text}?page=2"),
            set_headers: pairs(flags as usize % 3),
            remove_headers: TEXTS[..(flags as usize % 4)]
                .iter()
                .map(|s| (*s).into())
                .collect(),
            timeout_ms: pick(0, 5000),
            connect_timeout_ms: pick(1, 0),
            websocket: flags & 4 != 0,
            idle_timeout_ms: pick(3, u64::MAX),
            max_duration_ms: pick(4, 86_400_000),
        });
    }
    out
}

#[test]
fn proxy_answers_are_serdes_bytes_and_read_back() {
    for up in upstreams() {
        let d = RequestDecision::proxy(up.clone());
        let json = d.to_json();
        assert_eq!(
            String::from_utf8(json.clone()).unwrap(),
            serde_json::to_string(&d).unwrap()
        );
        // Read back unless an escape it leaves to serde is in it.
        if let Some(read) = Upstream::read_proxy(&json) {
            assert_eq!(read, up);
        }
    }
}

/// A reader of one kind of answer agrees with serde wherever it answers.
fn agree(json: &[u8], read: fn(&[u8]) -> Option<RequestDecision>) {
    if let Some(ours) = read(json) {
        let text = String::from_utf8_lossy(json);
        let serde: RequestDecision = serde_json::from_slice(json)
            .unwrap_or_else(|e| panic!("{text}: read, serde refused: {e}"));
        assert_eq!(ours, serde, "{text}");
    }
}

fn read_continue(json: &[u8]) -> Option<RequestDecision> {
    RequestChanges::read_continue(json).map(RequestDecision::Continue)
}

fn read_proxy(json: &[u8]) -> Option<RequestDecision> {
    Upstream::read_proxy(json).map(RequestDecision::proxy)
}

/// `read` agrees with serde on each of `odd` and on every damaged copy of
/// each of `written`.
fn agree_on(read: fn(&[u8]) -> Option<RequestDecision>, odd: &[&[u8]], written: &[Vec<u8>]) {
    for json in odd {
        agree(json, read);
    }
    for json in written {
        for damaged in testing::damaged(json, b"\"\\{}[],:0tfn\x01\xff") {
            agree(&damaged, read);
        }
    }
}

#[test]
fn proxy_answers_read_back_as_serde_reads_them() {
    let answers: Vec<Vec<u8>> = upstreams()
        .into_iter()
        .step_by(7)
        .map(|up| RequestDecision::proxy(up).to_json())
        .collect();
    let odd: &[&[u8]] = &[
        br#" { "upstream" : { "websocket" : false , "url" : "http://a/" , "x" : [1,{"y":null}] , "timeout_ms" : null } , "action" : "proxy" } "#,
        br#"{"action":"proxy","upstream":{"url":"http://a/"},"upstream":{"url":"http://b/"}}"#,
        br#"{"action":"proxy","upstream":{"url":"http://a/","url":"http://b/"}}"#,
        br#"{"action":"proxy","upstream":{"timeout_ms":5}}"#,
        br#"{"action":"proxy","upstream":{"url":"http://a/","timeout_ms":-1}}"#,
        br#"{"action":"proxy","upstream":{"url":"http://a/","timeout_ms":1.5}}"#,
        br#"{"action":"proxy","upstream":{"url":"http://a/","timeout_ms":18446744073709551616}}"#,
        br#"{"action":"proxy","upstream":{"url":"http://a/","websocket":null}}"#,
        br#"{"action":"proxy","upstream":{"url":"http://a/","set_headers":null}}"#,
        br#"{"action":"proxy","upstream":null}"#,
        br#"{"action":"proxy","action":"proxy","upstream":{"url":"http://a/"}}"#,
        br#"{"action":"proxy"}"#,
        br#"{"action":"continue","upstream":{"url":"http://a/"}}"#,
    ];
    agree_on(read_proxy, odd, &answers[..4]);
}

#[test]
fn continue_answers_read_back_as_serde_reads_them() {
    let mut answers = Vec::new();
    for n in 0..3 {
        for flags in 0..8 {
            let d = RequestDecision::Continue(RequestChanges {
                set_headers: pairs(n),
                remove_headers: TEXTS[..n].iter().map(|s| (*s).into()).collect(),
                path: (flags & 1 == 1).then(|| "/p".into()),
                query: (flags & 2 == 2).then(|| TEXTS[n + 4].into()),
                response_headers: pairs((n + flags) % 3),
                skip_on_response: flags & 4 == 4,
            });
            let json = d.to_json();
            // The reader reads what the writer writes, unless an escape
            // it leaves to serde is in it.
            if let Some(read) = RequestChanges::read_continue(&json) {
                assert_eq!(RequestDecision::Continue(read), d);
            }
            answers.push(json);
        }
    }
    let odd: &[&[u8]] = &[
        br#" { "skip_on_response" : false , "action" : "continue" , "x" : [1,{"y":null}] , "path" : null } "#,
        br#"{"action":"continue","action":"continue"}"#,
        br#"{"action":"continue","path":"/a","path":"/b"}"#,
        br#"{"action":"continue","set_headers":null}"#,
        br#"{"action":"continue","skip_on_response":null}"#,
        br#"{"action":"continue","remove_headers":["a",]}"#,
        br#"{"action":"respond","response":{"status":204}}"#,
        br#"{"path":"/"}"#,
        br#"{}"#,
    ];
    agree_on(read_continue, odd, &answers[..6]);
}

#[test]
fn strings_are_escaped_as_serde_escapes_them() {
    for byte in 0u8..0x80 {
        let c = char::from(byte);
        for s in [
            format!("{c}"),
            format!("a{c}z"),
            format!("0123456789{c}abcdefghij{c}{c}"),
            format!("é{c}日本{c}"),
        ] {
            let mut out = Json::with_capacity(0);
            out.string(&s);
            assert_eq!(out.0, serde_json::to_vec(&s).unwrap(), "{s:?}");
        }
    }
}

#[test]
fn response_heads_are_serdes_bytes() {
    for n in 0..4 {
        for body in [None, Some(""), Some("hello"), Some("a\"b\nc é")] {
            let mut head = ResponseHead::new(if n % 2 == 0 { 200 } else { 404 });
            head.headers = pairs(n);
            head.body = body.map(str::to_owned);
            assert_eq!(
                String::from_utf8(head.to_json()).unwrap(),
                serde_json::to_string(&head).unwrap()
            );
            head.events = vec!["kit.*".into()];
            assert_eq!(head.to_json(), serde_json::to_vec(&head).unwrap());
        }
    }
}

#[test]
fn response_changes_are_serdes_bytes() {
    for n in 0..4 {
        for status in [None, Some(200), Some(599)] {
            let c = ResponseChanges {
                status,
                set_headers: pairs(n),
                remove_headers: TEXTS[..(4 - n)].iter().map(|s| (*s).into()).collect(),
            };
            assert_eq!(
                String::from_utf8(c.to_json()).unwrap(),
                serde_json::to_string(&c).unwrap()
            );
        }
    }
    assert_eq!(ResponseChanges::default().to_json(), b"{}");
}
