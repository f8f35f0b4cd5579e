//! What the command line says of the log — `verify`, `audit --json`, `replay` — held against
//! what the clients were answered and what the server's projection serves.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use support::{Api, Server};

use crate::client::{Client, Token};
use crate::{HASH_PREFIX, Tally, USERS};

/// `tokenledger verify` passes, over every user's stream, and the log explains every users
/// row; returns the number of events.
pub fn verify(server: &Server) -> usize {
    let verified = server.cli(&["verify"]);
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "tokenledger verify: {said}");
    assert!(
        said.contains(&format!("\nusers: {USERS} rows explained")),
        "tokenledger verify: {said}"
    );
    let counts = said
        .strip_prefix("ok: ")
        .and_then(|rest| rest.split_once(&format!(" events in {USERS} streams")))
        .map(|(counts, _)| counts)
        .unwrap_or_else(|| panic!("tokenledger verify: {said}"));
    counts.parse().expect("a count of events")
}

/// A user's trail, one JSON object an event, from `tokenledger audit --json`.
pub fn audit(server: &Server, username: &str) -> Vec<Value> {
    let output = server.cli(&["audit", username, "--json"]);
    assert!(output.status.success(), "tokenledger audit {username}");
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// A live session as both the API and the replay show it: id, device (the replay's table
/// cuts it to 20 characters), login, last use, IP.
pub type SessionRow = (String, String, String, String, String);

/// `GET /api/auth/sessions` (the server's projection) against `tokenledger replay` (a fresh
/// fold of the log), for every user.
///
/// Each client's current session was last used by the check after the restart (a rotation
/// then) or, where that check met a lost answer, by the rotation before the kill: the replay's
/// "last used" says which, against `restarted`, and so shows that reading the log after the
/// kill found every commit.
pub async fn compare_projection_with_replay(
    server: &Server,
    api: &Api,
    clients: &[Client],
    restarted: &str,
    tally: &mut Tally,
) {
    let output = server.cli(&["replay"]);
    assert!(output.status.success(), "tokenledger replay");
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    // user, session, device, gen, login, last used, ip
    let mut replayed: BTreeMap<i64, BTreeSet<SessionRow>> = BTreeMap::new();
    // session → (generation, last used)
    let mut current: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut rows = 0;
    let mut total = None;
    for line in text.lines() {
        let cells: Vec<&str> = line.split_whitespace().collect();
        let Some(user) = cells.first().and_then(|c| c.parse::<i64>().ok()) else {
            continue;
        };
        if let [count, "session" | "sessions"] = cells[..] {
            total = Some(count.parse::<usize>().expect("a count"));
            continue;
        }
        let [_, session, device, generation, login, last, ip] = cells[..] else {
            panic!("a replay row of 7 cells: {line}");
        };
        rows += 1;
        let generation = generation.parse().expect("gen");
        current.insert(session.to_owned(), (generation, last.to_owned()));
        replayed.entry(user).or_default().insert((
            session.to_owned(),
            device.to_owned(),
            login.to_owned(),
            last.to_owned(),
            ip.to_owned(),
        ));
    }
    assert_eq!(total, Some(rows), "the replay's count: {text}");
    for client in clients {
        // One page of the most the route gives: the default 25 left out the oldest sessions of
        // a client that had logged in more often (20 power cuts make more logins than 12 kills).
        let (status, body) = api
            .get_with_bearer("/api/auth/sessions?pagination[pageSize]=100", &client.jwt)
            .await;
        assert_eq!(status, 200, "{}: {body}", client.username);
        assert!(
            body["meta"]["pagination"]["total"].as_u64() <= Some(100),
            "{}: every session on one page",
            client.username
        );
        let served: BTreeSet<SessionRow> = body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|s| {
                let text = |key: &str| s[key].as_str().unwrap_or("-").to_owned();
                (
                    text("id"),
                    text("deviceId").chars().take(20).collect(),
                    text("loginAt"),
                    text("lastActiveAt"),
                    text("ip"),
                )
            })
            .collect();
        assert_eq!(
            Some(&served),
            replayed.get(&client.user_id),
            "{}: the projection against a fresh replay",
            client.username
        );
        assert_eq!(
            served.len(),
            client.sessions.len(),
            "{}: no session ended",
            client.username
        );
        let (generation, last_used) = current
            .get(&client.current.session)
            .unwrap_or_else(|| panic!("{}: the current session is live", client.username));
        assert_eq!(
            *generation, client.current.generation,
            "{}: the replay's generation of the current session",
            client.username
        );
        if client.rotated_after_restart {
            assert!(
                last_used.as_str() >= restarted,
                "{}: rotated after the restart ({restarted}), but last used {last_used}",
                client.username
            );
        } else {
            assert!(
                last_used.as_str() <= restarted,
                "{}: rotated before the kill, but last used {last_used} (restart {restarted})",
                client.username
            );
        }
        tally.sessions_compared += served.len();
    }
    assert_eq!(
        replayed.len(),
        clients.len(),
        "the replay shows every user, and no other: {replayed:?}"
    );
}

/// `check_trail` of every client. Returns the number of events.
pub fn check_log(server: &Server, clients: &[Client]) -> usize {
    clients
        .iter()
        .map(|client| check_trail(server, &client.username, &client.acked))
        .sum()
}

/// Every token in `acked` (each answered with a 200) is in the user's log, and the log holds
/// nothing else of note: the user's registration first, then no reuse, no revocation, one
/// rotation per (session, generation), generations without gaps. Returns the number of
/// events.
pub fn check_trail(server: &Server, username: &str, acked: &[Token]) -> usize {
    let log = audit(server, username);
    assert_eq!(
        log.first().map(|entry| &entry["type"]),
        Some(&Value::from("UserRegistered")),
        "{username}: the stream starts with the registration"
    );
    // (session, generation) → (token id, hash prefix)
    let mut logged: BTreeMap<(String, u64), (String, String)> = BTreeMap::new();
    for entry in &log[1..] {
        let kind = entry["type"].as_str().expect("type");
        assert!(
            kind == "TokenIssued" || kind == "TokenRotated",
            "{username}: an event nobody caused: {entry}"
        );
        let key = (
            entry["sessionId"].as_str().expect("session").to_owned(),
            entry["generation"].as_u64().expect("generation"),
        );
        let token = (
            entry["payload"]["token_id"]
                .as_str()
                .expect("token id")
                .to_owned(),
            entry["payload"]["token_hash"]
                .as_str()
                .expect("hash")
                .chars()
                .take(HASH_PREFIX)
                .collect(),
        );
        assert!(
            logged.insert(key.clone(), token).is_none(),
            "{username}: {key:?} twice: a fork"
        );
    }
    for (session, generation) in logged.keys() {
        if *generation > 0 {
            assert!(
                logged.contains_key(&(session.clone(), generation - 1)),
                "{username}: a gap before generation {generation} of {session}"
            );
        }
    }
    for token in acked {
        let key = (token.session.clone(), token.generation);
        assert_eq!(
            logged.get(&key),
            Some(&(token.id.clone(), token.hash_prefix())),
            "{username}: the token answered for {key:?} is the logged one"
        );
    }
    log.len()
}
