//! Where things are in the YAML text: the bridge between paths and line:column.
//!
//! Validation talks in YAML paths (`auth.tokens[0].secret`), people fix files by line and
//! column, and serde errors arrive with a position but no path. Before the typed parse we
//! read the document once more into a bare tree of [`Spanned`] nodes and flatten it into
//! a [`NodeIndex`], which answers both questions: where is this path, and which path is at
//! this position. The same module turns `serde_saphyr` errors into [`Problem`]s with our
//! own wording (did-you-mean for unknown keys, no developer hints about parser options).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, MessageFormatter, Spanned, UserMessageFormatter};

use super::Problem;

/// A 1-based line:column position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };

    /// `None` for serde-saphyr's "unknown" location (line 0).
    fn of(location: Location) -> Option<Pos> {
        let line = usize::try_from(location.line()).ok()?;
        let column = usize::try_from(location.column()).ok()?;
        (line > 0).then_some(Pos { line, column })
    }
}

/// A YAML node reduced to its shape; the index only needs positions, not values.
enum Node {
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
    Null,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// One node of the document, flattened.
struct Entry {
    path: String,
    /// The mapping key this node is the value of (none for list items and the root).
    key: Option<(Pos, String)>,
    value: Pos,
    is_scalar: bool,
}

/// Every node of a parsed document with its YAML path, in document order.
pub(super) struct NodeIndex {
    entries: Vec<Entry>,
}

impl NodeIndex {
    /// Reads `text` as plain YAML. Fails only on YAML syntax errors, duplicate keys and the
    /// like, which is why the error is already a finished [`Problem`].
    pub fn build(text: &str) -> Result<NodeIndex, Problem> {
        let root: Spanned<Node> =
            serde_saphyr::from_str(text).map_err(|err| yaml_problem(&err, None))?;
        let mut index = NodeIndex {
            entries: Vec::new(),
        };
        index.add(String::new(), None, root);
        Ok(index)
    }

    fn add(&mut self, path: String, key: Option<(Pos, String)>, node: Spanned<Node>) {
        let value = Pos::of(node.referenced).unwrap_or(Pos::START);
        let is_scalar = matches!(node.value, Node::Scalar);
        self.entries.push(Entry {
            path: path.clone(),
            key,
            value,
            is_scalar,
        });
        match node.value {
            Node::Map(entries) => {
                for (k, v) in entries {
                    let child = if path.is_empty() {
                        k.value.clone()
                    } else {
                        format!("{path}.{}", k.value)
                    };
                    let key_pos = Pos::of(k.referenced).unwrap_or(value);
                    self.add(child, Some((key_pos, k.value)), v);
                }
            }
            Node::Seq(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    self.add(format!("{path}[{i}]"), None, item);
                }
            }
            Node::Scalar | Node::Null => {}
        }
    }

    /// Whether the file spells out `path` (as opposed to it taking its default).
    pub fn contains(&self, path: &str) -> bool {
        self.entries.iter().any(|e| e.path == path)
    }

    /// Where a problem about `path` should point. A scalar is pointed at directly; a
    /// mapping, list or empty value at its key, because that is the line a reader looks
    /// for (`secret:`, not the `env:` below it). A path that is not in the file (a
    /// default, or a missing key) points at its nearest spelled-out ancestor.
    pub fn position(&self, path: &str) -> Pos {
        let mut path = path;
        loop {
            if path.is_empty() {
                return Pos::START;
            }
            if let Some(entry) = self.entries.iter().find(|e| e.path == path) {
                return match (&entry.key, entry.is_scalar) {
                    (Some((key, _)), false) => *key,
                    _ => entry.value,
                };
            }
            path = parent(path);
        }
    }

    /// The path of the node a serde error at `pos` is about: the value starting there if
    /// any (the innermost one), else the key there, else the last node before it.
    fn path_at(&self, pos: Pos) -> &str {
        let by_value = self.entries.iter().rev().find(|e| e.value == pos);
        let by_key = || {
            self.entries
                .iter()
                .find(|e| e.key.as_ref().is_some_and(|(k, _)| *k == pos))
        };
        let before = || {
            self.entries.iter().rev().find(|e| {
                let start = e.key.as_ref().map_or(e.value, |(k, _)| *k);
                start <= pos
            })
        };
        by_value
            .or_else(by_key)
            .or_else(before)
            .map_or("", |e| e.path.as_str())
    }

    /// The mapping holding the key `field` written at `pos`.
    fn parent_of_key(&self, pos: Pos, field: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.key.as_ref().is_some_and(|(k, t)| *k == pos && t == field))
            .map(|e| parent(&e.path))
    }
}

/// `a.b[0].c` → `a.b[0]` → `a.b` → `a` → ``.
pub(super) fn parent(path: &str) -> &str {
    if path.ends_with(']')
        && let Some(i) = path.rfind('[')
    {
        return &path[..i];
    }
    path.rfind('.').map_or("", |i| &path[..i])
}

/// A `serde_saphyr` error as a [`Problem`]. Without an index the error came from reading
/// the bare tree, i.e. the text is not valid YAML at all.
pub(super) fn yaml_problem(err: &serde_saphyr::Error, index: Option<&NodeIndex>) -> Problem {
    let err = original(err);
    let pos = err.location().and_then(Pos::of).unwrap_or(Pos::START);
    let path_at = |pos| index.map_or(String::new(), |i| i.path_at(pos).to_owned());
    let (path, message) = match err {
        serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } => {
            let path = index
                .and_then(|i| i.parent_of_key(pos, field))
                .map_or_else(|| parent(&path_at(pos)).to_owned(), str::to_owned);
            (path, unknown_field(field, expected))
        }
        serde_saphyr::Error::DuplicateMappingKey { key, .. } => {
            let message = match key {
                Some(key) => format!("duplicate key '{key}'; each key may appear only once"),
                None => "duplicate key; each key may appear only once".to_owned(),
            };
            (String::new(), message)
        }
        serde_saphyr::Error::Unexpected { expected, .. } if index.is_some() => {
            let message = match *expected {
                "mapping start" => "expected a mapping of 'key: value' entries".to_owned(),
                "sequence start" => "expected a list ('- ' items)".to_owned(),
                "string scalar" | "scalar" => {
                    "expected a single value, not a list or mapping".to_owned()
                }
                other => format!("expected {other}"),
            };
            (path_at(pos), message)
        }
        serde_saphyr::Error::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => (
            path_at(pos),
            format!("expected {expected}, found {unexpected}"),
        ),
        other => {
            let text = plain(&UserMessageFormatter.format_message(other));
            match index {
                Some(_) => (path_at(pos), text),
                None => (String::new(), format!("invalid yaml: {text}")),
            }
        }
    };
    Problem {
        path,
        line: pos.line,
        column: pos.column,
        message,
    }
}

/// Strips serde-saphyr's wrappers down to the error that says what is wrong.
fn original(err: &serde_saphyr::Error) -> &serde_saphyr::Error {
    match err {
        serde_saphyr::Error::WithSnippet { error, .. }
        | serde_saphyr::Error::AliasError { error, .. } => original(error),
        other => other,
    }
}

/// Formatter output is not sanitized (its docs say so); keep a problem on one line.
fn plain(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn unknown_field(field: &str, expected: &[&'static str]) -> String {
    match did_you_mean(field, expected.iter().copied()) {
        Some(near) => format!("unknown field '{field}' (did you mean '{near}'?)"),
        None if expected.is_empty() => format!("unknown field '{field}'"),
        None => format!(
            "unknown field '{field}' (expected one of: {})",
            expected.join(", ")
        ),
    }
}

pub(super) use crate::suggest::did_you_mean;
