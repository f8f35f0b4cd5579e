//! Handing an email to the SMTP server (`SMTP_HOST`), or, without one, writing its link to
//! the log for a developer to follow.

use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{EmailConfig, SmtpConfig, SmtpSecurity};

pub enum Delivery {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// No SMTP server: links are logged (development only; `config` refuses it on https).
    Log,
}

/// A try that did not end with the server's acceptance.
#[derive(Debug)]
pub struct Failure {
    pub error: String,
    /// The server refused for good (a 5xx answer): trying again would get the same answer.
    pub permanent: bool,
}

impl Delivery {
    pub fn of(config: &EmailConfig) -> Result<Delivery, String> {
        match &config.smtp {
            None => Ok(Delivery::Log),
            Some(smtp) => transport(smtp).map(Delivery::Smtp),
        }
    }

    pub async fn send(&self, message: Message) -> Result<(), Failure> {
        let Delivery::Smtp(transport) = self else {
            return Err(Failure {
                error: "no SMTP server is configured".to_owned(),
                permanent: true,
            });
        };
        transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| Failure {
                error: error_chain(&e),
                permanent: e.is_permanent(),
            })
    }
}

fn transport(smtp: &SmtpConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    type Smtp = AsyncSmtpTransport<Tokio1Executor>;
    let builder = match smtp.security {
        // Required, not opportunistic: a server that does not offer STARTTLS is refused
        // rather than sent the password and the link in the clear.
        SmtpSecurity::StartTls => Smtp::starttls_relay(&smtp.host),
        SmtpSecurity::Tls => Smtp::relay(&smtp.host),
        SmtpSecurity::None => Ok(Smtp::builder_dangerous(&smtp.host)),
    }
    .map_err(|e| format!("SMTP_HOST: {e}"))?;
    let timeout = smtp.timeout.to_std().unwrap_or(Duration::from_secs(10));
    let mut builder = builder.port(smtp.port).timeout(Some(timeout));
    if let (Some(username), Some(password)) = (&smtp.username, &smtp.password) {
        builder = builder.credentials(Credentials::new(
            username.clone(),
            password.expose().to_owned(),
        ));
    }
    Ok(builder.build())
}

/// The error and its causes on one line, for `EmailFailed` and the log.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
