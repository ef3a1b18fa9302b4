//! SCIM attribute paths (RFC 7644 §3.10) and PATCH paths (RFC 7644 §3.5.2): parsing them
//! from text, printing them back, and the one `ParseError` shared with the filter parser.
//!
//! This module owns the syntax only. Names are kept exactly as the client wrote them;
//! resolving them against a schema (case-insensitively) is the caller's job.

use std::fmt;

use crate::scim::filter::{self, Filter};

/// A SCIM attribute path: optional schema URN, attribute name, optional sub-attribute.
///
/// A bare schema URN with no attribute after it (for example
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`) parses as `urn: None`
/// and `attr` set to the whole URN: the caller treats it as the extension's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub attr: String,
    pub sub_attr: Option<String>,
}

/// A PATCH path (RFC 7644 §3.5.2): `attrPath`, or valuePath `attr[filter]` optionally
/// followed by `.subAttr`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// `attr.sub_attr` may be set only when there is no filter.
    pub attr: AttrPath,
    /// The value filter between the brackets; its paths are relative to the element.
    pub filter: Option<Filter>,
    /// The sub-attribute after `[filter]`; only ever set together with `filter`.
    pub sub_attr: Option<String>,
}

/// A syntax error in a path or filter: where it is and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset into the original input (before any trimming).
    pub position: usize,
    /// Lowercase description without the position, e.g. `expected attribute name`.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> Self {
        ParseError {
            position,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.message, self.position)
    }
}

impl std::error::Error for ParseError {}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// Parses an attribute path such as `userName`, `name.givenName` or
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`.
///
/// Surrounding whitespace is ignored. See [`AttrPath`] for how a bare schema URN parses.
pub fn parse_attr_path(input: &str) -> Result<AttrPath, ParseError> {
    let (start, end) = trimmed_bounds(input);
    parse_attr_path_at(&input[start..end], start)
}

/// Parses a PATCH operation's `path`: `name.givenName`, `members[value eq "id"]`,
/// `emails[type eq "work"].value`, or any URN-prefixed attribute path.
pub fn parse_patch_path(input: &str) -> Result<PatchPath, ParseError> {
    // The same bound as for filters: the bracketed part is a filter.
    if input.len() > filter::MAX_FILTER_LEN {
        return Err(ParseError::new(
            filter::MAX_FILTER_LEN,
            format!("path is longer than {} bytes", filter::MAX_FILTER_LEN),
        ));
    }
    let (start, end) = trimmed_bounds(input);
    // A URN never contains '[', so the first one opens the value filter.
    let open = input[start..end].find('[').map(|i| start + i);
    let token_end = open.unwrap_or(end);
    let token = input[start..token_end].trim_end_matches(is_space);
    let attr = parse_attr_path_at(token, start)?;
    let Some(open) = open else {
        return Ok(PatchPath {
            attr,
            filter: None,
            sub_attr: None,
        });
    };
    if attr.sub_attr.is_some() {
        return Err(ParseError::new(
            open,
            "expected end of path: a value filter must follow an attribute, not a sub-attribute",
        ));
    }
    // Positions reported by the filter parser stay offsets into `input`.
    let (filter, after) = filter::parse_bracketed(&input[..end], open)?;
    let rest = &input[after..end];
    let sub_attr = if rest.is_empty() {
        None
    } else if let Some(name) = rest.strip_prefix('.') {
        let len = name_len(name);
        if len == 0 {
            return Err(ParseError::new(after + 1, "expected sub-attribute name"));
        }
        if len != name.len() {
            return Err(ParseError::new(after + 1 + len, "expected end of path"));
        }
        Some(name.to_owned())
    } else {
        return Err(ParseError::new(
            after,
            "expected '.' or end of path after ']'",
        ));
    };
    Ok(PatchPath {
        attr,
        filter: Some(filter),
        sub_attr,
    })
}

/// Whitespace we skip around tokens. ASCII only: anything else is a syntax error.
pub(crate) fn is_space(c: char) -> bool {
    c.is_ascii_whitespace()
}

fn trimmed_bounds(input: &str) -> (usize, usize) {
    let start = input.len() - input.trim_start_matches(is_space).len();
    let end = input.trim_end_matches(is_space).len().max(start);
    (start, end)
}

/// Length in bytes of the ATTRNAME at the start of `s` (0 if there is none).
///
/// ATTRNAME = ALPHA *(nameChar), nameChar = "-" / "_" / DIGIT / ALPHA (RFC 7644 §3.10),
/// plus `$ref`, which RFC 7643 uses as a sub-attribute name for references.
pub(crate) fn name_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    if bytes.len() >= 4 && bytes[0] == b'$' && bytes[1..4].eq_ignore_ascii_case(b"ref") {
        return 4;
    }
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() => {}
        _ => return 0,
    }
    bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-' || **b == b'_')
        .count()
}

/// Parses an attribute path that occupies all of `s`; `base` is the offset of `s` in the
/// caller's input, so errors point into the original text.
pub(crate) fn parse_attr_path_at(s: &str, base: usize) -> Result<AttrPath, ParseError> {
    if s.is_empty() {
        return Err(ParseError::new(base, "expected attribute name"));
    }
    let has_urn = s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
    if !has_urn {
        let (attr, sub_attr) = parse_name_and_sub(s, base)?;
        return Ok(AttrPath {
            urn: None,
            attr,
            sub_attr,
        });
    }
    // The URN itself contains dots (`2.0`), so the attribute starts after the LAST colon
    // and only that tail is split on '.'. `has_urn` guarantees a colon exists.
    let colon = s.rfind(':').unwrap_or(3);
    let (head, tail) = (&s[..colon], &s[colon + 1..]);
    if is_bare_schema_urn(head, tail) {
        validate_urn(s, base)?;
        return Ok(AttrPath {
            urn: None,
            attr: s.to_owned(),
            sub_attr: None,
        });
    }
    if tail.is_empty() {
        return Err(ParseError::new(
            base + colon + 1,
            "expected attribute name after schema urn",
        ));
    }
    validate_urn(head, base)?;
    let (attr, sub_attr) = parse_name_and_sub(tail, base + colon + 1)?;
    Ok(AttrPath {
        urn: Some(head.to_owned()),
        attr,
        sub_attr,
    })
}

/// Schema URNs end in `:<version>:<Resource>` (`...:enterprise:2.0:User`), so when the
/// segment before the last colon is a version and the last one is a plain name, the whole
/// string is a schema URN with no attribute after it. Nothing in the text alone can tell
/// `urn:...:2.0:User` apart from "attribute `User` of schema `urn:...:2.0`"; no real
/// schema URN ends in a version, so this reading is the useful one.
fn is_bare_schema_urn(head: &str, tail: &str) -> bool {
    let prev = head.rsplit(':').next().unwrap_or("");
    prev.starts_with(|c: char| c.is_ascii_digit())
        && !tail.is_empty()
        && name_len(tail) == tail.len()
}

/// Checks `urn:<nid>:<nss>` loosely: non-empty segments of URN characters. Parentheses,
/// brackets, quotes and whitespace are refused because they delimit filter tokens, so an
/// accepted URN always prints back into a filter unchanged.
fn validate_urn(urn: &str, base: usize) -> Result<(), ParseError> {
    let mut offset = 0;
    let mut segments = 0;
    for segment in urn.split(':') {
        if segment.is_empty() {
            return Err(ParseError::new(
                base + offset,
                "expected schema urn segment",
            ));
        }
        if let Some((i, c)) = segment.char_indices().find(|&(_, c)| !is_urn_char(c)) {
            return Err(ParseError::new(
                base + offset + i,
                format!("invalid character '{c}' in schema urn"),
            ));
        }
        offset += segment.len() + 1;
        segments += 1;
    }
    if segments < 3 {
        return Err(ParseError::new(
            base,
            "expected schema urn of the form 'urn:<nid>:<nss>'",
        ));
    }
    Ok(())
}

fn is_urn_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~%!$&'*+,;=@/".contains(c)
}

/// Parses `ATTRNAME [ "." ATTRNAME ]` filling all of `s`.
fn parse_name_and_sub(s: &str, base: usize) -> Result<(String, Option<String>), ParseError> {
    let len = name_len(s);
    if len == 0 {
        return Err(ParseError::new(base, "expected attribute name"));
    }
    let attr = s[..len].to_owned();
    let rest = &s[len..];
    if rest.is_empty() {
        return Ok((attr, None));
    }
    let Some(sub) = rest.strip_prefix('.') else {
        return Err(ParseError::new(
            base + len,
            "expected '.' or end of attribute path",
        ));
    };
    let sub_len = name_len(sub);
    if sub_len == 0 {
        return Err(ParseError::new(
            base + len + 1,
            "expected sub-attribute name",
        ));
    }
    if sub_len != sub.len() {
        return Err(ParseError::new(
            base + len + 1 + sub_len,
            "expected end of attribute path",
        ));
    }
    Ok((attr, Some(sub.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::filter::{CompValue, CompareOp, Test, parse_filter};
    use proptest::prelude::*;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn plain(attr: &str, sub: Option<&str>) -> AttrPath {
        AttrPath {
            urn: None,
            attr: attr.into(),
            sub_attr: sub.map(Into::into),
        }
    }

    fn eq_str(attr: &str, value: &str) -> Filter {
        Filter::Attr {
            path: plain(attr, None),
            test: Test::Compare(CompareOp::Eq, CompValue::Str(value.into())),
        }
    }

    fn err(result: Result<impl fmt::Debug, ParseError>) -> ParseError {
        match result {
            Ok(value) => panic!("expected a parse error, got {value:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn plain_attribute_parses_with_name_kept_as_written() {
        assert_eq!(parse_attr_path("userName"), Ok(plain("userName", None)));
        assert_eq!(
            parse_attr_path("DisplayName"),
            Ok(plain("DisplayName", None))
        );
    }

    #[test]
    fn dotted_path_splits_into_attribute_and_sub_attribute() {
        assert_eq!(
            parse_attr_path("name.givenName"),
            Ok(plain("name", Some("givenName")))
        );
    }

    #[test]
    fn dollar_ref_is_an_attribute_name() {
        assert_eq!(parse_attr_path("$ref"), Ok(plain("$ref", None)));
        assert_eq!(
            parse_attr_path("manager.$ref"),
            Ok(plain("manager", Some("$ref")))
        );
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        assert_eq!(
            parse_attr_path("  name.familyName\t"),
            Ok(plain("name", Some("familyName")))
        );
    }

    #[test]
    fn urn_prefix_is_split_at_the_last_colon_despite_dots_in_the_urn() {
        let path = format!("{ENTERPRISE}:manager.value");
        assert_eq!(
            parse_attr_path(&path),
            Ok(AttrPath {
                urn: Some(ENTERPRISE.into()),
                attr: "manager".into(),
                sub_attr: Some("value".into()),
            })
        );
    }

    #[test]
    fn urn_prefix_is_recognised_case_insensitively() {
        let path = "URN:ietf:params:scim:schemas:core:2.0:User:userName";
        let parsed = parse_attr_path(path).expect("parses");
        assert_eq!(
            parsed.urn.as_deref(),
            Some("URN:ietf:params:scim:schemas:core:2.0:User")
        );
        assert_eq!(parsed.attr, "userName");
    }

    #[test]
    fn bare_schema_urn_parses_as_the_whole_urn_in_attr() {
        assert_eq!(parse_attr_path(ENTERPRISE), Ok(plain(ENTERPRISE, None)));
    }

    #[test]
    fn attribute_path_errors_point_at_what_was_expected() {
        let e = err(parse_attr_path("name.1x"));
        assert_eq!(e.to_string(), "expected sub-attribute name at 5");
        let e = err(parse_attr_path("  name!"));
        assert_eq!(e.position, 6);
        let e = err(parse_attr_path("name.given.more"));
        assert_eq!(e.to_string(), "expected end of attribute path at 10");
        let e = err(parse_attr_path(""));
        assert_eq!(e.message, "expected attribute name");
        let e = err(parse_attr_path(
            "urn:ietf:params:scim:schemas:core:2.0:User:",
        ));
        assert_eq!(e.message, "expected attribute name after schema urn");
        let e = err(parse_attr_path("urn:x"));
        assert_eq!(e.position, 0);
        let e = err(parse_attr_path("urn:a::b:name"));
        assert_eq!(e.to_string(), "expected schema urn segment at 6");
        let e = err(parse_attr_path("emails[type eq \"work\"]"));
        assert_eq!(e.position, 6);
    }

    #[test]
    fn patch_path_with_value_filter_targets_matching_members() {
        assert_eq!(
            parse_patch_path(r#"members[value eq "id"]"#),
            Ok(PatchPath {
                attr: plain("members", None),
                filter: Some(eq_str("value", "id")),
                sub_attr: None,
            })
        );
    }

    #[test]
    fn patch_path_with_value_filter_and_sub_attribute() {
        assert_eq!(
            parse_patch_path(r#"emails[type eq "work"].value"#),
            Ok(PatchPath {
                attr: plain("emails", None),
                filter: Some(eq_str("type", "work")),
                sub_attr: Some("value".into()),
            })
        );
        assert_eq!(
            parse_patch_path(r#"addresses[type eq "work"].formatted"#),
            Ok(PatchPath {
                attr: plain("addresses", None),
                filter: Some(eq_str("type", "work")),
                sub_attr: Some("formatted".into()),
            })
        );
    }

    #[test]
    fn patch_path_filter_value_stays_a_string_when_quoted() {
        assert_eq!(
            parse_patch_path(r#"roles[primary eq "True"].value"#),
            Ok(PatchPath {
                attr: plain("roles", None),
                filter: Some(eq_str("primary", "True")),
                sub_attr: Some("value".into()),
            })
        );
    }

    #[test]
    fn patch_path_without_filter_is_an_attribute_path() {
        assert_eq!(
            parse_patch_path("name.givenName"),
            Ok(PatchPath {
                attr: plain("name", Some("givenName")),
                filter: None,
                sub_attr: None,
            })
        );
    }

    #[test]
    fn patch_path_to_enterprise_manager() {
        let manager = AttrPath {
            urn: Some(ENTERPRISE.into()),
            attr: "manager".into(),
            sub_attr: None,
        };
        assert_eq!(
            parse_patch_path(&format!("{ENTERPRISE}:manager")),
            Ok(PatchPath {
                attr: manager.clone(),
                filter: None,
                sub_attr: None,
            })
        );
        assert_eq!(
            parse_patch_path(&format!("{ENTERPRISE}:manager.value")),
            Ok(PatchPath {
                attr: AttrPath {
                    sub_attr: Some("value".into()),
                    ..manager
                },
                filter: None,
                sub_attr: None,
            })
        );
    }

    #[test]
    fn patch_path_bare_enterprise_urn_is_the_extension_container() {
        assert_eq!(
            parse_patch_path(ENTERPRISE),
            Ok(PatchPath {
                attr: plain(ENTERPRISE, None),
                filter: None,
                sub_attr: None,
            })
        );
    }

    #[test]
    fn patch_path_filter_may_combine_conditions() {
        let path =
            parse_patch_path(r#"emails[type eq "work" and primary eq true]"#).expect("parses");
        assert_eq!(
            path.filter,
            Some(parse_filter(r#"type eq "work" and primary eq true"#).expect("parses"))
        );
    }

    #[test]
    fn patch_path_errors_are_positioned() {
        let e = err(parse_patch_path(r#"emails[type eq "work""#));
        assert_eq!(e.message, "unbalanced '[': expected ']'");
        let e = err(parse_patch_path(r#"emails[type eq "work"]value"#));
        assert_eq!(e.to_string(), "expected '.' or end of path after ']' at 22");
        let e = err(parse_patch_path(r#"emails[type eq "work"]."#));
        assert_eq!(e.message, "expected sub-attribute name");
        let e = err(parse_patch_path(r#"emails[type eq "work"].value.x"#));
        assert_eq!(e.position, 28);
        let e = err(parse_patch_path(r#"name.x[type eq "work"]"#));
        assert_eq!(e.position, 6);
        let e = err(parse_patch_path(r#"emails[value[type eq "work"]]"#));
        assert_eq!(e.message, "value paths may not nest");
        let e = err(parse_patch_path(r#"emails[name.givenName eq "x"]"#));
        assert_eq!(e.position, 7);
        let e = err(parse_patch_path("   "));
        assert_eq!(e.message, "expected attribute name");
    }

    #[test]
    fn patch_path_display_round_trips() {
        for text in [
            r#"emails[type eq "work"].value"#,
            r#"members[value eq "id"]"#,
            "name.givenName",
            ENTERPRISE,
        ] {
            let parsed = parse_patch_path(text).expect("parses");
            assert_eq!(parsed.to_string(), text);
        }
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec!["userName", "emails", "$ref", "and", "not", "urn"])
                .prop_map(String::from),
            "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
        ]
    }

    fn attr_path() -> impl Strategy<Value = AttrPath> {
        let urn = prop::sample::select(vec![
            ENTERPRISE,
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:acme:scim:custom:1.0:Ext",
        ]);
        prop_oneof![
            (name(), prop::option::of(name())).prop_map(|(attr, sub_attr)| AttrPath {
                urn: None,
                attr,
                sub_attr,
            }),
            (urn.clone(), name(), prop::option::of(name())).prop_map(|(urn, attr, sub_attr)| {
                AttrPath {
                    urn: Some(urn.into()),
                    attr,
                    sub_attr,
                }
            }),
            urn.prop_map(|urn| plain(urn, None)),
        ]
    }

    proptest! {
        #[test]
        fn attr_path_display_parses_back_to_the_same_path(path in attr_path()) {
            prop_assert_eq!(parse_attr_path(&path.to_string()), Ok(path));
        }

        #[test]
        fn parsing_arbitrary_paths_never_panics(text in ".{0,64}") {
            let _ = parse_attr_path(&text);
            let _ = parse_patch_path(&text);
        }

        #[test]
        fn parsing_path_like_noise_never_panics(text in r#"[a-z.:\[\]"() $0-9]{0,48}"#) {
            let _ = parse_attr_path(&text);
            let _ = parse_patch_path(&text);
        }
    }
}
