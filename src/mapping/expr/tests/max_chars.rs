//! The static length bound (`Expr::max_chars`), for limits such as AD's 20-character
//! sAMAccountName.

use super::compile;

fn bound(text: &str) -> Option<usize> {
    compile(text).max_chars()
}

#[test]
fn an_attribute_value_is_unbounded_until_cut() {
    assert_eq!(bound("[userName]"), None);
    assert_eq!(bound("Left([userName], 20)"), Some(20));
    assert_eq!(bound("Mid([userName], 3, 8)"), Some(8));
    assert_eq!(bound("Left(\"short\", 20)"), Some(5));
}

#[test]
fn the_bound_goes_outside_case_mapping() {
    assert_eq!(
        bound("Left(ToLower(Word([userName], 1, \"@\")), 20)"),
        Some(20)
    );
    assert_eq!(bound("ToLower(Left([userName], 20))"), Some(60));
}

#[test]
fn joins_and_appends_add_up_and_choices_take_the_longest() {
    assert_eq!(
        bound("Join(\"-\", Left([givenName], 8), Left([familyName], 8))"),
        Some(17)
    );
    assert_eq!(bound("Append(Left([userName], 15), \"-adm\")"), Some(19));
    assert_eq!(
        bound("Coalesce(Left([displayName], 10), Left([userName], 12))"),
        Some(12)
    );
    assert_eq!(
        bound("IIF([active], Left([userName], 5), \"disabled-user\")"),
        Some(13)
    );
    assert_eq!(
        bound(
            "Switch([department], \"x\", \"Sales\", \"sales-team\", \"IT\", Left([userName], 4))"
        ),
        Some(10)
    );
    assert_eq!(bound("Coalesce(Left([displayName], 10), [userName])"), None);
    assert_eq!(bound("Join(\",\", [emails])"), None);
}

#[test]
fn replacements_keep_the_bound_only_when_they_do_not_grow() {
    assert_eq!(
        bound("Replace(Left([userName], 20), \".\", \"\")"),
        Some(20)
    );
    assert_eq!(bound("Replace(Left([userName], 20), \".\", \"--\")"), None);
    assert_eq!(
        bound("Replace(Left([userName], 20), \"(.)\", \"$1$1\", \"regex\")"),
        None
    );
}
