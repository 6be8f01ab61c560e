//! Answers in the shape of the server's own: JSON errors and the redirect
//! to the login page (the page itself is `ui/index.html`, served by the
//! host).

use serde_json::json;

/// Whether a client prefers a page to JSON (a browser navigating).
pub fn wants_html(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("text/html"))
}

/// `application/x-www-form-urlencoded`-safe percent-encoding of a path.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The body of a 401.
pub fn unauthorized_body(code: &str, message: &str, request_id: &str) -> String {
    json!({ "code": code, "message": message, "requestId": request_id }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_knows_browsers() {
        assert_eq!(encode("/a b?x=1&y"), "/a%20b%3Fx%3D1%26y");
        assert!(wants_html(Some(
            "text/html,application/xhtml+xml,*/*;q=0.8"
        )));
        assert!(!wants_html(Some("application/json")));
        assert!(!wants_html(None));
    }
}
