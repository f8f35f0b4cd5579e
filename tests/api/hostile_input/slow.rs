//! Clients that hold a connection open, sent alongside the generated run: 32 at once dribbling
//! a body a byte at a time (slowloris), a body that stops, trickling chunks, a trickling head,
//! a websocket upgrade with a body, a connection that says nothing. Each must end in time with
//! a 408 (Strapi's body where a route was reached) or, below HTTP, a closed connection.

use std::net::SocketAddr;
use std::time::Duration;

use super::generate::{Case, Class};
use super::verdict::{Failure, Tally, describe};
use super::wire::{self, Outcome};

const DRIBBLERS: usize = 32;
/// The server gives a body 10 s and a head 5 s; this leaves room for a loaded machine.
const IN_TIME: Duration = Duration::from_secs(20);

struct Client {
    what: &'static str,
    class: Class,
    first: Vec<u8>,
    rest: Vec<u8>,
    piece: usize,
}

pub async fn run(address: SocketAddr) -> Tally {
    let head = |framing: &str| {
        format!(
            "POST /api/auth/local HTTP/1.1\r\nhost: {address}\r\n\
             content-type: application/json\r\n{framing}\r\n"
        )
        .into_bytes()
    };
    let body = br#"{"identifier":"slow","password":"password123"}"#.repeat(4);
    let sized = head(&format!("content-length: {}\r\n", body.len()));
    let mut clients: Vec<Client> = (0..DRIBBLERS)
        .map(|_| Client {
            what: "dribbled body",
            class: Class::Http,
            first: sized.clone(),
            rest: body.clone(),
            piece: 1,
        })
        .collect();
    clients.extend([
        Client {
            what: "stalled body",
            class: Class::Http,
            first: [head("content-length: 100\r\n"), b"{\"iden".to_vec()].concat(),
            rest: Vec::new(),
            piece: 1,
        },
        Client {
            what: "dribbled chunks",
            class: Class::Http,
            first: head("transfer-encoding: chunked\r\n"),
            rest: b"1\r\n{\r\n".repeat(200),
            piece: 6,
        },
        Client {
            what: "dribbled head",
            class: Class::Protocol,
            first: Vec::new(),
            rest: sized,
            piece: 1,
        },
        // What follows the head of an upgrade is the upgraded stream, not the body: the
        // handler waits for a body that never comes.
        Client {
            what: "websocket upgrade with a body",
            class: Class::Http,
            first: [
                head("upgrade: websocket\r\nconnection: upgrade\r\ncontent-length: 2\r\n"),
                b"{}".to_vec(),
            ]
            .concat(),
            rest: Vec::new(),
            piece: 1,
        },
        Client {
            what: "silent connection",
            class: Class::Protocol,
            first: Vec::new(),
            rest: Vec::new(),
            piece: 1,
        },
    ]);
    let every = Duration::from_millis(250);
    let running: Vec<_> = clients
        .into_iter()
        .map(|client| {
            tokio::spawn(async move {
                let (outcome, took) = wire::dribble(
                    address,
                    &client.first,
                    &client.rest,
                    client.piece,
                    every,
                    IN_TIME + Duration::from_secs(5),
                )
                .await;
                (client, outcome, took)
            })
        })
        .collect();
    let mut tally = Tally::default();
    for (i, client) in running.into_iter().enumerate() {
        let (client, outcome, took) = client.await.expect("slow client");
        let label = format!("slow client {i}");
        let case = Case {
            bytes: [client.first, client.rest].concat(),
            class: client.class,
            head: false,
            fresh: true,
            half_close: false,
            what: format!("slow: {}", client.what),
        };
        tally.record(label.clone(), &case, &outcome, took, None);
        let timed_out = match &outcome {
            Outcome::Answer(r) => r.status == 408,
            Outcome::Closed(_) => case.class == Class::Protocol,
            Outcome::Hung => false,
        };
        if !timed_out || took > IN_TIME {
            tally.fail(Failure {
                case: label,
                what: case.what,
                problem: format!("not a 408 or a closed connection in time (after {took:?})"),
                request: case.bytes,
                previous: None,
                answer: describe(&outcome),
            });
        }
    }
    tally
}
