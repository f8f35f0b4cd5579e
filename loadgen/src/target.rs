//! `Target`: the server under load — its address, its `Host`, the routes of the API under an
//! optional path prefix — and the requests sent to it. Everything a request needs that does
//! not change (URIs, `Host`, static headers) is built once here, so a request costs its header
//! map and a reference-counted body.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Uri};

/// The routes of DESIGN §7 the scenarios use.
#[derive(Clone, Copy, Debug)]
pub enum Route {
    Health,
    Register,
    Login,
    Refresh,
    Sessions,
    Logout,
    Introspect,
    Me,
}

impl Route {
    const ALL: [Route; 8] = [
        Route::Health,
        Route::Register,
        Route::Login,
        Route::Refresh,
        Route::Sessions,
        Route::Logout,
        Route::Introspect,
        Route::Me,
    ];

    fn path(self) -> &'static str {
        match self {
            Route::Health => "/_health",
            Route::Register => "/api/auth/local/register",
            Route::Login => "/api/auth/local",
            Route::Refresh => "/api/auth/local/refresh",
            Route::Sessions => "/api/auth/sessions",
            Route::Logout => "/api/auth/logout",
            Route::Introspect => "/api/auth/introspect",
            Route::Me => "/api/users/me",
        }
    }
}

pub type Body = Full<Bytes>;

pub struct Target {
    pub addr: SocketAddr,
    host: HeaderValue,
    /// Origin-form URIs (`/prefix/api/...`), indexed by `Route as usize`.
    uris: Vec<Uri>,
}

impl Target {
    /// Parses `http://host[:port][/prefix]` and resolves the host once.
    pub async fn resolve(base_url: &str) -> anyhow::Result<Target> {
        let uri: Uri = base_url
            .parse()
            .with_context(|| format!("--base-url {base_url:?} is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!("--base-url: only http:// is supported, not {other}://"),
            None => bail!("--base-url {base_url:?} needs a scheme, e.g. http://127.0.0.1:1337"),
        }
        if uri.query().is_some() {
            bail!("--base-url {base_url:?} must not have a query");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("--base-url {base_url:?} has no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} resolves to no address"))?;
        let prefix = uri.path().trim_end_matches('/');
        let uris = Route::ALL
            .iter()
            .map(|route| {
                let path = format!("{prefix}{}", route.path());
                Uri::from_maybe_shared(Bytes::from(path))
                    .with_context(|| format!("--base-url {base_url:?}: bad path prefix"))
            })
            .collect::<anyhow::Result<Vec<Uri>>>()?;
        Ok(Target {
            addr,
            host: HeaderValue::from_str(authority.as_str()).context("--base-url: bad host")?,
            uris,
        })
    }

    /// `authorization`: `Bearer <jwt>`, or a service's `Basic …`.
    pub fn get(&self, route: Route, authorization: Option<&HeaderValue>) -> Request<Body> {
        self.request(Method::GET, route, Bytes::new(), false, authorization)
    }

    /// A POST with a JSON body.
    pub fn post(
        &self,
        route: Route,
        json: Bytes,
        authorization: Option<&HeaderValue>,
    ) -> Request<Body> {
        self.request(Method::POST, route, json, true, authorization)
    }

    fn request(
        &self,
        method: Method,
        route: Route,
        body: Bytes,
        json: bool,
        authorization: Option<&HeaderValue>,
    ) -> Request<Body> {
        let mut headers = HeaderMap::with_capacity(8);
        headers.insert(header::HOST, self.host.clone());
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        headers.insert(header::USER_AGENT, HeaderValue::from_static("loadgen"));
        if json {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        if let Some(authorization) = authorization {
            headers.insert(header::AUTHORIZATION, authorization.clone());
        }
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = self.uris[route as usize].clone();
        *request.headers_mut() = headers;
        request
    }
}
