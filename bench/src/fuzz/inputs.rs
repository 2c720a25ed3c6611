//! Generators every target shares: text and JSON a parser meets at its edges (the 256-character
//! limit, numbers that are almost integers, escapes, multi-byte text, deep nesting), and byte-level
//! mutations of valid inputs (flipped bits, cuts, insertions, duplicated runs), as a mutating
//! fuzzer makes them. Everything shrinks: a failure is reported with a small input.

use std::fmt;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Map, Number, Value};

/// Bytes, printed as an escaped byte string (`b"{\"a\xff"`) rather than a list of numbers.
#[derive(Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() > 512 {
            write!(f, "b\"{}\"… ({} bytes)", self.0[..512].escape_ascii(), self.0.len())
        } else {
            write!(f, "b\"{}\"", self.0.escape_ascii())
        }
    }
}

/// A regex strategy, its pattern parsed once.
pub fn re(pattern: &str) -> BoxedStrategy<String> {
    proptest::string::string_regex(pattern).unwrap_or_else(|e| panic!("bad generator pattern {pattern:?}: {e}")).boxed()
}

/// Texts with a meaning somewhere in Herald, or at a parser's edge.
const SPECIAL: &[&str] = &[
    "",
    " ",
    "\t",
    "\u{0}",
    "\r\n",
    "\u{feff}",
    "\u{202e}",
    "\u{fffd}",
    "null",
    "true",
    "0",
    "-0",
    "1",
    "-1",
    "01",
    "1e3",
    "1.5",
    "1.0",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "{}",
    "[]",
    "{\"",
    "=",
    "==",
    "C===",
    "access_token",
    "Bearer ",
    "bearer x",
    "ack",
    "nack",
    "ACK",
    "subscribe",
    "unsubscribe",
    "push",
    "sms",
    "notification:test",
    "news",
    "user:",
    "user:1:",
    "user:42:orders",
    "Event.SendMessage",
    "Event.ReceiveMessage",
    "Event.AddConversation",
    "6a1f5a8e-0000-4000-8000-000000000001",
];

/// Strings of lengths around the 256-character limit, in one-, two- and four-byte characters.
pub fn boundary_string() -> BoxedStrategy<String> {
    (select(vec![0usize, 1, 2, 255, 256, 257, 300, 1025]), select(vec!['a', '7', 'é', '🦀', ' ', '"']))
        .prop_map(|(n, c)| std::iter::repeat_n(c, n).collect())
        .boxed()
}

/// Any text: printable Unicode, ASCII, control characters, the special texts, the boundaries.
pub fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => re("\\PC{0,24}"),
        3 => re("[ -~]{0,24}"),
        1 => re("(?s:.{0,16})"),
        3 => select(SPECIAL).prop_map(String::from),
        1 => boundary_string(),
    ]
    .boxed()
}

/// Integers at the edges of i64, u64 and small values.
pub fn integer() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => (-3i64..300).prop_map(Value::from),
        1 => select(vec![i64::MIN, i64::MAX, -1, 0, 1, 1589, 4_102_444_800]).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => select(vec![u64::MAX, 1 << 63]).prop_map(Value::from),
    ]
    .boxed()
}

/// Any JSON number: integers, and finite floats (`1.0` is not an integer to serde_json).
pub fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => integer(),
        1 => any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        1 => select(vec![0.5, 1.0, -0.0, 1e300, 1589.0, 4.102_444_8e9]).prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
    ]
    .boxed()
}

/// Object keys: the fields Herald reads (so a random object often hits them), or any text.
pub const KNOWN_KEYS: &[&str] = &[
    "type",
    "event_name",
    "user_id",
    "push_id",
    "status",
    "name",
    "args",
    "id",
    "message_id",
    "delivery_method",
    "subject",
    "content",
    "title",
    "body",
    "message",
    "created_at",
    "since",
    "session_channel",
    "sender_id",
    "executor_id",
    "application_id",
    "message_id",
    "limit",
    "before_id",
    "content_type",
    "client_msg_id",
    "sub",
    "exp",
    "iss",
    "aud",
    "scope",
    "role",
    "admin_id",
    "request_id",
    "alg",
    "kid",
];

pub fn key() -> BoxedStrategy<String> {
    prop_oneof![2 => select(KNOWN_KEYS).prop_map(String::from), 1 => text()].boxed()
}

/// A JSON scalar.
pub fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        2 => number(),
        3 => text().prop_map(Value::String),
    ]
    .boxed()
}

/// Any JSON value, nested a few levels.
pub fn json() -> BoxedStrategy<Value> {
    scalar()
        .prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::Array),
                vec((key(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

/// A JSON object of any values, its keys mostly Herald's.
pub fn object() -> BoxedStrategy<Map<String, Value>> {
    vec((key(), json()), 0..6).prop_map(|kv| kv.into_iter().collect()).boxed()
}

/// A value for an id field: one of `common` (as a string, or as a number when it is one), or any
/// text, integer or JSON.
pub fn id_value(common: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![
        4 => select(common).prop_map(|s| Value::String(s.to_string())),
        2 => select(common).prop_map(|s| s.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(s.to_string()))),
        2 => text().prop_map(Value::String),
        1 => number(),
        1 => json(),
    ]
    .boxed()
}

/// JSON nested `depth` arrays deep (past serde_json's recursion limit of 128 too).
pub fn deep_json() -> BoxedStrategy<String> {
    (select(vec![10usize, 127, 128, 129, 500, 5000]), any::<bool>())
        .prop_map(|(depth, objects)| {
            if objects {
                format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
            } else {
                format!("{}{}", "[".repeat(depth), "]".repeat(depth))
            }
        })
        .boxed()
}

/// Bytes a mutation inserts or writes: JSON and base64 punctuation, and bytes that are not UTF-8.
const INTERESTING: &[u8] = b"{}[]\":,\\0-.e=+/_ \n\x00\x7f\x80\xc3\xff";

/// One byte-level edit.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Flip one bit.
    Flip(Index, u8),
    /// Remove up to n bytes.
    Delete(Index, u8),
    /// Insert these bytes.
    Insert(Index, Vec<u8>),
    /// Repeat a run of bytes.
    Duplicate(Index, u8),
    /// Cut the input here.
    Truncate(Index),
    /// Overwrite a byte with an interesting one.
    Replace(Index, Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<(Index, u8)>().prop_map(|(i, b)| Edit::Flip(i, b % 8)),
        (any::<Index>(), 1u8..16).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<Index>(), prop_oneof![vec(any::<u8>(), 1..8), vec(select(INTERESTING), 1..4)]).prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<Index>(), 1u8..32).prop_map(|(i, n)| Edit::Duplicate(i, n)),
        any::<Index>().prop_map(Edit::Truncate),
        any::<(Index, Index)>().prop_map(|(i, b)| Edit::Replace(i, b)),
    ]
}

/// One to four edits.
pub fn edits() -> BoxedStrategy<Vec<Edit>> {
    vec(edit(), 1..5).boxed()
}

/// Applies edits in turn (indexes taken modulo the current length).
pub fn apply(bytes: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for e in edits {
        let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len) };
        match e {
            Edit::Flip(i, bit) if !out.is_empty() => {
                let i = at(i, out.len());
                out[i] ^= 1 << bit;
            }
            Edit::Delete(i, n) if !out.is_empty() => {
                let i = at(i, out.len());
                let end = (i + usize::from(*n)).min(out.len());
                out.drain(i..end);
            }
            Edit::Insert(i, b) => {
                let i = at(i, out.len() + 1);
                out.splice(i..i, b.iter().copied());
            }
            Edit::Duplicate(i, n) if !out.is_empty() => {
                let i = at(i, out.len());
                let end = (i + usize::from(*n)).min(out.len());
                let run = out[i..end].to_vec();
                out.splice(end..end, run);
            }
            Edit::Truncate(i) if !out.is_empty() => out.truncate(at(i, out.len())),
            Edit::Replace(i, b) if !out.is_empty() => {
                let i = at(i, out.len());
                out[i] = INTERESTING[b.index(INTERESTING.len())];
            }
            _ => {}
        }
    }
    out
}

/// Valid inputs, mutated.
pub fn mutated(valid: BoxedStrategy<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    (valid, edits()).prop_map(|(bytes, edits)| apply(&bytes, &edits)).boxed()
}

/// Valid texts, mutated (bytes that are not UTF-8 become U+FFFD).
pub fn mutated_text(valid: BoxedStrategy<String>) -> BoxedStrategy<String> {
    mutated(valid.prop_map(String::into_bytes).boxed()).prop_map(|b| String::from_utf8_lossy(&b).into_owned()).boxed()
}

/// Random bytes, short or long.
pub fn bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![4 => vec(any::<u8>(), 0..48), 1 => vec(any::<u8>(), 0..2048)].boxed()
}

/// A JSON text of `value`.
pub fn to_json(value: &Value) -> String {
    value.to_string()
}

/// Whether two JSON values are equal, floats allowed to differ in their last two bits: the
/// workspace's serde_json parses floats best-effort (without `float_roundtrip`), so a float can
/// move by one unit in the last place at each parse (see `tests/tests/fuzz_parsers.rs`,
/// `message_floats_reach_clients_unchanged`). Integers, strings and shapes must be equal.
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x.signum() == y.signum() && x.to_bits().abs_diff(y.to_bits()) <= 2),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w))),
        _ => a == b,
    }
}
