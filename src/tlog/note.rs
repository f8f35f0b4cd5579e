//! Checkpoints signed as C2SP signed notes with Ed25519 (<https://c2sp.org/signed-note>,
//! <https://c2sp.org/tlog-checkpoint>), byte for byte what Go's `golang.org/x/mod/sumdb/note`
//! writes and reads, so that witnesses and monitors built for Go's transparency logs can
//! check ours.
//!
//! A signed note is its text (lines ending in `\n`), a blank line, then one line per
//! signature: `— <name> <base64(key hash ‖ signature)>`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signer as _;
use sha2::{Digest, Sha256};

use super::merkle::Hash;

/// The algorithm byte of Ed25519 in key hashes and verifier keys.
const ALG_ED25519: u8 = 0x01;
/// U+2014 EM DASH and a space: how every signature line starts.
const SIG_PREFIX: &str = "\u{2014} ";
/// Go's reader gives up past this many signatures; so do we, so that a huge note costs little.
const MAX_SIGNATURES: usize = 100;

/// Why a note or key was refused; shown to operators by `tokenledger verify`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed signed note: {0}")]
    Malformed(&'static str),
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    #[error("the verifier key's hash {claimed:08x} does not match its name and key ({actual:08x})")]
    KeyHashMismatch { claimed: u32, actual: u32 },
    #[error("the note has no signature by key {name}+{key_hash:08x} (signed by: {})", signers_text(.signers))]
    NoSignatureByKey {
        name: String,
        key_hash: u32,
        signers: Vec<String>,
    },
    #[error(
        "the signature by {name}+{key_hash:08x} does not verify: the note was altered after signing"
    )]
    BadSignature { name: String, key_hash: u32 },
    #[error("the signed note is not a checkpoint: {0}")]
    NotACheckpoint(&'static str),
}

fn signers_text(signers: &[String]) -> String {
    if signers.is_empty() {
        "nobody".to_owned()
    } else {
        signers.join(", ")
    }
}

/// A key name as Go accepts it: not empty, no whitespace, no `+` (the key texts' separator).
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(char::is_whitespace) && !name.contains('+')
}

/// The first four bytes of `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)`, big-endian: names the
/// key in signature lines without spelling it out.
fn key_hash(name: &str, public: &[u8; 32]) -> u32 {
    let digest = Sha256::new()
        .chain_update(name)
        .chain_update("\n")
        .chain_update([ALG_ED25519])
        .chain_update(public)
        .finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// A note text as Go signs and reads it: lines ending in `\n`, none blank (a blank line ends
/// the text), no control characters but the newlines.
fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("the text does not end with a newline"));
    }
    if text.starts_with('\n') || text.contains("\n\n") {
        return Err(NoteError::Malformed("the text has a blank line"));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("the text has a control character"));
    }
    Ok(())
}

/// A named Ed25519 signing key. Its `Debug` shows the name and key hash, never the seed.
pub struct SigningKey {
    name: String,
    key: ed25519_dalek::SigningKey,
    key_hash: u32,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}+{:08x})", self.name, self.key_hash)
    }
}

impl SigningKey {
    /// The key whose RFC 8032 private seed is `seed`. Fails for a name Go would refuse: empty,
    /// with whitespace or with `+`.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<SigningKey, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::MalformedKey(
                "the name is empty or has whitespace or '+'",
            ));
        }
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let key_hash = key_hash(name, key.verifying_key().as_bytes());
        Ok(SigningKey {
            name: name.to_owned(),
            key,
            key_hash,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_hash(&self) -> u32 {
        self.key_hash
    }

    /// `<name>+<key hash, 8 hex digits>+<base64(0x01 ‖ public key)>`: what verifiers are
    /// configured with.
    pub fn verifier_key(&self) -> String {
        let mut key = vec![ALG_ED25519];
        key.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_hash, BASE64.encode(key))
    }

    /// `text`, a blank line and this key's signature line. Fails for a text that would not
    /// read back (see [`verify_note`]).
    pub fn sign_note(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let signature = self.key.sign(text.as_bytes());
        let mut blob = self.key_hash.to_be_bytes().to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        let line = format!("{SIG_PREFIX}{} {}\n", self.name, BASE64.encode(blob));
        Ok(format!("{text}\n{line}"))
    }

    /// The signed note of `checkpoint`; fails if its fields would not read back as they are
    /// (an origin with a newline, an empty extension line, ...).
    pub fn sign_checkpoint(&self, checkpoint: &Checkpoint) -> Result<String, NoteError> {
        let body = checkpoint.body();
        if Checkpoint::parse_body(&body).as_ref() != Ok(checkpoint) {
            return Err(NoteError::NotACheckpoint(
                "its fields do not read back as they are",
            ));
        }
        self.sign_note(&body)
    }
}

/// A key that checks signatures, parsed from the text [`SigningKey::verifier_key`] writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_hash: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl VerifierKey {
    /// Refuses anything but an Ed25519 key whose hash matches its name and key: a mismatch
    /// means a mistyped or tampered key.
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        let bad = NoteError::MalformedKey;
        // The base64 part may itself hold '+', so only the first two split.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected <name>+<hash>+<key>"));
        };
        if !valid_name(name) {
            return Err(bad("the name is empty or has whitespace"));
        }
        if hash.len() != 8 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the key hash is not 8 hex digits"));
        }
        let claimed = u32::from_str_radix(hash, 16).map_err(|_| bad("bad key hash"))?;
        let key = BASE64
            .decode(key)
            .map_err(|_| bad("the key is not base64"))?;
        let Some((&ALG_ED25519, public)) = key.split_first() else {
            return Err(bad("the key is not an Ed25519 key"));
        };
        let public: &[u8; 32] = public.try_into().map_err(|_| bad("wrong key length"))?;
        let actual = key_hash(name, public);
        if actual != claimed {
            return Err(NoteError::KeyHashMismatch { claimed, actual });
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(public)
            .map_err(|_| bad("the key is not a valid Ed25519 point"))?;
        Ok(VerifierKey {
            name: name.to_owned(),
            key_hash: actual,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_hash(&self) -> u32 {
        self.key_hash
    }

    /// `verify_strict`: like Go it refuses non-canonical signatures; it also refuses
    /// small-order keys and nonces, which no honestly made signature has.
    fn verifies(&self, text: &str, signature: &[u8]) -> bool {
        let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(text.as_bytes(), &signature).is_ok()
    }
}

/// One signature line, split.
struct SignatureLine<'a> {
    name: &'a str,
    key_hash: u32,
    signature: Vec<u8>,
}

fn parse_signature_line(line: &str) -> Result<SignatureLine<'_>, NoteError> {
    let bad = NoteError::Malformed;
    let rest = line.strip_prefix(SIG_PREFIX).ok_or(bad(
        "a signature line does not start with an em dash and a space",
    ))?;
    let (name, blob) = rest.split_once(' ').ok_or(bad(
        "a signature line has no space between name and signature",
    ))?;
    let blob = BASE64
        .decode(blob)
        .map_err(|_| bad("a signature is not base64"))?;
    if !valid_name(name) || blob.len() < 5 {
        return Err(bad(
            "a signature line has a bad name or a too short signature",
        ));
    }
    let (hash, signature) = blob.split_at(4);
    Ok(SignatureLine {
        name,
        key_hash: u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]),
        signature: signature.to_vec(),
    })
}

/// Splits a signed note into its text (with its final newline) and its signature lines
/// (without theirs), at the last blank line as Go does.
fn split_note(note: &str) -> Result<(&str, Vec<&str>), NoteError> {
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (text, signatures) = (&note[..=split], &note[split + 2..]);
    check_text(text)?;
    let Some(signatures) = signatures.strip_suffix('\n') else {
        return Err(NoteError::Malformed(
            "no signature lines, or the last one does not end with a newline",
        ));
    };
    if signatures.contains(|c: char| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed(
            "a signature line has a control character",
        ));
    }
    let lines: Vec<&str> = signatures.split('\n').collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(NoteError::Malformed("more than 100 signatures"));
    }
    Ok((text, lines))
}

/// The text of `note` once a signature by `key` verifies. Signature lines of other keys are
/// skipped, as the spec asks (a note may carry witnesses' cosignatures); but every line must
/// be well-formed.
pub fn verify_note(note: &str, key: &VerifierKey) -> Result<String, NoteError> {
    let (text, lines) = split_note(note)?;
    let mut signers = Vec::new();
    let mut ours = false;
    for line in lines {
        let line = parse_signature_line(line)?;
        if line.name != key.name || line.key_hash != key.key_hash {
            signers.push(format!("{}+{:08x}", line.name, line.key_hash));
            continue;
        }
        ours = true;
        if key.verifies(text, &line.signature) {
            return Ok(text.to_owned());
        }
    }
    let (name, key_hash) = (key.name.clone(), key.key_hash);
    Err(if ours {
        NoteError::BadSignature { name, key_hash }
    } else {
        NoteError::NoSignatureByKey {
            name,
            key_hash,
            signers,
        }
    })
}

/// A tlog-checkpoint: the log's origin line, its size and root, and any extension lines.
/// The origin names the log and is independent of the signing key's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: one line each for origin, decimal size, base64 root and extension.
    pub fn body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        );
        for extension in &self.extensions {
            body.push_str(extension);
            body.push('\n');
        }
        body
    }

    pub fn parse_body(text: &str) -> Result<Checkpoint, NoteError> {
        let bad = NoteError::NotACheckpoint;
        let lines = text
            .strip_suffix('\n')
            .ok_or(bad("the body does not end with a newline"))?;
        let mut lines = lines.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(bad("fewer than three lines (origin, size, root)"));
        };
        if origin.is_empty() {
            return Err(bad("the origin line is empty"));
        }
        let size = parse_size(size).ok_or(bad("the size is not a decimal number"))?;
        let root = BASE64
            .decode(root)
            .ok()
            .and_then(|root| Hash::try_from(root).ok())
            .ok_or(bad("the root is not 32 bytes of base64"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("an extension line is empty"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

/// ASCII decimal without leading zeros, so that one size has one spelling.
fn parse_size(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// The checkpoint in `note`, once a signature by `key` verifies.
pub fn open(note: &str, key: &VerifierKey) -> Result<Checkpoint, NoteError> {
    Checkpoint::parse_body(&verify_note(note, key)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of Go's `golang.org/x/mod/sumdb/note` documentation and tests.
    const GO_VERIFIER: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_SIGNER: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const GO_SIGNATURE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn go_note() -> String {
        format!("{GO_TEXT}\n{GO_SIGNATURE}")
    }

    fn go_signer() -> SigningKey {
        // PRIVATE+KEY+<name>+<hash>+<base64(0x01 ‖ seed)>; the base64 may hold '+'.
        let encoded = GO_SIGNER.splitn(5, '+').nth(4).unwrap();
        let decoded = BASE64.decode(encoded).unwrap();
        let (alg, seed) = decoded.split_first().unwrap();
        assert_eq!(*alg, ALG_ED25519);
        SigningKey::from_seed("PeterNeumann", seed.try_into().unwrap()).unwrap()
    }

    fn key(name: &str, byte: u8) -> SigningKey {
        SigningKey::from_seed(name, &[byte; 32]).unwrap()
    }

    fn verifier(key: &SigningKey) -> VerifierKey {
        VerifierKey::parse(&key.verifier_key()).unwrap()
    }

    fn checkpoint(extensions: &[&str]) -> Checkpoint {
        Checkpoint {
            origin: "example.com/tokenledger/audit".to_owned(),
            size: 70_000,
            root: super::super::merkle::leaf_hash(b"root"),
            extensions: extensions.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn given_the_go_example_note_then_it_verifies_under_the_go_verifier_key() {
        let key = VerifierKey::parse(GO_VERIFIER).unwrap();
        assert_eq!(key.name(), "PeterNeumann");
        assert_eq!(key.key_hash(), 0xc74f20a3);
        assert_eq!(verify_note(&go_note(), &key), Ok(GO_TEXT.to_owned()));
        let not_a_checkpoint = open(&go_note(), &key).unwrap_err();
        assert!(matches!(not_a_checkpoint, NoteError::NotACheckpoint(_)));
    }

    #[test]
    fn given_the_go_example_seed_then_the_same_verifier_key_and_signature_follow() {
        let signer = go_signer();
        assert_eq!(signer.verifier_key(), GO_VERIFIER);
        assert_eq!(signer.key_hash(), 0xc74f20a3);
        assert_eq!(signer.sign_note(GO_TEXT), Ok(go_note()));
        assert_eq!(format!("{signer:?}"), "SigningKey(PeterNeumann+c74f20a3)");
    }

    #[test]
    fn given_a_signed_checkpoint_then_it_opens_to_the_same_checkpoint() {
        let signer = key("tokenledger-test", 7);
        for extensions in [&[][..], &["- extension one", "another: 2"][..]] {
            let checkpoint = checkpoint(extensions);
            let note = signer.sign_checkpoint(&checkpoint).unwrap();
            assert!(note.starts_with("example.com/tokenledger/audit\n70000\n"));
            assert_eq!(open(&note, &verifier(&signer)), Ok(checkpoint));
        }
    }

    #[test]
    fn given_one_flipped_byte_anywhere_then_the_note_does_not_open() {
        let signer = key("tokenledger-test", 7);
        let note = signer.sign_checkpoint(&checkpoint(&["ext"])).unwrap();
        let key = verifier(&signer);
        for at in 0..note.len() {
            let mut bytes = note.clone().into_bytes();
            bytes[at] ^= 0x01;
            let Ok(tampered) = String::from_utf8(bytes) else {
                continue; // inside the em dash: no longer text at all
            };
            assert!(open(&tampered, &key).is_err(), "flipped byte {at}");
        }
    }

    #[test]
    fn given_a_flipped_body_byte_then_the_error_is_a_bad_signature() {
        let signer = key("tokenledger-test", 7);
        let note = signer.sign_checkpoint(&checkpoint(&[])).unwrap();
        let tampered = note.replacen("70000", "70001", 1);
        let err = open(&tampered, &verifier(&signer)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the signature by tokenledger-test+".to_owned()
                + &format!("{:08x}", signer.key_hash())
                + " does not verify: the note was altered after signing"
        );
    }

    #[test]
    fn given_a_note_signed_by_another_key_then_no_signature_by_this_key_is_named() {
        let (ours, theirs) = (key("ledger", 1), key("ledger", 2));
        let note = theirs.sign_checkpoint(&checkpoint(&[])).unwrap();
        let err = open(&note, &verifier(&ours)).unwrap_err();
        let NoteError::NoSignatureByKey { signers, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(signers, &[format!("ledger+{:08x}", theirs.key_hash())]);
        assert!(
            err.to_string()
                .starts_with("the note has no signature by key ledger+")
        );
    }

    #[test]
    fn given_cosignatures_of_other_keys_then_ours_is_still_found() {
        let (ours, witness) = (key("ledger", 1), key("witness", 2));
        let body = checkpoint(&[]).body();
        let signed = ours.sign_note(&body).unwrap();
        let cosigned = witness.sign_note(&body).unwrap();
        let witness_line = cosigned.strip_prefix(&format!("{body}\n")).unwrap();
        let note = format!("{body}\n{witness_line}{}", &signed[body.len() + 1..]);
        assert_eq!(open(&note, &verifier(&ours)), Ok(checkpoint(&[])));
        assert_eq!(open(&note, &verifier(&witness)), Ok(checkpoint(&[])));
    }

    #[test]
    fn given_missing_or_extra_newlines_then_the_note_is_malformed() {
        let signer = key("ledger", 1);
        let key = verifier(&signer);
        let note = signer.sign_checkpoint(&checkpoint(&[])).unwrap();
        let malformed = |note: &str| matches!(open(note, &key), Err(NoteError::Malformed(_)));
        assert!(malformed(note.strip_suffix('\n').unwrap()));
        assert!(malformed(&format!("{note}\n")));
        assert!(malformed(&format!("\n{note}")));
        assert!(malformed(&note.replacen("\n\n", "\n", 1)));
        assert!(malformed(&note.replacen("70000\n", "70000\n\n", 1)));
        assert!(malformed(&note.replacen("\u{2014} ", "- ", 1)));
        assert!(malformed(&note.replacen("70000", "70\t000", 1)));
        for text in ["no newline", "a\n\nb\n", "\n", "", "tab\there\n"] {
            assert!(
                matches!(signer.sign_note(text), Err(NoteError::Malformed(_))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn given_bad_checkpoint_bodies_then_they_are_not_checkpoints() {
        let root = BASE64.encode([0u8; 32]);
        for body in [
            "origin\n1\n".to_owned(),
            format!("\n1\n{root}\n"),
            format!("origin\n01\n{root}\n"),
            format!("origin\n-1\n{root}\n"),
            format!("origin\n+1\n{root}\n"),
            format!("origin\n18446744073709551616\n{root}\n"),
            format!("origin\n1\n{}\n", BASE64.encode([0u8; 31])),
            format!("origin\n1\n{root}"),
            format!("origin\n1\n{root}\next\n\n"),
        ] {
            let err = Checkpoint::parse_body(&body);
            assert!(matches!(err, Err(NoteError::NotACheckpoint(_))), "{body:?}");
        }
        let zero = Checkpoint::parse_body(&format!("o\n0\n{root}\n")).unwrap();
        assert_eq!((zero.size, zero.root), (0, [0; 32]));
        let bad = Checkpoint {
            origin: "two\nlines".to_owned(),
            ..checkpoint(&[])
        };
        assert!(key("ledger", 1).sign_checkpoint(&bad).is_err());
    }

    #[test]
    fn given_bad_verifier_keys_then_they_are_refused() {
        let good = key("ledger", 1).verifier_key();
        let (name_and_hash, encoded) = good.rsplit_once('+').unwrap();
        let other_hash = format!("ledger+00000000+{encoded}");
        assert!(matches!(
            VerifierKey::parse(&other_hash),
            Err(NoteError::KeyHashMismatch { claimed: 0, .. })
        ));
        let renamed = good.replacen("ledger", "ledgers", 1);
        assert!(matches!(
            VerifierKey::parse(&renamed),
            Err(NoteError::KeyHashMismatch { .. })
        ));
        let mut wrong_alg = BASE64.decode(encoded).unwrap();
        wrong_alg[0] = 0x02;
        for text in [
            "ledger".to_owned(),
            format!("ledger+{encoded}"),
            format!("{name_and_hash}+{}", BASE64.encode(wrong_alg)),
            format!("{name_and_hash}+{}", &encoded[4..]),
            format!("{name_and_hash}+!!"),
            format!("+{}", good.split_once('+').unwrap().1),
        ] {
            let err = VerifierKey::parse(&text);
            assert!(
                matches!(err, Err(NoteError::MalformedKey(_))),
                "{text}: {err:?}"
            );
        }
        assert!(SigningKey::from_seed("two words", &[1; 32]).is_err());
        assert!(SigningKey::from_seed("a+b", &[1; 32]).is_err());
    }
}
