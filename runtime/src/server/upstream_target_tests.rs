use super::*;

/// A small generator of indices below `n` (xorshift), the same every run.
fn xorshift(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    }
}

fn parse(up: Upstream) -> Result<Target, String> {
    Target::parse(up, "p", &DroppedHeaders::default(), &Origins::default())
}

#[test]
fn a_proxy_answer_is_checked() {
    let ok = parse(
        Upstream::new("http://svc:8080/a/b?c=1#frag")
            .set_header("x-a", "1")
            .set_header("connection", "close")
            .timeout_ms(100),
    )
    .unwrap();
    assert_eq!(ok.uri.to_string(), "/a/b?c=1");
    assert_eq!(ok.origin.authority.to_string(), "http://svc:8080/");
    assert_eq!(&*ok.origin.text, "http://svc:8080");
    assert_eq!(ok.origin.host, "svc:8080");
    let default_port = parse(Upstream::new("https://[::1]:443")).unwrap();
    assert_eq!(default_port.uri.to_string(), "/");
    assert_eq!(default_port.origin.host, "[::1]");
    // The origin is the URL's own, however it was written.
    for written in [
        "http://svc:8080/a/b?c=1#frag",
        "https://[::1]:443",
        "HTTP://Svc.Example:80/x",
        "https://10.0.0.1:8443?q",
        "http://bücher.example/",
    ] {
        let url = url::Url::parse(written).unwrap();
        assert_eq!(
            &*parse(Upstream::new(written)).unwrap().origin.text,
            url.origin().ascii_serialization(),
            "{written}"
        );
    }
    assert_eq!(ok.set_headers.len(), 1, "hop-by-hop headers are not set");
    assert_eq!(ok.timeout, Duration::from_millis(100));
    assert_eq!(ok.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    for bad in [
        Upstream::new("/relative"),
        Upstream::new("ftp://svc/x"),
        Upstream::new("http://user:pw@svc/x"),
        Upstream::new("http://user@svc/x"),
        Upstream::new("http://svc:99999/x"),
        Upstream::new("http://svc/").set_header("bad name", "1"),
        Upstream::new("http://svc/").timeout_ms(0),
        Upstream::new("http://svc/").connect_timeout_ms(MAX_TIMEOUT_MS + 1),
    ] {
        assert!(parse(bad.clone()).is_err(), "{bad:?}");
    }
}

#[test]
fn a_host_is_read_as_the_private_network_check_reads_it() {
    // Numeric hosts in the spellings WHATWG reads as IPv4, through the
    // cache as through the whole parse.
    for written in [
        "http://127.1/x",
        "http://0x7f.1/x",
        "http://0177.0.0.1/x",
        "http://2130706433/x",
    ] {
        let target = parse(Upstream::new(written)).unwrap();
        assert_eq!(
            target.origin.url.host(),
            Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST)),
            "{written}"
        );
        assert_eq!(target.origin.host, "127.0.0.1", "{written}");
    }
}

#[test]
fn an_origin_is_parsed_once_per_spelling_and_the_cache_stays_bounded() {
    let origins = Origins::default();
    let dropped = DroppedHeaders::default();
    let get = |url: &str| Target::parse(Upstream::new(url), "p", &dropped, &origins).unwrap();
    let a = get("http://svc:8080/a");
    let b = get("http://svc:8080/b?q=1");
    assert!(Arc::ptr_eq(&a.origin, &b.origin));
    assert_eq!(b.uri, "/b?q=1");
    // A path the parser would change takes the whole route, uncached.
    let dotted = get("http://svc:8080/a/../c");
    assert_eq!(dotted.uri, "/c");
    assert!(!Arc::ptr_eq(&a.origin, &dotted.origin));
    for i in 0..MAX_ORIGINS + 10 {
        get(&format!("http://svc{i}/x"));
        assert!(origins.parsed.read().unwrap().len() <= MAX_ORIGINS);
    }
}

/// Both routes agree: for every URL the plain route takes, the whole
/// parse gives the same origin and request target.
#[test]
fn the_plain_route_gives_what_the_whole_parse_gives() {
    const PREFIXES: [&str; 16] = [
        "http://svc:8080",
        "HTTP://Svc.Example:80",
        "https://[::1]:443",
        "https://10.0.0.1:8443",
        "http://bücher.example",
        "http://127.1",
        "http://0x7f.1",
        "http://h",
        "http://user@h",
        "http://h:99999",
        "ftp://h",
        "http://",
        " http://h",
        "http://h\t",
        "http://h%2e",
        "http://a.b.",
    ];
    const PIECES: [&str; 40] = [
        "/", "/", "/", ".", "..", "%2e", "%2E", "%", "a", "Z", "9", "?", "#", "'", " ", "\\", "\t",
        "é", "~", "!", "$", "&", "(", "*", "+", ",", ";", "=", ":", "@", "%41", "`", "{", "^", "|",
        "\"", "<", "\n", "-", "_",
    ];
    let origins = Origins::default();
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    let mut plain = 0;
    for _ in 0..20_000 {
        let mut url = PREFIXES[next(PREFIXES.len())].to_owned();
        if next(8) != 0 {
            url.push('/');
        }
        for _ in 0..next(10) {
            url.push_str(PIECES[next(PIECES.len())]);
        }
        let whole = parse_whole(&url);
        let Some((prefix, rest)) = split_plain(&url) else {
            continue;
        };
        let Some(origin) = origins.get(prefix) else {
            assert!(whole.is_err(), "{url:?}: the whole parse took it");
            continue;
        };
        let Ok(uri) = Uri::from_maybe_shared(Bytes::copy_from_slice(rest.as_bytes())) else {
            continue;
        };
        plain += 1;
        let (w_origin, w_uri) = whole.unwrap_or_else(|e| panic!("{url:?}: {e}"));
        assert_eq!(uri, w_uri, "{url:?}");
        assert_eq!(origin.text, w_origin.text, "{url:?}");
        assert_eq!(origin.host, w_origin.host, "{url:?}");
        assert_eq!(origin.authority, w_origin.authority, "{url:?}");
        assert_eq!(origin.url.scheme(), w_origin.url.scheme(), "{url:?}");
        assert_eq!(origin.url.host(), w_origin.url.host(), "{url:?}");
        assert_eq!(
            origin.url.port_or_known_default(),
            w_origin.url.port_or_known_default(),
            "{url:?}"
        );
    }
    // Enough of the generated URLs took the plain route to mean something.
    assert!(plain > 2_000, "only {plain} URLs took the plain route");
}

/// A route's target with a fixed origin is located through that origin,
/// parsed once: for every URL such a target can expand to, what `locate`
/// gives for the URL alone (or its same refusal).
#[test]
fn a_fixed_origin_locates_as_the_url_alone_does() {
    const TEMPLATES: [&str; 7] = [
        "http://svc:8080/$1",
        "HTTP://Svc.Example:80/api/$1",
        "https://[::1]:443/x",
        "http://127.1/$1",
        "http://h/",
        "http://$1.svc/a",
        "http://user@h/$1",
    ];
    const PIECES: [&str; 16] = [
        "/", "a", ".", "..", "%2e", "?", "#", "'", " ", "\\", "é", "$", "%41", "{", "\n", "=",
    ];
    let origins = Origins::default();
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    // Only targets whose authority no capture can change have one.
    assert_eq!(fixed_prefix("http://$1.svc/a"), None);
    assert_eq!(fixed_prefix("http://user@h/$1"), None);
    assert_eq!(fixed_prefix("http://h"), None);
    assert_eq!(fixed_prefix("http://svc:8080/$1"), Some("http://svc:8080"));
    let mut fixed = 0;
    for _ in 0..5_000 {
        let template = TEMPLATES[next(TEMPLATES.len())];
        let Some(prefix) = fixed_prefix(template) else {
            continue;
        };
        let Some(origin) = origins.get(prefix) else {
            continue;
        };
        // What expanding the template's rest could give.
        let mut url = prefix.to_owned();
        url.push('/');
        for _ in 0..next(8) {
            url.push_str(PIECES[next(PIECES.len())]);
        }
        fixed += 1;
        let alone = locate(&url, &origins);
        let at = locate_at(url.clone(), prefix, &origin, &origins);
        match (at, alone) {
            (Ok((a_origin, a_uri)), Ok((b_origin, b_uri))) => {
                assert_eq!(a_uri, b_uri, "{url:?}");
                assert_eq!(a_origin.text, b_origin.text, "{url:?}");
                assert_eq!(a_origin.host, b_origin.host, "{url:?}");
                assert_eq!(a_origin.authority, b_origin.authority, "{url:?}");
            }
            (Err(_), Err(_)) => {}
            (a, b) => panic!("{url:?}: {a:?} against {b:?}"),
        }
    }
    assert!(fixed > 2_000, "only {fixed} URLs had a fixed origin");
}

#[test]
fn the_plain_byte_table_is_the_list_it_stands_for() {
    for b in 0..=255u8 {
        let listed = b.is_ascii_alphanumeric() || b"-._~!$&()*+,;=:@/%".contains(&b);
        assert_eq!(PLAIN[usize::from(b)], listed, "byte {b:#04x}");
    }
}
