//! The `oidc` provider's config: browser login by authorization code and
//! PKCE (the flow itself is in the guest, `guest/oidc.rs`).

use serde_json::{Value, json};

use crate::config::{JwtProvider, string_or_list};

/// An `oidc` provider.
#[derive(Debug, Clone)]
pub struct OidcProvider {
    /// Its name (`provider` in the identity; `?provider=` of the login).
    pub name: String,
    /// The provider's issuer (`iss` of its ID tokens, base of discovery).
    pub issuer: String,
    /// This server's client id at the provider.
    pub client_id: String,
    /// The client secret (confidential clients); without it the token
    /// request carries only `client_id` and the PKCE verifier.
    pub client_secret: Option<String>,
    /// The requested scopes, space-separated (always with `openid`).
    pub scopes: String,
    /// The callback URL registered at the provider; by default
    /// `<scheme>://<host>/_/auth/api/callback` as the client reached us.
    pub redirect_uri: Option<String>,
    /// Where the provider sends the browser after an RP-initiated logout
    /// (must be registered at the provider).
    pub post_logout_redirect_uri: Option<String>,
    /// How ID tokens are checked (audience: the client id) and their claims
    /// become an identity.
    pub id_token: JwtProvider,
}

/// Keys of an `oidc` provider that are not claim or token settings.
const OWN_KEYS: &[&str] = &[
    "clientSecret",
    "scopes",
    "redirectUri",
    "postLogoutRedirectUri",
];

impl OidcProvider {
    pub(crate) fn parse(p: &Value) -> Result<Self, String> {
        let obj = p.as_object().ok_or("a provider is an object")?;
        let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
        let client_id = text("clientId")
            .ok_or("`clientId` is required: this server's client id at the provider")?;
        if obj.contains_key("audience") {
            return Err("`audience` is not set on an `oidc` provider: its ID tokens' audience is `clientId`".into());
        }
        let mut scopes = match obj.get("scopes") {
            Some(v) => string_or_list(v, "scopes")?,
            None => vec!["openid".into(), "profile".into(), "email".into()],
        };
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        for key in ["redirectUri", "postLogoutRedirectUri"] {
            if let Some(v) = obj.get(key) {
                let uri = v.as_str().unwrap_or_default();
                if !(uri.starts_with("https://") || uri.starts_with("http://")) {
                    return Err(format!(
                        "`{key}` must be an absolute http(s) URL, found {v}"
                    ));
                }
            }
        }
        // The claim settings are a `jwt` provider's, checking ID tokens.
        let mut jwt = obj.clone();
        jwt.retain(|k, _| !OWN_KEYS.contains(&k.as_str()));
        jwt.insert("type".into(), json!("jwt"));
        jwt.insert("audience".into(), json!(client_id));
        jwt.entry("name").or_insert(json!("oidc"));
        jwt.entry("requiredClaims").or_insert(json!(["sub"]));
        let id_token = JwtProvider::parse(&Value::Object(jwt))?;
        Ok(Self {
            name: id_token.name.clone(),
            issuer: text("issuer").unwrap_or_default(),
            client_id,
            client_secret: text("clientSecret"),
            scopes: scopes.join(" "),
            redirect_uri: text("redirectUri"),
            post_logout_redirect_uri: text("postLogoutRedirectUri"),
            id_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn oidc_providers_parse() {
        let cfg = Config::parse(&json!({"providers": [{
            "type": "oidc", "name": "idp", "issuer": "https://idp.example", "clientId": "shop",
            "clientSecret": "s", "scopes": ["profile"], "rolesClaim": "roles"
        }]}))
        .unwrap();
        let p = &cfg.oidc[0];
        assert_eq!(p.name, "idp");
        assert_eq!(p.scopes, "openid profile");
        assert_eq!(p.id_token.verify["audience"], json!(["shop"]));
        assert_eq!(p.id_token.verify["requiredClaims"], json!(["sub"]));
        assert!(cfg.providers.is_empty());
        for bad in [
            json!({"type": "oidc", "issuer": "i"}),
            json!({"type": "oidc", "issuer": "i", "clientId": "c", "audience": "x"}),
            json!({"type": "oidc", "issuer": "i", "clientId": "c", "redirectUri": "/cb"}),
            json!({"type": "oidc", "issuer": "i", "clientId": "c", "colour": "red"}),
        ] {
            assert!(
                Config::parse(&json!({"providers": [bad]})).is_err(),
                "{bad}"
            );
        }
    }
}
