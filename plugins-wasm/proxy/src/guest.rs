//! The wasm side of the chain: `on_init` checks the static rules and
//! installs every rule (static first, then the stored dynamic ones) as the
//! plugin's route table; the API installs it again after each change.
//!
//! The table is versioned by the stored list's version, so two instances
//! that each installed what they stored leave the newer list installed
//! whatever order their installs arrive in.

use std::sync::OnceLock;

use buntime_pdk::Error;
use buntime_pdk::plugin::{config, upstream};
use serde_json::Value;

use crate::rules::{self, Rule, RuleSpec};

/// The static rules, parsed on first use.
pub(crate) fn static_rules() -> Result<&'static [Rule], Error> {
    static RULES: OnceLock<Result<Vec<Rule>, String>> = OnceLock::new();
    RULES
        .get_or_init(|| {
            let value = config("rules").map(|t| serde_json::from_str::<Value>(&t));
            match value {
                None => Ok(Vec::new()),
                Some(Ok(v)) => rules::parse_list(Some(&v)).map_err(|e| e.to_string()),
                Some(Err(e)) => Err(format!("`rules` is not JSON: {e}")),
            }
        })
        .as_deref()
        .map_err(|e| Error::msg(e.clone()))
}

/// The dynamic rules as stored, with the version they were read at.
pub(crate) fn stored() -> Result<(Vec<RuleSpec>, u64), Error> {
    crate::store::load()
}

/// Installs the static rules and `dynamic` (stored at `version`) as the
/// route table. A stored rule that no longer checks (a newer limit) is
/// left out rather than failing the whole table. `Ok(Err(why))`: the host
/// refused the table (its rules past the budget for compiled patterns).
pub(crate) fn install(dynamic: &[RuleSpec], version: u64) -> Result<Result<(), String>, Error> {
    let mut table = Vec::new();
    for rule in static_rules()? {
        table.push(serde_json::to_value(&rule.spec)?);
    }
    for spec in dynamic {
        if Rule::new(spec.clone()).is_ok() {
            table.push(serde_json::to_value(spec)?);
        }
    }
    match upstream::install_routes(version, &table) {
        Ok(_) => Ok(Ok(())),
        Err(e) if e.code == "invalid_argument" => Ok(Err(e.message)),
        Err(e) => Err(Error::msg(format!(
            "installing the proxy rules as the route table failed: {}: {}",
            e.code, e.message
        ))),
    }
}

/// Installs the static rules and as many of `dynamic` (stored at
/// `version`) as fit: while the host refuses the table for its budget, the
/// last stored rule is left out. `Ok(Ok(ids))`: installed, without the
/// stored rules `ids`; `Ok(Err(why))`: the static rules alone do not fit.
///
/// A stored list past the budget is what a change the API refused can
/// leave behind when another change read it meanwhile (or static rules
/// added since): the rules stored first keep running rather than none.
pub(crate) fn install_fitting(
    dynamic: &[RuleSpec],
    version: u64,
) -> Result<Result<Vec<String>, String>, Error> {
    let mut kept = dynamic.len();
    loop {
        match install(&dynamic[..kept], version)? {
            Ok(()) => {
                let left_out = dynamic[kept..]
                    .iter()
                    .map(|r| r.id.clone().unwrap_or_default())
                    .collect();
                return Ok(Ok(left_out));
            }
            Err(why) if kept == 0 => return Ok(Err(why)),
            Err(_) => kept -= 1,
        }
    }
}

fn init(cfg: Value) -> Result<(), Error> {
    rules::parse_list(cfg.get("rules")).map_err(|e| Error::msg(e.to_string()))?;
    let (dynamic, version) = stored()?;
    match install_fitting(&dynamic, version)? {
        Ok(left_out) => {
            if !left_out.is_empty() {
                extism_pdk::warn!(
                    "stored proxy rules {left_out:?} are not routed: with the rules before them they do not fit the route table's budget for compiled patterns; delete them or simplify the patterns"
                );
            }
            Ok(())
        }
        Err(why) => Err(Error::msg(format!(
            "the proxy rules in `rules` (buntime.jsonc) do not fit the route table: {why}; use fewer or simpler patterns"
        ))),
    }
}
buntime_pdk::on_init!(init);
