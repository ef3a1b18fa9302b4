//! DateFormat: named formats, .NET-style patterns, UTC conversion, failures as null.

use super::*;

#[test]
fn dateformat_entra_example_writes_ldap_generalized_time() {
    assert_eq!(
        eval0("DateFormat(\"2026-11-23T09:15:00Z\", \"rfc3339\", \"yyyyMMddHHmmss'Z'\")"),
        s("20261123091500Z")
    );
}

#[test]
fn dateformat_named_formats_ignore_case_and_round_trip() {
    assert_eq!(
        eval0("DateFormat(\"2026-11-23T09:15:00Z\", \"RFC3339\", \"GeneralizedTime\")"),
        s("20261123091500Z")
    );
    assert_eq!(
        eval0("DateFormat(\"20261123091500Z\", \"generalizedtime\", \"rfc3339\")"),
        s("2026-11-23T09:15:00Z")
    );
}

#[test]
fn dateformat_converts_offsets_to_utc() {
    assert_eq!(
        eval0("DateFormat(\"2026-01-01T00:30:00+01:00\", \"rfc3339\", \"generalizedtime\")"),
        s("20251231233000Z")
    );
    assert_eq!(
        eval0("DateFormat(\"20261123091500.5-0130\", \"generalizedtime\", \"rfc3339\")"),
        s("2026-11-23T10:45:00.5Z")
    );
}

#[test]
fn dateformat_reads_and_writes_custom_patterns() {
    assert_eq!(
        eval(
            "DateFormat([hireDate], \"dd/MM/yyyy\", \"yyyy-MM-dd\")",
            &[("hireDate", s("23/11/2026"))]
        ),
        s("2026-11-23")
    );
    assert_eq!(
        eval0(
            "DateFormat(\"2026-11-23 09:15:00.042\", \"yyyy-MM-dd HH:mm:ss.fff\", \"HH'h'mm 'on' dd.MM.yyyy (fff)\")"
        ),
        s("09h15 on 23.11.2026 (042)")
    );
}

#[test]
fn dateformat_takes_pattern_input_as_utc() {
    assert_eq!(
        eval0("DateFormat(\"2026-11-23T09:15\", \"yyyy-MM-ddTHH:mm\", \"rfc3339\")"),
        s("2026-11-23T09:15:00Z")
    );
}

#[test]
fn dateformat_unparsable_or_impossible_dates_are_null() {
    for text in [
        "2026-11-23",
        "yesterday",
        "",
        "2026-02-30T00:00:00Z",
        "2026-11-23T25:00:00Z",
    ] {
        let expr = format!("DateFormat(\"{text}\", \"rfc3339\", \"yyyy\")");
        assert_eq!(eval0(&expr), Value::Null, "{text}");
    }
    assert_eq!(
        eval0("DateFormat(\"2026-13-01\", \"yyyy-MM-dd\", \"yyyy\")"),
        Value::Null
    );
    assert_eq!(
        eval0("DateFormat(\"2026-1-01\", \"yyyy-MM-dd\", \"yyyy\")"),
        Value::Null
    );
    assert_eq!(
        eval0("DateFormat(\"2026-01-01x\", \"yyyy-MM-dd\", \"yyyy\")"),
        Value::Null
    );
    assert_eq!(
        eval0("DateFormat(\"٢٠٢٦-01-01\", \"yyyy-MM-dd\", \"yyyy\")"),
        Value::Null
    );
}

#[test]
fn dateformat_of_null_is_null() {
    assert_eq!(
        eval0("DateFormat([hireDate], \"rfc3339\", \"yyyy\")"),
        Value::Null
    );
}

#[test]
fn dateformat_with_a_computed_format_parses_it_per_evaluation() {
    let text = "DateFormat(\"2026-11-23T09:15:00Z\", \"rfc3339\", [department])";
    assert_eq!(
        eval(text, &[("department", s("dd.MM.yyyy"))]),
        s("23.11.2026")
    );
    assert_eq!(eval(text, &[("department", s("yyy"))]), Value::Null);
    let input = "DateFormat(\"2026\", [department], \"rfc3339\")";
    assert_eq!(eval(input, &[("department", s("yyyy"))]), Value::Null);
}

#[test]
fn dateformat_cannot_write_years_outside_four_digits() {
    assert_eq!(
        eval0("DateFormat(\"0000-01-01T00:00:00+01:00\", \"rfc3339\", \"yyyy\")"),
        Value::Null
    );
}

#[test]
fn dateformat_rejects_unsupported_literal_fields_at_compile_time() {
    let text = "DateFormat([hireDate], \"rfc3339\", \"yyy-MM-dd\")";
    let e = err(text);
    assert_eq!(pointed(text, &e), "\"yyy-MM-dd\"");
    assert_eq!(
        e.message,
        "DateFormat: 'yyy': unsupported date field in 'yyy-MM-dd' (supported: yyyy, MM, dd, \
         HH, mm, ss, fff; quote literal text as 'text')"
    );
}

#[test]
fn dateformat_rejects_an_input_format_without_a_full_date() {
    let e = err("DateFormat([hireDate], \"HH:mm\", \"rfc3339\")");
    assert!(
        e.message
            .starts_with("DateFormat: 'yyyy': missing from the input format"),
        "{}",
        e.message
    );
    let e = err("DateFormat([hireDate], \"yyyy-MM-dd dd\", \"rfc3339\")");
    assert!(
        e.message.contains("'dd': appears more than once"),
        "{}",
        e.message
    );
}

#[test]
fn dateformat_rejects_an_unterminated_quote() {
    let e = err("DateFormat([hireDate], \"rfc3339\", \"yyyy'Z\")");
    assert!(e.message.contains("unterminated quote"), "{}", e.message);
}

#[test]
fn dateformat_output_may_omit_fields() {
    assert_eq!(
        eval0("DateFormat(\"2026-11-23T09:15:00Z\", \"rfc3339\", \"'Q'MM\")"),
        s("Q11")
    );
}
