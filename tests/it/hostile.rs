//! Hostile HTTP: every malformed, oversized or slow request gets a SCIM error or a closed
//! connection, changes nothing, keeps the daemon's memory bounded, and does not slow
//! down well-behaved clients beyond a stated bound (measured below).
//!
//! The well-behaved client connects from 127.0.0.2 and the attackers from 127.0.0.1
//! (both loopback on Linux), as an identity provider and an attacker come from different
//! addresses: the per-address limits (`server.max_connections_per_client`, the per-client
//! rate limit) are what keep them apart.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Daemon, SCIM_JSON, TOKEN, send};

/// The bound the latency of a well-behaved client keeps under attack: p99 of its
/// requests (debug build, 2 cores shared with the attackers and the test itself).
const UNDER_ATTACK_P99: Duration = Duration::from_millis(500);
/// The bound the daemon's peak resident memory keeps under attack.
const UNDER_ATTACK_PEAK_RSS_MIB: u64 = 256;

/// Sends `request` on a fresh connection and reads until the server closes it or
/// `wait` passes; the bytes read (none when the connection could not be made).
async fn raw_exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return String::new();
    };
    // The server may answer and close before everything is written: not an error here.
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The token of the hostile client in the attack test: a provider of its own (a buggy or
/// compromised one), so its requests count against its own rate limit.
const ATTACKER_TOKEN: &str = "attacker-0123456789abcdef0123456789";

fn post_head(path: &str, content_length: usize) -> String {
    post_head_as(TOKEN, path, content_length)
}

fn post_head_as(token: &str, path: &str, content_length: usize) -> String {
    format!(
        "POST /scim/v2{path} HTTP/1.1\r\nHost: scim\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {SCIM_JSON}\r\nContent-Length: {content_length}\r\nConnection: close\r\n\r\n"
    )
}

fn raw_post(path: &str, body: &[u8]) -> Vec<u8> {
    raw_post_as(TOKEN, path, body)
}

fn raw_post_as(token: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut out = post_head_as(token, path, body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// The status code of a raw HTTP response (0 when there is none).
fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The JSON body of a raw response.
fn body_of(response: &str) -> Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// The daemon's peak resident set size so far (VmHWM), in KiB.
fn peak_rss_kib(d: &Daemon) -> u64 {
    let pid = d.pid().expect("the daemon is running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

async fn user_count(d: &Daemon) -> u64 {
    d.get("/Users?count=0").await.body["totalResults"]
        .as_u64()
        .expect("totalResults")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_of_invalid_utf8_is_400_invalid_syntax_and_changes_nothing() {
    let d = Daemon::start();
    let body =
        b"{\"userName\":\"caf\xe9\",\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"]}";
    let r = raw_exchange(d.addr, &raw_post("/Users", body), Duration::from_secs(5)).await;
    assert_eq!(status_of(&r), 400, "{r}");
    let body = body_of(&r);
    assert_eq!(body["scimType"], "invalidSyntax", "{r}");
    assert_eq!(
        body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
        "{r}"
    );
    assert_eq!(user_count(&d).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_named_twice_is_400_invalid_syntax_even_in_another_case() {
    let d = Daemon::start();
    for body in [
        r#"{"userName":"alice","userName":"root"}"#,
        r#"{"userName":"alice","USERNAME":"root"}"#,
        r#"{"userName":"alice","name":{"givenName":"A","givenname":"B"}}"#,
    ] {
        let r = d.post("/Users", body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.body["scimType"], "invalidSyntax", "{}", r.text);
        assert!(r.text.contains("is given twice"), "{}", r.text);
    }
    // PATCH operations and their values too.
    let created = d.post("/Users", r#"{"userName":"bob"}"#).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().expect("id");
    let r = d
        .patch(
            &format!("/Users/{id}"),
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations":[{"op":"replace","op":"remove","path":"title","value":"x"}]}"#,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("\\\"op\\\" is given twice"), "{}", r.text);
    assert_eq!(user_count(&d).await, 1);
    let bob = d.get(&format!("/Users/{id}")).await;
    assert!(bob.body.get("title").is_none(), "{}", bob.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declared_length_over_max_body_bytes_is_413_before_the_body_is_sent() {
    let d = Daemon::start_with("server:\n  max_body_bytes: 4096\n");
    // Headers claiming 1 GB and then no body at all: the answer cannot wait for it.
    let started = Instant::now();
    let r = raw_exchange(
        d.addr,
        post_head("/Users", 1_000_000_000).as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&r), 413, "{r}");
    assert_eq!(body_of(&r)["status"], "413", "{r}");
    assert!(started.elapsed() < Duration::from_secs(3), "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_body_streaming_past_max_body_bytes_is_cut_off_with_413() {
    let d = Daemon::start();
    let before = peak_rss_kib(&d);
    let mut stream = TcpStream::connect(d.addr).await.expect("connect");
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: scim\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: {SCIM_JSON}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let chunk = format!("10000\r\n{}\r\n", "a".repeat(0x10000));
    // 64 MiB offered; the server stops reading after 1 MiB.
    let mut sent = 0usize;
    for _ in 0..1024 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
        sent += 0x10000;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    let r = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&r), 413, "after {sent} bytes sent: {r}");
    let grown_mib = peak_rss_kib(&d).saturating_sub(before) / 1024;
    assert!(grown_mib < 32, "peak memory grew by {grown_mib} MiB");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_with_10000_unknown_members_is_400_with_a_short_answer() {
    let d = Daemon::start();
    let members: Vec<Value> = (0..10_000)
        .map(|i| json!({"value": format!("00000000-0000-7000-8000-{i:012}")}))
        .collect();
    let started = Instant::now();
    let r = d
        .post(
            "/Groups",
            &json!({"displayName": "huge", "members": members}).to_string(),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(r.status, 400, "{}", &r.text[..r.text.len().min(500)]);
    assert_eq!(r.body["scimType"], "invalidValue", "{}", r.text);
    assert!(
        r.text.len() < 2048,
        "the error names a few members, not all 10,000: {} bytes",
        r.text.len()
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    let groups = d.get("/Groups?count=0").await;
    assert_eq!(groups.body["totalResults"], 0, "{}", groups.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patch_adding_10000_member_values_of_three_users_keeps_each_once() {
    let d = Daemon::start();
    let mut ids = Vec::new();
    for name in ["m1", "m2", "m3"] {
        let r = d
            .post("/Users", &json!({"userName": name}).to_string())
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.body["id"].as_str().expect("id").to_owned());
    }
    let g = d.post("/Groups", r#"{"displayName":"g"}"#).await;
    assert_eq!(g.status, 201, "{}", g.text);
    let gid = g.body["id"].as_str().expect("id");
    let values: Vec<Value> = (0..10_000).map(|i| json!({"value": ids[i % 3]})).collect();
    let r = d
        .patch(
            &format!("/Groups/{gid}"),
            &json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "add", "path": "members", "value": values}]
            })
            .to_string(),
        )
        .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    let g = d.get(&format!("/Groups/{gid}")).await;
    let mut members: Vec<&str> = g.body["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["value"].as_str())
        .collect();
    members.sort_unstable();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(members, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn very_long_paths_get_scim_errors_or_431() {
    let d = Daemon::start();
    let created = d.post("/Users", r#"{"userName":"long"}"#).await;
    let id = created.body["id"].as_str().expect("id");
    // A PATCH path of 200,000 characters, inside the body limit.
    let path = format!("name.{}", "x".repeat(200_000));
    let r = d
        .patch(
            &format!("/Users/{id}"),
            &json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": path, "value": "v"}]
            })
            .to_string(),
        )
        .await;
    assert_eq!(r.status, 400, "{}", &r.text[..r.text.len().min(300)]);
    assert!(
        r.body["scimType"] == "invalidPath" || r.body["scimType"] == "noTarget",
        "{}",
        &r.text[..r.text.len().min(300)]
    );
    assert!(r.text.len() < 4096, "the error quotes the path in full");
    // An id of 10,000 characters in the URL: not found, as a SCIM error.
    let r = d.get(&format!("/Users/{}", "i".repeat(10_000))).await;
    assert_eq!(r.status, 404, "{}", &r.text[..r.text.len().min(300)]);
    assert!(r.text.len() < 4096);
    // A URL longer than the header limit: 431 and the connection closed.
    let request = format!(
        "GET /scim/v2/Users/{} HTTP/1.1\r\nHost: scim\r\n\r\n",
        "i".repeat(100_000)
    );
    let r = raw_exchange(d.addr, request.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        matches!(status_of(&r), 414 | 431) || r.is_empty(),
        "{}",
        &r[..r.len().min(300)]
    );
    assert_eq!(d.get(&format!("/Users/{id}")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_headers_is_431_and_the_connection_closed() {
    let d = Daemon::start();
    let mut request = String::from("GET /scim/v2/Users HTTP/1.1\r\nHost: scim\r\n");
    for i in 0..5_000 {
        request.push_str(&format!("X-Flood-{i}: v\r\n"));
    }
    request.push_str("\r\n");
    let r = raw_exchange(d.addr, request.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status_of(&r), 431, "{}", &r[..r.len().min(300)]);
    assert_eq!(d.get("/Users").await.status, 200, "still serving");
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_trickling_their_headers_are_cut_off_after_header_read_timeout() {
    let d = Daemon::start_with("server:\n  header_read_timeout: 1s\n");
    let mut stream = TcpStream::connect(d.addr).await.expect("connect");
    let started = Instant::now();
    let request = b"GET /scim/v2/Users HTTP/1.1\r\nHost: scim\r\nX-Slow: ";
    let mut closed_after = None;
    for byte in request.iter().chain(b"a".repeat(100).iter()) {
        if stream.write_all(&[*byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        // Has the server closed its side?
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Err(_) => {}
        }
    }
    let closed_after = closed_after.expect("the trickling client was never cut off");
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(3),
        "cut off after {closed_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_max_connections_per_client_are_closed_and_others_served() {
    let d = Daemon::start_with("server:\n  max_connections_per_client: 8\n");
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(d.addr).await.expect("connect"));
    }
    // Let the daemon admit the eight before the ninth arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(d.addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(3), extra.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the ninth connection from one address is closed at once: {read:?}"
    );
    // Another address is served.
    let other = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let r = send(
        other
            .get(format!("{}/Users", d.base_url))
            .bearer_auth(TOKEN)
            .header("accept", SCIM_JSON),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let metrics = send(other.get(format!("http://{}/metrics", d.addr))).await;
    assert!(
        metrics.text.lines().any(|l| l
            .starts_with("scim_http_connections_refused_total{reason=\"client\"} ")
            && !l.ends_with(" 0")),
        "{}",
        metrics.text
    );
    // Closing one frees its slot.
    drop(idle.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = TcpStream::connect(d.addr).await.expect("connect");
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), again.read_to_end(&mut out)).await;
    assert_eq!(status_of(&String::from_utf8_lossy(&out)), 200);
}

fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(ip))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// One request of the well-behaved client: create, look up by filter, patch.
async fn well_behaved_round(client: &reqwest::Client, d: &Daemon, i: usize) -> [Duration; 3] {
    let url = |p: &str| format!("{}{p}", d.base_url);
    let mut took = [Duration::ZERO; 3];
    let started = Instant::now();
    let created = send(
        client
            .request(Method::POST, url("/Users"))
            .bearer_auth(TOKEN)
            .header(CONTENT_TYPE, SCIM_JSON)
            .body(json!({"userName": format!("calm-{i}@example.com")}).to_string()),
    )
    .await;
    took[0] = started.elapsed();
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let started = Instant::now();
    let found = send(
        client
            .get(url(&format!(
                "/Users?filter=userName%20eq%20%22calm-{i}%40example.com%22"
            )))
            .bearer_auth(TOKEN),
    )
    .await;
    took[1] = started.elapsed();
    assert_eq!(found.body["totalResults"], 1, "{}", found.text);
    let started = Instant::now();
    let patched = send(
        client
            .request(Method::PATCH, url(&format!("/Users/{id}")))
            .bearer_auth(TOKEN)
            .header(CONTENT_TYPE, SCIM_JSON)
            .body(
                json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "Replace", "path": "active", "value": "False"}]
                })
                .to_string(),
            ),
    )
    .await;
    took[2] = started.elapsed();
    assert!(
        patched.status == 200 || patched.status == 204,
        "{}",
        patched.text
    );
    took
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

/// Attackers, each in a loop until `stop`: trickled headers, trickled bodies, oversized
/// and malformed bodies, header floods and connection floods.
fn spawn_attackers(
    addr: SocketAddr,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    let mut tasks = Vec::new();
    // 40 slowloris connections: one header byte every 200 ms, reconnecting when cut off.
    for _ in 0..40 {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut rounds = 0u64;
            while !*stop.borrow() {
                rounds += 1;
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let _ = s
                    .write_all(b"GET /scim/v2/Users HTTP/1.1\r\nX-Slow: ")
                    .await;
                while !*stop.borrow() {
                    if s.write_all(b"a").await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            rounds
        }));
    }
    // Bodies that never finish: 1 byte of a declared 1,000.
    for _ in 0..10 {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut rounds = 0u64;
            while !*stop.borrow() {
                rounds += 1;
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let _ = s
                    .write_all(post_head_as(ATTACKER_TOKEN, "/Users", 1000).as_bytes())
                    .await;
                let _ = s.write_all(b"{").await;
                let mut buf = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
            }
            rounds
        }));
    }
    // Malformed and oversized bodies, back to back.
    let bad_bodies: Vec<Vec<u8>> = vec![
        raw_post_as(ATTACKER_TOKEN, "/Users", &vec![b'['; 100_000]),
        raw_post_as(ATTACKER_TOKEN, "/Users", b"{\"userName\":\"\xff\xfe\"}"),
        raw_post_as(
            ATTACKER_TOKEN,
            "/Users",
            br#"{"userName":"a","USERNAME":"b"}"#,
        ),
        raw_post_as(ATTACKER_TOKEN, "/Users", &vec![b' '; 2 * 1024 * 1024]),
        post_head_as(ATTACKER_TOKEN, "/Users", 1 << 40).into_bytes(),
        // Without a token.
        b"POST /scim/v2/Users HTTP/1.1\r\nHost: scim\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
    ];
    for k in 0..4 {
        let stop = stop.clone();
        let bodies = bad_bodies.clone();
        tasks.push(tokio::spawn(async move {
            let mut rounds = 0u64;
            while !*stop.borrow() {
                let body = &bodies[(rounds as usize + k) % bodies.len()];
                rounds += 1;
                let _ = raw_exchange(addr, body, Duration::from_secs(2)).await;
            }
            rounds
        }));
    }
    // Header floods.
    let mut flood = String::from("GET /scim/v2/Users HTTP/1.1\r\nHost: scim\r\n");
    for i in 0..2_000 {
        flood.push_str(&format!("X-Flood-{i}: v\r\n"));
    }
    flood.push_str("\r\n");
    for _ in 0..2 {
        let stop = stop.clone();
        let flood = flood.clone();
        tasks.push(tokio::spawn(async move {
            let mut rounds = 0u64;
            while !*stop.borrow() {
                rounds += 1;
                let _ = raw_exchange(addr, flood.as_bytes(), Duration::from_secs(2)).await;
            }
            rounds
        }));
    }
    // Connections opened and dropped as fast as they go (most refused by the limit).
    {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut rounds = 0u64;
            while !*stop.borrow() {
                rounds += 1;
                let mut held = Vec::new();
                for _ in 0..50 {
                    if let Ok(s) = TcpStream::connect(addr).await {
                        held.push(s);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            rounds
        }));
    }
    tasks
}

#[tokio::test(flavor = "multi_thread")]
async fn well_behaved_clients_keep_their_latency_while_hostile_clients_attack() {
    let d = Daemon::start_with(&format!(
        "server:
  header_read_timeout: 2s
  request_timeout: 3s
  max_connections_per_client: 64
auth:
  tokens:
    - name: entra
      secret:
        env: SCIM_BRIDGE_TOKEN
    - name: attacker
      secret:
        value: {ATTACKER_TOKEN}
"
    ));
    let calm = client_from(Ipv4Addr::new(127, 0, 0, 2));
    // Baseline: the same work with nobody attacking.
    let mut quiet = Vec::new();
    for i in 0..40 {
        quiet.extend(well_behaved_round(&calm, &d, i).await);
    }
    let quiet_p99 = p99(quiet);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let attackers = spawn_attackers(d.addr, stop_rx);
    // Let the attack build up (slowloris connections open, floods running).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut attacked = Vec::new();
    let started = Instant::now();
    let mut i = 1000;
    while started.elapsed() < Duration::from_secs(6) {
        attacked.extend(well_behaved_round(&calm, &d, i).await);
        i += 1;
        // A provider's pace (Entra sends tens of requests a second), well inside its
        // token's rate limit.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let rounds = i - 1000;
    stop_tx.send(true).expect("stop the attackers");
    let mut attacks = 0;
    for task in attackers {
        attacks += tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("an attacker did not stop")
            .expect("attacker task");
    }
    let attacked_p99 = p99(attacked);
    let peak_mib = peak_rss_kib(&d) / 1024;
    println!(
        "well-behaved p99: {quiet_p99:?} quiet, {attacked_p99:?} under attack ({rounds} rounds of 3 requests, {attacks} attack rounds); daemon peak RSS {peak_mib} MiB"
    );
    assert!(
        attacked_p99 < UNDER_ATTACK_P99,
        "p99 under attack {attacked_p99:?} (quiet {quiet_p99:?}); bound {UNDER_ATTACK_P99:?}"
    );
    assert!(
        peak_mib < UNDER_ATTACK_PEAK_RSS_MIB,
        "peak RSS {peak_mib} MiB; bound {UNDER_ATTACK_PEAK_RSS_MIB} MiB"
    );
    assert!(rounds >= 10, "only {rounds} well-behaved rounds in 6 s");
    // Nothing the attackers sent was stored.
    let all = send(
        calm.get(format!("{}/Users?count=0", d.base_url))
            .bearer_auth(TOKEN),
    )
    .await;
    assert_eq!(all.body["totalResults"], 40 + rounds as u64, "{}", all.text);
}
