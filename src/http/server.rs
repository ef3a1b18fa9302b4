//! The accept loop: the router served over HTTP/1.1 by hyper directly, because
//! `axum::serve` has neither a header-read timeout (a client that opens connections and
//! never finishes its headers would hold them forever) nor a bounded drain at shutdown.
//!
//! Listeners: the TCP address (plain, or HTTPS when a certificate is configured: installs
//! without a reverse proxy) and optionally a Unix socket for a local reverse proxy. Each
//! accepted connection gets the router as a service with its peer address
//! (`ConnectInfo<SocketAddr>`; a Unix socket peer is `0.0.0.0:0`, see [`UNIX_PEER`]), a
//! TLS handshake bounded by the header-read timeout, a header-read timeout and a limit on
//! the header bytes. When `shutdown` resolves the listeners are closed at once (new
//! connections are refused), connections finish the request they are serving (idle
//! keep-alive connections are closed), and after `drain` the remaining ones are dropped.
//!
//! Connection limits keep one client from holding the listener: at most
//! `max_connections` open at once, and at most `max_connections_per_client` from one
//! address (trusted proxies and the Unix socket are exempt: they carry many clients).
//! A connection beyond a limit is closed as soon as it is accepted (counted in
//! `scim_http_connections_refused`); the others keep being served. A client trickling
//! its headers holds a connection for at most `header_read_timeout`.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower::Service;

/// The peer address given to requests that came in on the Unix socket.
pub const UNIX_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// Limits of the connection layer.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long a client may take to send a request's headers (and finish a TLS
    /// handshake).
    pub header_read_timeout: Duration,
    /// The most header bytes a request may have (hyper answers 431 beyond it).
    pub max_header_bytes: usize,
    /// How long in-flight requests may take to finish after shutdown is asked for.
    pub drain: Duration,
    /// The most connections open at once.
    pub max_connections: usize,
    /// The most connections open at once from one client address.
    pub max_connections_per_client: usize,
    /// Peers exempt from `max_connections_per_client` (trusted reverse proxies).
    pub shared_peers: Vec<crate::config::IpNet>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            drain: Duration::from_secs(20),
            max_connections: 768,
            max_connections_per_client: 256,
            shared_peers: Vec::new(),
        }
    }
}

/// Where connections come from.
pub enum Listener {
    /// TCP, with HTTPS when an acceptor is given.
    Tcp(TcpListener, Option<tokio_rustls::TlsAcceptor>),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// An accepted connection, before any TLS handshake.
struct Accepted {
    io: Box<dyn Io>,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// The TLS configuration of a listener: the certificate chain and key from PEM files.
/// Err names the file and what is wrong with it.
pub fn tls_acceptor(
    cert_file: &Path,
    key_file: &Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: cannot read the certificate: {e}", cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in the file",
            cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("{}: cannot read the private key: {e}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "{}: the certificate does not go with the key in {}: {e}",
                cert_file.display(),
                key_file.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listeners` until `shutdown` resolves, then drains (see the module
/// doc). Returns whether every connection finished within the drain time.
pub async fn serve(
    listeners: Vec<Listener>,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> bool {
    let mut make = app.into_make_service_with_connect_info::<SocketAddr>();
    let graceful = GracefulShutdown::new();
    let limits = Arc::new(Limits::new(&options));
    let (tx, mut rx) = mpsc::channel::<Accepted>(64);
    let acceptors: Vec<_> = listeners
        .into_iter()
        .map(|listener| tokio::spawn(accept_loop(listener, tx.clone())))
        .collect();
    drop(tx);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = rx.recv() => match accepted {
                Some(accepted) => accepted,
                None => break,
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = limits.admit(accepted.peer.ip()) else {
            drop(accepted);
            continue;
        };
        let service = match make.call(accepted.peer).await {
            Ok(service) => service,
            Err(never) => match never {},
        };
        let watcher = graceful.watcher();
        let Accepted { io, peer, tls } = accepted;
        let (header_read_timeout, max_header_bytes) =
            (options.header_read_timeout, options.max_header_bytes);
        tokio::spawn(async move {
            let _slot = slot;
            let io: Box<dyn Io> = match tls {
                None => io,
                Some(acceptor) => {
                    match tokio::time::timeout(header_read_timeout, acceptor.accept(io)).await {
                        Ok(Ok(stream)) => Box::new(stream),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .max_buf_size(max_header_bytes.max(8192));
            let conn =
                builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    for acceptor in acceptors {
        acceptor.abort();
    }
    drop(rx);
    tokio::select! {
        () = graceful.shutdown() => true,
        () = tokio::time::sleep(options.drain) => {
            tracing::warn!(drain = ?options.drain, "connections still open after the drain time; closing them");
            false
        }
    }
}

/// The open connections, in all and by client address.
struct Limits {
    max: usize,
    max_per_client: usize,
    shared: Vec<crate::config::IpNet>,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
    /// When a refusal was last logged (one warning per interval, whatever the flood).
    warned: Option<Instant>,
    refused_since_warning: u64,
}

/// How often a flood of refused connections is logged.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Limits {
    fn new(options: &ServeOptions) -> Limits {
        Limits {
            max: options.max_connections.max(1),
            max_per_client: options.max_connections_per_client.max(1),
            shared: options.shared_peers.clone(),
            open: Mutex::new(Open::default()),
        }
    }

    /// A slot for a new connection from `ip`, or `None` (counted and logged) when a
    /// limit is reached.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let per_client = !(ip == UNIX_PEER.ip() || self.shared.iter().any(|n| n.contains(ip)));
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let from_client = if per_client {
            open.by_client.get(&ip).copied().unwrap_or(0)
        } else {
            0
        };
        let refused = if open.total >= self.max {
            Some("total")
        } else if per_client && from_client >= self.max_per_client {
            Some("client")
        } else {
            None
        };
        if let Some(reason) = refused {
            crate::metrics::connection_refused(reason);
            open.refused_since_warning += 1;
            if open
                .warned
                .is_none_or(|at| at.elapsed() >= REFUSAL_LOG_INTERVAL)
            {
                tracing::warn!(
                    client = %ip,
                    reason,
                    refused = open.refused_since_warning,
                    open = open.total,
                    max_connections = self.max,
                    max_connections_per_client = self.max_per_client,
                    "connections refused: too many open (server.max_connections / server.max_connections_per_client)"
                );
                open.warned = Some(Instant::now());
                open.refused_since_warning = 0;
            }
            return None;
        }
        open.total += 1;
        if per_client {
            *open.by_client.entry(ip).or_insert(0) += 1;
        }
        crate::metrics::connections_open(open.total);
        Some(Slot {
            limits: Arc::clone(self),
            client: per_client.then_some(ip),
        })
    }
}

/// One admitted connection; dropping it frees the slot.
struct Slot {
    limits: Arc<Limits>,
    client: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .limits
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(ip) = self.client
            && let Some(n) = open.by_client.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                open.by_client.remove(&ip);
            }
        }
        crate::metrics::connections_open(open.total);
    }
}

/// Accepts connections on one listener and hands them over until the receiver is gone.
async fn accept_loop(listener: Listener, tx: mpsc::Sender<Accepted>) {
    loop {
        let accepted = match &listener {
            Listener::Tcp(l, tls) => l.accept().await.map(|(stream, peer)| Accepted {
                io: Box::new(stream) as Box<dyn Io>,
                peer,
                tls: tls.clone(),
            }),
            #[cfg(unix)]
            Listener::Unix(l) => l.accept().await.map(|(stream, _)| Accepted {
                io: Box::new(stream) as Box<dyn Io>,
                peer: UNIX_PEER,
                tls: None,
            }),
        };
        match accepted {
            Ok(accepted) => {
                if tx.send(accepted).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Out of file descriptors, or a connection reset before accept: keep
                // serving the others, without spinning.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
