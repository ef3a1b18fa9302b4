//! The mapping's expression language: Entra ID's attribute-mapping syntax
//! (`Join(" ", [name.givenName], [name.familyName])`), adapted. This module owns the
//! parser, the static type checker, the function library and the evaluator.
//!
//! Edges: attribute paths are opaque here. `[emails[type eq "work"].value]` is stored as
//! text; the caller's [`Resolver`] types it when the expression compiles and its [`Source`]
//! supplies its value at evaluation. Errors carry byte offsets into the expression text;
//! the mapping layer turns them into YAML line:column. Expressions come from untrusted
//! configuration and are evaluated over untrusted SCIM values, so compilation is bounded
//! ([`MAX_EXPR_LEN`], [`MAX_DEPTH`], regex size limits) and evaluation never panics:
//! a runtime problem (an unparsable date, a negative computed count, a `Replace` result
//! over 1 MiB) yields [`Value::Null`].
//!
//! Implicit conversions, at type check and at run time alike: a boolean becomes the string
//! `"True"`/`"False"` (Entra's spelling) and a number its decimal text wherever a string is
//! expected; a string becomes a boolean at run time when it reads `true`/`false` in any
//! case (statically only a literal `"True"`/`"False"` may stand for a boolean). A list is
//! never silently flattened into a string: use `Join`, or `Word` on a string.
//!
//! Functions (names match in any case; null handling and edge cases are documented on
//! `check::Func`): `Append`, `Coalesce`, `Join`, `Switch`, `IIF`, `ToLower`, `ToUpper`,
//! `Replace` (literal, or regex with a literal pattern), `Left`, `Mid`, `Split`, `Trim`,
//! `NormalizeDiacritics`, `StripSpaces`, `Word`, `Not`, `IsPresent`, `IsNullOrEmpty`,
//! `DateFormat`. Characters are Unicode scalar values, never bytes.

mod check;
mod date;
mod eval;
mod parse;
mod text;

#[cfg(test)]
mod tests;

use std::fmt;

/// Longest expression (in bytes) that compiles.
pub const MAX_EXPR_LEN: usize = 16 * 1024;
/// Deepest nesting of function calls that compiles (`A(B(C()))` nests 3 deep).
pub const MAX_DEPTH: usize = 32;

/// A static type. `Any` is what `null` and attributes of unknown type have; it is accepted
/// wherever a value is expected and checked again at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Str,
    Bool,
    Int,
    /// A list of strings (a multi-valued attribute, or `Split`'s result).
    List,
    Any,
}

impl Type {
    /// The noun used in error messages ("got a string").
    fn noun(self) -> &'static str {
        match self {
            Type::Str => "a string",
            Type::Bool => "a boolean",
            Type::Int => "a number",
            Type::List => "a list",
            Type::Any => "a value of unknown type",
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Str => "string",
            Type::Bool => "boolean",
            Type::Int => "number",
            Type::List => "list",
            Type::Any => "any",
        })
    }
}

/// A runtime value. `Null` means "absent" and propagates: most functions given a null
/// source return null.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Str(String),
    Bool(bool),
    Int(i64),
    List(Vec<String>),
}

impl Value {
    /// The value as one string: strings as they are, booleans as `True`/`False` (Entra's
    /// spelling), numbers in decimal. `None` for null and for lists, which have no single
    /// string form.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(true) => Some("True".to_owned()),
            Value::Bool(false) => Some("False".to_owned()),
            Value::Int(n) => Some(n.to_string()),
            Value::Null | Value::List(_) => None,
        }
    }

    /// Not null, not the empty string, not the empty list. Booleans and numbers are always
    /// present (`false` and `0` are values).
    pub fn is_present(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Str(s) => !s.is_empty(),
            Value::List(items) => !items.is_empty(),
            Value::Bool(_) | Value::Int(_) => true,
        }
    }
}

/// What the caller knows about attribute references, asked once per reference at compile
/// time. An `Err(message)` becomes a [`CompileError`] at the reference's path, with the
/// message as written (e.g. `unknown attribute 'nmae.givenName' (did you mean
/// 'name.givenName'?)`).
pub trait Resolver {
    fn type_of(&self, path: &str) -> Result<Type, String>;
}

/// Where attribute values come from at evaluation. A value whose runtime type differs from
/// the type the resolver declared is converted as described in the module docs; one that
/// cannot be converted (a list for a string attribute) counts as null.
pub trait Source {
    fn value_of(&self, path: &str) -> Value;
}

/// Why an expression did not compile. `offset` and `len` are a byte range of the
/// expression text (the offending token, argument or reference path); `len` may be 0 at
/// the end of the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    pub offset: usize,
    pub len: usize,
    pub message: String,
}

impl CompileError {
    fn new(offset: usize, len: usize, message: impl Into<String>) -> CompileError {
        CompileError {
            offset,
            len,
            message: message.into(),
        }
    }
}

/// A compiled expression: the type-checked tree with its regexes and date patterns already
/// built, so evaluation does no parsing and cannot fail to compile anything.
#[derive(Debug, Clone)]
pub struct Expr {
    text: String,
    root: check::Node,
    ty: Type,
    /// Distinct reference paths in order of first appearance; `Node::Ref` indexes this.
    refs: Vec<String>,
}

impl Expr {
    /// Parses and type-checks `text`, asking `resolver` for the type of every attribute
    /// reference.
    pub fn compile(text: &str, resolver: &dyn Resolver) -> Result<Expr, CompileError> {
        let ast = parse::parse(text)?;
        let mut refs = Vec::new();
        let (root, ty) = check::check(&ast, resolver, &mut refs)?;
        Ok(Expr {
            text: text.to_owned(),
            root,
            ty,
            refs,
        })
    }

    /// The static type of the result. [`Expr::eval`] returns null or a value of this type
    /// (anything, for [`Type::Any`]).
    pub fn result_type(&self) -> Type {
        self.ty
    }

    /// Evaluates over `source`. Never panics; runtime problems give [`Value::Null`].
    pub fn eval(&self, source: &dyn Source) -> Value {
        eval::eval(&self.root, &self.refs, source)
    }

    /// The most characters the result can have as text; `None` when unbounded (it
    /// contains an attribute value not cut by `Left`/`Mid`, a list, a regex replacement or
    /// a date). For limits such as AD's 20-character `sAMAccountName`.
    pub fn max_chars(&self) -> Option<usize> {
        check::max_chars(&self.root)
    }

    /// The attribute paths referenced, each once, in order of first appearance.
    pub fn references(&self) -> Vec<&str> {
        self.refs.iter().map(String::as_str).collect()
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }
}
