//! Each function: Entra's documented examples, null and empty inputs, Unicode.

use super::*;

// Append

#[test]
fn append_adds_the_suffix() {
    assert_eq!(
        eval(
            "Append([userName], \"@example.com\")",
            &[("userName", s("zoe"))]
        ),
        s("zoe@example.com")
    );
}

#[test]
fn append_to_null_source_is_null() {
    assert_eq!(eval0("Append([userName], \"@example.com\")"), Value::Null);
}

#[test]
fn append_of_null_suffix_keeps_the_source() {
    assert_eq!(eval0("Append(\"zoe\", [department])"), s("zoe"));
}

// Coalesce

#[test]
fn coalesce_returns_the_first_present_value() {
    let pairs = [("displayName", s("")), ("userName", s("zoe"))];
    assert_eq!(
        eval(
            "Coalesce([displayName], [givenName], [userName], \"x\")",
            &pairs
        ),
        s("zoe")
    );
}

#[test]
fn coalesce_entra_example_falls_back_to_the_joined_name() {
    let text = "Coalesce([displayName], Join(\" \", [name.givenName], [name.familyName]))";
    let name = [
        ("name.givenName", s("Zoë")),
        ("name.familyName", s("Åström")),
    ];
    assert_eq!(eval(text, &name), s("Zoë Åström"));
    let with_display = [
        ("displayName", s("Z. Åström")),
        ("name.givenName", s("Zoë")),
    ];
    assert_eq!(eval(text, &with_display), s("Z. Åström"));
}

#[test]
fn coalesce_of_nothing_present_is_null() {
    assert_eq!(eval0("Coalesce([displayName], \"\", null)"), Value::Null);
}

#[test]
fn coalesce_skips_empty_lists() {
    let text = "Coalesce([emails], Split(\"a,b\", \",\"))";
    assert_eq!(eval(text, &[("emails", list(&[]))]), list(&["a", "b"]));
    assert_eq!(compile(text).result_type(), Type::List);
}

#[test]
fn coalesce_of_mixed_types_is_a_string() {
    let expr = compile("Coalesce([active], \"unknown\")");
    assert_eq!(expr.result_type(), Type::Str);
    assert_eq!(
        expr.eval(&values(&[("active", Value::Bool(false))])),
        s("False")
    );
    assert_eq!(expr.eval(&values(&[])), s("unknown"));
}

#[test]
fn coalesce_of_one_type_keeps_it() {
    assert_eq!(
        compile("Coalesce([active], true)").result_type(),
        Type::Bool
    );
    assert_eq!(
        compile("Coalesce(null, [loginCount])").result_type(),
        Type::Int
    );
    assert_eq!(compile("Coalesce(null)").result_type(), Type::Any);
}

// Join

#[test]
fn join_entra_example() {
    let pairs = [("givenName", s("Zoë")), ("familyName", s("Åström"))];
    assert_eq!(
        eval("Join(\" \", [givenName], [familyName])", &pairs),
        s("Zoë Åström")
    );
}

#[test]
fn join_skips_null_and_empty_values() {
    let pairs = [("givenName", s("")), ("familyName", s("Åström"))];
    assert_eq!(
        eval(
            "Join(\", \", [givenName], [displayName], [familyName], \"x\")",
            &pairs
        ),
        s("Åström, x")
    );
}

#[test]
fn join_contributes_each_list_element() {
    let pairs = [("emails", list(&["a@x", "", "b@x"]))];
    assert_eq!(
        eval("Join(\";\", [emails], \"c@x\")", &pairs),
        s("a@x;b@x;c@x")
    );
}

#[test]
fn join_of_only_empty_values_is_null() {
    assert_eq!(eval0("Join(\" \", [givenName], \"\", null)"), Value::Null);
}

#[test]
fn join_writes_booleans_and_numbers_as_text() {
    assert_eq!(eval0("Join(\"-\", true, 42, -1)"), s("True-42--1"));
}

#[test]
fn join_with_null_separator_concatenates() {
    assert_eq!(eval0("Join(null, \"a\", \"b\")"), s("ab"));
}

// Switch

#[test]
fn switch_entra_example_maps_keys_to_values() {
    let text = "Switch([department], \"Other\", \"Sales\", \"S\", \"IT\", \"I\")";
    assert_eq!(eval(text, &[("department", s("Sales"))]), s("S"));
    assert_eq!(eval(text, &[("department", s("IT"))]), s("I"));
    assert_eq!(eval(text, &[("department", s("Legal"))]), s("Other"));
}

#[test]
fn switch_compares_keys_case_sensitively() {
    let text = "Switch([department], \"Other\", \"Sales\", \"S\")";
    assert_eq!(eval(text, &[("department", s("sales"))]), s("Other"));
}

#[test]
fn switch_of_null_source_gives_the_default() {
    assert_eq!(
        eval0("Switch([department], \"Other\", \"Sales\", \"S\")"),
        s("Other")
    );
}

#[test]
fn switch_matches_converted_booleans() {
    let text = "Switch([active], \"?\", \"True\", \"on\", \"False\", \"off\")";
    assert_eq!(eval(text, &[("active", Value::Bool(false))]), s("off"));
}

// IIF

#[test]
fn iif_entra_example_picks_a_branch() {
    let text = "IIF([active], \"enabled\", \"disabled\")";
    assert_eq!(eval(text, &[("active", Value::Bool(true))]), s("enabled"));
    assert_eq!(eval(text, &[("active", Value::Bool(false))]), s("disabled"));
}

#[test]
fn iif_of_null_condition_is_null() {
    assert_eq!(
        eval0("IIF([active], \"enabled\", \"disabled\")"),
        Value::Null
    );
}

#[test]
fn iif_reads_true_and_false_strings_in_any_case_at_runtime() {
    let text = "IIF([extra], 1, 0)";
    assert_eq!(eval(text, &[("extra", s("TRUE"))]), Value::Int(1));
    assert_eq!(eval(text, &[("extra", s("false"))]), Value::Int(0));
    assert_eq!(eval(text, &[("extra", s("yes"))]), Value::Null);
}

#[test]
fn iif_accepts_a_literal_true_string_as_condition() {
    assert_eq!(eval0("IIF(\"True\", \"a\", \"b\")"), s("a"));
}

#[test]
fn iif_evaluates_only_the_chosen_branch_type_converted() {
    let expr = compile("IIF([active], [loginCount], \"never\")");
    assert_eq!(expr.result_type(), Type::Str);
    let pairs = [("active", Value::Bool(true)), ("loginCount", Value::Int(7))];
    assert_eq!(expr.eval(&values(&pairs)), s("7"));
}

// ToLower / ToUpper

#[test]
fn tolower_entra_example_with_left() {
    assert_eq!(
        eval(
            "ToLower(Left([userName], 8))",
            &[("userName", s("ZoeAstrom@example.com"))]
        ),
        s("zoeastro")
    );
}

#[test]
fn tolower_and_toupper_accept_and_ignore_a_culture() {
    assert_eq!(
        eval0("ToLower(\"İSTANBUL\", \"tr-TR\")"),
        s("i\u{307}stanbul")
    );
    assert_eq!(eval0("ToUpper(\"straße\", \"de-DE\")"), s("STRASSE"));
}

#[test]
fn tolower_of_null_is_null() {
    assert_eq!(eval0("ToLower([userName])"), Value::Null);
    assert_eq!(eval0("ToUpper(null)"), Value::Null);
}

// Replace

#[test]
fn replace_replaces_every_literal_occurrence() {
    assert_eq!(eval0("Replace(\"a.b.c\", \".\", \"-\")"), s("a-b-c"));
}

#[test]
fn replace_without_regex_mode_takes_find_literally() {
    assert_eq!(eval0("Replace(\"a+b\", \"[+]\", \"x\")"), s("a+b"));
    assert_eq!(eval0("Replace(\"a[+]b\", \"[+]\", \"x\")"), s("axb"));
}

#[test]
fn replace_regex_entra_example_keeps_digits_and_plus() {
    assert_eq!(
        eval(
            "Replace([phone], \"[^0-9+]\", \"\", \"regex\")",
            &[("phone", s("+49 (30) 1234-567"))]
        ),
        s("+49301234567")
    );
}

#[test]
fn replace_regex_expands_numbered_and_named_groups() {
    assert_eq!(
        eval0(
            "Replace(\"Astrom, Zoe\", \"(\\\\w+), (?<first>\\\\w+)\", \"${first} $1\", \"REGEX\")"
        ),
        s("Zoe Astrom")
    );
}

#[test]
fn replace_regex_inserts_a_computed_replacement_verbatim() {
    // Attribute data is not a template: a "$1" in a value stays "$1".
    assert_eq!(
        eval(
            "Replace(\"a-b\", \"(-)\", [department], \"regex\")",
            &[("department", s("$1$$"))]
        ),
        s("a$1$$b")
    );
}

#[test]
fn replace_results_past_the_size_cap_are_null() {
    let big = "a".repeat(64 * 1024);
    let pairs = [("department", s(&big))];
    let grow = format!("\"{}\"", "x".repeat(32));
    assert_eq!(
        eval(&format!("Replace([department], \"a\", {grow})"), &pairs),
        Value::Null
    );
    assert_eq!(
        eval(
            &format!("Replace([department], \"a\", {grow}, \"regex\")"),
            &pairs
        ),
        Value::Null
    );
    assert_eq!(
        eval("Replace([department], \"a\", \"bb\", \"regex\")", &pairs),
        s(&"bb".repeat(64 * 1024))
    );
}

#[test]
fn replace_with_null_replacement_removes() {
    assert_eq!(eval0("Replace(\"a-b\", \"-\", null)"), s("ab"));
    assert_eq!(eval0("Replace(\"a-b\", \"-\", null, \"regex\")"), s("ab"));
}

#[test]
fn replace_with_computed_empty_find_leaves_the_source() {
    assert_eq!(
        eval(
            "Replace(\"abc\", [department], \"x\")",
            &[("department", s(""))]
        ),
        s("abc")
    );
}

#[test]
fn replace_in_null_is_null() {
    assert_eq!(eval0("Replace([phone], \"-\", \"\")"), Value::Null);
    assert_eq!(
        eval0("Replace([phone], \"-\", \"\", \"regex\")"),
        Value::Null
    );
}

// Left

#[test]
fn left_counts_characters_not_bytes() {
    assert_eq!(eval0("Left(\"東京都渋谷区\", 2)"), s("東京"));
    assert_eq!(eval0("Left(\"🙂🙃x\", 2)"), s("🙂🙃"));
    assert_eq!(eval0("Left(\"Zoë\", 3)"), s("Zoë"));
}

#[test]
fn left_counts_a_combining_mark_as_a_character() {
    // "e" + U+0301: two scalar values, so one character is the bare "e".
    assert_eq!(eval0("Left(\"e\u{301}x\", 1)"), s("e"));
    assert_eq!(eval0("Left(\"e\u{301}x\", 2)"), s("e\u{301}"));
}

#[test]
fn left_beyond_the_end_is_the_whole_source() {
    assert_eq!(eval0("Left(\"abc\", 99)"), s("abc"));
    assert_eq!(eval0("Left(\"abc\", 0)"), s(""));
}

#[test]
fn left_with_a_computed_negative_length_is_null() {
    assert_eq!(
        eval(
            "Left(\"abc\", [loginCount])",
            &[("loginCount", Value::Int(-2))]
        ),
        Value::Null
    );
}

#[test]
fn left_of_null_is_null() {
    assert_eq!(eval0("Left([userName], 3)"), Value::Null);
    assert_eq!(eval0("Left(\"abc\", [loginCount])"), Value::Null);
}

// Mid

#[test]
fn mid_entra_example_is_one_based() {
    assert_eq!(eval0("Mid(\"abcdef\", 2, 3)"), s("bcd"));
}

#[test]
fn mid_counts_characters() {
    assert_eq!(eval0("Mid(\"Åström 東京 🙂\", 8, 4)"), s("東京 🙂"));
}

#[test]
fn mid_past_the_end_gives_the_part_that_exists() {
    assert_eq!(eval0("Mid(\"abcdef\", 5, 10)"), s("ef"));
    assert_eq!(eval0("Mid(\"abcdef\", 7, 1)"), s(""));
    assert_eq!(
        eval0("Mid(\"abcdef\", 9223372036854775807, 9223372036854775807)"),
        s("")
    );
}

#[test]
fn mid_with_computed_start_below_one_or_negative_length_is_null() {
    let text = "Mid(\"abcdef\", [loginCount], 2)";
    assert_eq!(eval(text, &[("loginCount", Value::Int(0))]), Value::Null);
    assert_eq!(
        eval(text, &[("loginCount", Value::Int(i64::MIN))]),
        Value::Null
    );
    assert_eq!(
        eval(
            "Mid(\"abcdef\", 1, [loginCount])",
            &[("loginCount", Value::Int(-1))]
        ),
        Value::Null
    );
}

// Split

#[test]
fn split_makes_a_list() {
    let expr = compile("Split([department], \", \")");
    assert_eq!(expr.result_type(), Type::List);
    assert_eq!(
        expr.eval(&values(&[("department", s("Sales, IT, 東京"))])),
        list(&["Sales", "IT", "東京"])
    );
}

#[test]
fn split_of_empty_is_the_empty_list_and_of_null_is_null() {
    assert_eq!(eval0("Split(\"\", \",\")"), list(&[]));
    assert_eq!(eval0("Split([department], \",\")"), Value::Null);
}

#[test]
fn split_drops_empty_pieces() {
    assert_eq!(eval0("Split(\",a,,b,\", \",\")"), list(&["a", "b"]));
}

#[test]
fn split_without_delimiter_is_one_piece() {
    assert_eq!(eval0("Split(\"a,b\", \"\")"), list(&["a,b"]));
}

// Trim / StripSpaces

#[test]
fn trim_removes_unicode_whitespace_at_both_ends() {
    assert_eq!(
        eval0("Trim(\" \u{a0}\tZoë Åström\u{3000}\n\")"),
        s("Zoë Åström")
    );
    assert_eq!(eval0("Trim([userName])"), Value::Null);
}

#[test]
fn strip_spaces_removes_every_whitespace_character() {
    assert_eq!(
        eval0("StripSpaces(\" +49 30\u{a0}1234\u{3000}567 \")"),
        s("+49301234567")
    );
    assert_eq!(eval0("StripSpaces([phone])"), Value::Null);
}

// NormalizeDiacritics

#[test]
fn normalize_diacritics_entra_example() {
    assert_eq!(
        eval0("NormalizeDiacritics(\"Zoë Åström\")"),
        s("Zoe Astrom")
    );
}

#[test]
fn normalize_diacritics_folds_letters_that_do_not_decompose() {
    assert_eq!(
        eval0("NormalizeDiacritics(\"Straße Ærø Đorđe Łódź Œuvre Þór\")"),
        s("Strasse AEro Dorde Lodz OEuvre THor")
    );
}

#[test]
fn normalize_diacritics_drops_combining_marks_in_decomposed_input() {
    assert_eq!(
        eval0("NormalizeDiacritics(\"Zoe\u{308} Ce\u{327}\u{301}\")"),
        s("Zoe Ce")
    );
}

#[test]
fn normalize_diacritics_keeps_scripts_without_latin_diacritics() {
    assert_eq!(
        eval0("NormalizeDiacritics(\"東京 한국어 がぎ 🙂\")"),
        s("東京 한국어 がぎ 🙂")
    );
}

#[test]
fn normalize_diacritics_of_null_is_null() {
    assert_eq!(eval0("NormalizeDiacritics([displayName])"), Value::Null);
}

// Word

#[test]
fn word_entra_example_takes_the_local_part() {
    assert_eq!(
        eval(
            "Word([userName], 1, \"@\")",
            &[("userName", s("zoe@example.com"))]
        ),
        s("zoe")
    );
}

#[test]
fn word_splits_on_any_delimiter_character_and_ignores_empty_words() {
    let text = "Word(\"  Zoë,, Åström-Berg \", 3, \" ,-\")";
    assert_eq!(eval0(text), s("Berg"));
}

#[test]
fn word_past_the_last_is_null() {
    assert_eq!(eval0("Word(\"a b\", 3, \" \")"), Value::Null);
    assert_eq!(eval0("Word(\"\", 1, \" \")"), Value::Null);
}

#[test]
fn word_without_delimiters_is_the_whole_source() {
    assert_eq!(eval0("Word(\"a b\", 1, \"\")"), s("a b"));
}

#[test]
fn word_with_a_computed_number_below_one_is_null() {
    assert_eq!(
        eval(
            "Word(\"a b\", [loginCount], \" \")",
            &[("loginCount", Value::Int(0))]
        ),
        Value::Null
    );
}

// Not / IsPresent / IsNullOrEmpty

#[test]
fn not_negates_and_keeps_null() {
    assert_eq!(eval0("Not(true)"), Value::Bool(false));
    assert_eq!(
        eval("Not([active])", &[("active", Value::Bool(false))]),
        Value::Bool(true)
    );
    assert_eq!(eval0("Not([active])"), Value::Null);
}

#[test]
fn is_present_is_false_for_null_empty_string_and_empty_list() {
    let cases = [
        (Value::Null, false),
        (s(""), false),
        (list(&[]), false),
        (s(" "), true),
        (list(&[""]), true),
        (Value::Bool(false), true),
        (Value::Int(0), true),
    ];
    for (value, present) in cases {
        let pairs = [("extra", value.clone())];
        assert_eq!(
            eval("IsPresent([extra])", &pairs),
            Value::Bool(present),
            "{value:?}"
        );
        assert_eq!(
            eval("IsNullOrEmpty([extra])", &pairs),
            Value::Bool(!present),
            "{value:?}"
        );
    }
}

#[test]
fn is_present_never_returns_null() {
    assert_eq!(eval0("IsPresent(null)"), Value::Bool(false));
    assert_eq!(eval0("IsNullOrEmpty(null)"), Value::Bool(true));
}
