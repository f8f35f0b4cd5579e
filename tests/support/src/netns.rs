//! Network namespaces for partition tests (issue 22 item 3): two instances and their database
//! each in a namespace of its own, so that a test can cut one instance off from the database
//! and heal it again while the test still reaches both instances over HTTP.
//!
//! ```text
//!               test (this namespace)
//!          198.18.K.9        198.18.K.13
//!               |  web            |  web
//!          198.18.K.10       198.18.K.14
//!             [ a ]             [ b ]
//!          198.18.K.2        198.18.K.6
//!               |  db             |  db
//!          198.18.K.1 to-a   198.18.K.5 to-b
//!             [          database          ]
//! ```
//!
//! Each link is a /30 of 198.18.0.0/15, the range set aside for tests of networks (RFC 2544),
//! so that no route of the machine's own is met.
//!
//! A cut takes down the database's end of an instance's `db` link: the instance's own end
//! stays up with its route, and what it sends is dropped without an answer, as in a
//! partition; nothing tells the instance, it only hears nothing back. A heal brings the end
//! up again. (This kernel has no `netem`, so delay is the userspace `LatencyProxy`'s.)
//! Needs root and `ip`; everything is removed on drop.

use std::fs::File;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{CloneFlags, setns};

pub struct Network {
    /// The third octet of every address, also in every name, so that runs side by side on
    /// one machine do not meet.
    k: u8,
}

/// One of the two instances' namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    fn letter(self) -> char {
        match self {
            Side::A => 'a',
            Side::B => 'b',
        }
    }

    /// The number of this side's `db` link (its `web` link is two more).
    fn link(self) -> u8 {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// Why no namespaces can be made here, if none can.
pub fn namespaces_unavailable() -> Option<String> {
    static PROBES: AtomicU32 = AtomicU32::new(0);
    // Tests of one process ask at once: a name each.
    let probe = format!(
        "tlprobe{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    );
    match ip(&["netns", "add", &probe]) {
        Ok(()) => {
            let _ = ip(&["netns", "del", &probe]);
            None
        }
        Err(why) => Some(format!(
            "`ip netns add` failed (needs root and iproute2): {why}"
        )),
    }
}

impl Network {
    /// Makes the namespaces and links of the picture above, all up.
    pub fn create() -> Network {
        let mut k = (std::process::id() % 256) as u8;
        for tries in 1.. {
            match ip(&["netns", "add", &name(k, 'd')]) {
                Ok(()) => break,
                // Taken by a run beside this one: the next.
                Err(why) => assert!(tries < 100, "ip netns add: {why}"),
            }
            k = k.wrapping_add(1);
        }
        let network = Network { k };
        for side in ['a', 'b'] {
            network.run(&["netns", "add", &name(k, side)]);
        }
        for ns in ['a', 'b', 'd'] {
            network.run_in(ns, &["link", "set", "dev", "lo", "up"]);
        }
        for side in [Side::A, Side::B] {
            network.link_db(side);
            network.link_web(side);
        }
        network
    }

    /// The namespace of `side`, to run its instance in.
    pub fn namespace(&self, side: Side) -> String {
        name(self.k, side.letter())
    }

    /// The namespace of the database.
    pub fn database_namespace(&self) -> String {
        name(self.k, 'd')
    }

    /// The address the test reaches `side`'s instance at.
    pub fn web_address(&self, side: Side) -> String {
        self.address(side.link() + 2, 2)
    }

    /// The database's address on `side`'s `db` link: where that instance reaches it.
    pub fn database_address(&self, side: Side) -> String {
        self.address(side.link(), 1)
    }

    /// End `end` (1 or 2) of link `link`.
    fn address(&self, link: u8, end: u8) -> String {
        format!("198.18.{}.{}", self.k, 4 * link + end)
    }

    /// Cuts `side` off from the database (and from nothing else).
    pub fn cut(&self, side: Side) {
        self.run_in('d', &["link", "set", "dev", &to(side), "down"]);
    }

    /// Heals a `cut`.
    pub fn heal(&self, side: Side) {
        self.run_in('d', &["link", "set", "dev", &to(side), "up"]);
    }

    /// Runs `work` on a thread that lives in the database's namespace, so that the sockets it
    /// opens are that namespace's (a listener there is reached at `database_address`).
    pub fn in_database_namespace<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.database_namespace());
        std::thread::spawn(move || {
            let namespace = File::open(&path).expect("the namespace's file");
            // Only this thread's sockets are the namespace's.
            setns(namespace, CloneFlags::CLONE_NEWNET).expect("setns");
            work()
        })
    }

    /// `side`'s `db` link: `db` in its namespace, named after the side in the database's.
    fn link_db(&self, side: Side) {
        let (k, letter, link) = (self.k, side.letter(), side.link());
        let (here, there) = (format!("tl{k}{letter}x"), format!("tl{k}{letter}y"));
        self.run(&["link", "add", &here, "type", "veth", "peer", "name", &there]);
        self.run(&["link", "set", "dev", &there, "netns", &name(k, letter)]);
        self.run_in(letter, &["link", "set", "dev", &there, "name", "db"]);
        self.run(&["link", "set", "dev", &here, "netns", &name(k, 'd')]);
        self.run_in('d', &["link", "set", "dev", &here, "name", &to(side)]);
        let ends = [
            ('d', to(side), format!("{}/30", self.address(link, 1))),
            (
                letter,
                "db".to_owned(),
                format!("{}/30", self.address(link, 2)),
            ),
        ];
        for (ns, device, address) in ends {
            self.run_in(ns, &["addr", "add", &address, "dev", &device]);
            self.run_in(ns, &["link", "set", "dev", &device, "up"]);
        }
    }

    /// `side`'s `web` link, from the test's namespace.
    fn link_web(&self, side: Side) {
        let (k, letter, link) = (self.k, side.letter(), side.link() + 2);
        let (here, there) = (format!("tl{k}{letter}w"), format!("tl{k}{letter}v"));
        self.run(&["link", "add", &here, "type", "veth", "peer", "name", &there]);
        self.run(&["link", "set", "dev", &there, "netns", &name(k, letter)]);
        self.run_in(letter, &["link", "set", "dev", &there, "name", "web"]);
        let (near, far) = (self.address(link, 1), self.address(link, 2));
        self.run(&["addr", "add", &format!("{near}/30"), "dev", &here]);
        self.run(&["link", "set", "dev", &here, "up"]);
        self.run_in(letter, &["addr", "add", &format!("{far}/30"), "dev", "web"]);
        self.run_in(letter, &["link", "set", "dev", "web", "up"]);
    }

    fn run(&self, args: &[&str]) {
        ip(args).unwrap_or_else(|why| panic!("ip {args:?}: {why}"));
    }

    /// `ip -n <namespace> …` in the namespace of `ns` ('a', 'b' or 'd').
    fn run_in(&self, ns: char, args: &[&str]) {
        let namespace = name(self.k, ns);
        let args: Vec<&str> = ["-n", namespace.as_str()]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        self.run(&args);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Removing a namespace removes its veth ends, and with them their peers here.
        for ns in ['a', 'b', 'd'] {
            let _ = ip(&["netns", "del", &name(self.k, ns)]);
        }
    }
}

/// The database's end of `side`'s `db` link.
fn to(side: Side) -> String {
    format!("to-{}", side.letter())
}

fn name(k: u8, ns: char) -> String {
    format!("tl{k}{ns}")
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|error| error.to_string())?;
    match output.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&output.stderr).trim().to_owned()),
    }
}
