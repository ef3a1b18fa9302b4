//! Syntax tree to compiled tree: resolves function names, checks arity and argument types,
//! asks the resolver for reference types, and builds everything that can be built once
//! (regexes, date patterns) so that evaluation only computes.
//!
//! The function library is [`FUNCTIONS`]; what each function does at run time, including
//! with null, is documented on [`Func`].

use regex::{Regex, RegexBuilder};

use super::parse::{Ast, AstKind, shorten};
use super::{CompileError, Resolver, Type, Value, date};

/// Compiled size limit of one regex (bytes of the compiled program and of the lazy DFA
/// cache). Patterns come from configuration; the limit keeps a `\w{1000}{1000}` from
/// eating memory at load.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Deepest group/repetition nesting in a regex.
const REGEX_NEST_LIMIT: u32 = 64;

/// The functions. Null means "absent"; unless stated, a null source gives null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Func {
    /// `Append(source, suffix)`: source followed by suffix; a null suffix appends nothing.
    Append,
    /// `Coalesce(a, b, …)`: the first argument that is present (not null, not "", not an
    /// empty list), converted to the common type; null when none is.
    Coalesce,
    /// `Join(separator, a, b, …)`: the present values joined by separator, list elements
    /// each counting as a value; null and empty values are skipped; null when nothing is
    /// left. A null separator joins with "".
    Join,
    /// `Switch(source, default, key1, value1, …)`: the value of the first key equal to
    /// source (case-sensitive, as Entra), else default. A null source, and null keys, match
    /// nothing, so give default.
    Switch,
    /// `IIF(condition, whenTrue, whenFalse)`; a null (or non-boolean) condition gives null:
    /// an absent flag is not "false".
    Iif,
    /// `ToLower(source[, culture])`: Unicode lowercase. The culture is accepted for Entra
    /// compatibility and ignored: case mapping here is culture-invariant.
    ToLower,
    /// `ToUpper(source[, culture])`: as `ToLower`.
    ToUpper,
    /// `Replace(source, find, replacement)`: every occurrence of the literal `find`; an
    /// empty or null `find` leaves source unchanged; a null replacement removes. The
    /// four-argument regex form is [`Node::RegexReplace`].
    Replace,
    /// `Left(source, n)`: the first n characters (Unicode scalar values, not bytes and not
    /// grapheme clusters: "e\u{301}" is two). A literal negative n is a compile error, a
    /// computed one gives null.
    Left,
    /// `Mid(source, start, length)`: `length` characters from the 1-based `start`; the part
    /// that exists when the range runs past the end ("" when start is past it). A literal
    /// start below 1 or negative length is a compile error, a computed one gives null.
    Mid,
    /// `Split(source, delimiter)`: a list of the pieces between occurrences of the whole
    /// delimiter string. Empty pieces are dropped (directory targets refuse empty values),
    /// so "" gives the empty list. A null or empty delimiter gives `[source]`.
    Split,
    /// `Trim(source)`: Unicode whitespace removed from both ends.
    Trim,
    /// `NormalizeDiacritics(source)`: see `text::normalize_diacritics`.
    NormalizeDiacritics,
    /// `StripSpaces(source)`: every Unicode whitespace character removed.
    StripSpaces,
    /// `Word(source, n, delimiters)`: the n-th (1-based) non-empty word, splitting on any
    /// character of delimiters; null when there are fewer words. A null or empty delimiters
    /// makes the whole source word 1. Literal n below 1 is a compile error, computed gives
    /// null.
    Word,
    /// `Not(condition)`; null stays null.
    Not,
    /// `IsPresent(x)`: true unless x is null, "" or an empty list. Never null.
    IsPresent,
    /// `IsNullOrEmpty(x)`: `Not(IsPresent(x))`. Never null.
    IsNullOrEmpty,
    /// `DateFormat(source, inputFormat, outputFormat)`: see [`Node::DateFormat`].
    DateFormat,
}

#[derive(Debug, Clone, Copy)]
enum Arity {
    Exactly(usize),
    Between(usize, usize),
    AtLeast(usize),
    /// Switch: source, default, then key/value pairs, at least one.
    Pairs,
}

pub(super) struct FuncInfo {
    func: Func,
    /// Entra's spelling; lookup ignores case.
    name: &'static str,
    signature: &'static str,
    arity: Arity,
}

pub(super) const FUNCTIONS: &[FuncInfo] = &[
    FuncInfo {
        func: Func::Append,
        name: "Append",
        signature: "Append(source, suffix)",
        arity: Arity::Exactly(2),
    },
    FuncInfo {
        func: Func::Coalesce,
        name: "Coalesce",
        signature: "Coalesce(value, value, …)",
        arity: Arity::AtLeast(1),
    },
    FuncInfo {
        func: Func::Join,
        name: "Join",
        signature: "Join(separator, value, value, …)",
        arity: Arity::AtLeast(2),
    },
    FuncInfo {
        func: Func::Switch,
        name: "Switch",
        signature: "Switch(source, default, key, value, key, value, …)",
        arity: Arity::Pairs,
    },
    FuncInfo {
        func: Func::Iif,
        name: "IIF",
        signature: "IIF(condition, whenTrue, whenFalse)",
        arity: Arity::Exactly(3),
    },
    FuncInfo {
        func: Func::ToLower,
        name: "ToLower",
        signature: "ToLower(source[, culture])",
        arity: Arity::Between(1, 2),
    },
    FuncInfo {
        func: Func::ToUpper,
        name: "ToUpper",
        signature: "ToUpper(source[, culture])",
        arity: Arity::Between(1, 2),
    },
    FuncInfo {
        func: Func::Replace,
        name: "Replace",
        signature: "Replace(source, find, replacement[, \"regex\"])",
        arity: Arity::Between(3, 4),
    },
    FuncInfo {
        func: Func::Left,
        name: "Left",
        signature: "Left(source, length)",
        arity: Arity::Exactly(2),
    },
    FuncInfo {
        func: Func::Mid,
        name: "Mid",
        signature: "Mid(source, start, length)",
        arity: Arity::Exactly(3),
    },
    FuncInfo {
        func: Func::Split,
        name: "Split",
        signature: "Split(source, delimiter)",
        arity: Arity::Exactly(2),
    },
    FuncInfo {
        func: Func::Trim,
        name: "Trim",
        signature: "Trim(source)",
        arity: Arity::Exactly(1),
    },
    FuncInfo {
        func: Func::NormalizeDiacritics,
        name: "NormalizeDiacritics",
        signature: "NormalizeDiacritics(source)",
        arity: Arity::Exactly(1),
    },
    FuncInfo {
        func: Func::StripSpaces,
        name: "StripSpaces",
        signature: "StripSpaces(source)",
        arity: Arity::Exactly(1),
    },
    FuncInfo {
        func: Func::Word,
        name: "Word",
        signature: "Word(source, number, delimiters)",
        arity: Arity::Exactly(3),
    },
    FuncInfo {
        func: Func::Not,
        name: "Not",
        signature: "Not(condition)",
        arity: Arity::Exactly(1),
    },
    FuncInfo {
        func: Func::IsPresent,
        name: "IsPresent",
        signature: "IsPresent(value)",
        arity: Arity::Exactly(1),
    },
    FuncInfo {
        func: Func::IsNullOrEmpty,
        name: "IsNullOrEmpty",
        signature: "IsNullOrEmpty(value)",
        arity: Arity::Exactly(1),
    },
    FuncInfo {
        func: Func::DateFormat,
        name: "DateFormat",
        signature: "DateFormat(source, inputFormat, outputFormat)",
        arity: Arity::Exactly(3),
    },
];

/// Entra functions this language does not have, with what to write instead; checked
/// before did-you-mean so an Entra-fluent admin gets a pointer, not a near miss.
const ENTRA_ONLY: &[(&str, &str)] = &[
    (
        "FormatDateTime",
        "use DateFormat(source, inputFormat, outputFormat)",
    ),
    (
        "IsNull",
        "use IsNullOrEmpty(value) or Not(IsPresent(value))",
    ),
    ("IsString", "values are converted to strings implicitly"),
    ("CStr", "values are converted to strings implicitly"),
    (
        "CBool",
        "strings reading true/false are converted to booleans implicitly",
    ),
    ("ToTitleCase", "not supported by scim-bridge"),
    ("PCase", "not supported by scim-bridge"),
    (
        "Guid",
        "not supported by scim-bridge: values must be reproducible",
    ),
    (
        "RandomString",
        "not supported by scim-bridge: values must be reproducible",
    ),
    (
        "Now",
        "not supported by scim-bridge: values must be reproducible",
    ),
    ("SelectUniqueValue", "not supported by scim-bridge"),
    ("SingleAppRoleAssignment", "not supported by scim-bridge"),
    ("AppRoleAssignmentsComplex", "not supported by scim-bridge"),
    ("InStr", "not supported by scim-bridge"),
    ("Count", "not supported by scim-bridge"),
    ("RemoveDuplicates", "not supported by scim-bridge"),
    ("ConvertToBase64", "not supported by scim-bridge"),
    ("ConvertToUTF8Hex", "not supported by scim-bridge"),
    ("DateAdd", "not supported by scim-bridge"),
    ("DateDiff", "not supported by scim-bridge"),
    ("DateFromNum", "not supported by scim-bridge"),
    ("NumFromDate", "not supported by scim-bridge"),
    ("BitAnd", "not supported by scim-bridge"),
];

/// Finds a function by name, ignoring case.
pub(super) fn lookup(name: &str) -> Option<&'static FuncInfo> {
    FUNCTIONS.iter().find(|f| f.name.eq_ignore_ascii_case(name))
}

/// A compiled node.
#[derive(Debug, Clone)]
pub(super) enum Node {
    Lit(Value),
    /// `index` into the expression's reference list; `ty` is what the resolver declared,
    /// and the source's value is converted to it.
    Ref {
        index: usize,
        ty: Type,
    },
    /// `ty` is the call's result type: Coalesce, Switch and IIF convert the chosen value to
    /// it. ToLower/ToUpper keep only their source (the culture is never evaluated).
    Call {
        func: Func,
        args: Vec<Node>,
        ty: Type,
    },
    /// `Replace(source, pattern, replacement, "regex")`: every match replaced. In a literal
    /// replacement `$1`, `${name}` and `$$` are expanded (regex crate syntax: `$1a` names
    /// the group `1a`, so write `${1}a`; compilation checks that every group named
    /// exists). A computed replacement is inserted verbatim: it is attribute data, and a
    /// `$` in someone's value must not vanish. A null replacement removes the matches.
    RegexReplace {
        source: Box<Node>,
        regex: Regex,
        replacement: Box<Node>,
        expand: bool,
    },
    /// `DateFormat(source, inputFormat, outputFormat)`: parses source with inputFormat and
    /// writes it with outputFormat, in UTC (see `date.rs` for the pattern language). An
    /// unparsable source, or an invalid computed format, gives null.
    DateFormat {
        source: Box<Node>,
        input: DateArg,
        output: DateArg,
    },
}

/// A date format: built at compile time when written as a literal, else parsed per
/// evaluation.
#[derive(Debug, Clone)]
pub(super) enum DateArg {
    Fixed(date::DateSpec),
    Computed(Box<Node>),
}

/// What a function parameter accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    /// A string, a boolean or number (converted), or unknown.
    Str,
    /// A boolean, unknown, or the literal "True"/"False".
    Bool,
    /// A number or unknown.
    Int,
    /// Anything, lists included.
    Any,
}

struct Checker<'a> {
    resolver: &'a dyn Resolver,
    refs: &'a mut Vec<String>,
}

pub(super) fn check(
    ast: &Ast,
    resolver: &dyn Resolver,
    refs: &mut Vec<String>,
) -> Result<(Node, Type), CompileError> {
    Checker { resolver, refs }.node(ast)
}

impl Checker<'_> {
    fn node(&mut self, ast: &Ast) -> Result<(Node, Type), CompileError> {
        match &ast.kind {
            AstKind::Str(s) => Ok((Node::Lit(Value::Str(s.clone())), Type::Str)),
            AstKind::Int(n) => Ok((Node::Lit(Value::Int(*n)), Type::Int)),
            AstKind::Bool(b) => Ok((Node::Lit(Value::Bool(*b)), Type::Bool)),
            AstKind::Null => Ok((Node::Lit(Value::Null), Type::Any)),
            AstKind::Ref { path, path_offset } => {
                let ty = self
                    .resolver
                    .type_of(path)
                    .map_err(|message| CompileError::new(*path_offset, path.len(), message))?;
                let index = match self.refs.iter().position(|p| p == path) {
                    Some(i) => i,
                    None => {
                        self.refs.push(path.clone());
                        self.refs.len() - 1
                    }
                };
                Ok((Node::Ref { index, ty }, ty))
            }
            AstKind::Call {
                name,
                name_len,
                args,
            } => self.call(ast, name, *name_len, args),
        }
    }

    fn call(
        &mut self,
        ast: &Ast,
        name: &str,
        name_len: usize,
        args: &[Ast],
    ) -> Result<(Node, Type), CompileError> {
        let info = lookup(name).ok_or_else(|| unknown_function(ast.offset, name_len, name))?;
        check_arity(info, ast, name_len, args)?;
        let mut nodes = Vec::with_capacity(args.len());
        let mut types = Vec::with_capacity(args.len());
        for arg in args {
            let (node, ty) = self.node(arg)?;
            nodes.push(node);
            types.push(ty);
        }
        let c = Call {
            name: info.name,
            args,
            types: &types,
        };
        let ty = match info.func {
            Func::Append => {
                c.expect_all(&[Param::Str, Param::Str])?;
                Type::Str
            }
            Func::Coalesce => c.common_type(&(0..args.len()).collect::<Vec<_>>())?,
            Func::Join => {
                c.expect(0, Param::Str)?;
                for i in 1..args.len() {
                    c.expect(i, Param::Any)?;
                }
                Type::Str
            }
            Func::Switch => {
                c.expect(0, Param::Str)?;
                let mut results = vec![1];
                for i in (2..args.len()).step_by(2) {
                    c.expect(i, Param::Str)?;
                    results.push(i + 1);
                }
                c.common_type(&results)?
            }
            Func::Iif => {
                c.expect(0, Param::Bool)?;
                c.common_type(&[1, 2])?
            }
            Func::ToLower | Func::ToUpper => {
                c.expect(0, Param::Str)?;
                if args.len() == 2 {
                    c.expect(1, Param::Str)?;
                    nodes.truncate(1);
                }
                Type::Str
            }
            Func::Replace => {
                c.expect_all(&[Param::Str, Param::Str, Param::Str])?;
                if args.len() == 4 {
                    return regex_replace(&c, nodes);
                }
                if let AstKind::Str(find) = &args[1].kind
                    && find.is_empty()
                {
                    return Err(c.error_at(1, "must not be empty (it is the text to find)"));
                }
                Type::Str
            }
            Func::Left => {
                c.expect_all(&[Param::Str, Param::Int])?;
                c.literal_at_least(1, 0, "the length")?;
                Type::Str
            }
            Func::Mid => {
                c.expect_all(&[Param::Str, Param::Int, Param::Int])?;
                c.literal_at_least(1, 1, "characters are numbered from 1")?;
                c.literal_at_least(2, 0, "the length")?;
                Type::Str
            }
            Func::Split => {
                c.expect_all(&[Param::Str, Param::Str])?;
                Type::List
            }
            Func::Trim | Func::NormalizeDiacritics | Func::StripSpaces => {
                c.expect(0, Param::Str)?;
                Type::Str
            }
            Func::Word => {
                c.expect_all(&[Param::Str, Param::Int, Param::Str])?;
                c.literal_at_least(1, 1, "words are numbered from 1")?;
                Type::Str
            }
            Func::Not => {
                c.expect(0, Param::Bool)?;
                Type::Bool
            }
            Func::IsPresent | Func::IsNullOrEmpty => Type::Bool,
            Func::DateFormat => {
                c.expect_all(&[Param::Str, Param::Str, Param::Str])?;
                return date_format(&c, nodes);
            }
        };
        Ok((
            Node::Call {
                func: info.func,
                args: nodes,
                ty,
            },
            ty,
        ))
    }
}

/// The four-argument Replace: the pattern must be a literal so it is compiled (and
/// rejected) when the mapping loads, never per record.
fn regex_replace(c: &Call<'_>, nodes: Vec<Node>) -> Result<(Node, Type), CompileError> {
    match &c.args[3].kind {
        AstKind::Str(mode) if mode.eq_ignore_ascii_case("regex") => {}
        AstKind::Str(mode) => {
            return Err(c.error_at(
                3,
                &format!(
                    "must be \"regex\" (the only mode), got \"{}\"",
                    shorten(mode)
                ),
            ));
        }
        _ => return Err(c.error_at(3, "must be the literal \"regex\"")),
    }
    let AstKind::Str(pattern) = &c.args[1].kind else {
        return Err(c.error_at(
            1,
            "must be a string literal: the regex is compiled when the mapping loads",
        ));
    };
    let regex = RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(REGEX_NEST_LIMIT)
        .build()
        .map_err(|e| {
            let arg = &c.args[1];
            CompileError::new(
                arg.offset,
                arg.len,
                format!(
                    "'{}': invalid regex: {}",
                    shorten(pattern),
                    regex_error_summary(&e)
                ),
            )
        })?;
    let expand = match &c.args[2].kind {
        AstKind::Str(replacement) => {
            check_replacement(replacement, &regex).map_err(|m| {
                let arg = &c.args[2];
                CompileError::new(arg.offset, arg.len, m)
            })?;
            true
        }
        _ => false,
    };
    let mut nodes = nodes.into_iter();
    let (Some(source), _, Some(replacement)) = (nodes.next(), nodes.next(), nodes.next()) else {
        // Unreachable: arity was checked. Kept as an error rather than a panic.
        return Err(c.error_at(0, "internal error: missing arguments"));
    };
    Ok((
        Node::RegexReplace {
            source: Box::new(source),
            regex,
            replacement: Box::new(replacement),
            expand,
        },
        Type::Str,
    ))
}

fn date_format(c: &Call<'_>, nodes: Vec<Node>) -> Result<(Node, Type), CompileError> {
    let mut nodes = nodes.into_iter();
    let (Some(source), Some(input), Some(output)) = (nodes.next(), nodes.next(), nodes.next())
    else {
        return Err(c.error_at(0, "internal error: missing arguments"));
    };
    let arg = |i: usize, node: Node, is_input: bool| -> Result<DateArg, CompileError> {
        let ast = &c.args[i];
        let AstKind::Str(format) = &ast.kind else {
            return Ok(DateArg::Computed(Box::new(node)));
        };
        let spec = date::DateSpec::parse(format)
            .and_then(|spec| {
                if is_input {
                    spec.check_input().map(|()| spec)
                } else {
                    Ok(spec)
                }
            })
            .map_err(|m| CompileError::new(ast.offset, ast.len, format!("DateFormat: {m}")))?;
        Ok(DateArg::Fixed(spec))
    };
    let input = arg(1, input, true)?;
    let output = arg(2, output, false)?;
    Ok((
        Node::DateFormat {
            source: Box::new(source),
            input,
            output,
        },
        Type::Str,
    ))
}

/// One call being checked: its arguments' syntax and static types.
struct Call<'a> {
    name: &'static str,
    args: &'a [Ast],
    types: &'a [Type],
}

impl Call<'_> {
    fn error_at(&self, i: usize, what: &str) -> CompileError {
        let arg = &self.args[i];
        CompileError::new(
            arg.offset,
            arg.len,
            format!("{}: argument {} {what}", self.name, i + 1),
        )
    }

    fn expect_all(&self, params: &[Param]) -> Result<(), CompileError> {
        for (i, &param) in params.iter().enumerate() {
            self.expect(i, param)?;
        }
        Ok(())
    }

    fn expect(&self, i: usize, param: Param) -> Result<(), CompileError> {
        let (Some(arg), Some(&found)) = (self.args.get(i), self.types.get(i)) else {
            return Ok(());
        };
        let ok = match (param, found) {
            (Param::Any, _) | (_, Type::Any) => true,
            (Param::Str, t) => t != Type::List,
            (Param::Bool, Type::Bool) => true,
            (Param::Bool, Type::Str) => matches!(
                &arg.kind,
                AstKind::Str(s) if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false")
            ),
            (Param::Bool, _) => false,
            (Param::Int, t) => t == Type::Int,
        };
        if ok {
            return Ok(());
        }
        let expected = match param {
            Param::Str => Type::Str,
            Param::Bool => Type::Bool,
            Param::Int => Type::Int,
            Param::Any => Type::Any,
        };
        let hint = match (param, found, &arg.kind) {
            (Param::Str, Type::List, _) => " (use Join to make one string from a list)",
            (Param::Int, Type::Str, AstKind::Str(s)) if s.trim().parse::<i64>().is_ok() => {
                " (write the number without quotes)"
            }
            (Param::Bool, Type::Str, _) => {
                " (IsPresent or IsNullOrEmpty turn a value into a boolean)"
            }
            _ => "",
        };
        Err(self.error_at(
            i,
            &format!("must be {}, got {}{hint}", expected.noun(), found.noun()),
        ))
    }

    /// A literal integer argument below `min` is refused now; a computed one gives null at
    /// run time (documented per function).
    fn literal_at_least(&self, i: usize, min: i64, why: &str) -> Result<(), CompileError> {
        match self.args.get(i).map(|a| &a.kind) {
            Some(AstKind::Int(n)) if *n < min => Err(self.error_at(
                i,
                &if min == 0 {
                    format!("must not be negative ({why}), got {n}")
                } else {
                    format!("must be at least {min} ({why}), got {n}")
                },
            )),
            _ => Ok(()),
        }
    }

    /// The type the values at `indices` share: unknown values adapt; a mix of scalars is a
    /// string; a list mixed with a scalar is refused, since a list has no string form.
    fn common_type(&self, indices: &[usize]) -> Result<Type, CompileError> {
        let mut common: Option<(Type, usize)> = None;
        for &i in indices {
            let Some(&ty) = self.types.get(i) else {
                continue;
            };
            if ty == Type::Any {
                continue;
            }
            common = match common {
                None => Some((ty, i)),
                Some((c, first)) if c == ty => Some((c, first)),
                Some((c, first)) if c == Type::List || ty == Type::List => {
                    return Err(self.error_at(
                        i,
                        &format!(
                            "is {} but argument {} is {}; a list mixes only with lists (use \
                             Join to make one string)",
                            ty.noun(),
                            first + 1,
                            c.noun()
                        ),
                    ));
                }
                Some((_, first)) => Some((Type::Str, first)),
            };
        }
        Ok(common.map_or(Type::Any, |(t, _)| t))
    }
}

fn check_arity(
    info: &FuncInfo,
    ast: &Ast,
    name_len: usize,
    args: &[Ast],
) -> Result<(), CompileError> {
    let n = args.len();
    let (ok, expected) = match info.arity {
        Arity::Exactly(k) => (n == k, plural(k)),
        Arity::Between(lo, hi) => ((lo..=hi).contains(&n), format!("{lo} or {}", plural(hi))),
        Arity::AtLeast(k) => (n >= k, format!("at least {}", plural(k))),
        Arity::Pairs => {
            if n >= 3 && n % 2 == 1 {
                let last = &args[n - 1];
                return Err(CompileError::new(
                    last.offset,
                    last.len,
                    format!(
                        "{}: argument {n} is a key without a value (after source and default, \
                         keys and values come in pairs: {})",
                        info.name, info.signature
                    ),
                ));
            }
            (n >= 4, "at least 4 arguments".to_owned())
        }
    };
    if ok {
        return Ok(());
    }
    Err(CompileError::new(
        ast.offset,
        name_len,
        format!(
            "{}: expects {expected}, {}; got {n}",
            info.name, info.signature
        ),
    ))
}

fn plural(k: usize) -> String {
    if k == 1 {
        "1 argument".to_owned()
    } else {
        format!("{k} arguments")
    }
}

fn unknown_function(offset: usize, len: usize, name: &str) -> CompileError {
    if let Some((entra, hint)) = ENTRA_ONLY
        .iter()
        .find(|(entra, _)| entra.eq_ignore_ascii_case(name))
    {
        return CompileError::new(
            offset,
            len,
            format!("'{name}': Entra function {entra} is not available ({hint})"),
        );
    }
    let lower = name.to_ascii_lowercase();
    let best = FUNCTIONS
        .iter()
        .map(|f| (edit_distance(&lower, &f.name.to_ascii_lowercase()), f.name))
        .min_by_key(|&(d, _)| d);
    // A third of the name may be wrong: "Jion" (1 transposition) is Join, "Foo" is nothing.
    let suggestion = match best {
        Some((d, candidate)) if d <= (name.len() / 3).max(1) => {
            format!(" (did you mean '{candidate}'?)")
        }
        _ => String::new(),
    };
    CompileError::new(
        offset,
        len,
        format!("'{name}': unknown function{suggestion}"),
    )
}

use crate::suggest::edit_distance;

/// The one-line reason from a regex error (the syntax error's own text spans several
/// lines, repeating the pattern with a caret).
fn regex_error_summary(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => text
            .lines()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or("syntax error")
            .to_owned(),
        regex::Error::CompiledTooBig(limit) => {
            format!("the compiled regex exceeds the size limit of {limit} bytes")
        }
        _ => e.to_string(),
    }
}

/// Checks `$group` references in a literal regex replacement against the pattern's groups,
/// with the regex crate's rules: `$$` is a dollar, `${name}` is braced, `$name` takes the
/// longest run of `[A-Za-z0-9_]`, and a `$` followed by anything else is literal. A missing
/// group would silently expand to "".
fn check_replacement(replacement: &str, regex: &Regex) -> Result<(), String> {
    let bytes = replacement.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        let rest = &replacement[i + 1..];
        if rest.starts_with('$') {
            i += 2;
            continue;
        }
        let (name, consumed, braced) = if let Some(inner) = rest.strip_prefix('{') {
            match inner.find('}') {
                Some(end) if end > 0 => (&inner[..end], end + 2, true),
                _ => {
                    i += 1;
                    continue;
                }
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], end, false)
        };
        if name.is_empty() {
            i += 1;
            continue;
        }
        let exists = match name.parse::<usize>() {
            Ok(index) => index < regex.captures_len(),
            Err(_) => regex.capture_names().flatten().any(|n| n == name),
        };
        if !exists {
            let digits = name.find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
            let hint = if !braced && digits > 0 {
                format!(
                    " (write ${{{}}}{} for group {} followed by '{}')",
                    &name[..digits],
                    &name[digits..],
                    &name[..digits],
                    &name[digits..]
                )
            } else {
                format!(
                    " (the pattern has {} numbered group(s){})",
                    regex.captures_len().saturating_sub(1),
                    named_groups(regex)
                )
            };
            return Err(format!(
                "'${}': Replace: the pattern has no group '{name}'{hint}",
                if braced {
                    format!("{{{name}}}")
                } else {
                    name.to_owned()
                }
            ));
        }
        i += 1 + consumed;
    }
    Ok(())
}

fn named_groups(regex: &Regex) -> String {
    let names: Vec<&str> = regex.capture_names().flatten().collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" and named {}", names.join(", "))
    }
}

/// The most characters `node` can evaluate to, as text; `None` when it is unbounded
/// (an attribute value, a list, a regex replacement, a date). Conservative: case mapping
/// may turn one character into three (`ToLower("İ")` is two, `ToUpper("ﬃ")` three), so
/// a bound goes outside it: `Left(ToLower(x), 20)`, not `ToLower(Left(x, 20))`.
pub(super) fn max_chars(node: &Node) -> Option<usize> {
    let literal_int = |node: &Node| match node {
        Node::Lit(Value::Int(n)) => usize::try_from(*n).ok(),
        _ => None,
    };
    match node {
        Node::Lit(v) => match v {
            Value::Null => Some(0),
            Value::Str(s) => Some(s.chars().count()),
            Value::Bool(_) => Some("False".len()),
            Value::Int(n) => Some(n.to_string().len()),
            Value::List(_) => None,
        },
        Node::Ref { .. } | Node::RegexReplace { .. } | Node::DateFormat { .. } => None,
        Node::Call { func, args, .. } => {
            let arg = |i: usize| args.get(i).and_then(max_chars);
            let max_of = |nodes: &[Node]| {
                nodes
                    .iter()
                    .map(max_chars)
                    .try_fold(0, |acc, m| m.map(|m| acc.max(m)))
            };
            match func {
                Func::Left => match (literal_int(args.get(1)?), arg(0)) {
                    (Some(n), Some(source)) => Some(n.min(source)),
                    (Some(n), None) => Some(n),
                    (None, source) => source,
                },
                Func::Mid => match (literal_int(args.get(2)?), arg(0)) {
                    (Some(n), Some(source)) => Some(n.min(source)),
                    (Some(n), None) => Some(n),
                    (None, source) => source,
                },
                Func::Append => Some(arg(0)? + arg(1)?),
                Func::Coalesce => max_of(args),
                Func::Join => {
                    let separator = arg(0)?;
                    let values = &args[1..];
                    let total = values
                        .iter()
                        .map(max_chars)
                        .try_fold(0usize, |acc, m| m.map(|m| acc + m))?;
                    Some(total + separator * values.len().saturating_sub(1))
                }
                // source, default, then key/value pairs: the result is a value or default.
                Func::Switch => {
                    let mut results = vec![args.get(1)?];
                    results.extend(args.iter().skip(3).step_by(2));
                    results
                        .into_iter()
                        .map(max_chars)
                        .try_fold(0, |acc, m| m.map(|m| acc.max(m)))
                }
                Func::Iif => Some(arg(1)?.max(arg(2)?)),
                Func::ToLower | Func::ToUpper => arg(0)?.checked_mul(3),
                Func::Replace => {
                    let find = match args.get(1)? {
                        Node::Lit(Value::Str(s)) if !s.is_empty() => s.chars().count(),
                        _ => return None,
                    };
                    let replacement = match args.get(2)? {
                        Node::Lit(Value::Null) => 0,
                        Node::Lit(Value::Str(s)) => s.chars().count(),
                        _ => return None,
                    };
                    (replacement <= find).then(|| arg(0)).flatten()
                }
                Func::Trim | Func::StripSpaces | Func::Word => arg(0),
                // Folds such as "æ" → "ae" may double a character.
                Func::NormalizeDiacritics => arg(0)?.checked_mul(2),
                Func::Not | Func::IsPresent | Func::IsNullOrEmpty => Some("False".len()),
                Func::Split | Func::DateFormat => None,
            }
        }
    }
}
