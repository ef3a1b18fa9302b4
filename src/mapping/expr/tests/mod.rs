//! The expression language's specification, as tests. Helpers: a fixed schema standing in
//! for the mapping layer's resolver, and a map of values standing in for a SCIM resource.

mod dates;
mod errors;
mod functions;
mod max_chars;
mod props;
mod syntax;

use std::collections::HashMap;

use super::{CompileError, Expr, MAX_DEPTH, MAX_EXPR_LEN, Resolver, Source, Type, Value};

/// The attributes tests may reference, with the types the mapping layer would declare.
const SCHEMA: &[(&str, Type)] = &[
    ("displayName", Type::Str),
    ("givenName", Type::Str),
    ("familyName", Type::Str),
    ("name.givenName", Type::Str),
    ("name.familyName", Type::Str),
    ("userName", Type::Str),
    ("department", Type::Str),
    ("phone", Type::Str),
    ("hireDate", Type::Str),
    ("active", Type::Bool),
    ("loginCount", Type::Int),
    ("emails", Type::List),
    ("extra", Type::Any),
    (
        "emails[type eq \"work\" and primary eq true].value",
        Type::Str,
    ),
    ("phoneNumbers[type eq \"mobile\"].value", Type::Str),
    (
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        Type::Str,
    ),
];

struct Schema;

impl Resolver for Schema {
    fn type_of(&self, path: &str) -> Result<Type, String> {
        SCHEMA
            .iter()
            .find(|(p, _)| *p == path)
            .map(|&(_, t)| t)
            .ok_or_else(|| format!("unknown attribute '{path}'"))
    }
}

#[derive(Debug, Default)]
struct Values(HashMap<String, Value>);

impl Source for Values {
    fn value_of(&self, path: &str) -> Value {
        self.0.get(path).cloned().unwrap_or(Value::Null)
    }
}

fn values(pairs: &[(&str, Value)]) -> Values {
    Values(
        pairs
            .iter()
            .map(|(p, v)| ((*p).to_owned(), v.clone()))
            .collect(),
    )
}

fn compile(text: &str) -> Expr {
    match Expr::compile(text, &Schema) {
        Ok(expr) => expr,
        Err(e) => panic!("{text}: {} (at {}+{})", e.message, e.offset, e.len),
    }
}

/// Compiles and evaluates `text` over the given attribute values.
fn eval(text: &str, pairs: &[(&str, Value)]) -> Value {
    compile(text).eval(&values(pairs))
}

/// Evaluates an expression that references no attribute values.
fn eval0(text: &str) -> Value {
    eval(text, &[])
}

fn err(text: &str) -> CompileError {
    match Expr::compile(text, &Schema) {
        Ok(expr) => panic!("{text}: compiled to {expr:?}, expected an error"),
        Err(e) => e,
    }
}

/// The text an error points at.
fn pointed<'a>(text: &'a str, e: &CompileError) -> &'a str {
    &text[e.offset..e.offset + e.len]
}

fn s(text: &str) -> Value {
    Value::Str(text.to_owned())
}

fn list(items: &[&str]) -> Value {
    Value::List(items.iter().map(|s| (*s).to_owned()).collect())
}
