//! Stage two: from the file as written ([`RawConfig`]) to a [`Config`] the daemon can
//! trust, applying defaults and checking every rule.
//!
//! Validation never stops early: each check reports into a [`Checker`] and carries on with
//! a placeholder, so one run lists everything that is wrong. Secrets are resolved here
//! (environment variables, files) because "the variable is not set" is a config problem
//! that belongs next to the line that names the variable.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use super::locate::{NodeIndex, did_you_mean};
use super::raw::{
    RawAuth, RawConfig, RawEndpoint, RawJournal, RawJwt, RawLog, RawOAuth, RawOAuthClient, RawRate,
    RawRateLimit, RawSecret, RawServer, RawState, RawToken,
};
use super::{
    AuthConfig, Config, EndpointConfig, Environment, JournalConfig, JwtConfig, LogConfig,
    LogFormat, OAuthClientConfig, OAuthConfig, Problem, Rate, RateLimitConfig, Secret,
    ServerConfig, StateConfig, TokenConfig, TokenDigest,
};

const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 8080);
const DEFAULT_BASE_PATH: &str = "/scim/v2";
const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
const MIN_MAX_BODY_BYTES: usize = 1024;
const MAX_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
const DEFAULT_PAGE_SIZE: usize = 100;
const DEFAULT_MAX_PAGE_SIZE: usize = 1000;
const MAX_MAX_PAGE_SIZE: usize = 100_000;
const DEFAULT_STATE_DIR: &str = "./state";
const DEFAULT_LOG_LEVEL: &str = "info";
const MIN_SECRET_BYTES: usize = 16;
const MAX_TOKEN_NAME: usize = 64;
const MAKE_SECRET: &str = "generate one with: openssl rand -hex 32";
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Collects problems, each pointed at its node through the index.
pub(super) struct Checker<'a> {
    index: &'a NodeIndex,
    problems: Vec<Problem>,
    /// Prepended to every reported path: `endpoints[1].` while an endpoint's own `auth`,
    /// `target` and `mapping` are checked with the same rules as the top-level ones.
    prefix: String,
}

impl Checker<'_> {
    pub(super) fn problem_count(&self) -> usize {
        self.problems.len()
    }

    pub(super) fn report(&mut self, path: &str, message: String) {
        let path = format!("{}{path}", self.prefix);
        let pos = self.index.position(&path);
        self.problems.push(Problem {
            path,
            line: pos.line,
            column: pos.column,
            message,
        });
    }
}

/// Turns the raw file into a [`Config`], or every problem found, in file order.
pub(super) fn validate(
    raw: RawConfig,
    index: &NodeIndex,
    env: &dyn Environment,
) -> Result<Config, Vec<Problem>> {
    let mut checker = Checker {
        index,
        problems: Vec::new(),
        prefix: String::new(),
    };
    let config = Config {
        server: server(&mut checker, raw.server.unwrap_or_default()),
        state: state(&mut checker, raw.state.unwrap_or_default()),
        auth: auth(&mut checker, raw.auth.unwrap_or_default(), env),
        log: log(&mut checker, raw.log.unwrap_or_default()),
        journal: journal(&mut checker, raw.journal.unwrap_or_default()),
        target: None,
        rate_limit: rate_limit(&mut checker, raw.rate_limit),
        endpoints: Vec::new(),
    };
    let mut config = config;
    config.target = super::mapping::target(
        &mut checker,
        raw.target,
        raw.mapping,
        &config.state.dir,
        env,
    );
    config.endpoints = endpoints(
        &mut checker,
        raw.endpoints.unwrap_or_default(),
        &config,
        env,
    );
    let mut problems = checker.problems;
    if problems.is_empty() {
        Ok(config)
    } else {
        // Stable: problems on the same node keep the order the rules ran in.
        problems.sort_by_key(|p| (p.line, p.column));
        Err(problems)
    }
}

fn server(checker: &mut Checker<'_>, raw: RawServer) -> ServerConfig {
    let listen = match raw.listen {
        None => DEFAULT_LISTEN,
        Some(text) => text.parse::<SocketAddr>().unwrap_or_else(|_| {
            checker.report(
                "server.listen",
                format!("'{text}' is not an address:port (e.g. 127.0.0.1:8080)"),
            );
            DEFAULT_LISTEN
        }),
    };

    let base_path = match raw.base_path {
        None => DEFAULT_BASE_PATH.to_owned(),
        Some(text) => {
            if let Some(message) = base_path_problem(&text) {
                checker.report("server.base_path", message);
            }
            text
        }
    };

    let public_url = raw.public_url.inspect(|text| {
        if let Some(message) = public_url_problem(text) {
            checker.report("server.public_url", message);
        }
    });

    let max_body_bytes = number(
        checker,
        "server.max_body_bytes",
        raw.max_body_bytes.as_deref(),
        DEFAULT_MAX_BODY_BYTES,
        (MIN_MAX_BODY_BYTES, MAX_MAX_BODY_BYTES),
        "bytes, e.g. 1048576 for 1 MiB",
    );
    let max_page_size = number(
        checker,
        "server.max_page_size",
        raw.max_page_size.as_deref(),
        DEFAULT_MAX_PAGE_SIZE,
        (1, MAX_MAX_PAGE_SIZE),
        "e.g. 1000",
    );
    let page_size = number(
        checker,
        "server.page_size",
        raw.page_size.as_deref(),
        DEFAULT_PAGE_SIZE,
        (1, MAX_MAX_PAGE_SIZE),
        "e.g. 100",
    );
    if let (Some(page), Some(max)) = (page_size, max_page_size)
        && page > max
    {
        // Point at whichever of the two the file actually spells out.
        if checker.index.contains("server.page_size") {
            checker.report(
                    "server.page_size",
                    format!(
                        "{page} is larger than server.max_page_size ({max}); lower it or raise server.max_page_size"
                    ),
                );
        } else {
            checker.report(
                    "server.max_page_size",
                    format!(
                        "{max} is smaller than the default server.page_size ({page}); raise it or set server.page_size to at most {max}"
                    ),
                );
        }
    }

    let mut trusted_proxies = Vec::new();
    for (i, text) in raw.trusted_proxies.unwrap_or_default().iter().enumerate() {
        match super::IpNet::parse(text) {
            Some(net) => trusted_proxies.push(net),
            None => checker.report(
                &format!("server.trusted_proxies[{i}]"),
                format!("'{text}' is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/8)"),
            ),
        }
    }
    let request_timeout = match raw.request_timeout {
        None => DEFAULT_REQUEST_TIMEOUT,
        Some(text) => match parse_duration(&text).filter(|d| !d.is_zero()) {
            Some(d) => d,
            None => {
                checker.report(
                    "server.request_timeout",
                    format!("'{text}' is not a duration (e.g. 30s)"),
                );
                DEFAULT_REQUEST_TIMEOUT
            }
        },
    };
    let ready_max_pending = number(
        checker,
        "server.ready_max_pending",
        raw.ready_max_pending.as_deref(),
        DEFAULT_READY_MAX_PENDING,
        (1, usize::MAX),
        "deliveries, e.g. 10000",
    );

    let max_header_bytes = number(
        checker,
        "server.max_header_bytes",
        raw.max_header_bytes.as_deref(),
        64 * 1024,
        (8 * 1024, 1024 * 1024),
        "bytes, e.g. 65536",
    )
    .unwrap_or(64 * 1024);
    let max_json_depth = number(
        checker,
        "server.max_json_depth",
        raw.max_json_depth.as_deref(),
        32,
        (4, 128),
        "levels of nested arrays and objects, e.g. 32",
    )
    .unwrap_or(32);
    let max_filter_bytes = number(
        checker,
        "server.max_filter_bytes",
        raw.max_filter_bytes.as_deref(),
        4096,
        (64, 1024 * 1024),
        "bytes, e.g. 4096",
    )
    .unwrap_or(4096);

    let header_read_timeout = match raw.header_read_timeout {
        None => DEFAULT_HEADER_READ_TIMEOUT,
        Some(text) => match parse_duration(&text).filter(|d| !d.is_zero()) {
            Some(d) => d,
            None => {
                checker.report(
                    "server.header_read_timeout",
                    format!("'{text}' is not a duration (e.g. 10s)"),
                );
                DEFAULT_HEADER_READ_TIMEOUT
            }
        },
    };
    let max_connections = number(
        checker,
        "server.max_connections",
        raw.max_connections.as_deref(),
        DEFAULT_MAX_CONNECTIONS,
        (1, 1_000_000),
        "connections, e.g. 768",
    )
    .unwrap_or(DEFAULT_MAX_CONNECTIONS);
    let max_connections_per_client = number(
        checker,
        "server.max_connections_per_client",
        raw.max_connections_per_client.as_deref(),
        DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        (1, 1_000_000),
        "connections, e.g. 256",
    )
    .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_CLIENT);

    let tls = raw.tls.map(|t| {
        let mut file = |key: &str, value: Option<String>| match value {
            Some(v) if !v.trim().is_empty() => std::path::PathBuf::from(v),
            _ => {
                checker.report(
                    &format!("server.tls.{key}"),
                    format!("TLS needs '{key}:' (a PEM file)"),
                );
                std::path::PathBuf::new()
            }
        };
        super::ServerTls {
            cert_file: file("cert_file", t.cert_file),
            key_file: file("key_file", t.key_file),
        }
    });
    let unix_socket = match raw.unix_socket {
        Some(p) if p.trim().is_empty() => {
            checker.report(
                "server.unix_socket",
                "'' is empty; give a path (e.g. /run/scim-bridge/scim.sock)".into(),
            );
            None
        }
        other => other.map(std::path::PathBuf::from),
    };

    ServerConfig {
        tls,
        unix_socket,
        max_header_bytes,
        max_json_depth,
        max_filter_bytes,
        header_read_timeout,
        max_connections,
        max_connections_per_client,
        listen,
        base_path,
        public_url,
        max_body_bytes: max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        page_size: page_size.unwrap_or(DEFAULT_PAGE_SIZE),
        max_page_size: max_page_size.unwrap_or(DEFAULT_MAX_PAGE_SIZE),
        trusted_proxies,
        request_timeout,
        ready_max_pending: ready_max_pending.unwrap_or(DEFAULT_READY_MAX_PENDING) as u64,
    }
}

/// Checks the further endpoints: each with the rules of the top-level sections, its
/// problems reported under `endpoints[i].`.
fn endpoints(
    checker: &mut Checker<'_>,
    raw: Vec<RawEndpoint>,
    config: &Config,
    env: &dyn Environment,
) -> Vec<EndpointConfig> {
    let mut out: Vec<EndpointConfig> = Vec::new();
    for (i, raw) in raw.into_iter().enumerate() {
        let at = format!("endpoints[{i}]");
        let name = raw.name.unwrap_or_default();
        let name_ok = !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            checker.report(
                &format!("{at}.name"),
                format!("'{name}' is not an endpoint name (1 to 32 of a-z, 0-9 and -)"),
            );
        } else if name == crate::engine::DEFAULT_ENDPOINT || out.iter().any(|e| e.name == name) {
            checker.report(
                &format!("{at}.name"),
                format!(
                    "'{name}' is taken (names are unique, and 'default' is the top-level endpoint)"
                ),
            );
        }
        let base_path = match raw.base_path {
            Some(text) => {
                if let Some(message) = base_path_problem(&text) {
                    checker.report(&format!("{at}.base_path"), message);
                }
                text
            }
            None => format!("/scim/{name}/v2"),
        };
        let clash = std::iter::once(config.server.base_path.as_str())
            .chain(out.iter().map(|e| e.base_path.as_str()))
            .find(|other| {
                *other == base_path
                    || base_path.starts_with(&format!("{other}/"))
                    || other.starts_with(&format!("{base_path}/"))
            })
            .map(str::to_string);
        if let Some(other) = clash {
            checker.report(
                &format!("{at}.base_path"),
                format!("'{base_path}' overlaps the endpoint at '{other}'; give each endpoint its own path"),
            );
        }
        let state_dir = match raw.state_dir {
            Some(p) if !p.trim().is_empty() => std::path::PathBuf::from(p),
            _ => config.state.dir.join("endpoints").join(&name),
        };
        if state_dir == config.state.dir || out.iter().any(|e| e.state_dir == state_dir) {
            checker.report(
                &format!("{at}.state_dir"),
                format!(
                    "'{}' is another endpoint's state directory",
                    state_dir.display()
                ),
            );
        }
        checker.prefix = format!("{at}.");
        let auth = auth(checker, raw.auth.unwrap_or_default(), env);
        let target = super::mapping::target(checker, raw.target, raw.mapping, &state_dir, env);
        checker.prefix.clear();
        out.push(EndpointConfig {
            name,
            base_path,
            state_dir,
            auth,
            target,
        });
    }
    out
}

const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
const DEFAULT_HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const DEFAULT_MAX_CONNECTIONS: usize = 768;
const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;
const DEFAULT_READY_MAX_PENDING: usize = 10_000;

fn rate_limit(checker: &mut Checker<'_>, raw: Option<RawRateLimit>) -> RateLimitConfig {
    let defaults = RateLimitConfig::default();
    let Some(raw) = raw else {
        return defaults;
    };
    let mut rate = |key: &str, raw: Option<RawRate>, default: Option<Rate>| -> Option<Rate> {
        let Some(raw) = raw else { return default };
        let fallback = default.unwrap_or(Rate {
            per_second: 100,
            burst: 1000,
        });
        let per_second = number(
            checker,
            &format!("rate_limit.{key}.per_second"),
            raw.per_second.as_deref(),
            fallback.per_second as usize,
            (0, 1_000_000),
            "requests per second; 0 turns this limit off",
        )?;
        let burst = number(
            checker,
            &format!("rate_limit.{key}.burst"),
            raw.burst.as_deref(),
            (fallback.burst as usize).max(per_second),
            (1, 10_000_000),
            "requests allowed at once above the rate",
        )?;
        (per_second > 0).then_some(Rate {
            per_second: per_second as u32,
            burst: burst as u32,
        })
    };
    RateLimitConfig {
        per_token: rate("per_token", raw.per_token, defaults.per_token),
        per_client: rate("per_client", raw.per_client, defaults.per_client),
    }
}

/// A whole number in `range` (inclusive), or the default when absent. `None` when the
/// value is invalid (already reported), so dependent checks can skip it.
fn number(
    checker: &mut Checker<'_>,
    path: &str,
    text: Option<&str>,
    default: usize,
    (min, max): (usize, usize),
    example: &str,
) -> Option<usize> {
    let Some(text) = text else {
        return Some(default);
    };
    let Ok(n) = text.parse::<usize>() else {
        checker.report(path, format!("'{text}' is not a whole number ({example})"));
        return None;
    };
    if !(min..=max).contains(&n) {
        checker.report(
            path,
            format!(
                "{n} is out of range (must be {} to {})",
                with_size(path, min),
                with_size(path, max)
            ),
        );
        return None;
    }
    Some(n)
}

/// Byte limits read better with their binary unit next to them.
fn with_size(path: &str, n: usize) -> String {
    if !path.ends_with("_bytes") {
        return n.to_string();
    }
    if n >= 1024 * 1024 && n.is_multiple_of(1024 * 1024) {
        format!("{n} ({} MiB)", n / (1024 * 1024))
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{n} ({} KiB)", n / 1024)
    } else {
        n.to_string()
    }
}

/// Characters RFC 3986 allows in a path segment, besides `/` and letters/digits.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@%/".contains(c)
}

fn base_path_problem(text: &str) -> Option<String> {
    if text.is_empty() {
        return Some("'' is empty; use a path such as /scim/v2".to_owned());
    }
    if let Some(c) = text.chars().find(|&c| !is_path_char(c)) {
        return Some(format!(
            "'{text}' contains {c:?}, which cannot appear in a URL path (e.g. /scim/v2)"
        ));
    }
    if !text.starts_with('/') {
        return Some(format!("'{text}' must start with '/' (use /{text})"));
    }
    if text == "/" {
        return Some(
            "'/' must not end with '/'; the SCIM endpoints need a prefix (e.g. /scim/v2)"
                .to_owned(),
        );
    }
    if text.ends_with('/') {
        return Some(format!(
            "'{text}' must not end with '/' (use {})",
            text.trim_end_matches('/')
        ));
    }
    if text.contains("//") {
        let mut fixed = text.to_owned();
        while fixed.contains("//") {
            fixed = fixed.replace("//", "/");
        }
        return Some(format!("'{text}' has an empty segment (use {fixed})"));
    }
    None
}

fn public_url_problem(text: &str) -> Option<String> {
    const EXAMPLE: &str = "e.g. https://scim.example.com/scim/v2";
    let lower = text.to_ascii_lowercase();
    let Some(rest) = ["https://", "http://"]
        .iter()
        .find(|scheme| lower.starts_with(*scheme))
        .map(|scheme| &text[scheme.len()..])
    else {
        return Some(format!(
            "'{text}' is not an absolute http(s) URL ({EXAMPLE})"
        ));
    };
    if let Some(c) = text
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
    {
        return Some(format!(
            "'{text}' contains {c:?}; percent-encode it or leave it out ({EXAMPLE})"
        ));
    }
    if text.contains(['?', '#']) {
        return Some(format!(
            "'{text}' must not have a query or fragment ({EXAMPLE})"
        ));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() {
        return Some(format!("'{text}' has no host ({EXAMPLE})"));
    }
    if authority.contains('@') {
        return Some(format!(
            "'{text}' must not contain credentials ('user@') ({EXAMPLE})"
        ));
    }
    // The port is what follows the last ':' outside an IPv6 literal's brackets.
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    if let Some(colon) = authority[host_end..].rfind(':') {
        let port = &authority[host_end + colon + 1..];
        if port.parse::<u16>().is_err() {
            return Some(format!("'{text}' has an invalid port '{port}' ({EXAMPLE})"));
        }
        if host_end + colon == 0 {
            return Some(format!("'{text}' has no host ({EXAMPLE})"));
        }
    }
    if !path.is_empty() && text.ends_with('/') {
        return Some(format!(
            "'{text}' must not end with '/' (use {})",
            text.trim_end_matches('/')
        ));
    }
    if path.contains("//") {
        return Some(format!("'{text}' has an empty path segment ({EXAMPLE})"));
    }
    None
}

fn journal(checker: &mut Checker<'_>, raw: RawJournal) -> JournalConfig {
    let archive_dir = match raw.archive_dir {
        Some(text) if text.is_empty() => {
            checker.report(
                "journal.archive_dir",
                "'' is empty; give a directory (e.g. /var/backups/scim-bridge) or leave it out"
                    .to_owned(),
            );
            None
        }
        other => other.map(PathBuf::from),
    };
    let max_age = raw.max_age.and_then(|text| match parse_duration(&text) {
        Some(d) if !d.is_zero() => Some(d),
        _ => {
            checker.report(
                "journal.max_age",
                format!(
                    "'{text}' is not a duration; use a number with s, m, h or d (e.g. 90d, 12h)"
                ),
            );
            None
        }
    });
    let positive = |checker: &mut Checker<'_>, path: &str, text: Option<String>, example: &str| {
        text.and_then(|t| match parse_size(&t) {
            Some(n) if n > 0 => Some(n),
            _ => {
                checker.report(
                    path,
                    format!("'{t}' is not a positive whole number ({example})"),
                );
                None
            }
        })
    };
    let max_records = positive(
        checker,
        "journal.max_records",
        raw.max_records,
        "e.g. 1000000",
    );
    let max_bytes = positive(
        checker,
        "journal.max_bytes",
        raw.max_bytes,
        "bytes, or with KiB, MiB, GiB: e.g. 2GiB",
    );
    JournalConfig {
        archive_dir,
        max_age,
        max_records,
        max_bytes,
    }
}

/// `90d`, `12h`, `30m`, `45s`.
pub(super) fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let seconds = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(n.checked_mul(seconds)?))
}

/// `1000`, `64KiB`, `512MiB`, `2GiB`.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

fn state(checker: &mut Checker<'_>, raw: RawState) -> StateConfig {
    let dir = match raw.dir {
        None => DEFAULT_STATE_DIR.to_owned(),
        Some(text) => {
            if text.is_empty() {
                checker.report(
                    "state.dir",
                    "'' is empty; give a directory (e.g. ./state or /var/lib/scim-bridge)"
                        .to_owned(),
                );
            }
            text
        }
    };
    StateConfig {
        dir: PathBuf::from(dir),
    }
}

fn auth(checker: &mut Checker<'_>, raw: RawAuth, env: &dyn Environment) -> AuthConfig {
    let RawAuth {
        tokens: raw_tokens,
        jwt: raw_jwt,
        oauth: raw_oauth,
    } = raw;
    let raw_tokens = raw_tokens.unwrap_or_default();
    // OAuth clients alone are enough: an identity provider using the token endpoint
    // needs no static token.
    let has_clients = raw_oauth
        .as_ref()
        .and_then(|o| o.clients.as_ref())
        .is_some_and(|c| !c.is_empty());
    if raw_tokens.is_empty() && !has_clients {
        checker.report(
            "auth.tokens",
            "no tokens; at least one is required (e.g. - name: entra, secret: {env: SCIM_BRIDGE_TOKEN})"
                .to_owned(),
        );
    }
    let mut tokens: Vec<TokenConfig> = Vec::new();
    // What each earlier token resolved to, for the uniqueness checks.
    let mut names: Vec<(usize, String)> = Vec::new();
    let mut digests: Vec<Earlier> = Vec::new();
    for (i, raw_token) in raw_tokens.into_iter().enumerate() {
        let at = format!("auth.tokens[{i}]");
        let RawToken {
            name,
            secret,
            hash,
            read_only,
        } = raw_token;
        let name = token_name(checker, &at, name, &names);
        if let Some(name) = &name {
            names.push((i, name.clone()));
        }
        let read_only =
            super::mapping::flag(checker, &format!("{at}.read_only"), read_only.as_deref());
        let digest = secret_digest(
            checker,
            &at,
            secret,
            hash,
            env,
            &mut digests,
            "SCIM_BRIDGE_TOKEN",
        );
        if let Some(digest) = digest
            && let Some(name) = name
        {
            tokens.push(TokenConfig {
                name,
                digest,
                read_only,
            });
        }
    }
    let jwt = raw_jwt.and_then(|raw| jwt(checker, raw, env, &names));
    let oauth = raw_oauth.map(|raw| {
        let mut taken: Vec<(String, String)> = names
            .iter()
            .map(|(j, name)| (name.clone(), format!("auth.tokens[{j}]")))
            .collect();
        if let Some(jwt) = &jwt {
            taken.push((jwt.name.clone(), "auth.jwt".to_owned()));
        }
        oauth(checker, raw, env, taken, &mut digests)
    });
    AuthConfig { tokens, jwt, oauth }
}

const DEFAULT_TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);
const MAX_TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
const MAX_CLIENT_ID: usize = 128;

/// Whether `id` can be an OAuth client id: 1 to 128 printable ASCII characters, no
/// spaces and no `:` (which separates the id from the secret in HTTP Basic).
fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_ID
        && id.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// `auth.oauth`: the clients (ids unique; names unique among the tokens, the JWT and the
/// clients; secrets unique among them all, so a client secret is never also a bearer
/// token) and the lifetime of the tokens issued.
fn oauth(
    checker: &mut Checker<'_>,
    raw: RawOAuth,
    env: &dyn Environment,
    // The names already given, and where: `auth.tokens[0]`, `auth.jwt`.
    mut taken: Vec<(String, String)>,
    digests: &mut Vec<Earlier>,
) -> OAuthConfig {
    let token_lifetime = match raw.token_lifetime {
        None => DEFAULT_TOKEN_LIFETIME,
        Some(text) => {
            match parse_duration(&text).filter(|d| !d.is_zero() && *d <= MAX_TOKEN_LIFETIME) {
                Some(d) => d,
                None => {
                    checker.report(
                    "auth.oauth.token_lifetime",
                    format!(
                        "'{text}' is not a duration from 1s to 24h (e.g. 1h); it is how long an issued access token is valid"
                    ),
                );
                    DEFAULT_TOKEN_LIFETIME
                }
            }
        }
    };
    let raw_clients = raw.clients.unwrap_or_default();
    if raw_clients.is_empty() {
        let at = if checker.index.contains("auth.oauth.clients") {
            "auth.oauth.clients"
        } else {
            "auth.oauth"
        };
        checker.report(
            at,
            "no clients; at least one is required (e.g. - client_id: okta, secret: {env: SCIM_BRIDGE_OKTA_SECRET})"
                .to_owned(),
        );
    }
    let mut clients = Vec::new();
    let mut ids: Vec<(usize, String)> = Vec::new();
    for (i, raw_client) in raw_clients.into_iter().enumerate() {
        let at = format!("auth.oauth.clients[{i}]");
        let RawOAuthClient {
            client_id,
            secret,
            hash,
            name,
            read_only,
        } = raw_client;
        let client_id = match client_id {
            None => {
                checker.report(&at, "missing 'client_id' (e.g. client_id: okta)".to_owned());
                None
            }
            Some(id) if !valid_client_id(&id) => {
                checker.report(
                    &format!("{at}.client_id"),
                    format!(
                        "'{id}' is not a client id (use 1 to {MAX_CLIENT_ID} printable ASCII characters, without spaces or ':')"
                    ),
                );
                None
            }
            Some(id) => match ids.iter().find(|(_, other)| *other == id) {
                Some((j, _)) => {
                    checker.report(
                        &format!("{at}.client_id"),
                        format!(
                            "'{id}' is already the client_id of auth.oauth.clients[{j}]; client ids must be unique"
                        ),
                    );
                    None
                }
                None => {
                    ids.push((i, id.clone()));
                    Some(id)
                }
            },
        };
        // The actor name, and the key it was read from.
        let name = match (name, &client_id) {
            (Some(name), _) if !valid_token_name(&name) => {
                checker.report(
                    &format!("{at}.name"),
                    format!(
                        "'{name}' is not a valid token name (use 1 to {MAX_TOKEN_NAME} of A-Z a-z 0-9 _ . -)"
                    ),
                );
                None
            }
            (Some(name), _) => Some((name, "name")),
            (None, Some(id)) if !valid_token_name(id) => {
                checker.report(
                    &format!("{at}.client_id"),
                    format!(
                        "'{id}' cannot be the client's name in logs and the journal; give it a name: (1 to {MAX_TOKEN_NAME} of A-Z a-z 0-9 _ . -)"
                    ),
                );
                None
            }
            (None, Some(id)) => Some((id.clone(), "client_id")),
            (None, None) => None,
        };
        let name = match name {
            Some((name, key)) => match taken.iter().find(|(other, _)| *other == name) {
                Some((_, other)) => {
                    checker.report(
                        &format!("{at}.{key}"),
                        format!(
                            "'{name}' is already the name of {other}; a client needs a name of its own (name: …)"
                        ),
                    );
                    None
                }
                None => {
                    taken.push((name.clone(), at.clone()));
                    Some(name)
                }
            },
            None => None,
        };
        let read_only =
            super::mapping::flag(checker, &format!("{at}.read_only"), read_only.as_deref());
        let digest = secret_digest(
            checker,
            &at,
            secret,
            hash,
            env,
            digests,
            "SCIM_BRIDGE_OKTA_SECRET",
        );
        if let Some(digest) = digest
            && let (Some(client_id), Some(name)) = (client_id, name)
        {
            clients.push(OAuthClientConfig {
                client_id,
                name,
                digest,
                read_only,
            });
        }
    }
    OAuthConfig {
        clients,
        token_lifetime,
    }
}

/// How the message points the reader at `scim-bridge token new`.
const MAKE_TOKEN: &str = "'scim-bridge token new'";

/// A token (or OAuth client) already validated, for the uniqueness check: which entry
/// (`auth.tokens[j]`, `auth.oauth.clients[j]`), and whether its digest came from a
/// `secret` or a `hash`.
/// The digest of a token's or client's secret, from exactly one of `secret:` and
/// `hash:` (problems reported at `at`), checked against the `earlier` ones and added to
/// them. `example` names an environment variable for the hint.
fn secret_digest(
    checker: &mut Checker<'_>,
    at: &str,
    secret: Option<RawSecret>,
    hash: Option<String>,
    env: &dyn Environment,
    earlier: &mut Vec<Earlier>,
    example: &str,
) -> Option<TokenDigest> {
    let (digest, key) = match (secret, hash) {
        (None, None) => {
            checker.report(
                at,
                format!(
                    "missing 'secret' or 'hash' (e.g. secret: {{env: {example}}}, or the hash: line {MAKE_TOKEN} prints)"
                ),
            );
            return None;
        }
        (Some(_), Some(_)) => {
            checker.report(
                at,
                "both 'secret' and 'hash' are set; set exactly one (the hash of a secret is computed, not configured next to it)"
                    .to_owned(),
            );
            return None;
        }
        (Some(raw_secret), None) => (
            TokenDigest::of(token_secret(checker, at, raw_secret, env, earlier)?.expose()),
            "secret",
        ),
        (None, Some(text)) => (token_hash(checker, at, &text, earlier)?, "hash"),
    };
    earlier.push(Earlier {
        at: at.to_string(),
        key,
        digest,
    });
    Some(digest)
}

struct Earlier {
    at: String,
    key: &'static str,
    digest: TokenDigest,
}

impl Earlier {
    /// The earlier entry with this digest, as `auth.tokens[j].secret` / `.hash`.
    fn same_as(earlier: &[Earlier], digest: &TokenDigest) -> Option<String> {
        earlier
            .iter()
            .find(|e| e.digest.matches(digest))
            .map(|e| format!("{}.{}", e.at, e.key))
    }
}

/// Whether `name` can name a token (1 to 64 of `A-Z a-z 0-9 _ . -`: it shows up in logs,
/// metrics and the journal as the actor).
pub fn valid_token_name(name: &str) -> bool {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    !name.is_empty() && name.len() <= MAX_TOKEN_NAME && name.chars().all(valid_char)
}

fn token_name(
    checker: &mut Checker<'_>,
    at: &str,
    name: Option<String>,
    earlier: &[(usize, String)],
) -> Option<String> {
    let path = format!("{at}.name");
    let Some(name) = name else {
        checker.report(at, "missing 'name' (e.g. name: entra)".to_owned());
        return None;
    };
    if !valid_token_name(&name) {
        checker.report(
            &path,
            format!(
                "'{name}' is not a valid token name (use 1 to {MAX_TOKEN_NAME} of A-Z a-z 0-9 _ . -)"
            ),
        );
        return None;
    }
    if let Some((j, _)) = earlier.iter().find(|(_, other)| *other == name) {
        checker.report(
            &path,
            format!("'{name}' is already the name of auth.tokens[{j}]; token names must be unique"),
        );
        return None;
    }
    Some(name)
}

/// `hash: sha256:<64 hex digits>`. The text is never repeated in a message: a token
/// pasted here by mistake must not end up in a log.
fn token_hash(
    checker: &mut Checker<'_>,
    at: &str,
    text: &str,
    earlier: &[Earlier],
) -> Option<TokenDigest> {
    let path = format!("{at}.hash");
    let digest = match TokenDigest::parse(text) {
        Ok(digest) => digest,
        Err(what) => {
            checker.report(
                &path,
                format!(
                    "the hash {what}; write 'sha256:' and 64 hex digits, as {MAKE_TOKEN} prints them"
                ),
            );
            return None;
        }
    };
    if let Some(other) = Earlier::same_as(earlier, &digest) {
        checker.report(
            &path,
            format!(
                "the hash is the same as {other}'s; every token needs its own secret ({MAKE_TOKEN} makes one)"
            ),
        );
        return None;
    }
    Some(digest)
}

const DEFAULT_JWT_NAME: &str = "entra-jwt";
const DEFAULT_JWT_LEEWAY: std::time::Duration = std::time::Duration::from_secs(60);
const MAX_JWT_LEEWAY: std::time::Duration = std::time::Duration::from_secs(600);
/// The audience of Entra's tokens for every non-gallery application.
const ENTRA_AUDIENCE: &str = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621";

/// `auth.jwt`: every setting checked, the key file read and parsed now (a bad file is a
/// config problem at `jwks_file`, not a 401 at the first request).
fn jwt(
    checker: &mut Checker<'_>,
    raw: RawJwt,
    env: &dyn Environment,
    token_names: &[(usize, String)],
) -> Option<JwtConfig> {
    let before = checker.problem_count();
    let issuer = match raw.issuer {
        None => {
            checker.report(
                "auth.jwt",
                "missing 'issuer' (for Entra: issuer: https://sts.windows.net/<tenant-id>/)"
                    .to_owned(),
            );
            String::new()
        }
        Some(text) => {
            if let Some(message) = issuer_problem(&text) {
                checker.report("auth.jwt.issuer", message);
            }
            text
        }
    };
    let audience = match raw.audience {
        None => {
            checker.report(
                "auth.jwt",
                format!(
                    "missing 'audience' (for an Entra non-gallery app: audience: {ENTRA_AUDIENCE})"
                ),
            );
            String::new()
        }
        Some(text) if text.trim().is_empty() || text.trim() != text => {
            checker.report(
                "auth.jwt.audience",
                format!(
                    "'{text}' is empty or has surrounding spaces; the audience is compared exactly (for an Entra non-gallery app: {ENTRA_AUDIENCE})"
                ),
            );
            text
        }
        Some(text) => text,
    };
    let name = match raw.name {
        None => DEFAULT_JWT_NAME.to_owned(),
        Some(name) => {
            if !valid_token_name(&name) {
                checker.report(
                    "auth.jwt.name",
                    format!(
                        "'{name}' is not a valid token name (use 1 to {MAX_TOKEN_NAME} of A-Z a-z 0-9 _ . -)"
                    ),
                );
            }
            name
        }
    };
    if let Some((j, _)) = token_names.iter().find(|(_, other)| *other == name) {
        let at = if checker.index.contains("auth.jwt.name") {
            "auth.jwt.name"
        } else {
            "auth.jwt"
        };
        checker.report(
            at,
            format!(
                "'{name}' is already the name of auth.tokens[{j}]; JWTs need a name of their own (name: …)"
            ),
        );
    }
    let leeway = match raw.leeway {
        None => DEFAULT_JWT_LEEWAY,
        Some(text) => match parse_duration(&text).filter(|d| *d <= MAX_JWT_LEEWAY) {
            Some(d) => d,
            None => {
                checker.report(
                    "auth.jwt.leeway",
                    format!(
                        "'{text}' is not a duration of at most 10m (e.g. 60s); it is the clock skew allowed on exp and nbf"
                    ),
                );
                DEFAULT_JWT_LEEWAY
            }
        },
    };
    let read_only = super::mapping::flag(checker, "auth.jwt.read_only", raw.read_only.as_deref());
    let keys = match raw.jwks_file {
        None => {
            checker.report(
                "auth.jwt",
                "missing 'jwks_file' (the tenant's signing keys, e.g. saved from https://login.microsoftonline.com/<tenant-id>/discovery/v2.0/keys)"
                    .to_owned(),
            );
            None
        }
        Some(file) if file.trim().is_empty() => {
            checker.report(
                "auth.jwt.jwks_file",
                "'' is empty; give the path of the JWKS file".to_owned(),
            );
            None
        }
        Some(file) => match env.read_file(std::path::Path::new(&file)) {
            Err(err) => {
                checker.report(
                    "auth.jwt.jwks_file",
                    format!(
                        "JWKS file {file} cannot be read: {}",
                        lower_first(&err.to_string())
                    ),
                );
                None
            }
            Ok(text) => match crate::http::jwt::Jwks::parse(&text) {
                Ok(keys) => Some((PathBuf::from(file), keys)),
                Err(what) => {
                    checker.report("auth.jwt.jwks_file", format!("JWKS file {file} {what}"));
                    None
                }
            },
        },
    };
    let (jwks_file, keys) = keys?;
    (checker.problem_count() == before).then(|| JwtConfig {
        name,
        issuer,
        audience,
        leeway,
        jwks_file,
        keys: std::sync::Arc::new(keys),
        read_only,
    })
}

fn issuer_problem(text: &str) -> Option<String> {
    const EXAMPLE: &str = "for Entra: https://sts.windows.net/<tenant-id>/";
    if !text.starts_with("https://") || text.len() == "https://".len() {
        return Some(format!(
            "'{text}' is not an https URL; the issuer is compared exactly ({EXAMPLE})"
        ));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "'{text}' contains spaces or control characters; the issuer is compared exactly ({EXAMPLE})"
        ));
    }
    // Entra's v1 issuer ends with '/'; without it no token would ever match.
    if text.starts_with("https://sts.windows.net/") && !text.ends_with('/') {
        return Some(format!(
            "'{text}' must end with '/' as Entra's issuer does (use {text}/)"
        ));
    }
    None
}

fn token_secret(
    checker: &mut Checker<'_>,
    at: &str,
    raw: RawSecret,
    env: &dyn Environment,
    earlier: &[Earlier],
) -> Option<Secret> {
    let path = format!("{at}.secret");
    let RawSecret {
        env: var,
        file,
        value,
    } = raw;
    let given: Vec<&str> = [("env", &var), ("file", &file), ("value", &value)]
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| *k)
        .collect();
    if given.len() != 1 {
        let what = match given.as_slice() {
            [] => "no source given".to_owned(),
            [a, b] => format!("both '{a}' and '{b}' are set"),
            _ => "'env', 'file' and 'value' are all set".to_owned(),
        };
        checker.report(
            &path,
            format!("{what}; set exactly one of env, file or value"),
        );
        return None;
    }

    // `origin` names where the value came from, for messages that must not show it.
    let (origin, text) = if let Some(var) = var {
        if var.is_empty() {
            checker.report(
                &path,
                "env: '' is empty; name an environment variable (e.g. SCIM_BRIDGE_TOKEN)"
                    .to_owned(),
            );
            return None;
        }
        let Some(text) = env.var(&var) else {
            checker.report(&path, format!("environment variable {var} is not set"));
            return None;
        };
        (format!("environment variable {var}"), text)
    } else if let Some(file) = file {
        if file.is_empty() {
            checker.report(
                &path,
                "file: '' is empty; give the path of the file holding the secret".to_owned(),
            );
            return None;
        }
        let mut text = match env.read_file(std::path::Path::new(&file)) {
            Ok(text) => text,
            Err(err) => {
                checker.report(
                    &path,
                    format!(
                        "secret file {file} cannot be read: {}",
                        lower_first(&err.to_string())
                    ),
                );
                return None;
            }
        };
        // Editors and `echo` add a final newline that is not part of the secret.
        let kept = text.trim_end_matches(['\n', '\r']).len();
        text.truncate(kept);
        (format!("secret file {file}"), text)
    } else if let Some(text) = value {
        tracing::warn!(
            token = at,
            "token secret is a literal in the config file; prefer env or file"
        );
        ("the literal value".to_owned(), text)
    } else {
        return None;
    };

    let mut ok = true;
    if text.len() < MIN_SECRET_BYTES {
        let size = if text.is_empty() {
            "is empty".to_owned()
        } else {
            format!("is only {} bytes", text.len())
        };
        checker.report(
            &path,
            format!("{origin} {size}; a secret needs at least {MIN_SECRET_BYTES} ({MAKE_SECRET})"),
        );
        ok = false;
    } else if !text.bytes().all(|b| b.is_ascii_graphic()) {
        // Bearer tokens travel in an HTTP header: a space, control character or
        // non-ASCII byte would make the secret impossible to present.
        checker.report(
            &path,
            format!(
                "{origin} contains spaces, control or non-ASCII characters, which cannot be sent in an Authorization header ({MAKE_SECRET})"
            ),
        );
        ok = false;
    }
    let secret = Secret::new(text);
    if let Some(other) = Earlier::same_as(earlier, &TokenDigest::of(secret.expose())) {
        let what = if other.ends_with(".hash") {
            "has the hash given at"
        } else {
            "has the same value as"
        };
        checker.report(
            &path,
            format!("{origin} {what} {other}; every token needs its own secret ({MAKE_SECRET})"),
        );
        ok = false;
    }
    ok.then_some(secret)
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn log(checker: &mut Checker<'_>, raw: RawLog) -> LogConfig {
    let level = match raw.level {
        None => DEFAULT_LOG_LEVEL.to_owned(),
        Some(text) => {
            if let Some(message) = log_level_problem(&text) {
                checker.report("log.level", message);
            }
            text
        }
    };
    let format = match raw.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some("journald") => LogFormat::Journald,
        Some(other) => {
            let hint = did_you_mean(other, ["text", "json", "journald"])
                .map_or_else(String::new, |near| format!(" (did you mean '{near}'?)"));
            checker.report(
                "log.format",
                format!("'{other}' is not a log format{hint}; use text, json or journald"),
            );
            LogFormat::Text
        }
    };
    LogConfig { level, format }
}

/// A light check of tracing's `EnvFilter` syntax (`level`, `target=level`, comma
/// separated): enough to catch a misspelt level, which `EnvFilter` would otherwise
/// silently read as a target name and so log nothing.
fn log_level_problem(text: &str) -> Option<String> {
    const HINT: &str = "levels are trace, debug, info, warn, error, off";
    if text.trim().is_empty() {
        return Some("'' is empty (e.g. info or info,scim_bridge=debug)".to_owned());
    }
    let is_level = |word: &str| {
        LEVELS.contains(&word.to_ascii_lowercase().as_str())
            || matches!(word, "0" | "1" | "2" | "3" | "4" | "5")
    };
    for directive in text.split(',').map(str::trim) {
        // Span and field filters (`target[span{field=value}]=level`) are left to EnvFilter.
        if directive.is_empty() || directive.contains('[') {
            continue;
        }
        let (target, level) = match directive.rsplit_once('=') {
            Some((target, level)) => (Some(target), level),
            None => (None, directive),
        };
        if is_level(level) {
            continue;
        }
        let near = did_you_mean(level, LEVELS);
        match (target, near) {
            (Some(_), Some(near)) => {
                return Some(format!(
                    "'{text}': '{level}' is not a level (did you mean '{near}'?); {HINT}"
                ));
            }
            (Some(_), None) => {
                return Some(format!("'{text}': '{level}' is not a level; {HINT}"));
            }
            // A bare word that is not a level is a target name, unless it is so close to
            // a level that it is surely a typo.
            (None, Some(near)) if !level.contains("::") => {
                return Some(format!(
                    "'{text}': '{level}' is not a level (did you mean '{near}'?); {HINT}"
                ));
            }
            (None, _) => {}
        }
    }
    None
}
