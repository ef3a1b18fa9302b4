//! The listeners: HTTPS with a configured certificate, a Unix socket for a local reverse
//! proxy, and forwarded origins believed only from trusted proxies.

use std::sync::Arc;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::harness::{Daemon, TOKEN};
use crate::slapd::test_certificates;

/// Sends one raw HTTP/1.1 request on `stream` and returns (status, body).
async fn raw_request(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: scim.local\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listener_serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = test_certificates(&dir.path().join("certs"));
    let d = Daemon::start_with(&format!(
        "server:\n  tls:\n    cert_file: {}\n    key_file: {}\n",
        certs.server_cert_file.display(),
        certs.server_key_file.display()
    ));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_file_iter(&certs.ca_file).expect("ca") {
        roots.add(cert.expect("pem")).expect("add the CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(d.addr)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the test CA");
    let (status, text) = raw_request(
        tls,
        "POST",
        "/scim/v2/Users",
        &[("Content-Type", "application/scim+json")],
        &json!({"userName": "over-tls"}).to_string(),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    assert!(
        text.contains("\"location\":\"https://scim.local/scim/v2/Users/"),
        "meta.location uses https: {text}"
    );
    // Plain HTTP on the TLS port is not served.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", d.addr))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
}

#[test]
fn an_unreadable_certificate_stops_the_start_with_its_path() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg({
            let dir = tempfile::tempdir().expect("tempdir").keep();
            let path = dir.join("c.yaml");
            std::fs::write(
                &path,
                format!(
                    "state:\n  dir: {}\nauth:\n  tokens:\n    - name: t\n      secret:\n        value: 0123456789abcdef0123456789abcdef\nserver:\n  tls:\n    cert_file: /nonexistent/cert.pem\n    key_file: /nonexistent/key.pem\n",
                    dir.join("state").display()
                ),
            )
            .expect("write");
            path
        })
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/cert.pem"), "{stderr}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_unix_socket_serves_a_local_proxy_whose_forwarded_origin_is_believed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("scim.sock");
    let d = Daemon::start_with(&format!("server:\n  unix_socket: {}\n", socket.display()));
    let stream = tokio::net::UnixStream::connect(&socket)
        .await
        .expect("connect");
    let (status, text) = raw_request(
        stream,
        "POST",
        "/scim/v2/Users",
        &[
            ("Content-Type", "application/scim+json"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "scim.example.com"),
            ("X-Forwarded-For", "203.0.113.7"),
        ],
        &json!({"userName": "via-socket"}).to_string(),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    assert!(
        text.contains("\"location\":\"https://scim.example.com/scim/v2/Users/"),
        "{text}"
    );
    // TCP still serves.
    assert_eq!(d.get("/Users?count=1").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_origins_are_believed_only_from_trusted_proxies() {
    let spoofed = [
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
    ];
    let create = |d: &Daemon, name: &str| {
        let mut req = d
            .request(reqwest::Method::POST, "/Users")
            .header("content-type", "application/scim+json")
            .body(json!({"userName": name}).to_string());
        for (k, v) in spoofed {
            req = req.header(k, v);
        }
        req.send()
    };
    let untrusted = Daemon::start_with("server:\n  trusted_proxies: [10.0.0.0/8]\n");
    let r = create(&untrusted, "a").await.expect("send");
    let location = r.headers()["location"].to_str().expect("ascii").to_string();
    assert!(
        location.starts_with(&format!("http://{}/scim/v2/Users/", untrusted.addr)),
        "{location}"
    );
    let trusted = Daemon::start_with("server:\n  trusted_proxies: [127.0.0.1]\n");
    let r = create(&trusted, "b").await.expect("send");
    let location = r.headers()["location"].to_str().expect("ascii").to_string();
    assert!(
        location.starts_with("https://evil.example/scim/v2/Users/"),
        "{location}"
    );
}
