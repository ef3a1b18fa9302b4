//! Secrets as a type, and the narrow view of the outside world they are resolved from.
//!
//! A [`Secret`] can only be seen through [`Secret::expose`]; its `Debug` and `Display`
//! print `Secret(***)` so a config dump, a `{:?}` in a log line or a panic message can
//! never leak a bearer token. Resolving a secret reads environment variables and files,
//! which is the only I/O validation does; it goes through [`Environment`] so tests can
//! hand in a map instead of mutating the process environment.
//!
//! A bearer token is kept only as its [`TokenDigest`]; a config may give that digest
//! directly (`hash:`), so the file then holds nothing that authenticates.

use std::fmt;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A credential that must never be printed or logged.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret text. Call it only where the value is actually used (comparing a
    /// presented token), never to format a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` equals this secret, in time that does not depend on where the
    /// two first differ. Both sides are hashed first so the comparison also does not leak
    /// the secret's length.
    pub fn matches(&self, candidate: &str) -> bool {
        let ours = Sha256::digest(self.0.as_bytes());
        let theirs = Sha256::digest(candidate.as_bytes());
        ours.ct_eq(&theirs).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The SHA-256 digest of a bearer token: what the daemon keeps instead of the token, and
/// what a config may hold in its place (`hash: sha256:<64 hex digits>`, as printed by
/// `scim-bridge token new`). Not a secret itself, but its `Debug` stays short so a config
/// dump does not fill with hex.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// The prefix naming the hash function in `hash:` values.
    pub const PREFIX: &'static str = "sha256:";

    /// The digest of `token`.
    pub fn of(token: &str) -> TokenDigest {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }

    /// Parses `sha256:<64 hex digits>` (either case). The error says what is wrong without
    /// repeating the text, which may be a token pasted into the wrong key.
    pub fn parse(text: &str) -> Result<TokenDigest, String> {
        let text = text.trim();
        let Some(hex) = text
            .get(..Self::PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(Self::PREFIX))
            .map(|_| &text[Self::PREFIX.len()..])
        else {
            return Err("does not start with 'sha256:'".to_owned());
        };
        if let Some(c) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(format!(
                "contains {c:?} after 'sha256:', which is not a hex digit"
            ));
        }
        if hex.len() != 64 {
            return Err(format!(
                "has {} hex digits after 'sha256:'; a SHA-256 hash has 64",
                hex.len()
            ));
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let digit = |b: u8| char::from(b).to_digit(16).unwrap_or(0) as u8;
            *byte = (digit(pair[0]) << 4) | digit(pair[1]);
        }
        Ok(TokenDigest(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `other` is the same digest, in constant time.
    pub fn matches(&self, other: &TokenDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// `sha256:<64 lowercase hex digits>`, the form `hash:` takes.
impl fmt::Display for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::PREFIX)?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest(sha256:")?;
        self.0[..4].iter().try_for_each(|b| write!(f, "{b:02x}"))?;
        f.write_str("…)")
    }
}

/// Everything a secret source may read; real runs use [`ProcessEnv`], tests pass a map.
pub trait Environment {
    /// The value of an environment variable, or `None` when it is unset (or not UTF-8).
    fn var(&self, name: &str) -> Option<String>;
    /// The whole content of a file, as text.
    fn read_file(&self, path: &Path) -> io::Result<String>;
}

/// The real process environment and file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl ProcessEnv {
    /// Same as `ProcessEnv`; reads well at call sites: `config::load(path, &Env::process())`.
    pub fn process() -> Self {
        ProcessEnv
    }
}

/// Alias so callers can write `Env::process()`.
pub type Env = ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
}
