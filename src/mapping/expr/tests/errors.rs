//! Compile errors: each names the offending input first, says what is wrong and, when it
//! can, how to fix it; offsets point at the offending bytes.

use super::*;

/// Asserts the message and the text the error points at.
fn assert_error(text: &str, message: &str, at: &str) {
    let e = err(text);
    assert_eq!(e.message, message, "{text}");
    assert_eq!(pointed(text, &e), at, "{text}: {e:?}");
}

#[test]
fn unknown_function_suggests_the_nearest_name() {
    assert_error(
        "Jion(\" \", [givenName])",
        "'Jion': unknown function (did you mean 'Join'?)",
        "Jion",
    );
    assert_error(
        "Trim(coalese([givenName]))",
        "'coalese': unknown function (did you mean 'Coalesce'?)",
        "coalese",
    );
}

#[test]
fn unknown_function_far_from_every_name_gets_no_suggestion() {
    assert_error(
        "Frobnicate(1)",
        "'Frobnicate': unknown function",
        "Frobnicate",
    );
}

#[test]
fn entra_functions_not_offered_here_point_to_the_alternative() {
    let e = err("FormatDateTime([hireDate], \"yyyyMMdd\")");
    assert_eq!(
        e.message,
        "'FormatDateTime': Entra function FormatDateTime is not available (use \
         DateFormat(source, inputFormat, outputFormat))"
    );
    assert!(
        err("guid()")
            .message
            .contains("values must be reproducible")
    );
}

#[test]
fn wrong_arity_names_the_expected_arity_and_signature() {
    assert_error(
        "Left([givenName], 1, 2)",
        "Left: expects 2 arguments, Left(source, length); got 3",
        "Left",
    );
    assert_error(
        "Join(\" \")",
        "Join: expects at least 2 arguments, Join(separator, value, value, …); got 1",
        "Join",
    );
    assert_error(
        "ToLower()",
        "ToLower: expects 1 or 2 arguments, ToLower(source[, culture]); got 0",
        "ToLower",
    );
    assert_error(
        "Not(true, false)",
        "Not: expects 1 argument, Not(condition); got 2",
        "Not",
    );
}

#[test]
fn switch_requires_keys_and_values_in_pairs() {
    assert_error(
        "Switch([department], \"Other\", \"Sales\")",
        "Switch: argument 3 is a key without a value (after source and default, keys and \
         values come in pairs: Switch(source, default, key, value, key, value, …))",
        "\"Sales\"",
    );
    assert_error(
        "Switch([department], \"Other\")",
        "Switch: expects at least 4 arguments, Switch(source, default, key, value, key, value, \
         …); got 2",
        "Switch",
    );
}

#[test]
fn type_mismatch_names_function_position_expected_and_found() {
    assert_error(
        "Not(\"x\")",
        "Not: argument 1 must be a boolean, got a string (IsPresent or IsNullOrEmpty turn a \
         value into a boolean)",
        "\"x\"",
    );
    assert_error(
        "Left([givenName], \"3\")",
        "Left: argument 2 must be a number, got a string (write the number without quotes)",
        "\"3\"",
    );
    assert_error(
        "Mid([givenName], 1, true)",
        "Mid: argument 3 must be a number, got a boolean",
        "true",
    );
    assert_error(
        "IIF([loginCount], 1, 2)",
        "IIF: argument 1 must be a boolean, got a number",
        "[loginCount]",
    );
}

#[test]
fn a_list_where_a_string_is_expected_is_refused() {
    assert_error(
        "ToLower([emails])",
        "ToLower: argument 1 must be a string, got a list (use Join to make one string from \
         a list)",
        "[emails]",
    );
    assert_error(
        "Coalesce([emails], [userName])",
        "Coalesce: argument 2 is a string but argument 1 is a list; a list mixes only with \
         lists (use Join to make one string)",
        "[userName]",
    );
}

#[test]
fn literal_counts_out_of_range_are_refused() {
    assert_error(
        "Left([givenName], -1)",
        "Left: argument 2 must not be negative (the length), got -1",
        "-1",
    );
    assert_error(
        "Mid([givenName], 0, 2)",
        "Mid: argument 2 must be at least 1 (characters are numbered from 1), got 0",
        "0",
    );
    assert_error(
        "Mid([givenName], 1, -2)",
        "Mid: argument 3 must not be negative (the length), got -2",
        "-2",
    );
    assert_error(
        "Word([userName], 0, \"@\")",
        "Word: argument 2 must be at least 1 (words are numbered from 1), got 0",
        "0",
    );
}

#[test]
fn unbalanced_brackets_are_refused() {
    assert_error(
        "ToLower([displayName)",
        "'[displayName)': unbalanced '[': the attribute reference has no closing ']'",
        "[displayName)",
    );
    assert_error(
        "ToLower(displayName])",
        "'displayName': not a function call or a value (write [displayName] for an \
         attribute, or \"displayName\" for text)",
        "displayName",
    );
    assert_error("[userName]]", "']': unbalanced ']': no '[' to close", "]");
    assert_error(
        "[emails[type eq \"work\"].value",
        "'[emails[type eq \"work\"].value': unbalanced '[': the attribute reference has no \
         closing ']'",
        "[emails[type eq \"work\"].value",
    );
    assert_error(
        "[emails[type eq \"wo]rk].value]",
        "'[emails[type eq \"wo]rk].value]': unterminated string inside an attribute \
         reference (add the closing \" and ])",
        "[emails[type eq \"wo]rk].value]",
    );
    assert_error(
        "[ ]",
        "'[ ]': empty attribute reference (write the attribute's path, e.g. [displayName])",
        "[ ]",
    );
}

#[test]
fn unbalanced_parentheses_are_refused() {
    let e = err("Join(\" \", [givenName]");
    assert_eq!(
        e.message,
        "end of expression: 'Join(' at byte 4 is missing its closing ')'"
    );
    assert_eq!((e.offset, e.len), (21, 0));
    assert_error(
        "Trim([givenName]))",
        "')': unbalanced ')': nothing left to close",
        ")",
    );
    assert_error(
        "Trim([givenName] [familyName])",
        "'[': expected ',' or ')' after argument 1 of Trim",
        "[",
    );
    assert_error(
        "Trim([givenName],)",
        "')': expected a value before ')' (write null for an omitted argument)",
        ")",
    );
}

#[test]
fn entra_style_omitted_arguments_are_refused_with_the_fix() {
    assert_error(
        "Replace([phone], , \"-\", , \"\", , )",
        "',': expected a value before ',' (write null for an omitted argument)",
        ",",
    );
}

#[test]
fn unterminated_strings_are_refused() {
    assert_error(
        "Append([userName], \"@example.com)",
        "'\"@example.com)': unterminated string (add the closing \")",
        "\"@example.com)",
    );
    assert_error(
        "\"ends in a backslash \\",
        "'\"ends in a backslash \\': unterminated string (add the closing \")",
        "\"ends in a backslash \\",
    );
}

#[test]
fn unknown_escapes_are_refused_with_the_fix() {
    assert_error(
        r#"Replace([phone], "\d", "", "regex")"#,
        r#"'\d': unknown escape in string (only \" and \\ are escapes: write \\d for a backslash followed by 'd', as regexes need)"#,
        r"\d",
    );
}

#[test]
fn invalid_regex_literal_points_at_the_pattern() {
    let text = "Replace([phone], \"[0-9\", \"\", \"regex\")";
    let e = err(text);
    assert_eq!(pointed(text, &e), "\"[0-9\"");
    assert_eq!(e.message, "'[0-9': invalid regex: unclosed character class");
}

#[test]
fn regex_patterns_over_the_size_limit_are_refused() {
    let e = err("Replace([phone], \"(\\\\w{100}){100}\", \"\", \"regex\")");
    assert!(
        e.message.contains("exceeds the size limit"),
        "{}",
        e.message
    );
}

#[test]
fn regex_pattern_and_mode_must_be_literals() {
    assert_error(
        "Replace([phone], [department], \"\", \"regex\")",
        "Replace: argument 2 must be a string literal: the regex is compiled when the mapping \
         loads",
        "[department]",
    );
    assert_error(
        "Replace([phone], \"x\", \"\", [department])",
        "Replace: argument 4 must be the literal \"regex\"",
        "[department]",
    );
    assert_error(
        "Replace([phone], \"x\", \"\", \"glob\")",
        "Replace: argument 4 must be \"regex\" (the only mode), got \"glob\"",
        "\"glob\"",
    );
}

#[test]
fn regex_replacement_referring_to_a_missing_group_is_refused() {
    assert_error(
        "Replace([phone], \"(\\\\d+)\", \"$1a\", \"regex\")",
        "'$1a': Replace: the pattern has no group '1a' (write ${1}a for group 1 followed by 'a')",
        "\"$1a\"",
    );
    assert_error(
        "Replace([phone], \"(?<cc>\\\\d+)\", \"${area}\", \"regex\")",
        "'${area}': Replace: the pattern has no group 'area' (the pattern has 1 numbered \
         group(s) and named cc)",
        "\"${area}\"",
    );
    // `$$` is a literal dollar, and `${1}x` is group 1 then "x".
    assert_eq!(
        eval0("Replace(\"a1\", \"([a-z])(\\\\d)\", \"$$${1}x$2\", \"regex\")"),
        s("$ax1")
    );
}

#[test]
fn literal_replace_of_the_empty_string_is_refused() {
    assert_error(
        "Replace([phone], \"\", \"x\")",
        "Replace: argument 2 must not be empty (it is the text to find)",
        "\"\"",
    );
}

#[test]
fn references_the_resolver_rejects_fail_at_the_path() {
    let text = "Join(\" \", [ nmae.givenName ], [familyName])";
    let e = err(text);
    assert_eq!(e.message, "unknown attribute 'nmae.givenName'");
    assert_eq!(pointed(text, &e), "nmae.givenName");
    assert_eq!(e.offset, 12);
}

#[test]
fn nesting_deeper_than_the_limit_is_refused() {
    let depth = MAX_DEPTH + 1;
    let text = format!("{}\"a\"{}", "Trim(".repeat(depth), ")".repeat(depth));
    let e = err(&text);
    assert!(
        e.message.starts_with("'Trim': calls nested too deeply"),
        "{}",
        e.message
    );
    assert_eq!(e.offset, MAX_DEPTH * 5);
}

#[test]
fn deep_nesting_is_refused_without_exhausting_the_stack() {
    let text = "Trim(".repeat(MAX_EXPR_LEN / 5);
    assert!(err(&text).message.contains("nested too deeply"));
}

#[test]
fn expressions_longer_than_the_limit_are_refused() {
    let text = format!("\"{}\"", "x".repeat(MAX_EXPR_LEN));
    let e = err(&text);
    assert_eq!(
        e.message,
        format!(
            "expression of {} bytes: too long (the limit is 16384 bytes)",
            MAX_EXPR_LEN + 2
        )
    );
    assert_eq!(e.offset, MAX_EXPR_LEN);
}

#[test]
fn empty_expressions_are_refused() {
    for text in ["", "  \n"] {
        assert!(
            err(text).message.starts_with("empty expression"),
            "{text:?}"
        );
    }
}

#[test]
fn bare_words_get_a_hint() {
    assert_error(
        "Join(\" \", givenName)",
        "'givenName': not a function call or a value (write [givenName] for an attribute, \
         or \"givenName\" for text)",
        "givenName",
    );
    assert_error(
        "Trim",
        "'Trim': expected '(' after the function name",
        "Trim",
    );
}

#[test]
fn malformed_numbers_are_refused() {
    assert_error("Left(\"a\", 3x)", "'3x': not a number", "3x");
    assert_error(
        "Left(\"a\", - 3)",
        "'-': expected a digit after '-' (negative numbers are written -1)",
        "-",
    );
    assert_error(
        "99999999999999999999",
        "'99999999999999999999': number out of range (numbers are 64-bit: \
         -9223372036854775808 to 9223372036854775807)",
        "99999999999999999999",
    );
}

#[test]
fn junk_after_the_expression_is_refused() {
    assert_error(
        "[givenName] [familyName]",
        "'[': unexpected after the end of the expression (join values with Join or Append)",
        "[",
    );
    assert_error(
        "'single'",
        "''': strings use double quotes: \"text\" (single quotes belong inside date formats)",
        "'",
    );
}

#[test]
fn errors_report_the_first_problem_from_the_left() {
    let e = err("Join(\" \", [nope], Jion())");
    assert_eq!(e.message, "unknown attribute 'nope'");
}
