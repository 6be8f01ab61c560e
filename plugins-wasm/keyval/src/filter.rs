//! `where` filters: a JSON document compiled to a SQL condition over the
//! entry's JSON value, with every field path and operand a bound parameter.
//!
//! ```json
//! { "status": "active", "age": { "$gte": 18 }, "$or": [{ "role": "admin" }, { "tags": { "$contains": "x" } }] }
//! ```
//!
//! A field is a dotted path of identifiers (`profile.name`), checked against
//! `[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*` and sent to
//! `json_extract` as a parameter, so nothing a client writes becomes SQL.
//!
//! Operators: `$eq $ne $gt $gte $lt $lte $between $in $nin`, `$contains
//! $notContains $startsWith $endsWith` (and case-insensitive versions with an
//! `i` suffix), `$null $empty $notEmpty`, and `$and $or $not`. An operand
//! `{"$now": true, "$offset": ms}` is the server's clock in milliseconds.

use serde_json::{Map, Value};

use crate::sqltime::NOW_MS;

/// A compiled condition: SQL text with `?` placeholders and its parameters.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Condition {
    /// SQL, e.g. `(json_extract(value, ?) >= ?)`.
    pub sql: String,
    /// The values for its placeholders, in order.
    pub params: Vec<Value>,
}

/// Most nodes in a filter, so a request cannot build a huge statement.
const MAX_NODES: usize = 200;

/// Compiles `filter` (the `where` object).
pub fn compile(filter: &Value) -> Result<Condition, String> {
    let mut c = Condition::default();
    let mut nodes = 0;
    let sql = object(filter, &mut c.params, &mut nodes)?;
    c.sql = sql;
    Ok(c)
}

/// Whether `path` is a valid dotted field path.
pub fn valid_field(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 256
        && path.split('.').all(|seg| {
            let mut chars = seg.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

fn object(filter: &Value, params: &mut Vec<Value>, nodes: &mut usize) -> Result<String, String> {
    let Value::Object(map) = filter else {
        return Err(format!("a `where` filter is an object, found {filter}"));
    };
    if map.is_empty() {
        return Ok("1".into());
    }
    let mut parts = Vec::new();
    for (key, v) in map {
        *nodes += 1;
        if *nodes > MAX_NODES {
            return Err(format!(
                "a `where` filter has at most {MAX_NODES} conditions"
            ));
        }
        parts.push(match key.as_str() {
            "$and" | "$or" => {
                let Value::Array(items) = v else {
                    return Err(format!("`{key}` takes a list of filters"));
                };
                if items.is_empty() {
                    return Err(format!("`{key}` needs at least one filter"));
                }
                let joined = items
                    .iter()
                    .map(|i| object(i, params, nodes))
                    .collect::<Result<Vec<_>, _>>()?
                    .join(if key == "$and" { " AND " } else { " OR " });
                format!("({joined})")
            }
            "$not" => format!("(NOT {})", object(v, params, nodes)?),
            field if field.starts_with('$') => {
                return Err(format!(
                    "unknown operator `{field}` at the top of a filter (allowed: `$and`, `$or`, `$not`, or a field name)"
                ));
            }
            field => {
                if !valid_field(field) {
                    return Err(format!(
                        "`{field}` is not a field path: use names of letters, digits and `_` joined by `.`"
                    ));
                }
                field_condition(field, v, params)?
            }
        });
    }
    Ok(parts.join(" AND "))
}

fn operand(v: &Value, params: &mut Vec<Value>) -> Result<String, String> {
    if let Value::Object(o) = v
        && o.contains_key("$now")
    {
        let offset = match o.get("$offset") {
            None => 0,
            Some(n) => n
                .as_i64()
                .ok_or("`$offset` is a whole number of milliseconds")?,
        };
        params.push(Value::from(offset));
        return Ok(format!("({NOW_MS} + ?)"));
    }
    match v {
        Value::Array(_) | Value::Object(_) => Err(format!(
            "{v} cannot be compared; use a string, number, boolean or null"
        )),
        Value::Bool(b) => {
            params.push(Value::from(i64::from(*b)));
            Ok("?".into())
        }
        other => {
            params.push(other.clone());
            Ok("?".into())
        }
    }
}

fn field_condition(field: &str, v: &Value, params: &mut Vec<Value>) -> Result<String, String> {
    let ops: Map<String, Value> = match v {
        Value::Object(o) if o.keys().all(|k| k.starts_with('$')) && !o.contains_key("$now") => {
            o.clone()
        }
        other => {
            let mut m = Map::new();
            m.insert("$eq".into(), other.clone());
            m
        }
    };
    // `{}` has no operator to compile (and would leave an empty condition).
    if ops.is_empty() {
        return Err(format!(
            "`{field}`: an empty object is not a condition; write one such as {{\"$eq\": 1}} or {{\"$null\": true}}"
        ));
    }
    let mut parts = Vec::new();
    for (op, arg) in &ops {
        params.push(Value::String(format!("$.{field}")));
        let x = "json_extract(value, ?)";
        let sql = match op.as_str() {
            "$eq" if arg.is_null() => format!("{x} IS NULL"),
            "$ne" if arg.is_null() => format!("{x} IS NOT NULL"),
            "$eq" => format!("{x} = {}", operand(arg, params)?),
            "$ne" => format!("coalesce({x} != {}, 1)", operand(arg, params)?),
            "$gt" => format!("{x} > {}", operand(arg, params)?),
            "$gte" => format!("{x} >= {}", operand(arg, params)?),
            "$lt" => format!("{x} < {}", operand(arg, params)?),
            "$lte" => format!("{x} <= {}", operand(arg, params)?),
            "$between" => match arg.as_array().map(Vec::as_slice) {
                Some([lo, hi]) => {
                    let lo = operand(lo, params)?;
                    let hi = operand(hi, params)?;
                    format!("{x} BETWEEN {lo} AND {hi}")
                }
                _ => return Err(format!("`{field}`: `$between` takes [low, high]")),
            },
            "$in" | "$nin" => {
                let Some(items) = arg.as_array().filter(|a| !a.is_empty() && a.len() <= 1000)
                else {
                    return Err(format!(
                        "`{field}`: `{op}` takes a list of 1 to 1000 values"
                    ));
                };
                let marks = items
                    .iter()
                    .map(|i| operand(i, params))
                    .collect::<Result<Vec<_>, _>>()?
                    .join(", ");
                let not = if op == "$in" { "" } else { "NOT " };
                format!("{x} {not}IN ({marks})")
            }
            "$contains" | "$notContains" | "$containsi" | "$notContainsi" => {
                // The path goes to json_each instead of json_extract: one row
                // for a scalar (matched as a substring), one per element for
                // an array (matched whole). The entry's `value` is taken in a
                // subquery first: inside json_each's own arguments, `value`
                // would name json_each's `value` column, not the entry's.
                let text = text_arg(field, op, arg)?;
                params.push(Value::String(text.clone()));
                params.push(Value::String(text));
                let not = if op.starts_with("$not") { "NOT " } else { "" };
                let (v, needle) = if op.ends_with('i') {
                    ("lower(j.value)", "lower(?)")
                } else {
                    ("j.value", "?")
                };
                format!(
                    "{not}EXISTS (SELECT 1 FROM (SELECT value AS doc) AS d, json_each(d.doc, ?) AS j WHERE (j.key IS NULL AND instr({v}, {needle}) > 0) OR (j.key IS NOT NULL AND {v} = {needle}))"
                )
            }
            "$startsWith" | "$startsWithi" | "$endsWith" | "$endsWithi" => {
                let text = text_arg(field, op, arg)?;
                let (hay, needle) = folded(op.ends_with('i'), x);
                params.push(Value::String(text.clone()));
                params.push(Value::String(text));
                if op.starts_with("$starts") {
                    format!("substr({hay}, 1, length(?)) = {needle}")
                } else {
                    format!("substr({hay}, -length(?)) = {needle}")
                }
            }
            "$null" => match arg {
                Value::Bool(true) => format!("{x} IS NULL"),
                Value::Bool(false) => format!("{x} IS NOT NULL"),
                _ => return Err(format!("`{field}`: `$null` takes true or false")),
            },
            "$empty" | "$notEmpty" => {
                let empty = format!("coalesce({x}, '') IN ('', '[]', '{{}}')");
                let want = matches!(arg, Value::Bool(true));
                if !arg.is_boolean() {
                    return Err(format!("`{field}`: `{op}` takes true or false"));
                }
                if (op == "$empty") == want {
                    empty
                } else {
                    format!("NOT ({empty})")
                }
            }
            other => {
                return Err(format!(
                    "`{field}`: unknown operator `{other}` (see docs/plugins/keyval.md, \"where filters\")"
                ));
            }
        };
        parts.push(format!("({sql})"));
    }
    Ok(parts.join(" AND "))
}

fn text_arg(field: &str, op: &str, arg: &Value) -> Result<String, String> {
    arg.as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("`{field}`: `{op}` takes a string"))
}

fn folded(insensitive: bool, x: &str) -> (String, &'static str) {
    if insensitive {
        (format!("lower({x})"), "lower(?)")
    } else {
        (x.to_owned(), "?")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The keys of `rows` (id, JSON value) whose value matches `filter`,
    /// evaluated by SQLite itself.
    fn matching(filter: Value, rows: &[(i64, Value)]) -> Vec<i64> {
        let c = compile(&filter).expect("compiles");
        let db = rusqlite::Connection::open_in_memory().expect("sqlite");
        db.execute_batch("CREATE TABLE t (id INTEGER, value TEXT, expires_at INTEGER)")
            .expect("table");
        for (id, v) in rows {
            db.execute(
                "INSERT INTO t VALUES (?, ?, NULL)",
                rusqlite::params![id, v.to_string()],
            )
            .expect("insert");
        }
        let params: Vec<rusqlite::types::Value> = c
            .params
            .iter()
            .map(|p| match p {
                Value::Null => rusqlite::types::Value::Null,
                Value::Number(n) if n.is_i64() => {
                    rusqlite::types::Value::Integer(n.as_i64().unwrap_or(0))
                }
                Value::Number(n) => rusqlite::types::Value::Real(n.as_f64().unwrap_or(0.0)),
                Value::String(s) => rusqlite::types::Value::Text(s.clone()),
                other => panic!("unexpected parameter {other}"),
            })
            .collect();
        let mut st = db
            .prepare(&format!("SELECT id FROM t WHERE {} ORDER BY id", c.sql))
            .expect("prepare");
        st.query_map(rusqlite::params_from_iter(params), |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    fn people() -> Vec<(i64, Value)> {
        vec![
            (
                1,
                json!({"name": "Ann", "age": 30, "tags": ["admin", "ops"], "active": true, "profile": {"city": "Lisbon"}}),
            ),
            (
                2,
                json!({"name": "bob", "age": 17, "tags": [], "active": false, "profile": {"city": "Porto"}}),
            ),
            (
                3,
                json!({"name": "Carla", "age": 45, "tags": ["ops"], "active": true, "note": ""}),
            ),
        ]
    }

    #[test]
    fn comparisons_sets_and_logic() {
        let rows = people();
        assert_eq!(matching(json!({"age": {"$gte": 18}}), &rows), [1, 3]);
        assert_eq!(matching(json!({"age": {"$between": [18, 40]}}), &rows), [1]);
        assert_eq!(matching(json!({"name": "bob"}), &rows), [2]);
        assert_eq!(matching(json!({"name": {"$ne": "bob"}}), &rows), [1, 3]);
        assert_eq!(
            matching(json!({"name": {"$in": ["Ann", "Carla"]}}), &rows),
            [1, 3]
        );
        assert_eq!(matching(json!({"name": {"$nin": ["Ann"]}}), &rows), [2, 3]);
        assert_eq!(matching(json!({"active": true}), &rows), [1, 3]);
        assert_eq!(matching(json!({"profile.city": "Porto"}), &rows), [2]);
        assert_eq!(
            matching(
                json!({"$or": [{"age": {"$lt": 18}}, {"name": "Carla"}]}),
                &rows
            ),
            [2, 3]
        );
        assert_eq!(matching(json!({"$not": {"active": true}}), &rows), [2]);
        assert_eq!(
            matching(
                json!({"$and": [{"active": true}, {"age": {"$gt": 40}}]}),
                &rows
            ),
            [3]
        );
    }

    #[test]
    fn strings_arrays_and_emptiness() {
        let rows = people();
        assert_eq!(matching(json!({"name": {"$contains": "arl"}}), &rows), [3]);
        assert_eq!(matching(json!({"name": {"$containsi": "ANN"}}), &rows), [1]);
        assert_eq!(
            matching(json!({"tags": {"$contains": "ops"}}), &rows),
            [1, 3]
        );
        assert_eq!(
            matching(json!({"tags": {"$notContains": "admin"}}), &rows),
            [2, 3]
        );
        assert_eq!(
            matching(json!({"name": {"$startsWith": "B"}}), &rows),
            Vec::<i64>::new()
        );
        assert_eq!(matching(json!({"name": {"$startsWithi": "B"}}), &rows), [2]);
        assert_eq!(matching(json!({"name": {"$endsWith": "la"}}), &rows), [3]);
        assert_eq!(matching(json!({"note": {"$null": true}}), &rows), [1, 2]);
        assert_eq!(matching(json!({"tags": {"$empty": true}}), &rows), [2]);
        assert_eq!(
            matching(json!({"note": {"$empty": true}}), &rows),
            [1, 2, 3]
        );
        assert_eq!(
            matching(json!({"tags": {"$notEmpty": true}}), &rows),
            [1, 3]
        );
    }

    #[test]
    fn field_paths_never_become_sql() {
        for field in [
            "a'b",
            "a b",
            "$.a",
            "a..b",
            "1a",
            "a;DROP TABLE t",
            "a)--",
            "",
        ] {
            let e = compile(&json!({ field: 1 })).expect_err(field);
            assert!(
                e.contains("field") || e.contains("operator"),
                "{field}: {e}"
            );
        }
        let c = compile(&json!({"a_1.b2": {"$eq": "x'); DROP TABLE t; --"}})).expect("compiles");
        assert!(!c.sql.contains("DROP"), "{}", c.sql);
        assert_eq!(
            c.params,
            vec![json!("$.a_1.b2"), json!("x'); DROP TABLE t; --")]
        );
        assert!(compile(&json!({"a": {"$regex": "x"}})).is_err());
        assert!(compile(&json!({"$or": []})).is_err());
        let e = compile(&json!({"a": {}})).expect_err("an empty condition");
        assert!(e.contains("`a`: an empty object"), "{e}");
        assert!(compile(&json!({"$not": {"a": {}}})).is_err());
        assert!(compile(&json!([1])).is_err());
    }
}
