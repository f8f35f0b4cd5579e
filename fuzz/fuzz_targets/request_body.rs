//! Arbitrary bytes as the body of register, login, refresh, logout and change-password,
//! through the real service: `http::routes` with its middleware and state from
//! `Application::build` (a fresh SQLite file), called in-process. So the bytes go through the
//! `Body` extractor (content type, size limit, JSON or form decoding) and each handler's own
//! field checks, and, when they pass, on into the handler.
//!
//! Never a panic, and never a 5xx: bad input is always a 4xx in Strapi's error body, as the
//! README promises.
//!
//! The first byte picks the request: bits 0-2 the route, bits 3-5 the `Content-Type`, bit 6
//! the `x-strapi-refresh-cookie: httpOnly` header. The rest is the body. Logout and
//! change-password carry a live session's bearer token (users made at start-up), so their
//! body checks are reached too.
//!
//! The server runs on a thread of its own (an actix system), and each input is handed to it
//! over a channel. Its data folder is `$TMPDIR/tokenledger-fuzz-<pid>`, left behind.

#![no_main]

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, mpsc};

use actix_web::http::header;
use actix_web::{App, test};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use tokenledger::app::Application;
use tokenledger::config::Config;
use tokenledger::http;

const ROUTES: [&str; 8] = [
    "/api/auth/local/register",
    "/api/auth/local",
    "/api/auth/local/refresh",
    "/api/auth/refresh",
    "/api/auth/logout",
    "/api/auth/change-password",
    "/api/auth/local",
    "/api/auth/local/register",
];

const CONTENT_TYPES: [Option<&str>; 8] = [
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    None,
    Some("application/json; charset=utf-8"),
    Some("application/vnd.api+json"),
    Some("text/plain"),
    Some("APPLICATION/X-WWW-FORM-URLENCODED; charset=latin1"),
    Some("multipart/form-data; boundary=x"),
];

/// The user whose sessions logout ends (logged in again after each successful logout).
const LOGOUT_USER: (&str, &str) = ("fuzz-logout@example.com", "fuzz-logout-password");
/// The user whose password change-password changes (its answer carries the next session).
const PASSWORD_USER: (&str, &str) = ("fuzz-password@example.com", "fuzz-password-password");

struct Request {
    route: &'static str,
    content_type: Option<&'static str>,
    cookie_mode: bool,
    body: Vec<u8>,
}

struct Outcome {
    status: u16,
    body: Vec<u8>,
}

type Job = (Request, mpsc::Sender<Outcome>);

fn server() -> &'static Mutex<mpsc::Sender<Job>> {
    static SERVER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    SERVER.get_or_init(|| {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready, started) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("fuzzed-server".into())
            .spawn(move || serve(inbox, ready))
            .expect("the server thread starts");
        started.recv().expect("the server starts");
        Mutex::new(jobs)
    })
}

fn serve(inbox: mpsc::Receiver<Job>, ready: mpsc::Sender<()>) {
    let system = actix_web::rt::System::new();
    system.block_on(async move {
        let dir = std::env::temp_dir().join(format!("tokenledger-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("data folder");
        let env: HashMap<String, String> = [
            ("PORT", "0".to_owned()),
            ("DATA_DIR", dir.display().to_string()),
            (
                "JWT_SECRET",
                "fuzz-access-secret-0123456789abcdef0123456789".to_owned(),
            ),
            (
                "REFRESH_JWT_SECRET",
                "fuzz-refresh-secret-0123456789abcdef012345678".to_owned(),
            ),
            // Limits would turn most inputs into 429s before their body is looked at.
            ("LOGIN_RATE_LIMIT", "off".to_owned()),
            ("REFRESH_RATE_LIMIT", "off".to_owned()),
            ("REFRESH_TOKEN_ROTATION", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let config = Config::load(None, &env, false).expect("fuzz config");
        let application = Application::build(config.clone())
            .await
            .expect("the application builds");
        let service = test::init_service(
            App::new()
                .wrap(http::security_headers(&config))
                .wrap(actix_web::middleware::from_fn(http::request_id))
                .app_data(application.state())
                .configure(http::routes),
        )
        .await;

        let call = |request: Request, bearer: Option<String>| {
            let mut req = test::TestRequest::post()
                .uri(request.route)
                .peer_addr("192.0.2.7:40000".parse().expect("an address"))
                .insert_header((header::USER_AGENT, "tokenledger-fuzz"));
            if let Some(content_type) = request.content_type {
                req = req.insert_header((header::CONTENT_TYPE, content_type));
            }
            if request.cookie_mode {
                req = req.insert_header(("x-strapi-refresh-cookie", "httpOnly"));
            }
            if let Some(jwt) = bearer {
                req = req.insert_header((header::AUTHORIZATION, format!("Bearer {jwt}")));
            }
            test::call_service(&service, req.set_payload(request.body).to_request())
        };
        let json_call = |route: &'static str, body: Value| {
            call(
                Request {
                    route,
                    content_type: Some("application/json"),
                    cookie_mode: false,
                    body: body.to_string().into_bytes(),
                },
                None,
            )
        };
        let jwt_of = |body: &[u8]| -> Option<String> {
            let value: Value = serde_json::from_slice(body).ok()?;
            value.get("jwt")?.as_str().map(str::to_owned)
        };

        let mut sessions = HashMap::new();
        for (email, password) in [LOGOUT_USER, PASSWORD_USER] {
            let username = email.split('@').next().expect("an email with a local part");
            let response = json_call(
                "/api/auth/local/register",
                json!({ "username": username, "email": email, "password": password }),
            )
            .await;
            assert!(response.status().is_success(), "registering {email}");
            let body = test::read_body(response).await;
            sessions.insert(email, jwt_of(&body).expect("a jwt on register"));
        }
        ready.send(()).expect("the fuzzer waits");

        while let Ok((request, reply)) = inbox.recv() {
            let route = request.route;
            let user = match route {
                "/api/auth/logout" => Some(LOGOUT_USER),
                "/api/auth/change-password" => Some(PASSWORD_USER),
                _ => None,
            };
            let bearer = user.map(|(email, _)| sessions[email].clone());
            let response = call(request, bearer).await;
            let status = response.status().as_u16();
            let body = test::read_body(response).await.to_vec();
            match (user, status) {
                // This session (or all) ended: start another for the next input.
                (Some(LOGOUT_USER), 200) => {
                    let (email, password) = LOGOUT_USER;
                    let login = json_call(
                        "/api/auth/local",
                        json!({ "identifier": email, "password": password }),
                    )
                    .await;
                    let fresh = jwt_of(&test::read_body(login).await).expect("a login");
                    sessions.insert(email, fresh);
                }
                // Every session ended; the answer carries the new one.
                (Some(PASSWORD_USER), 200) => {
                    let fresh = jwt_of(&body).expect("a jwt after a password change");
                    sessions.insert(PASSWORD_USER.0, fresh);
                }
                _ => {}
            }
            let _ = reply.send(Outcome { status, body });
        }
        drop(application);
    });
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let request = Request {
        route: ROUTES[usize::from(selector & 0b111)],
        content_type: CONTENT_TYPES[usize::from((selector >> 3) & 0b111)],
        cookie_mode: selector & 0b100_0000 != 0,
        body: body.to_vec(),
    };
    let (route, content_type) = (request.route, request.content_type);
    let (reply, outcome) = mpsc::channel();
    server()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((request, reply))
        .expect("the server is running");
    let Outcome { status, body } = outcome.recv().expect("the server answers");
    let text = String::from_utf8_lossy(&body);
    assert!(
        status < 500,
        "{route} ({content_type:?}) answered {status}: {text}"
    );
    let value: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!("{route} answered {status} with a body that is not JSON ({e}): {text}")
    });
    if status >= 400 {
        assert_eq!(value["data"], Value::Null, "{route} {status}: {text}");
        assert_eq!(value["error"]["status"], json!(status), "{route}: {text}");
        assert!(value["error"]["name"].is_string(), "{route}: {text}");
        assert!(value["error"]["message"].is_string(), "{route}: {text}");
    }
});
