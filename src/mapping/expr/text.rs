//! String helpers for the functions that count or rewrite characters. "Character" means a
//! Unicode scalar value throughout (`char`): no grapheme segmentation is available, so
//! `Left("e\u{301}", 1)` is "e". Counts are unsigned: callers turn negative counts into
//! null (or a compile error) before calling.

use unicode_normalization::UnicodeNormalization;

/// The first `n` characters.
pub(super) fn left(s: &str, n: u64) -> String {
    s.chars().take(saturate(n)).collect()
}

/// `len` characters starting at the 0-based character `start`: what exists of that range.
pub(super) fn mid(s: &str, start: u64, len: u64) -> String {
    s.chars()
        .skip(saturate(start))
        .take(saturate(len))
        .collect()
}

fn saturate(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Letters that carry no combining mark under NFD but that Entra's NormalizeDiacritics
/// also folds to ASCII. Everything else with a diacritic decomposes.
const FOLDS: &[(char, &str)] = &[
    ('ß', "ss"),
    ('ẞ', "SS"),
    ('æ', "ae"),
    ('Æ', "AE"),
    ('œ', "oe"),
    ('Œ', "OE"),
    ('ø', "o"),
    ('Ø', "O"),
    ('đ', "d"),
    ('Đ', "D"),
    ('ð', "d"),
    ('Ð', "D"),
    ('ł', "l"),
    ('Ł', "L"),
    ('þ', "th"),
    ('Þ', "TH"),
    ('ħ', "h"),
    ('Ħ', "H"),
    ('ı', "i"),
];

/// Whether `c` is a combining diacritic: the Combining Diacritical Marks blocks only.
/// Marks of other scripts (Devanagari vowel signs, Japanese voicing marks) are part of
/// the letter, not decoration, and are kept.
fn is_diacritic(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}'
        | '\u{FE20}'..='\u{FE2F}')
}

/// "Zoë Åström" → "Zoe Astrom": canonical decomposition, diacritics dropped, the letters
/// in [`FOLDS`] replaced, and the rest recomposed (NFC) so that scripts which decompose
/// without diacritics (Hangul, kana with voicing marks) come back unchanged.
pub(super) fn normalize_diacritics(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.nfd().filter(|&c| !is_diacritic(c)) {
        match FOLDS.iter().find(|&&(from, _)| from == c) {
            Some((_, to)) => out.push_str(to),
            None => out.push(c),
        }
    }
    out.nfc().collect()
}

/// Every whitespace character removed (Unicode White_Space: spaces, tabs, no-break and
/// ideographic spaces, line breaks).
pub(super) fn strip_spaces(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}
