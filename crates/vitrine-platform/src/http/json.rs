//! `AppJson<T>`: the JSON body extractor and responder of every handler.
//!
//! Axum's own `Json` rejects bad bodies with plain-text errors whose messages may quote the
//! offending value. Ours renders every rejection as problem+json naming the field, and rewrites
//! serde's messages so a value (which may be a card number sent in the wrong place) is never echoed
//! back or logged.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{ApiError, FieldError};

/// Extracts a JSON body into `T` (or serialises `T` as a response).
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(reject_bytes)?;
        parse_json(&bytes).map(AppJson)
    }
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Deserialises a JSON document, mapping every failure to a field-level problem.
///
/// Every Vitrine body is a JSON object; anything else (serde would map an array onto a struct's
/// fields by position) is refused up front.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => {
            return Err(ApiError::BadRequest(
                "the body is empty; send a JSON object".to_owned(),
            ));
        }
        Some(_) => return Err(ApiError::invalid("body", "must be a JSON object")),
    }
    let bytes = whole_numbers(bytes);
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let (field, message) = describe_data_error(&path, &inner.to_string());
                ApiError::Validation(vec![FieldError::new(field, message)])
            }
            serde_json::error::Category::Eof => {
                ApiError::BadRequest("the body is not valid JSON: it ends too early".to_owned())
            }
            _ => ApiError::BadRequest(format!(
                "the body is not valid JSON (line {}, column {})",
                inner.line(),
                inner.column()
            )),
        }
    })?;
    // Trailing garbage after the document is malformed input too.
    deserializer.end().map_err(|_| {
        ApiError::BadRequest("the body has trailing characters after the JSON document".to_owned())
    })?;
    Ok(value)
}

/// JSON has one number type: `2030.0` is the integer 2030 (RFC 8259 §6; JSON Schema's
/// `integer` accepts it too), but serde refuses it for an integer field. Number tokens whose
/// fraction is all zeros lose it before parsing; everything else (strings included) is left as
/// it is, and nothing is copied when there is nothing to rewrite.
fn whole_numbers(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b'-' || b.is_ascii_digit() {
            let end = bytes[i..]
                .iter()
                .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                .map_or(bytes.len(), |n| i + n);
            let token = &bytes[i..end];
            if let Some(dot) = token.iter().position(|c| *c == b'.')
                && dot > 0
                && !token[dot + 1..].is_empty()
                && token[dot + 1..].iter().all(|c| *c == b'0')
            {
                let out = out.get_or_insert_with(|| bytes[..i].to_vec());
                out.extend_from_slice(&token[..dot]);
            } else if let Some(out) = out.as_mut() {
                out.extend_from_slice(token);
            }
            i = end;
            continue;
        }
        if let Some(out) = out.as_mut() {
            out.push(b);
        }
        i += 1;
    }
    match out {
        Some(out) => std::borrow::Cow::Owned(out),
        None => std::borrow::Cow::Borrowed(bytes),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn reject_bytes(rejection: BytesRejection) -> ApiError {
    match rejection {
        BytesRejection::FailedToBufferBody(inner)
            if inner.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiError::PayloadTooLarge
        }
        other => ApiError::BadRequest(format!("could not read the body: {}", other.body_text())),
    }
}

/// Turns serde's message for a data error into (field, safe message).
///
/// serde formats values into messages (`invalid type: string "4111...", expected u8`); we keep only
/// the expectation, which comes from our own types.
fn describe_data_error(path: &str, raw: &str) -> (String, String) {
    // serde_json appends " at line L column C"; drop it.
    let message = raw.rsplit_once(" at line ").map_or(raw, |(head, _)| head);
    let expected = message.rsplit_once(", expected ").map(|(_, e)| e);
    let field = if path == "." {
        String::new()
    } else {
        path.to_owned()
    };

    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.trim_end_matches('`');
        return (join(&field, name), "is required".to_owned());
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        // The path already ends at the unknown key.
        let field = if field.rsplit('.').next() == Some(name) {
            field
        } else {
            join(&field, name)
        };
        return (field, "is not a recognised field".to_owned());
    }
    if let Some(rest) = message.strip_prefix("duplicate field `") {
        let name = rest.trim_end_matches('`');
        return (join(&field, name), "appears more than once".to_owned());
    }
    // An array where an object is expected reaches serde's sequence form of the struct.
    let array_for_object =
        message.starts_with("invalid length") && expected.is_some_and(|e| e.starts_with("struct "));
    let message = if message.starts_with("invalid type") || array_for_object {
        format!(
            "has the wrong type: expected {}",
            expected.map_or("another type", json_type)
        )
    } else if message.starts_with("invalid value") || message.starts_with("unknown variant") {
        format!(
            "has an invalid value: expected {}",
            expected.unwrap_or("another value")
        )
    } else if message.starts_with("invalid length") {
        format!(
            "has the wrong length: expected {}",
            expected.unwrap_or("another length")
        )
    } else if message.contains("out of range") {
        "is out of range".to_owned()
    } else {
        // Messages from our own `Deserialize` impls (never containing input values).
        message.to_owned()
    };
    (
        if field.is_empty() {
            "body".to_owned()
        } else {
            field
        },
        message,
    )
}

/// serde's expectation in JSON's words: clients see `an integer`, never `i64`.
fn json_type(expected: &str) -> &str {
    match expected {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer",
        "f32" | "f64" => "a number",
        "a string" | "a borrowed string" | "a character" => "a string",
        "a boolean" => "true or false",
        "a sequence" => "an array",
        other if other.starts_with("struct ") || other == "a map" => "an object",
        other => other,
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Address {
        postal_code: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        exp_month: u8,
        address: Address,
    }

    fn field_error(json: &str) -> FieldError {
        match parse_json::<Body>(json.as_bytes()) {
            Err(ApiError::Validation(mut errors)) => errors.remove(0),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn whole_numbers_lose_their_zero_fraction_and_nothing_else_changes() {
        let raw =
            br#"{"a": 2030.0, "b": -7.000, "c": 1.5, "d": "9.0", "e": [3.0, 1e2], "f": "\"4.0"}"#;
        assert_eq!(
            std::str::from_utf8(&whole_numbers(raw)).unwrap(),
            r#"{"a": 2030, "b": -7, "c": 1.5, "d": "9.0", "e": [3, 1e2], "f": "\"4.0"}"#
        );
        let untouched = br#"{"a": 1, "b": "x.0"}"#;
        assert!(matches!(
            whole_numbers(untouched),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn missing_nested_field_names_its_path() {
        let error = field_error(r#"{"name":"a","exp_month":1,"address":{}}"#);
        assert_eq!(error.field, "address.postal_code");
        assert_eq!(error.message, "is required");
    }

    #[test]
    fn unknown_field_is_rejected_by_name() {
        let error =
            field_error(r#"{"name":"a","exp_month":1,"address":{"postal_code":"1"},"cvv":"123"}"#);
        assert_eq!(error.field, "cvv");
    }

    #[test]
    fn wrong_type_never_echoes_the_value() {
        let error = field_error(
            r#"{"name":"a","exp_month":"4111111111111111","address":{"postal_code":"1"}}"#,
        );
        assert_eq!(error.field, "exp_month");
        assert!(!error.message.contains("4111"), "{}", error.message);
        let error =
            field_error(r#"{"name":4111111111111111,"exp_month":1,"address":{"postal_code":"1"}}"#);
        assert_eq!(error.field, "name");
        assert!(!error.message.contains("4111"), "{}", error.message);
    }

    #[test]
    fn type_errors_speak_json_not_rust() {
        let error = field_error(r#"{"name":"a","exp_month":"x","address":{"postal_code":"1"}}"#);
        assert_eq!(
            error.message,
            "has the wrong type: expected a non-negative integer"
        );
        let error = field_error(r#"{"name":"a","exp_month":1,"address":[]}"#);
        assert_eq!(error.message, "has the wrong type: expected an object");
        let error = field_error(r#"{"name":true,"exp_month":1,"address":{"postal_code":"1"}}"#);
        assert_eq!(error.message, "has the wrong type: expected a string");
    }

    #[test]
    fn out_of_range_number_is_a_field_error() {
        let error = field_error(r#"{"name":"a","exp_month":999,"address":{"postal_code":"1"}}"#);
        assert_eq!(error.field, "exp_month");
        assert!(!error.message.contains("999"), "{}", error.message);
    }

    #[test]
    fn malformed_json_is_bad_request() {
        assert!(matches!(
            parse_json::<Body>(b"{\"name\":"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_json::<Body>(b"{nope}"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_json::<Body>(br#"{"name":"a","exp_month":1,"address":{"postal_code":"1"}} x"#),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn top_level_wrong_type_is_a_body_error() {
        let error = match parse_json::<Body>(b"[1,2]") {
            Err(ApiError::Validation(mut errors)) => errors.remove(0),
            other => panic!("{other:?}"),
        };
        assert_eq!(error.field, "body");
    }
}
