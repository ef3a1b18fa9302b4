//! The journal's decoders: one record's text, and a JSON Lines export.

use serde_json::Value;

use crate::journal::file::{self, Reader, RecordRead};
use crate::journal::record::{Record, RecordHead, canonical_object, hash_text};

/// Input: a record's text or a whole export (both are tried). Decoding never panics, and
/// - text the canonical-form scan accepts is canonical: parsed and written again it is
///   the same bytes;
/// - a record the fast path reads from its text is the record the slow path parses, and
///   that record's canonical JSON is exactly the text (so it hashes as the text does);
/// - a parsed record written canonically parses back to an equal record;
/// - an export: the fast and the slow reader accept and refuse the same lines with the
///   same errors and agree on every record, and when `verify` finds the export intact
///   every record hashes as its line claims.
pub fn journal(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        record_text(text);
    }
    export(data);
}

fn record_text(text: &str) {
    if canonical_object(text, Some("image")).is_some() {
        let written = serde_json::from_str::<Value>(text).map(|v| v.to_string());
        assert_eq!(
            written.as_deref().ok(),
            Some(text),
            "taken as canonical, but it is not"
        );
    }
    let parsed = serde_json::from_str::<Record>(text);
    if let Some((head, _, image)) = RecordHead::from_canonical(text) {
        let record = parsed
            .as_ref()
            .expect("read as a canonical record, but it does not parse");
        assert_eq!(
            record.canonical_json(),
            text,
            "taken as canonical, but it is not"
        );
        assert_eq!(head, RecordHead::of(record));
        assert_eq!(image.is_some(), record.image.is_object());
    }
    if let Ok(record) = parsed {
        let canonical = record.canonical_json();
        let again: Record =
            serde_json::from_str(&canonical).expect("canonical JSON of a record parses");
        assert_eq!(again, record, "canonical JSON {canonical:?}");
        assert_eq!(hash_text(&canonical), record.hash());
    }
}

fn export(data: &[u8]) {
    let Ok((mut fast, header)) = Reader::new(data) else {
        assert!(
            file::verify(data, true).is_err(),
            "verify accepted a header the reader refuses"
        );
        return;
    };
    let (mut slow, _) = Reader::new(data).expect("the header was read once");
    let mut entries = Vec::new();
    loop {
        match (fast.next_read(), slow.next()) {
            (None, None) => break,
            (Some(Ok(RecordRead::Text(t))), Some(Ok(e))) => {
                assert_eq!((t.line, t.offset, &t.hash), (e.line, e.offset, &e.hash));
                assert_eq!(t.text, e.record.canonical_json());
                assert_eq!(t.head, RecordHead::of(&e.record));
                assert_eq!(hash_text(&t.text), e.record.hash());
                entries.push(e);
            }
            (Some(Ok(RecordRead::Parsed(p))), Some(Ok(e))) => {
                assert_eq!(p, e);
                entries.push(e);
            }
            (Some(Err(a)), Some(Err(b))) => {
                assert_eq!(a.to_string(), b.to_string());
            }
            (a, b) => panic!("the fast reader read {a:?}, the slow one {b:?}"),
        }
    }
    for allow_torn_tail in [false, true] {
        let report = file::verify(data, allow_torn_tail).expect("the header was read");
        assert_eq!(report.header, header);
        if !report.is_intact() {
            continue;
        }
        assert_eq!(report.records, entries.len() as u64);
        for e in &entries {
            assert_eq!(
                e.hash,
                e.record.hash(),
                "intact, but line {} does not hash as it claims",
                e.line
            );
        }
        if !allow_torn_tail {
            let expected = header.last_seq.checked_sub(header.first_seq).map(|n| n + 1);
            assert_eq!(Some(entries.len() as u64), expected.or(Some(0)));
        }
    }
}
