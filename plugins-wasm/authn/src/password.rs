//! The `email-password` provider's config and the pure parts of its
//! accounts (the routes are in the guest, `guest/password.rs`).

use serde_json::{Value, json};

use crate::config::string_or_list;

/// An `email-password` provider.
#[derive(Debug, Clone)]
pub struct PasswordProvider {
    /// Its name (`provider` in the identity).
    pub name: String,
    /// Whether anyone may create an account (`POST /_/auth/api/signup`).
    pub sign_up: bool,
    /// Shortest password accepted at sign-up.
    pub min_length: usize,
    /// Roles of a new account.
    pub roles: Vec<String>,
    /// Login attempts allowed per account in `window_seconds`.
    pub per_account: u64,
    /// Login attempts allowed per client address in `window_seconds`.
    pub per_address: u64,
    /// The rate-limit window (the buckets refill over it).
    pub window_seconds: u64,
}

const KNOWN: &[&str] = &[
    "type",
    "name",
    "signUp",
    "minPasswordLength",
    "defaultRoles",
    "maxAttemptsPerAccount",
    "maxAttemptsPerAddress",
    "attemptWindowSeconds",
];

impl PasswordProvider {
    pub(crate) fn parse(p: &Value) -> Result<Self, String> {
        let obj = p.as_object().ok_or("a provider is an object")?;
        for key in obj.keys() {
            if !KNOWN.contains(&key.as_str()) {
                return Err(format!("unknown key `{key}` (known: {})", KNOWN.join(", ")));
            }
        }
        let number =
            |key: &str, default: u64, range: std::ops::RangeInclusive<u64>| match obj.get(key) {
                None => Ok(default),
                Some(v) => v.as_u64().filter(|n| range.contains(n)).ok_or_else(|| {
                    format!(
                        "`{key}` must be a whole number from {} to {}, found {v}",
                        range.start(),
                        range.end()
                    )
                }),
            };
        Ok(Self {
            name: obj
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("email-password")
                .to_owned(),
            sign_up: match obj.get("signUp") {
                None => false,
                Some(v) => v
                    .as_bool()
                    .ok_or_else(|| format!("`signUp` must be true or false, found {v}"))?,
            },
            min_length: number("minPasswordLength", 10, 1..=1024)? as usize,
            roles: match obj.get("defaultRoles") {
                Some(v) => string_or_list(v, "defaultRoles")?,
                None => Vec::new(),
            },
            per_account: number("maxAttemptsPerAccount", 5, 1..=1_000_000)?,
            per_address: number("maxAttemptsPerAddress", 20, 1..=1_000_000)?,
            window_seconds: number("attemptWindowSeconds", 300, 1..=86_400)?,
        })
    }

    /// The `X-Identity` of an account.
    pub fn identity(&self, email: &str, name: Option<&str>, roles: &[String]) -> Value {
        json!({
            "sub": email,
            "name": name,
            "roles": roles,
            "groups": [],
            "claims": { "email": email },
            "provider": self.name,
        })
    }
}

/// An email as accounts are keyed: trimmed, lower case; `None` when it does
/// not look like `local@domain`.
pub fn normalise_email(text: &str) -> Option<String> {
    let email = text.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let ok = !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(email)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn password_providers_parse() {
        let cfg = Config::parse(&json!({"providers": [{
            "type": "email-password", "signUp": true, "maxAttemptsPerAccount": 3
        }]}))
        .unwrap();
        let p = &cfg.passwords[0];
        assert!(p.sign_up);
        assert_eq!(
            (p.per_account, p.per_address, p.window_seconds),
            (3, 20, 300)
        );
        assert!(
            Config::parse(&json!({"providers": [{"type": "email-password", "signUp": "yes"}]}))
                .is_err()
        );
        assert!(
            Config::parse(
                &json!({"providers": [{"type": "email-password", "maxAttemptsPerAccount": 0}]})
            )
            .is_err()
        );
        assert_eq!(
            normalise_email(" Ana@Example.COM ").as_deref(),
            Some("ana@example.com")
        );
        assert_eq!(normalise_email("no-at"), None);
        assert_eq!(normalise_email("a@b@c"), None);
    }
}
