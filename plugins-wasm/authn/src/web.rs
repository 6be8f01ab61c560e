//! Answers in the shape of the server's own: JSON errors, the redirect to
//! the login page, the login page itself.

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

/// The login page: which providers exist and how to use them.
pub fn login_page(providers: &[(String, String)]) -> String {
    let items: String = providers
        .iter()
        .map(|(name, issuer)| {
            format!(
                "<li><b>{}</b>: send <code>Authorization: Bearer &lt;token&gt;</code> with a token from <code>{}</code></li>",
                escape(name),
                escape(issuer)
            )
        })
        .collect();
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in</title></head><body><h1>Sign in</h1><p>This server needs an identity.</p><ul>{items}</ul></body></html>"
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_escapes() {
        assert_eq!(encode("/a b?x=1&y"), "/a%20b%3Fx%3D1%26y");
        assert!(login_page(&[("<x>".into(), "i".into())]).contains("&lt;x&gt;"));
        assert!(wants_html(Some(
            "text/html,application/xhtml+xml,*/*;q=0.8"
        )));
        assert!(!wants_html(Some("application/json")));
        assert!(!wants_html(None));
    }
}
