//! Test harness shared by every integration-test module: runs the REAL `scim-bridge`
//! binary on a loopback port with a throw-away config file and state directory, and talks
//! plain HTTP to it.
//!
//! ```ignore
//! let d = Daemon::start();
//! let r = d.post("/Users", r#"{"userName":"a"}"#).await;
//! assert_eq!(r.status, 201, "{r:?}");
//! ```
//!
//! Tests use a multi-threaded tokio runtime (`#[tokio::test(flavor = "multi_thread")]`).
//! `Daemon::start` itself is synchronous (it blocks until the daemon prints its address),
//! so it can be called from async tests and from plain ones alike.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use reqwest::{Method, RequestBuilder};
use serde_json::Value;

/// The bearer secret handed to the daemon through `SCIM_BRIDGE_TOKEN` (32+ characters).
pub const TOKEN: &str = "it-entra-replay-0123456789abcdefghijklmnopqrstuv";
/// The SCIM media type (RFC 7644 §8.1).
pub const SCIM_JSON: &str = "application/scim+json";
/// How long the daemon may take to print `listening on …`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a graceful SIGTERM may take before the harness kills the daemon.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-request timeout, so a hung daemon fails the test instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The config file every daemon starts from. `Daemon::start_with` merges extra YAML in.
const BASE_CONFIG: &str = "\
server:
  listen: 127.0.0.1:0
  base_path: /scim/v2
state:
  dir: ./state
auth:
  tokens:
    - name: entra
      secret:
        env: SCIM_BRIDGE_TOKEN
log:
  level: warn
";

/// A running daemon on `127.0.0.1:<ephemeral port>`. Dropping it kills the process and
/// removes its temporary directory (config and state).
pub struct Daemon {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT/scim/v2`, no trailing slash.
    pub base_url: String,
    pub token: String,
    pub state_dir: PathBuf,
    pub config_path: PathBuf,
    client: reqwest::Client,
    child: Option<Child>,
    /// A command the daemon is started through (e.g. `prlimit --fsize=…`), which must
    /// exec the daemon so the pid stays the daemon's.
    wrapper: Vec<String>,
    // Declared last so it is removed after the child is gone.
    dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts a daemon with the base config.
    pub fn start() -> Daemon {
        Daemon::start_with("")
    }

    /// Starts a daemon whose config is the base config merged with `extra_yaml`.
    ///
    /// The merge is two levels deep and line based: a top-level section of `extra_yaml`
    /// that the base lacks is appended; a key directly under an existing section (two
    /// spaces of indent) replaces the base's key of the same name together with its nested
    /// lines, or is added to that section. E.g. `"server:\n  max_body_bytes: 4096\n"`.
    pub fn start_with(extra_yaml: &str) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("scim-bridge-it-")
            .tempdir()
            .expect("create a temporary directory for the daemon");
        let config_path = dir.path().join("scim-bridge.yaml");
        let config = merge_yaml(BASE_CONFIG, extra_yaml);
        std::fs::write(&config_path, &config).expect("write the daemon config file");
        let state_dir = dir.path().join("state");
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("build the HTTP client");
        let mut daemon = Daemon {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            base_url: String::new(),
            token: TOKEN.to_owned(),
            state_dir,
            config_path,
            client,
            child: None,
            wrapper: Vec::new(),
            dir,
        };
        daemon.launch();
        daemon
    }

    /// Starts the daemon through `wrapper` (a command that execs its arguments).
    pub fn start_wrapped(extra_yaml: &str, wrapper: &[&str]) -> Daemon {
        let mut d = Daemon::start_with(extra_yaml);
        d.stop();
        d.wrapper = wrapper.iter().map(|s| s.to_string()).collect();
        d.launch();
        d
    }

    /// The daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the daemon with SIGKILL: no shutdown code runs (a crash).
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again after `stop` or `kill_hard`.
    pub fn start_again(&mut self) {
        self.launch();
    }

    /// The temporary directory holding the config file and the state directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file the daemon was started with.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config_path).expect("read back the config file")
    }

    /// Stops the daemon (SIGTERM, then a kill if it does not exit in time) and starts it
    /// again on the same config and state directory. The port may change.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Sends `signal` (e.g. `"HUP"`, `"TERM"`) to the daemon.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("the daemon is running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Waits up to `timeout` for the daemon to exit by itself; its exit status (`None`:
    /// still running after `timeout`, then it is killed).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the daemon gracefully: SIGTERM, wait up to 10 s, then kill.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child, SHUTDOWN_TIMEOUT);
        }
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "launch() with a daemon still running");
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_scim-bridge"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_scim-bridge")),
        };
        let mut child = command
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--state-dir")
            .arg(&self.state_dir)
            .env("SCIM_BRIDGE_TOKEN", &self.token)
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("could not spawn {}: {e}", env!("CARGO_BIN_EXE_scim-bridge"))
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let rx = drain_lines(stdout);

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut seen: Vec<String> = Vec::new();
        let addr = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(remaining) {
                Ok(line) => {
                    let found = parse_listening(&line);
                    seen.push(line);
                    if let Some(addr) = found {
                        break addr;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "scim-bridge did not print `listening on 127.0.0.1:PORT` within {:?}; \
                         stdout so far:\n{}\nconfig:\n{}",
                        STARTUP_TIMEOUT,
                        seen.join("\n"),
                        self.config_text()
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = child.wait();
                    panic!(
                        "scim-bridge exited before printing `listening on 127.0.0.1:PORT` \
                         (exit: {status:?}); stdout:\n{}\nconfig:\n{}",
                        seen.join("\n"),
                        self.config_text()
                    );
                }
            }
        };
        // Dropping the receiver is fine: the reader thread keeps draining the pipe.
        drop(rx);
        self.addr = addr;
        self.base_url = format!("http://{addr}/scim/v2");
        self.child = Some(child);
    }

    /// `base_url + path` for a relative path (`/Users?…`); absolute URLs pass through.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{}", self.base_url, path)
        }
    }

    /// A request with `Authorization: Bearer <token>` and `Accept: application/scim+json`
    /// and nothing else; add headers/body and pass it to [`send`].
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_unauthenticated(method, path)
            .bearer_auth(&self.token)
    }

    /// Like [`Daemon::request`] but without any `Authorization` header.
    pub fn request_unauthenticated(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header(ACCEPT, SCIM_JSON)
    }

    pub async fn get(&self, path: &str) -> Resp {
        send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        send(self.request(Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, json_text: &str) -> Resp {
        self.with_body(Method::POST, path, json_text).await
    }

    pub async fn put(&self, path: &str, json_text: &str) -> Resp {
        self.with_body(Method::PUT, path, json_text).await
    }

    pub async fn patch(&self, path: &str, json_text: &str) -> Resp {
        self.with_body(Method::PATCH, path, json_text).await
    }

    /// `scim-bridge reconcile --dry-run` on this daemon's configuration (run in its
    /// directory): asserts it exits 0 (no drift) and returns its report.
    pub fn reconcile_in_sync(&self) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
            .current_dir(self.dir())
            .args(["reconcile", "--dry-run", "--config"])
            .arg(&self.config_path)
            .output()
            .expect("run reconcile");
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "reconcile found drift or failed: {report}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        report
    }

    async fn with_body(&self, method: Method, path: &str, json_text: &str) -> Resp {
        send(
            self.request(method, path)
                .header(CONTENT_TYPE, SCIM_JSON)
                .body(json_text.to_owned()),
        )
        .await
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Stops a child process: SIGTERM, wait up to `timeout`, then kill. Shared by every
/// server the tests start (the daemon, slapd).
pub use scim_bridge::slapd::terminate;

/// One HTTP response, fully read.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body parsed as JSON; `Null` when the body is empty (or not JSON: see `text`).
    pub body: Value,
    pub text: String,
}

impl Resp {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The `Content-Type` media type, lower-cased, without parameters.
    pub fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
    }
}

/// Sends a request built with [`Daemon::request`] and reads the whole response.
/// A free function so that spawned tasks can use it without borrowing the `Daemon`.
pub async fn send(rb: RequestBuilder) -> Resp {
    let resp = rb
        .send()
        .await
        .unwrap_or_else(|e| panic!("HTTP request to the daemon failed: {e:?}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("reading the response body failed: {e:?}"));
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    Resp {
        status,
        headers,
        body,
        text,
    }
}

/// `scim-bridge check-config --online` on a config made of a token and
/// `target_and_mapping`, written into `dir`: its exit code and everything it printed.
pub fn check_config_online(dir: &Path, target_and_mapping: &str) -> (Option<i32>, String) {
    check_config(dir, target_and_mapping, true)
}

/// `scim-bridge check-config` (with `--online` when `online`) on a config made of a token
/// and `target_and_mapping`, written into `dir`: its exit code and everything it printed.
pub fn check_config(dir: &Path, target_and_mapping: &str, online: bool) -> (Option<i32>, String) {
    let path = dir.join("check-online.yaml");
    std::fs::write(
        &path,
        format!(
            "auth:\n  tokens:\n    - name: entra\n      secret:\n        value: 0123456789abcdef0123\n{target_and_mapping}"
        ),
    )
    .expect("write the config to check");
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .arg("check-config")
        .args(online.then_some("--online"))
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run check-config");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The text of `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// Replaces every `{{KEY}}` of `text` by its value; panics if a placeholder is left over.
pub fn fill(text: &str, subs: &[(&str, &str)]) -> String {
    let mut out = text.to_owned();
    for (key, value) in subs {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    if let Some(start) = out.find("{{") {
        let end = out[start..].find("}}").map_or(out.len(), |e| start + e + 2);
        panic!("unsubstituted placeholder {} in:\n{out}", &out[start..end]);
    }
    out
}

/// Reads `stdout` line by line on a background thread for the life of the process,
/// forwarding each line to the returned channel while someone listens and echoing it to
/// the test's captured output (shown when a test fails).
fn drain_lines(stdout: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
                    println!("[scim-bridge] {line}");
                    let _ = tx.send(line);
                }
            }
        }
    });
    rx
}

/// Finds `listening on 127.0.0.1:PORT` in a log line (ANSI colours tolerated).
fn parse_listening(line: &str) -> Option<SocketAddr> {
    let plain = strip_ansi(line);
    let rest = &plain[plain.find("listening on ")? + "listening on ".len()..];
    let rest = rest.trim_start_matches("http://");
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.parse().ok()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One top-level YAML section: its name, its header line, and its direct children as
/// (key, text of the key line plus its nested lines).
struct Section {
    name: String,
    header: String,
    children: Vec<(String, String)>,
}

fn parse_sections(yaml: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for line in yaml.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 0 {
            let name = line.split(':').next().unwrap_or_default().trim().to_owned();
            sections.push(Section {
                name,
                header: line.to_owned(),
                children: Vec::new(),
            });
            continue;
        }
        let section = sections
            .last_mut()
            .unwrap_or_else(|| panic!("indented YAML line before any section: {line:?}"));
        let body = line.trim_start();
        if indent == 2 && !body.starts_with('-') {
            let key = body.split(':').next().unwrap_or_default().trim().to_owned();
            section.children.push((key, format!("{line}\n")));
        } else if let Some(last) = section.children.last_mut() {
            last.1.push_str(line);
            last.1.push('\n');
        } else {
            let key = format!("-{}", section.children.len());
            section.children.push((key, format!("{line}\n")));
        }
    }
    sections
}

/// Merges `extra` into `base` (see [`Daemon::start_with`]).
fn merge_yaml(base: &str, extra: &str) -> String {
    let mut sections = parse_sections(base);
    for add in parse_sections(extra) {
        match sections.iter_mut().find(|s| s.name == add.name) {
            Some(existing) if !add.children.is_empty() => {
                for (key, text) in add.children {
                    match existing.children.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = text,
                        None => existing.children.push((key, text)),
                    }
                }
            }
            Some(existing) => *existing = add,
            None => sections.push(add),
        }
    }
    let mut out = String::new();
    for s in sections {
        out.push_str(&s.header);
        out.push('\n');
        for (_, text) in s.children {
            out.push_str(&text);
        }
    }
    out
}

#[test]
fn merge_yaml_overrides_and_extends_sections() {
    let merged = merge_yaml(
        BASE_CONFIG,
        "server:\n  listen: 127.0.0.1:9\n  max_body_bytes: 4096\nlogging:\n  level: debug\n",
    );
    assert_eq!(
        merged,
        "server:\n  listen: 127.0.0.1:9\n  base_path: /scim/v2\n  max_body_bytes: 4096\n\
         state:\n  dir: ./state\n\
         auth:\n  tokens:\n    - name: entra\n      secret:\n        env: SCIM_BRIDGE_TOKEN\n\
         log:\n  level: warn\n\
         logging:\n  level: debug\n"
    );
    assert_eq!(merge_yaml(BASE_CONFIG, ""), BASE_CONFIG);
}

#[test]
fn listening_line_is_parsed_with_or_without_log_decoration() {
    let want: SocketAddr = "127.0.0.1:40123".parse().unwrap();
    assert_eq!(parse_listening("listening on 127.0.0.1:40123"), Some(want));
    assert_eq!(
        parse_listening(
            "2025-01-01T00:00:00Z \u{1b}[32m INFO\u{1b}[0m scim_bridge: listening on http://127.0.0.1:40123/scim/v2"
        ),
        Some(want)
    );
    assert_eq!(parse_listening("starting"), None);
}

#[test]
fn fill_substitutes_placeholders() {
    assert_eq!(
        fill(r#"{"value":"{{ID}}","x":"{{ID}}"}"#, &[("ID", "7")]),
        r#"{"value":"7","x":"7"}"#
    );
}

/// Decodes standard base64 (an LDIF `attr:: value`; padding and surrounding spaces
/// ignored). The encoder is the daemon's own (`scim_bridge::target::ldap::ldif::base64`).
pub fn base64_bytes(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.trim().bytes().filter(|&c| c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .unwrap_or_else(|| panic!("not base64: {text:?}")) as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn base64_round_trips_every_padding() {
    use scim_bridge::target::ldap::ldif::base64;
    for text in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
        assert_eq!(base64_bytes(&base64(text.as_bytes())), text.as_bytes());
    }
    assert_eq!(base64_bytes(" Zm8= "), b"fo");
}
