//! Date formats for `DateFormat`: a subset of the .NET custom date patterns that Entra's
//! `FormatDateTime` takes, plus two named formats.
//!
//! Pattern fields: `yyyy` (4-digit year), `MM` (month 01–12), `dd` (day), `HH` (hour
//! 00–23), `mm` (minute), `ss` (second), `fff` (milliseconds). Text in single quotes
//! (`'Z'`) and a character after `\` are literal; so is any character that is not a .NET
//! field letter (`-`, `:`, `/`, `T`, `Z`, spaces, digits). A run of a field letter that is
//! not one of the fields above (`yy`, `M`, `hh`, `zzz`) is an error rather than literal
//! text, because .NET would read it as a field. Named formats (any case): `rfc3339`
//! (`2026-11-23T09:15:00Z`, any offset and fraction on input) and `generalizedtime`
//! (LDAP's `yyyyMMddHHmmss'Z'`; input may carry a `.fraction` and a `Z` or `±hhmm`).
//!
//! Everything is UTC: parsed offsets are converted to UTC, and text parsed with a pattern
//! (which has no offset field) is taken as UTC. An input pattern needs `yyyy`, `MM` and
//! `dd`; missing time fields are zero.

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// .NET's custom date-format field letters: a run of these is a field, never literal.
const FIELD_LETTERS: &str = "dfFghHKmMstyz";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DateSpec {
    Rfc3339,
    GeneralizedTime,
    Pattern(Vec<Piece>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millis,
}

impl Field {
    fn width(self) -> usize {
        match self {
            Field::Year => 4,
            Field::Millis => 3,
            _ => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    Field(Field),
    Lit(String),
}

impl DateSpec {
    /// Parses a format; the error is a message without the function name.
    pub(super) fn parse(format: &str) -> Result<DateSpec, String> {
        if format.eq_ignore_ascii_case("rfc3339") {
            return Ok(DateSpec::Rfc3339);
        }
        if format.eq_ignore_ascii_case("generalizedtime") {
            return Ok(DateSpec::GeneralizedTime);
        }
        if format.is_empty() {
            return Err(
                "'': empty date format (write a pattern such as yyyy-MM-dd, or rfc3339 or \
                 generalizedtime)"
                    .to_owned(),
            );
        }
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    let mut closed = false;
                    for q in chars.by_ref() {
                        if q == '\'' {
                            closed = true;
                            break;
                        }
                        lit.push(q);
                    }
                    if !closed {
                        return Err(format!(
                            "'{format}': unterminated quote in date format (close the quoted \
                             text with ')"
                        ));
                    }
                }
                '\\' => match chars.next() {
                    Some(e) => lit.push(e),
                    None => {
                        return Err(format!(
                            "'{format}': date format ends with '\\' (escape a character, or \
                             quote literal text as 'text')"
                        ));
                    }
                },
                c if FIELD_LETTERS.contains(c) => {
                    let mut run = 1;
                    while chars.next_if_eq(&c).is_some() {
                        run += 1;
                    }
                    let field = match (c, run) {
                        ('y', 4) => Field::Year,
                        ('M', 2) => Field::Month,
                        ('d', 2) => Field::Day,
                        ('H', 2) => Field::Hour,
                        ('m', 2) => Field::Minute,
                        ('s', 2) => Field::Second,
                        ('f', 3) => Field::Millis,
                        _ => {
                            let token: String = std::iter::repeat_n(c, run).collect();
                            return Err(format!(
                                "'{token}': unsupported date field in '{format}' (supported: \
                                 yyyy, MM, dd, HH, mm, ss, fff; quote literal text as 'text')"
                            ));
                        }
                    };
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Field(field));
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(DateSpec::Pattern(pieces))
    }

    /// An input pattern must determine a date: `yyyy`, `MM` and `dd`, each once.
    pub(super) fn check_input(&self) -> Result<(), String> {
        let DateSpec::Pattern(pieces) = self else {
            return Ok(());
        };
        let count = |f: Field| pieces.iter().filter(|p| **p == Piece::Field(f)).count();
        for (field, token) in [
            (Field::Year, "yyyy"),
            (Field::Month, "MM"),
            (Field::Day, "dd"),
            (Field::Hour, "HH"),
            (Field::Minute, "mm"),
            (Field::Second, "ss"),
            (Field::Millis, "fff"),
        ] {
            match count(field) {
                0 if matches!(field, Field::Year | Field::Month | Field::Day) => {
                    return Err(format!(
                        "'{token}': missing from the input format (parsing a date needs yyyy, \
                         MM and dd)"
                    ));
                }
                0 | 1 => {}
                _ => {
                    return Err(format!(
                        "'{token}': appears more than once in the input format"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Parses `text` to a UTC date-time; `None` when it does not match.
    pub(super) fn parse_date(&self, text: &str) -> Option<OffsetDateTime> {
        match self {
            DateSpec::Rfc3339 => OffsetDateTime::parse(text, &Rfc3339)
                .ok()?
                .checked_to_offset(UtcOffset::UTC),
            DateSpec::GeneralizedTime => parse_generalized(text),
            DateSpec::Pattern(pieces) => parse_pattern(pieces, text),
        }
    }

    /// Writes a UTC date-time; `None` when it cannot be written in this format (a year
    /// outside 0000–9999).
    pub(super) fn format(&self, dt: OffsetDateTime) -> Option<String> {
        if !(0..=9999).contains(&dt.year()) {
            return None;
        }
        match self {
            DateSpec::Rfc3339 => dt.format(&Rfc3339).ok(),
            DateSpec::GeneralizedTime => Some(format!(
                "{:04}{:02}{:02}{:02}{:02}{:02}Z",
                dt.year(),
                u8::from(dt.month()),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second()
            )),
            DateSpec::Pattern(pieces) => {
                let mut out = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Lit(s) => out.push_str(s),
                        Piece::Field(f) => {
                            let n: u32 = match f {
                                Field::Year => dt.year().unsigned_abs(),
                                Field::Month => u8::from(dt.month()).into(),
                                Field::Day => dt.day().into(),
                                Field::Hour => dt.hour().into(),
                                Field::Minute => dt.minute().into(),
                                Field::Second => dt.second().into(),
                                Field::Millis => dt.millisecond().into(),
                            };
                            out.push_str(&format!("{n:0width$}", width = f.width()));
                        }
                    }
                }
                Some(out)
            }
        }
    }
}

/// Takes exactly `width` ASCII digits off the front of `text`.
fn digits(text: &mut &str, width: usize) -> Option<u32> {
    let head = text.get(..width)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    *text = &text[width..];
    head.parse().ok()
}

#[derive(Default)]
struct Fields {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
}

impl Fields {
    fn build(&self, offset: UtcOffset) -> Option<OffsetDateTime> {
        let month = Month::try_from(u8::try_from(self.month).ok()?).ok()?;
        let date = Date::from_calendar_date(
            i32::try_from(self.year).ok()?,
            month,
            u8::try_from(self.day).ok()?,
        )
        .ok()?;
        let time = Time::from_hms_nano(
            u8::try_from(self.hour).ok()?,
            u8::try_from(self.minute).ok()?,
            u8::try_from(self.second).ok()?,
            self.nanos,
        )
        .ok()?;
        PrimitiveDateTime::new(date, time)
            .assume_offset(offset)
            .checked_to_offset(UtcOffset::UTC)
    }
}

fn parse_pattern(pieces: &[Piece], mut text: &str) -> Option<OffsetDateTime> {
    let mut f = Fields::default();
    for piece in pieces {
        match piece {
            Piece::Lit(s) => text = text.strip_prefix(s.as_str())?,
            Piece::Field(field) => {
                let n = digits(&mut text, field.width())?;
                match field {
                    Field::Year => f.year = n,
                    Field::Month => f.month = n,
                    Field::Day => f.day = n,
                    Field::Hour => f.hour = n,
                    Field::Minute => f.minute = n,
                    Field::Second => f.second = n,
                    Field::Millis => f.nanos = n * 1_000_000,
                }
            }
        }
    }
    if !text.is_empty() {
        return None;
    }
    f.build(UtcOffset::UTC)
}

/// `yyyyMMddHHmmss[.fraction](Z|±hh[mm])`, the form LDAP servers store (RFC 4517 §3.3.13,
/// restricted to full seconds before the fraction).
fn parse_generalized(mut text: &str) -> Option<OffsetDateTime> {
    let text = &mut text;
    let mut f = Fields {
        year: digits(text, 4)?,
        month: digits(text, 2)?,
        day: digits(text, 2)?,
        hour: digits(text, 2)?,
        minute: digits(text, 2)?,
        second: digits(text, 2)?,
        nanos: 0,
    };
    if let Some(rest) = text.strip_prefix(['.', ',']) {
        let len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if len == 0 {
            return None;
        }
        // Nanosecond precision; further digits cannot change the written seconds.
        let kept = &rest[..len.min(9)];
        let scale = 10u32.pow(u32::try_from(9 - kept.len()).ok()?);
        f.nanos = kept.parse::<u32>().ok()? * scale;
        *text = &rest[len..];
    }
    let offset = if *text == "Z" {
        UtcOffset::UTC
    } else {
        let sign: i8 = match text.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        *text = &text[1..];
        let hours = digits(text, 2)?;
        let minutes = if text.is_empty() { 0 } else { digits(text, 2)? };
        if !text.is_empty() {
            return None;
        }
        UtcOffset::from_hms(
            sign * i8::try_from(hours).ok()?,
            sign * i8::try_from(minutes).ok()?,
            0,
        )
        .ok()?
    };
    f.build(offset)
}
