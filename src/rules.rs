//! Strapi's rules for a new user's fields, as pure functions: what registration, a password
//! change and the CLI's `user add` refuse, in Strapi's words and order. No IO: the store only
//! keeps what these rules let through.

use std::sync::LazyLock;

use regex::Regex;

/// Strapi's register rules (yup's email pattern, then the content-type's lengths).
pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 255;
pub const EMAIL_MIN: usize = 6;
pub const PASSWORD_MIN: usize = 6;
/// argon2 accepts more, but Strapi (bcrypt) refuses more than 72 bytes; so do we.
pub const PASSWORD_MAX_BYTES: usize = 72;

/// yup 0.32's email pattern, which Strapi's register validation uses.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)^((([a-z]|[0-9]|[!#\$%&'\*\+\-\/=\?\^_`{\|}~]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])+(\.([a-z]|[0-9]|[!#\$%&'\*\+\-\/=\?\^_`{\|}~]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])+)*)|((\x22)((((\x20|\x09)*(\x0d\x0a))?(\x20|\x09)+)?(([\x01-\x08\x0b\x0c\x0e-\x1f\x7f]|\x21|[\x23-\x5b]|[\x5d-\x7e]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])|(\\([\x01-\x09\x0b\x0c\x0d-\x7f]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}]))))*(((\x20|\x09)*(\x0d\x0a))?(\x20|\x09)+)?(\x22)))@((([a-z]|[0-9]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])|(([a-z]|[0-9]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])([a-z]|[0-9]|-|\.|_|~|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])*([a-z]|[0-9]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])))\.)+(([a-z]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])|(([a-z]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])([a-z]|[0-9]|-|\.|_|~|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])*([a-z]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])))$"#).expect("the email pattern compiles")
});

pub fn is_valid_email(email: &str) -> bool {
    EMAIL.is_match(email)
}

/// Every rule a new user breaks, as `(field, message)` in Strapi's words and order.
pub fn rule_violations(username: &str, email: &str, password: &str) -> Vec<(&'static str, String)> {
    let mut broken = Vec::new();
    let chars = |s: &str| s.chars().count();
    if !is_valid_email(email) {
        broken.push(("email", "email must be a valid email".to_owned()));
    }
    if password.len() > PASSWORD_MAX_BYTES {
        broken.push(("password", "Password must be less than 73 bytes".to_owned()));
    }
    // Control characters (C0 with NUL, DEL, C1) have no place in a name, and a terminal
    // obeys them when an operator lists users; PostgreSQL cannot even store a NUL. Strapi
    // takes them; we refuse them. yup's email pattern lets C0 through in a quoted local part.
    for (field, value) in [("username", username), ("email", email)] {
        if value.chars().any(char::is_control) {
            broken.push((
                field,
                format!("{field} must not contain control characters"),
            ));
        }
    }
    if chars(username) < USERNAME_MIN {
        broken.push((
            "username",
            format!("username must be at least {USERNAME_MIN} characters"),
        ));
    }
    if chars(username) > USERNAME_MAX {
        broken.push((
            "username",
            format!("username must be at most {USERNAME_MAX} characters"),
        ));
    }
    if chars(email) < EMAIL_MIN {
        broken.push((
            "email",
            format!("email must be at least {EMAIL_MIN} characters"),
        ));
    }
    if chars(password) < PASSWORD_MIN {
        broken.push((
            "password",
            format!("password must be at least {PASSWORD_MIN} characters"),
        ));
    }
    broken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_follow_yups_pattern() {
        for good in [
            "a@b.co",
            "a+b@ex.com",
            "üser@ex.com",
            "user@ëx.com",
            "\"quo ted\"@ex.com",
            "user@ex_ample.com",
        ] {
            assert!(is_valid_email(good), "{good}");
        }
        for bad in [
            "a",
            "a@b",
            "user@1.2.3.4",
            "user@[127.0.0.1]",
            ".user@ex.com",
            "user.@ex.com",
            "user@-ex.com",
            "user@ex.c1",
            "a@b@ex.com",
            "a b@ex.com",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn control_characters_in_a_username_or_email_are_refused() {
        for name in [
            "a\0b",
            "a\u{1b}[2Jb",
            "a\nb",
            "a\u{7f}b",
            "a\u{9b}b",
            "a\u{85}b",
        ] {
            assert_eq!(
                rule_violations(name, "nul@example.com", "password123"),
                [(
                    "username",
                    "username must not contain control characters".to_owned()
                )],
                "{name:?}"
            );
        }
        assert_eq!(
            rule_violations("alice", "\"\u{1b}[2J\"@example.com", "password123"),
            [(
                "email",
                "email must not contain control characters".to_owned()
            )]
        );
        // Letters beyond ASCII are not controls.
        assert!(rule_violations("Émile 😀", "émile@example.com", "password123").is_empty());
    }

    #[test]
    fn rules_are_reported_in_strapis_order() {
        assert!(rule_violations("alice", "alice@example.com", "password123").is_empty());
        let broken: Vec<_> = rule_violations("ab", "bad", "1")
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(broken, ["email", "username", "email", "password"]);
        assert_eq!(
            rule_violations("alice", "alice@example.com", &"x".repeat(73))[0].1,
            "Password must be less than 73 bytes"
        );
    }
}
