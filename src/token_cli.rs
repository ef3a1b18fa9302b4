//! `scim-bridge token new`: makes a bearer token for an identity provider.
//!
//! The token is 32 bytes from the operating system's CSPRNG, written as 64 hex digits.
//! It is printed once, next to the `auth.tokens` entry that configures it by its SHA-256
//! hash; the config then authenticates the token without holding it. Nothing is written
//! anywhere, and this is the only place the program ever prints a secret.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use scim_bridge::config::{self, TokenDigest};

/// Random bytes in a token: 256 bits, beyond guessing and beyond a birthday collision.
const TOKEN_BYTES: usize = 32;

/// Prints a new token named `name` and its config entry; exit 2 on a bad name or when
/// the system has no randomness to give.
pub fn new(name: &str) -> anyhow::Result<ExitCode> {
    if !config::valid_token_name(name) {
        anyhow::bail!(
            "--name '{name}' is not a valid token name (use 1 to 64 of A-Z a-z 0-9 _ . -)"
        );
    }
    let token = random_token().context("while reading random bytes from the system")?;
    let digest = TokenDigest::of(&token);
    let text = format!(
        "New bearer token for '{name}'. It is shown only this once and is not stored \
         anywhere (the configuration keeps only its hash): give it to the identity provider \
         now (Entra: Admin Credentials > Secret Token).\n\
         \n\
         {token}\n\
         \n\
         Add this entry under auth.tokens in the configuration, then reload \
         (systemctl reload scim-bridge):\n\
         \n\
         \x20   - name: {name}\n\
         \x20     hash: {digest}\n"
    );
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("while writing the token to standard output")?;
    Ok(ExitCode::SUCCESS)
}

/// `TOKEN_BYTES` random bytes as lowercase hex: safe in a header, a YAML file and a shell.
fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    let mut hex = String::with_capacity(2 * TOKEN_BYTES);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{b:02x}");
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_digits_and_differ_each_time() {
        let a = random_token().expect("randomness");
        let b = random_token().expect("randomness");
        assert_eq!(a.len(), 64);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }
}
