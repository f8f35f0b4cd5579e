//! Password hashing: argon2id with OWASP's parameters (m=19456 KiB, t=2, p=1), run on a
//! fixed pool of one thread per core, so a login flood queues here instead of stalling the
//! async workers or oversubscribing the CPU. Fixed threads also bound memory: each keeps the
//! 19 MiB its last hash used for the next one, where a growing blocking pool would leave that
//! much behind in every thread it ever started.
//!
//! Hashes imported from Strapi are bcrypt (`$2a$10$…`, bcryptjs'): they verify here too, and
//! `Scheme::of` tells the login to replace such a hash by an argon2id one once the password
//! is proven (`PasswordRehashed`).
//!
//! The queue is bounded too (`WAITING_PER_THREAD` jobs a thread): past it a job is refused at
//! once (`PasswordError::Busy`, a 503 with `Retry-After`), so a flood of logins cannot make a
//! real user's login wait behind hundreds of others (300 queued took 3.4 s to reach).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// How many jobs may wait for each thread: at about 20 ms a hash, a login waits at most
/// some 160 ms before its own hash starts, and a burst of a few dozen logins on a small
/// machine still queues rather than being refused.
const WAITING_PER_THREAD: usize = 8;

/// What an unknown user's login is verified against, so it costs what a wrong password does
/// (no user enumeration by timing). A constant, not hashed at start-up: a hash takes 19 MiB
/// the allocator would keep for the life of an idle server. Its password was random and is
/// gone; it never matters, since an unknown user's login fails whatever the outcome.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$rHZmS5MycmWgK6ufc3HxJA$bwyi5P+ywggnpe22Jx+nWEJVg2PfXQDm86Qcsi6y8oM";

/// The algorithm a stored hash was made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Today's: every hash this service makes.
    Argon2id,
    /// Strapi's (bcryptjs), verified but replaced at the first login that proves it.
    Bcrypt,
}

impl Scheme {
    /// By the PHC or modular-crypt prefix; anything unrecognised is handed to argon2, which
    /// refuses it.
    pub fn of(hash: &str) -> Scheme {
        if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            Scheme::Bcrypt
        } else {
            Scheme::Argon2id
        }
    }

    /// Its name, as `PasswordRehashed::from` records it.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Argon2id => "argon2id",
            Scheme::Bcrypt => "bcrypt",
        }
    }
}

/// Whether `password` is the one `hash` was made from, in the hash's own scheme.
fn matches(password: &str, hash: &str) -> bool {
    match Scheme::of(hash) {
        Scheme::Bcrypt => bcrypt::verify(password, hash).unwrap_or(false),
        Scheme::Argon2id => argon2().verify_password(password.as_bytes(), hash).is_ok(),
    }
}

#[derive(Clone)]
pub struct Passwords {
    jobs: mpsc::Sender<Job>,
    /// Hashes and verifications waiting for a thread (not those running).
    queued: Arc<AtomicUsize>,
    /// The most that may wait.
    max_queued: usize,
    /// Verifications started, known user or not: tests count them.
    verifications: Arc<AtomicUsize>,
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the password pool is shut down")]
    Closed,
    #[error("too many password checks are waiting")]
    Busy,
}

impl Passwords {
    /// Starts `parallelism` hashing threads; they end when the last `Passwords` is dropped.
    pub fn new(parallelism: usize) -> Result<Passwords, PasswordError> {
        let parallelism = parallelism.max(1);
        let (jobs, inbox) = mpsc::channel::<Job>();
        let inbox = Arc::new(Mutex::new(inbox));
        for n in 0..parallelism {
            let inbox = inbox.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while taking a job, not while hashing.
                        let job = inbox.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => break,
                        }
                    }
                })
                .map_err(|e| PasswordError::Hash(e.to_string()))?;
        }
        Ok(Passwords {
            jobs,
            queued: Arc::new(AtomicUsize::new(0)),
            max_queued: parallelism * WAITING_PER_THREAD,
            verifications: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// How many verifications have run or are running, since start.
    pub fn verifications(&self) -> usize {
        self.verifications.load(Ordering::Relaxed)
    }

    /// How many hashes and verifications wait for a thread: a backlog, 0 when the threads
    /// keep up.
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let (reply, answer) = oneshot::channel();
        let queued = self.queued.clone();
        if queued.fetch_add(1, Ordering::Relaxed) >= self.max_queued {
            queued.fetch_sub(1, Ordering::Relaxed);
            return Err(PasswordError::Busy);
        }
        let job: Job = Box::new(move || {
            queued.fetch_sub(1, Ordering::Relaxed);
            let _ = reply.send(work());
        });
        if self.jobs.send(job).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(PasswordError::Closed);
        }
        answer.await.map_err(|_| PasswordError::Closed)
    }

    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.run(move || {
            argon2()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
        })
        .await?
        .map_err(|e| PasswordError::Hash(e.to_string()))
    }

    /// Whether `password` matches `hash`; with no hash (unknown user) it checks against the
    /// dummy hash and answers false.
    pub async fn verify(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, PasswordError> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let verifications = self.verifications.clone();
        let matches = self
            .run(move || {
                verifications.fetch_add(1, Ordering::Relaxed);
                matches(&password, &hash)
            })
            .await?;
        Ok(known && matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let p = Passwords::new(1).unwrap();
        let hash = p.hash("correct horse".to_owned()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            p.verify("correct horse".to_owned(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!p.verify("wrong".to_owned(), Some(hash)).await.unwrap());
        assert!(!p.verify("anything".to_owned(), None).await.unwrap());
    }

    #[tokio::test]
    async fn given_a_full_queue_when_more_checks_come_then_they_are_refused_at_once() {
        let p = Passwords::new(1).unwrap();
        // Eight waiting (and one running, once the thread takes it) fill a one-thread pool.
        let checks: Vec<_> = (0..20)
            .map(|_| {
                let p = p.clone();
                tokio::spawn(async move { p.verify("guess".to_owned(), None).await })
            })
            .collect();
        let mut busy = 0;
        for check in checks {
            match check.await.unwrap() {
                Ok(matches) => assert!(!matches),
                Err(PasswordError::Busy) => busy += 1,
                Err(other) => panic!("{other}"),
            }
        }
        // Eight wait; the first may or may not have been taken by the thread yet.
        assert!((11..=12).contains(&busy), "{busy} refused");
        assert_eq!(p.verifications(), 20 - busy);
        assert_eq!(p.queue_depth(), 0);
    }

    #[tokio::test]
    async fn a_strapi_bcrypt_hash_verifies_its_password_only() {
        // Ada's hash from the Strapi 5.54 fixture (bcryptjs, cost 10).
        let ada = "$2a$10$K15Mcbm61OwbPQgy/Qk1Se3/Z0Gdyzo6yHhzhCqg5CJQw5HWLr6S6";
        assert_eq!(Scheme::of(ada), Scheme::Bcrypt);
        let p = Passwords::new(1).unwrap();
        assert!(
            p.verify("Lovelace-1815".to_owned(), Some(ada.to_owned()))
                .await
                .unwrap()
        );
        assert!(
            !p.verify("lovelace-1815".to_owned(), Some(ada.to_owned()))
                .await
                .unwrap()
        );
        let argon = p.hash("Lovelace-1815".to_owned()).await.unwrap();
        assert_eq!(Scheme::of(&argon), Scheme::Argon2id);
        // A broken bcrypt string is a wrong password, not a panic.
        assert!(
            !p.verify("x".to_owned(), Some("$2a$10$short".to_owned()))
                .await
                .unwrap()
        );
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        // The same parameters as every new hash, or an unknown user's login would take a
        // different time from a wrong password.
        let parsed = argon2::PasswordHash::new(DUMMY_HASH).expect("a PHC string");
        let params = Params::try_from(&parsed).expect("argon2 parameters");
        let defaults = Params::default();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (defaults.m_cost(), defaults.t_cost(), defaults.p_cost())
        );
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }
}
