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
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::atomic::{self, Outcome};
use crate::json::RawValues;
use crate::keys;
use crate::ops::{self, Selector};
use crate::store::{Access, EntryOut, Store, versionstamp};
use crate::{Failure, queue, watch};

/// The `kv` export. Input and output are JSON text: values go in and come
/// out exactly as written (member order, number spelling).
#[allow(
    clippy::boxed_local,
    reason = "a service's input is deserialized owned, and a borrowed RawValue is not"
)]
pub fn kv(input: Box<RawValue>) -> Result<Box<RawValue>, Error> {
    let tree: Value = serde_json::from_str(input.get())?;
    let out =
        run(&tree, &RawValues::of(input.get())).map_err(|Failure(status, code, message)| {
            Error::msg(format!("{code} ({status}): {message}"))
        })?;
    Ok(RawValue::from_string(out)?)
}

/// `{"entries", "cursor"}` of `list`.
#[derive(Serialize)]
struct ListOut {
    entries: Vec<EntryOut>,
    cursor: Option<String>,
}

fn text<T: Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|e| Failure(500, "INTERNAL", e.to_string()))
}

fn run(input: &Value, raw: &RawValues<'_>) -> Result<String, Failure> {
    let tenant = input["tenant"].as_str().map(str::to_owned);
    let op = input["op"].as_str().unwrap_or("");
    let access = match op {
        "set" | "atomic" | "enqueue" => Access::Write,
        _ => Access::Read,
    };
    let store = Store::open(tenant, access)?;
    let key = || keys::from_json(&input["key"]).map_err(|e| Failure::bad(format!("`key`: {e}")));
    match op {
        "get" => text(&ops::get(&store, &key()?)?),
        "set" => {
            let value = raw
                .value()
                .or_else(|| input.get("value").map(Value::to_string))
                .ok_or_else(|| Failure::bad("`set` needs `value`"))?;
            let expire = atomic::expire_in(input.get("expiresIn")).map_err(Failure::bad)?;
            let vs = ops::set(&store, &key()?, value, expire)?;
            text(&json!({ "ok": true, "versionstamp": vs }))
        }
        "delete" => {
            let exact = input["exact"].as_bool().unwrap_or(true);
            text(&json!({ "deletedCount": ops::delete(&store, &key()?, exact, None)? }))
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
            text(&ListOut {
                entries: page.entries,
                cursor: page.cursor,
            })
        }
        "atomic" => {
            let (checks, mutations) = atomic::parse(input, raw)?;
            match atomic::commit(&store, &checks, &mutations)? {
                Outcome::Committed {
                    versionstamp: v,
                    changes,
                } => {
                    watch::publish(&store, &changes);
                    text(&json!({ "ok": true, "versionstamp": versionstamp(v) }))
                }
                Outcome::CheckFailed => text(&json!({ "ok": false, "error": "conflict" })),
            }
        }
        "enqueue" => text(&queue::enqueue(&store, input, raw)?),
        other => Err(Failure::bad(format!(
            "unknown op `{other}` (get, set, delete, list, atomic, enqueue)"
        ))),
    }
}
