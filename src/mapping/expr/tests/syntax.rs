//! Literals, references, whitespace, case, the Expr accessors and Value's helpers.

use super::*;

#[test]
fn function_names_match_case_insensitively() {
    assert_eq!(eval0("coalesce(null, \"a\")"), s("a"));
    assert_eq!(eval0("TOLOWER(\"A\")"), s("a"));
    assert_eq!(eval0("iif(TRUE, \"y\", \"n\")"), s("y"));
}

#[test]
fn whitespace_is_allowed_between_all_tokens() {
    let text = " \n Join ( \" \" ,\t[ givenName ] ,\r\n[familyName]\u{a0}) ";
    let pairs = [("givenName", s("a")), ("familyName", s("b"))];
    assert_eq!(eval(text, &pairs), s("a b"));
    assert_eq!(compile(text).references(), ["givenName", "familyName"]);
}

#[test]
fn string_literals_unescape_quotes_and_backslashes() {
    assert_eq!(eval0(r#""say \"hi\" \\ bye""#), s(r#"say "hi" \ bye"#));
    assert_eq!(eval0("\"\""), s(""));
    assert_eq!(eval0("\"Zoë 🙂 東京\""), s("Zoë 🙂 東京"));
}

#[test]
fn literals_have_their_types() {
    let cases = [
        ("\"x\"", Type::Str, s("x")),
        ("42", Type::Int, Value::Int(42)),
        ("-1", Type::Int, Value::Int(-1)),
        ("-9223372036854775808", Type::Int, Value::Int(i64::MIN)),
        ("true", Type::Bool, Value::Bool(true)),
        ("False", Type::Bool, Value::Bool(false)),
        ("null", Type::Any, Value::Null),
        ("NULL", Type::Any, Value::Null),
    ];
    for (text, ty, value) in cases {
        let expr = compile(text);
        assert_eq!(expr.result_type(), ty, "{text}");
        assert_eq!(expr.eval(&values(&[])), value, "{text}");
    }
}

#[test]
fn references_keep_brackets_and_quoted_strings_in_their_path() {
    let work = "emails[type eq \"work\" and primary eq true].value";
    let text = format!("Coalesce([{work}], [phoneNumbers[type eq \"mobile\"].value])");
    let expr = compile(&text);
    assert_eq!(
        expr.references(),
        [work, "phoneNumbers[type eq \"mobile\"].value"]
    );
    assert_eq!(expr.eval(&values(&[(work, s("z@x"))])), s("z@x"));
}

#[test]
fn references_may_hold_a_closing_bracket_inside_quotes() {
    struct Any;
    impl Resolver for Any {
        fn type_of(&self, _: &str) -> Result<Type, String> {
            Ok(Type::Str)
        }
    }
    let expr = Expr::compile(r#"[emails[value eq "a]\"b["].display]"#, &Any).unwrap();
    assert_eq!(expr.references(), [r#"emails[value eq "a]\"b["].display"#]);
}

#[test]
fn references_take_urn_paths_verbatim() {
    let urn = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department";
    let expr = compile(&format!("ToUpper([{urn}])"));
    assert_eq!(expr.references(), [urn]);
    assert_eq!(expr.eval(&values(&[(urn, s("it"))])), s("IT"));
}

#[test]
fn references_list_each_path_once_in_order_of_first_use() {
    let expr = compile("Join(\" \", [givenName], [familyName], [givenName], [userName])");
    assert_eq!(expr.references(), ["givenName", "familyName", "userName"]);
}

#[test]
fn text_is_the_expression_as_written() {
    let text = "Join(\" \", [givenName])";
    assert_eq!(compile(text).text(), text);
}

#[test]
fn expressions_are_clone_send_and_sync() {
    fn assert_traits<T: Clone + std::fmt::Debug + Send + Sync>() {}
    assert_traits::<Expr>();
    let expr = compile("Replace([phone], \"[^0-9]\", \"\", \"regex\")");
    let copy = expr.clone();
    assert_eq!(copy.eval(&values(&[("phone", s("1-2"))])), s("12"));
}

#[test]
fn source_values_are_converted_to_the_declared_type() {
    // A string attribute that arrives as a number or boolean is written as text.
    assert_eq!(eval("[userName]", &[("userName", Value::Int(7))]), s("7"));
    assert_eq!(
        eval("[userName]", &[("userName", Value::Bool(true))]),
        s("True")
    );
    // A list for a single-valued attribute cannot be a string: null.
    assert_eq!(
        eval("[userName]", &[("userName", list(&["a"]))]),
        Value::Null
    );
    // A single value for a multi-valued attribute is a one-element list.
    assert_eq!(eval("[emails]", &[("emails", s("a@x"))]), list(&["a@x"]));
    assert_eq!(eval("[emails]", &[("emails", s(""))]), list(&[]));
    // Booleans accept their string spellings; numbers accept only numbers.
    assert_eq!(
        eval("[active]", &[("active", s("TRUE"))]),
        Value::Bool(true)
    );
    assert_eq!(eval("[active]", &[("active", s("1"))]), Value::Null);
    assert_eq!(eval("[loginCount]", &[("loginCount", s("3"))]), Value::Null);
    // Unknown types pass through.
    assert_eq!(eval("[extra]", &[("extra", list(&["a"]))]), list(&["a"]));
}

#[test]
fn a_list_where_a_string_is_expected_at_runtime_is_null() {
    assert_eq!(
        eval("ToLower([extra])", &[("extra", list(&["A"]))]),
        Value::Null
    );
}

#[test]
fn value_as_text_spells_booleans_as_entra_does() {
    assert_eq!(s("x").as_text(), Some("x".to_owned()));
    assert_eq!(Value::Bool(true).as_text(), Some("True".to_owned()));
    assert_eq!(Value::Bool(false).as_text(), Some("False".to_owned()));
    assert_eq!(Value::Int(-12).as_text(), Some("-12".to_owned()));
    assert_eq!(Value::Null.as_text(), None);
    assert_eq!(list(&["a"]).as_text(), None);
}

#[test]
fn value_is_present_unless_null_or_empty() {
    assert!(!Value::Null.is_present());
    assert!(!s("").is_present());
    assert!(!list(&[]).is_present());
    assert!(s(" ").is_present());
    assert!(Value::Bool(false).is_present());
    assert!(Value::Int(0).is_present());
    assert!(list(&[""]).is_present());
}

#[test]
fn nesting_up_to_the_depth_limit_compiles() {
    let depth = MAX_DEPTH;
    let text = format!("{}\"a\"{}", "Trim(".repeat(depth), ")".repeat(depth));
    assert_eq!(eval0(&text), s("a"));
}

#[test]
fn an_expression_of_the_maximum_length_compiles() {
    let max = MAX_EXPR_LEN;
    let text = format!("\"{}\"", "x".repeat(max - 2));
    assert_eq!(text.len(), max);
    assert_eq!(compile(&text).result_type(), Type::Str);
}
