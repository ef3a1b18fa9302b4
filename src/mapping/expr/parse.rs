//! Text to syntax tree: a hand-written recursive-descent parser with byte spans on every
//! node. Recursion happens only through call arguments and is capped at [`MAX_DEPTH`], so
//! no input can exhaust the stack; attribute references are scanned iteratively.

use super::{CompileError, MAX_DEPTH, MAX_EXPR_LEN, check};

/// A parsed, unchecked expression node. `offset`/`len` span the node's text (a whole call
/// from its name to its `)`, a whole `[…]` reference).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Ast {
    pub offset: usize,
    pub len: usize,
    pub kind: AstKind,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum AstKind {
    Str(String),
    Int(i64),
    Bool(bool),
    Null,
    /// `path` is the text between the brackets, trimmed; `path_offset` is where it starts,
    /// so resolver errors point at the path itself.
    Ref {
        path: String,
        path_offset: usize,
    },
    Call {
        name: String,
        name_len: usize,
        args: Vec<Ast>,
    },
}

pub(super) fn parse(text: &str) -> Result<Ast, CompileError> {
    if text.len() > MAX_EXPR_LEN {
        return Err(CompileError::new(
            MAX_EXPR_LEN,
            text.len() - MAX_EXPR_LEN,
            format!(
                "expression of {} bytes: too long (the limit is {MAX_EXPR_LEN} bytes)",
                text.len()
            ),
        ));
    }
    let mut p = Parser { text, pos: 0 };
    p.skip_ws();
    if p.peek().is_none() {
        return Err(CompileError::new(
            0,
            0,
            "empty expression: expected a function call, a \"string\", a number, true, false, \
             null or an [attribute]",
        ));
    }
    let ast = p.value(0)?;
    p.skip_ws();
    match p.peek() {
        None => Ok(ast),
        Some(')') => Err(p.error_here("unbalanced ')': nothing left to close")),
        Some(']') => Err(p.error_here("unbalanced ']': no '[' to close")),
        Some(_) => Err(p.error_here(
            "unexpected after the end of the expression (join values with Join or Append)",
        )),
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        let rest = &self.text[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// The token at `pos` as it appears in messages: a word, or one character; shortened
    /// so a stray paste cannot flood the log.
    fn snippet_at(&self, pos: usize) -> (String, usize) {
        let rest = &self.text[pos..];
        let word_len = rest
            .char_indices()
            .find(|&(_, c)| !(c.is_alphanumeric() || c == '_'))
            .map_or(rest.len(), |(i, _)| i);
        let len = if word_len > 0 {
            word_len
        } else {
            rest.chars().next().map_or(0, char::len_utf8)
        };
        (shorten(&rest[..len]), len)
    }

    /// An error at the token at `pos`, message prefixed by the quoted token.
    fn error_here(&self, what: &str) -> CompileError {
        if self.pos >= self.text.len() {
            return CompileError::new(self.pos, 0, format!("end of expression: {what}"));
        }
        let (snippet, len) = self.snippet_at(self.pos);
        CompileError::new(self.pos, len, format!("'{snippet}': {what}"))
    }

    /// One value: literal, reference or call. `depth` is the number of calls enclosing it.
    fn value(&mut self, depth: usize) -> Result<Ast, CompileError> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.error_here("expected a value")),
            Some('"') => self.string(),
            Some('[') => self.reference(),
            Some(c) if c == '-' || c.is_ascii_digit() => self.integer(),
            Some(c) if c.is_ascii_alphabetic() || c == '_' => self.word(depth),
            Some(')') => {
                Err(self
                    .error_here("expected a value before ')' (write null for an omitted argument)"))
            }
            Some(',') => {
                Err(self
                    .error_here("expected a value before ',' (write null for an omitted argument)"))
            }
            Some(']') => Err(self.error_here("unbalanced ']': no '[' to close")),
            Some('\'') => Err(self.error_here(
                "strings use double quotes: \"text\" (single quotes belong inside date formats)",
            )),
            Some(_) => Err(self.error_here(
                "unexpected character: expected a function call, a \"string\", a number, \
                 true, false, null or an [attribute]",
            )),
        }
    }

    fn string(&mut self) -> Result<Ast, CompileError> {
        let start = self.pos;
        let mut out = String::new();
        let mut chars = self.text[start + 1..].char_indices();
        while let Some((i, c)) = chars.next() {
            let at = start + 1 + i;
            match c {
                '"' => {
                    self.pos = at + 1;
                    return Ok(Ast {
                        offset: start,
                        len: self.pos - start,
                        kind: AstKind::Str(out),
                    });
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\'))) => out.push(e),
                    Some((_, e)) => {
                        let len = 1 + e.len_utf8();
                        return Err(CompileError::new(
                            at,
                            len,
                            format!(
                                "'\\{e}': unknown escape in string (only \\\" and \\\\ are \
                                 escapes: write \\\\{e} for a backslash followed by '{e}', as \
                                 regexes need)"
                            ),
                        ));
                    }
                    None => break,
                },
                c => out.push(c),
            }
        }
        let literal = &self.text[start..];
        Err(CompileError::new(
            start,
            literal.len(),
            format!(
                "'{}': unterminated string (add the closing \")",
                shorten(literal)
            ),
        ))
    }

    /// `[path]`: everything up to the matching `]`, counting nested brackets and skipping
    /// quoted strings (filter values may hold `]`). The path is not interpreted here.
    fn reference(&mut self) -> Result<Ast, CompileError> {
        let start = self.pos;
        let mut depth = 0usize;
        let mut in_quote = false;
        let mut escaped = false;
        let mut end = None;
        for (i, c) in self.text[start..].char_indices() {
            if in_quote {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => in_quote = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => in_quote = true,
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(start + i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            let rest = &self.text[start..];
            let what = if in_quote {
                "unterminated string inside an attribute reference (add the closing \" and ])"
            } else {
                "unbalanced '[': the attribute reference has no closing ']'"
            };
            return Err(CompileError::new(
                start,
                rest.len(),
                format!("'{}': {what}", shorten(rest)),
            ));
        };
        let inner = &self.text[start + 1..end];
        let path = inner.trim();
        self.pos = end + 1;
        if path.is_empty() {
            return Err(CompileError::new(
                start,
                self.pos - start,
                format!(
                    "'{}': empty attribute reference (write the attribute's path, e.g. \
                     [displayName])",
                    &self.text[start..self.pos]
                ),
            ));
        }
        let path_offset = start + 1 + (inner.len() - inner.trim_start().len());
        Ok(Ast {
            offset: start,
            len: self.pos - start,
            kind: AstKind::Ref {
                path: path.to_owned(),
                path_offset,
            },
        })
    }

    fn integer(&mut self) -> Result<Ast, CompileError> {
        let start = self.pos;
        let rest = &self.text[start..];
        let sign_len = usize::from(rest.starts_with('-'));
        let digits_len = rest[sign_len..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - sign_len);
        if digits_len == 0 {
            return Err(CompileError::new(
                start,
                1,
                "'-': expected a digit after '-' (negative numbers are written -1)",
            ));
        }
        let end = start + sign_len + digits_len;
        // `3abc` is a typo, not the number 3 followed by junk.
        let tail_len = self.text[end..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(self.text.len() - end);
        if tail_len > 0 {
            let token = &self.text[start..end + tail_len];
            return Err(CompileError::new(
                start,
                token.len(),
                format!("'{}': not a number", shorten(token)),
            ));
        }
        let token = &self.text[start..end];
        let n = token.parse::<i64>().map_err(|_| {
            CompileError::new(
                start,
                token.len(),
                format!(
                    "'{}': number out of range (numbers are 64-bit: {} to {})",
                    shorten(token),
                    i64::MIN,
                    i64::MAX
                ),
            )
        })?;
        self.pos = end;
        Ok(Ast {
            offset: start,
            len: token.len(),
            kind: AstKind::Int(n),
        })
    }

    /// A function call or one of the keywords `true`, `false`, `null` (any case, as
    /// function names are).
    fn word(&mut self, depth: usize) -> Result<Ast, CompileError> {
        let start = self.pos;
        let len = self.text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.text.len() - start);
        let name = &self.text[start..start + len];
        self.pos += len;
        self.skip_ws();
        if self.peek() == Some('(') {
            return self.call(start, name, depth);
        }
        let kind = if name.eq_ignore_ascii_case("true") {
            AstKind::Bool(true)
        } else if name.eq_ignore_ascii_case("false") {
            AstKind::Bool(false)
        } else if name.eq_ignore_ascii_case("null") {
            AstKind::Null
        } else if check::lookup(name).is_some() {
            return Err(CompileError::new(
                start,
                len,
                format!("'{name}': expected '(' after the function name"),
            ));
        } else {
            return Err(CompileError::new(
                start,
                len,
                format!(
                    "'{name}': not a function call or a value (write [{name}] for an \
                     attribute, or \"{name}\" for text)"
                ),
            ));
        };
        Ok(Ast {
            offset: start,
            len,
            kind,
        })
    }

    /// `name(arg, …)`; `pos` is at the `(`.
    fn call(&mut self, start: usize, name: &str, depth: usize) -> Result<Ast, CompileError> {
        if depth >= MAX_DEPTH {
            return Err(CompileError::new(
                start,
                name.len(),
                format!(
                    "'{name}': calls nested too deeply (the limit is {MAX_DEPTH} levels; \
                     split the mapping into simpler expressions)"
                ),
            ));
        }
        let open = self.pos;
        self.pos += 1;
        let mut args = Vec::new();
        self.skip_ws();
        if self.peek() == Some(')') {
            self.pos += 1;
        } else {
            loop {
                args.push(self.value(depth + 1)?);
                self.skip_ws();
                match self.peek() {
                    Some(',') => self.pos += 1,
                    Some(')') => {
                        self.pos += 1;
                        break;
                    }
                    None => {
                        return Err(self.error_here(&format!(
                            "'{name}(' at byte {open} is missing its closing ')'"
                        )));
                    }
                    Some(_) => {
                        return Err(self.error_here(&format!(
                            "expected ',' or ')' after argument {} of {name}",
                            args.len()
                        )));
                    }
                }
            }
        }
        Ok(Ast {
            offset: start,
            len: self.pos - start,
            kind: AstKind::Call {
                name: name.to_owned(),
                name_len: name.len(),
                args,
            },
        })
    }
}

/// Caps quoted input in messages at 40 characters.
pub(super) fn shorten(s: &str) -> String {
    const MAX_CHARS: usize = 40;
    match s.char_indices().nth(MAX_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}
