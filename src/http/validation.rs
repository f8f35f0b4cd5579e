//! Field checks with Strapi's (yup's) wording: each failed field becomes one entry of
//! `details.errors`, and the message is the single error's or "N errors occurred".

use serde_json::Value;

use super::body::Body;
use super::errors::ApiError;

#[derive(Default)]
pub struct Checks {
    errors: Vec<Value>,
}

impl Checks {
    pub fn fail(&mut self, field: &str, message: String, value: Option<&Value>) {
        self.errors
            .push(ApiError::field_error(field, message, value));
    }

    /// A required string (strict: no number or boolean is converted). Each error carries the
    /// value sent (`value`, as yup's errors do; none when the field is missing), except for
    /// `secret` fields: a password is never echoed back, where Strapi echoes it, so that no
    /// log of answers or error reporter in a front end keeps one.
    pub fn string<'b>(&mut self, body: &'b Body, field: &str, secret: bool) -> Option<&'b str> {
        let echo = |value: &'b Value| (!secret).then_some(value);
        match body.get(field) {
            None => self.fail(field, format!("{field} is a required field"), None),
            Some(empty @ Value::String(s)) if s.is_empty() => {
                self.fail(field, format!("{field} is a required field"), echo(empty))
            }
            Some(Value::String(s)) => return Some(s),
            // Strapi 5's yup words `null` alike, with no hint about `.nullable()`.
            Some(other) => {
                let message =
                    format!("{field} must be a `string` type, but the final value was: `{other}`.");
                self.fail(field, message, echo(other));
            }
        }
        None
    }

    /// A rule on a field that passed `string`.
    pub fn require(&mut self, ok: bool, field: &str, message: &str, value: Option<&str>) {
        if !ok {
            let value = value.map(|v| Value::String(v.to_owned()));
            self.fail(field, message.to_owned(), value.as_ref());
        }
    }

    /// The checked fields, once every check passed: each field missing has failed a check
    /// (`string`), so `fields` is `Some` whenever there are no errors.
    pub fn finish_with<T>(self, fields: Option<T>) -> Result<T, ApiError> {
        self.finish()?;
        fields.ok_or_else(|| ApiError::validation("A required field is missing"))
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid_fields(self.errors))
        }
    }
}

/// JavaScript truthiness, as the plugin reads `requestRefresh`.
pub fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(_) | Value::Object(_)) => true,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(value: Value) -> Body {
        Body(value.as_object().unwrap().clone())
    }

    #[test]
    fn two_missing_fields_make_two_errors() {
        let b = body(json!({}));
        let mut checks = Checks::default();
        checks.string(&b, "identifier", false);
        checks.string(&b, "password", true);
        let error = checks.finish().unwrap_err();
        assert_eq!(error.message, "2 errors occurred");
        assert_eq!(error.details["errors"][0]["path"], json!(["identifier"]));
        assert_eq!(
            error.details["errors"][1]["message"],
            "password is a required field"
        );
    }

    #[test]
    fn a_wrong_type_says_so_and_secrets_are_not_echoed() {
        let b = body(json!({"identifier": 123, "password": 456}));
        let mut checks = Checks::default();
        checks.string(&b, "identifier", false);
        checks.string(&b, "password", true);
        let error = checks.finish().unwrap_err();
        let errors = &error.details["errors"];
        assert_eq!(
            errors[0]["message"],
            "identifier must be a `string` type, but the final value was: `123`."
        );
        assert_eq!(errors[0]["value"], 123);
        assert!(errors[1].get("value").is_none());
    }

    #[test]
    fn an_empty_field_echoes_its_value_unless_it_is_secret() {
        let b = body(json!({"identifier": "", "password": ""}));
        let mut checks = Checks::default();
        checks.string(&b, "identifier", false);
        checks.string(&b, "password", true);
        checks.string(&b, "missing", false);
        let error = checks.finish().unwrap_err();
        let errors = &error.details["errors"];
        assert_eq!(
            errors[0],
            json!({"path": ["identifier"], "message": "identifier is a required field",
                "name": "ValidationError", "value": ""})
        );
        assert_eq!(
            errors[1],
            json!({"path": ["password"], "message": "password is a required field",
                "name": "ValidationError"})
        );
        assert!(
            errors[2].get("value").is_none(),
            "a missing field has no value"
        );
    }

    #[test]
    fn truthiness_is_javascripts() {
        for yes in [
            json!(true),
            json!(1),
            json!("true"),
            json!("false"),
            json!({}),
        ] {
            assert!(truthy(Some(&yes)), "{yes}");
        }
        for no in [json!(false), json!(0), json!(""), json!(null)] {
            assert!(!truthy(Some(&no)), "{no}");
        }
        assert!(!truthy(None));
    }
}
