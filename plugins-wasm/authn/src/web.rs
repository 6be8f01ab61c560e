//! Answers in the shape of the server's own: JSON errors, the redirect to
//! the login page, the login page itself.

use serde_json::json;

use crate::config::JwtProvider;
use crate::oidc::OidcProvider;
use crate::password::PasswordProvider;
use crate::redirect::encode_component;

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

/// What the login page offers.
pub struct LoginPage<'a> {
    /// Bearer-token providers (described, not clickable).
    pub bearer: &'a [JwtProvider],
    /// Browser-login providers (a link each).
    pub oidc: &'a [OidcProvider],
    /// Email-and-password providers (a form each).
    pub passwords: &'a [PasswordProvider],
    /// Where to go after the login (already checked).
    pub redirect: &'a str,
}

/// The login page: a link per `oidc` provider, a form per `email-password`
/// one, and how to use the bearer-token providers.
pub fn login_page(page: &LoginPage<'_>) -> String {
    let redirect = encode_component(page.redirect);
    let mut items = String::new();
    for p in page.oidc {
        items.push_str(&format!(
            "<li><a href=\"/_/auth/api/login?provider={}&amp;redirect={redirect}\">Sign in with {}</a></li>",
            encode_component(&p.name),
            escape(&p.name)
        ));
    }
    for p in page.passwords {
        items.push_str(&format!(
            "<li><form method=\"post\" action=\"/_/auth/api/login\"><b>{}</b> \
             <input type=\"hidden\" name=\"provider\" value=\"{}\">\
             <input type=\"hidden\" name=\"redirect\" value=\"{}\">\
             <input type=\"email\" name=\"email\" placeholder=\"email\" required> \
             <input type=\"password\" name=\"password\" placeholder=\"password\" required> \
             <button>Sign in</button></form></li>",
            escape(&p.name),
            escape(&p.name),
            escape(page.redirect)
        ));
    }
    for p in page.bearer {
        items.push_str(&format!(
            "<li><b>{}</b>: send <code>Authorization: Bearer &lt;token&gt;</code> with a token from <code>{}</code></li>",
            escape(&p.name),
            escape(p.verify.get("issuer").and_then(|i| i.as_str()).unwrap_or_default())
        ));
    }
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
        let cfg = crate::config::Config::parse(&json!({"providers": [
            {"name": "<x>", "issuer": "i"},
            {"type": "oidc", "name": "idp", "issuer": "i", "clientId": "c"},
            {"type": "email-password"}
        ]}))
        .unwrap();
        let page = login_page(&LoginPage {
            bearer: &cfg.providers,
            oidc: &cfg.oidc,
            passwords: &cfg.passwords,
            redirect: "/a?b=\"c",
        });
        assert!(page.contains("&lt;x&gt;"));
        assert!(page.contains("/_/auth/api/login?provider=idp&amp;redirect=%2Fa%3Fb%3D%22c"));
        assert!(page.contains("value=\"/a?b=&quot;c\""));
        assert!(wants_html(Some(
            "text/html,application/xhtml+xml,*/*;q=0.8"
        )));
        assert!(!wants_html(Some("application/json")));
        assert!(!wants_html(None));
    }
}
