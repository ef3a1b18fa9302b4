//! The config layer's contract, one rule per test. YAML snippets keep `server:` on line 1
//! so the expected line:column can be read straight off the snippet.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use super::*;

/// 32 bytes, like `openssl rand -hex 16`.
const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const OTHER_TOKEN: &str = "fedcba9876543210fedcba9876543210";

/// A minimal valid `auth` section; appended to snippets that test other sections.
const AUTH: &str = "auth:
  tokens:
    - name: entra
      secret:
        env: SCIM_BRIDGE_TOKEN
";

#[derive(Default)]
struct FakeEnv {
    vars: HashMap<String, String>,
    files: HashMap<PathBuf, String>,
}

impl FakeEnv {
    fn with_var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }
    fn with_file(mut self, path: &str, content: &str) -> Self {
        self.files.insert(PathBuf::from(path), content.to_owned());
        self
    }
}

impl Environment for FakeEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
    fn read_file(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
    }
}

fn token_env() -> FakeEnv {
    FakeEnv::default().with_var("SCIM_BRIDGE_TOKEN", TOKEN)
}

fn parse_ok(yaml: &str) -> Config {
    match parse(yaml, "config.yaml", &token_env()) {
        Ok(config) => config,
        Err(err) => panic!("expected a valid config, got:\n{err}"),
    }
}

fn problems_with(yaml: &str, env: &dyn Environment) -> Problems {
    match parse(yaml, "config.yaml", env) {
        Ok(config) => panic!("expected problems, got a valid config: {config}"),
        Err(ConfigError::Invalid(problems)) => problems,
        Err(other) => panic!("expected ConfigError::Invalid, got {other:?}"),
    }
}

fn problems(yaml: &str) -> Vec<Problem> {
    problems_with(yaml, &token_env()).items
}

/// The single problem `yaml` has, as `line:column: path: message`.
fn only_problem(yaml: &str) -> String {
    let items = problems(yaml);
    assert_eq!(
        items.len(),
        1,
        "expected exactly one problem, got {items:#?}"
    );
    items[0].to_string()
}

fn server(lines: &str) -> String {
    format!("server:\n{lines}{AUTH}")
}

/// 1-based number of the first line of `text` equal to `line`.
fn line_of(text: &str, line: &str) -> usize {
    text.lines()
        .position(|l| l == line)
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no line {line:?}"))
}

// --- the example file -------------------------------------------------------------------

#[test]
fn example_file_parses_when_its_token_variable_is_set() {
    let config = parse(EMBEDDED_EXAMPLE, "config.example.yaml", &token_env())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.server.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.server.base_path, "/scim/v2");
    assert_eq!(config.server.public_url, None);
    assert_eq!(config.server.max_body_bytes, 1_048_576);
    assert_eq!(config.server.page_size, 100);
    assert_eq!(config.server.max_page_size, 1000);
    assert_eq!(config.state.dir, PathBuf::from("./state"));
    assert_eq!(config.auth.tokens.len(), 1);
    assert_eq!(config.auth.tokens[0].name, "entra");
    assert_eq!(config.auth.tokens[0].digest, TokenDigest::of(TOKEN));
    assert_eq!(config.log.level, "info");
    assert_eq!(config.log.format, LogFormat::Text);
}

#[test]
fn embedded_example_is_the_example_file_at_the_repository_root() {
    let on_disk =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml"))
            .expect("config.example.yaml is readable");
    assert_eq!(EMBEDDED_EXAMPLE, on_disk);
}

#[test]
fn example_file_without_its_token_variable_points_at_the_secret_line() {
    let problems = problems_with(EMBEDDED_EXAMPLE, &FakeEnv::default());
    let line = line_of(EMBEDDED_EXAMPLE, "      secret:");
    assert_eq!(
        problems.to_string(),
        format!(
            "config.yaml:{line}:7: auth.tokens[0].secret: environment variable SCIM_BRIDGE_TOKEN is not set"
        )
    );
}

// --- defaults ---------------------------------------------------------------------------

#[test]
fn a_file_with_only_auth_gets_every_default() {
    let config = parse_ok(AUTH);
    assert_eq!(config.server.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.server.base_path, "/scim/v2");
    assert_eq!(config.server.public_url, None);
    assert_eq!(config.server.max_body_bytes, 1024 * 1024);
    assert_eq!(config.server.page_size, 100);
    assert_eq!(config.server.max_page_size, 1000);
    assert_eq!(config.state.dir, PathBuf::from("./state"));
    assert_eq!(config.log.level, "info");
    assert_eq!(config.log.format, LogFormat::Text);
}

#[test]
fn empty_sections_and_empty_values_take_their_defaults() {
    let config = parse_ok(&format!(
        "server:\n  listen:\nstate:\nlog:\n  format:\n{AUTH}"
    ));
    assert_eq!(config.server.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.state.dir, PathBuf::from("./state"));
    assert_eq!(config.log.format, LogFormat::Text);
}

#[test]
fn every_setting_can_be_overridden() {
    let config = parse_ok(&format!(
        "server:
  listen: '[::1]:9000'
  base_path: /api/scim
  public_url: https://idm.example.com:8443/api/scim
  max_body_bytes: 2048
  page_size: 10
  max_page_size: 20
state:
  dir: /var/lib/scim-bridge
log:
  level: warn,scim_bridge=debug
  format: json
{AUTH}"
    ));
    assert_eq!(config.server.listen, "[::1]:9000".parse().unwrap());
    assert_eq!(config.server.base_path, "/api/scim");
    assert_eq!(
        config.server.public_url.as_deref(),
        Some("https://idm.example.com:8443/api/scim")
    );
    assert_eq!(config.server.max_body_bytes, 2048);
    assert_eq!(config.server.page_size, 10);
    assert_eq!(config.server.max_page_size, 20);
    assert_eq!(config.state.dir, PathBuf::from("/var/lib/scim-bridge"));
    assert_eq!(config.log.level, "warn,scim_bridge=debug");
    assert_eq!(config.log.format, LogFormat::Json);
}

// --- server -----------------------------------------------------------------------------

#[test]
fn listen_must_be_an_address_and_port() {
    assert_eq!(
        only_problem(&server("  listen: 127.0.0.1\n")),
        "2:11: server.listen: '127.0.0.1' is not an address:port (e.g. 127.0.0.1:8080)"
    );
    assert_eq!(
        only_problem(&server("  listen: localhost:8080\n")),
        "2:11: server.listen: 'localhost:8080' is not an address:port (e.g. 127.0.0.1:8080)"
    );
}

#[test]
fn base_path_must_start_with_a_slash() {
    assert_eq!(
        only_problem(&server("  base_path: scim/v2\n")),
        "2:14: server.base_path: 'scim/v2' must start with '/' (use /scim/v2)"
    );
}

#[test]
fn base_path_must_not_end_with_a_slash() {
    assert_eq!(
        only_problem(&server("  base_path: /scim/v2/\n")),
        "2:14: server.base_path: '/scim/v2/' must not end with '/' (use /scim/v2)"
    );
    assert!(only_problem(&server("  base_path: /\n")).contains("'/' must not end with '/'"));
}

#[test]
fn base_path_must_be_a_clean_url_path() {
    assert_eq!(
        only_problem(&server("  base_path: /scim//v2\n")),
        "2:14: server.base_path: '/scim//v2' has an empty segment (use /scim/v2)"
    );
    assert!(
        only_problem(&server("  base_path: /scim?v=2\n"))
            .contains("'/scim?v=2' contains '?', which cannot appear in a URL path")
    );
    assert!(only_problem(&server("  base_path: ''\n")).contains("'' is empty"));
}

#[test]
fn public_url_must_be_an_absolute_http_url() {
    assert_eq!(
        only_problem(&server("  public_url: scim.example.com/scim/v2\n")),
        "2:15: server.public_url: 'scim.example.com/scim/v2' is not an absolute http(s) URL (e.g. https://scim.example.com/scim/v2)"
    );
    assert!(
        only_problem(&server("  public_url: ftp://x.example/scim\n"))
            .contains("not an absolute http(s) URL")
    );
    assert!(only_problem(&server("  public_url: https:///scim\n")).contains("has no host"));
    assert!(
        only_problem(&server("  public_url: https://x.example:http/scim\n"))
            .contains("invalid port 'http'")
    );
    assert!(
        only_problem(&server("  public_url: https://x.example/scim?a=b\n"))
            .contains("must not have a query or fragment")
    );
    assert!(
        only_problem(&server("  public_url: https://u:p@x.example/scim\n"))
            .contains("must not contain credentials")
    );
}

#[test]
fn public_url_must_not_end_with_a_slash() {
    assert_eq!(
        only_problem(&server("  public_url: https://scim.example.com/scim/v2/\n")),
        "2:15: server.public_url: 'https://scim.example.com/scim/v2/' must not end with '/' (use https://scim.example.com/scim/v2)"
    );
}

#[test]
fn public_url_accepts_http_and_https_with_or_without_port_and_path() {
    for url in [
        "https://scim.example.com/scim/v2",
        "http://10.0.0.5:8080/scim/v2",
        "HTTPS://scim.example.com",
        "https://[2001:db8::1]:8443/scim",
    ] {
        let config = parse_ok(&server(&format!("  public_url: '{url}'\n")));
        assert_eq!(config.server.public_url.as_deref(), Some(url));
    }
}

#[test]
fn max_body_bytes_is_between_1_kib_and_64_mib() {
    assert_eq!(
        only_problem(&server("  max_body_bytes: 1023\n")),
        "2:19: server.max_body_bytes: 1023 is out of range (must be 1024 (1 KiB) to 67108864 (64 MiB))"
    );
    assert!(
        only_problem(&server("  max_body_bytes: 67108865\n")).contains("67108865 is out of range")
    );
    assert_eq!(
        parse_ok(&server("  max_body_bytes: 1024\n"))
            .server
            .max_body_bytes,
        1024
    );
    assert_eq!(
        parse_ok(&server("  max_body_bytes: 67108864\n"))
            .server
            .max_body_bytes,
        64 * 1024 * 1024
    );
}

#[test]
fn numbers_must_be_whole_numbers() {
    assert_eq!(
        only_problem(&server("  page_size: many\n")),
        "2:14: server.page_size: 'many' is not a whole number (e.g. 100)"
    );
    assert_eq!(
        only_problem(&server("  max_body_bytes: 1MiB\n")),
        "2:19: server.max_body_bytes: '1MiB' is not a whole number (bytes, e.g. 1048576 for 1 MiB)"
    );
    assert!(only_problem(&server("  max_page_size: -5\n")).contains("'-5' is not a whole number"));
}

#[test]
fn max_page_size_is_between_1_and_100000() {
    assert!(
        only_problem(&server("  max_page_size: 0\n  page_size: 1\n"))
            .starts_with("2:18: server.max_page_size: 0 is out of range (must be 1 to 100000)")
    );
    assert!(only_problem(&server("  max_page_size: 100001\n")).contains("100001 is out of range"));
    assert_eq!(
        parse_ok(&server("  max_page_size: 100000\n"))
            .server
            .max_page_size,
        100_000
    );
}

#[test]
fn page_size_is_at_least_1_and_at_most_max_page_size() {
    assert!(
        only_problem(&server("  page_size: 0\n"))
            .starts_with("2:14: server.page_size: 0 is out of range")
    );
    assert_eq!(
        only_problem(&server("  page_size: 50\n  max_page_size: 20\n")),
        "2:14: server.page_size: 50 is larger than server.max_page_size (20); lower it or raise server.max_page_size"
    );
    let config = parse_ok(&server("  page_size: 20\n  max_page_size: 20\n"));
    assert_eq!(
        (config.server.page_size, config.server.max_page_size),
        (20, 20)
    );
}

#[test]
fn a_max_page_size_below_the_default_page_size_is_reported_at_max_page_size() {
    assert_eq!(
        only_problem(&server("  max_page_size: 50\n")),
        "2:18: server.max_page_size: 50 is smaller than the default server.page_size (100); raise it or set server.page_size to at most 50"
    );
}

// --- state ------------------------------------------------------------------------------

#[test]
fn state_dir_must_not_be_empty() {
    assert_eq!(
        only_problem(&format!("state:\n  dir: ''\n{AUTH}")),
        "2:8: state.dir: '' is empty; give a directory (e.g. ./state or /var/lib/scim-bridge)"
    );
}

// --- auth -------------------------------------------------------------------------------

#[test]
fn at_least_one_token_is_required() {
    let expected = "auth.tokens: no tokens; at least one is required";
    assert!(only_problem("").starts_with(&format!("1:1: {expected}")));
    assert!(only_problem("auth:\n").starts_with(&format!("1:1: {expected}")));
    assert!(
        only_problem("log:\n  level: info\nauth:\n  tokens: []\n")
            .starts_with(&format!("4:3: {expected}"))
    );
}

#[test]
fn token_names_are_1_to_64_safe_characters() {
    let yaml = |name: &str| {
        format!(
            "auth:\n  tokens:\n    - name: '{name}'\n      secret:\n        env: SCIM_BRIDGE_TOKEN\n"
        )
    };
    assert_eq!(
        only_problem(&yaml("my token")),
        "3:13: auth.tokens[0].name: 'my token' is not a valid token name (use 1 to 64 of A-Z a-z 0-9 _ . -)"
    );
    assert!(only_problem(&yaml("")).contains("'' is not a valid token name"));
    assert!(only_problem(&yaml(&"a".repeat(65))).contains("is not a valid token name"));
    assert_eq!(
        parse_ok(&yaml(&"a".repeat(64))).auth.tokens[0].name.len(),
        64
    );
    assert_eq!(
        parse_ok(&yaml("Okta_prod-1.eu")).auth.tokens[0].name,
        "Okta_prod-1.eu"
    );
}

#[test]
fn token_names_are_unique() {
    let env = token_env().with_var("OKTA", OTHER_TOKEN);
    let problems = problems_with(
        "auth:
  tokens:
    - name: entra
      secret: {env: SCIM_BRIDGE_TOKEN}
    - name: entra
      secret: {env: OKTA}
",
        &env,
    );
    assert_eq!(
        problems.to_string(),
        "config.yaml:5:13: auth.tokens[1].name: 'entra' is already the name of auth.tokens[0]; token names must be unique"
    );
}

#[test]
fn a_token_needs_a_name_and_a_secret_or_a_hash() {
    let items =
        problems("auth:\n  tokens:\n    - secret: {env: SCIM_BRIDGE_TOKEN}\n    - name: okta\n");
    let lines: Vec<String> = items.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "3:7: auth.tokens[0]: missing 'name' (e.g. name: entra)",
            "4:7: auth.tokens[1]: missing 'secret' or 'hash' (e.g. secret: {env: SCIM_BRIDGE_TOKEN}, or the hash: line 'scim-bridge token new' prints)",
        ]
    );
}

#[test]
fn several_tokens_each_get_their_own_secret() {
    let env = token_env().with_var("OKTA_TOKEN", OTHER_TOKEN);
    let config = parse(
        "auth:
  tokens:
    - name: entra
      secret: {env: SCIM_BRIDGE_TOKEN}
    - name: okta
      secret: {env: OKTA_TOKEN}
",
        "config.yaml",
        &env,
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let names: Vec<&str> = config.auth.tokens.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["entra", "okta"]);
    assert_eq!(config.auth.tokens[1].digest, TokenDigest::of(OTHER_TOKEN));
}

// --- secrets ----------------------------------------------------------------------------

fn secret_yaml(source: &str) -> String {
    format!("auth:\n  tokens:\n    - name: entra\n      secret:\n        {source}\n")
}

#[test]
fn a_secret_names_exactly_one_source() {
    assert_eq!(
        only_problem("auth:\n  tokens:\n    - name: entra\n      secret: {}\n"),
        "4:7: auth.tokens[0].secret: no source given; set exactly one of env, file or value"
    );
    assert_eq!(
        only_problem(&secret_yaml(
            "env: SCIM_BRIDGE_TOKEN\n        file: /run/token"
        )),
        "4:7: auth.tokens[0].secret: both 'env' and 'file' are set; set exactly one of env, file or value"
    );
    assert!(
        only_problem(&secret_yaml("env: A\n        file: /b\n        value: c"))
            .contains("'env', 'file' and 'value' are all set")
    );
}

#[test]
fn an_unset_environment_variable_is_reported_at_the_secret() {
    assert_eq!(
        only_problem(&secret_yaml("env: NOT_THERE")),
        "4:7: auth.tokens[0].secret: environment variable NOT_THERE is not set"
    );
}

#[test]
fn a_secret_file_has_its_trailing_newline_trimmed() {
    let env = FakeEnv::default().with_file("/run/credentials/entra", &format!("{TOKEN}\n"));
    let config = parse(
        &secret_yaml("file: /run/credentials/entra"),
        "config.yaml",
        &env,
    )
    .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.auth.tokens[0].digest, TokenDigest::of(TOKEN));

    let env = FakeEnv::default().with_file("/run/credentials/entra", &format!("{TOKEN}\r\n\n"));
    let config = parse(
        &secret_yaml("file: /run/credentials/entra"),
        "config.yaml",
        &env,
    )
    .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.auth.tokens[0].digest, TokenDigest::of(TOKEN));
}

#[test]
fn a_secret_file_on_disk_is_read_by_the_process_environment() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut file, format!("{TOKEN}\n").as_bytes()).expect("write");
    let yaml = secret_yaml(&format!("file: '{}'", file.path().display()));
    let config = parse(&yaml, "config.yaml", &ProcessEnv).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.auth.tokens[0].digest, TokenDigest::of(TOKEN));
}

#[test]
fn an_unreadable_secret_file_is_reported_at_the_secret() {
    assert_eq!(
        only_problem(&secret_yaml("file: /run/missing")),
        "4:7: auth.tokens[0].secret: secret file /run/missing cannot be read: no such file or directory"
    );
}

#[test]
fn a_literal_secret_value_is_accepted() {
    let config = parse_ok(&secret_yaml(&format!("value: \"{TOKEN}\"")));
    assert_eq!(config.auth.tokens[0].digest, TokenDigest::of(TOKEN));
}

#[test]
fn a_secret_is_at_least_16_bytes_and_the_message_says_how_to_make_one() {
    let env = FakeEnv::default().with_var("SHORT", "abc");
    let problems = problems_with(&secret_yaml("env: SHORT"), &env);
    assert_eq!(
        problems.to_string(),
        "config.yaml:4:7: auth.tokens[0].secret: environment variable SHORT is only 3 bytes; a secret needs at least 16 (generate one with: openssl rand -hex 32)"
    );
    let env = FakeEnv::default().with_var("EMPTY", "");
    assert!(
        problems_with(&secret_yaml("env: EMPTY"), &env)
            .to_string()
            .contains("environment variable EMPTY is empty")
    );
    assert!(parse(&secret_yaml("value: '0123456789abcdef'"), "c", &env).is_ok());
}

#[test]
fn a_secret_must_be_sendable_in_an_http_header() {
    assert!(
        only_problem(&secret_yaml("value: '0123456789 abcdef0123'"))
            .contains("the literal value contains spaces, control or non-ASCII characters")
    );
}

#[test]
fn secrets_are_unique_across_tokens() {
    let env = token_env().with_file("/run/okta", &format!("{TOKEN}\n"));
    let problems = problems_with(
        "auth:
  tokens:
    - name: entra
      secret: {env: SCIM_BRIDGE_TOKEN}
    - name: okta
      secret: {file: /run/okta}
",
        &env,
    );
    let text = problems.to_string();
    assert_eq!(
        text,
        "config.yaml:6:7: auth.tokens[1].secret: secret file /run/okta has the same value as auth.tokens[0].secret; every token needs its own secret (generate one with: openssl rand -hex 32)"
    );
    assert!(!text.contains(TOKEN));
}

#[test]
fn secret_matching_compares_whole_values() {
    let secret = Secret::new(TOKEN.to_owned());
    assert!(secret.matches(TOKEN));
    assert!(!secret.matches(&TOKEN[..TOKEN.len() - 1]));
    assert!(!secret.matches(OTHER_TOKEN));
    assert!(!secret.matches(""));
}

// --- hashed and read-only tokens ------------------------------------------------------------

/// `sha256:` and the hex digest of TOKEN, as `token new` prints it.
fn token_hash() -> String {
    TokenDigest::of(TOKEN).to_string()
}

fn hash_yaml(hash: &str) -> String {
    format!("auth:\n  tokens:\n    - name: entra\n      hash: {hash}\n")
}

#[test]
fn a_token_may_be_configured_by_the_sha256_hash_of_its_secret() {
    let hash = token_hash();
    assert_eq!(hash.len(), "sha256:".len() + 64);
    let config = parse(&hash_yaml(&hash), "config.yaml", &FakeEnv::default())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.auth.tokens[0].name, "entra");
    assert_eq!(config.auth.tokens[0].digest, TokenDigest::of(TOKEN));
    assert!(!config.auth.tokens[0].read_only);
    // Upper-case hex and a quoted value read the same.
    let upper = format!("'sha256:{}'", hash["sha256:".len()..].to_ascii_uppercase());
    let config = parse(&hash_yaml(&upper), "config.yaml", &FakeEnv::default())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.auth.tokens[0].digest, TokenDigest::of(TOKEN));
}

#[test]
fn a_token_digest_prints_as_the_hash_line_takes_it() {
    let digest = TokenDigest::of(TOKEN);
    // echo -n 0123456789abcdef0123456789abcdef | sha256sum
    assert_eq!(
        digest.to_string(),
        "sha256:3eb1bd439947eb762998e566ccc2e099c791118b2f40579cc4f7da2b5061b7f9"
    );
    assert_eq!(TokenDigest::parse(&digest.to_string()), Ok(digest));
    assert_eq!(format!("{digest:?}"), "TokenDigest(sha256:3eb1bd43…)");
}

#[test]
fn a_malformed_hash_is_reported_at_the_hash_without_repeating_it() {
    let hex = &token_hash()["sha256:".len()..];
    let cases = [
        // The token itself pasted where its hash belongs.
        (TOKEN.to_owned(), "the hash does not start with 'sha256:'"),
        (
            format!("md5:{hex}"),
            "the hash does not start with 'sha256:'",
        ),
        (
            format!("sha256:{}", &hex[..63]),
            "the hash has 63 hex digits after 'sha256:'; a SHA-256 hash has 64",
        ),
        (
            format!("sha256:{hex}00"),
            "the hash has 66 hex digits after 'sha256:'; a SHA-256 hash has 64",
        ),
        (
            format!("sha256:{}g", &hex[..63]),
            "the hash contains 'g' after 'sha256:', which is not a hex digit",
        ),
        ("''".to_owned(), "the hash does not start with 'sha256:'"),
    ];
    for (value, what) in cases {
        let problem = only_problem(&hash_yaml(&value));
        assert_eq!(
            problem,
            format!(
                "4:13: auth.tokens[0].hash: {what}; write 'sha256:' and 64 hex digits, as 'scim-bridge token new' prints them"
            ),
            "{value}"
        );
        assert!(!problem.contains(TOKEN), "{problem}");
        assert!(!problem.contains(&hex[..16]), "{problem}");
    }
}

#[test]
fn a_token_with_both_a_secret_and_a_hash_is_reported_at_the_token() {
    assert_eq!(
        only_problem(&format!(
            "auth:\n  tokens:\n    - name: entra\n      secret: {{env: SCIM_BRIDGE_TOKEN}}\n      hash: {}\n",
            token_hash()
        )),
        "3:7: auth.tokens[0]: both 'secret' and 'hash' are set; set exactly one (the hash of a secret is computed, not configured next to it)"
    );
}

#[test]
fn a_token_with_neither_a_secret_nor_a_hash_is_reported_at_the_token() {
    assert_eq!(
        only_problem("auth:\n  tokens:\n    - name: entra\n      read_only: true\n"),
        "3:7: auth.tokens[0]: missing 'secret' or 'hash' (e.g. secret: {env: SCIM_BRIDGE_TOKEN}, or the hash: line 'scim-bridge token new' prints)"
    );
}

#[test]
fn a_hash_is_unique_across_tokens_whether_given_or_computed() {
    // A hash repeating an earlier secret's digest.
    assert_eq!(
        only_problem(&format!(
            "auth:\n  tokens:\n    - name: entra\n      secret: {{env: SCIM_BRIDGE_TOKEN}}\n    - name: copy\n      hash: {}\n",
            token_hash()
        )),
        "6:13: auth.tokens[1].hash: the hash is the same as auth.tokens[0].secret's; every token needs its own secret ('scim-bridge token new' makes one)"
    );
    // A secret whose digest an earlier hash already gives.
    assert_eq!(
        only_problem(&format!(
            "auth:\n  tokens:\n    - name: hashed\n      hash: {}\n    - name: entra\n      secret: {{env: SCIM_BRIDGE_TOKEN}}\n",
            token_hash()
        )),
        "6:7: auth.tokens[1].secret: environment variable SCIM_BRIDGE_TOKEN has the hash given at auth.tokens[0].hash; every token needs its own secret (generate one with: openssl rand -hex 32)"
    );
}

#[test]
fn read_only_is_true_or_false_and_off_by_default() {
    let yaml = |flag: &str| {
        format!(
            "auth:\n  tokens:\n    - name: entra\n      read_only: {flag}\n      secret: {{env: SCIM_BRIDGE_TOKEN}}\n"
        )
    };
    assert!(parse_ok(&yaml("true")).auth.tokens[0].read_only);
    assert!(!parse_ok(&yaml("false")).auth.tokens[0].read_only);
    assert!(!parse_ok(AUTH).auth.tokens[0].read_only);
    assert_eq!(
        only_problem(&yaml("yes")),
        "4:18: auth.tokens[0].read_only: 'yes' is not true or false"
    );
}

// --- auth.jwt ---------------------------------------------------------------------------

const TENANT_ISSUER: &str = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/";
const ENTRA_AUDIENCE: &str = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621";

/// A JWKS with one 2048-bit RSA key (a made-up modulus: parsing does not factor it) and
/// the members Entra's keys carry besides.
fn jwks(modulus_bytes: usize) -> String {
    // 'x's, then a 'w' whose low bits are zero: valid base64url of `modulus_bytes` bytes.
    let n = format!("{}w", "x".repeat((modulus_bytes * 4).div_ceil(3) - 1));
    format!(
        r#"{{"keys":[{{"kty":"RSA","use":"sig","kid":"k1","x5t":"k1","n":"{n}","e":"AQAB","x5c":["MIIC"],"issuer":"https://login.microsoftonline.com/t/v2.0"}}]}}"#
    )
}

fn jwt_env() -> FakeEnv {
    token_env().with_file("/etc/scim-bridge/jwks.json", &jwks(256))
}

fn jwt_yaml(lines: &str) -> String {
    format!("{AUTH}  jwt:\n{lines}")
}

const JWT_SETTINGS: &str =
    "    issuer: https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/
    audience: 8adf8e6e-67b2-4cf2-a259-e3dc5476c621
    jwks_file: /etc/scim-bridge/jwks.json
";

#[test]
fn jwt_settings_are_read_with_their_defaults() {
    let config = parse(&jwt_yaml(JWT_SETTINGS), "config.yaml", &jwt_env())
        .unwrap_or_else(|err| panic!("{err}"));
    let jwt = config.auth.jwt.expect("auth.jwt");
    assert_eq!(jwt.issuer, TENANT_ISSUER);
    assert_eq!(jwt.audience, ENTRA_AUDIENCE);
    assert_eq!(jwt.name, "entra-jwt");
    assert_eq!(jwt.leeway, std::time::Duration::from_secs(60));
    assert!(!jwt.read_only);
    assert_eq!(jwt.jwks_file, PathBuf::from("/etc/scim-bridge/jwks.json"));
    assert_eq!(jwt.keys.len(), 1);
    assert!(parse_ok(AUTH).auth.jwt.is_none());

    let config = parse(
        &jwt_yaml(&format!(
            "{JWT_SETTINGS}    name: entra-test\n    leeway: 2m\n    read_only: true\n"
        )),
        "config.yaml",
        &jwt_env(),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    assert!(config.to_string().contains("jwt=[entra-test]"), "{config}");
    let jwt = config.auth.jwt.expect("auth.jwt");
    assert_eq!(jwt.name, "entra-test");
    assert_eq!(jwt.leeway, std::time::Duration::from_secs(120));
    assert!(jwt.read_only);
}

#[test]
fn jwt_needs_an_issuer_an_audience_and_a_jwks_file() {
    let lines: Vec<String> = problems_with(&jwt_yaml("    name: entra-jwt\n"), &jwt_env())
        .items
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "6:3: auth.jwt: missing 'issuer' (for Entra: issuer: https://sts.windows.net/<tenant-id>/)",
            "6:3: auth.jwt: missing 'audience' (for an Entra non-gallery app: audience: 8adf8e6e-67b2-4cf2-a259-e3dc5476c621)",
            "6:3: auth.jwt: missing 'jwks_file' (the tenant's signing keys, e.g. saved from https://login.microsoftonline.com/<tenant-id>/discovery/v2.0/keys)",
        ]
    );
}

#[test]
fn jwt_settings_are_each_checked_at_their_line() {
    let yaml = jwt_yaml(
        "    issuer: https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47
    audience: ''
    jwks_file: /etc/scim-bridge/jwks.json
    name: entra jwt
    leeway: 1h
    read_only: maybe
",
    );
    let lines: Vec<String> = problems_with(&yaml, &jwt_env())
        .items
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "7:13: auth.jwt.issuer: 'https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47' must end with '/' as Entra's issuer does (use https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/)",
            "8:15: auth.jwt.audience: '' is empty or has surrounding spaces; the audience is compared exactly (for an Entra non-gallery app: 8adf8e6e-67b2-4cf2-a259-e3dc5476c621)",
            "10:11: auth.jwt.name: 'entra jwt' is not a valid token name (use 1 to 64 of A-Z a-z 0-9 _ . -)",
            "11:13: auth.jwt.leeway: '1h' is not a duration of at most 10m (e.g. 60s); it is the clock skew allowed on exp and nbf",
            "12:16: auth.jwt.read_only: 'maybe' is not true or false",
        ]
    );
    assert_eq!(
        only_problem_with(
            &jwt_yaml(&JWT_SETTINGS.replace("https://sts", "http://sts")),
            &jwt_env()
        ),
        "7:13: auth.jwt.issuer: 'http://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/' is not an https URL; the issuer is compared exactly (for Entra: https://sts.windows.net/<tenant-id>/)"
    );
}

#[test]
fn the_jwt_name_is_not_a_static_tokens_name() {
    assert_eq!(
        only_problem_with(
            &jwt_yaml(&format!("{JWT_SETTINGS}    name: entra\n")),
            &jwt_env()
        ),
        "10:11: auth.jwt.name: 'entra' is already the name of auth.tokens[0]; JWTs need a name of their own (name: …)"
    );
}

#[test]
fn a_missing_jwks_file_is_reported_with_its_path() {
    assert_eq!(
        only_problem_with(&jwt_yaml(JWT_SETTINGS), &token_env()),
        "9:16: auth.jwt.jwks_file: JWKS file /etc/scim-bridge/jwks.json cannot be read: no such file or directory"
    );
}

#[test]
fn a_jwks_file_without_usable_keys_is_reported_with_its_path() {
    let cases = [
        (
            "not json".to_owned(),
            "is not a JSON Web Key Set ({\"keys\": [...]}): expected ident at line 1 column 2",
        ),
        (r#"{"keys":[]}"#.to_owned(), "has no RSA signing key (kty RSA, RS256)"),
        (
            r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"},{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}"#.to_owned(),
            "has no RSA signing key (kty RSA, RS256)",
        ),
        (
            jwks(128),
            "keys[0] (kid k1) is a 1024-bit RSA key; at least 2048 bits are required",
        ),
        (
            r#"{"keys":[{"kty":"RSA","kid":"k9"}]}"#.to_owned(),
            "keys[0] (kid k9) is an RSA key without 'n' and 'e'",
        ),
        (
            r#"{"keys":[{"kty":"RSA","n":"not base64!","e":"AQAB"}]}"#.to_owned(),
            "keys[0]: 'n' is not base64url",
        ),
    ];
    for (text, what) in cases {
        let env = token_env().with_file("/etc/scim-bridge/jwks.json", &text);
        assert_eq!(
            only_problem_with(&jwt_yaml(JWT_SETTINGS), &env),
            format!("9:16: auth.jwt.jwks_file: JWKS file /etc/scim-bridge/jwks.json {what}"),
            "{text}"
        );
    }
}

#[test]
fn an_unknown_jwt_setting_suggests_the_known_one() {
    assert_eq!(
        only_problem_with(
            &jwt_yaml(&format!("{JWT_SETTINGS}    audiance: x\n")),
            &jwt_env()
        ),
        "10:5: auth.jwt: unknown field 'audiance' (did you mean 'audience'?)"
    );
}

/// The single problem `yaml` has under `env`.
fn only_problem_with(yaml: &str, env: &dyn Environment) -> String {
    let items = problems_with(yaml, env).items;
    assert_eq!(
        items.len(),
        1,
        "expected exactly one problem, got {items:#?}"
    );
    items[0].to_string()
}

// --- log --------------------------------------------------------------------------------

#[test]
fn log_level_accepts_env_filter_directives() {
    for level in [
        "debug",
        "INFO",
        "info,scim_bridge=debug",
        "scim_bridge",
        "warn,hyper::proto=off",
        "scim_bridge[request]=trace",
    ] {
        assert_eq!(
            parse_ok(&format!("log:\n  level: '{level}'\n{AUTH}"))
                .log
                .level,
            level
        );
    }
}

#[test]
fn log_level_rejects_misspelt_levels() {
    assert_eq!(
        only_problem(&format!("log:\n  level: infoo\n{AUTH}")),
        "2:10: log.level: 'infoo': 'infoo' is not a level (did you mean 'info'?); levels are trace, debug, info, warn, error, off"
    );
    assert!(
        only_problem(&format!(
            "log:\n  level: 'info,scim_bridge=verbose'\n{AUTH}"
        ))
        .contains("'verbose' is not a level;")
    );
    assert!(only_problem(&format!("log:\n  level: ''\n{AUTH}")).contains("'' is empty"));
}

#[test]
fn log_format_is_text_or_json() {
    assert_eq!(
        only_problem(&format!("log:\n  format: jsno\n{AUTH}")),
        "2:11: log.format: 'jsno' is not a log format (did you mean 'json'?); use text, json or journald"
    );
    assert!(
        only_problem(&format!("log:\n  format: xml\n{AUTH}"))
            .ends_with("'xml' is not a log format; use text, json or journald")
    );
}

// --- reporting --------------------------------------------------------------------------

#[test]
fn every_problem_is_reported_at_once_with_its_own_line_and_column() {
    let yaml = "server:
  listen: nowhere
  base_path: scim
  max_body_bytes: 10
state:
  dir: ''
auth:
  tokens:
    - name: entra
      secret:
        env: MISSING
    - name: 'bad name'
      secret:
        value: short
log:
  format: yaml
";
    let problems = problems_with(yaml, &FakeEnv::default());
    assert_eq!(
        problems.to_string(),
        "config.yaml:2:11: server.listen: 'nowhere' is not an address:port (e.g. 127.0.0.1:8080)
config.yaml:3:14: server.base_path: 'scim' must start with '/' (use /scim)
config.yaml:4:19: server.max_body_bytes: 10 is out of range (must be 1024 (1 KiB) to 67108864 (64 MiB))
config.yaml:6:8: state.dir: '' is empty; give a directory (e.g. ./state or /var/lib/scim-bridge)
config.yaml:10:7: auth.tokens[0].secret: environment variable MISSING is not set
config.yaml:12:13: auth.tokens[1].name: 'bad name' is not a valid token name (use 1 to 64 of A-Z a-z 0-9 _ . -)
config.yaml:13:7: auth.tokens[1].secret: the literal value is only 5 bytes; a secret needs at least 16 (generate one with: openssl rand -hex 32)
config.yaml:16:11: log.format: 'yaml' is not a log format; use text, json or journald"
    );
    let first = &problems.items[0];
    assert_eq!(
        (first.path.as_str(), first.line, first.column),
        ("server.listen", 2, 11)
    );
}

#[test]
fn an_unknown_key_suggests_the_nearest_known_key() {
    assert_eq!(
        only_problem(&server("  lisen: 127.0.0.1:8080\n")),
        "2:3: server: unknown field 'lisen' (did you mean 'listen'?)"
    );
    assert_eq!(
        only_problem(&server("  base_path: /scim/v2\n  max_body_size: 1024\n")),
        "3:3: server: unknown field 'max_body_size' (did you mean 'max_body_bytes'?)"
    );
    assert_eq!(
        only_problem("auth:\n  tokens:\n    - name: entra\n      secert:\n        env: X\n"),
        "4:7: auth.tokens[0]: unknown field 'secert' (did you mean 'secret'?)"
    );
    assert_eq!(
        only_problem(&format!("{AUTH}sever:\n  listen: 127.0.0.1:8080\n")),
        "6:1: unknown field 'sever' (did you mean 'server'?)"
    );
}

#[test]
fn an_unknown_key_without_a_near_match_lists_the_known_keys() {
    assert_eq!(
        only_problem(&format!("{AUTH}metrics: true\n")),
        "6:1: unknown field 'metrics' (expected one of: server, state, auth, log, journal, target, mapping, rate_limit, endpoints)"
    );
}

#[test]
fn a_yaml_syntax_error_has_a_line_and_column() {
    assert_eq!(
        only_problem("server:\n  listen: [127.0.0.1:8080\n"),
        "2:11: invalid yaml: unclosed bracket '['"
    );
    let tab = only_problem("server:\n\tlisten: 127.0.0.1:8080\n");
    assert!(tab.starts_with("2:2: invalid yaml: "), "{tab}");
}

#[test]
fn a_duplicate_key_is_reported_where_it_repeats() {
    assert_eq!(
        only_problem(&server("  listen: 127.0.0.1:1\n  listen: 127.0.0.1:2\n")),
        "3:3: duplicate key 'listen'; each key may appear only once"
    );
}

#[test]
fn a_value_of_the_wrong_shape_is_reported_at_that_value() {
    assert_eq!(
        only_problem(&format!("server: 8080\n{AUTH}")),
        "1:9: server: expected a mapping of 'key: value' entries"
    );
    assert_eq!(
        only_problem("auth:\n  tokens: entra\n"),
        "2:11: auth.tokens: expected a list ('- ' items)"
    );
    assert_eq!(
        only_problem(&server("  listen: [127.0.0.1, 8080]\n")),
        "2:11: server.listen: expected a single value, not a list or mapping"
    );
    assert_eq!(
        only_problem("- auth\n"),
        "1:1: expected a mapping of 'key: value' entries"
    );
}

#[test]
fn problems_print_one_line_each_as_file_line_column_path_message() {
    let problems = Problems {
        source: "/etc/scim-bridge/config.yaml".to_owned(),
        items: vec![
            Problem {
                path: "server.listen".to_owned(),
                line: 2,
                column: 11,
                message: "bad".to_owned(),
            },
            Problem {
                path: String::new(),
                line: 9,
                column: 1,
                message: "worse".to_owned(),
            },
        ],
    };
    assert_eq!(
        ConfigError::Invalid(problems).to_string(),
        "/etc/scim-bridge/config.yaml:2:11: server.listen: bad\n/etc/scim-bridge/config.yaml:9:1: worse"
    );
}

// --- secrecy ----------------------------------------------------------------------------

#[test]
fn a_secret_prints_redacted() {
    let secret = Secret::new(TOKEN.to_owned());
    assert_eq!(format!("{secret:?}"), "Secret(***)");
    assert_eq!(format!("{secret}"), "Secret(***)");
    assert_eq!(secret.clone().expose(), TOKEN);
}

#[test]
fn debug_and_display_of_a_config_never_show_a_secret() {
    let env = token_env().with_file("/run/okta", OTHER_TOKEN);
    let config = parse(
        &format!(
            "auth:
  tokens:
    - name: entra
      secret: {{env: SCIM_BRIDGE_TOKEN}}
    - name: okta
      secret: {{file: /run/okta}}
    - name: literal
      secret: {{value: '{}'}}
",
            "L".repeat(20)
        ),
        "config.yaml",
        &env,
    )
    .unwrap_or_else(|err| panic!("{err}"));
    for text in [
        format!("{config:?}"),
        format!("{config:#?}"),
        config.to_string(),
    ] {
        assert!(!text.contains(TOKEN), "{text}");
        assert!(!text.contains(OTHER_TOKEN), "{text}");
        assert!(!text.contains(&"L".repeat(20)), "{text}");
    }
    // Only the start of each digest, never a secret.
    assert!(format!("{config:?}").contains("TokenDigest(sha256:"));
    assert!(config.to_string().contains("tokens=[entra,okta,literal]"));
}

#[test]
fn problems_never_show_a_secret() {
    let short = "tiny-secret";
    let env = FakeEnv::default().with_var("SHORT", short);
    let text = problems_with(&secret_yaml("env: SHORT"), &env).to_string();
    assert!(!text.contains(short), "{text}");
}

// --- load -------------------------------------------------------------------------------

#[test]
fn load_of_a_missing_file_is_unreadable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nope.yaml");
    match load(&path, &token_env()) {
        Err(ConfigError::Unreadable { path: p, source }) => {
            assert_eq!(p, path);
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("expected Unreadable, got {other:?}"),
    }
    let message = load(&path, &token_env())
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with(&format!("cannot read config file {}: ", path.display())),
        "{message}"
    );
}

#[test]
fn load_names_the_file_in_its_problems() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, format!("server:\n  listen: nope\n{AUTH}")).expect("write");
    let message = load(&path, &token_env())
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        format!(
            "{}:2:11: server.listen: 'nope' is not an address:port (e.g. 127.0.0.1:8080)",
            path.display()
        )
    );
    std::fs::write(&path, AUTH).expect("write");
    assert!(load(&path, &token_env()).is_ok());
}

// --- journal retention --------------------------------------------------------------

#[test]
fn journal_retention_is_off_by_default() {
    let config = parse_ok(AUTH);
    assert_eq!(config.journal, crate::config::JournalConfig::default());
    assert!(!config.journal.retention_enabled());
}

#[test]
fn journal_limits_parse_durations_and_sizes() {
    let config = parse_ok(&format!(
        "journal:\n  archive_dir: /var/backups/sb\n  max_age: 90d\n  max_records: 1000000\n  max_bytes: 2GiB\n{AUTH}"
    ));
    let j = &config.journal;
    assert_eq!(
        j.archive_dir.as_deref(),
        Some(std::path::Path::new("/var/backups/sb"))
    );
    assert_eq!(j.max_age, Some(std::time::Duration::from_secs(90 * 86_400)));
    assert_eq!(j.max_records, Some(1_000_000));
    assert_eq!(j.max_bytes, Some(2 << 30));
    assert!(j.retention_enabled());
}

#[test]
fn bad_journal_limits_are_each_reported_at_their_line() {
    let items = problems(&format!(
        "journal:\n  max_age: soon\n  max_records: -1\n  max_bytes: 2GB\n{AUTH}"
    ));
    let text: Vec<String> = items.iter().map(ToString::to_string).collect();
    assert_eq!(items.len(), 3, "{text:#?}");
    assert!(
        text[0].starts_with("2:12: journal.max_age: 'soon' is not a duration"),
        "{text:#?}"
    );
    assert!(
        text[1].starts_with("3:16: journal.max_records:"),
        "{text:#?}"
    );
    assert!(
        text[2].starts_with("4:14: journal.max_bytes: '2GB'"),
        "{text:#?}"
    );
}

// --- auth.oauth -------------------------------------------------------------------------

const CLIENT_SECRET: &str = "okta-client-secret-0123456789abcdef";

fn oauth_env() -> FakeEnv {
    token_env().with_var("OKTA_SECRET", CLIENT_SECRET)
}

/// AUTH (lines 1-5) and an `oauth` section from line 6: `  oauth:` then `lines`.
fn oauth_yaml(lines: &str) -> String {
    format!("{AUTH}  oauth:\n{lines}")
}

fn oauth_problems(lines: &str) -> Vec<String> {
    problems_with(&oauth_yaml(lines), &oauth_env())
        .items
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn oauth_clients_are_read_with_their_defaults() {
    let yaml = oauth_yaml(&format!(
        "    clients:
      - client_id: okta
        secret: {{env: OKTA_SECRET}}
      - client_id: 0oa1b2c3-audit
        name: auditor
        read_only: true
        hash: {}
",
        TokenDigest::of(OTHER_TOKEN)
    ));
    let config = parse(&yaml, "config.yaml", &oauth_env()).unwrap_or_else(|e| panic!("{e}"));
    let oauth = config.auth.oauth.expect("auth.oauth");
    assert_eq!(oauth.token_lifetime, std::time::Duration::from_secs(3600));
    let [okta, audit] = oauth.clients.as_slice() else {
        panic!("two clients: {:?}", oauth.clients)
    };
    assert_eq!(
        (okta.client_id.as_str(), okta.name.as_str(), okta.read_only),
        ("okta", "okta", false)
    );
    assert_eq!(okta.digest, TokenDigest::of(CLIENT_SECRET));
    assert_eq!(
        (
            audit.client_id.as_str(),
            audit.name.as_str(),
            audit.read_only
        ),
        ("0oa1b2c3-audit", "auditor", true)
    );
    assert_eq!(audit.digest, TokenDigest::of(OTHER_TOKEN));
    assert!(parse_ok(AUTH).auth.oauth.is_none());
}

#[test]
fn an_endpoint_may_use_oauth_clients_only() {
    let yaml = "auth:\n  oauth:\n    clients:\n      - client_id: okta\n        secret: {env: OKTA_SECRET}\n";
    let config = parse(yaml, "config.yaml", &oauth_env()).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.auth.tokens.is_empty());
    assert_eq!(config.auth.oauth.expect("oauth").clients.len(), 1);
    // An empty client list does not count.
    let problems = problems("auth:\n  oauth:\n    clients: []\n");
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "1:1: auth.tokens: no tokens; at least one is required (e.g. - name: entra, secret: {env: SCIM_BRIDGE_TOKEN})",
            "3:5: auth.oauth.clients: no clients; at least one is required (e.g. - client_id: okta, secret: {env: SCIM_BRIDGE_OKTA_SECRET})",
        ]
    );
}

#[test]
fn token_lifetime_is_1s_to_24h() {
    let yaml = |lifetime: &str| {
        oauth_yaml(&format!(
            "    token_lifetime: {lifetime}\n    clients:\n      - client_id: okta\n        secret: {{env: OKTA_SECRET}}\n"
        ))
    };
    for (text, seconds) in [("1s", 1), ("10m", 600), ("24h", 86_400)] {
        let config =
            parse(&yaml(text), "config.yaml", &oauth_env()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.auth.oauth.expect("oauth").token_lifetime,
            std::time::Duration::from_secs(seconds)
        );
    }
    for text in ["0s", "25h", "2d", "soon", "1"] {
        let problems = problems_with(&yaml(text), &oauth_env()).items;
        assert_eq!(problems.len(), 1, "{text}: {problems:?}");
        assert_eq!(
            problems[0].to_string(),
            format!(
                "7:21: auth.oauth.token_lifetime: '{text}' is not a duration from 1s to 24h (e.g. 1h); it is how long an issued access token is valid"
            )
        );
    }
}

#[test]
fn a_client_needs_a_valid_unique_client_id_and_a_secret_or_a_hash() {
    assert_eq!(
        oauth_problems(
            "    clients:
      - secret: {env: OKTA_SECRET}
      - client_id: 'has space'
        hash: sha256:0000000000000000000000000000000000000000000000000000000000000000
      - client_id: okta
      - client_id: dup
        secret: {value: dup-secret-0123456789abcdef}
      - client_id: dup
        secret: {value: dup-secret-fedcba9876543210}
      - client_id: both
        secret: {env: OKTA_SECRET}
        hash: sha256:0000000000000000000000000000000000000000000000000000000000000000
"
        ),
        [
            "8:9: auth.oauth.clients[0]: missing 'client_id' (e.g. client_id: okta)",
            "9:20: auth.oauth.clients[1].client_id: 'has space' is not a client id (use 1 to 128 printable ASCII characters, without spaces or ':')",
            "11:9: auth.oauth.clients[2]: missing 'secret' or 'hash' (e.g. secret: {env: SCIM_BRIDGE_OKTA_SECRET}, or the hash: line 'scim-bridge token new' prints)",
            "14:20: auth.oauth.clients[4].client_id: 'dup' is already the client_id of auth.oauth.clients[3]; client ids must be unique",
            "16:9: auth.oauth.clients[5]: both 'secret' and 'hash' are set; set exactly one (the hash of a secret is computed, not configured next to it)",
        ]
    );
}

#[test]
fn a_client_name_defaults_to_its_id_and_is_unique_among_tokens_and_clients() {
    assert_eq!(
        oauth_problems(
            "    clients:
      - client_id: entra
        secret: {value: client-secret-1-0123456789abcdef}
      - client_id: 0oa1b2c3@okta
        secret: {value: client-secret-2-0123456789abcdef}
      - client_id: c3
        name: c4
        secret: {value: client-secret-3-0123456789abcdef}
      - client_id: c4
        secret: {value: client-secret-4-0123456789abcdef}
      - client_id: c5
        name: 'bad name'
        secret: {value: client-secret-5-0123456789abcdef}
"
        ),
        [
            "8:20: auth.oauth.clients[0].client_id: 'entra' is already the name of auth.tokens[0]; a client needs a name of its own (name: …)",
            "10:20: auth.oauth.clients[1].client_id: '0oa1b2c3@okta' cannot be the client's name in logs and the journal; give it a name: (1 to 64 of A-Z a-z 0-9 _ . -)",
            "15:20: auth.oauth.clients[3].client_id: 'c4' is already the name of auth.oauth.clients[2]; a client needs a name of its own (name: …)",
            "18:15: auth.oauth.clients[4].name: 'bad name' is not a valid token name (use 1 to 64 of A-Z a-z 0-9 _ . -)",
        ]
    );
}

#[test]
fn a_client_name_must_differ_from_the_jwt_name() {
    let yaml = format!(
        "{AUTH}  jwt:\n{JWT_SETTINGS}  oauth:\n    clients:\n      - client_id: entra-jwt\n        secret: {{env: OKTA_SECRET}}\n"
    );
    let env = jwt_env().with_var("OKTA_SECRET", CLIENT_SECRET);
    let problems: Vec<String> = problems_with(&yaml, &env)
        .items
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].ends_with(
            "auth.oauth.clients[0].client_id: 'entra-jwt' is already the name of auth.jwt; a client needs a name of its own (name: …)"
        ),
        "{problems:#?}"
    );
}

#[test]
fn a_client_secret_is_never_also_a_token_or_another_clients_secret() {
    assert_eq!(
        oauth_problems(&format!(
            "    clients:
      - client_id: same-as-token
        secret: {{value: {TOKEN}}}
      - client_id: a
        secret: {{env: OKTA_SECRET}}
      - client_id: b
        hash: {}
",
            TokenDigest::of(CLIENT_SECRET)
        )),
        [
            "9:9: auth.oauth.clients[0].secret: the literal value has the same value as auth.tokens[0].secret; every token needs its own secret (generate one with: openssl rand -hex 32)",
            "13:15: auth.oauth.clients[2].hash: the hash is the same as auth.oauth.clients[1].secret's; every token needs its own secret ('scim-bridge token new' makes one)",
        ]
    );
    // And a short secret is refused like a token's.
    let problems =
        oauth_problems("    clients:\n      - client_id: a\n        secret: {value: short}\n");
    assert_eq!(
        problems,
        [
            "9:9: auth.oauth.clients[0].secret: the literal value is only 5 bytes; a secret needs at least 16 (generate one with: openssl rand -hex 32)"
        ]
    );
}

#[test]
fn an_endpoints_oauth_problems_are_reported_under_the_endpoint() {
    let yaml = format!(
        "{AUTH}endpoints:
  - name: fabrikam
    auth:
      oauth:
        token_lifetime: 2d
        clients:
          - client_id: fab
            secret: {{env: OKTA_SECRET}}
"
    );
    let problems: Vec<String> = problems_with(&yaml, &oauth_env())
        .items
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        [
            "10:25: endpoints[0].auth.oauth.token_lifetime: '2d' is not a duration from 1s to 24h (e.g. 1h); it is how long an issued access token is valid"
        ]
    );
}

#[test]
fn an_unknown_oauth_key_is_refused() {
    let problems = oauth_problems(
        "    clients:\n      - client_id: a\n        secret: {env: OKTA_SECRET}\n        scope: scim\n",
    );
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].contains("scope"), "{problems:#?}");
}
