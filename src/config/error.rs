//! The one error type of the config layer, and the problem list it carries.
//!
//! A config file is usually wrong in more than one place at once, and fixing them one
//! restart at a time is miserable, so validation collects every [`Problem`] it finds and
//! reports them together, each with the YAML path and the line:column it refers to, in
//! the `file:line:col: message` shape editors and terminals turn into links.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// One thing wrong with the config, pointing at the YAML node it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted YAML path, e.g. `auth.tokens[0].secret`; empty for the document itself.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong, offending input first, then the fix when known.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}:{}: {}", self.line, self.column, self.message)
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.line, self.column, self.path, self.message
            )
        }
    }
}

/// Every problem found in one config source, in the order they appear in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems {
    /// The file name shown in front of each line.
    pub source: String,
    pub items: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}:{problem}", self.source)?;
        }
        Ok(())
    }
}

/// Why no [`Config`](super::Config) could be produced.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Invalid(Problems),
}
