//! One email made from a pending code: the template filled with Strapi's variables, the
//! sender and reply-to of the settings, the user's current address, and a `Message-ID` made
//! from the code's id, so that a resend of the same code carries the same one and a mail
//! client or a log shows it is the same email.

use lettre::Message;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use tokenledger_domain::EmailKind;
use uuid::Uuid;

use super::templates::{Rendered, Template, Variables};
use crate::config::{Config, ServerConfig};
use crate::store::users::{User, strapi_time};

/// What every email shares, read from the configuration once.
#[derive(Clone, Debug)]
pub struct Letters {
    reset: Template,
    confirmation: Template,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    /// The sender's domain: the right half of every `Message-ID`.
    domain: String,
    /// The front end's reset page (`EMAIL_RESET_PASSWORD`).
    reset_page: Option<String>,
    server_url: String,
}

/// Why an email cannot be made: no try would do better.
#[derive(Debug, thiserror::Error)]
pub enum Unsendable {
    #[error("EMAIL_RESET_PASSWORD is not set: a reset email would have no link")]
    NoResetPage,
    #[error("the user's email {0:?} is not an address an email can go to")]
    BadAddress(String),
    #[error("the email cannot be built: {0}")]
    Build(String),
}

impl Letters {
    /// The settings and template files of `config`; an error names the key at fault.
    pub fn of(config: &Config) -> Result<Letters, String> {
        let email = &config.email;
        let template = |path: &Option<std::path::PathBuf>, key: &str, default: Template| {
            path.as_deref()
                .map(Template::read)
                .transpose()
                .map(|read| read.unwrap_or(default))
                .map_err(|e| format!("{key}: {e}"))
        };
        // Both mailboxes were checked when the configuration was loaded.
        let mailbox = |text: &str, key: &str| {
            text.parse::<Mailbox>()
                .map_err(|e| format!("{key}: {text:?}: {e}"))
        };
        let from = mailbox(&email.from, "EMAIL_FROM")?;
        Ok(Letters {
            reset: template(
                &email.reset_password_template,
                "EMAIL_RESET_PASSWORD_TEMPLATE",
                Template::reset_password(),
            )?,
            confirmation: template(
                &email.confirmation_template,
                "EMAIL_CONFIRMATION_TEMPLATE",
                Template::email_confirmation(),
            )?,
            domain: from.email.domain().to_owned(),
            from,
            reply_to: (email.reply_to.as_deref())
                .map(|text| mailbox(text, "EMAIL_REPLY_TO"))
                .transpose()?,
            reset_page: config.accounts.email_reset_password.clone(),
            server_url: config.server.public_url(),
        })
    }

    /// The service's URL once it listens: without `PRODUCTION_URL`, `PORT=0` (tests) is
    /// known only then.
    pub fn serving_on(&mut self, server: &ServerConfig, port: u16) {
        if server.production_url.is_none() {
            self.server_url = format!("http://{}:{port}", server.host);
        }
    }

    /// `<code id@sender's domain>`.
    pub fn message_id(&self, code_id: Uuid) -> String {
        format!("<{code_id}@{}>", self.domain)
    }

    /// Strapi's `URL`: the reset page, or the service's confirmation route.
    fn url(&self, kind: EmailKind) -> Result<String, Unsendable> {
        match kind {
            EmailKind::ResetPassword => self.reset_page.clone().ok_or(Unsendable::NoResetPage),
            EmailKind::EmailConfirmation => {
                Ok(format!("{}/api/auth/email-confirmation", self.server_url))
            }
        }
    }

    /// The link the email carries, as Strapi's default templates make it.
    pub fn link(&self, kind: EmailKind, code: &str) -> Result<String, Unsendable> {
        let url = self.url(kind)?;
        Ok(match kind {
            EmailKind::ResetPassword => format!("{url}?code={code}"),
            EmailKind::EmailConfirmation => format!("{url}?confirmation={code}"),
        })
    }

    /// Strapi's variables: the code is `TOKEN` in a reset email, `CODE` in a confirmation.
    fn variables(&self, kind: EmailKind, user: &User, code: &str) -> Result<Variables, Unsendable> {
        let code_name = match kind {
            EmailKind::ResetPassword => "TOKEN",
            EmailKind::EmailConfirmation => "CODE",
        };
        let pairs = [
            ("URL", self.url(kind)?),
            ("SERVER_URL", self.server_url.clone()),
            ("ADMIN_URL", format!("{}/admin", self.server_url)),
            (code_name, code.to_owned()),
            ("USER.id", user.id.to_string()),
            ("USER.documentId", user.document_id.clone()),
            ("USER.username", user.username.clone()),
            ("USER.email", user.email.clone()),
            ("USER.provider", user.provider.clone()),
            ("USER.confirmed", user.confirmed.to_string()),
            ("USER.blocked", user.blocked.to_string()),
            ("USER.createdAt", strapi_time(&user.created_at)),
            ("USER.updatedAt", strapi_time(&user.updated_at)),
        ];
        Ok(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// The email of `code_id` (whose code is `code`) to `user`'s current address.
    pub fn compose(
        &self,
        kind: EmailKind,
        code_id: Uuid,
        user: &User,
        code: &str,
    ) -> Result<Message, Unsendable> {
        let template = match kind {
            EmailKind::ResetPassword => &self.reset,
            EmailKind::EmailConfirmation => &self.confirmation,
        };
        let rendered = template.render(&self.variables(kind, user, code)?);
        let to = (user.email.parse())
            .map(|address| Mailbox::new(None, address))
            .map_err(|_| Unsendable::BadAddress(user.email.clone()))?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject.clone())
            .message_id(Some(self.message_id(code_id)));
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        builder
            .multipart(body(rendered))
            .map_err(|e| Unsendable::Build(e.to_string()))
    }
}

/// Text and html as alternatives, or the one part the template has.
fn body(rendered: Rendered) -> MultiPart {
    match (rendered.text, rendered.html) {
        (Some(text), Some(html)) => MultiPart::alternative_plain_html(text, html),
        (Some(text), None) => MultiPart::mixed().singlepart(SinglePart::plain(text)),
        (None, html) => MultiPart::mixed().singlepart(SinglePart::html(html.unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(None, &env, false).unwrap()
    }

    fn ada() -> User {
        let now = chrono::Utc::now();
        User {
            id: 7,
            document_id: "d".into(),
            username: "ada".into(),
            email: "ada@example.com".into(),
            password_hash: None,
            provider: "local".into(),
            confirmed: true,
            blocked: false,
            created_at: now,
            updated_at: now,
            published_at: None,
            reset_code: None,
            confirmation_code: None,
        }
    }

    #[test]
    fn the_message_id_is_the_code_id_at_the_senders_domain() {
        let letters =
            Letters::of(&config(&[("EMAIL_FROM", "Ops <ops@mail.example.org>")])).unwrap();
        let id = Uuid::from_u128(5);
        assert_eq!(letters.message_id(id), format!("<{id}@mail.example.org>"));
    }

    #[test]
    fn given_the_settings_then_the_email_has_their_headers_and_the_link() {
        let letters = Letters::of(&config(&[
            ("EMAIL_FROM", "Administration Panel <no-reply@example.com>"),
            ("EMAIL_REPLY_TO", "help@example.com"),
            ("EMAIL_RESET_PASSWORD", "https://app.example.com/reset"),
        ]))
        .unwrap();
        let id = Uuid::from_u128(9);
        let message = letters
            .compose(EmailKind::ResetPassword, id, &ada(), "c0de")
            .unwrap();
        let text = String::from_utf8(message.formatted()).unwrap();
        for header in [
            "From: \"Administration Panel\" <no-reply@example.com>",
            "Reply-To: help@example.com",
            "To: ada@example.com",
            "Subject: Reset password",
            &format!("Message-ID: <{id}@example.com>"),
        ] {
            assert!(text.contains(header), "{header} in {text}");
        }
        // Quoted-printable: `=` is written `=3D`.
        assert!(
            text.contains("https://app.example.com/reset?code=3Dc0de"),
            "{text}"
        );
    }

    #[test]
    fn without_a_reset_page_a_reset_email_cannot_be_made_but_a_confirmation_can() {
        let letters = Letters::of(&config(&[("PORT", "4000")])).unwrap();
        let reset = letters.compose(EmailKind::ResetPassword, Uuid::from_u128(1), &ada(), "x");
        assert!(matches!(reset, Err(Unsendable::NoResetPage)));
        assert_eq!(
            letters.link(EmailKind::EmailConfirmation, "abc").unwrap(),
            "http://127.0.0.1:4000/api/auth/email-confirmation?confirmation=abc"
        );
        let mut odd = ada();
        odd.email = "not an address".into();
        let bad = letters.compose(EmailKind::EmailConfirmation, Uuid::from_u128(1), &odd, "x");
        assert!(matches!(bad, Err(Unsendable::BadAddress(_))));
    }

    #[test]
    fn a_template_file_that_does_not_parse_is_an_error_naming_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reset.toml");
        std::fs::write(&path, "subject = 1\n").unwrap();
        let error = Letters::of(&config(&[(
            "EMAIL_RESET_PASSWORD_TEMPLATE",
            path.to_str().unwrap(),
        )]))
        .unwrap_err();
        assert!(
            error.starts_with("EMAIL_RESET_PASSWORD_TEMPLATE: "),
            "{error}"
        );
    }
}
