//! The clients: one user each, logging in now and then and mostly rotating the refresh token
//! of its newest session, keeping what every 200 answered; after a kill, what the log says
//! became of the cut-off request, and after the restart, whether the tokens do what it says.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use support::{Api, PASSWORD, Server, claims};

use crate::forensics::audit;
use crate::{Acked, HASH_PREFIX, Tally};

/// A refresh token the server handed out, and what it names.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    raw: String,
    pub session: String,
    pub id: String,
    pub generation: u64,
}

impl Token {
    pub fn of(answer: &Value) -> Token {
        let raw = answer["refreshToken"]
            .as_str()
            .unwrap_or_else(|| panic!("no refreshToken in {answer}"))
            .to_owned();
        let claims = claims(&raw);
        Token {
            session: claims["sid"].as_str().expect("sid").to_owned(),
            id: claims["jti"].as_str().expect("jti").to_owned(),
            generation: claims["gen"].as_u64().expect("gen"),
            raw,
        }
    }

    /// The start of the token's SHA-256, as the audit trail shows it.
    pub fn hash_prefix(&self) -> String {
        hex::encode(Sha256::digest(self.raw.as_bytes()))[..HASH_PREFIX].to_owned()
    }
}

/// What the request cut off by a kill was.
#[derive(Clone, Debug)]
enum Request {
    Rotate(Token),
    Login,
}

/// What a client's token must do after a restart, by what the log holds.
pub enum Expect {
    /// Its newest acknowledged token is current: a refresh rotates it.
    Rotates,
    /// The kill fell between commit and answer: the token sent gets this logged successor.
    SameSuccessor { id: String, hash_prefix: String },
}

/// One user, logging in now and then and mostly rotating the token of its newest session.
pub struct Client {
    pub username: String,
    pub user_id: i64,
    /// The newest refresh token answered with a 200.
    pub current: Token,
    /// An access token of the current session.
    pub jwt: String,
    /// Every refresh token answered with a 200 (a grace window's repeat is not kept twice).
    pub acked: Vec<Token>,
    /// Every session this client knows of: acknowledged, or found committed in the log.
    pub sessions: HashSet<String>,
    in_flight: Option<Request>,
    /// Whether the check after the last restart rotated (or met a lost answer's rotation).
    pub rotated_after_restart: bool,
    logins: usize,
    rng: StdRng,
}

impl Client {
    pub async fn register(api: &Api, index: usize, seed: u64) -> Client {
        let username = format!("crash{index}");
        let registered = api.register(&username).await;
        let register_session = claims(registered["jwt"].as_str().expect("jwt"))["sid"]
            .as_str()
            .expect("sid")
            .to_owned();
        let mut client = Client {
            user_id: registered["user"]["id"].as_i64().expect("user id"),
            username,
            current: Token {
                raw: String::new(),
                session: String::new(),
                id: String::new(),
                generation: 0,
            },
            jwt: String::new(),
            acked: Vec::new(),
            sessions: HashSet::from([register_session]),
            in_flight: None,
            rotated_after_restart: false,
            logins: 0,
            rng: StdRng::seed_from_u64(seed.wrapping_add(index as u64 + 1)),
        };
        let (status, answer) = client.login(api).await.expect("login");
        assert_eq!(status, 200, "login: {answer}");
        client.acknowledge(None, &answer);
        client
    }

    async fn login(&mut self, api: &Api) -> Result<(u16, Value), reqwest::Error> {
        self.logins += 1;
        let device = format!("crash-{}-{}", self.user_id, self.logins);
        api.try_post(
            "/api/auth/local",
            json!({"identifier": self.username, "password": PASSWORD, "requestRefresh": true, "deviceId": device}),
        )
        .await
    }

    async fn refresh(api: &Api, token: &Token) -> Result<(u16, Value), reqwest::Error> {
        api.try_post(
            "/api/auth/local/refresh",
            json!({"refreshToken": token.raw}),
        )
        .await
    }

    /// Takes a 200 answer to `request` (a rotation of that token, or a login).
    fn acknowledge(&mut self, rotated: Option<&Token>, answer: &Value) {
        let token = Token::of(answer);
        match rotated {
            Some(sent) => {
                assert_eq!(
                    token.session, sent.session,
                    "{}: same session",
                    self.username
                );
                assert_eq!(token.generation, sent.generation + 1, "{}", self.username);
            }
            None => {
                assert_eq!(token.generation, 0, "{}: a login's token", self.username);
                assert!(
                    self.sessions.insert(token.session.clone()),
                    "{}: a login starts a new session",
                    self.username
                );
            }
        }
        self.jwt = answer["jwt"].as_str().expect("jwt").to_owned();
        assert_eq!(claims(&self.jwt)["sid"], json!(token.session));
        self.current = token.clone();
        self.acked.push(token);
    }

    /// Logs in (one time in ten) or rotates, until a request fails: the server was killed.
    pub async fn drive(mut self, api: Api) -> (Client, Acked) {
        let mut acked = Acked::default();
        loop {
            let request = if self.rng.random_bool(0.1) {
                Request::Login
            } else {
                Request::Rotate(self.current.clone())
            };
            let answer = match &request {
                Request::Login => self.login(&api).await,
                Request::Rotate(token) => Client::refresh(&api, token).await,
            };
            let Ok((status, answer)) = answer else {
                self.in_flight = Some(request);
                return (self, acked);
            };
            assert_eq!(status, 200, "{} {request:?}: {answer}", self.username);
            match &request {
                Request::Login => {
                    self.acknowledge(None, &answer);
                    acked.logins += 1;
                }
                Request::Rotate(sent) => {
                    self.acknowledge(Some(sent), &answer);
                    acked.rotations += 1;
                }
            }
        }
    }

    /// Reads the log (the server is down) and says what the unanswered request became.
    pub fn resolve(&mut self, server: &Server, tally: &mut Tally) -> Expect {
        let log = audit(server, &self.username);
        let unknown: Vec<String> = log
            .iter()
            .filter(|e| e["type"] == "TokenIssued")
            .map(|e| e["sessionId"].as_str().expect("session").to_owned())
            .filter(|s| !self.sessions.contains(s))
            .collect();
        let newest = log
            .iter()
            .filter(|e| e["type"] == "TokenRotated" && e["sessionId"] == *self.current.session)
            .max_by_key(|e| e["generation"].as_u64());
        let newest_generation = newest.map_or(0, |e| e["generation"].as_u64().expect("gen"));
        let in_flight = self.in_flight.take();
        match &in_flight {
            Some(Request::Login) => {
                assert!(
                    unknown.len() <= 1,
                    "{}: sessions {unknown:?}",
                    self.username
                );
                if let Some(orphan) = unknown.into_iter().next() {
                    tally.orphan_logins += 1;
                    self.sessions.insert(orphan);
                } else {
                    tally.uncommitted += 1;
                }
            }
            _ => assert!(
                unknown.is_empty(),
                "{}: sessions nobody asked for: {unknown:?}",
                self.username
            ),
        }
        match &in_flight {
            Some(Request::Rotate(sent)) if newest_generation == sent.generation + 1 => {
                let successor = newest.expect("the rotation");
                tally.lost_rotations += 1;
                let hash = successor["payload"]["token_hash"].as_str().expect("hash");
                Expect::SameSuccessor {
                    id: successor["payload"]["token_id"]
                        .as_str()
                        .expect("token id")
                        .to_owned(),
                    hash_prefix: hash.chars().take(HASH_PREFIX).collect(),
                }
            }
            other => {
                if matches!(other, Some(Request::Rotate(_))) {
                    tally.uncommitted += 1;
                }
                assert_eq!(
                    newest_generation, self.current.generation,
                    "{}: the log's newest generation of session {} is the newest answered",
                    self.username, self.current.session
                );
                Expect::Rotates
            }
        }
    }

    /// After the restart: the newest token works, or the one sent gets the logged successor.
    pub async fn check(&mut self, api: &Api, expect: Expect, tally: &mut Tally) {
        let sent = self.current.clone();
        let (status, answer) = Client::refresh(api, &sent).await.expect("refresh");
        assert_eq!(
            status, 200,
            "{}: token of generation {} after the restart: {answer}",
            self.username, sent.generation
        );
        tally.tokens_checked += 1;
        let successor = Token::of(&answer);
        self.rotated_after_restart = matches!(expect, Expect::Rotates);
        match expect {
            Expect::Rotates => assert!(
                !self.acked.iter().any(|t| t.id == successor.id),
                "{}: a fresh successor",
                self.username
            ),
            Expect::SameSuccessor { id, hash_prefix } => {
                assert_eq!(successor.id, id, "{}: the logged successor", self.username);
                assert_eq!(successor.hash_prefix(), hash_prefix, "{}", self.username);
                // Again, still within the window: the very same token, not a reuse.
                let (status, again) = Client::refresh(api, &sent).await.expect("refresh");
                assert_eq!(status, 200, "{}: {again}", self.username);
                assert_eq!(again["refreshToken"], answer["refreshToken"]);
                tally.grace_repeats += 1;
                tally.requests_acked += 1;
            }
        }
        self.acknowledge(Some(&sent), &answer);
        tally.requests_acked += 1;
        tally.rotations_acked += 1;
    }
}
