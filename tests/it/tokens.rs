//! Credentials beyond one secret per token: tokens configured by their SHA-256 hash (as
//! `scim-bridge token new` prints them), read-only tokens, and bearer JWTs issued by Entra
//! ID, verified against a JWKS file. The JWTs are made here with the `openssl` command,
//! independently of the daemon's own JWT library.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::harness::{Daemon, Resp, SCIM_JSON, send};

const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const ENTRA_TOKEN_YAML: &str =
    "auth:\n  tokens:\n    - name: entra\n      secret:\n        env: SCIM_BRIDGE_TOKEN\n";

/// Sends `method path` with `token` as the bearer, and `body` as SCIM JSON if given.
async fn with_token(
    d: &Daemon,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Resp {
    let mut rb = d.request_unauthenticated(method, path).bearer_auth(token);
    if let Some(body) = body {
        rb = rb.header(CONTENT_TYPE, SCIM_JSON).body(body.to_string());
    }
    send(rb).await
}

/// `scim-bridge <args>`: exit code and stdout.
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args(args)
        .output()
        .expect("run scim-bridge");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `sha256:<hex>` of `text`, computed by the `openssl` command (not by the daemon's code).
fn openssl_sha256(text: &str) -> String {
    let out = openssl_with_input(&["dgst", "-sha256", "-r"], text.as_bytes());
    let hex = String::from_utf8_lossy(&out)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(hex.len(), 64, "openssl dgst printed {hex:?}");
    format!("sha256:{hex}")
}

// --- hashed tokens ----------------------------------------------------------------------

const HASHED_SECRET: &str = "it-hashed-0123456789abcdefghijklmnopqrstuvwxyz";

#[tokio::test(flavor = "multi_thread")]
async fn a_token_configured_by_its_hash_authenticates_and_a_wrong_token_is_401() {
    let hash = openssl_sha256(HASHED_SECRET);
    let d = Daemon::start_with(&format!(
        "{ENTRA_TOKEN_YAML}    - name: hashed\n      hash: {hash}\n"
    ));
    assert!(!d.config_text().contains(HASHED_SECRET));

    let r = with_token(&d, HASHED_SECRET, Method::GET, "/Users", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = with_token(
        &d,
        HASHED_SECRET,
        Method::POST,
        "/Users",
        Some(&json!({"userName": "made-with-a-hashed-token"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // The env token still works next to it.
    assert_eq!(d.get("/Users").await.status, 200);

    // Neither a near miss nor the hash itself is a credential.
    for wrong in [
        &HASHED_SECRET[..HASHED_SECRET.len() - 1],
        "it-hashed-0123456789abcdefghijklmnopqrstuvwxyZ",
        hash.as_str(),
        &hash["sha256:".len()..],
    ] {
        let r = with_token(&d, wrong, Method::GET, "/Users", None).await;
        assert_eq!(r.status, 401, "{wrong}: {}", r.text);
        assert_eq!(r.body["schemas"], json!([ERROR_URN]), "{}", r.text);
    }
}

/// The token and the YAML entry in `token new`'s output.
fn parse_token_new(out: &str) -> (String, String) {
    let token = out
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 64 && l.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no 64-hex-digit token line in:\n{out}"))
        .to_owned();
    let start = out
        .find("    - name: ")
        .unwrap_or_else(|| panic!("no '- name:' entry in:\n{out}"));
    let entry: String = out[start..]
        .lines()
        .take(2)
        .map(|l| format!("{l}\n"))
        .collect();
    (token, entry)
}

#[tokio::test(flavor = "multi_thread")]
async fn token_new_prints_a_token_once_and_the_entry_that_configures_it() {
    let (code, out, err) = cli(&["token", "new", "--name", "okta"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("not stored anywhere"), "{out}");
    let (token, entry) = parse_token_new(&out);
    assert_eq!(
        out.matches(&token).count(),
        1,
        "the token is printed once:\n{out}"
    );
    assert_eq!(
        entry,
        format!("    - name: okta\n      hash: {}\n", openssl_sha256(&token))
    );

    // Pasted under auth.tokens as printed, the entry authenticates the token.
    let d = Daemon::start_with(&format!("{ENTRA_TOKEN_YAML}{entry}"));
    assert!(!d.config_text().contains(&token));
    let r = with_token(&d, &token, Method::GET, "/Users", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = with_token(&d, &token[..63], Method::GET, "/Users", None).await;
    assert_eq!(r.status, 401, "{}", r.text);

    // Every run makes a new token.
    let (_, again, _) = cli(&["token", "new", "--name", "okta"]);
    assert_ne!(parse_token_new(&again).0, token);
}

#[test]
fn token_new_refuses_a_name_the_config_would_refuse() {
    let (code, out, err) = cli(&["token", "new", "--name", "my token"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty(), "nothing printed on stdout: {out}");
    assert!(
        err.contains("'my token' is not a valid token name"),
        "{err}"
    );
}

// --- read-only tokens -------------------------------------------------------------------

const AUDITOR_SECRET: &str = "it-auditor-0123456789abcdefghijklmnopqrstuvwx";

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_token_reads_and_searches_but_every_write_is_403_and_changes_nothing() {
    let mut d = Daemon::start_with(&format!(
        "{ENTRA_TOKEN_YAML}    - name: auditor\n      read_only: true\n      secret:\n        value: {AUDITOR_SECRET}\n"
    ));
    let r = d
        .post(
            "/Users",
            &json!({"userName": "kept", "active": true}).to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_owned();
    let before = d.get(&format!("/Users/{id}")).await;

    let read = |method: Method, path: &str, body: Option<Value>| {
        let d = &d;
        let path = path.to_owned();
        async move { with_token(d, AUDITOR_SECRET, method, &path, body.as_ref()).await }
    };
    let search = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": "userName eq \"kept\"",
    });
    for (method, path, body) in [
        (Method::GET, "/Users".to_owned(), None),
        (Method::GET, format!("/Users/{id}"), None),
        (Method::GET, "/Groups".to_owned(), None),
        (
            Method::POST,
            "/Users/.search".to_owned(),
            Some(search.clone()),
        ),
        (Method::POST, "/.search".to_owned(), Some(search.clone())),
    ] {
        let r = read(method.clone(), &path, body).await;
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text);
    }
    let r = read(Method::POST, "/Users/.search", Some(search)).await;
    assert_eq!(r.body["totalResults"], 1, "{}", r.text);

    let user = json!({"userName": "renamed", "active": false});
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": false}],
    });
    for (method, path, body) in [
        (
            Method::POST,
            "/Users".to_owned(),
            Some(json!({"userName": "new"})),
        ),
        (
            Method::POST,
            "/Groups".to_owned(),
            Some(json!({"displayName": "g"})),
        ),
        (Method::PUT, format!("/Users/{id}"), Some(user)),
        (Method::PATCH, format!("/Users/{id}"), Some(patch)),
        (Method::DELETE, format!("/Users/{id}"), None),
    ] {
        let r = read(method.clone(), &path, body).await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
        assert_eq!(r.media_type().as_deref(), Some(SCIM_JSON));
        assert_eq!(r.body["schemas"], json!([ERROR_URN]), "{}", r.text);
        assert_eq!(r.body["status"], "403", "{}", r.text);
        assert!(r.body.get("scimType").is_none(), "{}", r.text);
        assert_eq!(
            r.body["detail"],
            format!(
                "the token 'auditor' is read-only: it may read (GET, POST …/.search) but not {method}"
            ),
            "{}",
            r.text
        );
    }

    // Nothing changed: the user, the lists, and the journal holds only entra's create.
    let after = d.get(&format!("/Users/{id}")).await;
    assert_eq!(after.body, before.body);
    assert_eq!(after.header("etag"), before.header("etag"));
    assert_eq!(d.get("/Users").await.body["totalResults"], 1);
    assert_eq!(d.get("/Groups").await.body["totalResults"], 0);
    d.stop();
    let state = d.state_dir.to_string_lossy().into_owned();
    let (code, export, err) = cli(&["journal", "export", "--state-dir", &state]);
    assert_eq!(code, 0, "{err}");
    // A header line, then one line per record.
    let records = export.lines().filter(|l| l.contains("\"record\"")).count();
    assert_eq!(records, 1, "{export}");
    assert!(!export.contains("auditor"), "{export}");
}

// --- Entra JWTs -------------------------------------------------------------------------

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const AUDIENCE: &str = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621";

fn issuer() -> String {
    format!("https://sts.windows.net/{TENANT}/")
}

/// Runs `openssl args` with `input` on stdin; its stdout.
fn openssl_with_input(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("the tokens tests need the openssl command: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write to openssl");
    let out = child.wait_with_output().expect("openssl output");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// base64url without padding (RFC 7515 §2).
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// An RSA key pair in a PEM file, made by `openssl genrsa`.
struct RsaKey {
    pem: PathBuf,
    kid: String,
}

impl RsaKey {
    fn generate(dir: &Path, kid: &str) -> RsaKey {
        let pem = dir.join(format!("{kid}.pem"));
        let status = Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&pem)
            .arg("2048")
            .stderr(Stdio::null())
            .status()
            .expect("run openssl genrsa");
        assert!(status.success(), "openssl genrsa failed");
        RsaKey {
            pem,
            kid: kid.to_owned(),
        }
    }

    /// The public key as a JWK, shaped like Entra's (`kty`, `use`, `kid`, `n`, `e`).
    fn jwk(&self) -> Value {
        let out = Command::new("openssl")
            .args(["rsa", "-noout", "-modulus", "-in"])
            .arg(&self.pem)
            .output()
            .expect("run openssl rsa");
        let text = String::from_utf8_lossy(&out.stdout);
        let hex = text.trim().trim_start_matches("Modulus=");
        let modulus: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex modulus"))
            .collect();
        assert_eq!(modulus.len(), 256, "a 2048-bit modulus");
        json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": b64(&modulus),
            // openssl genrsa's default public exponent, 65537.
            "e": "AQAB",
        })
    }

    /// `header.claims.signature`, RS256 over the first two parts by `openssl dgst`.
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let message = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let pem = self.pem.to_string_lossy().into_owned();
        let signature = openssl_with_input(&["dgst", "-sha256", "-sign", &pem], message.as_bytes());
        format!("{message}.{}", b64(&signature))
    }

    /// A token with this key's kid and `claims`.
    fn token(&self, claims: &Value) -> String {
        self.sign(
            &json!({"typ": "JWT", "alg": "RS256", "kid": self.kid, "x5t": self.kid}),
            claims,
        )
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Claims as Entra sends them for a non-gallery app, valid from a minute ago for an hour,
/// with `changes` applied (a `null` removes the claim).
fn claims(changes: Value) -> Value {
    let mut claims = json!({
        "aud": AUDIENCE,
        "iss": issuer(),
        "iat": now() - 60,
        "nbf": now() - 60,
        "exp": now() + 3600,
        "appid": "00000014-0000-0000-c000-000000000000",
        "appidacr": "2",
        "idp": issuer(),
        "oid": "a53e3b53-1b50-4b5f-9a4c-4c5f2ad6e9f1",
        "tid": TENANT,
        "ver": "1.0",
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

/// A daemon accepting JWTs signed by `key` (JWKS in `dir`), besides the env token.
fn jwt_daemon(dir: &Path, key: &RsaKey) -> (Daemon, PathBuf) {
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [key.jwk()]}).to_string()).expect("write jwks");
    let d = Daemon::start_with(&format!(
        "{ENTRA_TOKEN_YAML}  jwt:\n    issuer: {}\n    audience: {AUDIENCE}\n    jwks_file: {}\n    name: entra-jwt\n    leeway: 60s\n",
        issuer(),
        jwks.display()
    ));
    (d, jwks)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entra_jwt_signed_by_a_key_of_the_jwks_file_authenticates_as_the_configured_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = RsaKey::generate(dir.path(), "key-1");
    let (mut d, _) = jwt_daemon(dir.path(), &key);
    let jwt = key.token(&claims(json!({})));

    let r = with_token(&d, &jwt, Method::GET, "/Users", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = with_token(
        &d,
        &jwt,
        Method::POST,
        "/Users",
        Some(&json!({"userName": "made-with-a-jwt"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // The static token keeps working next to JWTs.
    assert_eq!(d.get("/Users").await.body["totalResults"], 1);

    // The journal names the change's actor by the configured name, never the token.
    d.stop();
    let state = d.state_dir.to_string_lossy().into_owned();
    let (code, export, err) = cli(&["journal", "export", "--state-dir", &state]);
    assert_eq!(code, 0, "{err}");
    assert!(export.contains("\"entra-jwt\""), "{export}");
    assert!(!export.contains(&jwt), "{export}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jwts_that_are_expired_premature_foreign_or_unsigned_are_401() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = RsaKey::generate(dir.path(), "key-1");
    let stranger = RsaKey::generate(dir.path(), "stranger");
    let (d, _) = jwt_daemon(dir.path(), &key);
    let good = key.token(&claims(json!({})));
    assert_eq!(
        with_token(&d, &good, Method::GET, "/Users", None)
            .await
            .status,
        200
    );

    let unsigned = |header: Value| {
        format!(
            "{}.{}.",
            b64(header.to_string().as_bytes()),
            b64(claims(json!({})).to_string().as_bytes())
        )
    };
    // The stranger's key, under the configured key's kid.
    let wrong_key = RsaKey {
        pem: stranger.pem.clone(),
        kid: key.kid.clone(),
    };
    let cases = [
        (
            "expired beyond the leeway",
            key.token(&claims(json!({"exp": now() - 120}))),
        ),
        (
            "not valid for 5 minutes yet",
            key.token(&claims(json!({"nbf": now() + 300}))),
        ),
        (
            "another tenant's issuer",
            key.token(&claims(
                json!({"iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/"}),
            )),
        ),
        (
            "the issuer without its final slash",
            key.token(&claims(
                json!({"iss": format!("https://sts.windows.net/{TENANT}")}),
            )),
        ),
        (
            "another application's audience",
            key.token(&claims(
                json!({"aud": "00000003-0000-0000-c000-000000000000"}),
            )),
        ),
        ("no audience", key.token(&claims(json!({"aud": null})))),
        ("no expiry", key.token(&claims(json!({"exp": null})))),
        ("signed by another key", wrong_key.token(&claims(json!({})))),
        ("an unknown kid", stranger.token(&claims(json!({})))),
        ("alg none", unsigned(json!({"typ": "JWT", "alg": "none"}))),
        (
            "alg none with the right kid",
            unsigned(json!({"typ": "JWT", "alg": "none", "kid": key.kid})),
        ),
        (
            "RS512 by the right key",
            key.sign(
                &json!({"typ": "JWT", "alg": "RS512", "kid": key.kid}),
                &claims(json!({})),
            ),
        ),
        (
            "a valid token's signature on other claims",
            format!(
                "{}.{}",
                &key.token(&claims(json!({"oid": "someone-else"})))
                    .rsplit_once('.')
                    .map(|(m, _)| m.to_owned())
                    .unwrap_or_default(),
                good.rsplit_once('.').map(|(_, s)| s).unwrap_or_default()
            ),
        ),
    ];
    for (what, token) in cases {
        let r = with_token(&d, &token, Method::GET, "/Users", None).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text);
        assert_eq!(r.body["schemas"], json!([ERROR_URN]), "{what}: {}", r.text);
        assert_eq!(r.body["detail"], "invalid bearer token", "{what}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_jwks_file_is_read_again_on_reload_and_a_broken_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = RsaKey::generate(dir.path(), "old");
    let new = RsaKey::generate(dir.path(), "new");
    let (d, jwks) = jwt_daemon(dir.path(), &old);
    let old_jwt = old.token(&claims(json!({})));
    let new_jwt = new.token(&claims(json!({})));
    assert_eq!(
        with_token(&d, &old_jwt, Method::GET, "/Users", None)
            .await
            .status,
        200
    );
    assert_eq!(
        with_token(&d, &new_jwt, Method::GET, "/Users", None)
            .await
            .status,
        401
    );

    std::fs::write(&jwks, json!({"keys": [new.jwk()]}).to_string()).expect("rotate jwks");
    d.signal("HUP");
    wait_for(&d, &new_jwt, 200, "the new key after reload").await;
    assert_eq!(
        with_token(&d, &old_jwt, Method::GET, "/Users", None)
            .await
            .status,
        401
    );

    // A broken file fails the reload; the keys already loaded keep serving.
    std::fs::write(&jwks, "{\"keys\": [").expect("break jwks");
    d.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        with_token(&d, &new_jwt, Method::GET, "/Users", None)
            .await
            .status,
        200
    );
}

/// Waits (bounded) until `GET /Users` with `token` answers `want`.
async fn wait_for(d: &Daemon, token: &str, want: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = with_token(d, token, Method::GET, "/Users", None)
            .await
            .status;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {got}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_missing_jwks_file_stops_check_config_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bridge.yaml");
    let jwks = dir.path().join("missing-jwks.json");
    std::fs::write(
        &config,
        format!(
            "auth:\n  tokens:\n    - name: entra\n      hash: {}\n  jwt:\n    issuer: {}\n    audience: {AUDIENCE}\n    jwks_file: {}\n",
            openssl_sha256(HASHED_SECRET),
            issuer(),
            jwks.display()
        ),
    )
    .expect("write config");
    let (code, _, err) = cli(&["check-config", "--config", &config.to_string_lossy()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            ":8:16: auth.jwt.jwks_file: JWKS file {} cannot be read: no such file or directory",
            jwks.display()
        )),
        "{err}"
    );
}
