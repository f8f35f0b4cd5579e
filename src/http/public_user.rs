//! The user object every route returns, as Strapi sanitises it.

use serde::Serialize;
use utoipa::ToSchema;

use crate::store::users::{User, strapi_time};

/// Strapi's sanitised user: never the password hash.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicUser {
    id: i64,
    document_id: String,
    username: String,
    email: String,
    /// `local` for users who log in with a password.
    provider: String,
    confirmed: bool,
    blocked: bool,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// Strapi publishes users as they are created.
    #[schema(format = DateTime)]
    published_at: String,
}

impl PublicUser {
    pub fn of(user: &User) -> PublicUser {
        PublicUser {
            id: user.id,
            document_id: user.document_id.clone(),
            username: user.username.clone(),
            email: user.email.clone(),
            provider: user.provider.clone(),
            confirmed: user.confirmed,
            blocked: user.blocked,
            created_at: strapi_time(&user.created_at),
            updated_at: strapi_time(&user.updated_at),
            published_at: strapi_time(&user.published_at()),
        }
    }
}
