//! keyval's keys and `where` filters (the plugin's pure modules, compiled
//! here natively).
//!
//! - a key read from JSON or a query string encodes and decodes back to
//!   itself, and prints as JSON that reads back to itself;
//! - the encoding preserves order: two keys' blobs compare as the keys do,
//!   and the keys under a prefix `P` are exactly those in `(P, P ‖ 0xFF)`;
//! - decoding any stored bytes never panics;
//! - a filter that compiles is SQL that SQLite accepts, with one bound
//!   parameter per placeholder.
#![no_main]

use std::cmp::Ordering;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

// The plugin crate belongs to the wasm32 workspace (`plugins-wasm/`); its
// pure modules need nothing but serde_json and base64.
#[allow(dead_code)]
#[path = "../../plugins-wasm/keyval/src/filter.rs"]
mod filter;
#[allow(dead_code)]
#[path = "../../plugins-wasm/keyval/src/keys.rs"]
mod keys;
#[allow(dead_code)]
#[path = "../../plugins-wasm/keyval/src/sqltime.rs"]
mod sqltime;

use keys::Part;

/// A key part as the fuzzer builds it.
#[derive(Debug, Arbitrary)]
enum AnyPart {
    Bytes(Vec<u8>),
    String(String),
    Number(f64),
    BigInt(i64),
    Bool(bool),
}

impl AnyPart {
    fn part(self) -> Part {
        match self {
            Self::Bytes(b) => Part::Bytes(b),
            Self::String(s) => Part::String(s),
            // Keys hold finite numbers only (`from_json` refuses the rest).
            Self::Number(f) if f.is_finite() => Part::Number(f),
            Self::Number(_) => Part::Number(0.0),
            Self::BigInt(i) => Part::BigInt(i),
            Self::Bool(b) => Part::Bool(b),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    Keys(Vec<AnyPart>, Vec<AnyPart>),
    Json(&'a str),
    Text(&'a str),
    Stored(&'a [u8]),
    Filter(&'a str),
}

fuzz_target!(|input: Input<'_>| {
    match input {
        Input::Keys(a, b) => {
            let a: Vec<Part> = a.into_iter().map(AnyPart::part).collect();
            let b: Vec<Part> = b.into_iter().map(AnyPart::part).collect();
            round_trip(&a);
            round_trip(&b);
            ordered(&a, &b);
        }
        Input::Json(text) => {
            if let Ok(value) = serde_json::from_str(text)
                && let Ok(key) = keys::from_json(&value)
            {
                round_trip(&key);
                let again = keys::from_json(&keys::to_json(&key));
                assert_eq!(again.as_ref(), Ok(&key), "{text}");
            }
        }
        Input::Text(text) => {
            if let Ok(key) = keys::from_text(text) {
                round_trip(&key);
            }
        }
        Input::Stored(bytes) => {
            let _ = keys::decode(bytes);
        }
        Input::Filter(text) => {
            if let Ok(value) = serde_json::from_str(text)
                && let Ok(condition) = filter::compile(&value)
            {
                runs_in_sqlite(&condition);
            }
        }
    }
});

fn round_trip(key: &[Part]) {
    let encoded = keys::encode(key);
    let decoded = keys::decode(&encoded).expect("an encoded key decodes");
    assert_eq!(decoded.len(), key.len());
    for (d, k) in decoded.iter().zip(key) {
        // Bit-exact: `-0.0 == 0.0`, but they are different keys.
        match (d, k) {
            (Part::Number(x), Part::Number(y)) => assert_eq!(x.to_bits(), y.to_bits()),
            _ => assert_eq!(d, k),
        }
    }
}

/// The order keys have: part by part, by type (bytes < string < number <
/// bigint < bool) then value; a key before every key it prefixes.
fn compare(a: &[Part], b: &[Part]) -> Ordering {
    fn rank(p: &Part) -> u8 {
        match p {
            Part::Bytes(_) => 0,
            Part::String(_) => 1,
            Part::Number(_) => 2,
            Part::BigInt(_) => 3,
            Part::Bool(_) => 4,
        }
    }
    for (x, y) in a.iter().zip(b) {
        let order = rank(x).cmp(&rank(y)).then_with(|| match (x, y) {
            (Part::Bytes(x), Part::Bytes(y)) => x.cmp(y),
            (Part::String(x), Part::String(y)) => x.as_bytes().cmp(y.as_bytes()),
            (Part::Number(x), Part::Number(y)) => x.total_cmp(y),
            (Part::BigInt(x), Part::BigInt(y)) => x.cmp(y),
            (Part::Bool(x), Part::Bool(y)) => x.cmp(y),
            _ => Ordering::Equal,
        });
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

fn ordered(a: &[Part], b: &[Part]) {
    let (ea, eb) = (keys::encode(a), keys::encode(b));
    assert_eq!(ea.cmp(&eb), compare(a, b), "{a:?} vs {b:?}");
    let mut end = ea.clone();
    end.push(0xFF);
    let under = eb > ea && eb < end;
    let prefixed = b.len() > a.len() && compare(&a[..], &b[..a.len()]) == Ordering::Equal;
    assert_eq!(under, prefixed, "{a:?} prefix of {b:?}");
}

fn runs_in_sqlite(condition: &filter::Condition) {
    let db = rusqlite::Connection::open_in_memory().expect("an in-memory database");
    db.execute_batch(
        r#"CREATE TABLE t (id INTEGER PRIMARY KEY, value TEXT);
           INSERT INTO t (value) VALUES ('{"a": 1, "b": "x", "c": [1, 2], "d": {"e": null}}'), ('[]'), ('"s"'), ('3');"#,
    )
    .expect("the fixture table");
    let sql = format!("SELECT id FROM t WHERE {}", condition.sql);
    let mut statement = db
        .prepare(&sql)
        .unwrap_or_else(|e| panic!("a compiled filter is not SQL: {sql}: {e}"));
    assert_eq!(statement.parameter_count(), condition.params.len(), "{sql}");
    let params: Vec<rusqlite::types::Value> = condition.params.iter().map(sql_value).collect();
    let rows = statement
        .query_map(rusqlite::params_from_iter(params), |row| {
            row.get::<_, i64>(0)
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>());
    if let Err(e) = rows {
        panic!(
            "a compiled filter fails in SQLite: {sql} {:?}: {e}",
            condition.params
        );
    }
}

/// How the host's `sql` capability binds a JSON parameter
/// (`runtime/src/capabilities/sql/statements.rs`), which refuses arrays and
/// objects: a filter must not compile to one.
fn sql_value(v: &serde_json::Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as Sql;
    match v {
        serde_json::Value::Null => Sql::Null,
        serde_json::Value::Bool(b) => Sql::Integer(i64::from(*b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Sql::Integer(i),
            None => Sql::Real(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Sql::Text(s.clone()),
        other => panic!("a filter compiled to a parameter the host refuses: {other}"),
    }
}
