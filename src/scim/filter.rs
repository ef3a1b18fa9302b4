//! The SCIM filter language (RFC 7644 §3.4.2.2): the filter AST, a hand-written
//! recursive-descent parser for it, and a canonical printer whose output parses back to
//! an equal AST.
//!
//! Syntax only: evaluating a filter against a resource lives elsewhere. The parser is
//! lenient where real clients need it (unquoted string values, case-insensitive keywords,
//! loose whitespace) and bounded everywhere else: inputs over [`MAX_FILTER_LEN`] bytes or
//! nested deeper than [`MAX_FILTER_DEPTH`] are refused, so no input can exhaust the stack.

use std::fmt;

use serde_json::Number;

use crate::scim::path::{self, AttrPath, ParseError};

/// Deepest nesting of `( … )`, `not ( … )` and `[ … ]` the parser accepts.
pub const MAX_FILTER_DEPTH: usize = 64;
/// Longest filter (in bytes) the parser accepts.
pub const MAX_FILTER_LEN: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A comparison value: JSON string, number, boolean or null.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    Str(String),
    Num(Number),
    Bool(bool),
    Null,
}

/// What an attribute is tested for.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// `pr`: the attribute has a non-empty value.
    Present,
    Compare(CompareOp, CompValue),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `attrPath op value` or `attrPath pr`
    Attr {
        path: AttrPath,
        test: Test,
    },
    /// `attr[valFilter]`, optionally followed by `.sub op value` / `.sub pr` (Entra sends
    /// `emails[type eq "work"].value eq "x"`). Paths inside `filter` are relative to the
    /// element and are plain attribute names.
    ValuePath {
        attr: AttrPath,
        filter: Box<Filter>,
        sub: Option<(String, Test)>,
    },
    Not(Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

impl CompareOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    fn from_keyword(word: &str) -> Option<Self> {
        const ALL: [CompareOp; 9] = [
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Co,
            CompareOp::Sw,
            CompareOp::Ew,
            CompareOp::Gt,
            CompareOp::Ge,
            CompareOp::Lt,
            CompareOp::Le,
        ];
        ALL.into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(word))
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Always quoted, even when the client sent a bare word: the canonical form
            // must not depend on the leniency rules.
            CompValue::Str(s) => {
                let quoted = serde_json::to_string(s).map_err(|_| fmt::Error)?;
                f.write_str(&quoted)
            }
            CompValue::Num(n) => write!(f, "{n}"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Null => f.write_str("null"),
        }
    }
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Test::Present => f.write_str("pr"),
            Test::Compare(op, value) => write!(f, "{op} {value}"),
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Attr { path, test } => write!(f, "{path} {test}"),
            Filter::ValuePath { attr, filter, sub } => {
                write!(f, "{attr}[{filter}]")?;
                if let Some((name, test)) = sub {
                    write!(f, ".{name} {test}")?;
                }
                Ok(())
            }
            Filter::Not(inner) => write!(f, "not ({inner})"),
            // `and` binds tighter than `or` and both associate to the left, so only a
            // right operand of the same kind, or an `or` under an `and`, needs parentheses.
            Filter::Or(left, right) => {
                write!(f, "{left} or ")?;
                write_operand(f, right, matches!(**right, Filter::Or(..)))
            }
            Filter::And(left, right) => {
                write_operand(f, left, matches!(**left, Filter::Or(..)))?;
                f.write_str(" and ")?;
                write_operand(
                    f,
                    right,
                    matches!(**right, Filter::Or(..) | Filter::And(..)),
                )
            }
        }
    }
}

fn write_operand(f: &mut fmt::Formatter<'_>, operand: &Filter, parens: bool) -> fmt::Result {
    if parens {
        write!(f, "({operand})")
    } else {
        write!(f, "{operand}")
    }
}

/// Parses a filter such as `userName eq "bjensen"` or
/// `emails[type eq "work" and value co "@example.com"] or not (active pr)`.
pub fn parse_filter(input: &str) -> Result<Filter, ParseError> {
    if input.len() > MAX_FILTER_LEN {
        return Err(ParseError::new(
            MAX_FILTER_LEN,
            format!("filter is longer than {MAX_FILTER_LEN} bytes"),
        ));
    }
    let mut parser = Parser::new(input, 0);
    let filter = parser.parse_or(Scope::Resource)?;
    parser.skip_ws();
    match parser.peek() {
        None => Ok(filter),
        Some(c @ (')' | ']')) => Err(parser.error(format!("unexpected '{c}'"))),
        Some(_) => Err(parser.error("expected 'and', 'or' or end of filter")),
    }
}

/// Parses the `[valFilter]` whose `[` is at byte `open` of `src`, returning the filter and
/// the offset just past the closing `]`. Used for PATCH value paths.
pub(crate) fn parse_bracketed(src: &str, open: usize) -> Result<(Filter, usize), ParseError> {
    let mut parser = Parser::new(src, open);
    let filter = parser.parse_brackets()?;
    Ok((filter, parser.pos))
}

/// What the attribute paths of an expression are relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The resource: full paths, value paths allowed.
    Resource,
    /// An element of a multi-valued attribute, inside `[...]`: plain names only, and no
    /// further value paths (RFC 7644 does not nest them).
    Element,
}

struct Parser<'a> {
    src: &'a str,
    /// Byte offset of the next unread character; always on a char boundary.
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str, pos: usize) -> Self {
        Parser { src, pos, depth: 0 }
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError::new(self.pos, message)
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start_matches(path::is_space).len();
    }

    /// End of the word starting at `self.pos`: a maximal run of characters that are not
    /// whitespace, parentheses, brackets or quotes. Paths, operators and `and`/`or`/`not`
    /// are words, so `and(`, `eq"x"` and `type]` split where a reader expects.
    fn word_end(&self) -> usize {
        let rest = self.rest();
        let len = rest
            .find(|c: char| path::is_space(c) || "()[]\"".contains(c))
            .unwrap_or(rest.len());
        self.pos + len
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        if self.depth >= MAX_FILTER_DEPTH {
            return Err(self.error(format!(
                "filter nests deeper than {MAX_FILTER_DEPTH} levels"
            )));
        }
        self.depth += 1;
        Ok(())
    }

    /// If the next word is `keyword` (case-insensitively), consumes it.
    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let save = self.pos;
        self.skip_ws();
        let end = self.word_end();
        if self.src[self.pos..end].eq_ignore_ascii_case(keyword) {
            self.pos = end;
            true
        } else {
            self.pos = save;
            false
        }
    }

    /// `or`-expression: and-expressions joined by `or`, left-associative.
    fn parse_or(&mut self, scope: Scope) -> Result<Filter, ParseError> {
        let mut left = self.parse_and(scope)?;
        while self.eat_keyword("or") {
            let right = self.parse_and(scope)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// `and`-expression: terms joined by `and`, left-associative.
    fn parse_and(&mut self, scope: Scope) -> Result<Filter, ParseError> {
        let mut left = self.parse_term(scope)?;
        while self.eat_keyword("and") {
            let right = self.parse_term(scope)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// A parenthesised group, `not ( … )`, or an attribute expression.
    fn parse_term(&mut self, scope: Scope) -> Result<Filter, ParseError> {
        self.skip_ws();
        match self.peek() {
            None => return Err(self.error("expected filter expression")),
            Some('(') => return self.parse_group(scope),
            Some(c @ (')' | ']')) => return Err(self.error(format!("unexpected '{c}'"))),
            Some(_) => {}
        }
        let word_end = self.word_end();
        if self.src[self.pos..word_end].eq_ignore_ascii_case("not") {
            // `not` is an operator only in front of `(`; otherwise it is an attribute
            // that happens to be called "not".
            let save = self.pos;
            self.pos = word_end;
            self.skip_ws();
            if self.peek() == Some('(') {
                let inner = self.parse_group(scope)?;
                return Ok(Filter::Not(Box::new(inner)));
            }
            self.pos = save;
        }
        self.parse_attr_expr(scope)
    }

    /// `( filter )` with `self.pos` on the `(`.
    fn parse_group(&mut self, scope: Scope) -> Result<Filter, ParseError> {
        self.enter()?;
        self.pos += 1;
        let inner = self.parse_or(scope)?;
        self.skip_ws();
        match self.peek() {
            Some(')') => self.pos += 1,
            None => return Err(self.error("unbalanced '(': expected ')'")),
            Some(']') => return Err(self.error("unexpected ']'")),
            Some(_) => return Err(self.error("expected 'and', 'or' or ')'")),
        }
        self.depth -= 1;
        Ok(inner)
    }

    /// `[ valFilter ]` with `self.pos` on the `[`.
    fn parse_brackets(&mut self) -> Result<Filter, ParseError> {
        self.enter()?;
        self.pos += 1;
        let inner = self.parse_or(Scope::Element)?;
        self.skip_ws();
        match self.peek() {
            Some(']') => self.pos += 1,
            None => return Err(self.error("unbalanced '[': expected ']'")),
            Some(')') => return Err(self.error("unexpected ')'")),
            Some(_) => return Err(self.error("expected 'and', 'or' or ']'")),
        }
        self.depth -= 1;
        Ok(inner)
    }

    /// `attrPath pr`, `attrPath op value`, or a value path `attr[valFilter]` with an
    /// optional `.sub pr` / `.sub op value` after it.
    fn parse_attr_expr(&mut self, scope: Scope) -> Result<Filter, ParseError> {
        let start = self.pos;
        let end = self.word_end();
        let token = &self.src[start..end];
        let path = path::parse_attr_path_at(token, start)?;
        if scope == Scope::Element
            && (path.urn.is_some() || path.sub_attr.is_some() || path.attr != token)
        {
            return Err(ParseError::new(
                start,
                "expected a plain attribute name inside '[...]'",
            ));
        }
        self.pos = end;
        self.skip_ws();
        if self.peek() != Some('[') {
            let test = self.parse_test(token)?;
            return Ok(Filter::Attr { path, test });
        }
        if scope == Scope::Element {
            return Err(self.error("value paths may not nest"));
        }
        if path.sub_attr.is_some() {
            // `name.givenName[...]`: brackets only follow a plain attribute.
            return Err(self.error(format!("expected comparison operator after '{token}'")));
        }
        let filter = self.parse_brackets()?;
        // The sub-attribute hangs directly off the `]`, as in `emails[...].value`.
        let sub = if self.peek() == Some('.') {
            self.pos += 1;
            let len = path::name_len(self.rest());
            if len == 0 {
                return Err(self.error("expected sub-attribute name"));
            }
            let name = &self.src[self.pos..self.pos + len];
            self.pos += len;
            let test = self.parse_test(name)?;
            Some((name.to_owned(), test))
        } else {
            None
        };
        Ok(Filter::ValuePath {
            attr: path,
            filter: Box::new(filter),
            sub,
        })
    }

    /// The operator (and value) after the attribute called `subject`.
    fn parse_test(&mut self, subject: &str) -> Result<Test, ParseError> {
        self.skip_ws();
        let end = self.word_end();
        let word = &self.src[self.pos..end];
        if word.is_empty() {
            return Err(self.error(format!("expected comparison operator after '{subject}'")));
        }
        if word.eq_ignore_ascii_case("pr") {
            self.pos = end;
            return Ok(Test::Present);
        }
        let Some(op) = CompareOp::from_keyword(word) else {
            return Err(self.error(format!(
                "expected comparison operator after '{subject}', found '{word}'"
            )));
        };
        self.pos = end;
        let value = self.parse_value(word)?;
        Ok(Test::Compare(op, value))
    }

    /// A JSON string, or a bare word: `true`/`false`/`null`, a JSON number, or (leniency
    /// for clients that do not quote) any other word as a string.
    fn parse_value(&mut self, op: &str) -> Result<CompValue, ParseError> {
        self.skip_ws();
        match self.peek() {
            Some('"') => return self.parse_string().map(CompValue::Str),
            None | Some('(' | ')' | '[' | ']') => {
                return Err(self.error(format!("expected comparison value after '{op}'")));
            }
            Some(_) => {}
        }
        let rest = self.rest();
        let len = rest
            .find(|c: char| path::is_space(c) || c == ')' || c == ']')
            .unwrap_or(rest.len());
        let word = &rest[..len];
        let value = if word.eq_ignore_ascii_case("true") {
            CompValue::Bool(true)
        } else if word.eq_ignore_ascii_case("false") {
            CompValue::Bool(false)
        } else if word.eq_ignore_ascii_case("null") {
            CompValue::Null
        } else if is_json_number(word) {
            CompValue::Num(json_number(word).ok_or_else(|| self.error("number out of range"))?)
        } else {
            CompValue::Str(word.to_owned())
        };
        self.pos += len;
        Ok(value)
    }

    /// A JSON string literal with `self.pos` on the opening quote.
    fn parse_string(&mut self) -> Result<String, ParseError> {
        let open = self.pos;
        let unterminated = || ParseError::new(open, "unterminated string starting");
        let mut out = String::new();
        let mut chars = self.src[open + 1..]
            .char_indices()
            .map(|(i, c)| (open + 1 + i, c));
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos = at + 1;
                    return Ok(out);
                }
                '\\' => {
                    let (_, escape) = chars.next().ok_or_else(unterminated)?;
                    let decoded = match escape {
                        '"' => '"',
                        '\\' => '\\',
                        '/' => '/',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        'u' => decode_unicode_escape(&mut chars, open, at)?,
                        _ => return Err(ParseError::new(at, "invalid escape in string")),
                    };
                    out.push(decoded);
                }
                c if c < '\u{20}' => {
                    return Err(ParseError::new(
                        at,
                        "expected escaped control character in string",
                    ));
                }
                c => out.push(c),
            }
        }
        Err(unterminated())
    }
}

/// Decodes the `XXXX` of a `\uXXXX` escape whose backslash is at byte `at`, including the
/// second half of a UTF-16 surrogate pair. `open` is the string's opening quote.
fn decode_unicode_escape(
    chars: &mut dyn Iterator<Item = (usize, char)>,
    open: usize,
    at: usize,
) -> Result<char, ParseError> {
    let invalid = || ParseError::new(at, "invalid unicode escape in string");
    let high = hex4(chars, open, at)?;
    let code = match high {
        0xD800..=0xDBFF => {
            // A high surrogate is only valid followed by `\u` and a low surrogate.
            if next_in_string(chars, open)? != '\\' || next_in_string(chars, open)? != 'u' {
                return Err(invalid());
            }
            let low = hex4(chars, open, at)?;
            if !(0xDC00..=0xDFFF).contains(&low) {
                return Err(invalid());
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        }
        code => code,
    };
    char::from_u32(code).ok_or_else(invalid)
}

fn hex4(
    chars: &mut dyn Iterator<Item = (usize, char)>,
    open: usize,
    at: usize,
) -> Result<u32, ParseError> {
    let mut value = 0;
    for _ in 0..4 {
        let digit = next_in_string(chars, open)?
            .to_digit(16)
            .ok_or_else(|| ParseError::new(at, "invalid unicode escape in string"))?;
        value = value * 16 + digit;
    }
    Ok(value)
}

fn next_in_string(
    chars: &mut dyn Iterator<Item = (usize, char)>,
    open: usize,
) -> Result<char, ParseError> {
    chars
        .next()
        .map(|(_, c)| c)
        .ok_or_else(|| ParseError::new(open, "unterminated string starting"))
}

/// Whether `s` matches the JSON number grammar:
/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn is_json_number(s: &str) -> bool {
    fn digits(b: &[u8]) -> usize {
        b.iter().take_while(|c| c.is_ascii_digit()).count()
    }
    let mut b = s.as_bytes();
    if let [b'-', rest @ ..] = b {
        b = rest;
    }
    let int = digits(b);
    if int == 0 || (int > 1 && b[0] == b'0') {
        return false;
    }
    b = &b[int..];
    if let [b'.', rest @ ..] = b {
        let frac = digits(rest);
        if frac == 0 {
            return false;
        }
        b = &rest[frac..];
    }
    if let [b'e' | b'E', rest @ ..] = b {
        let rest = match rest {
            [b'+' | b'-', r @ ..] => r,
            r => r,
        };
        let exp = digits(rest);
        if exp == 0 {
            return false;
        }
        b = &rest[exp..];
    }
    b.is_empty()
}

/// Converts a string already known to match the JSON number grammar. Integers stay exact
/// when they fit 64 bits; everything else goes through the standard library's correctly
/// rounded float parser, so a printed `Number` parses back to the same value. `None` when
/// the magnitude overflows `f64`.
fn json_number(s: &str) -> Option<Number> {
    if !s.contains(['.', 'e', 'E']) {
        if let Ok(n) = s.parse::<u64>() {
            return Some(Number::from(n));
        }
        if let Ok(n) = s.parse::<i64>() {
            return Some(Number::from(n));
        }
    }
    s.parse::<f64>().ok().and_then(Number::from_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn path(attr: &str) -> AttrPath {
        match attr.split_once('.') {
            Some((attr, sub)) => AttrPath {
                urn: None,
                attr: attr.into(),
                sub_attr: Some(sub.into()),
            },
            None => AttrPath {
                urn: None,
                attr: attr.into(),
                sub_attr: None,
            },
        }
    }

    fn cmp(attr: &str, op: CompareOp, value: CompValue) -> Filter {
        Filter::Attr {
            path: path(attr),
            test: Test::Compare(op, value),
        }
    }

    fn eq_str(attr: &str, value: &str) -> Filter {
        cmp(attr, CompareOp::Eq, str_(value))
    }

    fn eq_num(attr: &str, n: i64) -> Filter {
        cmp(attr, CompareOp::Eq, CompValue::Num(n.into()))
    }

    fn str_(s: &str) -> CompValue {
        CompValue::Str(s.into())
    }

    fn present(attr: &str) -> Filter {
        Filter::Attr {
            path: path(attr),
            test: Test::Present,
        }
    }

    fn and(l: Filter, r: Filter) -> Filter {
        Filter::And(Box::new(l), Box::new(r))
    }

    fn or(l: Filter, r: Filter) -> Filter {
        Filter::Or(Box::new(l), Box::new(r))
    }

    fn not(f: Filter) -> Filter {
        Filter::Not(Box::new(f))
    }

    fn parse(text: &str) -> Filter {
        match parse_filter(text) {
            Ok(f) => f,
            Err(e) => panic!("{text:?} should parse, got: {e}"),
        }
    }

    fn parse_err(text: &str) -> ParseError {
        match parse_filter(text) {
            Ok(f) => panic!("{text:?} should not parse, got {f:?}"),
            Err(e) => e,
        }
    }

    // --- What Entra ID sends -------------------------------------------------------

    #[test]
    fn entra_user_lookups_parse_as_string_equality() {
        assert_eq!(parse(r#"userName eq "x""#), eq_str("userName", "x"));
        assert_eq!(parse(r#"externalId eq "x""#), eq_str("externalId", "x"));
        assert_eq!(parse(r#"displayName eq "x""#), eq_str("displayName", "x"));
        assert_eq!(
            parse(r#"userName eq "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee""#),
            eq_str("userName", "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee")
        );
    }

    #[test]
    fn attribute_names_are_kept_as_written() {
        assert_eq!(parse(r#"DisplayName eq "x""#), eq_str("DisplayName", "x"));
    }

    #[test]
    fn value_path_followed_by_sub_attribute_comparison() {
        assert_eq!(
            parse(r#"emails[type eq "work"].value eq "a@b.c""#),
            Filter::ValuePath {
                attr: path("emails"),
                filter: Box::new(eq_str("type", "work")),
                sub: Some(("value".into(), Test::Compare(CompareOp::Eq, str_("a@b.c")))),
            }
        );
    }

    #[test]
    fn value_path_sub_attribute_may_test_presence() {
        let Filter::ValuePath { sub, .. } = parse(r#"emails[type eq "work"].value pr"#) else {
            panic!("expected a value path");
        };
        assert_eq!(sub, Some(("value".into(), Test::Present)));
    }

    #[test]
    fn string_escapes_are_decoded() {
        assert_eq!(parse(r#"userName eq "a\"b""#), eq_str("userName", "a\"b"));
        assert_eq!(
            parse(r#"userName eq "\u00e9\\\/\n\ud83d\ude00""#),
            eq_str("userName", "é\\/\n😀")
        );
        assert_eq!(parse("userName eq \"é😀\""), eq_str("userName", "é😀"));
    }

    // --- Operators and values ------------------------------------------------------

    #[test]
    fn every_comparison_operator_parses_case_insensitively() {
        let ops = [
            ("eq", CompareOp::Eq),
            ("ne", CompareOp::Ne),
            ("co", CompareOp::Co),
            ("sw", CompareOp::Sw),
            ("ew", CompareOp::Ew),
            ("gt", CompareOp::Gt),
            ("ge", CompareOp::Ge),
            ("lt", CompareOp::Lt),
            ("le", CompareOp::Le),
        ];
        for (word, op) in ops {
            let expected = cmp("title", op, str_("v"));
            assert_eq!(parse(&format!(r#"title {word} "v""#)), expected);
            let upper = word.to_uppercase();
            assert_eq!(parse(&format!(r#"title {upper} "v""#)), expected);
            assert_eq!(op.to_string(), word);
        }
    }

    #[test]
    fn present_operator_takes_no_value() {
        assert_eq!(parse("title pr"), present("title"));
        assert_eq!(parse("title PR"), present("title"));
    }

    #[test]
    fn literals_and_numbers_are_typed_values() {
        assert_eq!(
            parse("active eq true"),
            cmp("active", CompareOp::Eq, CompValue::Bool(true))
        );
        assert_eq!(
            parse("active eq FALSE"),
            cmp("active", CompareOp::Eq, CompValue::Bool(false))
        );
        assert_eq!(
            parse("manager eq Null"),
            cmp("manager", CompareOp::Eq, CompValue::Null)
        );
        assert_eq!(
            parse("age gt -12"),
            cmp("age", CompareOp::Gt, CompValue::Num((-12).into()))
        );
        let Filter::Attr {
            test: Test::Compare(_, CompValue::Num(n)),
            ..
        } = parse("score ge 1.5e3")
        else {
            panic!("expected a number");
        };
        assert_eq!(n.as_f64(), Some(1500.0));
    }

    #[test]
    fn quoted_literals_stay_strings() {
        assert_eq!(parse(r#"active eq "true""#), eq_str("active", "true"));
        assert_eq!(
            parse(r#"employeeNumber eq "5""#),
            eq_str("employeeNumber", "5")
        );
    }

    #[test]
    fn unquoted_words_are_accepted_as_strings() {
        assert_eq!(
            parse("externalId eq jyoung"),
            eq_str("externalId", "jyoung")
        );
        assert_eq!(
            parse("userName sw O"),
            cmp("userName", CompareOp::Sw, str_("O"))
        );
        assert_eq!(
            parse("meta.Created gt 2015-10-10T14:38:21.8617979-07:00"),
            cmp(
                "meta.Created",
                CompareOp::Gt,
                str_("2015-10-10T14:38:21.8617979-07:00")
            )
        );
        // Not JSON numbers, so they keep their leading zero or sign as text.
        assert_eq!(
            parse("employeeNumber eq 007"),
            eq_str("employeeNumber", "007")
        );
        assert_eq!(
            parse("employeeNumber eq +7"),
            eq_str("employeeNumber", "+7")
        );
    }

    #[test]
    fn postman_filter_with_unquoted_values_and_parentheses() {
        assert_eq!(
            parse(
                "name.FamilyName eq Employee and (emails.Value co example.com or emails.Value co example.org)"
            ),
            and(
                eq_str("name.FamilyName", "Employee"),
                or(
                    cmp("emails.Value", CompareOp::Co, str_("example.com")),
                    cmp("emails.Value", CompareOp::Co, str_("example.org")),
                )
            )
        );
    }

    #[test]
    fn sub_attribute_paths_in_comparisons() {
        assert_eq!(parse("name.familyName pr"), present("name.familyName"));
        assert_eq!(
            parse(r#"meta.lastModified gt "2011-05-13T04:42:34Z""#),
            cmp(
                "meta.lastModified",
                CompareOp::Gt,
                str_("2011-05-13T04:42:34Z")
            )
        );
    }

    #[test]
    fn urn_prefixed_attribute_is_split_from_its_schema() {
        assert_eq!(
            parse(&format!(r#"{ENTERPRISE}:employeeNumber eq "1""#)),
            Filter::Attr {
                path: AttrPath {
                    urn: Some(ENTERPRISE.into()),
                    attr: "employeeNumber".into(),
                    sub_attr: None,
                },
                test: Test::Compare(CompareOp::Eq, str_("1")),
            }
        );
        let Filter::Attr { path, .. } = parse(&format!("{ENTERPRISE}:manager.value pr")) else {
            panic!("expected an attribute filter");
        };
        assert_eq!(path.sub_attr.as_deref(), Some("value"));
    }

    // --- Logic, precedence and grouping --------------------------------------------

    #[test]
    fn and_binds_tighter_than_or() {
        assert_eq!(
            parse("a eq 1 or b eq 2 and c eq 3"),
            or(eq_num("a", 1), and(eq_num("b", 2), eq_num("c", 3)))
        );
        assert_eq!(
            parse("a eq 1 and b eq 2 or c eq 3"),
            or(and(eq_num("a", 1), eq_num("b", 2)), eq_num("c", 3))
        );
    }

    #[test]
    fn and_and_or_associate_to_the_left() {
        assert_eq!(
            parse("a pr or b pr or c pr"),
            or(or(present("a"), present("b")), present("c"))
        );
        assert_eq!(
            parse("a pr AND b pr And c pr"),
            and(and(present("a"), present("b")), present("c"))
        );
    }

    #[test]
    fn filter_with_nested_parentheses_respects_precedence() {
        assert_eq!(
            parse("(a eq 1 or b eq 2) and c eq 3"),
            and(or(eq_num("a", 1), eq_num("b", 2)), eq_num("c", 3))
        );
        assert_eq!(
            parse("a pr and ((b pr or (c pr)) and d pr)"),
            and(
                present("a"),
                and(or(present("b"), present("c")), present("d"))
            )
        );
        assert_eq!(parse("( a eq \"b\" )"), eq_str("a", "b"));
        assert_eq!(parse("(a eq \"b\")"), eq_str("a", "b"));
    }

    #[test]
    fn not_negates_a_parenthesised_filter() {
        assert_eq!(parse("not (x pr)"), not(present("x")));
        assert_eq!(parse("NOT(x pr)"), not(present("x")));
        assert_eq!(
            parse("a pr and not (b pr or c pr)"),
            and(present("a"), not(or(present("b"), present("c"))))
        );
    }

    #[test]
    fn keywords_are_attribute_names_where_an_attribute_is_expected() {
        assert_eq!(parse("not pr"), present("not"));
        assert_eq!(parse("and pr or or pr"), or(present("and"), present("or")));
        assert_eq!(parse(r#"pr eq "x""#), eq_str("pr", "x"));
    }

    #[test]
    fn whitespace_is_tolerated_around_tokens() {
        assert_eq!(
            parse("  userName   eq\t\"x\"   and  title pr  "),
            and(eq_str("userName", "x"), present("title"))
        );
    }

    #[test]
    fn value_path_filter_may_combine_conditions() {
        assert_eq!(
            parse(r#"emails[type eq "work" and primary eq true]"#),
            Filter::ValuePath {
                attr: path("emails"),
                filter: Box::new(and(
                    eq_str("type", "work"),
                    cmp("primary", CompareOp::Eq, CompValue::Bool(true))
                )),
                sub: None,
            }
        );
        assert_eq!(
            parse(r#"emails[ not (type eq "work") ]"#),
            Filter::ValuePath {
                attr: path("emails"),
                filter: Box::new(not(eq_str("type", "work"))),
                sub: None,
            }
        );
    }

    #[test]
    fn value_path_combines_with_other_filters() {
        assert_eq!(
            parse(
                r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#
            ),
            and(
                eq_str("userType", "Employee"),
                Filter::ValuePath {
                    attr: path("emails"),
                    filter: Box::new(and(
                        eq_str("type", "work"),
                        cmp("value", CompareOp::Co, str_("@example.com"))
                    )),
                    sub: None,
                }
            )
        );
    }

    #[test]
    fn long_flat_chains_parse_within_the_length_limit() {
        let text = vec!["a pr"; 1000].join(" or ");
        let filter = parse(&text);
        assert_eq!(parse(&filter.to_string()), filter);
    }

    // --- Errors --------------------------------------------------------------------

    #[test]
    fn missing_operator_is_reported_after_the_attribute() {
        let e = parse_err("userName");
        assert_eq!(
            e.to_string(),
            "expected comparison operator after 'userName' at 8"
        );
        let e = parse_err(r#"userName "x""#);
        assert_eq!(e.position, 9);
    }

    #[test]
    fn unknown_operator_is_rejected_where_it_stands() {
        let e = parse_err(r#"userName like "x""#);
        assert_eq!(e.position, 9);
        assert_eq!(
            e.message,
            "expected comparison operator after 'userName', found 'like'"
        );
    }

    #[test]
    fn missing_value_is_rejected() {
        assert_eq!(
            parse_err("userName eq").to_string(),
            "expected comparison value after 'eq' at 11"
        );
        assert_eq!(parse_err("(userName eq)").position, 12);
    }

    #[test]
    fn unterminated_string_points_at_its_opening_quote() {
        let e = parse_err(r#"title pr and userName eq "abc"#);
        assert_eq!(e.to_string(), "unterminated string starting at 25");
        assert_eq!(parse_err(r#"a eq "abc\"#).position, 5);
        assert_eq!(parse_err(r#"a eq "\u12"#).position, 5);
    }

    #[test]
    fn malformed_string_escapes_are_rejected() {
        assert_eq!(
            parse_err(r#"a eq "x\q""#).message,
            "invalid escape in string"
        );
        assert_eq!(parse_err(r#"a eq "\u12zz""#).position, 6);
        assert_eq!(
            parse_err(r#"a eq "\ud800""#).message,
            "invalid unicode escape in string"
        );
        assert_eq!(
            parse_err(r#"a eq "\udc00""#).message,
            "invalid unicode escape in string"
        );
        assert_eq!(parse_err("a eq \"tab\there\"").position, 9);
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let e = parse_err(r#"userName eq "x" extra"#);
        assert_eq!(e.to_string(), "expected 'and', 'or' or end of filter at 16");
        assert_eq!(
            parse_err(r#"userName eq "x" and"#).message,
            "expected filter expression"
        );
        assert_eq!(parse_err(r#"userName eq "x"y"#).position, 15);
    }

    #[test]
    fn empty_input_is_rejected() {
        assert_eq!(parse_err("").to_string(), "expected filter expression at 0");
        assert_eq!(parse_err("   ").position, 3);
    }

    #[test]
    fn unbalanced_parentheses_and_brackets_are_rejected() {
        assert_eq!(
            parse_err("(a pr").to_string(),
            "unbalanced '(': expected ')' at 5"
        );
        assert_eq!(parse_err("a pr)").to_string(), "unexpected ')' at 4");
        assert_eq!(parse_err("((a pr) or b pr))").position, 16);
        assert_eq!(
            parse_err(r#"emails[type eq "work""#).message,
            "unbalanced '[': expected ']'"
        );
        assert_eq!(
            parse_err(r#"emails[type eq "work"))"#).message,
            "unexpected ')'"
        );
        assert_eq!(parse_err("a pr]").message, "unexpected ']'");
        assert_eq!(parse_err("(a pr]").message, "unexpected ']'");
        assert_eq!(parse_err("()").message, "unexpected ')'");
        assert_eq!(parse_err("not a pr").position, 4);
    }

    #[test]
    fn value_paths_may_not_nest() {
        let e = parse_err(r#"a[b[c eq 1]]"#);
        assert_eq!(e.to_string(), "value paths may not nest at 3");
    }

    #[test]
    fn value_filter_paths_are_plain_attribute_names() {
        assert_eq!(parse_err(r#"emails[type.x eq "work"]"#).position, 7);
        assert_eq!(
            parse_err(&format!(r#"emails[{ENTERPRISE}:x eq 1]"#)).position,
            7
        );
        assert_eq!(parse_err(r#"name.givenName[type eq "x"]"#).position, 14);
    }

    #[test]
    fn out_of_range_numbers_are_rejected() {
        assert_eq!(
            parse_err("a eq 1e400").to_string(),
            "number out of range at 5"
        );
    }

    #[test]
    fn nesting_up_to_the_limit_is_accepted_and_beyond_refused() {
        let nest = |n: usize| format!("{}a pr{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(parse(&nest(MAX_FILTER_DEPTH)), present("a"));
        assert_eq!(
            parse_err(&nest(MAX_FILTER_DEPTH + 1)).to_string(),
            "filter nests deeper than 64 levels at 64"
        );
        let nots = format!("{}a pr{}", "not (".repeat(65), ")".repeat(65));
        assert_eq!(
            parse_err(&nots).message,
            "filter nests deeper than 64 levels"
        );
    }

    #[test]
    fn depth_bomb_is_refused_without_recursing() {
        assert!(parse_filter(&"(".repeat(10_000)).is_err());
        assert!(parse_filter(&"(".repeat(100_000)).is_err());
        assert!(parse_filter(&"not (".repeat(1_600)).is_err());
    }

    #[test]
    fn over_long_input_is_refused() {
        let text = format!("a eq \"{}\"", "x".repeat(MAX_FILTER_LEN));
        assert_eq!(
            parse_err(&text).message,
            format!("filter is longer than {MAX_FILTER_LEN} bytes")
        );
    }

    // --- Canonical printing --------------------------------------------------------

    #[test]
    fn display_prints_canonical_lowercase_quoted_form() {
        let f = parse("name.FamilyName EQ Employee AND (emails.Value CO example.com OR x PR)");
        assert_eq!(
            f.to_string(),
            r#"name.FamilyName eq "Employee" and (emails.Value co "example.com" or x pr)"#
        );
        let f = parse(r#"emails[type eq "work" and primary eq TRUE].value eq "a\"b""#);
        assert_eq!(
            f.to_string(),
            r#"emails[type eq "work" and primary eq true].value eq "a\"b""#
        );
        assert_eq!(parse("NOT (a pr)").to_string(), "not (a pr)");
        assert_eq!(parse("a eq NULL").to_string(), "a eq null");
    }

    #[test]
    fn display_parenthesises_only_where_precedence_requires() {
        assert_eq!(
            parse("a pr or (b pr and c pr)").to_string(),
            "a pr or b pr and c pr"
        );
        assert_eq!(
            parse("(a pr or b pr) or c pr").to_string(),
            "a pr or b pr or c pr"
        );
        assert_eq!(
            parse("a pr or (b pr or c pr)").to_string(),
            "a pr or (b pr or c pr)"
        );
        assert_eq!(
            parse("a pr and (b pr and c pr)").to_string(),
            "a pr and (b pr and c pr)"
        );
    }

    // --- Properties ----------------------------------------------------------------

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "userName",
                "emails",
                "DisplayName",
                "$ref",
                "and",
                "or",
                "not",
                "pr",
                "eq",
                "true",
                "urn",
            ])
            .prop_map(String::from),
            "[a-zA-Z][a-zA-Z0-9_-]{0,6}",
        ]
    }

    fn attr_path() -> impl Strategy<Value = AttrPath> {
        let urn = prop::sample::select(vec![
            ENTERPRISE,
            "urn:ietf:params:scim:schemas:core:2.0:User",
        ]);
        prop_oneof![
            4 => (name(), prop::option::of(name())).prop_map(|(attr, sub_attr)| AttrPath {
                urn: None,
                attr,
                sub_attr,
            }),
            1 => (urn.clone(), name(), prop::option::of(name())).prop_map(
                |(urn, attr, sub_attr)| AttrPath {
                    urn: Some(urn.into()),
                    attr,
                    sub_attr,
                }
            ),
            1 => urn.prop_map(|urn| AttrPath {
                urn: None,
                attr: urn.into(),
                sub_attr: None,
            }),
        ]
    }

    fn comp_value() -> impl Strategy<Value = CompValue> {
        prop_oneof![
            any::<String>().prop_map(CompValue::Str),
            r#"[a"\\\\/é😀 \t\n\u{0}-\u{1f}]{0,8}"#.prop_map(CompValue::Str),
            any::<i64>().prop_map(|n| CompValue::Num(n.into())),
            any::<u64>().prop_map(|n| CompValue::Num(n.into())),
            (prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO)
                .prop_filter_map("finite", Number::from_f64)
                .prop_map(CompValue::Num),
            any::<bool>().prop_map(CompValue::Bool),
            Just(CompValue::Null),
        ]
    }

    fn test_() -> impl Strategy<Value = Test> {
        let op = prop::sample::select(vec![
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Co,
            CompareOp::Sw,
            CompareOp::Ew,
            CompareOp::Gt,
            CompareOp::Ge,
            CompareOp::Lt,
            CompareOp::Le,
        ]);
        prop_oneof![
            1 => Just(Test::Present),
            4 => (op, comp_value()).prop_map(|(op, v)| Test::Compare(op, v)),
        ]
    }

    fn combine(leaf: BoxedStrategy<Filter>, depth: u32) -> BoxedStrategy<Filter> {
        leaf.prop_recursive(depth, 24, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|f| Filter::Not(Box::new(f))),
                (inner.clone(), inner.clone())
                    .prop_map(|(l, r)| Filter::And(Box::new(l), Box::new(r))),
                (inner.clone(), inner).prop_map(|(l, r)| Filter::Or(Box::new(l), Box::new(r))),
            ]
        })
        .boxed()
    }

    /// Filters as they may appear inside `[...]`: plain names, no value paths.
    fn value_filter() -> BoxedStrategy<Filter> {
        let leaf = (name(), test_())
            .prop_map(|(attr, test)| Filter::Attr {
                path: path(&attr),
                test,
            })
            .boxed();
        combine(leaf, 2)
    }

    fn filter() -> BoxedStrategy<Filter> {
        let value_path_attr = attr_path().prop_map(|p| AttrPath {
            sub_attr: None,
            ..p
        });
        let leaf = prop_oneof![
            3 => (attr_path(), test_()).prop_map(|(path, test)| Filter::Attr { path, test }),
            1 => (
                value_path_attr,
                value_filter(),
                prop::option::of((name(), test_()))
            )
                .prop_map(|(attr, filter, sub)| Filter::ValuePath {
                    attr,
                    filter: Box::new(filter),
                    sub,
                }),
        ]
        .boxed();
        combine(leaf, 4)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn display_parses_back_to_an_equal_filter(f in filter()) {
            let text = f.to_string();
            prop_assert_eq!(parse_filter(&text), Ok(f), "printed as {}", text);
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(text in ".{0,80}") {
            let _ = parse_filter(&text);
        }

        #[test]
        fn parsing_filter_like_noise_never_panics(
            text in r#"([a-z]{1,3}|eq|pr|and|or|not|"|\\|\(|\)|\[|\]|\.|:|urn:a:b:|-?[0-9]{1,3}|\\u[0-9a-f]{0,4}| ){0,40}"#
        ) {
            let _ = parse_filter(&text);
        }
    }
}
