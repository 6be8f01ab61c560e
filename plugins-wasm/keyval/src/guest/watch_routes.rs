//! The watch routes: `GET /watch` and `/watch/prefix` (event streams of
//! [`crate::watch`]'s change events) and their polling forms, in the
//! original's shapes — a poll answers the entries that changed since the
//! versionstamps the client sent back, and the versionstamps to send next.

use buntime_pdk::{Request, Response};
use serde::Serialize;

use crate::keys::{self, Key};
use crate::ops::{self, Selector};
use crate::routes::{Outcome, flag, key_param, limit, number, ok, param, store};
use crate::store::{EntryOut, Store};
use crate::{Failure, watch};

/// The most keys, or prefixes, one watch covers.
const MAX_WATCHED: usize = 100;

/// The keys of `?keys=a/b,c/d`.
fn keys_param(req: &Request) -> Result<Vec<Key>, Failure> {
    let text = param(req, "keys").filter(|k| !k.is_empty()).ok_or_else(|| {
        Failure::bad("`keys` is required: comma-separated keys, parts separated by `/` (?keys=users/1,users/2)")
    })?;
    let list: Vec<Key> = text
        .split(',')
        .map(|k| keys::from_text(k).map_err(|e| Failure::bad(format!("`keys`: {e}"))))
        .collect::<Result<_, _>>()?;
    if list.len() > MAX_WATCHED {
        return Err(Failure::bad(format!(
            "a watch covers at most {MAX_WATCHED} keys"
        )));
    }
    Ok(list)
}

/// The prefixes a prefix watch covers.
struct Prefixes {
    list: Vec<Key>,
    /// Whether each prefix's own key is watched too: the original client's
    /// `prefixes` (its prefix ranges hold the prefix key itself, so
    /// `kv.watch(["users", 1], …)` sees `["users", 1]` change), not
    /// `prefix` (the keys under it, §2).
    with_own_key: bool,
}

/// `prefix`, or the original client's `prefixes` (comma-separated); none
/// is the empty prefix (everything).
fn prefixes_param(req: &Request) -> Result<Prefixes, Failure> {
    let prefixes = match (key_param(req, "prefix")?, param(req, "prefixes")) {
        (Some(p), _) => Prefixes {
            list: vec![p],
            with_own_key: false,
        },
        (None, Some(list)) => Prefixes {
            list: list
                .split(',')
                .map(|p| keys::from_text(p).map_err(|e| Failure::bad(format!("`prefixes`: {e}"))))
                .collect::<Result<_, _>>()?,
            with_own_key: true,
        },
        (None, None) => Prefixes {
            list: vec![Key::default()],
            with_own_key: false,
        },
    };
    if prefixes.list.len() > MAX_WATCHED {
        return Err(Failure::bad(format!(
            "a watch covers at most {MAX_WATCHED} prefixes"
        )));
    }
    Ok(prefixes)
}

/// The live entries of each prefix (its own key first, when watched, then
/// up to `?limit` keys under it).
fn entries_under(req: &Request, s: &Store, prefixes: &Prefixes) -> Result<Vec<EntryOut>, Failure> {
    let lim = limit(number(req, "limit", 100)?)?;
    let mut entries = Vec::new();
    for prefix in &prefixes.list {
        if prefixes.with_own_key
            && !prefix.is_empty()
            && let Some(own) = ops::get(s, prefix)?
        {
            entries.push(own);
        }
        let sel = Selector {
            prefix: Some(prefix.clone()),
            ..Selector::default()
        };
        entries.extend(ops::list(s, &sel, lim, false, None, None)?.entries);
    }
    Ok(entries)
}

/// `GET /watch?keys=…`: the current entries (unless `initial=false`), then
/// one `change` event per write of any of the keys.
pub fn keys(req: &Request) -> Outcome {
    let list = keys_param(req)?;
    let s = store(req)?;
    let topics = list
        .iter()
        .map(|k| watch::topic(&s, &keys::encode(k)))
        .collect();
    let mut r = Response::new(200).events(topics).event_name("change");
    if flag(req, "initial", true) {
        let entries = ops::get_many(&s, &list)?;
        r = r.body(serde_json::to_string(&entries).unwrap_or_default());
    }
    Ok(r)
}

/// `GET /watch/poll?keys=…&versionstamps=…`: `versionstamps` are the ones
/// the last answer gave, in the same order (empty or `null` for absent).
/// Answers `{changed, entries, versionstamps}`: the entries whose
/// versionstamp differs, and the current versionstamps (empty for absent).
pub fn keys_poll(req: &Request) -> Outcome {
    #[derive(Serialize)]
    struct PollOut {
        changed: bool,
        entries: Vec<EntryOut>,
        versionstamps: Vec<String>,
    }
    let list = keys_param(req)?;
    let s = store(req)?;
    let seen: Vec<String> = param(req, "versionstamps")
        .map(|v| {
            v.split(',')
                .map(|vs| if vs == "null" { "" } else { vs }.to_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut versionstamps = Vec::new();
    let mut entries = Vec::new();
    for (i, entry) in ops::get_many(&s, &list)?.into_iter().enumerate() {
        let now = entry.versionstamp.clone().unwrap_or_default();
        let before = seen.get(i).map_or("", String::as_str);
        if now != before {
            entries.push(entry);
        }
        versionstamps.push(now);
    }
    Ok(ok(&PollOut {
        changed: !entries.is_empty(),
        entries,
        versionstamps,
    }))
}

/// `GET /watch/prefix?prefix=…`: the entries under the prefix (unless
/// `initial=false`), then one `change` event per write of a key under it.
pub fn prefix(req: &Request) -> Outcome {
    let prefixes = prefixes_param(req)?;
    let s = store(req)?;
    // Keys strictly under a prefix continue with a part's tag byte
    // (`01`..`05` in hex); `ff` would be an escaped NUL inside the prefix's
    // last part (`["a\u0000"]` is not under `["a"]`).
    let mut patterns = Vec::new();
    for p in &prefixes.list {
        let topic = watch::topic(&s, &keys::encode(p));
        patterns.push(format!("{topic}0?*"));
        if prefixes.with_own_key && !p.is_empty() {
            patterns.push(topic);
        }
    }
    let mut r = Response::new(200).events(patterns).event_name("change");
    if flag(req, "initial", true) {
        let entries = entries_under(req, &s, &prefixes)?;
        r = r.body(serde_json::to_string(&entries).unwrap_or_default());
    }
    Ok(r)
}

/// `GET /watch/prefix/poll?prefix=…&versionstamps=…`: `versionstamps` is the
/// text the last answer gave (`<key>:<versionstamp>` pairs, comma-separated,
/// the key as the hex of its encoding). Answers `{changed, entries,
/// versionstamps}`: the entries that are new or changed since, and those
/// deleted since (`value` and `versionstamp` null), then the text to send next.
pub fn prefix_poll(req: &Request) -> Outcome {
    #[derive(Serialize)]
    struct PollOut {
        changed: bool,
        entries: Vec<EntryOut>,
        versionstamps: String,
    }
    let prefixes = prefixes_param(req)?;
    let s = store(req)?;
    let seen: Vec<(String, String)> = param(req, "versionstamps")
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| {
            let (k, vs) = pair.split_once(':')?;
            Some((k.to_owned(), vs.to_owned()))
        })
        .collect();
    let mut entries = Vec::new();
    let mut now = Vec::new();
    for entry in entries_under(req, &s, &prefixes)? {
        let Ok(key) = keys::from_json(&entry.key) else {
            continue;
        };
        let hex = keys::hex(&keys::encode(&key));
        let vs = entry.versionstamp.clone().unwrap_or_default();
        if !seen.iter().any(|(k, v)| *k == hex && *v == vs) {
            entries.push(entry);
        }
        now.push((hex, vs));
    }
    for (hex, _) in &seen {
        if !now.iter().any(|(k, _)| k == hex)
            && let Some(encoded) = unhex(hex)
            && keys::decode(&encoded).is_ok()
        {
            entries.push(EntryOut::absent(&encoded));
        }
    }
    let versionstamps = now
        .iter()
        .map(|(k, vs)| format!("{k}:{vs}"))
        .collect::<Vec<_>>()
        .join(",");
    Ok(ok(&PollOut {
        changed: !entries.is_empty(),
        entries,
        versionstamps,
    }))
}

/// The bytes of lowercase or uppercase hex text.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
