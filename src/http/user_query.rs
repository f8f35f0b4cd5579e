//! `fields` and `populate` of `/api/users/me`, read as Strapi 5.54 reads them: the query
//! parsed as `qs` parses it (`fields=a,b`, `fields[0]=a`, `fields[]=a`, `populate[role]=true`,
//! `populate[role][fields][0]=name`), checked as `@strapi/utils`' query validation checks it
//! (a key that is no visible scalar field is `Invalid key <key>`, with Strapi's `details`),
//! and applied as its sanitizer applies it: `id` and `documentId` always, then the fields
//! asked for. Other parameters (`filters`, `sort`, …) are ignored.
//!
//! `populate=role` (or `*`) adds the user's role. Strapi shows it only where the
//! Authenticated role may `find` roles, which it may not by default; every user here is in
//! that role, and a front end asks for it to read `role.type`, so it is always shown: Strapi's
//! Authenticated role, with a fixed `documentId` and times (there is no roles table).

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::errors::ApiError;
use super::public_user::PublicUser;
use crate::store::users::{User, strapi_time};

/// A query parameter as `qs` builds it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Param {
    Text(String),
    List(Vec<Param>),
    Map(Vec<(String, Param)>),
}

/// What `qs` collects before it decides between a list and a map.
enum Node {
    Leaves(Vec<String>),
    Branch(Vec<(String, Node)>),
}

impl Node {
    fn insert(&mut self, path: &[&str], value: String) {
        let Some((first, rest)) = path.split_first() else {
            match self {
                Node::Leaves(values) => values.push(value),
                Node::Branch(children) => {
                    let key = children.len().to_string();
                    children.push((key, Node::Leaves(vec![value])));
                }
            }
            return;
        };
        if let Node::Leaves(values) = self {
            let indexed = values.drain(..).enumerate();
            let children = indexed.map(|(i, v)| (i.to_string(), Node::Leaves(vec![v])));
            *self = Node::Branch(children.collect());
        }
        let Node::Branch(children) = self else {
            unreachable!("made a branch just above")
        };
        let key = match *first {
            "" => children.len().to_string(),
            key => key.to_owned(),
        };
        let at = match children.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                children.push((key, Node::Leaves(Vec::new())));
                children.len() - 1
            }
        };
        children[at].1.insert(rest, value);
    }

    /// A branch whose keys are all indices is a list, in index order; any other is a map.
    fn finish(self) -> Param {
        match self {
            Node::Leaves(mut values) if values.len() == 1 => Param::Text(values.remove(0)),
            Node::Leaves(values) => Param::List(values.into_iter().map(Param::Text).collect()),
            Node::Branch(children) => {
                let index = |k: &str| k.parse::<usize>().ok();
                if children.iter().all(|(k, _)| index(k).is_some()) {
                    let mut children = children;
                    children.sort_by_key(|(k, _)| index(k));
                    Param::List(children.into_iter().map(|(_, n)| n.finish()).collect())
                } else {
                    let children = children.into_iter().map(|(k, n)| (k, n.finish()));
                    Param::Map(children.collect())
                }
            }
        }
    }
}

/// `name[a][b]` as `("name", ["a", "b"])`; a key with unbalanced brackets is a plain name.
fn split_key(key: &str) -> (&str, Vec<&str>) {
    let Some(open) = key.find('[') else {
        return (key, Vec::new());
    };
    let mut segments = Vec::new();
    let mut rest = &key[open..];
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return (key, Vec::new());
        };
        segments.push(&inner[..close]);
        rest = &inner[close + 1..];
    }
    if rest.is_empty() {
        (&key[..open], segments)
    } else {
        (key, Vec::new())
    }
}

/// The parameter `name` of `query`, if it is there.
fn param(query: &str, name: &str) -> Result<Option<Param>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| ApiError::validation("The query string could not be read"))?;
    let mut node: Option<Node> = None;
    for (key, value) in pairs {
        let (base, path) = split_key(&key);
        if base == name {
            node.get_or_insert(Node::Leaves(Vec::new()))
                .insert(&path, value);
        }
    }
    Ok(node.map(Node::finish))
}

/// The fields of a content type a query may name, and its other attributes (named, they are
/// refused with their path; anything else is refused with none).
struct Schema {
    scalars: &'static [&'static str],
    others: &'static [&'static str],
}

const USER: Schema = Schema {
    scalars: &[
        "username",
        "email",
        "provider",
        "confirmed",
        "blocked",
        "createdAt",
        "updatedAt",
        "publishedAt",
    ],
    others: &[
        "password",
        "resetPasswordToken",
        "confirmationToken",
        "role",
        "createdBy",
        "updatedBy",
        "locale",
        "localizations",
    ],
};

const ROLE: Schema = Schema {
    scalars: &[
        "name",
        "description",
        "type",
        "createdAt",
        "updatedAt",
        "publishedAt",
    ],
    others: &[
        "permissions",
        "users",
        "createdBy",
        "updatedBy",
        "locale",
        "localizations",
    ],
};

/// The role's relations, which a populate may name and the answer never shows.
const ROLE_RELATIONS: [&str; 2] = ["permissions", "users"];

/// Strapi's `throwInvalidKey`, with the parameter it was found in.
fn invalid_key(key: &str, path: Option<&str>, param: &str) -> ApiError {
    let message = match path {
        Some(path) if path != key => format!("Invalid key {key} at {path}"),
        _ => format!("Invalid key {key}"),
    };
    ApiError::validation(message)
        .with_details(json!({"key": key, "path": path, "source": "query", "param": param}))
}

fn invalid_fields() -> ApiError {
    ApiError::validation("Invalid fields parameter. Expected a string or an array of strings")
}

fn invalid_populate() -> ApiError {
    ApiError::validation(
        "Invalid populate parameter. Expected a string, an array of strings, a populate object",
    )
}

/// Which fields to show: `None` for all, else those named (`id` and `documentId` always).
type Fields = Option<Vec<&'static str>>;

impl Schema {
    fn is_attribute(&self, name: &str) -> bool {
        self.scalars.contains(&name) || self.others.contains(&name)
    }

    fn field(&self, name: &str, param: &str) -> Result<Option<&'static str>, ApiError> {
        if name == "id" || name == "documentId" {
            return Ok(None);
        }
        if let Some(field) = self.scalars.iter().find(|f| **f == name) {
            return Ok(Some(field));
        }
        Err(invalid_key(
            name,
            self.is_attribute(name).then_some(name),
            param,
        ))
    }

    /// `fields` as Strapi reads it: each name is checked first (a comma list splits), then
    /// the shape: a list item with a comma, or a map, is not a list of fields.
    fn fields(&self, fields: &Param, param: &str) -> Result<Fields, ApiError> {
        let texts: Vec<&str> = match fields {
            Param::Text(all) if all == "*" => return Ok(None),
            Param::Text(text) => vec![text.as_str()],
            Param::List(items) => items
                .iter()
                .filter_map(|item| match item {
                    Param::Text(text) => Some(text.as_str()),
                    _ => None,
                })
                .collect(),
            Param::Map(_) => Vec::new(),
        };
        let mut chosen = Vec::new();
        for name in texts.iter().flat_map(|text| text.split(',')) {
            if let Some(field) = self.field(name.trim(), param)?
                && !chosen.contains(&field)
            {
                chosen.push(field);
            }
        }
        let listed = |item: &Param| matches!(item, Param::Text(t) if !t.contains(','));
        match fields {
            Param::List(items) if !items.iter().all(listed) => Err(invalid_fields()),
            Param::Map(_) => Err(invalid_fields()),
            _ => Ok(Some(chosen)),
        }
    }
}

/// `populate` of the user: whether the role is shown, and which of its fields.
fn populate(populate: &Param) -> Result<Option<Fields>, ApiError> {
    match populate {
        Param::Text(all) if all == "*" => Ok(Some(None)),
        Param::Text(paths) => dot_paths(&[paths.as_str()]),
        Param::List(items) => {
            let paths: Option<Vec<&str>> = items
                .iter()
                .map(|item| match item {
                    Param::Text(text) => Some(text.as_str()),
                    _ => None,
                })
                .collect();
            dot_paths(&paths.ok_or_else(invalid_populate)?)
        }
        Param::Map(entries) => {
            let mut role = None;
            for (key, value) in entries {
                role = populate_entry(key, value)?.or(role);
            }
            Ok(role)
        }
    }
}

/// `populate=role,role.permissions`: `role` is the one relation shown; its own relations
/// may be named, and are never shown.
fn dot_paths(texts: &[&str]) -> Result<Option<Fields>, ApiError> {
    let paths = texts.iter().flat_map(|text| text.split(','));
    let mut role = None;
    for path in paths.map(str::trim).filter(|p| !p.is_empty()) {
        let mut segments = path.split('.');
        let head = segments.next().unwrap_or_default();
        if head != "role" {
            return Err(invalid_key(head, Some(head), "populate"));
        }
        if let Some(next) = segments.next().filter(|n| !ROLE_RELATIONS.contains(n)) {
            return Err(invalid_key(next, Some(&format!("role.{next}")), "populate"));
        }
        role = Some(None);
    }
    Ok(role)
}

/// `populate[key]=value`: only `role` may be populated (`true`, `1`, `*`; `false`, `0` not),
/// with a map of its own `fields` (and its relations, never shown, or a `sort`, ignored).
fn populate_entry(key: &str, value: &Param) -> Result<Option<Fields>, ApiError> {
    if key != "role" {
        return Err(invalid_key(
            key,
            USER.is_attribute(key).then_some(key),
            "populate",
        ));
    }
    match value {
        Param::Text(on) if matches!(on.as_str(), "true" | "1" | "*") => Ok(Some(None)),
        Param::Text(off) if matches!(off.as_str(), "false" | "0") => Ok(None),
        // Read as a populate of the role's own: one of its attributes is named at its path.
        Param::Text(other) => {
            let path = if ROLE.is_attribute(other) {
                format!("role.{other}")
            } else {
                "role".to_owned()
            };
            Err(invalid_key(other, Some(&path), "populate"))
        }
        Param::List(_) => Err(invalid_populate()),
        Param::Map(entries) => {
            let mut fields = None;
            for (nested, value) in entries {
                match nested.as_str() {
                    "fields" => fields = ROLE.fields(value, "populate")?,
                    "populate" => role_relations(value)?,
                    "sort" | "filters" => {}
                    other => return Err(invalid_key(other, Some("role"), "populate")),
                }
            }
            Ok(Some(fields))
        }
    }
}

/// `populate[role][populate]`: the role's relations or `*`.
fn role_relations(value: &Param) -> Result<(), ApiError> {
    let known = |text: &str| text == "*" || ROLE_RELATIONS.contains(&text);
    match value {
        Param::Text(text) if known(text) => Ok(()),
        // Strapi's quirk: a list is refused at the role, a single name at itself.
        Param::Text(text) if text.contains(',') => Err(invalid_key(text, Some("role"), "populate")),
        Param::Text(text) => Err(invalid_key(text, Some(text), "populate")),
        Param::List(items) => items.iter().try_for_each(|item| match item {
            Param::Text(text) if known(text) => Ok(()),
            Param::Text(text) => Err(invalid_key(text, Some(text), "populate")),
            _ => Err(invalid_populate()),
        }),
        Param::Map(_) => Ok(()),
    }
}

/// What `/api/users/me` was asked to show.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UserQuery {
    fields: Fields,
    /// `Some`: the role is shown, with these of its fields.
    role: Option<Fields>,
}

impl UserQuery {
    /// Reads `fields` and `populate`; a key Strapi would refuse is its 400 `ValidationError`.
    pub fn of(query: &str) -> Result<UserQuery, ApiError> {
        let fields = match param(query, "fields")? {
            Some(fields) => USER.fields(&fields, "fields")?,
            None => None,
        };
        let role = match param(query, "populate")? {
            Some(asked) => populate(&asked)?,
            None => None,
        };
        Ok(UserQuery { fields, role })
    }

    /// The user, as much of it as was asked for.
    pub fn shape(&self, user: &User) -> SelectedUser {
        let public = serde_json::to_value(PublicUser::of(user)).unwrap_or_default();
        let shown = |field: &str| {
            let asked = self.fields.as_ref().is_none_or(|f| f.contains(&field));
            asked.then(|| public[field].clone())
        };
        SelectedUser {
            id: user.id,
            document_id: user.document_id.clone(),
            username: shown("username"),
            email: shown("email"),
            provider: shown("provider"),
            confirmed: shown("confirmed"),
            blocked: shown("blocked"),
            created_at: shown("createdAt"),
            updated_at: shown("updatedAt"),
            published_at: shown("publishedAt"),
            role: self.role.as_ref().map(Role::authenticated),
        }
    }
}

/// The user as `fields` and `populate` shaped it: `id` and `documentId` always.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelectedUser {
    id: i64,
    document_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    username: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    email: Option<serde_json::Value>,
    /// `local` for users who log in with a password.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    provider: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<bool>)]
    confirmed: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<bool>)]
    blocked: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    created_at: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    updated_at: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    published_at: Option<serde_json::Value>,
    /// With `populate=role` (or `*`): Strapi's Authenticated role, every user's.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
}

/// The `documentId` of the one role (24 characters, as Strapi's).
const ROLE_DOCUMENT_ID: &str = "tokenledgerauthenticated";

/// Strapi's Authenticated role (`id` 1, as Strapi creates it first).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    id: i64,
    document_id: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    r#type: Option<&'static str>,
    /// The epoch: the role has no history here.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    updated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    published_at: Option<String>,
}

impl Role {
    fn authenticated(fields: &Fields) -> Role {
        let shown = |field: &str| fields.as_ref().is_none_or(|f| f.contains(&field));
        let epoch = strapi_time(&chrono::DateTime::UNIX_EPOCH);
        let time = |field: &str| shown(field).then(|| epoch.clone());
        Role {
            id: 1,
            document_id: ROLE_DOCUMENT_ID,
            name: shown("name").then_some("Authenticated"),
            description: shown("description")
                .then_some("Default role given to authenticated user."),
            r#type: shown("type").then_some("authenticated"),
            created_at: time("createdAt"),
            updated_at: time("updatedAt"),
            published_at: time("publishedAt"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn error(query: &str) -> (String, Value) {
        let error = UserQuery::of(query).unwrap_err();
        assert_eq!(error.status.as_u16(), 400, "{query}");
        assert_eq!(error.name, "ValidationError", "{query}");
        (error.message, *error.details)
    }

    fn text(s: &str) -> Param {
        Param::Text(s.to_owned())
    }

    #[test]
    fn the_query_is_read_as_qs_reads_it() {
        let list = Param::List(vec![text("a"), text("b")]);
        assert_eq!(param("fields=a", "fields").unwrap(), Some(text("a")));
        assert_eq!(
            param("fields=a&fields=b", "fields").unwrap(),
            Some(list.clone())
        );
        assert_eq!(
            param("fields[]=a&fields[]=b", "fields").unwrap(),
            Some(list.clone())
        );
        assert_eq!(
            param("fields[1]=b&fields[0]=a", "fields").unwrap(),
            Some(list)
        );
        let nested = param("populate[role][fields][0]=name&x=1", "populate").unwrap();
        let fields = Param::Map(vec![("fields".into(), Param::List(vec![text("name")]))]);
        assert_eq!(nested, Some(Param::Map(vec![("role".into(), fields)])));
        assert_eq!(param("fields[a=1", "fields").unwrap(), None);
    }

    #[test]
    fn fields_name_what_is_shown_besides_the_ids() {
        let asked = |q: &str| UserQuery::of(q).unwrap().fields;
        assert_eq!(
            asked("fields=username,%20email"),
            Some(vec!["username", "email"])
        );
        assert_eq!(asked("fields[0]=email&fields[1]=id"), Some(vec!["email"]));
        assert_eq!(asked("fields=*"), None);
        assert_eq!(asked("sort=username"), None);
    }

    #[test]
    fn a_field_that_is_not_a_visible_scalar_is_an_invalid_key() {
        let (message, details) = error("fields=foo");
        assert_eq!(message, "Invalid key foo");
        assert_eq!(
            details,
            json!({"key": "foo", "path": null, "source": "query", "param": "fields"})
        );
        for hidden in ["password", "resetPasswordToken", "role", "locale"] {
            let (message, details) = error(&format!("fields={hidden}"));
            assert_eq!(message, format!("Invalid key {hidden}"));
            assert_eq!(details["path"], hidden);
        }
        assert_eq!(error("fields=").0, "Invalid key ");
        assert_eq!(error("fields=username,,email").0, "Invalid key ");
    }

    #[test]
    fn fields_that_are_not_a_list_of_names_are_refused_as_strapi_refuses_them() {
        let shape = "Invalid fields parameter. Expected a string or an array of strings";
        assert_eq!(error("fields[a]=username").0, shape);
        assert_eq!(error("fields[0]=username,email").0, shape);
        assert_eq!(error("fields[0]=username,foo").0, "Invalid key foo");
    }

    #[test]
    fn populate_shows_the_role_in_every_form_strapi_takes() {
        for query in [
            "populate=role",
            "populate=*",
            "populate[0]=role",
            "populate[role]=true",
            "populate=role.permissions",
            "populate[role][populate][0]=users",
        ] {
            assert_eq!(UserQuery::of(query).unwrap().role, Some(None), "{query}");
        }
        assert_eq!(UserQuery::of("populate[role]=false").unwrap().role, None);
        let fields = UserQuery::of("populate[role][fields][0]=name")
            .unwrap()
            .role;
        assert_eq!(fields, Some(Some(vec!["name"])));
    }

    #[test]
    fn populating_anything_else_is_an_invalid_key() {
        let (message, details) = error("populate=foo");
        assert_eq!(message, "Invalid key foo");
        assert_eq!(details["path"], "foo");
        assert_eq!(details["param"], "populate");
        assert_eq!(error("populate=role.foo").0, "Invalid key foo at role.foo");
        assert_eq!(error("populate=createdBy").0, "Invalid key createdBy");
        assert_eq!(error("populate[foo]=true").1["path"], Value::Null);
        assert_eq!(error("populate[role]=yes").0, "Invalid key yes at role");
        assert_eq!(
            error("populate[role]=name").0,
            "Invalid key name at role.name"
        );
        assert_eq!(
            error("populate[role][foo]=bar").0,
            "Invalid key foo at role"
        );
        assert_eq!(error("populate[role][fields]=foo").0, "Invalid key foo");
        let shape =
            "Invalid populate parameter. Expected a string, an array of strings, a populate object";
        assert_eq!(error("populate[0][role]=true").0, shape);
    }
}
