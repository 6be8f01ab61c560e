//! The `kv` service: what other plugins call through `services` (list
//! `@buntime/plugin-keyval` in your `dependencies`).
//!
//! Input: `{"op": "get" | "set" | "delete" | "list" | "atomic" | "enqueue",
//! "tenant"?: "...", ...}` with the same fields as the REST API:
//!
//! | op | fields | result |
//! |---|---|---|
//! | `get` | `key` | the entry, or null |
//! | `set` | `key`, `value`, `expiresIn`? | `{"ok", "versionstamp"}` |
//! | `delete` | `key`, `exact`? | `{"deletedCount"}` |
//! | `list` | `prefix`/`start`/`end`, `limit`?, `reverse`?, `cursor`?, `where`? | `{"entries", "cursor"}` |
//! | `atomic` | `checks`, `mutations` | `{"ok", "versionstamp"}` or `{"ok": false}` |
//! | `enqueue` | `value`, `options`? | `{"ok", "id"}` |

use buntime_pdk::Error;
use serde_json::{Value, json};

use crate::atomic::{self, Outcome};
use crate::keys;
use crate::ops::{self, Selector};
use crate::store::{Access, Store, versionstamp};
use crate::{Failure, queue, watch};

/// The `kv` export.
pub fn kv(input: Value) -> Result<Value, Error> {
    run(&input).map_err(|Failure(status, code, message)| {
        Error::msg(format!("{code} ({status}): {message}"))
    })
}

fn run(input: &Value) -> Result<Value, Failure> {
    let tenant = input["tenant"].as_str().map(str::to_owned);
    let op = input["op"].as_str().unwrap_or("");
    let access = match op {
        "set" | "atomic" | "enqueue" => Access::Write,
        _ => Access::Read,
    };
    let store = Store::open(tenant, access)?;
    let key = || keys::from_json(&input["key"]).map_err(|e| Failure::bad(format!("`key`: {e}")));
    match op {
        "get" => Ok(ops::get(&store, &key()?)?.map_or(Value::Null, |e| json!(e))),
        "set" => {
            let value = input
                .get("value")
                .ok_or_else(|| Failure::bad("`set` needs `value`"))?
                .to_string();
            let expire = atomic::expire_in(input.get("expiresIn")).map_err(Failure::bad)?;
            let vs = ops::set(&store, &key()?, value, expire)?;
            Ok(json!({ "ok": true, "versionstamp": vs }))
        }
        "delete" => {
            let exact = input["exact"].as_bool().unwrap_or(true);
            Ok(json!({ "deletedCount": ops::delete(&store, &key()?, exact, None)? }))
        }
        "list" => {
            let sel = Selector::from_json(input)?;
            let limit = usize::try_from(input["limit"].as_u64().unwrap_or(100)).unwrap_or(100);
            let filter = input.get("where").filter(|w| !w.is_null());
            let page = ops::list(
                &store,
                &sel,
                limit,
                input["reverse"].as_bool().unwrap_or(false),
                input["cursor"].as_str(),
                filter,
            )?;
            Ok(json!({ "entries": page.entries, "cursor": page.cursor }))
        }
        "atomic" => {
            let (checks, mutations) = atomic::parse(input)?;
            match atomic::commit(&store, &checks, &mutations)? {
                Outcome::Committed {
                    versionstamp: v,
                    changes,
                } => {
                    watch::publish(&store, &changes);
                    Ok(json!({ "ok": true, "versionstamp": versionstamp(v) }))
                }
                Outcome::CheckFailed => Ok(json!({ "ok": false, "error": "conflict" })),
            }
        }
        "enqueue" => queue::enqueue(&store, input),
        other => Err(Failure::bad(format!(
            "unknown op `{other}` (get, set, delete, list, atomic, enqueue)"
        ))),
    }
}
