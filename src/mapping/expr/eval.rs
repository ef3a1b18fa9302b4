//! Evaluation of a compiled tree. Total: every path returns a value, and anything that
//! cannot be computed (a null source, a negative computed count, an unparsable date, a
//! value of a type that cannot be converted) is [`Value::Null`]. Arguments are evaluated
//! lazily where the function allows (Coalesce stops at the first present value; Switch
//! and IIF evaluate only the branch they pick).

use std::borrow::Cow;

use regex::{Captures, Regex, Replacer};

use super::check::{DateArg, Func, Node};
use super::date::DateSpec;
use super::text;
use super::{Source, Type, Value};

pub(super) fn eval(node: &Node, refs: &[String], source: &dyn Source) -> Value {
    Evaluator { refs, source }.node(node)
}

struct Evaluator<'a> {
    refs: &'a [String],
    source: &'a dyn Source,
}

/// A value where a string is expected: booleans and numbers convert, lists do not.
fn to_str(v: Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(s),
        Value::Bool(true) => Some("True".to_owned()),
        Value::Bool(false) => Some("False".to_owned()),
        Value::Int(n) => Some(n.to_string()),
        Value::Null | Value::List(_) => None,
    }
}

/// A value where a boolean is expected: strings reading true/false in any case convert.
fn to_bool(v: Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(b),
        Value::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A value where a number is expected: numbers only.
fn to_int(v: Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(n),
        _ => None,
    }
}

/// Converts a value to a static type, so that a node's value is always null or of its
/// static type: a source may return something other than the resolver declared, and an
/// `Any` branch of Coalesce may pick anything.
fn coerce(v: Value, ty: Type) -> Value {
    match ty {
        Type::Any => v,
        Type::Str => to_str(v).map_or(Value::Null, Value::Str),
        Type::Bool => to_bool(v).map_or(Value::Null, Value::Bool),
        Type::Int => to_int(v).map_or(Value::Null, Value::Int),
        Type::List => match v {
            Value::List(items) => Value::List(items),
            // A single value where several are allowed is a one-element list.
            Value::Str(s) if s.is_empty() => Value::List(Vec::new()),
            other => match to_str(other) {
                Some(s) => Value::List(vec![s]),
                None => Value::Null,
            },
        },
    }
}

fn str_or_null(s: Option<String>) -> Value {
    s.map_or(Value::Null, Value::Str)
}

/// Longest result Replace may produce. Replace is the one function whose output can be a
/// multiple of its input (every match of a short pattern replaced by long text), and the
/// input is untrusted; past this size the result is null rather than gigabytes.
pub(super) const MAX_REPLACE_RESULT: usize = 1 << 20;

/// Every occurrence of a non-empty `find`, sized before building anything.
fn literal_replace(s: &str, find: &str, replacement: &str) -> Option<String> {
    let count = s.matches(find).count();
    let len = (s.len() - count * find.len()).checked_add(count.checked_mul(replacement.len())?)?;
    if len > MAX_REPLACE_RESULT {
        return None;
    }
    Some(s.replace(find, replacement))
}

/// Regex replacement that stops expanding once the output passes
/// [`MAX_REPLACE_RESULT`], so a hostile source cannot make it allocate without bound.
fn regex_replace(regex: &Regex, s: &str, template: &str, expand: bool) -> Option<String> {
    struct Capped<'t> {
        template: &'t str,
        expand: bool,
        over: bool,
    }
    impl Replacer for Capped<'_> {
        fn replace_append(&mut self, caps: &Captures<'_>, dst: &mut String) {
            if self.over {
                return;
            }
            if self.expand {
                caps.expand(self.template, dst);
            } else {
                dst.push_str(self.template);
            }
            self.over = dst.len() > MAX_REPLACE_RESULT;
        }
    }
    let mut capped = Capped {
        template,
        expand,
        over: false,
    };
    let out = regex.replace_all(s, capped.by_ref()).into_owned();
    (!capped.over && out.len() <= MAX_REPLACE_RESULT).then_some(out)
}

impl Evaluator<'_> {
    fn node(&self, node: &Node) -> Value {
        match node {
            Node::Lit(v) => v.clone(),
            Node::Ref { index, ty } => match self.refs.get(*index) {
                Some(path) => coerce(self.source.value_of(path), *ty),
                None => Value::Null,
            },
            Node::Call { func, args, ty } => self.call(*func, args, *ty),
            Node::RegexReplace {
                source,
                regex,
                replacement,
                expand,
            } => {
                let Some(s) = self.text(source) else {
                    return Value::Null;
                };
                let template = self.text(replacement).unwrap_or_default();
                str_or_null(regex_replace(regex, &s, &template, *expand))
            }
            Node::DateFormat {
                source,
                input,
                output,
            } => str_or_null(self.date_format(source, input, output)),
        }
    }

    fn text(&self, node: &Node) -> Option<String> {
        to_str(self.node(node))
    }

    fn int(&self, node: &Node) -> Option<i64> {
        to_int(self.node(node))
    }

    fn arg_text(&self, args: &[Node], i: usize) -> Option<String> {
        args.get(i).and_then(|n| self.text(n))
    }

    fn arg_int(&self, args: &[Node], i: usize) -> Option<i64> {
        args.get(i).and_then(|n| self.int(n))
    }

    fn arg(&self, args: &[Node], i: usize) -> Value {
        args.get(i).map_or(Value::Null, |n| self.node(n))
    }

    fn call(&self, func: Func, args: &[Node], ty: Type) -> Value {
        match func {
            Func::Append => {
                let Some(s) = self.arg_text(args, 0) else {
                    return Value::Null;
                };
                Value::Str(s + &self.arg_text(args, 1).unwrap_or_default())
            }
            Func::Coalesce => args
                .iter()
                .map(|a| self.node(a))
                .find(Value::is_present)
                .map_or(Value::Null, |v| coerce(v, ty)),
            Func::Join => {
                let separator = self.arg_text(args, 0).unwrap_or_default();
                let mut parts = Vec::new();
                for arg in args.iter().skip(1) {
                    match self.node(arg) {
                        Value::List(items) => {
                            parts.extend(items.into_iter().filter(|s| !s.is_empty()))
                        }
                        v => parts.extend(to_str(v).filter(|s| !s.is_empty())),
                    }
                }
                if parts.is_empty() {
                    Value::Null
                } else {
                    Value::Str(parts.join(&separator))
                }
            }
            Func::Switch => {
                if let Some(key) = self.arg_text(args, 0) {
                    for pair in args.get(2..).unwrap_or_default().chunks_exact(2) {
                        if self.text(&pair[0]).as_deref() == Some(key.as_str()) {
                            return coerce(self.node(&pair[1]), ty);
                        }
                    }
                }
                coerce(self.arg(args, 1), ty)
            }
            Func::Iif => match args.first().and_then(|c| to_bool(self.node(c))) {
                Some(true) => coerce(self.arg(args, 1), ty),
                Some(false) => coerce(self.arg(args, 2), ty),
                None => Value::Null,
            },
            Func::ToLower => str_or_null(self.arg_text(args, 0).map(|s| s.to_lowercase())),
            Func::ToUpper => str_or_null(self.arg_text(args, 0).map(|s| s.to_uppercase())),
            Func::Replace => {
                let Some(s) = self.arg_text(args, 0) else {
                    return Value::Null;
                };
                let find = self.arg_text(args, 1).unwrap_or_default();
                if find.is_empty() {
                    // str::replace would insert the replacement between every character.
                    return Value::Str(s);
                }
                let replacement = self.arg_text(args, 2).unwrap_or_default();
                str_or_null(literal_replace(&s, &find, &replacement))
            }
            Func::Left => {
                let (Some(s), Some(n)) = (self.arg_text(args, 0), self.arg_int(args, 1)) else {
                    return Value::Null;
                };
                match u64::try_from(n) {
                    Ok(n) => Value::Str(text::left(&s, n)),
                    Err(_) => Value::Null,
                }
            }
            Func::Mid => {
                let (Some(s), Some(start), Some(len)) = (
                    self.arg_text(args, 0),
                    self.arg_int(args, 1),
                    self.arg_int(args, 2),
                ) else {
                    return Value::Null;
                };
                // Entra's start is 1-based; below 1 is a computed mistake, not "from the start".
                let start = start.checked_sub(1).and_then(|k| u64::try_from(k).ok());
                match (start, u64::try_from(len)) {
                    (Some(start), Ok(len)) => Value::Str(text::mid(&s, start, len)),
                    _ => Value::Null,
                }
            }
            Func::Split => {
                let Some(s) = self.arg_text(args, 0) else {
                    return Value::Null;
                };
                let delimiter = self.arg_text(args, 1).unwrap_or_default();
                let pieces: Vec<String> = if delimiter.is_empty() {
                    vec![s]
                } else {
                    s.split(delimiter.as_str()).map(str::to_owned).collect()
                };
                Value::List(pieces.into_iter().filter(|p| !p.is_empty()).collect())
            }
            Func::Trim => str_or_null(self.arg_text(args, 0).map(|s| s.trim().to_owned())),
            Func::NormalizeDiacritics => str_or_null(
                self.arg_text(args, 0)
                    .map(|s| text::normalize_diacritics(&s)),
            ),
            Func::StripSpaces => {
                str_or_null(self.arg_text(args, 0).map(|s| text::strip_spaces(&s)))
            }
            Func::Word => {
                let (Some(s), Some(n)) = (self.arg_text(args, 0), self.arg_int(args, 1)) else {
                    return Value::Null;
                };
                let Some(skip) = n.checked_sub(1).and_then(|k| usize::try_from(k).ok()) else {
                    return Value::Null;
                };
                let delimiters = self.arg_text(args, 2).unwrap_or_default();
                let word = s
                    .split(|c: char| delimiters.contains(c))
                    .filter(|w| !w.is_empty())
                    .nth(skip);
                str_or_null(word.map(str::to_owned))
            }
            Func::Not => match args.first().and_then(|c| to_bool(self.node(c))) {
                Some(b) => Value::Bool(!b),
                None => Value::Null,
            },
            Func::IsPresent => Value::Bool(self.arg(args, 0).is_present()),
            Func::IsNullOrEmpty => Value::Bool(!self.arg(args, 0).is_present()),
            // Compiled to Node::DateFormat; a Call never carries it.
            Func::DateFormat => Value::Null,
        }
    }

    fn date_spec<'s>(&self, arg: &'s DateArg, is_input: bool) -> Option<Cow<'s, DateSpec>> {
        match arg {
            DateArg::Fixed(spec) => Some(Cow::Borrowed(spec)),
            DateArg::Computed(node) => {
                let spec = DateSpec::parse(&self.text(node)?).ok()?;
                if is_input {
                    spec.check_input().ok()?;
                }
                Some(Cow::Owned(spec))
            }
        }
    }

    fn date_format(&self, source: &Node, input: &DateArg, output: &DateArg) -> Option<String> {
        let text = self.text(source)?;
        let dt = self.date_spec(input, true)?.parse_date(&text)?;
        self.date_spec(output, false)?.format(dt)
    }
}
