//! The mapping's expression language, compiled and evaluated as a mapping does.

use serde_json::{Map, Value as Json};

use super::kind_line;
use crate::mapping::expr::{CompileError, Expr, Type, Value};
use crate::mapping::model::{KindResolver, doc_source};

/// Input: `<kind>\n<expression>\n<resource JSON>`. Compiling (parse and type check
/// against the kind's schema) never panics and an error points inside the text, on
/// character boundaries; a compiled expression evaluated over the resource (taken as
/// stored, whatever its shape; a JSON text that is no object is an empty resource) never
/// panics and gives null or a value of its static type.
pub fn mapping_expr(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (kind, rest) = kind_line(text);
    let (expr_text, doc_text) = rest.split_once('\n').unwrap_or((rest, ""));
    let expr = match Expr::compile(expr_text, &KindResolver(kind)) {
        Ok(expr) => expr,
        Err(e) => return assert_points_inside(expr_text, &e),
    };
    let doc = match serde_json::from_str::<Json>(doc_text) {
        Ok(Json::Object(doc)) => doc,
        _ => Map::new(),
    };
    let value = expr.eval(&doc_source(kind, &doc));
    let ty = expr.result_type();
    assert!(
        conforms(&value, ty),
        "{expr_text:?} has type {ty} but gave {value:?}"
    );
}

fn assert_points_inside(text: &str, e: &CompileError) {
    let end = e.offset.checked_add(e.len);
    assert!(
        end.is_some_and(|end| end <= text.len()
            && text.is_char_boundary(e.offset)
            && text.is_char_boundary(end)),
        "{text:?}: error span outside the text or inside a character: {e:?}"
    );
    assert!(!e.message.is_empty(), "{text:?}: empty error message");
}

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
