//! Bearer JWTs issued by Entra ID (`auth.jwt`): the signing keys (a JWKS file, read with
//! the configuration) and the check a presented token must pass.
//!
//! Entra, when an application's Secret Token is left blank, sends its own access token:
//! RS256, `iss` = `https://sts.windows.net/<tenant-id>/`, `aud` = the application
//! (`8adf8e6e-67b2-4cf2-a259-e3dc5476c621` for every non-gallery app). A token is accepted
//! only with a signature from one of the configured keys, exactly that issuer and
//! audience, an `exp` not past and an `nbf` (when present) not ahead, both give or take
//! the leeway. Only RS256 is accepted: the algorithm comes from our configuration, never
//! from the token (`alg: none` and HMAC tokens are refused before any key is looked at).
//!
//! Keys are not fetched over the network: the daemon has no business making outbound
//! calls at request time, and the file is refreshed by whoever rotates it (then SIGHUP).
//! Nothing here logs or returns the token; failures are reduced to a short reason.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The smallest RSA modulus accepted, in bits (Entra's keys have 2048; aws-lc-rs refuses
/// smaller ones for RS256 anyway, this says so when the file is loaded).
const MIN_RSA_BITS: usize = 2048;

/// The RS256 signing keys of a JSON Web Key Set.
#[derive(Clone)]
pub struct Jwks {
    keys: Vec<Key>,
}

#[derive(Clone)]
struct Key {
    kid: Option<String>,
    key: DecodingKey,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.keys
                    .iter()
                    .map(|k| k.kid.as_deref().unwrap_or("(no kid)")),
            )
            .finish()
    }
}

/// One entry of the file's `keys`, with only the members used; others (`x5c`, `x5t`,
/// Entra's `issuer`) are ignored.
#[derive(Deserialize)]
struct RawKey {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl Jwks {
    /// Reads a JWKS document (`{"keys": [...]}`), keeping the RSA keys meant for
    /// signatures. An error names what is wrong (for the config problem).
    pub fn parse(text: &str) -> Result<Jwks, String> {
        let set: RawSet = serde_json::from_str(text)
            .map_err(|e| format!("is not a JSON Web Key Set ({{\"keys\": [...]}}): {e}"))?;
        let mut keys = Vec::new();
        for (i, value) in set.keys.into_iter().enumerate() {
            let raw: RawKey = serde_json::from_value(value)
                .map_err(|e| format!("keys[{i}] is not a JSON Web Key: {e}"))?;
            let name = raw.kid.as_deref().map_or_else(
                || format!("keys[{i}]"),
                |kid| format!("keys[{i}] (kid {kid})"),
            );
            // Other key types and encryption keys may share the set; they are not ours.
            if raw.kty.as_deref() != Some("RSA")
                || raw.use_.as_deref().is_some_and(|u| u != "sig")
                || raw.alg.as_deref().is_some_and(|a| a != "RS256")
            {
                continue;
            }
            let (Some(n), Some(e)) = (raw.n.as_deref(), raw.e.as_deref()) else {
                return Err(format!("{name} is an RSA key without 'n' and 'e'"));
            };
            let bits = base64url_len(n).ok_or_else(|| format!("{name}: 'n' is not base64url"))? * 8;
            if base64url_len(e).is_none() {
                return Err(format!("{name}: 'e' is not base64url"));
            }
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "{name} is a {bits}-bit RSA key; at least {MIN_RSA_BITS} bits are required"
                ));
            }
            let key = DecodingKey::from_rsa_components(n, e)
                .map_err(|err| format!("{name} is not a usable RSA key: {err}"))?;
            keys.push(Key { kid: raw.kid, key });
        }
        if keys.is_empty() {
            return Err("has no RSA signing key (kty RSA, RS256)".to_owned());
        }
        Ok(Jwks { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// How many bytes a base64url text (no padding) decodes to; `None` if it is not base64url.
fn base64url_len(text: &str) -> Option<usize> {
    let text = text.trim_end_matches('=');
    let valid = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    if text.is_empty() || !text.bytes().all(valid) || text.len() % 4 == 1 {
        return None;
    }
    Some(text.len() * 3 / 4)
}

/// Why a JWT was refused, for a debug log line (never the token or its claims).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not three dot-separated base64url parts: not meant for us as a JWT.
    NotAJwt,
    /// The header names another algorithm than RS256 (`none`, HS256, …).
    Algorithm,
    /// The header's `kid` names no configured key.
    UnknownKey,
    Signature,
    Expired,
    NotYetValid,
    Issuer,
    Audience,
    /// A required claim (`exp`, `iss`, `aud`) is missing or malformed, or the token does
    /// not decode.
    Malformed,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NotAJwt => "not a JWT",
            Refusal::Algorithm => "algorithm is not RS256",
            Refusal::UnknownKey => "signed with an unknown key id",
            Refusal::Signature => "signature does not verify",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not yet valid",
            Refusal::Issuer => "wrong issuer",
            Refusal::Audience => "wrong audience",
            Refusal::Malformed => "malformed or missing claims",
        }
    }
}

/// Checks presented tokens against `auth.jwt`.
#[derive(Clone)]
pub struct JwtVerifier {
    name: String,
    read_only: bool,
    keys: std::sync::Arc<Jwks>,
    validation: Validation,
}

impl JwtVerifier {
    pub fn new(cfg: &crate::config::JwtConfig) -> JwtVerifier {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&cfg.issuer]);
        validation.set_audience(&[&cfg.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = cfg.leeway.as_secs();
        JwtVerifier {
            name: cfg.name.clone(),
            read_only: cfg.read_only,
            keys: cfg.keys.clone(),
            validation,
        }
    }

    /// The name tokens that pass are authenticated as.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whether `token` has a JWT's shape: three dot-separated base64url parts, the first
    /// two non-empty. Static secrets (hex, or `openssl rand -base64`) never do.
    pub fn looks_like_jwt(token: &str) -> bool {
        let mut parts = token.split('.');
        let b64 = |p: &str| {
            p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        };
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(c), Some(s), None) => {
                !h.is_empty() && !c.is_empty() && b64(h) && b64(c) && b64(s)
            }
            _ => false,
        }
    }

    /// Accepts `token` or says why not.
    pub fn verify(&self, token: &str) -> Result<(), Refusal> {
        if !Self::looks_like_jwt(token) {
            return Err(Refusal::NotAJwt);
        }
        // `alg` outside the Algorithm enum (`none`) fails to decode: the same refusal.
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Algorithm)?;
        if header.alg != Algorithm::RS256 {
            return Err(Refusal::Algorithm);
        }
        let candidates: Vec<&Key> = match &header.kid {
            Some(kid) => self
                .keys
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                .collect(),
            None => self.keys.keys.iter().collect(),
        };
        if candidates.is_empty() {
            return Err(Refusal::UnknownKey);
        }
        let mut refusal = Refusal::Signature;
        for key in candidates {
            match jsonwebtoken::decode::<serde::de::IgnoredAny>(token, &key.key, &self.validation) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    refusal = refusal_of(e.kind());
                    // A claim problem is the same under every key; only a bad signature
                    // is worth trying the next key for.
                    if refusal != Refusal::Signature {
                        return Err(refusal);
                    }
                }
            }
        }
        Err(refusal)
    }
}

fn refusal_of(kind: &jsonwebtoken::errors::ErrorKind) -> Refusal {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature | K::InvalidRsaKey(_) | K::InvalidKeyFormat | K::Provider(_) => {
            Refusal::Signature
        }
        K::ExpiredSignature => Refusal::Expired,
        K::ImmatureSignature => Refusal::NotYetValid,
        K::InvalidIssuer => Refusal::Issuer,
        K::InvalidAudience => Refusal::Audience,
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => Refusal::Algorithm,
        _ => Refusal::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, OnceLock};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    use super::*;

    const ISSUER: &str = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/";
    const AUDIENCE: &str = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621";

    /// A fresh 2048-bit RSA key from the `openssl` command, as PKCS#1 DER.
    fn openssl_key() -> EncodingKey {
        let dir = tempfile::tempdir().expect("tempdir");
        let pem = dir.path().join("key.pem");
        let der = dir.path().join("key.der");
        let run = |args: &[&std::ffi::OsStr]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "genrsa".as_ref(),
            "-out".as_ref(),
            pem.as_os_str(),
            "2048".as_ref(),
        ]);
        run(&[
            "rsa".as_ref(),
            "-in".as_ref(),
            pem.as_os_str(),
            "-traditional".as_ref(),
            "-outform".as_ref(),
            "DER".as_ref(),
            "-out".as_ref(),
            der.as_os_str(),
        ]);
        EncodingKey::from_rsa_der(&std::fs::read(&der).expect("read key"))
    }

    /// The configured key and a stranger's, made once for all tests.
    fn keys() -> &'static (EncodingKey, EncodingKey) {
        static KEYS: OnceLock<(EncodingKey, EncodingKey)> = OnceLock::new();
        KEYS.get_or_init(|| (openssl_key(), openssl_key()))
    }

    fn jwks_of(key: &EncodingKey, kid: &str) -> String {
        let mut jwk = Jwk::from_encoding_key(key, Algorithm::RS256).expect("jwk");
        jwk.common.key_id = Some(kid.to_owned());
        serde_json::to_string(&JwkSet { keys: vec![jwk] }).expect("json")
    }

    fn verifier() -> JwtVerifier {
        let keys = Jwks::parse(&jwks_of(&keys().0, "k1")).expect("jwks");
        JwtVerifier::new(&crate::config::JwtConfig {
            name: "entra-jwt".to_owned(),
            issuer: ISSUER.to_owned(),
            audience: AUDIENCE.to_owned(),
            leeway: Duration::from_secs(60),
            jwks_file: "/etc/scim-bridge/jwks.json".into(),
            keys: Arc::new(keys),
            read_only: false,
        })
    }

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }

    /// Entra's claims, valid for the next hour, with `changes` merged in (`null` removes).
    fn claims(changes: Value) -> Value {
        let mut claims = json!({
            "aud": AUDIENCE,
            "iss": ISSUER,
            "iat": now() - 10,
            "nbf": now() - 10,
            "exp": now() + 3600,
            "appid": "00000014-0000-0000-c000-000000000000",
            "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        });
        if let (Some(c), Some(changes)) = (claims.as_object_mut(), changes.as_object()) {
            for (k, v) in changes {
                if v.is_null() {
                    c.remove(k);
                } else {
                    c.insert(k.clone(), v.clone());
                }
            }
        }
        claims
    }

    fn signed(claims: &Value, key: &EncodingKey, kid: Option<&str>) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).expect("sign")
    }

    fn token(changes: Value) -> String {
        signed(&claims(changes), &keys().0, Some("k1"))
    }

    #[test]
    fn a_token_signed_by_a_configured_key_with_the_right_claims_is_accepted() {
        let v = verifier();
        assert_eq!(v.verify(&token(json!({}))), Ok(()));
        // Without a kid every key is tried; Entra always sends one.
        assert_eq!(
            v.verify(&signed(&claims(json!({})), &keys().0, None)),
            Ok(())
        );
        // An audience list that names us; no nbf at all.
        assert_eq!(
            v.verify(&token(
                json!({"aud": ["api://other", AUDIENCE], "nbf": null})
            )),
            Ok(())
        );
    }

    #[test]
    fn validity_is_checked_with_the_leeway() {
        let v = verifier();
        assert_eq!(v.verify(&token(json!({"exp": now() - 30}))), Ok(()));
        assert_eq!(
            v.verify(&token(json!({"exp": now() - 120}))),
            Err(Refusal::Expired)
        );
        assert_eq!(v.verify(&token(json!({"nbf": now() + 30}))), Ok(()));
        assert_eq!(
            v.verify(&token(json!({"nbf": now() + 300}))),
            Err(Refusal::NotYetValid)
        );
        assert_eq!(
            v.verify(&token(json!({"exp": null}))),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn issuer_and_audience_must_match_exactly() {
        let v = verifier();
        for iss in [
            "https://sts.windows.net/00000000-0000-0000-0000-000000000000/",
            "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47",
            "HTTPS://STS.WINDOWS.NET/72f988bf-86f1-41af-91ab-2d7cd011db47/",
        ] {
            assert_eq!(
                v.verify(&token(json!({ "iss": iss }))),
                Err(Refusal::Issuer),
                "{iss}"
            );
        }
        assert_eq!(
            v.verify(&token(json!({"iss": null}))),
            Err(Refusal::Malformed)
        );
        for aud in [
            json!("api://other"),
            json!(["api://other"]),
            json!(AUDIENCE.to_uppercase()),
        ] {
            assert_eq!(
                v.verify(&token(json!({ "aud": aud }))),
                Err(Refusal::Audience),
                "{aud}"
            );
        }
        assert_eq!(
            v.verify(&token(json!({"aud": null}))),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn a_token_signed_by_another_key_is_refused() {
        let v = verifier();
        let stranger = &keys().1;
        assert_eq!(
            v.verify(&signed(&claims(json!({})), stranger, Some("k1"))),
            Err(Refusal::Signature)
        );
        assert_eq!(
            v.verify(&signed(&claims(json!({})), stranger, None)),
            Err(Refusal::Signature)
        );
        assert_eq!(
            v.verify(&signed(&claims(json!({})), stranger, Some("k2"))),
            Err(Refusal::UnknownKey)
        );
        // A valid token with one byte of its claims changed.
        let good = token(json!({}));
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let tampered = token(json!({"appid": "00000014-0000-0000-c000-000000000001"}));
        parts[1] = tampered.split('.').nth(1).unwrap_or_default().to_owned();
        assert_eq!(v.verify(&parts.join(".")), Err(Refusal::Signature));
    }

    /// base64url without padding, for hand-made headers.
    fn b64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            }
        }
        out
    }

    #[test]
    fn only_rs256_is_accepted_whatever_the_token_says() {
        let v = verifier();
        let body = b64(claims(json!({})).to_string().as_bytes());
        // alg none, with and without a signature part.
        let none = b64(br#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(
            v.verify(&format!("{none}.{body}.")),
            Err(Refusal::Algorithm)
        );
        assert_eq!(
            v.verify(&format!("{none}.{body}.c2ln")),
            Err(Refusal::Algorithm)
        );
        // HS256 keyed with the public modulus (the classic key-confusion forgery).
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(json!({})),
            &EncodingKey::from_secret(jwks_of(&keys().0, "k1").as_bytes()),
        )
        .expect("sign");
        assert_eq!(v.verify(&hs), Err(Refusal::Algorithm));
        // RS512 with the right key is still not RS256.
        let rs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::RS512),
            &claims(json!({})),
            &keys().0,
        )
        .expect("sign");
        assert_eq!(v.verify(&rs512), Err(Refusal::Algorithm));
    }

    #[test]
    fn only_three_base64url_parts_look_like_a_jwt() {
        for yes in ["a.b.c", "eyJh.eyJi.", "A-_z.0-9_.sig"] {
            assert!(JwtVerifier::looks_like_jwt(yes), "{yes}");
        }
        for no in [
            "",
            "0123456789abcdef0123456789abcdef",
            "a.b",
            "a.b.c.d",
            ".b.c",
            "a..c",
            "a+b.c.d",
            "a.b/c.d",
            "a.b.c=",
        ] {
            assert!(!JwtVerifier::looks_like_jwt(no), "{no}");
        }
    }

    #[test]
    fn a_jwks_keeps_the_rsa_signing_keys_only() {
        let ours: Value = serde_json::from_str(&jwks_of(&keys().0, "k1")).expect("json");
        let text = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "ec"},
            {"kty": "RSA", "use": "enc", "kid": "enc", "n": ours["keys"][0]["n"], "e": "AQAB"},
            {"kty": "RSA", "alg": "RS512", "kid": "rs512", "n": ours["keys"][0]["n"], "e": "AQAB"},
            ours["keys"][0],
        ]})
        .to_string();
        let jwks = Jwks::parse(&text).expect("jwks");
        assert_eq!(format!("{jwks:?}"), r#"["k1"]"#);
        assert_eq!(jwks.len(), 1);
    }
}
