//! Journal records and the hash chain that links them (`docs/journal-format.md`, "The
//! record").
//!
//! This module owns the record's shape, its canonical JSON (the exact text that is
//! hashed), the hash, and [`ChainCheck`], which walks records in sequence order and says
//! where a chain stops being intact. It is pure: it does no I/O and knows nothing of where
//! records are kept. The state database (which stores the canonical text itself) and the
//! JSON Lines export (`super::file`, which stores it inside a line) both feed it, so "is
//! this chain intact" means one thing everywhere.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The `prev` of record 1: there is no record 0 to hash.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const _: () = assert!(ZERO_HASH.len() == 64);

/// What a record did to its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Create,
    Replace,
    Patch,
    Delete,
    Purge,
}

impl Op {
    /// The name the record carries in `op`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Replace => "replace",
            Op::Patch => "patch",
            Op::Delete => "delete",
            Op::Purge => "purge",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One journal record: exactly the members `docs/journal-format.md` lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    pub prev: String,
    pub time: String,
    pub endpoint: String,
    pub actor: String,
    pub client: Option<String>,
    pub request_id: Option<String>,
    pub op: Op,
    pub kind: String,
    pub id: String,
    pub version_before: Option<i64>,
    pub version_after: Option<i64>,
    pub image: Value,
    /// A group's incremental member change; the image then has no `members`
    /// (docs/journal-format.md, "Membership deltas"). Absent from the canonical form when
    /// `None`, so records written before it existed hash as they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_delta: Option<MemberDelta>,
}

/// The net member change of a group record: members added (as stored: `value`, `type`,
/// `display`) and member ids removed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberDelta {
    pub added: Vec<Value>,
    pub removed: Vec<String>,
}

impl MemberDelta {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// The ids of the added members, in order.
    pub fn added_ids(&self) -> impl Iterator<Item = &str> {
        self.added
            .iter()
            .filter_map(|m| m.get("value").and_then(Value::as_str))
    }

    fn to_value(&self) -> Value {
        let mut map = Map::new();
        map.insert("added".into(), Value::Array(self.added.clone()));
        map.insert(
            "removed".into(),
            Value::Array(self.removed.iter().cloned().map(Value::String).collect()),
        );
        Value::Object(map)
    }
}

impl Record {
    /// Canonical JSON: keys sorted at every depth, no insignificant whitespace, null
    /// members written as `null` (never omitted), as `serde_json` writes a `BTreeMap`.
    ///
    /// The keys are sorted here explicitly rather than trusting `serde_json::Map` to be a
    /// `BTreeMap`: any crate in the build turning on serde_json's `preserve_order` feature
    /// would otherwise silently change every hash.
    pub fn canonical_json(&self) -> String {
        if maps_sort_keys() {
            // Serialising a view in key order writes the canonical form directly,
            // without copying the image.
            let view = CanonicalView {
                actor: &self.actor,
                client: &self.client,
                endpoint: &self.endpoint,
                id: &self.id,
                image: &self.image,
                kind: &self.kind,
                member_delta: self.member_delta.as_ref(),
                op: self.op.as_str(),
                prev: &self.prev,
                request_id: &self.request_id,
                seq: self.seq,
                time: &self.time,
                version_after: self.version_after,
                version_before: self.version_before,
            };
            if let Ok(text) = serde_json::to_string(&view) {
                return text;
            }
        }
        canonical(&self.to_value()).to_string()
    }

    /// Lowercase hex SHA-256 of [`canonical_json`](Self::canonical_json).
    pub fn hash(&self) -> String {
        hash_text(&self.canonical_json())
    }

    /// The record as a JSON value, built member by member (infallible, unlike
    /// `serde_json::to_value`); a test keeps it equal to what the derive writes.
    fn to_value(&self) -> Value {
        let optional_str = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
        let optional_int = |v: Option<i64>| v.map_or(Value::Null, Value::from);
        let mut map = Map::new();
        map.insert("seq".into(), Value::from(self.seq));
        map.insert("prev".into(), Value::String(self.prev.clone()));
        map.insert("time".into(), Value::String(self.time.clone()));
        map.insert("endpoint".into(), Value::String(self.endpoint.clone()));
        map.insert("actor".into(), Value::String(self.actor.clone()));
        map.insert("client".into(), optional_str(&self.client));
        map.insert("request_id".into(), optional_str(&self.request_id));
        map.insert("op".into(), Value::String(self.op.as_str().into()));
        map.insert("kind".into(), Value::String(self.kind.clone()));
        map.insert("id".into(), Value::String(self.id.clone()));
        map.insert("version_before".into(), optional_int(self.version_before));
        map.insert("version_after".into(), optional_int(self.version_after));
        map.insert("image".into(), self.image.clone());
        if let Some(delta) = &self.member_delta {
            map.insert("member_delta".into(), delta.to_value());
        }
        Value::Object(map)
    }
}

/// A record's members in canonical (byte) order of their names, borrowed.
#[derive(Serialize)]
struct CanonicalView<'a> {
    actor: &'a str,
    client: &'a Option<String>,
    endpoint: &'a str,
    id: &'a str,
    image: &'a Value,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    member_delta: Option<&'a MemberDelta>,
    op: &'a str,
    prev: &'a str,
    request_id: &'a Option<String>,
    seq: u64,
    time: &'a str,
    version_after: Option<i64>,
    version_before: Option<i64>,
}

/// Whether `serde_json` writes object members in key order (its default `BTreeMap`), so
/// that serialising a `Value` is already canonical; false if some crate in the build
/// turned on `preserve_order`.
fn maps_sort_keys() -> bool {
    static SORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SORTED.get_or_init(|| {
        let mut map = Map::new();
        map.insert("b".into(), Value::Null);
        map.insert("a".into(), Value::Null);
        let written = serde_json::to_string(&map).unwrap_or_default();
        written == r#"{"a":null,"b":null}"#
    })
}

/// Rebuilds `value` with every object's members inserted in byte order of their keys
/// (the order of `String`'s `Ord`, which is what a `BTreeMap` iterates in).
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                members
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Lowercase hex SHA-256 of `canonical` (the text exactly as stored).
pub fn hash_text(canonical: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(canonical.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// Whether `s` has the shape of a hash: 64 lowercase hex digits.
pub fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// One member of a JSON object, as spans of the text it was read from: the key between
/// its quotes (still escaped when `escaped`) and the value's raw text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// From the key's opening quote to the end of the value: the member as written.
    pub whole: std::ops::Range<usize>,
    key: std::ops::Range<usize>,
    escaped: bool,
    pub value: std::ops::Range<usize>,
}

/// The members of a JSON object in canonical form, in order, as spans of its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members(Vec<Member>);

impl Members {
    /// The raw text of member `key`'s value. `key` must need no escaping (every member
    /// name this program looks up), so comparing the raw key is comparing the name.
    pub fn raw<'t>(&self, text: &'t str, key: &str) -> Option<&'t str> {
        self.0
            .iter()
            .find(|m| !m.escaped && text.get(m.key.clone()) == Some(key))
            .and_then(|m| text.get(m.value.clone()))
    }

    /// Member `key`'s value when it is a string, unescaped.
    pub fn str<'t>(&self, text: &'t str, key: &str) -> Option<std::borrow::Cow<'t, str>> {
        json_str(self.raw(text, key)?)
    }

    /// The member names, in order (escaped ones unescaped).
    pub fn keys<'t>(&self, text: &'t str) -> Vec<std::borrow::Cow<'t, str>> {
        self.0
            .iter()
            .filter_map(|m| {
                let raw = text.get(m.key.clone())?;
                if m.escaped {
                    serde_json::from_str::<String>(&format!("\"{raw}\""))
                        .ok()
                        .map(std::borrow::Cow::Owned)
                } else {
                    Some(std::borrow::Cow::Borrowed(raw))
                }
            })
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.0.iter()
    }
}

/// A JSON string's value from its raw text (quotes included); `None` when it is not a
/// string. Borrowed when there is nothing to unescape.
pub fn json_str(raw: &str) -> Option<std::borrow::Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(raw)
            .ok()
            .map(std::borrow::Cow::Owned)
    } else {
        Some(std::borrow::Cow::Borrowed(inner))
    }
}

/// Deeper nesting than this is not taken as canonical (the caller then parses the text
/// the slow way, which has its own limit, 128): the scan needs no more stack than that.
const MAX_DEPTH: u32 = 100;

/// Checks that `text` is exactly one JSON object in canonical form (what
/// [`Record::canonical_json`] writes for any value: members in byte order of their names
/// at every depth, no duplicate names, no insignificant whitespace, strings escaped as
/// `serde_json` escapes them, numbers as it writes them) and returns its members, and
/// those of its member `nested` when that is an object.
///
/// "Canonical" means: parsing the text into a `serde_json::Value` and writing that again
/// gives back the same bytes. `None` is no verdict on the text beyond "not certainly
/// canonical": the caller then takes the slow way (parse and re-serialise), so a text this
/// scan is unsure of is never wrongly accepted, only checked more slowly.
pub fn canonical_object(text: &str, nested: Option<&str>) -> Option<(Members, Option<Members>)> {
    let mut scan = Scan {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    let mut top = Vec::new();
    let mut inner = None;
    if scan.bytes.first() != Some(&b'{') {
        return None;
    }
    scan.object(1, Some(&mut top), nested.map(|name| (name, &mut inner)))?;
    (scan.pos == scan.bytes.len()).then_some((Members(top), inner.map(Members)))
}

/// The canonical-form scanner of [`canonical_object`].
struct Scan<'t> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
}

/// Where an object's members go (only for the objects the caller asked about).
type Sink<'a> = Option<&'a mut Vec<Member>>;

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    fn value(&mut self, depth: u32, sink: Sink<'_>) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth + 1, sink, None),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.bytes[self.pos..]
            .starts_with(word)
            .then(|| self.pos += word.len())
    }

    /// An object at `self.pos` (its `{`); its members go to `sink`, and those of the
    /// value of member `nested.0`, when that is an object, to `nested.1`.
    fn object(
        &mut self,
        depth: u32,
        mut sink: Sink<'_>,
        mut nested: Option<(&str, &mut Option<Vec<Member>>)>,
    ) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        let mut previous: Option<(std::ops::Range<usize>, bool)> = None;
        loop {
            let start = self.pos;
            let escaped = self.string()?;
            let key = start + 1..self.pos - 1;
            if let Some((prev, prev_escaped)) = &previous
                && !self.in_order(prev.clone(), *prev_escaped, key.clone(), escaped)?
            {
                return None;
            }
            self.eat(b':')?;
            let value_start = self.pos;
            let wanted = nested
                .as_mut()
                .filter(|(name, _)| !escaped && self.text.get(key.clone()) == Some(*name));
            match wanted {
                Some((_, out)) if self.peek() == Some(b'{') => {
                    let mut members = Vec::new();
                    self.object(depth + 1, Some(&mut members), None)?;
                    **out = Some(members);
                }
                _ => self.value(depth, None)?,
            }
            if let Some(sink) = sink.as_mut() {
                sink.push(Member {
                    whole: start..self.pos,
                    key: key.clone(),
                    escaped,
                    value: value_start..self.pos,
                });
            }
            previous = Some((key, escaped));
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Whether key `a` sorts strictly before key `b` (byte order of the unescaped names:
    /// the order of a `BTreeMap<String, _>`, which also rules out duplicates).
    fn in_order(
        &self,
        a: std::ops::Range<usize>,
        a_escaped: bool,
        b: std::ops::Range<usize>,
        b_escaped: bool,
    ) -> Option<bool> {
        let name = |range: std::ops::Range<usize>, escaped: bool| {
            let raw = self.text.get(range)?;
            if escaped {
                serde_json::from_str::<String>(&format!("\"{raw}\""))
                    .ok()
                    .map(std::borrow::Cow::Owned)
            } else {
                Some(std::borrow::Cow::Borrowed(raw))
            }
        };
        Some(name(a, a_escaped)?.as_bytes() < name(b, b_escaped)?.as_bytes())
    }

    fn array(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            self.value(depth, None)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string escaped exactly as `serde_json` writes it: `"` and `\` escaped, control
    /// characters as `\b \t \n \f \r` or `\u00xx` (lowercase), nothing else escaped.
    /// Returns whether it holds an escape.
    fn string(&mut self) -> Option<bool> {
        self.eat(b'"')?;
        let mut escaped = false;
        loop {
            let rest = &self.bytes[self.pos..];
            // Plain bytes in bulk: everything but a quote, a backslash or a control
            // character stands for itself.
            let plain = rest
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
            self.pos += plain;
            match self.bytes[self.pos] {
                b'"' => {
                    self.pos += 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    match self.bytes.get(self.pos + 1)? {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 2,
                        b'u' => {
                            let hex = self.bytes.get(self.pos + 2..self.pos + 6)?;
                            let lower_hex = |b: &u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
                            if !(hex.starts_with(b"00") && hex.iter().all(lower_hex)) {
                                return None;
                            }
                            let code =
                                u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                            // Only control characters without a short escape are written so.
                            if code >= 0x20 || matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None;
                            }
                            self.pos += 6;
                        }
                        _ => return None,
                    }
                }
                // A raw control character: not even JSON.
                _ => return None,
            }
        }
    }

    /// A number as `serde_json` writes it: an integer in `i64`/`u64` range without
    /// leading zeros; anything else (fractions, exponents, `-0`, larger integers) is
    /// parsed and written again to compare.
    fn number(&mut self) -> Option<()> {
        let start = self.pos;
        let digits = |s: &mut Self| {
            let n = s.bytes[s.pos..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            s.pos += n;
            n
        };
        let negative = self.eat(b'-').is_some();
        let int_start = self.pos;
        if digits(self) == 0 {
            return None;
        }
        if self.bytes[int_start] == b'0' && self.pos - int_start > 1 {
            return None;
        }
        let mut integer = true;
        if self.eat(b'.').is_some() {
            integer = false;
            if digits(self) == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integer = false;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return None;
            }
        }
        let token = self.text.get(start..self.pos)?;
        let plain = integer
            && if negative {
                token != "-0" && token.parse::<i64>().is_ok()
            } else {
                token.parse::<u64>().is_ok()
            };
        if plain {
            return Some(());
        }
        let number: serde_json::Number = serde_json::from_str(token).ok()?;
        (serde_json::to_string(&number).ok()? == token).then_some(())
    }
}

/// What a replay needs of a record, read from its canonical text without building its
/// image: everything but `endpoint`, `client`, `request_id`, the image and the delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHead {
    pub seq: u64,
    pub prev: String,
    pub time: String,
    pub actor: String,
    pub op: Op,
    pub kind: String,
    pub id: String,
    pub version_before: Option<i64>,
    pub version_after: Option<i64>,
    pub member_delta: bool,
}

/// The members of a record in canonical order, without and with `member_delta`.
const RECORD_KEYS: [&str; 13] = [
    "actor",
    "client",
    "endpoint",
    "id",
    "image",
    "kind",
    "op",
    "prev",
    "request_id",
    "seq",
    "time",
    "version_after",
    "version_before",
];

impl RecordHead {
    /// The head of `record`.
    pub fn of(record: &Record) -> RecordHead {
        RecordHead {
            seq: record.seq,
            prev: record.prev.clone(),
            time: record.time.clone(),
            actor: record.actor.clone(),
            op: record.op,
            kind: record.kind.clone(),
            id: record.id.clone(),
            version_before: record.version_before,
            version_after: record.version_after,
            member_delta: record.member_delta.is_some(),
        }
    }

    /// Reads a record's text when it is certainly the canonical form of a [`Record`]:
    /// then `text == serde_json::from_str::<Record>(text)?.canonical_json()`, and the
    /// head is what that record says. Returns the head with the members of the image
    /// (when it is an object). `None`: not certainly so; parse the record instead.
    pub fn from_canonical(text: &str) -> Option<(RecordHead, Members, Option<Members>)> {
        let (members, image) = canonical_object(text, Some("image"))?;
        // Exactly the record's members: none unknown, none missing (a missing nullable
        // member parses as null but is not canonical), `member_delta` only as an object.
        let keys = members.keys(text);
        let member_delta = members.raw(text, "member_delta");
        let expected = RECORD_KEYS.iter().copied();
        let matches = match member_delta {
            None => keys.iter().map(|k| &**k).eq(expected),
            Some(raw) if raw.starts_with('{') => {
                let with = expected
                    .clone()
                    .take(6)
                    .chain(["member_delta"])
                    .chain(expected.skip(6));
                // The delta's own shape is the derive's to check.
                keys.iter().map(|k| &**k).eq(with)
                    && serde_json::from_str::<MemberDelta>(raw).is_ok()
            }
            Some(_) => false,
        };
        if !matches {
            return None;
        }
        let string = |key: &str| members.str(text, key).map(std::borrow::Cow::into_owned);
        let nullable_string = |key: &str| match members.raw(text, key)? {
            "null" => Some(()),
            _ => string(key).map(|_| ()),
        };
        let nullable_int = |key: &str| match members.raw(text, key)? {
            "null" => Some(None),
            raw => raw.parse::<i64>().ok().map(Some),
        };
        nullable_string("client")?;
        nullable_string("request_id")?;
        string("endpoint")?;
        let op = match members.raw(text, "op")? {
            "\"create\"" => Op::Create,
            "\"replace\"" => Op::Replace,
            "\"patch\"" => Op::Patch,
            "\"delete\"" => Op::Delete,
            "\"purge\"" => Op::Purge,
            _ => return None,
        };
        let head = RecordHead {
            seq: members.raw(text, "seq")?.parse().ok()?,
            prev: string("prev")?,
            time: string("time")?,
            actor: string("actor")?,
            op,
            kind: string("kind")?,
            id: string("id")?,
            version_before: nullable_int("version_before")?,
            version_after: nullable_int("version_after")?,
            member_delta: member_delta.is_some(),
        };
        Some((head, members, image))
    }
}

/// What is wrong at one point of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The stored hash is not the hash of the stored text.
    BadHash {
        seq: u64,
        stored: String,
        computed: String,
    },
    /// `record.prev` is not the hash of the record before it.
    BrokenLink {
        seq: u64,
        prev: String,
        expected: String,
    },
    /// `found > expected`: the records in between are missing.
    Gap { expected: u64, found: u64 },
    /// The record at the place of `expected` is `found`: usually `found < expected`
    /// (reordered or duplicated); `found > expected` once [`ChainCheck`] has seen the
    /// missing record turn up later (a reordering that first looked like a gap).
    OutOfOrder { expected: u64, found: u64 },
    /// The stored text is not the canonical form of the record it parses to.
    NotCanonical { seq: u64 },
    /// A derived copy (e.g. a database column) disagrees with the record.
    Mismatch { seq: u64, what: String },
}

impl Damage {
    /// The sequence number the damage is reported at: the record's own for a problem
    /// with one record, the one that was expected for a gap or a reordering.
    pub fn seq(&self) -> u64 {
        match self {
            Damage::BadHash { seq, .. }
            | Damage::BrokenLink { seq, .. }
            | Damage::NotCanonical { seq }
            | Damage::Mismatch { seq, .. } => *seq,
            Damage::Gap { expected, .. } | Damage::OutOfOrder { expected, .. } => *expected,
        }
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::BadHash {
                seq,
                stored,
                computed,
            } => {
                let (stored, computed) = abbreviate_pair(stored, computed);
                write!(
                    f,
                    "record {seq}: hash mismatch (stored {stored}, computed {computed})"
                )
            }
            Damage::BrokenLink {
                seq,
                prev,
                expected,
            } => {
                let (prev, expected) = abbreviate_pair(prev, expected);
                match seq.checked_sub(1).filter(|p| *p > 0) {
                    Some(before) => write!(
                        f,
                        "record {seq}: 'prev' does not link to record {before} \
                         (prev {prev}, expected {expected})"
                    ),
                    None => write!(
                        f,
                        "record {seq}: 'prev' does not link to the start of the chain \
                         (prev {prev}, expected {expected})"
                    ),
                }
            }
            Damage::Gap { expected, found } => {
                // `found > expected`, so `found - 1` cannot underflow; saturate anyway
                // so a hand-built value cannot panic in Display.
                let last_missing = found.saturating_sub(1);
                if last_missing <= *expected {
                    write!(
                        f,
                        "record {expected} is missing (found {found} where {expected} was expected)"
                    )
                } else {
                    write!(
                        f,
                        "records {expected}..{last_missing} are missing \
                         (found {found} where {expected} was expected)"
                    )
                }
            }
            Damage::OutOfOrder { expected, found } => {
                write!(f, "record {found} is out of order (expected {expected})")
            }
            Damage::NotCanonical { seq } => write!(
                f,
                "record {seq}: stored text is not the canonical form of the record"
            ),
            Damage::Mismatch { seq, what } => write!(f, "record {seq}: {what}"),
        }
    }
}

/// Shortens two hashes for a message, keeping enough of each to show where they differ
/// (a single flipped digit late in the hash must not print as two equal prefixes).
fn abbreviate_pair(a: &str, b: &str) -> (String, String) {
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let keep = (common + 1).max(8);
    (abbreviate(a, keep), abbreviate(b, keep))
}

/// The first `keep` characters of `s` (escaped: stored hashes are untrusted input), with
/// `…` when something was cut.
fn abbreviate(s: &str, keep: usize) -> String {
    let mut out: String = s.chars().take(keep).flat_map(char::escape_debug).collect();
    if s.chars().nth(keep).is_some() {
        out.push('…');
    }
    out
}

/// The sequence number the next record must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Nothing seen yet and no first seq given: take whatever comes.
    Any,
    Seq(u64),
    /// The last record had seq `u64::MAX`; nothing can follow it.
    Exhausted,
}

/// Feeds records in order and checks the chain: sequence, canonical text, hash, link.
///
/// The answer is "where damage starts": the first damage is kept and every later record
/// is ignored, except that a [`Damage::Gap`] is upgraded to [`Damage::OutOfOrder`] if one
/// of the records it called missing turns up afterwards (two swapped records look like a
/// gap until the second one is seen).
#[derive(Debug, Clone)]
pub struct ChainCheck {
    next_seq: Next,
    prev: String,
    last_intact: Option<u64>,
    damage: Option<Damage>,
}

impl ChainCheck {
    /// `first_seq`: the seq the first record must have (`None`: take the first seen);
    /// `prev`: the hash the first record's `prev` must equal ([`ZERO_HASH`] for a chain
    /// that starts at record 1, the kept base hash for one whose head was archived).
    pub fn new(first_seq: Option<u64>, prev: &str) -> Self {
        ChainCheck {
            next_seq: first_seq.map_or(Next::Any, Next::Seq),
            prev: prev.to_owned(),
            last_intact: None,
            damage: None,
        }
    }

    /// Checks one record, given its stored hash and the exact stored text that was hashed
    /// (for the database: the `record` column; for an export: the record as it stands in
    /// its line). Checks, in order: seq, that `text` is the canonical form of `record`,
    /// the hash, the link.
    ///
    /// Returns the damage as first seen. After damage the checker stays failed: further
    /// feeds return `Ok(())` and only watch for a gap turning out to be a reordering
    /// (see [`damage`](Self::damage)).
    pub fn feed(&mut self, stored_hash: &str, text: &str, record: &Record) -> Result<(), Damage> {
        self.feed_parts(stored_hash, text, record.seq, &record.prev, Some(record))
    }

    /// Checks one record as this program stored it: `text` is taken to be canonical
    /// (only the hash, the link and the sequence are checked), which is what a text this
    /// program wrote is, and a text changed since no longer matches its stored hash. For
    /// the startup check and replays, where the full check would re-serialise every
    /// record; `journal verify` uses [`feed`](Self::feed).
    pub fn feed_stored(
        &mut self,
        stored_hash: &str,
        text: &str,
        seq: u64,
        prev: &str,
    ) -> Result<(), Damage> {
        self.feed_parts(stored_hash, text, seq, prev, None)
    }

    fn feed_parts(
        &mut self,
        stored_hash: &str,
        text: &str,
        seq: u64,
        prev: &str,
        record: Option<&Record>,
    ) -> Result<(), Damage> {
        if let Some(damage) = &mut self.damage {
            if let Damage::Gap { expected, found } = *damage
                && (expected..found).contains(&seq)
            {
                *damage = Damage::OutOfOrder { expected, found };
            }
            return Ok(());
        }
        match self.check_parts(stored_hash, text, seq, prev, record) {
            Ok(()) => {
                self.last_intact = Some(seq);
                self.next_seq = seq.checked_add(1).map_or(Next::Exhausted, Next::Seq);
                // The hash checked out, so the stored one is the computed one.
                self.prev = stored_hash.to_owned();
                Ok(())
            }
            Err(damage) => {
                self.damage = Some(damage.clone());
                Err(damage)
            }
        }
    }

    /// `record`: also check that `text` is its canonical form.
    fn check_parts(
        &self,
        stored_hash: &str,
        text: &str,
        found: u64,
        prev: &str,
        record: Option<&Record>,
    ) -> Result<(), Damage> {
        match self.next_seq {
            Next::Any => {}
            Next::Seq(expected) if found > expected => {
                return Err(Damage::Gap { expected, found });
            }
            Next::Seq(expected) if found < expected => {
                return Err(Damage::OutOfOrder { expected, found });
            }
            Next::Seq(_) => {}
            // Nothing can follow u64::MAX; the closest true statement is "out of order".
            Next::Exhausted => {
                return Err(Damage::OutOfOrder {
                    expected: u64::MAX,
                    found,
                });
            }
        }
        // Canonical before hash: a text that hashes right but is not canonical was not
        // written by us, and the hash would not survive a re-export.
        if record.is_some_and(|r| text != r.canonical_json()) {
            return Err(Damage::NotCanonical { seq: found });
        }
        let computed = hash_text(text);
        if computed != stored_hash {
            return Err(Damage::BadHash {
                seq: found,
                stored: stored_hash.to_owned(),
                computed,
            });
        }
        if prev != self.prev {
            return Err(Damage::BrokenLink {
                seq: found,
                prev: prev.to_owned(),
                expected: self.prev.clone(),
            });
        }
        Ok(())
    }

    /// Seq of the last record that checked out.
    pub fn last_intact(&self) -> Option<u64> {
        self.last_intact
    }

    /// The hash the next record must link to.
    pub fn next_prev(&self) -> &str {
        &self.prev
    }

    pub fn damaged(&self) -> bool {
        self.damage.is_some()
    }

    /// The first damage, classified with everything fed so far (a gap whose missing
    /// record showed up later reads as a reordering).
    pub fn damage(&self) -> Option<&Damage> {
        self.damage.as_ref()
    }
}

/// Realistic chains for the tests of this module and its siblings.
#[cfg(test)]
pub(crate) mod fixtures {
    use serde_json::{Value, json};

    use super::{Op, Record, ZERO_HASH};

    /// (userName, givenName, familyName): unicode, quotes, backslashes, control
    /// characters and a line separator, so escaping is exercised everywhere.
    const PEOPLE: &[(&str, &str, &str)] = &[
        ("zoe.angstrom@example.com", "Zoë", "Ångström"),
        ("yamada.taro@example.jp", "太郎", "山田"),
        ("sean.obrien@example.ie", "Seán", "O'Brien \"Junior\""),
        ("back\\slash@example.com", "Tab\tNew\nLine", "Back\\slash"),
        (
            "emoji@example.com",
            "🙂 Smile",
            "Ctrl\u{1}Char\u{1b}[0m\u{7f}",
        ),
        ("script@example.com", "</script>", "Sep\u{2028}arator"),
    ];

    fn user_image(seed: u64, i: u64, version: i64, active: bool) -> Value {
        let person =
            PEOPLE[usize::try_from(seed.wrapping_add(i) % PEOPLE.len() as u64).unwrap_or(0)];
        let (user_name, given, family) = person;
        json!({
            "schemas": [
                "urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
            ],
            "id": resource_id(i),
            "externalId": format!("ext-{seed}-{i}"),
            "userName": user_name,
            "name": {
                "givenName": given,
                "familyName": family,
                "formatted": format!("{given} {family}")
            },
            "emails": [{"value": user_name, "type": "work", "primary": true}],
            "active": active,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": format!("{:06}", seed.wrapping_mul(31).wrapping_add(i) % 1_000_000),
                "costCenter": 4130.5,
                "manager": {"value": resource_id(i.wrapping_add(1))}
            },
            "meta": {
                "resourceType": "User",
                "created": "2025-03-01T08:00:00.000Z",
                "lastModified": time(i),
                "version": format!("W/\"{version}\"")
            }
        })
    }

    fn group_image(seed: u64, i: u64, version: i64) -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": resource_id(i),
            "displayName": format!("Ingénieurs \"R&D\" #{seed}"),
            "members": [
                {"value": resource_id(i.wrapping_add(1)), "display": "Zoë Ångström"},
                {"value": resource_id(i.wrapping_add(2)), "display": "山田 太郎"}
            ],
            "meta": {
                "resourceType": "Group",
                "created": "2025-03-01T08:00:00.000Z",
                "lastModified": time(i),
                "version": format!("W/\"{version}\"")
            }
        })
    }

    fn resource_id(i: u64) -> String {
        format!("2819c223-7f76-453a-919d-{:012x}", i % 5)
    }

    fn time(i: u64) -> String {
        format!(
            "2025-03-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            1 + i / 1000 % 28,
            i / 60 % 24,
            i % 60,
            i.wrapping_mul(7) % 60,
            i.wrapping_mul(37) % 1000
        )
    }

    /// Record `seq` of a varied but deterministic history (`seed` varies the content).
    pub(crate) fn record(seed: u64, seq: u64, prev: &str) -> Record {
        let version = i64::try_from(seq % 1000).unwrap_or(0);
        let (op, kind, before, after, image) = match seq % 7 {
            0 => (
                Op::Create,
                "User",
                None,
                Some(1),
                user_image(seed, seq, 1, true),
            ),
            1 => (
                Op::Replace,
                "User",
                Some(version),
                Some(version + 1),
                user_image(seed, seq, version + 1, true),
            ),
            2 => (
                Op::Patch,
                "User",
                Some(version),
                Some(version + 1),
                user_image(seed, seq, version + 1, false),
            ),
            3 => (
                Op::Create,
                "Group",
                None,
                Some(1),
                group_image(seed, seq, 1),
            ),
            4 => (
                Op::Patch,
                "Group",
                Some(version),
                Some(version + 1),
                group_image(seed, seq, version + 1),
            ),
            5 => (
                Op::Delete,
                "User",
                Some(version),
                None,
                user_image(seed, seq, version, false),
            ),
            _ => (
                Op::Purge,
                "Group",
                Some(version),
                None,
                group_image(seed, seq, version),
            ),
        };
        let from_cli = seq.is_multiple_of(5);
        Record {
            seq,
            prev: prev.to_owned(),
            time: time(seq),
            endpoint: if seq.is_multiple_of(2) {
                "default"
            } else {
                "tenant-ø"
            }
            .to_owned(),
            actor: if from_cli { "cli" } else { "entra-prod" }.to_owned(),
            client: (!from_cli).then(|| format!("10.0.{}.{}", seq % 7, seq % 250)),
            request_id: (!from_cli).then(|| format!("req-{seed:08x}-{seq:06}")),
            op,
            kind: kind.to_owned(),
            id: resource_id(seq),
            version_before: before,
            version_after: after,
            image,
            member_delta: None,
        }
    }

    /// Records `first..first+n`, chained from `prev`, with their hashes.
    pub(crate) fn chain_from(seed: u64, first: u64, prev: &str, n: u64) -> Vec<(String, Record)> {
        let mut prev = prev.to_owned();
        let mut out = Vec::new();
        for seq in (0..n).map(|k| first.wrapping_add(k)) {
            let record = record(seed, seq, &prev);
            let hash = record.hash();
            prev = hash.clone();
            out.push((hash, record));
        }
        out
    }

    /// Records `1..=n` from the start of the chain.
    pub(crate) fn chain(n: u64) -> Vec<(String, Record)> {
        chain_from(7, 1, ZERO_HASH, n)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::fixtures::{chain, chain_from};
    use super::*;

    /// What the database stores for each record: (hash, canonical text, record).
    fn stored(chain: &[(String, Record)]) -> Vec<(String, String, Record)> {
        chain
            .iter()
            .map(|(h, r)| (h.clone(), r.canonical_json(), r.clone()))
            .collect()
    }

    /// Feeds every row; returns the first damage `feed` reported.
    fn run(check: &mut ChainCheck, rows: &[(String, String, Record)]) -> Option<Damage> {
        let mut first = None;
        for (hash, text, _) in rows {
            // The database path: parse the stored text, as a reader of the table would.
            let record: Record = serde_json::from_str(text).expect("fixture text parses");
            if let Err(d) = check.feed(hash, text, &record) {
                first.get_or_insert(d);
            }
        }
        first
    }

    #[test]
    fn canonical_json_is_stable_across_parse_and_serialize() {
        for (_, record) in chain(20) {
            let text = record.canonical_json();
            let reparsed: Record = serde_json::from_str(&text).expect("canonical text parses");
            assert_eq!(reparsed, record);
            assert_eq!(reparsed.canonical_json(), text);
            // Through an untyped value too, as any other JSON tool would read it.
            let value: Value = serde_json::from_str(&text).expect("canonical text parses");
            assert_eq!(value.to_string(), text);
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_and_writes_null_members() {
        let mut record = chain(5).remove(4).1; // seq 5: from the CLI, so no client
        record.image = json!({"zeta": {"b": 1, "a": [{"y": null, "x": "é"}]}, "alpha": true});
        let text = record.canonical_json();
        assert!(
            text.starts_with(r#"{"actor":"cli","client":null,"endpoint":"#),
            "{text}"
        );
        assert!(
            text.contains(r#""image":{"alpha":true,"zeta":{"a":[{"x":"é","y":null}],"b":1}}"#),
            "{text}"
        );
        assert!(text.contains(r#""request_id":null,"seq":5,"#), "{text}");
        assert!(!text.contains(' '), "no insignificant whitespace: {text}");
    }

    #[test]
    fn canonical_json_is_what_serde_writes_for_the_record_with_sorted_keys() {
        let mut with_delta = chain(3).remove(2).1;
        with_delta.member_delta = Some(MemberDelta {
            added: vec![json!({"value": "u1", "type": "User", "display": "Ü"})],
            removed: vec!["u2".into()],
        });
        for record in chain(14).into_iter().map(|(_, r)| r).chain([with_delta]) {
            let derived = serde_json::to_value(&record).expect("record serialises");
            assert_eq!(canonical(&derived).to_string(), record.canonical_json());
        }
    }

    #[test]
    fn canonical_json_escapes_strings_exactly_as_serde_json_does() {
        let mut record = chain(1).remove(0).1;
        record.actor = "quote\" backslash\\ nl\n tab\t ctl\u{1} del\u{7f} ls\u{2028} 🙂".into();
        let text = record.canonical_json();
        assert!(
            text.contains(r#""actor":"quote\" backslash\\ nl\n tab\t ctl\u0001 del"#),
            "{text}"
        );
        let reparsed: Record = serde_json::from_str(&text).expect("parses");
        assert_eq!(reparsed.actor, record.actor);
    }

    #[test]
    fn hash_is_the_lowercase_hex_sha256_of_the_text() {
        assert_eq!(
            hash_text(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hash_text("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let record = chain(1).remove(0).1;
        assert_eq!(record.hash(), hash_text(&record.canonical_json()));
        assert!(is_hash(&record.hash()));
        assert!(is_hash(ZERO_HASH));
        assert!(!is_hash(&record.hash().to_uppercase()));
    }

    #[test]
    fn hash_changes_when_any_field_changes() {
        let base = chain(3).remove(2).1;
        /// Changes one member of a record.
        type Edit = fn(&mut Record);
        let edits: [(&str, Edit); 13] = [
            ("seq", |r| r.seq += 1),
            ("prev", |r| r.prev = ZERO_HASH.into()),
            ("time", |r| r.time.push('0')),
            ("endpoint", |r| r.endpoint.push('x')),
            ("actor", |r| r.actor = "okta".into()),
            ("client", |r| r.client = None),
            ("request_id", |r| r.request_id = Some(String::new())),
            ("op", |r| r.op = Op::Replace),
            ("kind", |r| r.kind = "User".into()),
            ("id", |r| r.id.push('0')),
            ("version_before", |r| r.version_before = Some(0)),
            ("version_after", |r| r.version_after = None),
            ("image", |r| r.image["displayName"] = json!("Ingenieurs")),
        ];
        let mut seen = vec![base.hash()];
        for (field, edit) in edits {
            let mut record = base.clone();
            edit(&mut record);
            assert_ne!(record, base, "the edit of {field} changes the record");
            let hash = record.hash();
            assert!(
                !seen.contains(&hash),
                "editing {field} must change the hash"
            );
            seen.push(hash);
        }
    }

    #[test]
    fn a_record_with_an_unknown_or_missing_member_is_not_a_record_text() {
        let text = chain(1).remove(0).1.canonical_json();
        let extra = text.replacen('{', r#"{"admin":true,"#, 1);
        assert!(serde_json::from_str::<Record>(&extra).is_err());
        // A missing nullable member parses (serde fills in None) but the text is not
        // canonical, so the chain check still refuses it.
        let mut value: Value = serde_json::from_str(&text).expect("parses");
        value.as_object_mut().map(|m| m.remove("request_id"));
        let missing = value.to_string();
        let record: Record = serde_json::from_str(&missing).expect("parses with None");
        assert_eq!(record.request_id, None);
        let mut check = ChainCheck::new(Some(1), ZERO_HASH);
        assert_eq!(
            check.feed(&hash_text(&missing), &missing, &record),
            Err(Damage::NotCanonical { seq: 1 })
        );
    }

    #[test]
    fn chain_check_accepts_an_intact_chain_and_reports_its_last_seq() {
        let rows = stored(&chain(20));
        let mut check = ChainCheck::new(Some(1), ZERO_HASH);
        assert_eq!(check.last_intact(), None);
        assert_eq!(run(&mut check, &rows), None);
        assert!(!check.damaged());
        assert_eq!(check.last_intact(), Some(20));
        assert_eq!(check.next_prev(), rows[19].0);
    }

    #[test]
    fn chain_check_reports_an_edited_record_as_a_hash_mismatch() {
        let mut rows = stored(&chain(20));
        rows[11].1 = rows[11].1.replacen("entra-prod", "entra-prox", 1);
        let mut check = ChainCheck::new(Some(1), ZERO_HASH);
        let damage = run(&mut check, &rows).expect("damage is found");
        assert!(
            matches!(&damage, Damage::BadHash { seq: 12, stored, computed }
                if *stored == rows[11].0 && *computed == hash_text(&rows[11].1)),
            "{damage:?}"
        );
        assert_eq!(check.last_intact(), Some(11));
    }

    #[test]
    fn chain_check_reports_a_text_that_is_not_canonical_even_if_it_means_the_same_record() {
        let mut rows = stored(&chain(20));
        // Same record, re-hashed, but with a space: only the canonical check can see it.
        rows[6].1 = rows[6].1.replacen(r#""seq":7,"#, r#""seq": 7,"#, 1);
        rows[6].0 = hash_text(&rows[6].1);
        let mut check = ChainCheck::new(Some(1), ZERO_HASH);
        assert_eq!(
            run(&mut check, &rows),
            Some(Damage::NotCanonical { seq: 7 })
        );
        assert_eq!(check.last_intact(), Some(6));
    }

    #[test]
    fn chain_check_reports_a_deleted_record_as_a_gap() {
        let mut rows = stored(&chain(20));
        rows.remove(8); // seq 9
        let mut check = ChainCheck::new(Some(1), ZERO_HASH);
        let expected = Damage::Gap {
            expected: 9,
            found: 10,
        };
        assert_eq!(run(&mut check, &rows), Some(expected.clone()));
        assert_eq!(check.damage(), Some(&expected));
        assert_eq!(check.last_intact(), Some(8));
    }

    #[test]
    fn chain_check_reports_two_swapped_records_as_out_of_order_at_the_first_swapped_seq() {
        let mut rows = stored(&chain(20));
        rows.swap(7, 8); // seq 8 and 9
        let mut check = ChainCheck::new(Some(1), ZERO_HASH);
        // At the time it is seen, 9 in the place of 8 looks like a gap...
        assert_eq!(
            run(&mut check, &rows),
            Some(Damage::Gap {
                expected: 8,
                found: 9
            })
        );
        // ...until 8 turns up after it.
        assert_eq!(
            check.damage(),
            Some(&Damage::OutOfOrder {
                expected: 8,
                found: 9
            })
        );
        assert_eq!(check.damage().map(Damage::seq), Some(8));
        assert_eq!(check.last_intact(), Some(7));
    }

    #[test]
    fn chain_check_reports_a_repeated_record_as_out_of_order() {
        let mut rows = stored(&chain(20));
        rows.insert(5, rows[4].clone()); // seq 5 twice
        let mut check = ChainCheck::new(Some(1), ZERO_HASH);
        assert_eq!(
            run(&mut check, &rows),
            Some(Damage::OutOfOrder {
                expected: 6,
                found: 5
            })
        );
        assert_eq!(check.last_intact(), Some(5));
    }

    #[test]
    fn chain_check_reports_an_edit_with_a_recomputed_hash_as_a_broken_link_at_the_next_record() {
        let mut rows = stored(&chain(20));
        rows[11].2.actor = "intruder".into();
        rows[11].1 = rows[11].2.canonical_json();
        rows[11].0 = rows[11].2.hash();
        let mut check = ChainCheck::new(Some(1), ZERO_HASH);
        let damage = run(&mut check, &rows).expect("damage is found");
        assert_eq!(
            damage,
            Damage::BrokenLink {
                seq: 13,
                prev: rows[12].2.prev.clone(),
                expected: rows[11].0.clone(),
            }
        );
        // The edited record itself checks out: the chain is intact up to it.
        assert_eq!(check.last_intact(), Some(12));
    }

    #[test]
    fn chain_check_stays_failed_after_the_first_damage() {
        let mut rows = stored(&chain(10));
        rows[2].0 = ZERO_HASH.into();
        let mut check = ChainCheck::new(Some(1), ZERO_HASH);
        assert!(matches!(
            run(&mut check, &rows),
            Some(Damage::BadHash { seq: 3, .. })
        ));
        assert!(check.damaged());
        assert_eq!(check.last_intact(), Some(2));
        assert_eq!(check.next_prev(), rows[1].0);
        // Even an intact record fed later changes nothing.
        let (hash, text, record) = &rows[3];
        assert_eq!(check.feed(hash, text, record), Ok(()));
        assert_eq!(check.last_intact(), Some(2));
    }

    #[test]
    fn chain_check_takes_the_first_seq_it_sees_when_none_is_given() {
        let rows = stored(&chain(20)[10..]);
        let mut check = ChainCheck::new(None, &rows[0].2.prev);
        assert_eq!(run(&mut check, &rows), None);
        assert_eq!(check.last_intact(), Some(20));
    }

    #[test]
    fn chain_check_of_a_chain_whose_head_was_archived_links_to_the_kept_base_hash() {
        let full = chain(20);
        let rows = stored(&full[10..]);
        let base = &full[9].0;
        let mut check = ChainCheck::new(Some(11), base);
        assert_eq!(run(&mut check, &rows), None);

        let mut check = ChainCheck::new(Some(11), ZERO_HASH);
        assert!(matches!(
            run(&mut check, &rows),
            Some(Damage::BrokenLink { seq: 11, .. })
        ));
        assert_eq!(check.last_intact(), None);

        let mut check = ChainCheck::new(Some(10), base);
        assert_eq!(
            run(&mut check, &rows),
            Some(Damage::Gap {
                expected: 10,
                found: 11
            })
        );
    }

    #[test]
    fn chain_check_never_panics_after_the_last_possible_seq() {
        let rows = stored(&chain_from(3, u64::MAX - 1, ZERO_HASH, 2));
        let mut check = ChainCheck::new(Some(u64::MAX - 1), ZERO_HASH);
        assert_eq!(run(&mut check, &rows), None);
        let (hash, text, record) = &rows[1];
        assert!(matches!(
            check.feed(hash, text, record),
            Err(Damage::OutOfOrder { .. })
        ));
    }

    #[test]
    fn damage_descriptions_name_the_record_and_the_problem() {
        let stored = format!("3fa4{}", "0".repeat(60));
        let computed = format!("9bc1{}", "0".repeat(60));
        let cases = [
            (
                Damage::BadHash {
                    seq: 12,
                    stored: stored.clone(),
                    computed: computed.clone(),
                },
                "record 12: hash mismatch (stored 3fa40000…, computed 9bc10000…)",
            ),
            (
                Damage::BrokenLink {
                    seq: 13,
                    prev: stored.clone(),
                    expected: computed.clone(),
                },
                "record 13: 'prev' does not link to record 12 (prev 3fa40000…, expected 9bc10000…)",
            ),
            (
                Damage::BrokenLink {
                    seq: 1,
                    prev: stored,
                    expected: ZERO_HASH.into(),
                },
                "record 1: 'prev' does not link to the start of the chain \
                 (prev 3fa40000…, expected 00000000…)",
            ),
            (
                Damage::Gap {
                    expected: 8,
                    found: 11,
                },
                "records 8..10 are missing (found 11 where 8 was expected)",
            ),
            (
                Damage::Gap {
                    expected: 8,
                    found: 9,
                },
                "record 8 is missing (found 9 where 8 was expected)",
            ),
            (
                Damage::OutOfOrder {
                    expected: 9,
                    found: 7,
                },
                "record 7 is out of order (expected 9)",
            ),
            (
                Damage::NotCanonical { seq: 4 },
                "record 4: stored text is not the canonical form of the record",
            ),
            (
                Damage::Mismatch {
                    seq: 5,
                    what: "column 'actor' is 'okta' but the record says 'entra-prod'".into(),
                },
                "record 5: column 'actor' is 'okta' but the record says 'entra-prod'",
            ),
        ];
        for (damage, text) in cases {
            assert_eq!(damage.to_string(), text);
        }
    }

    #[test]
    fn damage_descriptions_show_hashes_up_to_where_they_differ() {
        let a = "a".repeat(64);
        let mut b = "a".repeat(63);
        b.push('b');
        let text = Damage::BadHash {
            seq: 2,
            stored: a.clone(),
            computed: b.clone(),
        }
        .to_string();
        assert_eq!(
            text,
            format!("record 2: hash mismatch (stored {a}, computed {b})")
        );
        // Hostile stored hashes are escaped and cut short.
        let hostile = format!("\n\u{1b}[31m{}", "x".repeat(10_000));
        let text = Damage::BadHash {
            seq: 3,
            stored: hostile,
            computed: b,
        }
        .to_string();
        assert!(text.starts_with(r"record 3: hash mismatch (stored \n\u{1b}[31mxx…,"));
        assert!(text.len() < 120, "{text}");
    }

    #[test]
    fn a_canonical_record_text_is_read_without_parsing_and_gives_the_records_head() {
        let mut with_delta = chain(3).remove(2).1;
        with_delta.member_delta = Some(MemberDelta {
            added: vec![json!({"value": "u1", "type": "User", "display": "Ü\u{1}"})],
            removed: vec!["u2".into()],
        });
        for record in chain(30).into_iter().map(|(_, r)| r).chain([with_delta]) {
            let text = record.canonical_json();
            let (head, members, image) = RecordHead::from_canonical(&text).expect("canonical");
            assert_eq!(head, RecordHead::of(&record));
            assert_eq!(
                members.raw(&text, "seq"),
                Some(record.seq.to_string().as_str())
            );
            let image = image.expect("the image is an object");
            assert_eq!(
                image.str(&text, "id").as_deref(),
                record.image.get("id").and_then(Value::as_str)
            );
        }
    }

    #[test]
    fn a_text_that_is_not_exactly_canonical_is_not_read_as_canonical() {
        let text = chain(6).remove(5).1.canonical_json();
        assert!(RecordHead::from_canonical(&text).is_some());
        let cases = [
            text.replacen("\"seq\":6", "\"seq\": 6", 1),
            text.replacen("\"seq\":6", "\"seq\":6.0", 1),
            text.replacen("\"seq\":6", "\"seq\":06", 1),
            text.replacen("\"seq\":6", "\"seq\":6e0", 1),
            text.replacen("\"seq\":6", "\"seq\":\"6\"", 1),
            text.replacen("\"version_after\":null", "\"version_after\":-0", 1),
            text.replacen("\"actor\":", "\"zz\":1,\"actor\":", 1),
            text.replacen("{\"actor\"", "{\"admin\":true,\"actor\"", 1),
            text.replacen("\"actor\":\"entra-prod\",", "", 1),
            text.replacen("\"request_id\":", "\"request_id\" :", 1),
            text.replacen("\"op\":", "\"member_delta\":null,\"op\":", 1),
            text.replacen("\"op\":\"purge\"", "\"op\":\"PURGE\"", 1),
            text.replacen(
                "\"displayName\":",
                "\"displayName\":\"x\",\"displayName\":",
                1,
            ),
            text.replacen("Ing", "Ing\\/", 1),
            text.replacen("Ing", "\\u0049ng", 1),
            text.replacen("Ing", "Ing\\u001F", 1),
            text.replacen("Ing", "Ing\u{1}", 1),
            text.replacen("Ing", "Ing\\u0009", 1),
            format!("{text} "),
            format!("{text}{{}}"),
            text[..text.len() - 1].to_string(),
        ];
        for case in cases {
            assert_ne!(case, text, "the edit applies");
            assert!(RecordHead::from_canonical(&case).is_none(), "{case}");
        }
        // Duplicate-free, sorted, at every depth: a nested object out of order too.
        let unsorted = text.replacen(
            "\"created\":\"2025-03-01T08:00:00.000Z\",\"lastModified\"",
            "\"lastModified\":\"x\",\"created\":\"2025-03-01T08:00:00.000Z\",\"lastModified\"",
            1,
        );
        assert_ne!(unsorted, text);
        assert!(RecordHead::from_canonical(&unsorted).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever one byte of a canonical record becomes, a text read as canonical is
        /// one that parses to a record whose canonical form is that very text.
        #[test]
        fn a_text_read_as_canonical_is_always_the_canonical_form_of_its_record(
            seed in any::<u64>(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let record = chain_from(seed, 1 + seed % 50, ZERO_HASH, 1).remove(0).1;
            let mut bytes = record.canonical_json().into_bytes();
            let pos = at.index(bytes.len());
            bytes[pos] = byte;
            if let Ok(text) = String::from_utf8(bytes)
                && let Some((head, _, _)) = RecordHead::from_canonical(&text)
            {
                let parsed: Record = serde_json::from_str(&text).expect("a canonical text parses");
                prop_assert_eq!(parsed.canonical_json(), text);
                prop_assert_eq!(head, RecordHead::of(&parsed));
            }
        }
    }
}
