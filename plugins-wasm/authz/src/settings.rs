//! The plugin's config (`buntime.jsonc` over the manifest's defaults),
//! checked and compiled: the algorithm, the default effect, the paths the
//! PEP leaves alone, the database and the seed policies.

use serde::Deserialize;
use serde_json::Value;

use crate::glob::{Glob, Kind};
use crate::pdp::Algorithm;
use crate::policy::{Compiled, Effect, Policy};

/// The config as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    combining_algorithm: Algorithm,
    #[serde(default = "deny")]
    default_effect: Effect,
    #[serde(default = "excluded")]
    exclude_paths: Vec<String>,
    #[serde(default = "default_db")]
    database: String,
    #[serde(default)]
    policy_seed: Seed,
}

/// `policySeed`: policies written to the store when the plugin loads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Seed {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default = "yes")]
    only_if_empty: bool,
    #[serde(default)]
    policies: Vec<Value>,
}

impl Default for Seed {
    fn default() -> Self {
        Self {
            enabled: true,
            only_if_empty: true,
            policies: Vec::new(),
        }
    }
}

fn deny() -> Effect {
    Effect::Deny
}
fn yes() -> bool {
    true
}
fn excluded() -> Vec<String> {
    vec!["/_/**".into()]
}
fn default_db() -> String {
    "default".into()
}

/// The compiled config.
#[derive(Debug)]
pub struct Settings {
    /// How policy results combine.
    pub algorithm: Algorithm,
    /// The effect when no policy applies.
    pub default_effect: Effect,
    /// Paths the PEP lets through without a decision.
    pub exclude: Vec<Glob>,
    /// The `sql` database holding the policies.
    pub database: String,
    /// Policies to seed, compiled; empty when seeding is off.
    pub seed: Vec<Compiled>,
    /// Seed only into an empty store (else upsert each seed policy).
    pub seed_only_if_empty: bool,
}

impl Settings {
    /// Parses the config object; the error names the field.
    pub fn parse(config: &Value) -> Result<Self, String> {
        let raw: Raw = serde_json::from_value(config.clone()).map_err(|e| e.to_string())?;
        let exclude = raw
            .exclude_paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if !p.starts_with('/') {
                    return Err(format!("`excludePaths[{i}]`: `{p}` must start with `/`"));
                }
                Glob::new(p, Kind::Path).map_err(|e| format!("`excludePaths[{i}]`: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let valid_db = !raw.database.is_empty()
            && raw.database.len() <= 64
            && raw
                .database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_db {
            return Err(format!(
                "`database`: `{}` is not a database name: 1 to 64 letters, digits, `-` and `_`",
                raw.database
            ));
        }
        let mut seed = Vec::new();
        if raw.policy_seed.enabled {
            let mut ids = std::collections::HashSet::new();
            for (i, p) in raw.policy_seed.policies.into_iter().enumerate() {
                let compiled = Policy::from_json(p)
                    .and_then(Policy::compile)
                    .map_err(|e| format!("`policySeed.policies[{i}]`: {e}"))?;
                if !ids.insert(compiled.policy.id.clone()) {
                    return Err(format!(
                        "`policySeed.policies[{i}]`: the id `{}` is used twice",
                        compiled.policy.id
                    ));
                }
                seed.push(compiled);
            }
        }
        Ok(Self {
            algorithm: raw.combining_algorithm,
            default_effect: raw.default_effect,
            exclude,
            database: raw.database,
            seed,
            seed_only_if_empty: raw.policy_seed.only_if_empty,
        })
    }

    /// Whether the PEP leaves `path` (normalised) alone.
    pub fn excluded(&self, path: &str) -> bool {
        self.exclude.iter().any(|g| g.matches(path))
    }
}
