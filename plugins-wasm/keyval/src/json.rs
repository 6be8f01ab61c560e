//! Values as JSON text: what a client sends is what it reads back.
//!
//! A value is never parsed into a tree and printed again (that would sort
//! object members and respell numbers, `1.50` as `1.5`): it is taken from the
//! request as raw text ([`RawValue`]), checked, and stored with only the
//! whitespace between tokens removed (so it fits an event stream's one-line
//! `data:`). Also the tagged bigint of the original client,
//! `{"__type": "bigint", "value": "<digits>"}`, as a mutation operand.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// The value members of a request body, as raw text: `value` (a set, an
/// enqueue, the `kv` service) and each mutation's `value` (`POST /atomic`).
/// A member that is absent or `null` is `None`.
#[derive(Debug, Default, Deserialize)]
pub struct RawValues<'a> {
    /// The body's `value`.
    #[serde(borrow, default)]
    pub value: Option<&'a RawValue>,
    /// Each mutation's `value`, in order.
    #[serde(borrow, default)]
    pub mutations: Option<Vec<RawMutation<'a>>>,
}

/// One mutation's `value`, as raw text.
#[derive(Debug, Default, Deserialize)]
pub struct RawMutation<'a> {
    /// The mutation's `value`.
    #[serde(borrow, default)]
    pub value: Option<&'a RawValue>,
}

impl<'a> RawValues<'a> {
    /// The value members of `body` (JSON text). A body whose shape is not
    /// an object with such members yields none: the caller's own parse of
    /// the body reports what is wrong with it.
    pub fn of(body: &'a str) -> Self {
        // Only an object has members (serde would also read a struct from
        // an array, by position).
        if !body.trim_start().starts_with('{') {
            return Self::default();
        }
        serde_json::from_str(body).unwrap_or_default()
    }

    /// Mutation `i`'s `value` text, compacted.
    pub fn mutation(&self, i: usize) -> Option<String> {
        let raw = self.mutations.as_ref()?.get(i)?.value?;
        Some(compact(raw.get()))
    }

    /// The body's `value` text, compacted.
    pub fn value(&self) -> Option<String> {
        self.value.map(|raw| compact(raw.get()))
    }
}

/// `text` (valid JSON) without whitespace between tokens; strings, numbers
/// and member order exactly as written.
pub fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// Checks that `text` is one JSON value and returns it compacted.
pub fn value_text(text: &str) -> Result<String, serde_json::Error> {
    let raw: &RawValue = serde_json::from_str(text)?;
    Ok(compact(raw.get()))
}

/// A `sum`/`min`/`max` operand: a JSON integer, `{"$bigint": "<digits>"}`,
/// or the original client's `{"__type": "bigint", "value": "<digits>"}`,
/// within the 64-bit signed range. Also whether it was the tagged form (the
/// result is then stored tagged too).
pub fn integer_operand(v: &Value) -> Result<(i64, bool), String> {
    if let Some(i) = v.as_i64() {
        return Ok((i, false));
    }
    let (digits, tagged) = match v {
        Value::Object(m) if m.get("__type").and_then(Value::as_str) == Some("bigint") => {
            (m.get("value").and_then(Value::as_str), true)
        }
        Value::Object(m) => (m.get("$bigint").and_then(Value::as_str), false),
        _ => (None, false),
    };
    let shape =
        "a JSON integer, {\"__type\": \"bigint\", \"value\": \"123\"} or {\"$bigint\": \"123\"}";
    let Some(digits) = digits else {
        return Err(format!("`value` must be {shape}; found {v}"));
    };
    let canonical = digits
        .strip_prefix('-')
        .unwrap_or(digits)
        .bytes()
        .all(|b| b.is_ascii_digit())
        && !digits.is_empty()
        && digits != "-";
    if !canonical {
        return Err(format!(
            "`value` must be {shape}: `{digits}` is not a decimal integer"
        ));
    }
    digits.parse().map(|i| (i, tagged)).map_err(|_| {
        format!(
            "`value` {digits} is out of range: bigints are 64-bit signed integers, {} to {}",
            i64::MIN,
            i64::MAX
        )
    })
}

/// The tagged bigint text of `n`, as the original client sends it.
pub fn tagged_bigint(n: i64) -> String {
    format!("{{\"__type\":\"bigint\",\"value\":\"{n}\"}}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compact_keeps_member_order_numbers_and_strings() {
        let text = "{ \"name\" : \"Ada  \\\" x\",\n \"n\": 1.50, \"big\": 123456789012345678901234, \"e\": 1E2, \"u\": \"\\u00e9 é\" }";
        assert_eq!(
            value_text(text).unwrap(),
            "{\"name\":\"Ada  \\\" x\",\"n\":1.50,\"big\":123456789012345678901234,\"e\":1E2,\"u\":\"\\u00e9 é\"}"
        );
        assert!(value_text("{\"a\":1} x").is_err());
        assert!(value_text("").is_err());
    }

    #[test]
    fn raw_values_of_a_commit() {
        let body = r#"{"mutations":[{"type":"set","key":["a"],"value":{"z":1, "a":2.0}},{"type":"delete","key":["b"]}],"value":[3, 1]}"#;
        let raw = RawValues::of(body);
        assert_eq!(raw.mutation(0).as_deref(), Some("{\"z\":1,\"a\":2.0}"));
        assert_eq!(raw.mutation(1), None);
        assert_eq!(raw.value().as_deref(), Some("[3,1]"));
        assert!(RawValues::of("[1]").value.is_none());
    }

    #[test]
    fn operands() {
        assert_eq!(integer_operand(&json!(5)), Ok((5, false)));
        assert_eq!(
            integer_operand(&json!({"__type": "bigint", "value": "-12"})),
            Ok((-12, true))
        );
        assert_eq!(
            integer_operand(&json!({"$bigint": "9223372036854775807"})),
            Ok((i64::MAX, false))
        );
        let too_big = integer_operand(&json!({"__type": "bigint", "value": "9223372036854775808"}));
        assert!(too_big.unwrap_err().contains("out of range"));
        assert!(integer_operand(&json!("5")).is_err());
        assert!(integer_operand(&json!(1.5)).is_err());
        assert!(integer_operand(&json!({"__type": "bigint", "value": "1e3"})).is_err());
        assert!(integer_operand(&json!({"__type": "bigint", "value": "+1"})).is_err());
        assert_eq!(tagged_bigint(12), r#"{"__type":"bigint","value":"12"}"#);
    }
}
