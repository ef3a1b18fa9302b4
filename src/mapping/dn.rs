//! Distinguished names for the LDAP target: RFC 4514 escaping of attribute values, and DN
//! templates such as `uid={userName},ou=people,{base}` whose placeholders are SCIM
//! attribute paths (escaped), expressions (a placeholder holding a function call, e.g.
//! `ou={Switch([urn:…:department], "staff", "Sales", "sales")}`: its value, escaped) or
//! `{base}` (the configured base DN, verbatim).
//!
//! Untrusted text never builds DN syntax by concatenation (DESIGN invariant 4): every
//! value that comes from a resource goes through [`escape_value`].

use serde_json::{Map, Value as Json};

use crate::mapping::expr::Value;
use crate::mapping::source::SourcePath;
use crate::scim::schema::ResourceKind;

/// Escapes an attribute value for use in a DN (RFC 4514 §2.4): `"+,;<>\` and `=` anywhere,
/// `#` and space at the start, space at the end, NUL as `\00`.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' | ' ' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Base,
    Path(Box<SourcePath>),
    Expr(Box<crate::mapping::expr::Expr>),
}

/// The source of expression placeholders: attribute paths over one document.
struct DocSource<'a> {
    kind: ResourceKind,
    doc: &'a Map<String, Json>,
}

impl crate::mapping::expr::Source for DocSource<'_> {
    fn value_of(&self, path: &str) -> Value {
        SourcePath::compile(self.kind, path)
            .map(|p| p.single(self.kind, self.doc))
            .unwrap_or(Value::Null)
    }
}

/// The end of a placeholder: the first `}` outside a double-quoted string.
fn closing_brace(text: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// A compiled DN template.
#[derive(Debug, Clone)]
pub struct DnTemplate {
    text: String,
    parts: Vec<Part>,
    base: String,
}

impl DnTemplate {
    /// Compiles `text` for a resource kind; `base` replaces `{base}`.
    pub fn compile(kind: ResourceKind, text: &str, base: &str) -> Result<DnTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut any_value = false;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close =
                closing_brace(after).ok_or_else(|| format!("'{text}': a '{{' without its '}}'"))?;
            let name = after[..close].trim();
            if name.eq_ignore_ascii_case("base") {
                parts.push(Part::Base);
            } else if name.contains('(') {
                let resolver = crate::mapping::model::KindResolver(kind);
                let expr = crate::mapping::expr::Expr::compile(name, &resolver).map_err(|e| {
                    format!(
                        "'{name}': {} (at character {} of the expression)",
                        e.message,
                        e.offset + 1
                    )
                })?;
                parts.push(Part::Expr(Box::new(expr)));
                any_value = true;
            } else {
                parts.push(Part::Path(Box::new(SourcePath::compile(kind, name)?)));
                any_value = true;
            }
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        if !any_value {
            return Err(format!(
                "'{text}': the DN names no attribute of the resource, so every {} would get the same DN; use e.g. uid={{userName}},ou=people,{{base}}",
                kind.name()
            ));
        }
        if !text.contains('=') {
            return Err(format!(
                "'{text}' is not a DN template (e.g. uid={{userName}},ou=people,{{base}})"
            ));
        }
        Ok(DnTemplate {
            text: text.to_string(),
            parts,
            base: base.to_string(),
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The DN of a resource; Err names the attribute that is missing.
    pub fn render(&self, kind: ResourceKind, doc: &Map<String, Json>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Base => out.push_str(&self.base),
                Part::Path(p) => match p.single(kind, doc) {
                    Value::Null => {
                        return Err(format!(
                            "the DN template {} needs {}, which is absent",
                            self.text,
                            p.text()
                        ));
                    }
                    v => out.push_str(&escape_value(&v.as_text().unwrap_or_default())),
                },
                Part::Expr(e) => match e.eval(&DocSource { kind, doc }) {
                    v if !v.is_present() => {
                        return Err(format!(
                            "the DN template {} needs {}, which gives no value",
                            self.text,
                            e.text()
                        ));
                    }
                    v => out.push_str(&escape_value(&v.as_text().unwrap_or_default())),
                },
            }
        }
        Ok(out)
    }
}

/// The first RDN of `dn` (as written, escapes kept) and the rest, the parent's DN (`None`
/// for a one-RDN DN). Splits at the first comma (or `;`) that is neither escaped nor quoted.
pub fn split_first(dn: &str) -> (&str, Option<&str>) {
    let bytes = dn.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            // The escaped byte is skipped; a hex pair's second digit is never a separator.
            b'\\' => i += 1,
            b'"' => quoted = !quoted,
            b',' | b';' if !quoted => return (trim(&dn[..i]), Some(trim(&dn[i + 1..]))),
            _ => {}
        }
        i += 1;
    }
    (trim(dn), None)
}

/// `part` without the spaces around it, an escaped trailing space (`\ `) kept.
fn trim(part: &str) -> &str {
    let part = part.trim_start();
    let mut end = part.len();
    while end > 0 && part.as_bytes()[end - 1] == b' ' {
        let backslashes = part.as_bytes()[..end - 1]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if backslashes % 2 == 1 {
            break;
        }
        end -= 1;
    }
    &part[..end]
}

/// `dn` moved under `parent`: its first RDN, then `parent`.
pub fn under(dn: &str, parent: &str) -> String {
    format!("{},{}", split_first(dn).0, parent.trim())
}

#[cfg(test)]
mod split_tests {
    use super::*;

    #[test]
    fn an_expression_placeholder_chooses_the_ou_and_is_escaped() {
        let t = DnTemplate::compile(
            ResourceKind::User,
            r#"uid={userName},ou={Switch([urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department], "staff", "Sales", "sales", "R&D", "r+d {lab}")},{base}"#,
            "dc=x",
        )
        .expect("compiles");
        let doc = |dept: &str| {
            serde_json::json!({"userName": "ann",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": dept}})
            .as_object()
            .cloned()
            .expect("object")
        };
        let render = |dept: &str| t.render(ResourceKind::User, &doc(dept));
        assert_eq!(render("Sales").as_deref(), Ok("uid=ann,ou=sales,dc=x"));
        assert_eq!(render("R&D").as_deref(), Ok("uid=ann,ou=r\\+d {lab},dc=x"));
        assert_eq!(render("Other").as_deref(), Ok("uid=ann,ou=staff,dc=x"));
        let e = DnTemplate::compile(
            ResourceKind::User,
            "uid={userName},ou={Swtich([title])},{base}",
            "dc=x",
        )
        .expect_err("unknown function");
        assert!(e.contains("Swtich"), "{e}");
    }

    #[test]
    fn an_escaped_trailing_space_stays_with_its_rdn() {
        assert_eq!(
            split_first("uid=Jane Doe\\ ,ou=people,dc=x"),
            ("uid=Jane Doe\\ ", Some("ou=people,dc=x"))
        );
        assert_eq!(split_first(" uid=a\\  "), ("uid=a\\ ", None));
        assert_eq!(split_first("uid=a\\\\ ,dc=x"), ("uid=a\\\\", Some("dc=x")));
        assert_eq!(
            under("uid=Jane Doe\\ ,ou=people,dc=x", "ou=disabled,dc=x"),
            "uid=Jane Doe\\ ,ou=disabled,dc=x"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dn_values_are_escaped_per_rfc_4514() {
        assert_eq!(escape_value("Doe, John"), "Doe\\, John");
        assert_eq!(escape_value("a+b=c"), "a\\+b\\=c");
        assert_eq!(escape_value("#hash"), "\\#hash");
        assert_eq!(escape_value(" lead and trail "), "\\ lead and trail\\ ");
        assert_eq!(
            escape_value("quote\"back\\slash<>;"),
            "quote\\\"back\\\\slash\\<\\>\\;"
        );
        assert_eq!(escape_value("Zoë 李"), "Zoë 李");
        assert_eq!(escape_value("nul\0"), "nul\\00");
    }

    #[test]
    fn templates_substitute_escaped_values_and_the_base() {
        let t = DnTemplate::compile(
            ResourceKind::User,
            "uid={userName},ou=people,{base}",
            "dc=example,dc=com",
        )
        .expect("compiles");
        let doc = json!({"userName": "doe, j+r"})
            .as_object()
            .cloned()
            .expect("object");
        assert_eq!(
            t.render(ResourceKind::User, &doc).expect("renders"),
            "uid=doe\\, j\\+r,ou=people,dc=example,dc=com"
        );
        let empty = serde_json::Map::new();
        assert!(
            t.render(ResourceKind::User, &empty)
                .expect_err("missing")
                .contains("userName")
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(DnTemplate::compile(ResourceKind::User, "ou=people,{base}", "dc=x").is_err());
        assert!(
            DnTemplate::compile(ResourceKind::User, "uid={nmae},{base}", "dc=x")
                .expect_err("unknown")
                .contains("did you mean")
        );
        assert!(DnTemplate::compile(ResourceKind::User, "uid={userName", "dc=x").is_err());
    }
}
