//! `INTROSPECTION_CLIENTS`: the services that may ask `POST /api/auth/introspect` whether a
//! token is live (RFC 7662), each with an id and a secret of its own. They are kept apart from
//! `ADMIN_API_TOKEN` (an API server that checks tokens must not be able to read audit trails
//! or block users) and from the signing secrets (it must not be able to mint tokens).

use super::{ConfigError, Secret, invalid, refuse_weak};

/// One service credential (`client_id:client_secret`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceClient {
    pub id: String,
    pub secret: Secret,
    /// SHA-256 of the id and of the secret, made once: a request's credential is compared
    /// with every client through digests of one length (`Services::is_service`).
    pub id_digest: [u8; 32],
    pub secret_digest: [u8; 32],
}

/// SHA-256 of a credential's part, as `ServiceClient` keeps its own.
pub fn credential_digest(text: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// `svc-a:secret-a,svc-b:secret-b` (or a TOML array of `id:secret`): split at each comma, then
/// at the first colon of each item, so a secret may hold colons but no comma. An id may not
/// hold a colon, since HTTP Basic splits `id:secret` at the first one.
pub(super) fn service_clients(value: &str) -> Result<Vec<ServiceClient>, String> {
    let mut clients: Vec<ServiceClient> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((id, secret)) = item.split_once(':') else {
            return Err("each client is `client_id:client_secret`, separated by commas".into());
        };
        if id.is_empty() || secret.is_empty() {
            return Err(format!(
                "client {id:?}: neither the id nor the secret may be empty"
            ));
        }
        // What an HTTP client can send in a Basic header or a form field as it is.
        if !id.bytes().all(|b| b.is_ascii_graphic())
            || !secret.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(format!(
                "client {id:?}: the id and the secret must be printable ASCII without spaces"
            ));
        }
        if clients.iter().any(|client| client.id == id) {
            return Err(format!("client {id:?} is listed twice"));
        }
        clients.push(ServiceClient {
            id: id.to_owned(),
            secret: Secret::new(secret),
            id_digest: credential_digest(id),
            secret_digest: credential_digest(secret),
        });
    }
    Ok(clients)
}

/// Each secret is as strong as the other secrets must be, and none is the admin token: a
/// service credential leaked from an API server must not open the admin API.
pub(super) fn validate(
    key: &str,
    clients: &[ServiceClient],
    admin_token: Option<&Secret>,
    insecure_dev: bool,
) -> Result<(), ConfigError> {
    for client in clients {
        let named = format!("{key} (client {:?})", client.id);
        refuse_weak(&named, &client.secret, insecure_dev)?;
        if admin_token.is_some_and(|admin| admin.expose() == client.secret.expose()) {
            return Err(invalid(
                &named,
                "must not be ADMIN_API_TOKEN: give each service a secret of its own",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRONG: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn clients_are_a_comma_list_of_id_and_secret() {
        let clients = service_clients(&format!(" api:{STRONG}:with:colons , worker:{STRONG}x,"))
            .expect("parses");
        assert_eq!(clients.len(), 2);
        assert_eq!(clients[0].id, "api");
        assert_eq!(
            clients[0].secret.expose(),
            format!("{STRONG}:with:colons"),
            "the secret is everything after the first colon"
        );
        assert_eq!(clients[1].id, "worker");
        assert_eq!(service_clients("").unwrap(), []);
    }

    #[test]
    fn malformed_lists_are_refused() {
        for (value, says) in [
            ("no-colon", "client_id:client_secret"),
            (":secret", "may be empty"),
            ("id:", "may be empty"),
            ("a b:secret", "printable ASCII"),
            ("a:x,a:y", "listed twice"),
        ] {
            let error = service_clients(value).expect_err(value);
            assert!(error.contains(says), "{value}: {error}");
        }
    }

    #[test]
    fn weak_secrets_and_the_admin_token_are_refused() {
        let weak = service_clients("svc:short").unwrap();
        let error = validate("INTROSPECTION_CLIENTS", &weak, None, false).unwrap_err();
        assert!(
            error.to_string().contains("(client \"svc\")")
                && error.to_string().contains("shorter than 32 bytes"),
            "{error}"
        );
        validate("INTROSPECTION_CLIENTS", &weak, None, true).expect("--insecure-dev");
        let strong = service_clients(&format!("svc:{STRONG}")).unwrap();
        validate("INTROSPECTION_CLIENTS", &strong, None, false).expect("strong");
        let admin = Secret::new(STRONG);
        let error = validate("INTROSPECTION_CLIENTS", &strong, Some(&admin), true).unwrap_err();
        assert!(error.to_string().contains("ADMIN_API_TOKEN"), "{error}");
    }
}
