//! `match.json`: conditions on the JSON body of an HTTP request.
//!
//! ```yaml
//! match: { json: { "/amount": ">1000", "/currency": "EUR", "/force": true, "/note": { exists: true } } }
//! ```
//!
//! Keys are RFC 6901 JSON pointers (`""` is the whole document, `/items/0/sku` the
//! `sku` of the first item, `~1` stands for `/` and `~0` for `~` in a key). Values:
//! a string `>N`, `>=N`, `<N` or `<=N` compares numerically; `{ exists: BOOL }` tests
//! presence; `{ equals: V }` is equality with V (for a literal string that would read
//! as a comparison); anything else is a JSON literal the value must equal (numbers by
//! value: `10` equals `10.0`; strings exactly). A rule matches only when every
//! condition holds.
//!
//! The door reads the body into a [`JsonBody`]; this module never sees bytes. A body
//! policy cannot read as one JSON document ([`JsonBody::Unreadable`]: not JSON, a
//! duplicate key, too large or too deep to inspect), and a value a comparison cannot
//! read as a number, leave the rule *in doubt*: an `allow` rule in doubt does not
//! match, a `deny`, `review` or `mask` rule does (fail closed).

use std::sync::Arc;

use serde_json::Value;

/// What policy knows of a request's body, read as JSON by the door.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum JsonBody {
    /// No body (or a door without bodies): no `json` condition holds.
    #[default]
    Absent,
    /// The body is exactly one JSON document, without duplicate keys.
    Parsed(Arc<Value>),
    /// A body the door could not read as one JSON document (or did not inspect): every
    /// `json` condition is in doubt.
    Unreadable,
}

/// A rule's `match.json`: all its conditions must hold.
#[derive(Debug, Clone)]
pub struct JsonMatch {
    pub conditions: Vec<JsonCondition>,
    /// Whether the rule matches when a condition is in doubt: true for the rules that
    /// restrict (deny, review, mask), false for allow.
    pub doubt_matches: bool,
}

/// One `pointer: test` pair.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonCondition {
    pub pointer: Pointer,
    pub test: JsonTest,
}

/// A validated RFC 6901 JSON pointer, its reference tokens decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    tokens: Vec<String>,
}

/// What a condition asks of the value the pointer finds.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonTest {
    /// Equal to this JSON value (numbers compared by value).
    Equals(Value),
    /// A number (or a string holding one) compared with this bound.
    Compare(Cmp, f64),
    /// Present (true) or absent (false).
    Exists(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
}

/// One condition against one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Holds,
    Fails,
    InDoubt,
}

// === impl JsonMatch ===

impl JsonMatch {
    pub fn matches(&self, body: &JsonBody) -> bool {
        let doc = match body {
            JsonBody::Absent => return false,
            JsonBody::Unreadable => return self.doubt_matches,
            JsonBody::Parsed(doc) => doc,
        };
        let mut doubt = false;
        for condition in &self.conditions {
            match condition.outcome(doc) {
                Outcome::Holds => {}
                Outcome::Fails => return false,
                Outcome::InDoubt => doubt = true,
            }
        }
        !doubt || self.doubt_matches
    }
}

// === impl JsonCondition ===

impl JsonCondition {
    /// Parses one `pointer: value` pair of a policy file; the error is the reason only
    /// (the caller names the rule and the position).
    pub fn parse(pointer: &str, value: &Value) -> Result<Self, String> {
        Ok(JsonCondition { pointer: Pointer::parse(pointer)?, test: JsonTest::parse(value)? })
    }

    fn outcome(&self, doc: &Value) -> Outcome {
        let found = self.pointer.find(doc);
        match (&self.test, found) {
            (JsonTest::Exists(want), found) => holds(found.is_some() == *want),
            (_, None) => Outcome::Fails,
            (JsonTest::Equals(want), Some(value)) => holds(same(value, want)),
            (JsonTest::Compare(cmp, bound), Some(value)) => match number(value) {
                Some(n) => holds(cmp.test(n, *bound)),
                None => Outcome::InDoubt,
            },
        }
    }
}

fn holds(yes: bool) -> Outcome {
    if yes { Outcome::Holds } else { Outcome::Fails }
}

/// JSON equality, numbers by value (`10` and `10.0` are the same amount).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || matches!((x.as_f64(), y.as_f64()), (Some(x), Some(y)) if x == y)
        }
        (Value::Array(xs), Value::Array(ys)) => xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same(x, y)),
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len() && xs.iter().all(|(k, x)| ys.get(k).is_some_and(|y| same(x, y)))
        }
        _ => a == b,
    }
}

/// A number, or a string a lenient backend would read as one (`"5000"`, `" 5e3"`).
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    }
}

// === impl Pointer ===

impl Pointer {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(Pointer { text: String::new(), tokens: Vec::new() });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "\"{text}\" is not a JSON pointer: it must start with / (e.g. /amount, /items/0/sku), or be \"\" for the whole body"
            ));
        };
        let tokens = rest
            .split('/')
            .map(|token| {
                let mut decoded = String::with_capacity(token.len());
                let mut chars = token.chars();
                while let Some(c) = chars.next() {
                    if c != '~' {
                        decoded.push(c);
                        continue;
                    }
                    match chars.next() {
                        Some('0') => decoded.push('~'),
                        Some('1') => decoded.push('/'),
                        _ => {
                            return Err(format!(
                                "\"{text}\" is not a JSON pointer: ~ must be followed by 0 (for ~) or 1 (for /)"
                            ));
                        }
                    }
                }
                Ok(decoded)
            })
            .collect::<Result<_, _>>()?;
        Ok(Pointer { text: text.to_string(), tokens })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value this pointer refers to in `doc`, if any (RFC 6901 §4: an array index
    /// is `0` or digits without a leading zero; `-` refers to nothing).
    pub fn find<'v>(&self, doc: &'v Value) -> Option<&'v Value> {
        self.tokens.iter().try_fold(doc, |at, token| match at {
            Value::Object(map) => map.get(token),
            Value::Array(items) => {
                let canonical = token == "0"
                    || (!token.is_empty() && !token.starts_with('0') && token.bytes().all(|b| b.is_ascii_digit()));
                if !canonical {
                    return None;
                }
                items.get(token.parse::<usize>().ok()?)
            }
            _ => None,
        })
    }
}

// === impl JsonTest ===

impl JsonTest {
    fn parse(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(s) if s.starts_with('>') || s.starts_with('<') => {
                let (cmp, rest) = if let Some(r) = s.strip_prefix(">=") {
                    (Cmp::Ge, r)
                } else if let Some(r) = s.strip_prefix("<=") {
                    (Cmp::Le, r)
                } else if let Some(r) = s.strip_prefix('>') {
                    (Cmp::Gt, r)
                } else {
                    (Cmp::Lt, s.get(1..).unwrap_or_default())
                };
                match rest.trim().parse::<f64>() {
                    Ok(n) if n.is_finite() && !rest.trim().is_empty() => Ok(JsonTest::Compare(cmp, n)),
                    _ => Err(format!(
                        "\"{s}\" is not a comparison: expected >, >=, < or <= and a number (e.g. \">1000\"); \
                         for the literal string write {{ equals: \"{s}\" }}"
                    )),
                }
            }
            Value::Object(map) => {
                let mut entries = map.iter();
                let (Some((op, operand)), None) = (entries.next(), entries.next()) else {
                    return Err("a condition object has exactly one of exists: true|false or equals: VALUE".to_string());
                };
                match (op.as_str(), operand) {
                    ("exists", Value::Bool(b)) => Ok(JsonTest::Exists(*b)),
                    ("exists", _) => Err("exists takes true or false".to_string()),
                    ("equals", v) => Ok(JsonTest::Equals(v.clone())),
                    (other, _) => Err(format!(
                        "unknown condition \"{other}\" (expected exists: true|false or equals: VALUE; \
                         for an object literal write {{ equals: {{...}} }})"
                    )),
                }
            }
            literal => Ok(JsonTest::Equals(literal.clone())),
        }
    }
}

// === impl Cmp ===

impl Cmp {
    fn test(self, n: f64, bound: f64) -> bool {
        match self {
            Cmp::Gt => n > bound,
            Cmp::Ge => n >= bound,
            Cmp::Lt => n < bound,
            Cmp::Le => n <= bound,
        }
    }
}

#[cfg(test)]
mod tests;
