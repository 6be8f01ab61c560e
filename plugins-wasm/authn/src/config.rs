//! The plugin's config: providers, per-app public routes, the login page,
//! sessions and where redirects may go.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::oidc::OidcProvider;
use crate::password::PasswordProvider;
pub use crate::routes::Routes;

/// Default claim paths read for roles: a plain `roles` list and Keycloak's
/// realm roles.
const DEFAULT_ROLE_CLAIMS: &[&str] = &["roles", "realm_access.roles"];

/// The parsed config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bearer-token providers, tried in order.
    pub providers: Vec<JwtProvider>,
    /// API-key providers (machine clients of apps).
    pub api_keys: Vec<ApiKeyProvider>,
    /// Per app, the routes that need no identity.
    pub public: BTreeMap<String, Routes>,
    /// Browser-login providers (authorization code + PKCE).
    pub oidc: Vec<OidcProvider>,
    /// Email-and-password providers (accounts in `sql`).
    pub passwords: Vec<PasswordProvider>,
    /// Where browsers without an identity are sent.
    pub login_path: String,
    /// The `sql` database holding sessions and accounts.
    pub database: String,
    /// How long a login session lasts.
    pub session_seconds: u64,
    /// `oidc` logins one client address may start a minute.
    pub login_starts_per_minute: u64,
    /// Absolute origins (`https://app.example.com`) a redirect after login
    /// or logout may go to, besides paths on this server.
    pub redirect_origins: Vec<String>,
}

/// Longest session accepted (`sessionSeconds`): 30 days.
const MAX_SESSION_SECONDS: u64 = 30 * 24 * 3600;
/// `loginStartsPerMinute` by default and at most: each start keeps a login
/// in `state` for ten minutes, so the bound caps what one address holds.
pub const LOGIN_STARTS_PER_MINUTE: u64 = 30;
const MAX_LOGIN_STARTS_PER_MINUTE: u64 = 1000;

/// A `jwt` provider: what `crypto_jwt_verify` is asked, and how claims become
/// an identity.
#[derive(Debug, Clone)]
pub struct JwtProvider {
    /// Its name (`provider` in the identity).
    pub name: String,
    /// The `crypto_jwt_verify` request, without `token`.
    pub verify: Map<String, Value>,
    /// `verify`'s members as JSON text, without the braces: written once
    /// here, so a request's check only writes its token before them.
    pub verify_members: String,
    /// Dotted claim paths whose string lists are roles.
    pub roles: Vec<String>,
    /// Dotted claim path of the groups list.
    pub groups: String,
    /// Claim holding a display name.
    pub name_claim: String,
}

impl Config {
    /// Parses the plugin's config object.
    pub fn parse(cfg: &Value) -> Result<Self, String> {
        let (mut providers, mut api_keys) = (Vec::new(), Vec::new());
        let (mut oidc, mut passwords) = (Vec::new(), Vec::new());
        match cfg.get("providers") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for (i, p) in list.iter().enumerate() {
                    let at = |e: String| format!("`providers[{i}]`: {e}");
                    match p.get("type").and_then(Value::as_str).unwrap_or("jwt") {
                        "apiKeys" => api_keys.push(ApiKeyProvider::parse(p).map_err(at)?),
                        "oidc" => oidc.push(OidcProvider::parse(p).map_err(at)?),
                        "email-password" => passwords.push(PasswordProvider::parse(p).map_err(at)?),
                        _ => providers.push(JwtProvider::parse(p).map_err(at)?),
                    }
                }
            }
            Some(other) => return Err(format!("`providers` must be a list, found {other}")),
        }
        let mut public = BTreeMap::new();
        match cfg.get("publicRoutes") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (app, routes) in map {
                    public.insert(
                        app.clone(),
                        Routes::parse(routes).map_err(|e| format!("`publicRoutes.{app}`: {e}"))?,
                    );
                }
            }
            Some(other) => {
                return Err(format!(
                    "`publicRoutes` must be an object of app names, found {other}"
                ));
            }
        }
        let login_path = match cfg.get("loginPath") {
            None | Some(Value::Null) => "/_/auth/login".to_owned(),
            Some(Value::String(p)) if p.starts_with('/') && !p.starts_with("//") => p.clone(),
            Some(other) => {
                return Err(format!(
                    "`loginPath` must be a path on this server starting with one `/`, found {other}"
                ));
            }
        };
        let mut names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        names.extend(api_keys.iter().map(|p| p.name.as_str()));
        names.extend(oidc.iter().map(|p| p.name.as_str()));
        names.extend(passwords.iter().map(|p| p.name.as_str()));
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(format!(
                    "two providers are named `{n}`: give each its own `name`"
                ));
            }
        }
        let database = match cfg.get("database") {
            None | Some(Value::Null) => "default".to_owned(),
            Some(Value::String(d)) if !d.is_empty() => d.clone(),
            Some(other) => {
                return Err(format!(
                    "`database` must name a `sql` database, found {other}"
                ));
            }
        };
        let session_seconds = match cfg.get("sessionSeconds") {
            None | Some(Value::Null) => 8 * 3600,
            Some(v) => v
                .as_u64()
                .filter(|s| (60..=MAX_SESSION_SECONDS).contains(s))
                .ok_or_else(|| {
                    format!("`sessionSeconds` must be 60 to {MAX_SESSION_SECONDS}, found {v}")
                })?,
        };
        let login_starts_per_minute = match cfg.get("loginStartsPerMinute") {
            None | Some(Value::Null) => LOGIN_STARTS_PER_MINUTE,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=MAX_LOGIN_STARTS_PER_MINUTE).contains(n))
                .ok_or_else(|| {
                    format!(
                        "`loginStartsPerMinute` must be 1 to {MAX_LOGIN_STARTS_PER_MINUTE}, found {v}"
                    )
                })?,
        };
        let redirect_origins = match cfg.get("allowedRedirectOrigins") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => string_or_list(v, "allowedRedirectOrigins")?
                .iter()
                .map(|o| crate::redirect::origin(o))
                .collect::<Result<_, _>>()?,
        };
        Ok(Self {
            providers,
            api_keys,
            public,
            oidc,
            passwords,
            login_path,
            database,
            session_seconds,
            login_starts_per_minute,
            redirect_origins,
        })
    }
}

pub(crate) fn string_or_list(v: &Value, what: &str) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("`{what}` entries must be strings, found {i}"))
            })
            .collect(),
        other => Err(format!(
            "`{what}` must be a string or a list of strings, found {other}"
        )),
    }
}

impl JwtProvider {
    pub(crate) fn parse(p: &Value) -> Result<Self, String> {
        let obj = p.as_object().ok_or("a provider is an object")?;
        let ty = obj.get("type").and_then(Value::as_str).unwrap_or("jwt");
        if ty != "jwt" {
            return Err(format!(
                "unknown provider type `{ty}` (supported: jwt, oidc, email-password, apiKeys)"
            ));
        }
        let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
        let issuer = text("issuer").ok_or("`issuer` is required: the provider's `iss`")?;
        let name = text("name").unwrap_or_else(|| "jwt".to_owned());
        let mut verify = Map::new();
        verify.insert("issuer".into(), json!(issuer));
        match text("jwksUri") {
            Some(uri) => {
                verify.insert("jwksUri".into(), json!(uri));
            }
            None => {
                verify.insert("discovery".into(), json!(true));
            }
        }
        if let Some(aud) = obj.get("audience") {
            verify.insert("audience".into(), json!(string_or_list(aud, "audience")?));
        }
        if let Some(s) = obj.get("clockSkewSeconds") {
            let s = s
                .as_u64()
                .ok_or("`clockSkewSeconds` must be a whole number")?;
            verify.insert("leewaySeconds".into(), json!(s));
        }
        for (from, to) in [
            ("requiredClaims", "requiredClaims"),
            ("algorithms", "algorithms"),
        ] {
            if let Some(v) = obj.get(from) {
                verify.insert(to.into(), json!(string_or_list(v, from)?));
            }
        }
        for key in ["refreshSeconds", "cacheSeconds"] {
            if let Some(v) = obj.get(key) {
                let n = v
                    .as_u64()
                    .ok_or_else(|| format!("`{key}` must be a whole number"))?;
                verify.insert(key.into(), json!(n));
            }
        }
        if let Some(secret) = text("secret") {
            verify.insert("secret".into(), json!(secret));
        }
        let mut roles = match obj.get("rolesClaim") {
            Some(v) => string_or_list(v, "rolesClaim")?,
            None => DEFAULT_ROLE_CLAIMS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        };
        if let Some(client) = text("clientId") {
            roles.push(format!("resource_access.{client}.roles"));
        }
        for key in obj.keys() {
            const KNOWN: &[&str] = &[
                "type",
                "name",
                "issuer",
                "jwksUri",
                "audience",
                "clockSkewSeconds",
                "requiredClaims",
                "algorithms",
                "refreshSeconds",
                "cacheSeconds",
                "secret",
                "rolesClaim",
                "clientId",
                "groupsClaim",
                "nameClaim",
            ];
            if !KNOWN.contains(&key.as_str()) {
                return Err(format!("unknown key `{key}` (known: {})", KNOWN.join(", ")));
            }
        }
        let json = serde_json::to_string(&verify).map_err(|e| e.to_string())?;
        let verify_members = json[1..json.len() - 1].to_owned();
        Ok(Self {
            name,
            verify,
            verify_members,
            roles,
            groups: text("groupsClaim").unwrap_or_else(|| "groups".to_owned()),
            name_claim: text("nameClaim").unwrap_or_else(|| "name".to_owned()),
        })
    }

    /// The `X-Identity` value for verified `claims`.
    pub fn identity(&self, claims: &Value) -> Value {
        serde_json::to_value(self.identity_of(claims)).unwrap_or(Value::Null)
    }

    /// [`JwtProvider::identity`] written as JSON text straight away (the
    /// request path: no copy of the claims).
    pub fn identity_json(&self, claims: Value) -> String {
        serde_json::to_string(&self.identity_of(&claims)).unwrap_or_default()
    }

    fn identity_of<'a>(&'a self, claims: &'a Value) -> Identity<'a> {
        let mut roles: Vec<String> = Vec::new();
        for path in &self.roles {
            for r in strings_at(claims, path) {
                if !roles.contains(&r) {
                    roles.push(r);
                }
            }
        }
        Identity {
            claims,
            groups: strings_at(claims, &self.groups),
            name: claims.get(&self.name_claim).and_then(Value::as_str),
            provider: &self.name,
            roles,
            sub: claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        }
    }
}

/// The `X-Identity` of a token (fields in the order `json!` writes them).
#[derive(serde::Serialize)]
struct Identity<'a> {
    claims: &'a Value,
    groups: Vec<String>,
    name: Option<&'a str>,
    provider: &'a str,
    roles: Vec<String>,
    sub: &'a str,
}

/// An `apiKeys` provider: keys for machine clients of apps, stored as
/// SHA-256 digests (a key is random, so a fast digest is enough; the plain
/// key is never in the config).
#[derive(Debug, Clone)]
pub struct ApiKeyProvider {
    /// Its name (`provider` in the identity).
    pub name: String,
    /// The request header carrying the key (lower case); `Authorization:
    /// Bearer <key>` is read too.
    pub header: String,
    /// The keys.
    pub keys: Vec<ApiKey>,
}

/// One machine client's key.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// The client's name (`sub` is `apikey:<name>`).
    pub name: String,
    /// The key's SHA-256, lower-case hex.
    pub sha256: String,
    /// Its roles.
    pub roles: Vec<String>,
}

impl ApiKeyProvider {
    fn parse(p: &Value) -> Result<Self, String> {
        let obj = p.as_object().ok_or("a provider is an object")?;
        for key in obj.keys() {
            if !["type", "name", "header", "keys"].contains(&key.as_str()) {
                return Err(format!(
                    "unknown key `{key}` (known: type, name, header, keys)"
                ));
            }
        }
        let list = obj
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("`keys` is required: [{\"name\", \"sha256\", \"roles\"}]")?;
        let keys = list
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let name = k["name"]
                    .as_str()
                    .ok_or_else(|| format!("`keys[{i}].name` is required"))?;
                let sha256 = k["sha256"].as_str().unwrap_or_default().to_ascii_lowercase();
                if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!(
                        "`keys[{i}].sha256` must be the key's SHA-256 in hex (64 digits), e.g. from `printf %s \"$KEY\" | sha256sum`"
                    ));
                }
                let roles = match k.get("roles") {
                    Some(v) => string_or_list(v, "roles")?,
                    None => Vec::new(),
                };
                Ok(ApiKey {
                    name: name.to_owned(),
                    sha256,
                    roles,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            name: obj
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("apiKeys")
                .to_owned(),
            header: obj
                .get("header")
                .and_then(Value::as_str)
                .unwrap_or("x-api-key")
                .to_ascii_lowercase(),
            keys,
        })
    }

    /// The key whose digest is `digest` (hex), comparing every key in full
    /// so the time does not depend on which one, or where, it differs.
    pub fn find(&self, digest: &str) -> Option<&ApiKey> {
        let mut found = None;
        for key in &self.keys {
            let diff = key
                .sha256
                .bytes()
                .zip(digest.bytes())
                .fold(u8::from(key.sha256.len() != digest.len()), |acc, (a, b)| {
                    acc | (a ^ b)
                });
            if diff == 0 {
                found = Some(key);
            }
        }
        found
    }

    /// The `X-Identity` value for `key`.
    pub fn identity(&self, key: &ApiKey) -> Value {
        json!({
            "sub": format!("apikey:{}", key.name),
            "name": key.name,
            "roles": key.roles,
            "groups": [],
            "claims": {},
            "provider": self.name,
        })
    }
}

/// The strings of the list (or the one string) at a dotted claim path.
/// A segment is looked up whole first, so a claim name with a dot in it
/// (`resource_access.my.client`) still resolves.
fn strings_at(claims: &Value, path: &str) -> Vec<String> {
    fn walk<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
        if path.is_empty() {
            return Some(v);
        }
        if let Some(hit) = v.get(path) {
            return Some(hit);
        }
        let mut split = path.match_indices('.').map(|(i, _)| i);
        split.find_map(|i| walk(v.get(&path[..i])?, &path[i + 1..]))
    }
    match walk(claims, path) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keycloak_roles_and_identity() {
        let cfg = Config::parse(&json!({"providers": [{
            "name": "kc", "issuer": "https://kc/realms/r", "audience": "api", "clientId": "shop"
        }]}))
        .unwrap();
        let p = &cfg.providers[0];
        assert_eq!(p.verify["discovery"], json!(true));
        assert_eq!(p.verify["audience"], json!(["api"]));
        // The members sent on the request path are `verify`, token first.
        let request: Value =
            serde_json::from_str(&format!(r#"{{"token":"t",{}}}"#, p.verify_members)).unwrap();
        let mut expected = p.verify.clone();
        expected.insert("token".into(), json!("t"));
        assert_eq!(request, Value::Object(expected));
        let id = p.identity(&json!({
            "sub": "u1", "name": "Ana",
            "realm_access": {"roles": ["reader"]},
            "resource_access": {"shop": {"roles": ["admin", "reader"]}},
            "groups": ["ops"]
        }));
        assert_eq!(id["sub"], "u1");
        assert_eq!(id["name"], "Ana");
        assert_eq!(id["roles"], json!(["reader", "admin"]));
        assert_eq!(id["groups"], json!(["ops"]));
        assert_eq!(id["provider"], "kc");
        assert!(Config::parse(&json!({"providers": [{"type": "saml", "issuer": "x"}]})).is_err());
        assert!(Config::parse(&json!({"providers": [{"name": "x"}]})).is_err());
        assert!(Config::parse(&json!({"loginPath": "//evil.example"})).is_err());
        // The identity as text is the same identity.
        let claims = json!({"sub": "u1", "roles": ["r"], "exp": 1});
        let text: Value = serde_json::from_str(&p.identity_json(claims.clone())).unwrap();
        assert_eq!(text, p.identity(&claims));
        assert_eq!(text["claims"], claims);
    }

    #[test]
    fn login_starts_per_minute_has_a_default_and_bounds() {
        let parse = |v: Value| Config::parse(&json!({ "loginStartsPerMinute": v }));
        assert_eq!(
            Config::parse(&json!({})).unwrap().login_starts_per_minute,
            LOGIN_STARTS_PER_MINUTE
        );
        assert_eq!(parse(json!(2)).unwrap().login_starts_per_minute, 2);
        assert_eq!(parse(json!(1000)).unwrap().login_starts_per_minute, 1000);
        for bad in [json!(0), json!(1001), json!("many"), json!(-1)] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn api_keys() {
        let digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"; // "test"
        let cfg = Config::parse(&json!({"providers": [{
            "type": "apiKeys", "keys": [{"name": "ci", "sha256": digest.to_uppercase(), "roles": ["deployer"]}]
        }]}))
        .unwrap();
        let p = &cfg.api_keys[0];
        assert_eq!(p.header, "x-api-key");
        let key = p.find(digest).unwrap();
        assert_eq!(p.identity(key)["sub"], "apikey:ci");
        assert!(p.find(&digest.replace('9', "8")).is_none());
        assert!(p.find("").is_none());
        assert!(Config::parse(&json!({"providers": [{"type": "apiKeys", "keys": [{"name": "x", "sha256": "abc"}]}]})).is_err());
    }

    #[test]
    fn client_roles_with_dots_in_the_client_id() {
        let cfg =
            Config::parse(&json!({"providers": [{"issuer": "i", "clientId": "my.app"}]})).unwrap();
        let id = cfg.providers[0].identity(&json!({
            "resource_access": {"my.app": {"roles": ["x"]}}
        }));
        assert_eq!(id["roles"], json!(["x"]));
    }
}
