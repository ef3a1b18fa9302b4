//! Secrets as a type, and the narrow view of the outside world they are resolved from.
//!
//! A [`Secret`] can only be seen through [`Secret::expose`]; its `Debug` and `Display`
//! print `Secret(***)` so a config dump, a `{:?}` in a log line or a panic message can
//! never leak a bearer token. Resolving a secret reads environment variables and files,
//! which is the only I/O validation does; it goes through [`Environment`] so tests can
//! hand in a map instead of mutating the process environment.

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
