//! Properties over arbitrary input: compiling never panics and reports in-bounds spans;
//! evaluating never panics and returns null or a value of the expression's type.

use proptest::prelude::*;

use super::*;

/// Fragments that make arbitrary sequences look like expressions, so the parser and
/// checker get past the first token.
const TOKENS: &[&str] = &[
    "Join(",
    "Coalesce(",
    "Switch(",
    "IIF(",
    "Left(",
    "Mid(",
    "Word(",
    "Replace(",
    "DateFormat(",
    "Split(",
    "Not(",
    "IsPresent(",
    "ToLower(",
    "NormalizeDiacritics(",
    "Append(",
    "Jion(",
    "(",
    ")",
    ",",
    ", ",
    "[",
    "]",
    "[givenName]",
    "[emails]",
    "[active]",
    "[loginCount]",
    "[extra]",
    "[emails[type eq \"work\" and primary eq true].value]",
    "[nope]",
    "\"",
    "\"x\"",
    "\"\"",
    "\"regex\"",
    "\"[a-\"",
    "\"(\\\\d)\"",
    "\"$1a\"",
    "\"rfc3339\"",
    "\"yyyy-MM-dd\"",
    "\"yyy'\"",
    "\"\\q\"",
    "3",
    "-1",
    "0",
    "true",
    "null",
    " ",
    "ë",
    "東",
    "\u{301}",
    "🙂",
    "-",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|t| t.concat())
}

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::sample::select(vec![
            "",
            " ",
            "true",
            "FALSE",
            "2026-11-23T09:15:00Z",
            "20261123091500Z",
            "23/11/2026",
            "a@b.c",
            "Zoë Åström",
            "e\u{301}",
            "東京",
            "🙂",
            "$1",
            "\\",
        ])
        .prop_map(str::to_owned),
    ]
}

fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any_string().prop_map(Value::Str),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![any::<i64>(), -3i64..12].prop_map(Value::Int),
        prop::collection::vec(any_string(), 0..4).prop_map(Value::List),
    ]
}

/// Every schema attribute with an arbitrary value of any runtime type, so sources that
/// disagree with the declared types are covered too.
fn any_source() -> impl Strategy<Value = Values> {
    prop::collection::vec(any_value(), SCHEMA.len()).prop_map(|vals| {
        Values(
            SCHEMA
                .iter()
                .zip(vals)
                .map(|((path, _), v)| ((*path).to_owned(), v))
                .collect(),
        )
    })
}

/// One valid expression per function and shape.
const VALID: &[&str] = &[
    "Append([userName], [department])",
    "Coalesce([displayName], Join(\" \", [name.givenName], [name.familyName]))",
    "Coalesce([extra], [loginCount])",
    "Coalesce([emails], Split([extra], \",\"))",
    "Join([extra], [emails], [active], [loginCount], [extra])",
    "Switch([department], \"Other\", \"Sales\", \"S\", \"IT\", [extra])",
    "Switch([extra], [loginCount], [extra], [active], \"k\", 3)",
    "IIF([active], \"enabled\", \"disabled\")",
    "IIF([extra], [extra], [emails])",
    "ToLower(Left([userName], 8))",
    "ToUpper([extra], [extra])",
    "Replace([phone], \"[^0-9+]\", \"\", \"regex\")",
    "Replace([extra], \"(?<a>.)(.)\", [extra], \"regex\")",
    "Replace([extra], [extra], [extra])",
    "Left([extra], [loginCount])",
    "Mid([displayName], [loginCount], [extra])",
    "Mid([extra], 2, 3)",
    "Split([extra], [extra])",
    "Trim(StripSpaces(NormalizeDiacritics([extra])))",
    "Word([userName], [loginCount], [extra])",
    "Not([active])",
    "Not([extra])",
    "IsPresent([extra])",
    "IsNullOrEmpty([emails])",
    "DateFormat([hireDate], \"rfc3339\", \"yyyyMMddHHmmss'Z'\")",
    "DateFormat([extra], [extra], [extra])",
    "DateFormat([extra], \"generalizedtime\", \"rfc3339\")",
    "DateFormat([extra], \"dd/MM/yyyy\", [department])",
    "[emails[type eq \"work\" and primary eq true].value]",
    "[extra]",
];

fn conforms(value: &Value, ty: Type) -> bool {
    matches!(
        (value, ty),
        (Value::Null, _)
            | (_, Type::Any)
            | (Value::Str(_), Type::Str)
            | (Value::Bool(_), Type::Bool)
            | (Value::Int(_), Type::Int)
            | (Value::List(_), Type::List)
    )
}

fn assert_span_in_bounds(text: &str, e: &CompileError) {
    let end = e.offset + e.len;
    assert!(end <= text.len(), "{text:?}: {e:?}");
    assert!(text.is_char_boundary(e.offset), "{text:?}: {e:?}");
    assert!(text.is_char_boundary(end), "{text:?}: {e:?}");
    assert!(!e.message.is_empty());
}

fn check_compiles_or_reports(text: &str, source: &Values) {
    match Expr::compile(text, &Schema) {
        Ok(expr) => {
            let value = expr.eval(source);
            assert!(conforms(&value, expr.result_type()), "{text}: {value:?}");
        }
        Err(e) => assert_span_in_bounds(text, &e),
    }
}

proptest! {
    #[test]
    fn compile_never_panics_on_arbitrary_text(text in any::<String>()) {
        check_compiles_or_reports(&text, &Values::default());
    }

    #[test]
    fn compile_never_panics_on_token_soup(text in token_soup(), source in any_source()) {
        check_compiles_or_reports(&text, &source);
    }

    #[test]
    fn eval_never_panics_and_returns_the_result_type(
        index in 0..VALID.len(),
        source in any_source(),
    ) {
        let expr = compile(VALID[index]);
        let value = expr.eval(&source);
        prop_assert!(conforms(&value, expr.result_type()), "{}: {:?}", VALID[index], value);
    }

    #[test]
    fn eval_never_exceeds_the_static_length_bound(
        index in 0..VALID.len(),
        source in any_source(),
    ) {
        let expr = compile(VALID[index]);
        if let (Some(max), Some(text)) = (expr.max_chars(), expr.eval(&source).as_text()) {
            prop_assert!(
                text.chars().count() <= max,
                "{}: {:?} is longer than {max}", VALID[index], text
            );
        }
    }
}
