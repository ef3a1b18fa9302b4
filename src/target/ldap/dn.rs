//! Distinguished names as the converge needs them: split into the first RDN and the
//! parent, and compared the way the directory compares them.
//!
//! The mapping writes DNs with RFC 4514 escapes (`\,`, `\2c`, raw UTF-8); the directory
//! hands back its own "pretty" form of the same DN (other escapes, other case, attribute
//! values of DN syntax such as `member` likewise). Text comparison would see a rename or a
//! changed member list where there is none, so DNs are compared through a [`DnKey`]: the
//! RDNs parsed, escapes undone, attribute types lower-cased, values lower-cased with
//! insignificant spaces removed (leading, trailing, runs collapsed), the AVAs of a
//! multi-valued RDN sorted. That is `distinguishedNameMatch` over naming attributes
//! matched with `caseIgnoreMatch` (`uid`, `cn`, `ou`, `dc`, …): the usual schemas.
//! Consequence: a change of spacing only is not a rename for this target (the directory
//! considers it the same DN as well); a change of the first RDN's case only
//! ([`rdn_case_differs`]: `CN=carol` → `CN=Carol`) is tried as a modifyDN, which Active
//! Directory needs, and left to the modify of the attribute where the directory refuses it.

/// A DN in comparable form (see the module doc). Two DNs naming the same entry have equal
/// keys. Text that does not parse as a DN keys as itself, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct DnKey(Vec<Vec<(String, String)>>);

impl DnKey {
    pub(super) fn of(dn: &str) -> DnKey {
        match parse(dn) {
            Some(rdns) => DnKey(rdns),
            None => DnKey(vec![vec![(String::new(), dn.trim().to_lowercase())]]),
        }
    }
}

/// `dn` as text that is equal for DNs naming the same entry (a [`DnKey`] written out),
/// for storing and indexing.
pub(super) fn canonical(dn: &str) -> String {
    DnKey::of(dn)
        .0
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|(t, v)| format!("{t}={v}"))
                .collect::<Vec<_>>()
                .join("\u{1}+")
        })
        .collect::<Vec<_>>()
        .join("\u{1},")
}

/// Whether `a` and `b` name the same entry.
pub(super) fn same(a: &str, b: &str) -> bool {
    a == b || DnKey::of(a) == DnKey::of(b)
}

pub(super) use crate::mapping::dn::split_first;

/// The parent's DN of `dn`, if it has one.
pub(super) fn parent(dn: &str) -> Option<&str> {
    split_first(dn).1
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Parses `dn` into normalized RDNs (values as [`normalize`]d, the AVAs of each RDN
/// sorted). `None` when it is not a DN.
fn parse(dn: &str) -> Option<Vec<Vec<(String, String)>>> {
    let mut rdns = parse_raw(dn)?;
    for rdn in &mut rdns {
        for ava in rdn.iter_mut() {
            ava.1 = normalize(&ava.1);
        }
        rdn.sort();
    }
    Some(rdns)
}

/// The attribute types (lower case) and values (escapes undone, as written otherwise) of
/// the first RDN of `dn`. `None` when it is not a DN.
pub(super) fn first_rdn(dn: &str) -> Option<Vec<(String, String)>> {
    parse_raw(split_first(dn).0)?.into_iter().next()
}

/// Parses `dn` (RFC 4514, with the RFC 2253 leniencies: `;` separators, spaces around
/// separators, quoted values) into RDNs of (type in lower case, value with escapes undone).
/// `None` when it is not a DN.
fn parse_raw(dn: &str) -> Option<Vec<Vec<(String, String)>>> {
    let bytes = trim_unescaped(dn).as_bytes();
    let len = bytes.len();
    let mut rdns = Vec::new();
    if len == 0 {
        return Some(rdns);
    }
    let mut rdn: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    loop {
        let start = i;
        while i < len && bytes[i] != b'=' {
            if matches!(bytes[i], b',' | b';' | b'+' | b'\\' | b'"') {
                return None;
            }
            i += 1;
        }
        if i == len {
            return None;
        }
        let ty = std::str::from_utf8(&bytes[start..i])
            .ok()?
            .trim()
            .to_ascii_lowercase();
        if ty.is_empty() {
            return None;
        }
        i += 1;
        while i < len && bytes[i] == b' ' {
            i += 1;
        }
        let mut value: Vec<u8> = Vec::new();
        if i < len && bytes[i] == b'#' {
            // A BER-encoded value: compared as its (case-insensitive) hex text.
            let start = i;
            while i < len && !matches!(bytes[i], b',' | b';' | b'+') {
                i += 1;
            }
            value.extend(bytes[start..i].trim_ascii().to_ascii_lowercase());
        } else if i < len && bytes[i] == b'"' {
            i += 1;
            loop {
                match bytes.get(i)? {
                    b'"' => break,
                    b'\\' => i = unescape(bytes, i, &mut value)?,
                    &c => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
            i += 1;
            while i < len && bytes[i] == b' ' {
                i += 1;
            }
        } else {
            while i < len && !matches!(bytes[i], b',' | b';' | b'+') {
                if bytes[i] == b'\\' {
                    i = unescape(bytes, i, &mut value)?;
                } else {
                    value.push(bytes[i]);
                    i += 1;
                }
            }
        }
        rdn.push((ty, String::from_utf8(value).ok()?));
        if i == len {
            break;
        }
        match bytes[i] {
            b'+' => {}
            b',' | b';' => {
                rdns.push(std::mem::take(&mut rdn));
            }
            _ => return None,
        }
        i += 1;
    }
    rdns.push(rdn);
    Some(rdns)
}

/// `dn` without leading and trailing spaces, keeping a trailing space that is escaped
/// (`cn=a\\ `: the value ends with a space).
fn trim_unescaped(dn: &str) -> &str {
    let start = dn.trim_start();
    let end = start.trim_end();
    let backslashes = end.bytes().rev().take_while(|&b| b == b'\\').count();
    if backslashes % 2 == 1 && end.len() < start.len() {
        &start[..end.len() + 1]
    } else {
        end
    }
}

/// Undoes the escape at `bytes[i]` (a backslash) into `out`: `\` + two hex digits is that
/// byte, `\` + any other byte is that byte. Returns the index after the escape.
fn unescape(bytes: &[u8], i: usize, out: &mut Vec<u8>) -> Option<usize> {
    let next = *bytes.get(i + 1)?;
    if let (Some(hi), Some(lo)) = (hex(next), bytes.get(i + 2).copied().and_then(hex)) {
        out.push(hi << 4 | lo);
        Some(i + 3)
    } else {
        out.push(next);
        Some(i + 2)
    }
}

/// A value as `caseIgnoreMatch` sees it: lower case, no leading or trailing spaces, runs
/// of spaces as one.
fn normalize(value: &str) -> String {
    squash_spaces(value).to_lowercase()
}

/// `value` without insignificant spaces (leading, trailing, runs collapsed), case kept.
fn squash_spaces(value: &str) -> String {
    value
        .split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `to` changes only the case of the first RDN's values of `from` (`same` DNs
/// otherwise). Active Directory refuses to change a naming attribute by modify ("must use
/// rename"), so such a change is a modifyDN there.
pub(super) fn rdn_case_differs(from: &str, to: &str) -> bool {
    let values = |dn: &str| {
        first_rdn(dn).map(|avas| {
            let mut values: Vec<(String, String)> = avas
                .into_iter()
                .map(|(t, v)| (t, squash_spaces(&v)))
                .collect();
            values.sort();
            values
        })
    };
    values(from) != values(to)
}

/// `dn` with leading and trailing spaces cut from its first RDN's values, when it has any
/// to cut: where 389-DS puts an entry renamed to `dn` (its modifyDN drops them; an add
/// keeps them).
pub(super) fn trim_first_rdn(dn: &str) -> Option<String> {
    let avas = first_rdn(dn)?;
    if avas.iter().all(|(_, v)| v.trim_matches(' ') == v) {
        return None;
    }
    let rdn = avas
        .iter()
        .map(|(t, v)| {
            format!(
                "{t}={}",
                crate::mapping::dn::escape_value(v.trim_matches(' '))
            )
        })
        .collect::<Vec<_>>()
        .join("+");
    Some(match split_first(dn).1 {
        Some(parent) => format!("{rdn},{parent}"),
        None => rdn,
    })
}
