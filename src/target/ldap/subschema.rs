//! The directory's subschema, and the check of an LDAP mapping against it
//! (`check-config --online`): the object classes and attributes the mapping writes that the
//! directory does not know, attributes its classes do not allow, and the attributes the
//! classes require (MUST) that the mapping does not fill.
//!
//! Three layers, the first two pure:
//!
//! * Parsing ([`ObjectClass::parse`], [`AttributeType::parse`], [`Subschema::parse`]): the
//!   RFC 4512 §4.1 descriptions a directory publishes in its subschema entry's
//!   `objectClasses` and `attributeTypes` values — names (one or a list), `SUP` (one or a
//!   list), the kind (`ABSTRACT`, `STRUCTURAL` — the default —, `AUXILIARY`), `MUST`/`MAY`,
//!   `USAGE`, quoted strings with their `\27`/`\5C` escapes, `X-` extensions. Lenient where
//!   servers differ: unknown keywords are skipped (with the parenthesised list or the
//!   quoted string following them), OIDs may be quoted or non-numeric (`nsAdminGroup-oid`),
//!   Active Directory's `AUX ( … )` is kept (the auxiliary classes whose attributes an
//!   entry may hold). Malformed text (no parentheses, an unterminated string, a keyword
//!   without its value, text after the closing parenthesis) is an error, never a panic;
//!   [`Subschema::parse`] skips such a definition and hands its error back, so one odd
//!   value does not stop the check.
//! * Checking ([`check`], [`check_mapping`]): names compare case-insensitively, an OID
//!   names its class or attribute type too, aliases are one attribute (`cn` is
//!   `commonName`). Superclasses are followed through `SUP` (up to `top`, whatever the
//!   cycles a broken schema may hold). An entry's attributes must be allowed (MUST or MAY)
//!   by one of its classes or their superclasses — exactly the attribute type, not a
//!   supertype, as OpenLDAP checks — unless a class is `extensibleObject` or the attribute
//!   is operational (`USAGE` other than `userApplications`, e.g. ppolicy's
//!   `pwdAccountLockedTime`). A MUST attribute is filled by `objectClass`, by an attribute
//!   of the DN's first RDN (the directory adds the RDN's values itself), by the member
//!   attribute (when a group with no members still gets the placeholder), or by a mapped
//!   attribute that always has a value (`required`, a `default`, a constant) — a mapped
//!   attribute that may be empty gives a warning instead. When a class is unknown, the
//!   attributes are not checked against the classes (the unknown class may allow them);
//!   the MUST attributes of the known ones still are.
//! * Reading ([`read_subschema`], [`check_online`]): connects and binds like the target
//!   (the same pool: URLs in order, StartTLS, timeouts, CA file, client certificate), reads
//!   the root DSE's `subschemaSubentry` (`cn=Subschema` when the root DSE names none) and
//!   that entry's `objectClasses` and `attributeTypes`. It runs off any Tokio runtime.
//!
//! Not checked: attribute syntaxes and single-valuedness against the mapped values, DIT
//! content and structure rules, name forms, whether the parent entries of the DNs exist,
//! the attributes named by `match` and the disable bits.

use std::collections::{HashMap, HashSet};
use std::fmt;

use ldap3::SearchEntry;

use super::pool::{OpError, Pool, outside_runtime};
use crate::config::{Config, TargetKind};
use crate::mapping::model::{Mapping, Src};
use crate::scim::schema::ResourceKind;
use crate::target::{EntrySpec, LdapSettings};

/// `extensibleObject` (RFC 4512 §4.3): an entry of this class may hold any user attribute.
const EXTENSIBLE_OBJECT_OID: &str = "1.3.6.1.4.1.1466.101.120.111";
/// Where the subschema entry is when the root DSE does not say (OpenLDAP's).
const DEFAULT_SUBSCHEMA_DN: &str = "cn=Subschema";
/// How much of a malformed definition an error quotes.
const QUOTED_DEFINITION_CHARS: usize = 80;

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

/// An object class's kind (RFC 4512 §2.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassKind {
    Abstract,
    Structural,
    Auxiliary,
}

/// One `objectClasses` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectClass {
    pub oid: String,
    /// Every short name (`NAME`), as written; may be empty (an OID-only class).
    pub names: Vec<String>,
    /// The superclasses (`SUP`), by name or OID.
    pub superiors: Vec<String>,
    /// `STRUCTURAL` when the definition names no kind.
    pub kind: ClassKind,
    pub must: Vec<String>,
    pub may: Vec<String>,
    /// Active Directory's `AUX ( … )`: auxiliary classes whose attributes the entries of
    /// this class may hold. Empty elsewhere.
    pub auxiliaries: Vec<String>,
    pub obsolete: bool,
}

/// One `attributeTypes` value: what the check needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeType {
    pub oid: String,
    /// Every short name (`NAME`): `cn` and `commonName` are one attribute type.
    pub names: Vec<String>,
    /// The supertype (`SUP`), by name or OID.
    pub superior: Option<String>,
    /// `USAGE` is not `userApplications` (directoryOperation, dSAOperation,
    /// distributedOperation): no object class needs to allow it.
    pub operational: bool,
    /// `NO-USER-MODIFICATION`: the server computes it (AD's `memberOf`, `objectGUID`;
    /// OpenLDAP's `entryUUID`); no client may write it.
    pub no_user_modification: bool,
    pub obsolete: bool,
}

/// A definition that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The beginning of the definition, for the message.
    pub definition: String,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.definition)
    }
}

impl std::error::Error for ParseError {}

impl ObjectClass {
    /// Parses an RFC 4512 `ObjectClassDescription`.
    pub fn parse(text: &str) -> Result<ObjectClass, ParseError> {
        let d = Description::parse(text).map_err(|reason| parse_error(text, reason))?;
        Ok(ObjectClass {
            oid: d.oid,
            names: d.names,
            superiors: d.sup,
            kind: d.kind.unwrap_or(ClassKind::Structural),
            must: d.must,
            may: d.may,
            auxiliaries: d.aux,
            obsolete: d.obsolete,
        })
    }

    /// The first name, or the OID when it has none.
    pub fn name(&self) -> &str {
        self.names.first().map_or(&self.oid, String::as_str)
    }
}

impl AttributeType {
    /// Parses an RFC 4512 `AttributeTypeDescription`.
    pub fn parse(text: &str) -> Result<AttributeType, ParseError> {
        let d = Description::parse(text).map_err(|reason| parse_error(text, reason))?;
        let operational = d
            .usage
            .is_some_and(|u| !u.eq_ignore_ascii_case("userApplications"));
        Ok(AttributeType {
            oid: d.oid,
            names: d.names,
            superior: d.sup.into_iter().next(),
            operational,
            no_user_modification: d.no_user_modification,
            obsolete: d.obsolete,
        })
    }

    /// The first name, or the OID when it has none.
    pub fn name(&self) -> &str {
        self.names.first().map_or(&self.oid, String::as_str)
    }
}

fn parse_error(text: &str, reason: String) -> ParseError {
    let text = text.trim();
    let definition = match text.char_indices().nth(QUOTED_DEFINITION_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    };
    ParseError { definition, reason }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    Open,
    Close,
    Dollar,
    /// A bare word: a keyword, an OID, a name (`SYNTAX` lengths such as `{256}` included).
    Word(&'a str),
    /// A quoted string, escapes resolved.
    Quoted(String),
}

impl Token<'_> {
    fn describe(&self) -> String {
        match self {
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            Token::Dollar => "'$'".into(),
            Token::Word(w) => format!("'{w}'"),
            Token::Quoted(q) => format!("the string '{q}'"),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token<'_>>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            '$' => {
                chars.next();
                tokens.push(Token::Dollar);
            }
            '\'' => {
                chars.next();
                tokens.push(Token::Quoted(quoted(&mut chars, text, at)?));
            }
            _ => {
                let mut end = text.len();
                while let Some(&(i, c)) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | '$' | '\'') {
                        end = i;
                        break;
                    }
                    chars.next();
                }
                tokens.push(Token::Word(&text[at..end]));
            }
        }
    }
    Ok(tokens)
}

/// The rest of a quoted string whose opening quote (at `start`) was consumed: `\` and two
/// hex digits is that byte (`\27` a quote, `\5C` a backslash); `\` and any other character
/// is that character.
fn quoted(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    text: &str,
    start: usize,
) -> Result<String, String> {
    let mut bytes = Vec::new();
    loop {
        let Some((_, c)) = chars.next() else {
            return Err(format!(
                "the string starting at character {} has no closing quote",
                text[..start].chars().count() + 1
            ));
        };
        match c {
            '\'' => break,
            '\\' => {
                let rest: String = chars.clone().take(2).map(|(_, c)| c).collect();
                let hex = rest.len() == 2 && rest.chars().all(|c| c.is_ascii_hexdigit());
                match u8::from_str_radix(&rest, 16) {
                    Ok(byte) if hex => {
                        bytes.push(byte);
                        chars.next();
                        chars.next();
                    }
                    _ => match chars.next() {
                        Some((_, c)) => {
                            let mut buf = [0; 4];
                            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        None => bytes.push(b'\\'),
                    },
                }
            }
            c => {
                let mut buf = [0; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The fields of either kind of description the check uses.
#[derive(Debug, Default)]
struct Description {
    oid: String,
    names: Vec<String>,
    sup: Vec<String>,
    kind: Option<ClassKind>,
    must: Vec<String>,
    may: Vec<String>,
    aux: Vec<String>,
    usage: Option<String>,
    no_user_modification: bool,
    obsolete: bool,
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    at: usize,
}

impl<'a> Parser<'a> {
    fn next(&mut self) -> Option<Token<'a>> {
        let token = self.tokens.get(self.at).cloned();
        if token.is_some() {
            self.at += 1;
        }
        token
    }

    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.at)
    }

    /// One OID or name (a word, or quoted as some servers write them).
    fn oid(&mut self, after: &str) -> Result<String, String> {
        match self.next() {
            Some(Token::Word(w)) => Ok(w.to_string()),
            Some(Token::Quoted(q)) if !q.is_empty() => Ok(q),
            Some(t) => Err(format!(
                "{after} needs an OID or a name, not {}",
                t.describe()
            )),
            None => Err(format!("{after} needs an OID or a name; the text ends")),
        }
    }

    /// `oid` or `( oid $ oid … )` (the `$` separators are not insisted on).
    fn oids(&mut self, keyword: &str) -> Result<Vec<String>, String> {
        if self.peek() != Some(&Token::Open) {
            return Ok(vec![self.oid(keyword)?]);
        }
        self.next();
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Some(Token::Close) => {
                    self.next();
                    return Ok(out);
                }
                Some(Token::Dollar) => {
                    self.next();
                }
                _ => out.push(self.oid(keyword)?),
            }
        }
    }

    /// `'text'` or `( 'text' 'text' … )` (bare words accepted too).
    fn strings(&mut self, keyword: &str) -> Result<Vec<String>, String> {
        let one = |token: Option<Token<'_>>| match token {
            Some(Token::Quoted(q)) => Ok(q),
            Some(Token::Word(w)) => Ok(w.to_string()),
            Some(t) => Err(format!(
                "{keyword} needs a quoted string, not {}",
                t.describe()
            )),
            None => Err(format!("{keyword} needs a quoted string; the text ends")),
        };
        if self.peek() != Some(&Token::Open) {
            return Ok(vec![one(self.next())?]);
        }
        self.next();
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Some(Token::Close) => {
                    self.next();
                    return Ok(out);
                }
                _ => out.push(one(self.next())?),
            }
        }
    }

    /// Skips the value of a keyword this parser does not know: a parenthesised list or a
    /// quoted string; a bare word is taken as the next keyword.
    fn skip_unknown(&mut self, keyword: &str) -> Result<(), String> {
        match self.peek() {
            Some(Token::Open) => {
                self.next();
                let mut depth = 1;
                while depth > 0 {
                    match self.next() {
                        Some(Token::Open) => depth += 1,
                        Some(Token::Close) => depth -= 1,
                        Some(_) => {}
                        None => {
                            return Err(format!("the list after {keyword} is not closed"));
                        }
                    }
                }
            }
            Some(Token::Quoted(_)) => {
                self.next();
            }
            _ => {}
        }
        Ok(())
    }
}

impl Description {
    fn parse(text: &str) -> Result<Description, String> {
        let tokens = tokenize(text)?;
        let mut p = Parser { tokens, at: 0 };
        match p.next() {
            Some(Token::Open) => {}
            Some(t) => {
                return Err(format!(
                    "a definition starts with '(', not {}",
                    t.describe()
                ));
            }
            None => return Err("the definition is empty".into()),
        }
        let mut d = Description {
            oid: p.oid("the definition")?,
            ..Description::default()
        };
        loop {
            let keyword = match p.next() {
                Some(Token::Close) => break,
                Some(Token::Word(w)) => w,
                Some(t) => return Err(format!("expected a keyword, found {}", t.describe())),
                None => return Err("the closing ')' is missing".into()),
            };
            match keyword.to_ascii_uppercase().as_str() {
                "NAME" => d.names = p.strings(keyword)?,
                "DESC" => {
                    p.strings(keyword)?;
                }
                "OBSOLETE" => d.obsolete = true,
                "ABSTRACT" => d.kind = Some(ClassKind::Abstract),
                "STRUCTURAL" => d.kind = Some(ClassKind::Structural),
                "AUXILIARY" => d.kind = Some(ClassKind::Auxiliary),
                "SUP" => d.sup = p.oids(keyword)?,
                "MUST" => d.must = p.oids(keyword)?,
                "MAY" => d.may = p.oids(keyword)?,
                "AUX" => d.aux = p.oids(keyword)?,
                "USAGE" => d.usage = Some(p.oid(keyword)?),
                "EQUALITY" | "ORDERING" | "SUBSTR" | "SYNTAX" => {
                    p.oid(keyword)?;
                }
                "NO-USER-MODIFICATION" => d.no_user_modification = true,
                "SINGLE-VALUE" | "COLLECTIVE" => {}
                k if k.starts_with("X-") => {
                    p.strings(keyword)?;
                }
                _ => p.skip_unknown(keyword)?,
            }
        }
        if let Some(t) = p.peek() {
            return Err(format!("{} after the closing parenthesis", t.describe()));
        }
        Ok(d)
    }
}

// ---------------------------------------------------------------------------------------
// The subschema
// ---------------------------------------------------------------------------------------

/// The object classes and attribute types a directory knows, looked up by any of their
/// names or their OID, case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct Subschema {
    classes: Vec<ObjectClass>,
    attributes: Vec<AttributeType>,
    class_index: HashMap<String, usize>,
    attribute_index: HashMap<String, usize>,
}

impl Subschema {
    /// Whether this is Active Directory's schema (or Samba's): it has the
    /// `securityPrincipal` class and `sAMAccountName`.
    pub fn is_active_directory(&self) -> bool {
        self.object_class("securityPrincipal").is_some()
            && self.attribute_type("sAMAccountName").is_some()
    }

    /// The subschema of these definitions; a name defined twice keeps its first definition.
    pub fn new(classes: Vec<ObjectClass>, attributes: Vec<AttributeType>) -> Subschema {
        let mut class_index = HashMap::new();
        for (i, c) in classes.iter().enumerate() {
            for key in std::iter::once(&c.oid).chain(&c.names) {
                class_index.entry(key.to_ascii_lowercase()).or_insert(i);
            }
        }
        let mut attribute_index = HashMap::new();
        for (i, a) in attributes.iter().enumerate() {
            for key in std::iter::once(&a.oid).chain(&a.names) {
                attribute_index.entry(key.to_ascii_lowercase()).or_insert(i);
            }
        }
        Subschema {
            classes,
            attributes,
            class_index,
            attribute_index,
        }
    }

    /// Parses `objectClasses` and `attributeTypes` values. A value that cannot be parsed
    /// is left out; its error is in the second half of the answer.
    pub fn parse<'a>(
        object_classes: impl IntoIterator<Item = &'a str>,
        attribute_types: impl IntoIterator<Item = &'a str>,
    ) -> (Subschema, Vec<ParseError>) {
        let mut errors = Vec::new();
        let classes = object_classes
            .into_iter()
            .filter_map(|text| ObjectClass::parse(text).map_err(|e| errors.push(e)).ok())
            .collect();
        let attributes = attribute_types
            .into_iter()
            .filter_map(|text| AttributeType::parse(text).map_err(|e| errors.push(e)).ok())
            .collect();
        (Subschema::new(classes, attributes), errors)
    }

    pub fn object_class(&self, name: &str) -> Option<&ObjectClass> {
        self.class_index
            .get(&name.trim().to_ascii_lowercase())
            .map(|&i| &self.classes[i])
    }

    pub fn attribute_type(&self, name: &str) -> Option<&AttributeType> {
        self.attribute_index
            .get(&name.trim().to_ascii_lowercase())
            .map(|&i| &self.attributes[i])
    }

    pub fn object_classes(&self) -> &[ObjectClass] {
        &self.classes
    }

    pub fn attribute_types(&self) -> &[AttributeType] {
        &self.attributes
    }

    /// The class named `name` and all its superclasses, each once, the class first;
    /// superclasses the schema does not define are left out. Empty for an unknown class.
    pub fn with_superclasses(&self, name: &str) -> Vec<&ObjectClass> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut todo = vec![name.to_string()];
        while let Some(name) = todo.pop() {
            let Some(&i) = self.class_index.get(&name.trim().to_ascii_lowercase()) else {
                continue;
            };
            if seen.insert(i) {
                let class = &self.classes[i];
                out.push(class);
                todo.extend(class.superiors.iter().rev().cloned());
            }
        }
        out
    }

    /// Whether two names (or OIDs) are the same attribute type; names the schema does not
    /// define are compared as text, case-insensitively.
    pub fn same_attribute(&self, a: &str, b: &str) -> bool {
        let key = |n: &str| n.trim().to_ascii_lowercase();
        let (a, b) = (key(a), key(b));
        if a == b {
            return true;
        }
        match (self.attribute_index.get(&a), self.attribute_index.get(&b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        }
    }

    fn class_names(&self) -> impl Iterator<Item = &str> {
        self.classes
            .iter()
            .flat_map(|c| c.names.iter().map(String::as_str))
    }

    fn attribute_names(&self) -> impl Iterator<Item = &str> {
        self.attributes
            .iter()
            .flat_map(|a| a.names.iter().map(String::as_str))
    }
}

// ---------------------------------------------------------------------------------------
// The check
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Writing may fail for some resources, or the directory may interpret the entry
    /// differently than meant.
    Warning,
    /// Writing fails (the directory refuses the entries).
    Error,
}

/// One problem the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// The mapping it is about; `None`: the directory's schema itself (a definition that
    /// cannot be read).
    pub kind: Option<ResourceKind>,
    pub message: String,
}

impl Finding {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    fn new(severity: Severity, kind: Option<ResourceKind>, message: String) -> Finding {
        Finding {
            severity,
            kind,
            message,
        }
    }
}

/// `error: users: object class 'inetOrgPersn' is not in the directory's schema (did you
/// mean 'inetOrgPerson'?)`.
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        let scope = match self.kind {
            Some(ResourceKind::User) => "users",
            Some(ResourceKind::Group) => "groups",
            None => "directory schema",
        };
        write!(f, "{severity}: {scope}: {}", self.message)
    }
}

/// One kind's entries as the mapping writes them: the [`EntrySpec`] and what the check
/// needs beyond it.
#[derive(Debug, Clone)]
pub struct MappedEntry<'a> {
    pub kind: ResourceKind,
    pub spec: &'a EntrySpec,
    /// The attribute types of the DN template's first RDN (`uid` for
    /// `uid={userName},ou=people,{base}`): the directory takes their values from the DN.
    pub rdn_attributes: Vec<String>,
    /// The mapped attributes that always get a value (`required`, a `default`, a
    /// constant); the others may be empty for some resources.
    pub always_filled: Vec<String>,
}

/// The entries `mapping` writes into an LDAP target (none for a SQLite mapping).
pub fn mapped_entries(mapping: &Mapping) -> Vec<MappedEntry<'_>> {
    let kinds = [
        (ResourceKind::User, &mapping.users, &mapping.ldap.users),
        (ResourceKind::Group, &mapping.groups, &mapping.ldap.groups),
    ];
    kinds
        .into_iter()
        .filter_map(|(kind, map, spec)| {
            let spec = spec.as_ref()?;
            let rdn_attributes = map
                .as_ref()
                .and_then(|m| m.dn.as_ref())
                .map(|dn| rdn_attributes(dn.text()))
                .unwrap_or_default();
            let always_filled = map
                .iter()
                .flat_map(|m| &m.columns)
                .filter(|c| {
                    c.required
                        || c.default.as_ref().is_some_and(|d| d.is_present())
                        || matches!(&c.source, Src::Const(v) if v.is_present())
                })
                .map(|c| c.spec.name.clone())
                .collect();
            Some(MappedEntry {
                kind,
                spec,
                rdn_attributes,
                always_filled,
            })
        })
        .collect()
}

/// The attribute types of the first RDN of a DN (template): `uid` for
/// `uid={userName},ou=people,{base}`, `cn` and `uid` for `cn={displayName}+uid={id},…`.
/// Escaped separators and placeholders (`{…}`) are skipped over.
pub fn rdn_attributes(dn: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = dn.chars();
    let mut braces = 0usize;
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
                continue;
            }
            '{' => braces += 1,
            '}' => braces = braces.saturating_sub(1),
            '"' if braces == 0 => quoted = !quoted,
            ',' | ';' if braces == 0 && !quoted => break,
            '+' if braces == 0 && !quoted => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .iter()
        .filter_map(|part| {
            let (attr, _) = part.split_once('=')?;
            let attr = attr.trim();
            let plain = !attr.is_empty()
                && attr
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            plain.then(|| attr.to_string())
        })
        .collect()
}

/// [`check`] of the entries `mapping` writes.
pub fn check_mapping(mapping: &Mapping, subschema: &Subschema) -> Vec<Finding> {
    let mut findings = check(&mapped_entries(mapping), subschema);
    findings.extend(check_sam_account_names(mapping, subschema));
    findings
}

/// The auxiliary classes Active Directory attaches to users and groups without naming
/// them in the subschema.
const AD_SYSTEM_AUXILIARIES: &[&str] = &["securityPrincipal", "mailRecipient"];

/// The MUST attributes Active Directory fills itself on an add (a client never sends
/// them; `groupType` defaults to a global security group).
const AD_SERVER_FILLED: &[&str] = &[
    "objectCategory",
    "nTSecurityDescriptor",
    "instanceType",
    "objectSid",
    "groupType",
    "sAMAccountName",
];

/// Active Directory's `sAMAccountName` holds at most this many characters.
const SAM_ACCOUNT_NAME_MAX: usize = 20;

/// On a directory that has `sAMAccountName` (Active Directory, Samba): a mapped value
/// that can be longer than 20 characters, which AD refuses when it comes.
fn check_sam_account_names(mapping: &Mapping, subschema: &Subschema) -> Vec<Finding> {
    if subschema.attribute_type("sAMAccountName").is_none() {
        return Vec::new();
    }
    let mut findings = Vec::new();
    for map in [&mapping.users, &mapping.groups].into_iter().flatten() {
        for column in &map.columns {
            if !column.spec.name.eq_ignore_ascii_case("sAMAccountName") {
                continue;
            }
            let bound = match &column.source {
                Src::Path(_) => None,
                Src::Expr(e) => e.max_chars(),
                Src::Const(v) => v.as_text().map(|t| t.chars().count()),
            };
            let default = column
                .default
                .as_ref()
                .and_then(|v| v.as_text())
                .map_or(0, |t| t.chars().count());
            let too_long = match bound {
                None => Some("can be of any length".to_string()),
                Some(n) if n.max(default) > SAM_ACCOUNT_NAME_MAX => {
                    Some(format!("can be {} characters long", n.max(default)))
                }
                Some(_) => None,
            };
            if let Some(why) = too_long {
                findings.push(Finding::new(
                    Severity::Error,
                    Some(map.kind),
                    format!(
                        "attribute 'sAMAccountName' {why}; Active Directory refuses more than {SAM_ACCOUNT_NAME_MAX}: derive it with an expression cut by Left(…, {SAM_ACCOUNT_NAME_MAX}) (outside ToLower/ToUpper), e.g. 'Left(ToLower(Word([userName], 1, \"@\")), {SAM_ACCOUNT_NAME_MAX})'"
                    ),
                ));
            }
        }
    }
    findings
}

/// What the directory whose schema is `subschema` will refuse, or may refuse, of the
/// `entries`: in the order of the entries, then of their classes and attributes.
pub fn check(entries: &[MappedEntry<'_>], subschema: &Subschema) -> Vec<Finding> {
    let mut findings = Vec::new();
    for entry in entries {
        check_entry(entry, subschema, &mut findings);
    }
    findings
}

/// Who writes an attribute of the entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writer {
    Mapped,
    Rdn,
    Members,
}

impl Writer {
    fn describe(self, name: &str) -> String {
        match self {
            Writer::Mapped => format!("attribute '{name}'"),
            Writer::Rdn => format!("the DN's naming attribute '{name}'"),
            Writer::Members => format!("the members attribute '{name}'"),
        }
    }
}

fn check_entry(entry: &MappedEntry<'_>, schema: &Subschema, findings: &mut Vec<Finding>) {
    let kind = Some(entry.kind);
    let spec = entry.spec;
    let mut error = |message: String| findings.push(Finding::new(Severity::Error, kind, message));

    // The classes.
    let mut known = Vec::new();
    let mut all_known = true;
    for name in &spec.object_classes {
        match schema.object_class(name) {
            Some(class) => known.push(class),
            None => {
                all_known = false;
                error(format!(
                    "object class '{name}' is not in the directory's schema{}",
                    hint(name, schema.class_names())
                ));
            }
        }
    }

    // The attributes the entry gets, and who writes them.
    let mut written: Vec<(&str, Writer)> = Vec::new();
    for name in &entry.rdn_attributes {
        written.push((name.as_str(), Writer::Rdn));
    }
    for column in &spec.attributes {
        if !written
            .iter()
            .any(|(n, _)| schema.same_attribute(n, &column.name))
        {
            written.push((column.name.as_str(), Writer::Mapped));
        }
    }
    if let Some(members) = &spec.members {
        written.push((members.attribute.as_str(), Writer::Members));
    }
    if let Some(password) = &spec.password {
        written.push((password.attribute.as_str(), Writer::Mapped));
    }

    let classes: Vec<&ObjectClass> = {
        let mut seen = HashSet::new();
        known
            .iter()
            .flat_map(|c| schema.with_superclasses(&c.oid))
            .filter(|c| seen.insert(c.oid.to_ascii_lowercase()))
            .collect()
    };
    let mut allowing = classes.clone();
    for class in &classes {
        for aux in &class.auxiliaries {
            allowing.extend(schema.with_superclasses(aux));
        }
    }
    // Active Directory attaches auxiliary classes to user and group entries
    // (systemAuxiliaryClass: securityPrincipal holds sAMAccountName, mailRecipient the
    // mail attributes) without publishing them in the subschema.
    let active_directory = schema.is_active_directory();
    if active_directory {
        for aux in AD_SYSTEM_AUXILIARIES {
            allowing.extend(schema.with_superclasses(aux));
        }
    }
    let extensible = allowing.iter().any(|c| {
        c.oid == EXTENSIBLE_OBJECT_OID
            || c.names
                .iter()
                .any(|n| n.eq_ignore_ascii_case("extensibleObject"))
    });
    let allowed = |name: &str| {
        allowing.iter().any(|c| {
            c.must
                .iter()
                .chain(&c.may)
                .any(|a| schema.same_attribute(a, name))
        })
    };
    let listed = |c: &ObjectClass| {
        c.names
            .first()
            .map_or_else(|| c.oid.clone(), |n| format!("'{n}'"))
    };
    let class_list = known
        .iter()
        .map(|c| listed(c))
        .collect::<Vec<_>>()
        .join(", ");

    for &(name, writer) in &written {
        match schema.attribute_type(name) {
            None => error(format!(
                "{} is not in the directory's schema{}",
                writer.describe(name),
                hint(name, schema.attribute_names())
            )),
            // Operational ones may still be written by a privileged bind (ppolicy's
            // pwdAccountLockedTime); a user attribute marked so, or memberOf in any
            // directory, is the server's own.
            Some(at)
                if at.no_user_modification
                    && (!at.operational
                        || at.names.iter().any(|n| n.eq_ignore_ascii_case("memberOf"))) =>
            {
                error(format!(
                    "{} is computed by the directory (NO-USER-MODIFICATION, e.g. memberOf) and cannot be written; remove it from the mapping",
                    writer.describe(name)
                ))
            }
            Some(at) => {
                if all_known
                    && !known.is_empty()
                    && !at.operational
                    && !extensible
                    && !allowed(name)
                {
                    error(format!(
                        "{} is not allowed by the object classes {class_list} (nor their superclasses)",
                        writer.describe(name)
                    ));
                }
            }
        }
    }

    // The MUST attributes.
    let mut warn = Vec::new();
    let mut reported: Vec<&str> = Vec::new();
    for class in &classes {
        for must in &class.must {
            if reported.iter().any(|r| schema.same_attribute(r, must))
                || schema.same_attribute(must, "objectClass")
                || (active_directory
                    && AD_SERVER_FILLED
                        .iter()
                        .any(|a| schema.same_attribute(a, must)))
            {
                continue;
            }
            reported.push(must);
            let writer = written
                .iter()
                .find(|(n, _)| schema.same_attribute(n, must))
                .copied();
            let class_name = listed(class);
            match writer {
                Some((_, Writer::Rdn)) => {}
                Some((_, Writer::Members)) => {
                    if spec
                        .members
                        .as_ref()
                        .is_some_and(|m| m.placeholder.is_none())
                    {
                        warn.push(format!(
                            "'{must}' is required by object class {class_name}: a group without members cannot be written; set members.placeholder (e.g. 'cn=placeholder,{{base}}')"
                        ));
                    }
                }
                Some((mapped, Writer::Mapped)) => {
                    let filled = entry
                        .always_filled
                        .iter()
                        .any(|f| schema.same_attribute(f, mapped));
                    if !filled {
                        warn.push(format!(
                            "'{must}' is required by object class {class_name} but its mapping may give no value, and the directory then refuses the entry; make it 'required: true' or give it a 'default:'"
                        ));
                    }
                }
                None => error(format!(
                    "'{must}' is required by object class {class_name} but the mapping does not set it (map it under 'attributes:' or name the entry by it in 'dn:')"
                )),
            }
        }
    }

    // The structural class.
    if all_known && !known.is_empty() {
        let structural: Vec<&ObjectClass> = known
            .iter()
            .copied()
            .filter(|c| c.kind == ClassKind::Structural)
            .collect();
        if structural.is_empty() {
            warn.push(format!(
                "none of the object classes {class_list} is structural; the directory refuses an entry without a structural class (add one, e.g. inetOrgPerson or groupOfNames)"
            ));
        } else if !structural.iter().any(|s| {
            let chain = schema.with_superclasses(&s.oid);
            structural
                .iter()
                .all(|o| chain.iter().any(|c| c.oid == o.oid))
        }) {
            let names = structural
                .iter()
                .map(|c| listed(c))
                .collect::<Vec<_>>()
                .join(", ");
            warn.push(format!(
                "the structural object classes {names} are not one chain of superclasses; directories such as OpenLDAP refuse such entries"
            ));
        }
    }
    findings.extend(
        warn.into_iter()
            .map(|m| Finding::new(Severity::Warning, kind, m)),
    );
}

fn hint<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    crate::suggest::did_you_mean(word, candidates)
        .map(|s| format!(" (did you mean '{s}'?)"))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Reading the directory's subschema
// ---------------------------------------------------------------------------------------

/// Checks `config`'s LDAP mapping against the schema of the directory it names. Err: the
/// config has no LDAP target, or the directory cannot be reached, bound to or read.
/// Definitions the directory publishes that cannot be parsed are warnings.
pub fn check_online(config: &Config) -> Result<Vec<Finding>, String> {
    let target = config
        .target
        .as_ref()
        .ok_or("the config has no target: an online check reads an LDAP target's schema")?;
    let TargetKind::Ldap(settings) = &target.kind else {
        return Err(format!(
            "the target is not an LDAP directory ({}): an online check reads an LDAP directory's schema",
            target.describe()
        ));
    };
    let (subschema, errors) = read_subschema(settings)?;
    let mut findings: Vec<Finding> = errors
        .into_iter()
        .map(|e| {
            Finding::new(
                Severity::Warning,
                None,
                format!("a definition the directory publishes cannot be read and is ignored: {e}"),
            )
        })
        .collect();
    findings.extend(check_mapping(&target.mapping, &subschema));
    findings.extend(check_settings(config));
    Ok(findings)
}

/// What the configuration alone shows will fail (no directory needed): a mapping that
/// writes passwords over a connection without TLS (every request with a password is
/// refused).
pub fn check_settings(config: &Config) -> Vec<Finding> {
    let Some(target) = &config.target else {
        return Vec::new();
    };
    let TargetKind::Ldap(settings) = &target.kind else {
        return Vec::new();
    };
    let writes_passwords = target
        .mapping
        .ldap
        .users
        .as_ref()
        .is_some_and(|u| u.password.is_some());
    match settings.password_refusal() {
        Some(reason) if writes_passwords => vec![Finding::new(
            Severity::Error,
            Some(ResourceKind::User),
            format!(
                "mapping.users.password: requests with a password will be refused (400): {reason}"
            ),
        )],
        _ => Vec::new(),
    }
}

/// Connects and binds as the target does, and reads the directory's subschema. Err: no URL
/// connects and binds, or the subschema entry cannot be read (the message says which).
pub fn read_subschema(settings: &LdapSettings) -> Result<(Subschema, Vec<ParseError>), String> {
    outside_runtime(|| {
        let pool = Pool::new(settings).map_err(|e| e.to_string())?;
        let mut session = pool.session()?;
        // The root DSE names the subschema entry; a directory that does not answer (or
        // hides it) most likely keeps it where OpenLDAP does.
        let named = session
            .read("", &["subschemaSubentry"])
            .map_err(describe)?
            .and_then(|root| values(&root, "subschemaSubentry").into_iter().next());
        let dn = named.unwrap_or_else(|| DEFAULT_SUBSCHEMA_DN.to_string());
        let entry = session
            .read(&dn, &["objectClasses", "attributeTypes"])
            .map_err(describe)?
            .ok_or_else(|| format!("the directory has no subschema entry at '{dn}'"))?;
        let classes = values(&entry, "objectClasses");
        let attributes = values(&entry, "attributeTypes");
        if classes.is_empty() || attributes.is_empty() {
            return Err(format!(
                "the subschema entry '{dn}' gave no objectClasses or attributeTypes (may the bind DN read it?)"
            ));
        }
        Ok(Subschema::parse(
            classes.iter().map(String::as_str),
            attributes.iter().map(String::as_str),
        ))
    })
}

fn describe(e: OpError) -> String {
    let dn = if e.dn.is_empty() {
        "the root DSE"
    } else {
        &e.dn
    };
    format!(
        "cannot read the directory's schema: {} of {dn}: {}",
        e.op, e.error
    )
}

/// The values of `attr` in `entry` (attribute names compare case-insensitively).
fn values(entry: &SearchEntry, attr: &str) -> Vec<String> {
    entry
        .attrs
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(attr))
        .flat_map(|(_, values)| values.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests;
