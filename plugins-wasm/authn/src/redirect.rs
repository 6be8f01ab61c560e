//! Where a browser may be sent, and the cookies and forms of the login
//! flows (pure: no host calls).
//!
//! Every redirect target a client can influence (`redirect`/`returnTo`
//! after login, the target after logout) goes through [`safe_target`]: a
//! path on this server, or an absolute URL on an origin the operator
//! listed. Anything a browser could read as another host is refused:
//! `//evil.com`, `/\evil.com`, `https:evil.com`, `/<TAB>/evil.com` (browsers
//! drop tabs and newlines from URLs), `https://good.example@evil.com`.

/// The cookie holding the session id.
pub const SESSION_COOKIE: &str = "buntime_session";
/// The cookie binding a login in progress to the browser that started it.
pub const FLOW_COOKIE: &str = "buntime_auth_flow";

/// `target` when a browser may be sent there: a path on this server
/// (`/…`, never `//…`), or a URL whose origin is one of `origins` (each
/// already normalised by [`origin`]).
pub fn safe_target(target: &str, origins: &[String]) -> Option<String> {
    if target.is_empty()
        || target.len() > 2048
        || target.contains('\\')
        || target.chars().any(|c| c.is_control() || c == ' ')
    {
        return None;
    }
    if let Some(rest) = target.strip_prefix('/') {
        return (!rest.starts_with('/')).then(|| target.to_owned());
    }
    origins
        .iter()
        .find(|o| {
            target.len() >= o.len()
                && target.is_char_boundary(o.len())
                && target[..o.len()].eq_ignore_ascii_case(o)
                && matches!(
                    target[o.len()..].chars().next(),
                    None | Some('/' | '?' | '#')
                )
        })
        .map(|_| target.to_owned())
}

/// An origin as configured (`https://app.example.com[:port]`), lower case,
/// without a trailing slash; anything with a path, user or query is refused.
pub fn origin(text: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "`{text}` is not an origin: write `https://host` or `https://host:port`, without a path"
        )
    };
    let lower = text.trim_end_matches('/').to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(bad)?;
    if rest.is_empty()
        || rest
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')))
    {
        return Err(bad());
    }
    Ok(lower)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// The request's cookies without those called one of `names`, as one
/// `Cookie` value: `None` when none of them was sent (nothing to change),
/// `Some("")` when no other cookie remains.
pub fn strip_cookies(headers: &[(String, String)], names: &[&str]) -> Option<String> {
    let pairs: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
        .flat_map(|(_, v)| v.split(';'))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let ours = |p: &&str| names.contains(&p.split('=').next().unwrap_or_default());
    if !pairs.iter().any(ours) {
        return None;
    }
    Some(
        pairs
            .into_iter()
            .filter(|p| !ours(p))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// A `Set-Cookie` value: HttpOnly and SameSite=Lax always (the session
/// is sent on top-level navigations, such as the provider's redirect back,
/// but not on cross-site subrequests or form posts), Secure when the client
/// reached us over HTTPS. `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: u64, secure: bool) -> String {
    let mut out = format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax");
    if secure {
        out.push_str("; Secure");
    }
    out
}

/// The `name=value` pairs of an `application/x-www-form-urlencoded` body.
pub fn form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                buntime_pdk::http::percent_decode(k),
                buntime_pdk::http::percent_decode(v),
            )
        })
        .collect()
}

/// `base?k=v&…` with the values percent-encoded.
pub fn with_query(base: &str, params: &[(&str, &str)]) -> String {
    let mut out = base.to_owned();
    for (i, (k, v)) in params.iter().enumerate() {
        let sep = if i == 0 && !base.contains('?') {
            '?'
        } else {
            '&'
        };
        out.push(sep);
        out.push_str(k);
        out.push('=');
        out.push_str(&encode_component(v));
    }
    out
}

/// Percent-encoding for a query value or form field (everything but the
/// unreserved characters).
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a browser says a request comes from another site:
/// `Sec-Fetch-Site: cross-site` or `same-site`, an `Origin` whose host is
/// not the one the client asked for (`host`), or `Origin: null`. A login
/// form posted from another site would otherwise log the victim's browser
/// into the attacker's account (login CSRF); the host's own cross-site
/// check does not cover public plugin routes.
pub fn cross_site(sec_fetch_site: Option<&str>, origin: Option<&str>, host: Option<&str>) -> bool {
    if matches!(sec_fetch_site, Some("cross-site" | "same-site")) {
        return true;
    }
    let Some(origin) = origin else {
        return false;
    };
    match (origin.split_once("://").map(|(_, rest)| rest), host) {
        (Some(o), Some(h)) => !o.eq_ignore_ascii_case(h),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_origin_paths_and_listed_origins() {
        let origins = vec![origin("https://App.example.com/").unwrap()];
        for ok in [
            "/",
            "/shop/cart?x=1#top",
            "https://app.example.com",
            "https://app.example.com/a",
            "HTTPS://APP.EXAMPLE.COM?x",
        ] {
            assert_eq!(safe_target(ok, &origins).as_deref(), Some(ok), "{ok}");
        }
        for bad in [
            "",
            "//evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "https:evil.com",
            "https://evil.com",
            "https://app.example.com.evil.com/",
            "https://app.example.com@evil.com/",
            "https://app.example.com:444/",
            "/\t/evil.com",
            "/\n/evil.com",
            "javascript:alert(1)",
            "evil.com",
            "http://app.example.com/",
        ] {
            assert_eq!(safe_target(bad, &origins), None, "{bad:?}");
        }
        assert!(origin("https://a.example/path").is_err());
        assert!(origin("https://u@a.example").is_err());
        assert!(origin("ftp://a.example").is_err());
        assert_eq!(
            origin("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn cross_site_posts_are_recognised() {
        let host = Some("app.example:8000");
        assert!(!cross_site(None, None, host));
        assert!(!cross_site(
            Some("same-origin"),
            Some("http://app.example:8000"),
            host
        ));
        assert!(cross_site(Some("cross-site"), None, host));
        assert!(cross_site(Some("same-site"), None, host));
        assert!(cross_site(None, Some("https://evil.example"), host));
        assert!(cross_site(None, Some("null"), host));
        assert!(cross_site(None, Some("http://app.example:8000"), None));
    }

    #[test]
    fn cookies_forms_and_queries() {
        let headers = vec![
            ("accept".to_owned(), "*/*".to_owned()),
            ("cookie".to_owned(), "a=1; buntime_session=abc".to_owned()),
            ("Cookie".to_owned(), "b=2".to_owned()),
        ];
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
        assert_eq!(
            strip_cookies(&headers, &[SESSION_COOKIE]).as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(strip_cookies(&headers, &["z"]), None);
        assert_eq!(
            strip_cookies(&headers, &[SESSION_COOKIE, "a", "b"]).as_deref(),
            Some("")
        );
        assert_eq!(
            set_cookie("s", "v", "/", 60, true),
            "s=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            form("email=a%40b.c&password=p+w%26"),
            vec![
                ("email".to_owned(), "a@b.c".to_owned()),
                ("password".to_owned(), "p w&".to_owned())
            ]
        );
        assert_eq!(
            with_query("https://idp/auth", &[("a", "x y"), ("b", "/c?d")]),
            "https://idp/auth?a=x%20y&b=%2Fc%3Fd"
        );
    }
}
