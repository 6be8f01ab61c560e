//! A JSON cursor for the few shapes the host sends every hook call (a
//! request head: an object of strings, a number, a bool and an array of
//! string pairs), read without serde.
//!
//! A guest's `on_request` reads a head on every request, and in wasm
//! serde_json's reader is most of that: a visitor call per token, a UTF-8
//! check per string, a `Vec` grown pair by pair. This cursor checks the
//! text's UTF-8 once, borrows every string without escapes, and stops
//! (`None`) at anything it does not read itself — an escape it cannot
//! decode, a duplicate member, a number that is not a plain `u64`, nesting
//! deeper than serde_json's limit. The caller then reads the same text with
//! serde, so what is accepted and the messages of what is refused stay
//! serde's; this cursor only has to agree with serde where it answers
//! (tests in `http_ref.rs` compare the two on many heads).

use std::borrow::Cow;

/// serde_json's default recursion limit: deeper values are left to it.
const MAX_DEPTH: usize = 128;

/// A position in JSON text that is valid UTF-8.
pub(crate) struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `bytes`; `None` if they are not UTF-8.
    pub(crate) fn new(bytes: &'a [u8]) -> Option<Self> {
        Some(Self {
            text: std::str::from_utf8(bytes).ok()?,
            at: 0,
        })
    }

    fn skip_ws(&mut self) {
        let b = self.text.as_bytes();
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = b.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte that is not white space, not consumed.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.text.as_bytes().get(self.at).copied()
    }

    /// Consumes `c` (after white space), or answers `None`.
    pub(crate) fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.at += 1)
    }

    /// Whether only white space is left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// `literal` (`true`, `false`, `null`) at the cursor, consumed if there.
    pub(crate) fn literal(&mut self, literal: &str) -> bool {
        self.skip_ws();
        let found = self.text.as_bytes()[self.at..].starts_with(literal.as_bytes());
        if found {
            self.at += literal.len();
        }
        found
    }

    /// A string: borrowed from the text when it has no escapes.
    pub(crate) fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let b = self.text.as_bytes();
        let start = self.at;
        let i = start + plain_prefix(&b[start..]);
        match *b.get(i)? {
            b'"' => {
                self.at = i + 1;
                // Both ends are ASCII quotes: char boundaries.
                Some(Cow::Borrowed(&self.text[start..i]))
            }
            b'\\' => self.escaped(start, i).map(Cow::Owned),
            _ => None,
        }
    }

    /// The rest of a string whose first escape is at `escape`: decoded.
    fn escaped(&mut self, start: usize, mut escape: usize) -> Option<String> {
        let b = self.text.as_bytes();
        let mut out = String::with_capacity(escape - start + 16);
        out.push_str(&self.text[start..escape]);
        loop {
            // `escape` is at a backslash.
            let code = *b.get(escape + 1)?;
            let mut next = escape + 2;
            match code {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let high = hex4(b.get(next..next + 4)?)?;
                    next += 4;
                    let c = match high {
                        0xD800..=0xDBFF => {
                            if b.get(next..next + 2)? != b"\\u" {
                                return None;
                            }
                            let low = hex4(b.get(next + 2..next + 6)?)?;
                            if !(0xDC00..=0xDFFF).contains(&low) {
                                return None;
                            }
                            next += 6;
                            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                        }
                        0xDC00..=0xDFFF => return None,
                        c => c,
                    };
                    out.push(char::from_u32(c)?);
                }
                _ => return None,
            }
            // A run without escapes up to the next escape or the end.
            let run = next;
            let i = run + plain_prefix(b.get(run..)?);
            match *b.get(i)? {
                b'"' => {
                    out.push_str(&self.text[run..i]);
                    self.at = i + 1;
                    return Some(out);
                }
                b'\\' => {
                    out.push_str(&self.text[run..i]);
                    escape = i;
                }
                _ => return None,
            }
        }
    }

    /// `true` or `false`.
    pub(crate) fn boolean(&mut self) -> Option<bool> {
        if self.literal("true") {
            Some(true)
        } else if self.literal("false") {
            Some(false)
        } else {
            None
        }
    }

    /// An object, each member's value read by `member` (given its key).
    pub(crate) fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, Cow<'a, str>) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            member(self, key)?;
            if !self.more(b'}')? {
                return Some(());
            }
        }
    }

    /// An object that is the whole text (white space around it aside).
    pub(crate) fn document(
        &mut self,
        member: impl FnMut(&mut Self, Cow<'a, str>) -> Option<()>,
    ) -> Option<()> {
        self.object(member)?;
        self.at_end().then_some(())
    }

    /// An array, each element read by `element`.
    pub(crate) fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            element(self)?;
            if !self.more(b']')? {
                return Some(());
            }
        }
    }

    /// After a member or an element: `true` past a comma (another follows),
    /// `false` past `close` (the end), `None` at anything else.
    fn more(&mut self, close: u8) -> Option<bool> {
        let next = self.peek()?;
        if next != b',' && next != close {
            return None;
        }
        self.at += 1;
        Some(next == b',')
    }

    /// `null` (`Some(None)`) or what `read` reads.
    pub(crate) fn optional<T>(&mut self, read: fn(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.literal("null") {
            return Some(None);
        }
        read(self).map(Some)
    }

    /// `null` or a string, owned.
    pub(crate) fn optional_owned(&mut self) -> Option<Option<String>> {
        self.optional(Self::string).map(|s| s.map(Cow::into_owned))
    }

    /// `[["name","value"],...]`, each string made into a `T` by `make`.
    pub(crate) fn pairs<T>(&mut self, make: fn(Cow<'a, str>) -> T) -> Option<Vec<(T, T)>> {
        let mut out = Vec::with_capacity(16);
        self.array(|c| {
            c.eat(b'[')?;
            let name = make(c.string()?);
            c.eat(b',')?;
            let value = make(c.string()?);
            c.eat(b']')?;
            out.push((name, value));
            Some(())
        })?;
        Some(out)
    }

    /// A plain unsigned integer (no sign, fraction or exponent; no leading
    /// zero), as serde reads a `u64`.
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.skip_ws();
        let b = self.text.as_bytes();
        let start = self.at;
        let mut value: u64 = 0;
        let mut i = start;
        while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
            value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || (digits > 1 && b[start] == b'0') {
            return None;
        }
        if matches!(b.get(i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.at = i;
        Some(value)
    }

    /// Skips one value of any kind.
    pub(crate) fn skip_value(&mut self) -> Option<()> {
        self.skip_depth(0)
    }

    fn skip_depth(&mut self, depth: usize) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|c, _| c.skip_depth(depth + 1)),
            b'[' => self.array(|c| c.skip_depth(depth + 1)),
            b't' => self.literal("true").then_some(()),
            b'f' => self.literal("false").then_some(()),
            b'n' => self.literal("null").then_some(()),
            _ => self.number(),
        }
    }

    /// Skips a number of JSON's grammar.
    fn number(&mut self) -> Option<()> {
        let b = self.text.as_bytes();
        let mut i = self.at;
        let digits = |i: &mut usize| {
            let start = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > start
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        if b.get(i) == Some(&b'0') {
            i += 1;
        } else if !digits(&mut i) {
            return None;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                return None;
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if !digits(&mut i) {
                return None;
            }
        }
        self.at = i;
        Some(())
    }
}

/// What a cursor read (`scanned`), or, where it stopped, serde's reading
/// of the same `json`: serde's result and errors wherever the cursor has no
/// answer.
pub(crate) fn or_serde<'a, T: serde::Deserialize<'a>>(
    json: &'a [u8],
    scanned: Option<T>,
) -> serde_json::Result<T> {
    match scanned {
        Some(value) => Ok(value),
        None => serde_json::from_slice(json),
    }
}

/// Fills `slot` with `value`; `None` if `value` is, or if the slot is
/// already filled (a member seen twice is serde's to refuse: `duplicate
/// field`).
pub(crate) fn once<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value?);
    Some(())
}

/// How many bytes at the start of `b` a JSON string holds as they are: up
/// to the first quote, backslash or control character (or all of them).
///
/// Eight bytes at a time (a guest's byte loop costs several instructions
/// per byte; heads and answers are mostly such runs). For each byte lane,
/// `(v - 0x01..) & !v & 0x80..` is set where `v` is zero, and `(x - 0x20..)
/// & !x & 0x80..` where `x` is below 0x20; a borrow can set lanes above a
/// match, never below it, so the lowest set lane is the first match.
pub(crate) fn plain_prefix(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    let mut i = 0;
    while let Some(Ok(lanes)) = b.get(i..i + 8).map(<[u8; 8]>::try_from) {
        let x = u64::from_le_bytes(lanes);
        let special = (zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\')))
            | (x.wrapping_sub(ONES * 0x20) & !x))
            & HIGH;
        if special != 0 {
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b
        .get(i)
        .is_some_and(|&c| c >= 0x20 && c != b'"' && c != b'\\')
    {
        i += 1;
    }
    i
}

/// Four hex digits.
fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = (d as char).to_digit(16)?;
        Some(acc * 16 + v)
    })
}

/// What the readers' tests share: comparing a reader with serde, and
/// damaged copies of good text to compare them on.
#[cfg(test)]
pub(crate) mod testing {
    use std::fmt::Debug;

    /// A reader and serde agree on `json`: where the cursor answered
    /// (`scanned`), serde reads the same value; and the reader's result
    /// (`read`) is serde's, value or error message.
    pub(crate) fn agree<T: PartialEq + Debug>(
        json: &[u8],
        scanned: Option<T>,
        read: serde_json::Result<T>,
        serde: serde_json::Result<T>,
    ) {
        let text = String::from_utf8_lossy(json);
        if let Some(ours) = scanned {
            match &serde {
                Ok(theirs) => assert_eq!(&ours, theirs, "{text}"),
                Err(e) => panic!("{text}: read, serde refused: {e}"),
            }
        }
        match (read, serde) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
            (a, b) => panic!("{text}: {a:?} against {b:?}"),
        }
    }

    /// `json` with each byte removed, and with each byte replaced by each
    /// of `marks` (bytes that mean something in JSON, or break UTF-8).
    pub(crate) fn damaged(json: &[u8], marks: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for i in 0..json.len() {
            let mut cut = json.to_vec();
            cut.remove(i);
            out.push(cut);
            for &m in marks {
                let mut changed = json.to_vec();
                changed[i] = m;
                out.push(changed);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(json: &str) -> Option<String> {
        let mut c = Cursor::new(json.as_bytes())?;
        let s = c.string()?;
        c.at_end().then(|| s.into_owned())
    }

    #[test]
    fn strings_decode_as_serde_decodes_them() {
        for json in [
            r#""""#,
            r#""plain""#,
            r#""a\"b""#,
            r#""\\\/\b\f\n\r\t""#,
            r#""\u00e9 and \u0041""#,
            r#""\ud83d\ude00 face""#,
            r#""é ü 日本""#,
            r#""ends with escape\n""#,
        ] {
            let ours = string(json);
            let serde: String = serde_json::from_str(json).unwrap();
            assert_eq!(ours.as_deref(), Some(serde.as_str()), "{json}");
        }
    }

    #[test]
    fn what_serde_refuses_is_not_read() {
        for json in [
            r#""\ud83d""#,
            r#""\ude00""#,
            r#""\ud83d\u0041""#,
            r#""\x""#,
            r#""\u12g4""#,
            "\"tab\there\"",
            r#""unterminated"#,
        ] {
            assert_eq!(string(json), None, "{json}");
            assert!(serde_json::from_str::<String>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn plain_prefix_stops_at_the_first_special_byte() {
        for len in 0..20 {
            for at in 0..=len {
                for special in [b'"', b'\\', 0x00, 0x1f] {
                    for filler in [b'a', 0x20, 0x7f, 0x80, 0xff, b'!', b'#', b'['] {
                        let mut b = vec![filler; len];
                        if at < len {
                            b[at] = special;
                            // Bytes after the first special one do not matter.
                            b[len - 1] = if at < len - 1 { b'"' } else { special };
                        }
                        assert_eq!(plain_prefix(&b), at, "{b:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn unsigned_integers_are_plain_digits() {
        let read = |json: &str| Cursor::new(json.as_bytes()).and_then(|mut c| c.u64());
        assert_eq!(read("0"), Some(0));
        assert_eq!(read(" 18446744073709551615"), Some(u64::MAX));
        for refused in ["18446744073709551616", "01", "-1", "1.0", "1e3", "x"] {
            assert_eq!(read(refused), None, "{refused}");
        }
    }

    #[test]
    fn any_value_is_skipped() {
        for json in [
            r#"{"a":[1,-2.5e+3,true,false,null,{"b":"c\"d"}],"e":{}}"#,
            "[]",
            "0",
            "-0.1E-9",
        ] {
            let mut c = Cursor::new(json.as_bytes()).unwrap();
            assert_eq!(c.skip_value(), Some(()), "{json}");
            assert!(c.at_end(), "{json}");
        }
        for bad in ["[1,]", "{\"a\"}", "01", "-", "1.", "tru", "[1 2]"] {
            let mut c = Cursor::new(bad.as_bytes()).unwrap();
            assert!(c.skip_value().is_none() || !c.at_end(), "{bad}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(Cursor::new(deep.as_bytes()).unwrap().skip_value(), None);
    }
}
