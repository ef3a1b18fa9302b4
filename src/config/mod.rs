//! The daemon's configuration: one YAML file (see `config.example.yaml`) read in two
//! stages. Stage one (`raw.rs`) deserializes the text as written, rejecting unknown keys;
//! stage two (`validate.rs`) applies defaults and checks every rule, collecting every
//! problem with its YAML path and line:column instead of stopping at the first, because
//! a config is fixed in one sitting, not one restart per mistake.
//!
//! [`parse`] works on text and reads nothing but the secrets it is told about, through an
//! [`Environment`]; only [`load`] opens the config file itself. Secrets end up as
//! [`Secret`]s, which never print their value.

mod error;
mod locate;
mod mapping;
mod raw;
mod secret;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use error::{ConfigError, Problem, Problems};
pub use secret::{Env, Environment, ProcessEnv, Secret, TokenDigest};
pub use validate::valid_token_name;

/// The example config compiled into the binary, used when `serve` is given no `--config`.
pub const EMBEDDED_EXAMPLE: &str = include_str!("../../config.example.yaml");

/// A validated configuration: every value is in range and every secret is resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub state: StateConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub journal: JournalConfig,
    /// The target and its mapping; `None`: the state store only.
    pub target: Option<TargetConfig>,
    pub rate_limit: RateLimitConfig,
    /// Further endpoints (`endpoints:`), each with its own tokens, mapping, target, state
    /// and journal. The top-level `auth`, `target` and `mapping` are the endpoint named
    /// `default`, at `server.base_path`.
    pub endpoints: Vec<EndpointConfig>,
}

/// One further SCIM endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Lower-case letters, digits and `-`; unique; not `default`.
    pub name: String,
    /// Where its SCIM resources are served; default `/scim/<name>/v2`.
    pub base_path: String,
    /// Its state store and journal; default `<state.dir>/endpoints/<name>`.
    pub state_dir: PathBuf,
    pub auth: AuthConfig,
    pub target: Option<TargetConfig>,
}

/// What one endpoint serves from: its name, path, state, tokens and target.
#[derive(Debug, Clone, Copy)]
pub struct EndpointView<'a> {
    pub name: &'a str,
    pub base_path: &'a str,
    pub state_dir: &'a Path,
    pub auth: &'a AuthConfig,
    pub target: Option<&'a TargetConfig>,
}

impl Config {
    /// Every endpoint, the default one first.
    pub fn all_endpoints(&self) -> Vec<EndpointView<'_>> {
        let mut out = vec![EndpointView {
            name: crate::engine::DEFAULT_ENDPOINT,
            base_path: &self.server.base_path,
            state_dir: &self.state.dir,
            auth: &self.auth,
            target: self.target.as_ref(),
        }];
        out.extend(self.endpoints.iter().map(|e| EndpointView {
            name: &e.name,
            base_path: &e.base_path,
            state_dir: &e.state_dir,
            auth: &e.auth,
            target: e.target.as_ref(),
        }));
        out
    }

    /// Moves the state to `dir` (`serve --state-dir`): the state directory, and the paths
    /// derived from it by default (the endpoints' state directories, the SQLite target's
    /// database and the LDAP links files) move with it; paths given explicitly stay.
    pub fn set_state_dir(&mut self, dir: PathBuf) {
        let old = std::mem::replace(&mut self.state.dir, dir.clone());
        let rebase = |path: &mut PathBuf, from: &Path, to: &Path| {
            if let Ok(rest) = path.strip_prefix(from) {
                *path = to.join(rest);
            }
        };
        let retarget = |target: &mut Option<TargetConfig>, from: &Path, to: &Path| {
            if let Some(t) = target {
                match &mut t.kind {
                    TargetKind::Sqlite { path } if *path == from.join("directory.db") => {
                        rebase(path, from, to);
                    }
                    TargetKind::Ldap(settings) => rebase(&mut settings.links_path, from, to),
                    TargetKind::Sqlite { .. } => {}
                }
            }
        };
        retarget(&mut self.target, &old, &dir);
        for e in &mut self.endpoints {
            let from = e.state_dir.clone();
            if from == old.join("endpoints").join(&e.name) {
                e.state_dir = dir.join("endpoints").join(&e.name);
            }
            let to = e.state_dir.clone();
            retarget(&mut e.target, &from, &to);
        }
    }

    /// This configuration as seen by the tools for one endpoint: its state directory,
    /// tokens and target in place of the top-level ones (`None`: no such endpoint).
    pub fn for_endpoint(&self, name: &str) -> Option<Config> {
        if name == crate::engine::DEFAULT_ENDPOINT {
            return Some(self.clone());
        }
        let e = self.endpoints.iter().find(|e| e.name == name)?;
        let mut out = self.clone();
        out.server.base_path = e.base_path.clone();
        out.state.dir = e.state_dir.clone();
        out.auth = e.auth.clone();
        out.target = e.target.clone();
        out.journal.archive_dir = self.journal.archive_dir.as_ref().map(|d| d.join(name));
        out.endpoints.clear();
        Some(out)
    }

    /// The endpoint named `name` (`default` for the top-level one).
    pub fn endpoint(&self, name: &str) -> Option<EndpointView<'_>> {
        self.all_endpoints().into_iter().find(|e| e.name == name)
    }
}

/// Request rate limits (token buckets): per bearer token after authentication, and per
/// client address (the proxy-reported one from trusted proxies) before it. `None`: no
/// limit of that kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub per_token: Option<Rate>,
    pub per_client: Option<Rate>,
}

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for RateLimitConfig {
    /// Far above Entra's documented load (about 25 requests/s per tenant, in bursts): the
    /// defaults stop a runaway client, never a provisioning cycle.
    fn default() -> Self {
        RateLimitConfig {
            per_token: Some(Rate {
                per_second: 100,
                burst: 1000,
            }),
            per_client: Some(Rate {
                per_second: 200,
                burst: 2000,
            }),
        }
    }
}

/// An address or network (`10.0.0.0/8`, `::1`) whose forwarding headers are believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// Parses `a.b.c.d`, `a.b.c.d/n`, an IPv6 address, or one with `/n`.
    pub fn parse(text: &str) -> Option<IpNet> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (
                a.parse::<std::net::IpAddr>().ok()?,
                Some(p.parse::<u8>().ok()?),
            ),
            None => (text.trim().parse::<std::net::IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(IpNet { addr, prefix })
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (std::net::IpAddr::V4(net), std::net::IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (std::net::IpAddr::V6(net), std::net::IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Where identities are written, and how.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub kind: TargetKind,
    pub mapping: std::sync::Arc<crate::mapping::model::Mapping>,
    /// `sync`: a write whose delivery cannot complete now (target down or slow) is
    /// answered 503 with Retry-After (the change is kept and delivered later); `async`
    /// (default): it is answered 2xx.
    pub sync_delivery: bool,
}

/// The kind of target and how to reach it.
#[derive(Debug, Clone)]
pub enum TargetKind {
    /// The SQLite database other applications read.
    Sqlite { path: PathBuf },
    /// An LDAP directory.
    Ldap(Box<crate::target::LdapSettings>),
}

impl TargetConfig {
    /// A short description for logs and messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            TargetKind::Sqlite { path } => format!("SQLite database {}", path.display()),
            TargetKind::Ldap(s) => format!("LDAP directory {}", s.urls.join(", ")),
        }
    }

    /// The SQLite target's file, if that is the target.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.kind {
            TargetKind::Sqlite { path } => Some(path),
            TargetKind::Ldap(_) => None,
        }
    }
}

/// Journal retention: records beyond any limit are archived, then dropped (never one that
/// is still pending delivery). No limit set means the journal keeps everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalConfig {
    /// Where archives go; `None` means `<state.dir>/archive`.
    pub archive_dir: Option<PathBuf>,
    pub max_age: Option<std::time::Duration>,
    pub max_records: Option<u64>,
    pub max_bytes: Option<u64>,
}

impl JournalConfig {
    pub fn retention_enabled(&self) -> bool {
        self.max_age.is_some() || self.max_records.is_some() || self.max_bytes.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Starts with `/`, has no trailing `/`, e.g. `/scim/v2`.
    pub base_path: String,
    /// Absolute http(s) URL without trailing `/`, used for `meta.location`; `None` means
    /// derive it from the request's `Host` header.
    pub public_url: Option<String>,
    pub max_body_bytes: usize,
    /// Default `count` for list requests; never above `max_page_size`.
    pub page_size: usize,
    pub max_page_size: usize,
    /// Peers whose `X-Forwarded-For` / `Forwarded` headers name the client (reverse
    /// proxies); from anyone else the peer address is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// A request taking longer is answered 503 (SCIM error body).
    pub request_timeout: std::time::Duration,
    /// `/readyz` fails while the target is unreachable and more deliveries than this are
    /// pending.
    pub ready_max_pending: u64,
    /// The most bytes of request headers (answered 431 beyond).
    pub max_header_bytes: usize,
    /// The deepest nesting of arrays and objects a JSON body may have.
    pub max_json_depth: usize,
    /// The longest `filter` a list or search request may give.
    pub max_filter_bytes: usize,
    /// How long a client may take to send a request's headers (or finish a TLS
    /// handshake); an idle keep-alive connection is closed after it too.
    pub header_read_timeout: std::time::Duration,
    /// The most connections open at once; more are closed as soon as accepted.
    pub max_connections: usize,
    /// The most connections open at once from one client address (trusted proxies and
    /// the Unix socket are exempt).
    pub max_connections_per_client: usize,
    /// Serve HTTPS on `listen` with this certificate (PEM chain and key).
    pub tls: Option<ServerTls>,
    /// Also accept connections on this Unix socket (a local reverse proxy; its forwarded
    /// headers are believed).
    pub unix_socket: Option<PathBuf>,
}

/// The listener's certificate: PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct StateConfig {
    /// As written; relative paths are relative to the working directory. Not created here.
    pub dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// At least one; names and digests are unique.
    pub tokens: Vec<TokenConfig>,
    /// Bearer JWTs issued by Entra ID, accepted besides the static tokens.
    pub jwt: Option<JwtConfig>,
    /// An OAuth 2.0 token endpoint (client credentials) at `<base_path>/oauth/token`.
    pub oauth: Option<OAuthConfig>,
}

/// `auth.oauth`: clients that trade their id and secret for a bearer token valid for
/// `token_lifetime` (RFC 6749 §4.4), on this endpoint only.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// At least one; client ids, names and secrets are unique.
    pub clients: Vec<OAuthClientConfig>,
    /// How long an issued token is valid (1s to 24h; default 1h).
    pub token_lifetime: std::time::Duration,
}

/// One OAuth client: its id, the digest of its secret (from `secret:`, or given as
/// `hash:`), and the actor its tokens act as.
#[derive(Debug, Clone)]
pub struct OAuthClientConfig {
    pub client_id: String,
    /// The actor in logs and the journal; default the client id.
    pub name: String,
    pub digest: TokenDigest,
    /// Its tokens may read (GET, `.search`) but not write.
    pub read_only: bool,
}

/// A static bearer token: its name and the digest of its secret (from `secret:`, or given
/// as `hash:`); the secret itself is not kept.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub name: String,
    pub digest: TokenDigest,
    /// May read (GET, `.search`) but not write.
    pub read_only: bool,
}

/// `auth.jwt`: a bearer token that is a JWT signed by one of `keys`, with exactly this
/// issuer and audience, within its validity (± `leeway`), authenticates as `name`.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub name: String,
    pub issuer: String,
    pub audience: String,
    pub leeway: std::time::Duration,
    /// Where the keys were read from (at load and at every reload).
    pub jwks_file: PathBuf,
    pub keys: std::sync::Arc<crate::http::jwt::Jwks>,
    pub read_only: bool,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A tracing `EnvFilter` directive string, e.g. `info,scim_bridge=debug`.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
    /// Text without timestamps or colours: journald stamps and colours lines itself.
    Journald,
}

/// One line, for the startup log: the effective settings, token names but no secrets.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.server;
        write!(
            f,
            "listen={} base_path={} public_url={} max_body_bytes={} page_size={} max_page_size={} state.dir={} tokens=[",
            s.listen,
            s.base_path,
            s.public_url.as_deref().unwrap_or("(from Host header)"),
            s.max_body_bytes,
            s.page_size,
            s.max_page_size,
            self.state.dir.display(),
        )?;
        for (i, token) in self.auth.tokens.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&token.name)?;
        }
        if let Some(jwt) = &self.auth.jwt {
            write!(f, "] jwt=[{}", jwt.name)?;
        }
        if let Some(oauth) = &self.auth.oauth {
            let names: Vec<&str> = oauth.clients.iter().map(|c| c.name.as_str()).collect();
            write!(f, "] oauth=[{}", names.join(","))?;
        }
        let format = match self.log.format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
            LogFormat::Journald => "journald",
        };
        write!(f, "] log.level={} log.format={format}", self.log.level)
    }
}

/// Parses and validates config text. `source` is the name shown in problem messages
/// (usually the file path). Never returns [`ConfigError::Unreadable`].
pub fn parse(text: &str, source: &str, env: &dyn Environment) -> Result<Config, ConfigError> {
    let invalid = |items: Vec<Problem>| {
        ConfigError::Invalid(Problems {
            source: source.to_owned(),
            items,
        })
    };
    // The bare tree first: it turns syntax errors into problems and gives every later
    // problem its line:column.
    let index = locate::NodeIndex::build(text).map_err(|problem| invalid(vec![problem]))?;
    let raw: raw::RawConfig = serde_saphyr::from_str(text)
        .map_err(|err| invalid(vec![locate::yaml_problem(&err, Some(&index))]))?;
    validate::validate(raw, &index, env).map_err(invalid)
}

/// Reads the config file at `path` and [`parse`]s it, naming it by its path in messages.
pub fn load(path: &Path, env: &dyn Environment) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string(), env)
}
