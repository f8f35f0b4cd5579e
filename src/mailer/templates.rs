//! The two emails' texts: Strapi's defaults (users-permissions' `reset_password` and
//! `email_confirmation`, worded as Strapi words them), or an operator's file. Variables are
//! Strapi's, in lodash's `<%= NAME %>` form: `URL`, `SERVER_URL`, `ADMIN_URL`, `TOKEN` (the
//! reset code), `CODE` (the confirmation code) and `USER.<field>` (`id`, `documentId`,
//! `username`, `email`, `provider`, `confirmed`, `blocked`). As in Strapi, only known names
//! are replaced, and anything else is left as written. Unlike Strapi, values are
//! HTML-escaped in the html part, so a username cannot inject markup into the email.
//!
//! A template file is TOML with three keys, `subject`, `text` and `html`; `subject` and at
//! least one of the other two are required, and an email has the parts its template has.

use std::path::Path;

use serde::Deserialize;

/// One email's subject and bodies, with their variables still in.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
}

/// A template with its variables replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
}

/// The variables' values, by name (`URL`, `USER.email`).
pub type Variables = Vec<(String, String)>;

impl Template {
    /// Strapi's `reset_password` email.
    pub fn reset_password() -> Template {
        Template {
            subject: "Reset password".to_owned(),
            text: Some(
                "We heard that you lost your password. Sorry about that!\n\n\
                 But don’t worry! You can use the following link to reset your password:\n\
                 <%= URL %>?code=<%= TOKEN %>\n\n\
                 Thanks.\n"
                    .to_owned(),
            ),
            html: Some(
                "<p>We heard that you lost your password. Sorry about that!</p>\n\n\
                 <p>But don’t worry! You can use the following link to reset your password:</p>\n\
                 <p><%= URL %>?code=<%= TOKEN %></p>\n\n\
                 <p>Thanks.</p>"
                    .to_owned(),
            ),
        }
    }

    /// Strapi's `email_confirmation` email.
    pub fn email_confirmation() -> Template {
        Template {
            subject: "Account confirmation".to_owned(),
            text: Some(
                "Thank you for registering!\n\n\
                 You have to confirm your email address. Please click on the link below.\n\n\
                 <%= URL %>?confirmation=<%= CODE %>\n\n\
                 Thanks.\n"
                    .to_owned(),
            ),
            html: Some(
                "<p>Thank you for registering!</p>\n\n\
                 <p>You have to confirm your email address. Please click on the link below.</p>\n\n\
                 <p><%= URL %>?confirmation=<%= CODE %></p>\n\n\
                 <p>Thanks.</p>"
                    .to_owned(),
            ),
        }
    }

    /// A template file (see the module's documentation); the message names what is wrong.
    pub fn read(path: &Path) -> Result<Template, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Template::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Template, String> {
        let template: Template = toml::from_str(text).map_err(|e| e.to_string())?;
        if template.text.is_none() && template.html.is_none() {
            return Err("a template needs `text`, `html` or both".to_owned());
        }
        Ok(template)
    }

    pub fn render(&self, variables: &Variables) -> Rendered {
        // A header is one line: a value with a line break would end it.
        let one_line = |value: &str| value.replace(['\r', '\n'], " ");
        Rendered {
            subject: one_line(&fill(&self.subject, variables, &|v| v.to_owned())),
            text: (self.text.as_ref()).map(|text| fill(text, variables, &|v| v.to_owned())),
            html: (self.html.as_ref()).map(|html| fill(html, variables, &escape_html)),
        }
    }
}

/// `layout` with every `<%= NAME %>` whose name is in `variables` replaced by its value, as
/// `shown`; other tags stay as written.
fn fill(layout: &str, variables: &Variables, shown: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(layout.len());
    let mut rest = layout;
    while let Some(start) = rest.find("<%=") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag.find("%>") else {
            out.push_str(tag);
            return out;
        };
        let name = tag[3..end].trim();
        match variables.iter().find(|(known, _)| known == name) {
            Some((_, value)) => out.push_str(&shown(value)),
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

fn escape_html(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Variables {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn given_strapis_reset_template_then_the_link_is_the_reset_page_with_the_code() {
        let rendered = Template::reset_password().render(&vars(&[
            ("URL", "https://app.example.com/reset"),
            ("TOKEN", "c0de"),
        ]));
        assert_eq!(rendered.subject, "Reset password");
        let link = "https://app.example.com/reset?code=c0de";
        assert!(rendered.text.unwrap().contains(&format!(":\n{link}\n")));
        assert!(rendered.html.unwrap().contains(&format!("<p>{link}</p>")));
    }

    #[test]
    fn given_strapis_confirmation_template_then_the_link_carries_the_code() {
        let rendered = Template::email_confirmation().render(&vars(&[
            ("URL", "http://127.0.0.1:1337/api/auth/email-confirmation"),
            ("CODE", "abc"),
        ]));
        assert_eq!(rendered.subject, "Account confirmation");
        assert!(rendered.text.unwrap().contains(
            "\n\nhttp://127.0.0.1:1337/api/auth/email-confirmation?confirmation=abc\n\n"
        ));
    }

    #[test]
    fn values_are_escaped_in_html_only_and_unknown_tags_stay() {
        let template = Template {
            subject: "Hi <%= USER.username %>".into(),
            text: Some("<%= USER.username %> <%= NOPE %> <%=URL%>".into()),
            html: Some("<b><%= USER.username %></b>".into()),
        };
        let rendered = template.render(&vars(&[
            ("USER.username", "<i>eve</i>&\"'\nx"),
            ("URL", "u"),
        ]));
        assert_eq!(rendered.subject, "Hi <i>eve</i>&\"' x", "one line");
        assert_eq!(rendered.text.unwrap(), "<i>eve</i>&\"'\nx <%= NOPE %> u");
        assert_eq!(
            rendered.html.unwrap(),
            "<b>&lt;i&gt;eve&lt;/i&gt;&amp;&quot;&#39;\nx</b>"
        );
    }

    #[test]
    fn an_unclosed_tag_is_left_as_written() {
        let template = Template {
            subject: "a <%= URL".into(),
            text: Some("<%= URL %> <%= URL".into()),
            html: None,
        };
        let rendered = template.render(&vars(&[("URL", "x")]));
        assert_eq!(rendered.subject, "a <%= URL");
        assert_eq!(rendered.text.unwrap(), "x <%= URL");
        assert_eq!(rendered.html, None);
    }

    #[test]
    fn a_template_file_is_toml_with_a_subject_and_a_body() {
        let parsed = Template::parse("subject = \"S\"\nhtml = \"<p><%= URL %></p>\"\n").unwrap();
        assert_eq!((parsed.subject.as_str(), parsed.text), ("S", None));
        assert!(
            Template::parse("subject = \"S\"\n")
                .unwrap_err()
                .contains("needs")
        );
        assert!(
            Template::parse("subject = \"S\"\ntext = \"t\"\nbody = \"b\"\n")
                .unwrap_err()
                .contains("unknown field `body`")
        );
        assert!(
            Template::parse("text = \"t\"\n")
                .unwrap_err()
                .contains("subject")
        );
    }
}
