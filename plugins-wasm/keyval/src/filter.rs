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
