//! The plugin's config: providers, per-app public routes, the login page.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

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
    /// Where browsers without an identity are sent.
    pub login_path: String,
}

/// A `jwt` provider: what `crypto_jwt_verify` is asked, and how claims become
/// an identity.
#[derive(Debug, Clone)]
pub struct JwtProvider {
    /// Its name (`provider` in the identity).
    pub name: String,
    /// The `crypto_jwt_verify` request, without `token`.
    pub verify: Map<String, Value>,
    /// Dotted claim paths whose string lists are roles.
    pub roles: Vec<String>,
    /// Dotted claim path of the groups list.
    pub groups: String,
    /// Claim holding a display name.
    pub name_claim: String,
}

/// Route globs per method (`ALL` for every method).
#[derive(Debug, Clone, Default)]
pub struct Routes {
    by_method: BTreeMap<String, Vec<String>>,
}

impl Config {
    /// Parses the plugin's config object.
    pub fn parse(cfg: &Value) -> Result<Self, String> {
        let (mut providers, mut api_keys) = (Vec::new(), Vec::new());
        match cfg.get("providers") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for (i, p) in list.iter().enumerate() {
                    let at = |e: String| format!("`providers[{i}]`: {e}");
                    match p.get("type").and_then(Value::as_str).unwrap_or("jwt") {
                        "apiKeys" => api_keys.push(ApiKeyProvider::parse(p).map_err(at)?),
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
        Ok(Self {
            providers,
            api_keys,
            public,
            login_path,
        })
    }
}

fn string_or_list(v: &Value, what: &str) -> Result<Vec<String>, String> {
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
    fn parse(p: &Value) -> Result<Self, String> {
        let obj = p.as_object().ok_or("a provider is an object")?;
        let ty = obj.get("type").and_then(Value::as_str).unwrap_or("jwt");
        if ty != "jwt" {
            return Err(format!(
                "unknown provider type `{ty}` (supported: jwt, apiKeys)"
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
        Ok(Self {
            name,
            verify,
            roles,
            groups: text("groupsClaim").unwrap_or_else(|| "groups".to_owned()),
            name_claim: text("nameClaim").unwrap_or_else(|| "name".to_owned()),
        })
    }

    /// The `X-Identity` value for verified `claims`.
    pub fn identity(&self, claims: &Value) -> Value {
        let mut roles: Vec<String> = Vec::new();
        for path in &self.roles {
            for r in strings_at(claims, path) {
                if !roles.contains(&r) {
                    roles.push(r);
                }
            }
        }
        json!({
            "sub": claims.get("sub").and_then(Value::as_str).unwrap_or_default(),
            "name": claims.get(&self.name_claim).and_then(Value::as_str),
            "roles": roles,
            "groups": strings_at(claims, &self.groups),
            "claims": claims,
            "provider": self.name,
        })
    }
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

impl Routes {
    /// `["/glob", ...]` for every method, or `{"GET": [...], "ALL": [...]}`.
    pub fn parse(v: &Value) -> Result<Self, String> {
        let mut by_method = BTreeMap::new();
        match v {
            Value::Array(_) => {
                by_method.insert("ALL".to_owned(), globs(v)?);
            }
            Value::Object(map) => {
                for (method, list) in map {
                    by_method.insert(method.to_ascii_uppercase(), globs(list)?);
                }
            }
            other => {
                return Err(format!(
                    "expected a list of path globs or an object of them per method, found {other}"
                ));
            }
        }
        Ok(Self { by_method })
    }

    /// Whether `method path` is listed.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        // Dot segments and encoded separators are never public: they could
        // make a public-looking path reach a private route.
        let lower = path.to_ascii_lowercase();
        if path.split('/').any(|s| s == "." || s == "..")
            || ["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e))
        {
            return false;
        }
        ["ALL", method]
            .iter()
            .filter_map(|m| self.by_method.get(*m))
            .flatten()
            .any(|g| glob(g, path))
    }
}

fn globs(v: &Value) -> Result<Vec<String>, String> {
    let list = string_or_list(v, "routes")?;
    for g in &list {
        if !g.starts_with('/') {
            return Err(format!("route `{g}` must start with `/`"));
        }
    }
    Ok(list)
}

/// Path glob: `*` within one segment, `**` across segments, `?` one character.
pub fn glob(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let s: Vec<&str> = path.split('/').collect();
    segments(&p, &s)
}

fn segments(p: &[&str], s: &[&str]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((&"**", rest)) => (0..=s.len()).any(|i| segments(rest, &s[i..])),
        Some((first, rest)) => match s.split_first() {
            Some((seg, tail)) => segment(first.as_bytes(), seg.as_bytes()) && segments(rest, tail),
            None => false,
        },
    }
}

/// One segment: `*` any run, `?` one byte, iterative with one backtrack point.
fn segment(p: &[u8], t: &[u8]) -> bool {
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        match p.get(i) {
            Some(b'*') => {
                star = Some((i, j));
                i += 1;
            }
            Some(&c) if c == b'?' || c == t[j] => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((si, sj)) => {
                    i = si + 1;
                    j = sj + 1;
                    star = Some((si, sj + 1));
                }
                None => return false,
            },
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_public_routes() {
        assert!(glob("/health", "/health"));
        assert!(glob("/items/*", "/items/42"));
        assert!(!glob("/items/*", "/items/42/x"));
        assert!(glob("/docs/**", "/docs/a/b/c"));
        assert!(glob("/docs/**", "/docs"));
        assert!(!glob("/a.b", "/aXb"));
        let r = Routes::parse(&json!({"GET": ["/public/**"], "ALL": ["/health"]})).unwrap();
        assert!(r.matches("GET", "/public/x"));
        assert!(!r.matches("POST", "/public/x"));
        assert!(r.matches("POST", "/health"));
        assert!(!r.matches("GET", "/public/../admin"));
        assert!(!r.matches("GET", "/public/%2e%2e/admin"));
    }

    #[test]
    fn keycloak_roles_and_identity() {
        let cfg = Config::parse(&json!({"providers": [{
            "name": "kc", "issuer": "https://kc/realms/r", "audience": "api", "clientId": "shop"
        }]}))
        .unwrap();
        let p = &cfg.providers[0];
        assert_eq!(p.verify["discovery"], json!(true));
        assert_eq!(p.verify["audience"], json!(["api"]));
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
