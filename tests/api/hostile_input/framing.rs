//! Cases off the API's beaten path: odd request targets, bodies around and far over the 64 KiB
//! limit (declared, chunked, nested), and requests HTTP itself refuses or that stretch its
//! limits (thousands of headers, huge heads, broken framing, other protocols).

use rand::Rng;

use super::generate::{BODY_LIMIT, Case, Class, Generator, Request, pick};
use super::json::{self, BAD_UTF8};
use super::routes::{METHODS, Route, SEGMENTS};

const BAD_LENGTHS: [&str; 8] = [
    "-1",
    "abc",
    "1,1",
    "0x10",
    "5 5",
    "99999999999999999999999",
    "",
    "+33",
];

const TRANSFER_CODINGS: [&str; 5] = [
    "gzip",
    "chunked, gzip",
    "identity",
    "chunkedx",
    "gzip, chunked",
];

const BAD_CHUNKS: [&str; 6] = [
    "zz\r\n{}\r\n0\r\n\r\n",
    "2\r\n{}0\r\n\r\n",
    "ffffffffffffffffffff\r\n{}\r\n",
    "-2\r\n{}\r\n",
    "2;\x01\r\n{}\r\n0\r\n\r\n",
    "2\r\n{}\r\n0\r\nbad trailer\r\n\r\n",
];

const REQUEST_LINES: [&str; 11] = [
    "GET / HTTP/9.9",
    "GET / HTTP/1.1 x",
    "GET /",
    "get / http/1.1",
    "GET  /  HTTP/1.1",
    "GET\t/\tHTTP/1.1",
    "/ HTTP/1.1",
    " HTTP/1.1",
    "GET / HTTP/2.0",
    "GET / HTTP/0.9",
    "GET /api/auth/sessions HTTP/1.1\r\nhost: a\r\nhost: b",
];

const BAD_HEADER_LINES: [&str; 5] = [
    "bad header: x",
    "no-colon",
    ": empty-name",
    "x-\u{ff}: y",
    "(x): y",
];

const LOGIN: &str = "POST /api/auth/local HTTP/1.1\r\nhost: x\r\n";

impl Generator<'_> {
    /// Paths that are not routes, or are routes spelled oddly, with any method.
    pub(super) fn odd_target(&mut self) -> Case {
        let account = self.account();
        let target: String = match self.rng.random_range(0..24) {
            0 => "/api/auth/local/".into(),
            1 => "/API/AUTH/LOCAL".into(),
            2 => "//api//auth//local".into(),
            3 => "/api/auth/local/../local".into(),
            4 => "/%61pi/auth/local".into(),
            5 => "/api/auth/local%2Frefresh".into(),
            6 => format!("/api/auth/sessions/{}", pick(&mut self.rng, &SEGMENTS)),
            7 => format!("/api/admin/users/{}/events", pick(&mut self.rng, &SEGMENTS)),
            8 => format!("/api/auth/sessions/{}", "s".repeat(20_000)),
            9 => "/".into(),
            10 => "*".into(),
            11 => format!("http://{}/api/auth/local", self.fixture.host),
            12 => "/metrics".into(),
            13 => "/openapi.json".into(),
            14 => "/favicon.ico".into(),
            15 => "/api/users/me%00".into(),
            16 => "/api/auth/local;jsessionid=1".into(),
            17 => "/api/auth/local#fragment".into(),
            18 => "/api/auth/%2e%2e/auth/local".into(),
            19 => "/api/%E2%98%83".into(),
            20 => format!("/api/auth/sessions/{}/x", account.session_id),
            21 => "/_health/".into(),
            22 => "/api/users/1".into(),
            _ => format!("/{}", "a/".repeat(3000)),
        };
        let method = pick(&mut self.rng, &METHODS);
        let host = self.fixture.host.clone();
        let mut request = Request::new(method, target, &host);
        if self.chance(0.5) {
            request.header("authorization", format!("Bearer {}", account.jwt));
        }
        if self.chance(0.3) {
            request.header("content-type", "application/json");
            request.body = br#"{"identifier":"x","password":"y"}"#.to_vec();
        }
        self.case(&request, Class::Http, "odd target".into())
    }

    /// Bodies around the 64 KiB limit and far over it, declared and chunked.
    pub(super) fn big_body(&mut self) -> Case {
        let route = pick(
            &mut self.rng,
            &[
                Route::Login,
                Route::Register,
                Route::Refresh,
                Route::LocalRefresh,
                Route::Logout,
            ],
        );
        let host = self.fixture.host.clone();
        let mut request = Request::new("POST", route.name(), &host);
        request.header("content-type", "application/json");
        let size = pick(
            &mut self.rng,
            &[
                BODY_LIMIT - 100,
                BODY_LIMIT - 1,
                BODY_LIMIT,
                BODY_LIMIT + 1,
                100_000,
                1 << 20,
                4 << 20,
            ],
        );
        let what;
        match self.rng.random_range(0..7) {
            0 | 1 => {
                // {"identifier":"xxx…","password":"y"} of exactly `size` bytes.
                let frame = br#"{"identifier":"","password":"y"}"#.len();
                let filler = pick(&mut self.rng, &["x", "é", "\\u00e9"]);
                let count = size.saturating_sub(frame) / filler.len();
                let mut body = format!(
                    r#"{{"identifier":"{}","password":"y"}}"#,
                    filler.repeat(count)
                )
                .into_bytes();
                body.resize(size.max(body.len()), b' ');
                request.body = body;
                what = "huge string";
            }
            2 => {
                request.body = vec![b' '; size];
                what = "huge whitespace";
            }
            3 => {
                request.body = json::nested(size / 2, true, false);
                what = "deep nesting";
            }
            4 => {
                request.body = vec![b'x'; size];
                request.chunks = Some(self.chunk_sizes(size));
                what = "huge chunked";
            }
            5 => {
                // Announced huge, only a little sent.
                let declared = pick(
                    &mut self.rng,
                    &[
                        "65537",
                        "1000000000",
                        "1099511627776",
                        "18446744073709551615",
                    ],
                );
                let bytes = format!(
                    "POST {} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
                     content-length: {declared}\r\n\r\n{{",
                    route.name()
                );
                return Case {
                    bytes: bytes.into_bytes(),
                    class: Class::Oversized,
                    head: false,
                    fresh: true,
                    half_close: false,
                    what: "big body: declared huge".into(),
                };
            }
            _ => {
                let mut body = b"{".to_vec();
                let mut i = 0;
                while body.len() < size {
                    body.extend_from_slice(format!("\"k{i}\":{i},").as_bytes());
                    i += 1;
                }
                body.extend_from_slice(b"\"identifier\":\"a\",\"password\":\"b\"}");
                request.body = body;
                what = "many fields";
            }
        }
        let class = if request.body.len() > BODY_LIMIT {
            Class::Oversized
        } else {
            Class::Http
        };
        self.case(&request, class, format!("big body: {what}"))
    }

    /// Requests HTTP itself refuses, or that stretch its limits.
    pub(super) fn broken_framing(&mut self) -> Case {
        let host = self.fixture.host.clone();
        let mut request = Request::new("POST", "/api/auth/local", &host);
        request.header("content-type", "application/json");
        request.body = br#"{"identifier":"a","password":"b"}"#.to_vec();
        let mut half_close = false;
        let (what, bytes): (&str, Vec<u8>) = match self.rng.random_range(0..20) {
            0 => {
                for i in 0..pick(&mut self.rng, &[95, 97, 100, 1000, 5000]) {
                    request.header(&format!("x-h{i}"), "v");
                }
                ("thousands of headers", request.bytes())
            }
            1 => {
                let size = pick(&mut self.rng, &[8 << 10, 64 << 10, 130 << 10, 300 << 10]);
                request.header("x-big", "v".repeat(size));
                ("huge header value", request.bytes())
            }
            2 => {
                let cookies: Vec<String> = (0..3000).map(|i| format!("c{i}=v{i}")).collect();
                request.header("cookie", cookies.join("; "));
                ("huge cookie", request.bytes())
            }
            3 => {
                let length = pick(&mut self.rng, &BAD_LENGTHS);
                let bytes = format!(
                    "{LOGIN}content-length: {length}\r\ncontent-type: application/json\r\n\r\n{{}}"
                );
                ("bad content-length", bytes.into_bytes())
            }
            4 => {
                let bytes = format!("{LOGIN}content-length: 2\r\ncontent-length: 5\r\n\r\n{{}}");
                ("two content-lengths", bytes.into_bytes())
            }
            5 => {
                let bytes = format!(
                    "{LOGIN}content-length: 4\r\ntransfer-encoding: chunked\r\n\r\n\
                     2\r\n{{}}\r\n0\r\n\r\n"
                );
                ("content-length and chunked", bytes.into_bytes())
            }
            6 => {
                let coding = pick(&mut self.rng, &TRANSFER_CODINGS);
                let bytes =
                    format!("{LOGIN}transfer-encoding: {coding}\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n");
                ("odd transfer-encoding", bytes.into_bytes())
            }
            7 => {
                let chunk = pick(&mut self.rng, &BAD_CHUNKS);
                let bytes = format!("{LOGIN}transfer-encoding: chunked\r\n\r\n{chunk}");
                ("bad chunks", bytes.into_bytes())
            }
            8 => {
                let length = self.rng.random_range(1..300);
                let mut bytes: Vec<u8> = (0..length).map(|_| self.rng.random()).collect();
                bytes.extend_from_slice(b"\r\n\r\n");
                ("random bytes", bytes)
            }
            9 => {
                let line = pick(&mut self.rng, &REQUEST_LINES);
                ("odd request line", format!("{line}\r\n\r\n").into_bytes())
            }
            10 => {
                let bytes = request.bytes();
                let text = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
                ("bare LF", text.into_bytes())
            }
            11 => {
                let value = pick(&mut self.rng, &[&b"a\0b"[..], b"\x01", b"x\ry", b"\x7f"]);
                request.header("x-control", value);
                ("control bytes in a header", request.bytes())
            }
            12 => {
                let line = pick(&mut self.rng, &BAD_HEADER_LINES);
                let mut bytes = request.bytes();
                let at = bytes.windows(2).position(|w| w == b"\r\n").unwrap_or(0) + 2;
                bytes.splice(at..at, format!("{line}\r\n").into_bytes());
                ("bad header line", bytes)
            }
            13 => {
                let mut bytes = request.bytes();
                let at = bytes.windows(2).position(|w| w == b"\r\n").unwrap_or(0) + 2;
                bytes.splice(at..at, b"x-folded: a\r\n  continued\r\n".to_vec());
                ("obs-fold", bytes)
            }
            14 => {
                let mut bytes = request.bytes();
                let at = if self.chance(0.5) { 1 } else { 7 };
                bytes.splice(at..at, pick(&mut self.rng, &BAD_UTF8).iter().copied());
                ("raw bytes in the request line", bytes)
            }
            15 => {
                let bytes = if self.chance(0.5) {
                    format!("{} / HTTP/1.1\r\nhost: x\r\n\r\n", "P".repeat(10_000)).into_bytes()
                } else {
                    let size = pick(&mut self.rng, &[64 << 10, 200 << 10]);
                    format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "p".repeat(size)).into_bytes()
                };
                ("huge method or target", bytes)
            }
            16 => {
                let bytes = if self.chance(0.5) {
                    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00junk"
                        .to_vec()
                } else {
                    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03junk-client-hello".to_vec()
                };
                ("HTTP/2 or TLS on plain HTTP/1", bytes)
            }
            17 => {
                let mut bytes = request.bytes().repeat(2);
                bytes.extend_from_slice(b"GARBAGE\r\n\r\n");
                ("pipelined", bytes)
            }
            18 => {
                let mut bytes = request.bytes();
                bytes.truncate(bytes.len() - self.rng.random_range(1..request.body.len()));
                half_close = true;
                ("body cut short", bytes)
            }
            _ => {
                let mut bytes = request.bytes();
                json::mutate_bytes(&mut self.rng, &mut bytes);
                ("mutated request", bytes)
            }
        };
        Case {
            bytes,
            class: Class::Protocol,
            head: false,
            fresh: true,
            half_close,
            what: format!("framing: {what}"),
        }
    }
}
