//! Keys: lists of typed parts, and their order-preserving binary encoding.
//!
//! A key is stored as one BLOB whose byte order (SQLite compares BLOBs with
//! `memcmp`) is the key order: parts compare by type first (bytes < string <
//! number < bigint < bool), then by value. Each part is a type tag followed
//! by its bytes:
//!
//! | part | encoding |
//! |---|---|
//! | bytes | `0x01`, the bytes with `0x00` escaped as `0x00 0xFF`, then `0x00` |
//! | string | `0x02`, the UTF-8 escaped the same way, then `0x00` |
//! | number | `0x03`, the IEEE-754 bits big-endian: sign bit flipped for positives, all bits for negatives |
//! | bigint | `0x04`, the i64 big-endian with the sign bit flipped |
//! | bool | `0x05`, then `0x00` or `0x01` |
//!
//! A terminator `0x00` is always followed by a tag (`0x01`..`0x05`) or the
//! end, never `0xFF`, so a key sorts before every key it prefixes, and the
//! keys under a prefix `P` are exactly those in `(P, P ‖ 0xFF)`.
//!
//! In JSON a key is an array: strings, numbers and booleans as themselves,
//! `{"$bigint": "123"}` and `{"$bytes": "<base64>"}`. In a URL path it is
//! the `/`-separated segments, where a segment that is a safe integer is a
//! number.

use base64::Engine as _;
use serde_json::{Value, json};

/// Most parts in a key.
pub const MAX_PARTS: usize = 20;
/// Most bytes in one part.
pub const MAX_PART_BYTES: usize = 1024;
/// Most bytes in an encoded key (so a watch topic holding it stays short).
pub const MAX_KEY_BYTES: usize = 2048;

/// One part of a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// Text.
    String(String),
    /// A finite float.
    Number(f64),
    /// A 64-bit integer.
    BigInt(i64),
    /// A boolean.
    Bool(bool),
}

/// A key's parts.
pub type Key = Vec<Part>;

const TAG_BYTES: u8 = 0x01;
const TAG_STRING: u8 = 0x02;
const TAG_NUMBER: u8 = 0x03;
const TAG_BIGINT: u8 = 0x04;
const TAG_BOOL: u8 = 0x05;

/// Reads a key from JSON (`["users", 42, {"$bigint": "9"}]`; a bigint part
/// may also be the original client's `{"__type": "bigint", "value": "9"}`).
pub fn from_json(v: &Value) -> Result<Key, String> {
    let Value::Array(items) = v else {
        return Err(format!(
            "a key is an array of parts, e.g. [\"users\", 42]; found {v}"
        ));
    };
    let key = items
        .iter()
        .enumerate()
        .map(|(i, p)| part_from_json(p).map_err(|e| format!("key part {i}: {e}")))
        .collect::<Result<Key, _>>()?;
    check(&key)?;
    Ok(key)
}

fn part_from_json(v: &Value) -> Result<Part, String> {
    Ok(match v {
        Value::String(s) => Part::String(s.clone()),
        Value::Bool(b) => Part::Bool(*b),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.is_finite() => Part::Number(f),
            _ => return Err(format!("{n} is not a finite number")),
        },
        Value::Object(o) if o.len() == 1 && o.contains_key("$bigint") => {
            let text = match &o["$bigint"] {
                Value::String(s) => s.clone(),
                Value::Number(n) if n.is_i64() => n.to_string(),
                other => return Err(format!("`$bigint` must be a decimal string, found {other}")),
            };
            Part::BigInt(
                text.parse()
                    .map_err(|_| format!("`$bigint` `{text}` is not a 64-bit integer"))?,
            )
        }
        // The original client's tagged bigint.
        Value::Object(o)
            if o.len() == 2 && o.get("__type").and_then(Value::as_str) == Some("bigint") =>
        {
            let text = o["value"]
                .as_str()
                .ok_or("a tagged bigint's `value` must be a decimal string")?;
            Part::BigInt(
                text.parse()
                    .map_err(|_| format!("the bigint `{text}` is not a 64-bit integer"))?,
            )
        }
        Value::Object(o) if o.len() == 1 && o.contains_key("$bytes") => {
            let text = o["$bytes"].as_str().ok_or("`$bytes` must be base64 text")?;
            Part::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| format!("`$bytes` is not base64: {e}"))?,
            )
        }
        other => {
            return Err(format!(
                "{other} is not a key part (string, number, boolean, {{\"$bigint\"}} or {{\"$bytes\"}})"
            ));
        }
    })
}

/// Reads a key from a URL path's segments (`users/42` → `["users", 42]`),
/// each already percent-decoded.
pub fn from_path(segments: &[String]) -> Result<Key, String> {
    let key: Key = segments
        .iter()
        .map(|s| match s.parse::<i64>() {
            Ok(n) if n.abs() <= 9_007_199_254_740_991 && n.to_string() == *s => {
                Part::Number(n as f64)
            }
            _ => Part::String(s.clone()),
        })
        .collect();
    check(&key)?;
    Ok(key)
}

/// Parses a `/`-separated key as written in a query string (`a/b/1`);
/// empty text is the empty key.
pub fn from_text(text: &str) -> Result<Key, String> {
    let segments: Vec<String> = text
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    from_path(&segments)
}

fn check(key: &Key) -> Result<(), String> {
    if key.len() > MAX_PARTS {
        return Err(format!(
            "a key has at most {MAX_PARTS} parts, this one has {}",
            key.len()
        ));
    }
    for (i, p) in key.iter().enumerate() {
        let len = match p {
            Part::Bytes(b) => b.len(),
            Part::String(s) => s.len(),
            _ => 0,
        };
        if len > MAX_PART_BYTES {
            return Err(format!(
                "key part {i} is {len} bytes; a part has at most {MAX_PART_BYTES}"
            ));
        }
    }
    let size = encode(key).len();
    if size > MAX_KEY_BYTES {
        return Err(format!(
            "the key encodes to {size} bytes; at most {MAX_KEY_BYTES}"
        ));
    }
    Ok(())
}

/// A key as JSON.
pub fn to_json(key: &[Part]) -> Value {
    Value::Array(
        key.iter()
            .map(|p| match p {
                Part::Bytes(b) => {
                    json!({ "$bytes": base64::engine::general_purpose::STANDARD.encode(b) })
                }
                Part::String(s) => json!(s),
                Part::Number(f) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => {
                    json!(*f as i64)
                }
                Part::Number(f) => json!(f),
                Part::BigInt(i) => json!({ "$bigint": i.to_string() }),
                Part::Bool(b) => json!(b),
            })
            .collect(),
    )
}

fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.push(0);
}

/// The key's order-preserving encoding.
pub fn encode(key: &[Part]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in key {
        match p {
            Part::Bytes(b) => {
                out.push(TAG_BYTES);
                escaped(&mut out, b);
            }
            Part::String(s) => {
                out.push(TAG_STRING);
                escaped(&mut out, s.as_bytes());
            }
            Part::Number(f) => {
                out.push(TAG_NUMBER);
                let bits = f.to_bits();
                let ordered = if bits >> 63 == 0 {
                    bits ^ (1 << 63)
                } else {
                    !bits
                };
                out.extend_from_slice(&ordered.to_be_bytes());
            }
            Part::BigInt(i) => {
                out.push(TAG_BIGINT);
                out.extend_from_slice(&((*i as u64) ^ (1 << 63)).to_be_bytes());
            }
            Part::Bool(b) => {
                out.push(TAG_BOOL);
                out.push(u8::from(*b));
            }
        }
    }
    out
}

fn unescaped(bytes: &[u8], at: &mut usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let b = *bytes.get(*at).ok_or("an unterminated key part")?;
        *at += 1;
        if b == 0 {
            if bytes.get(*at) == Some(&0xFF) {
                out.push(0);
                *at += 1;
                continue;
            }
            return Ok(out);
        }
        out.push(b);
    }
}

fn eight(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let chunk: [u8; 8] = bytes
        .get(*at..*at + 8)
        .and_then(|s| s.try_into().ok())
        .ok_or("a truncated key part")?;
    *at += 8;
    Ok(u64::from_be_bytes(chunk))
}

/// Decodes a stored key.
pub fn decode(bytes: &[u8]) -> Result<Key, String> {
    let mut at = 0;
    let mut key = Vec::new();
    while at < bytes.len() {
        let tag = bytes[at];
        at += 1;
        key.push(match tag {
            TAG_BYTES => Part::Bytes(unescaped(bytes, &mut at)?),
            TAG_STRING => Part::String(
                String::from_utf8(unescaped(bytes, &mut at)?).map_err(|e| e.to_string())?,
            ),
            TAG_NUMBER => {
                let ordered = eight(bytes, &mut at)?;
                let bits = if ordered >> 63 == 1 {
                    ordered ^ (1 << 63)
                } else {
                    !ordered
                };
                Part::Number(f64::from_bits(bits))
            }
            TAG_BIGINT => Part::BigInt((eight(bytes, &mut at)? ^ (1 << 63)) as i64),
            TAG_BOOL => {
                let b = *bytes.get(at).ok_or("a truncated key part")?;
                at += 1;
                Part::Bool(b != 0)
            }
            other => return Err(format!("unknown key tag {other:#04x}")),
        });
    }
    Ok(key)
}

/// Lowercase hex, for blob literals and event topics.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_follows_types_then_values() {
        let keys = [
            vec![Part::Bytes(vec![0])],
            vec![Part::Bytes(vec![0, 1])],
            vec![Part::String(String::new())],
            vec![Part::String("a".into())],
            vec![Part::String("a".into()), Part::Number(1.0)],
            vec![Part::String("a\0".into())],
            vec![Part::String("b".into())],
            vec![Part::Number(f64::NEG_INFINITY)],
            vec![Part::Number(-2.5)],
            vec![Part::Number(-0.0)],
            vec![Part::Number(0.0)],
            vec![Part::Number(3.0)],
            vec![Part::BigInt(i64::MIN)],
            vec![Part::BigInt(-1)],
            vec![Part::BigInt(7)],
            vec![Part::Bool(false)],
            vec![Part::Bool(true)],
        ];
        for w in keys.windows(2) {
            assert!(encode(&w[0]) < encode(&w[1]), "{:?} < {:?}", w[0], w[1]);
        }
        for k in &keys {
            assert_eq!(&decode(&encode(k)).unwrap(), k);
        }
    }

    #[test]
    fn a_tagged_bigint_is_a_bigint_part() {
        let tagged = serde_json::json!(["t", {"__type": "bigint", "value": "-9007199254740993"}]);
        let ours = serde_json::json!(["t", {"$bigint": "-9007199254740993"}]);
        assert_eq!(from_json(&tagged).unwrap(), from_json(&ours).unwrap());
        let out_of_range =
            serde_json::json!([{"__type": "bigint", "value": "9223372036854775808"}]);
        assert!(from_json(&out_of_range).unwrap_err().contains("64-bit"));
        let extra = serde_json::json!([{"__type": "bigint", "value": "1", "x": 1}]);
        assert!(from_json(&extra).is_err());
    }

    #[test]
    fn prefix_range_holds_exactly_the_subtree() {
        let p = encode(&[Part::String("a".into())]);
        let mut end = p.clone();
        end.push(0xFF);
        let inside = encode(&[Part::String("a".into()), Part::Bool(true)]);
        let outside = encode(&[Part::String("a\0".into())]);
        assert!(inside > p && inside < end);
        assert!(!(outside > p && outside < end));
    }
}
