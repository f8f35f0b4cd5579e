//! The generator: case `i` of seed `s` is always the same request (but for the tokens and ids
//! of the run's accounts). Most cases are requests to the API's routes (`routes.rs`), methods
//! right and wrong, whose bodies, headers, cookies and query strings start valid and are then
//! damaged; the rest (`framing.rs`) are odd targets, bodies around and over the 64 KiB limit,
//! and broken HTTP framing.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const BODY_LIMIT: usize = 64 * 1024;

/// A user of the server under test, with live tokens (renewed while the run goes on).
#[derive(Clone, Debug)]
pub struct Account {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub jwt: String,
    pub refresh_token: String,
    pub session_id: String,
}

#[derive(Clone, Debug)]
pub struct Fixture {
    pub host: String,
    pub accounts: Vec<Account>,
    pub admin_token: String,
}

/// What the server owes a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Well-framed HTTP: an answer, never a 5xx, every error in Strapi's body.
    Http,
    /// A body over the limit: a 4xx in Strapi's body, or the connection closed after it.
    Oversized,
    /// Broken framing, or past the limits of HTTP itself (head size, header count): any
    /// answer but a 5xx, or the connection closed.
    Protocol,
}

pub struct Case {
    pub bytes: Vec<u8>,
    pub class: Class,
    /// A HEAD request: the answer has no body.
    pub head: bool,
    /// Sent on a connection of its own, which ends after it.
    pub fresh: bool,
    /// The client closes its sending side after the request (a body cut short).
    pub half_close: bool,
    /// For the summary: which kind of case this is.
    pub what: String,
}

pub fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

pub fn case(seed: u64, index: u64, fixture: &Fixture) -> Case {
    let rng = StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut generator = Generator { rng, fixture };
    match generator.rng.random_range(0..100) {
        0..72 => generator.api_request(),
        72..80 => generator.odd_target(),
        80..88 => generator.big_body(),
        _ => generator.broken_framing(),
    }
}

pub(super) struct Request {
    pub(super) method: Vec<u8>,
    pub(super) target: Vec<u8>,
    pub(super) version: &'static [u8],
    pub(super) headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub(super) body: Vec<u8>,
    /// Chunk sizes, when the body goes chunked.
    pub(super) chunks: Option<Vec<usize>>,
}

impl Request {
    pub(super) fn new(method: &str, target: impl Into<Vec<u8>>, host: &str) -> Request {
        Request {
            method: method.as_bytes().to_vec(),
            target: target.into(),
            version: b"HTTP/1.1",
            headers: vec![(b"host".to_vec(), host.as_bytes().to_vec())],
            body: Vec::new(),
            chunks: None,
        }
    }

    pub(super) fn header(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.headers.push((name.as_bytes().to_vec(), value.into()));
    }

    pub(super) fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 512);
        out.extend_from_slice(&self.method);
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.push(b' ');
        out.extend_from_slice(self.version);
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        match &self.chunks {
            Some(sizes) => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
                let mut rest = &self.body[..];
                for &size in sizes {
                    let size = size.min(rest.len());
                    if size == 0 {
                        continue;
                    }
                    out.extend_from_slice(format!("{size:x}\r\n").as_bytes());
                    out.extend_from_slice(&rest[..size]);
                    out.extend_from_slice(b"\r\n");
                    rest = &rest[size..];
                }
                if !rest.is_empty() {
                    out.extend_from_slice(format!("{:x};ext=1\r\n", rest.len()).as_bytes());
                    out.extend_from_slice(rest);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            None => {
                if !self.body.is_empty() || self.method == b"POST" {
                    out.extend_from_slice(
                        format!("content-length: {}\r\n", self.body.len()).as_bytes(),
                    );
                }
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&self.body);
            }
        }
        out
    }
}

pub(super) struct Generator<'f> {
    pub(super) rng: StdRng,
    pub(super) fixture: &'f Fixture,
}

impl Generator<'_> {
    pub(super) fn account(&mut self) -> Account {
        let at = self.rng.random_range(0..self.fixture.accounts.len());
        self.fixture.accounts[at].clone()
    }

    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    pub(super) fn case(&self, request: &Request, class: Class, what: String) -> Case {
        // HTTP/1.1 requires a Host: without one, HTTP itself refuses the request.
        let hostless = request.version == b"HTTP/1.1"
            && !request.headers.iter().any(|(name, _)| name == b"host");
        // Nor may an HTTP/1.0 message be chunked.
        let chunked_1_0 = request.version == b"HTTP/1.0" && request.chunks.is_some();
        let class = if hostless || chunked_1_0 {
            Class::Protocol
        } else {
            class
        };
        Case {
            bytes: request.bytes(),
            class,
            head: request.method == b"HEAD",
            fresh: class != Class::Http,
            half_close: false,
            what,
        }
    }

    pub(super) fn chunk_sizes(&mut self, total: usize) -> Vec<usize> {
        let mut sizes = Vec::new();
        let mut left = total;
        while left > 0 {
            let size = self.rng.random_range(1..=left.min(4096));
            sizes.push(size);
            left -= size;
        }
        sizes
    }
}

/// Inputs that once got a wrong answer, sent first in every run: a regression then fails
/// every run, not the one run in a few that happens to generate it again.
pub fn pinned(fixture: &Fixture) -> Vec<Case> {
    let request = |what: &str, path: &str, content_type: &str, body: &str| Case {
        bytes: format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: {content_type}\r\n\
             content-length: {}\r\n\r\n{body}",
            fixture.host,
            body.len()
        )
        .into_bytes(),
        class: Class::Http,
        head: false,
        fresh: true,
        half_close: false,
        what: format!("pinned: {what}"),
    };
    let json = "application/json";
    vec![
        // PostgreSQL refuses NUL in text: a 503 from the users table (found by this run).
        request(
            "NUL in a login identifier",
            "/api/auth/local",
            json,
            r#"{"identifier":"a\u0000b","password":"password123"}"#,
        ),
        request(
            "NUL in a form login identifier",
            "/api/auth/local",
            "application/x-www-form-urlencoded",
            "identifier=a%00b&password=password123",
        ),
        request(
            "NUL in a username",
            "/api/auth/local/register",
            json,
            r#"{"username":"a\u0000b","email":"nul@example.com","password":"password123"}"#,
        ),
    ]
}
