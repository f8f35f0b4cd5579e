//! Clients rotating their refresh tokens on two instances while the database fails under
//! them (`outage`, `partition`): every answer noted with its instance and time, and at the
//! end the check that both instances agree and the log holds every token answered.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::netns::Side;
use support::{Api, Server, claims};

use crate::client::Token;
use crate::forensics::check_trail;

/// One answer a client got.
#[derive(Clone, Debug)]
pub struct Answer {
    pub side: Side,
    pub sent: Instant,
    pub took: Duration,
    pub status: u16,
    pub retry_after: bool,
}

type Answers = Arc<Mutex<Vec<Answer>>>;

/// The answers that are neither a 200 nor a 503 with `Retry-After`: a 401 that would log a
/// user out, another error, or none at all.
pub fn wrong(answers: &[Answer]) -> Vec<&Answer> {
    answers
        .iter()
        .filter(|a| !(a.status == 200 || a.status == 503 && a.retry_after))
        .collect()
}

/// A client: its user, its newest token, and every token it was answered.
pub struct Held {
    pub username: String,
    pub token: String,
    pub acked: Vec<Token>,
}

impl Held {
    /// A new user logged in on `api`.
    pub async fn register(api: &Api, username: String) -> Held {
        let (_, token) = api.user_with_token(&username).await;
        Held {
            acked: vec![Token::of(&json!({ "refreshToken": token }))],
            username,
            token,
        }
    }
}

/// Rotates the client's token on `apis` in turn until `stop`, noting every answer. A 503
/// keeps the token: nothing was acknowledged.
async fn rotate(
    apis: Vec<(Side, Api)>,
    mut held: Held,
    answers: Answers,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Held {
    let mut turn = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let (side, api) = &apis[turn % apis.len()];
        turn += 1;
        let sent = Instant::now();
        let answer = api
            .client
            .post(api.url("/api/auth/local/refresh"))
            .json(&json!({ "refreshToken": held.token }))
            .send()
            .await;
        let took = sent.elapsed();
        let (status, retry_after, body) = match answer {
            Ok(answer) => {
                let status = answer.status().as_u16();
                let retry_after = answer.headers().contains_key("retry-after");
                (
                    status,
                    retry_after,
                    answer.json().await.unwrap_or(Value::Null),
                )
            }
            // A client timeout (30 s) or a refused connection: a wrong answer below.
            Err(_) => (0, false, Value::Null),
        };
        if status == 200 {
            let token = Token::of(&body);
            held.token = body["refreshToken"].as_str().expect("checked").to_owned();
            held.acked.push(token);
        }
        answers.lock().unwrap().push(Answer {
            side: *side,
            sent,
            took,
            status,
            retry_after,
        });
        if status == 503 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    held
}

pub struct Load {
    answers: Answers,
    stop: Arc<std::sync::atomic::AtomicBool>,
    running: Vec<tokio::task::JoinHandle<Held>>,
}

impl Load {
    pub fn start(apis: &[(Side, Api)], clients: Vec<Held>) -> Load {
        let answers: Answers = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let running = clients
            .into_iter()
            .map(|held| tokio::spawn(rotate(apis.to_vec(), held, answers.clone(), stop.clone())))
            .collect();
        Load {
            answers,
            stop,
            running,
        }
    }

    /// Stops the clients; them and every answer.
    pub async fn finish(self) -> (Vec<Held>, Vec<Answer>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut clients = Vec::new();
        for task in self.running {
            clients.push(task.await.expect("a client"));
        }
        let answers = self.answers.lock().unwrap().clone();
        (clients, answers)
    }
}

/// Every client's newest token works on both instances with one successor (the second gets
/// the same through the grace window), both answer the same sessions for its user, every
/// token answered is in the log with no fork, and `verify` passes.
pub async fn both_agree(name: &str, [a, b]: [&Api; 2], cli: &Server, clients: Vec<Held>) {
    let (mut sessions_compared, mut tokens_checked, mut events) = (0, 0, 0);
    for mut held in clients {
        let (status, first) = a.refresh(&held.token).await;
        assert_eq!(status, 200, "{first}");
        let (status, again) = b.refresh(&held.token).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(
            first["refreshToken"], again["refreshToken"],
            "one successor"
        );
        let generation = claims(&held.token)["gen"].as_u64().expect("gen");
        let successor = Token::of(&first);
        assert_eq!(successor.generation, generation + 1);
        held.acked.push(successor);
        let jwt = first["jwt"].as_str().expect("an access token");
        let path = "/api/auth/sessions?pagination[pageSize]=100";
        let (status, on_a) = a.get_with_bearer(path, jwt).await;
        assert_eq!(status, 200, "{on_a}");
        let (status, on_b) = b.get_with_bearer(path, jwt).await;
        assert_eq!(status, 200, "{on_b}");
        assert_eq!(on_a, on_b, "both instances answer the same sessions");
        sessions_compared += on_a["data"].as_array().map_or(0, Vec::len);
        tokens_checked += held.acked.len();
        events += check_trail(cli, &held.username, &held.acked);
    }
    println!(
        "[{name}] sessions compared on both instances: {sessions_compared}; acknowledged tokens found in the log: {tokens_checked} of {events} events"
    );
    let verified = cli.cli(&["verify"]);
    assert!(
        verified.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
}
