use super::*;
use crate::RequestHead;

/// Heads of every shape the layout has: each optional field there or not,
/// empty and non-ASCII text, no headers and many.
fn heads() -> Vec<RequestHead> {
    let mut out = Vec::new();
    let header_sets: [&[(&str, &str)]; 4] = [
        &[],
        &[("host", "example.com")],
        &[
            ("host", "a.example"),
            ("origin", "https://b.example"),
            ("x-quote", "a\"b\\c"),
            ("x-empty", ""),
        ],
        &[("x-é", "ü ∑ 😀"), ("host", "x"), ("host", "y")],
    ];
    for (i, headers) in header_sets.iter().enumerate() {
        for query in [None, Some(""), Some("a=1&b=%20")] {
            for body_length in [None, Some(0), Some(u64::MAX)] {
                out.push(RequestHead {
                    method: ["GET", "POST", "PROPFIND", ""][i].into(),
                    path: ["/", "/up/x", "/a b/ü", ""][i].into(),
                    query: query.map(Into::into),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                    base: ["", "/app@1.0.0", "", "/x"][i].into(),
                    request_id: ["", "01J0REQ", "r", ""][i].into(),
                    body_length,
                    core_route: i % 2 == 1,
                });
            }
        }
    }
    out
}

fn encode_head(h: &RequestHead) -> Vec<u8> {
    let headers: Vec<(&str, &str)> = h
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    encode(
        &h.method,
        &h.path,
        h.query.as_deref(),
        headers,
        &h.base,
        &h.request_id,
        h.body_length,
        h.core_route,
    )
}

#[test]
fn a_binary_head_reads_as_its_json_reads() {
    for head in heads() {
        let json = serde_json::to_vec(&head).unwrap();
        let bytes = encode_head(&head);
        assert!(is_binary(&bytes) && !is_binary(&json));
        let from_json = RequestHead::from_json(&json).unwrap();
        assert_eq!(RequestHead::from_input(&bytes).unwrap(), from_json);
        assert_eq!(RequestHead::from_input(&json).unwrap(), from_json);
        let by_ref = RequestHeadRef::from_input(&bytes).unwrap();
        assert_eq!(by_ref.to_owned_head(), from_json);
        assert_eq!(
            by_ref.headers().collect::<Vec<_>>(),
            RequestHeadRef::from_json(&json)
                .unwrap()
                .headers()
                .collect::<Vec<_>>()
        );
        // What a hook that wants JSON text gets is the host's JSON.
        assert_eq!(
            serde_json::from_slice::<RequestHead>(&to_json(&bytes).unwrap()).unwrap(),
            from_json
        );
    }
}

#[test]
fn a_damaged_binary_head_is_an_error_not_a_panic() {
    let head = &heads()[20];
    let bytes = encode_head(head);
    // Every truncation, and every single byte changed to each extreme.
    for end in 0..bytes.len() {
        assert!(decode(&bytes[..end]).is_none(), "cut at {end}");
    }
    for at in 1..bytes.len() {
        for b in [0x00, 0x7f, 0xff] {
            let mut damaged = bytes.clone();
            damaged[at] = b;
            // Read or refused; never a panic, never text past the input.
            if let Some(h) = decode(&damaged) {
                assert!(h.path().len() <= damaged.len());
            }
        }
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decode(&longer).is_none(), "bytes left over");
    let err = RequestHead::from_input(&bytes[..bytes.len() - 1]).unwrap_err();
    assert!(
        err.to_string().contains("malformed binary request head"),
        "{err}"
    );
}

#[test]
fn a_header_count_past_the_input_allocates_nothing() {
    let mut bytes = encode("GET", "/", None, std::iter::empty(), "", "", None, false);
    let at = bytes.len() - 4;
    bytes[at..].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(decode(&bytes).is_none());
}

#[test]
fn text_that_is_not_utf8_or_cut_inside_a_character_is_refused() {
    let bytes = encode("GET", "/é", None, std::iter::empty(), "", "", None, false);
    let text_at = bytes.len() - "GET/é".len();
    assert_eq!(&bytes[text_at..], "GET/é".as_bytes());
    let mut bad = bytes.clone();
    bad[text_at + 4] = 0xff;
    assert!(decode(&bad).is_none(), "not UTF-8");
    // Method 5 bytes and path 1: the method ends inside `é`.
    let mut cut = bytes.clone();
    cut[6..10].copy_from_slice(&5u32.to_le_bytes());
    cut[10..14].copy_from_slice(&1u32.to_le_bytes());
    assert!(decode(&cut).is_none(), "a string cut inside a character");
    assert_eq!(
        decode(&bytes).map(|h| h.path().to_owned()).as_deref(),
        Some("/é")
    );
}
