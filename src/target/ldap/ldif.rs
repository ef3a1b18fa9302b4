//! LDIF (RFC 2849) for what the converge would send: the entry of an add, a modRDN, a
//! modify, a delete. Used by `reconcile --dry-run` and `mapping preview`; pure.
//!
//! A DN or value that is not a SAFE-STRING (it starts with a space, `:` or `<`, ends
//! with a space, or holds a byte outside printable-ish ASCII: NUL, CR, LF, anything
//! non-ASCII) is written base64-encoded after `::`. Lines are not folded. Values of one
//! attribute are sorted so the output is stable.

use std::collections::HashSet;

use ldap3::Mod;

/// `name: value`, or `name:: base64` when the value is not a SAFE-STRING.
fn line(name: &str, value: &str) -> String {
    if safe(value) {
        format!("{name}: {value}\n")
    } else {
        format!("{name}:: {}\n", base64(value.as_bytes()))
    }
}

fn safe(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (None, _) => true,
        (Some(b' ' | b':' | b'<'), _) | (_, Some(b' ')) => false,
        _ => bytes
            .iter()
            .all(|&b| b.is_ascii() && b != 0 && b != b'\n' && b != b'\r'),
    }
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn sorted(values: &HashSet<String>) -> Vec<&String> {
    let mut v: Vec<&String> = values.iter().collect();
    v.sort();
    v
}

/// The LDIF of adding `dn` with `attrs`.
pub(super) fn add(dn: &str, attrs: &[(String, HashSet<String>)]) -> String {
    let mut out = line("dn", dn);
    out.push_str("changetype: add\n");
    for (name, values) in attrs {
        for value in sorted(values) {
            out.push_str(&line(name, value));
        }
    }
    out
}

/// The LDIF of renaming or moving `from` to `rdn` under `new_parent` (when it changes).
pub(super) fn modrdn(from: &str, rdn: &str, new_parent: Option<&str>) -> String {
    let mut out = line("dn", from);
    out.push_str("changetype: modrdn\n");
    out.push_str(&line("newrdn", rdn));
    out.push_str("deleteoldrdn: 1\n");
    if let Some(parent) = new_parent {
        out.push_str(&line("newsuperior", parent));
    }
    out
}

/// The LDIF of one modify of `dn`.
pub(super) fn modify(dn: &str, mods: &[Mod<String>]) -> String {
    let mut out = line("dn", dn);
    out.push_str("changetype: modify\n");
    for m in mods {
        let (op, name, values) = match m {
            Mod::Add(name, values) => ("add", name, Some(values)),
            Mod::Delete(name, values) => ("delete", name, Some(values)),
            Mod::Replace(name, values) => ("replace", name, Some(values)),
            Mod::Increment(name, _) => ("increment", name, None),
        };
        out.push_str(&format!("{op}: {name}\n"));
        if let Some(values) = values {
            for value in sorted(values) {
                out.push_str(&line(name, value));
            }
        }
        out.push_str("-\n");
    }
    out
}

/// The LDIF of deleting `dn`.
pub(super) fn delete(dn: &str) -> String {
    let mut out = line("dn", dn);
    out.push_str("changetype: delete\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_test_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn unsafe_values_are_written_in_base64() {
        assert_eq!(line("cn", "Alice"), "cn: Alice\n");
        assert_eq!(line("cn", " lead"), "cn:: IGxlYWQ=\n");
        assert_eq!(line("cn", "trail "), "cn:: dHJhaWwg\n");
        assert_eq!(line("cn", ":x"), "cn:: Ong=\n");
        assert_eq!(line("cn", "<x"), "cn:: PHg=\n");
        assert_eq!(line("cn", "Zoë"), "cn:: Wm/Dqw==\n");
        assert_eq!(line("cn", "a\nb"), "cn:: YQpi\n");
    }

    #[test]
    fn a_modify_lists_each_operation_and_its_sorted_values() {
        let mods = vec![
            Mod::Replace(
                "mail".to_string(),
                HashSet::from(["b@x".to_string(), "a@x".to_string()]),
            ),
            Mod::Replace("title".to_string(), HashSet::new()),
        ];
        assert_eq!(
            modify("uid=a,dc=x", &mods),
            "dn: uid=a,dc=x\nchangetype: modify\nreplace: mail\nmail: a@x\nmail: b@x\n-\nreplace: title\n-\n"
        );
    }

    #[test]
    fn a_move_names_the_new_superior() {
        assert_eq!(
            modrdn("uid=a,ou=people,dc=x", "uid=b", Some("ou=disabled,dc=x")),
            "dn: uid=a,ou=people,dc=x\nchangetype: modrdn\nnewrdn: uid=b\ndeleteoldrdn: 1\nnewsuperior: ou=disabled,dc=x\n"
        );
    }
}
