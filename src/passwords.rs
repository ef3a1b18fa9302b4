//! Sealing the passwords that wait for delivery (docs/passwords.md).
//!
//! A password the provider sends is never journaled and never logged. While it waits for
//! the directory it sits in the state store's `secrets` table sealed with AES-256-GCM
//! under a key of the state directory (`secrets.key`, 32 random bytes, mode 0600, made on
//! first use). The record's sequence number and resource id are the associated data, so a
//! sealed password cannot be moved to another record. A copy of the database (a backup,
//! a support bundle) without the key file holds no password in clear.

use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::target::Password;

/// The key file's name in the state directory.
pub const KEY_FILE: &str = "secrets.key";
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password key {path}: {detail}")]
    Key { path: PathBuf, detail: String },
    #[error("cannot seal a password")]
    Seal,
    #[error(
        "a sealed password does not open with this key (secrets.key replaced, or the row damaged)"
    )]
    Open,
}

/// Seals and opens passwords with the state directory's key.
pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

impl Sealer {
    /// The sealer of `state_dir`: its key file read, or created (0600) when missing.
    pub fn open_or_create(state_dir: &Path) -> Result<Sealer, PasswordError> {
        let path = state_dir.join(KEY_FILE);
        let key_error = |detail: String| PasswordError::Key {
            path: path.clone(),
            detail,
        };
        let rng = SystemRandom::new();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; KEY_LEN];
                rng.fill(&mut key)
                    .map_err(|_| key_error("no random bytes from the OS".into()))?;
                write_new_key(&path, &key).map_err(|e| key_error(e.to_string()))?;
                key.to_vec()
            }
            Err(e) => return Err(key_error(e.to_string())),
        };
        if bytes.len() != KEY_LEN {
            return Err(key_error(format!(
                "holds {} bytes, not {KEY_LEN} (delete it only if no password waits for delivery)",
                bytes.len()
            )));
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| key_error("not an AES-256 key".into()))?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
            rng,
        })
    }

    /// The sealed form of `password` for record `seq` of resource `id`: a random nonce,
    /// then the ciphertext and tag.
    pub fn seal(&self, seq: u64, id: &str, password: &Password) -> Result<Vec<u8>, PasswordError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| PasswordError::Seal)?;
        let mut data = password.expose().as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated(seq, id)),
                &mut data,
            )
            .map_err(|_| PasswordError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(out)
    }

    /// The password sealed for record `seq` of resource `id`.
    pub fn open(&self, seq: u64, id: &str, sealed: &[u8]) -> Result<Password, PasswordError> {
        if sealed.len() < NONCE_LEN {
            return Err(PasswordError::Open);
        }
        let (nonce, data) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| PasswordError::Open)?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(associated(seq, id)), &mut data)
            .map_err(|_| PasswordError::Open)?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| PasswordError::Open)?;
        Ok(Password::new(text))
    }
}

/// The associated data: the record's sequence number and the resource's id.
fn associated(seq: u64, id: &str) -> Vec<u8> {
    let mut aad = seq.to_be_bytes().to_vec();
    aad.extend_from_slice(id.as_bytes());
    aad
}

/// Writes a new key file readable by its owner only, durably (file and directory synced).
fn write_new_key(path: &Path, key: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(key)?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_password_opens_for_its_own_record_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sealer = Sealer::open_or_create(dir.path()).expect("sealer");
        let sealed = sealer
            .seal(7, "u1", &Password::new("Tr0ub4dor&3".into()))
            .expect("sealed");
        assert!(
            !sealed.windows(11).any(|w| w == b"Tr0ub4dor&3"),
            "sealed in clear"
        );
        assert_eq!(
            sealer.open(7, "u1", &sealed).expect("opens").expose(),
            "Tr0ub4dor&3"
        );
        assert!(
            sealer.open(8, "u1", &sealed).is_err(),
            "opened for another record"
        );
        assert!(
            sealer.open(7, "u2", &sealed).is_err(),
            "opened for another resource"
        );
        let mut damaged = sealed.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(
            sealer.open(7, "u1", &damaged).is_err(),
            "a damaged row opened"
        );
    }

    #[test]
    fn the_key_file_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sealed = Sealer::open_or_create(dir.path())
            .expect("sealer")
            .seal(1, "u", &Password::new("pw".into()))
            .expect("sealed");
        let again = Sealer::open_or_create(dir.path()).expect("sealer again");
        assert_eq!(again.open(1, "u", &sealed).expect("opens").expose(), "pw");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_key_file_of_the_wrong_size_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(KEY_FILE), b"short").expect("written");
        let e = Sealer::open_or_create(dir.path()).expect_err("refused");
        assert!(
            e.to_string().contains("secrets.key") && e.to_string().contains("5 bytes"),
            "{e}"
        );
    }
}
