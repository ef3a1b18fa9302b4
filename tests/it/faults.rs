//! Failing parts: the state store's disk full, read-only or losing fsyncs, the store
//! locked by another process, a second daemon on the same state, the directory killed or
//! answering slowly. In each: writes are refused with 503 (storage) or kept pending
//! (target) as DESIGN.md says, reads keep working, nothing acknowledged is lost, the
//! metrics and the log say what is wrong, and service resumes by itself.
//!
//! Storage faults are injected at the C library boundary: `tests/faults/faultfs.c`,
//! built here with the system C compiler and loaded into the (unchanged) daemon with
//! LD_PRELOAD, fails the calls on the state database's files while a mode file exists.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::Daemon;
use crate::slapd::Slapd;

/// The fault library, built once per test process.
fn faultfs() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults/faultfs.c");
        let dir = std::env::temp_dir().join(format!("scim-bridge-faultfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the fault library");
        let lib = dir.join("faultfs.so");
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
            .arg(&lib)
            .arg(&source)
            .arg("-ldl")
            .output()
            .unwrap_or_else(|e| {
                panic!("the fault tests build tests/faults/faultfs.c with `cc`, which cannot run: {e}; install gcc")
            });
        assert!(
            out.status.success(),
            "building the fault library failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lib
    })
}

/// A daemon with the fault library loaded and its stderr in a file.
struct Faulty {
    d: Daemon,
    control: tempfile::TempDir,
    log: PathBuf,
}

impl Faulty {
    fn start(extra_yaml: &str) -> Faulty {
        let control = tempfile::tempdir().expect("control directory");
        let log = control.path().join("stderr.log");
        let preload = format!("LD_PRELOAD={}", faultfs().display());
        let ctl = format!("FAULTFS_CONTROL={}", control.path().display());
        let script = format!("exec \"$@\" 2>>'{}'", log.display());
        let d = Daemon::start_wrapped(
            &format!("log:\n  level: info\n{extra_yaml}"),
            &[
                "env",
                &preload,
                &ctl,
                "FAULTFS_MATCH=/state/state.db",
                "sh",
                "-c",
                &script,
                "sh",
            ],
        );
        Faulty { d, control, log }
    }

    fn set(&self, mode: &str) {
        std::fs::write(self.control.path().join(mode), b"").expect("turn the fault on");
    }

    fn clear(&self, mode: &str) {
        std::fs::remove_file(self.control.path().join(mode)).expect("turn the fault off");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn metrics(d: &Daemon) -> String {
    d.get(&format!("http://{}/metrics", d.addr)).await.text
}

async fn readyz(d: &Daemon) -> (u16, Value) {
    let r = d.get(&format!("http://{}/readyz", d.addr)).await;
    (r.status, r.body)
}

async fn create_user(d: &Daemon, name: &str) -> String {
    let r = d
        .post("/Users", &json!({"userName": name}).to_string())
        .await;
    assert_eq!(r.status, 201, "{name}: {}", r.text);
    r.body["id"].as_str().expect("id").to_owned()
}

fn journal_verify(d: &Daemon) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .current_dir(d.dir())
        .args(["journal", "verify", "--config"])
        .arg(&d.config_path)
        .output()
        .expect("run journal verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "journal verify: {text}");
    text
}

const PATCH_TITLE: &str = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations":[{"op":"Replace","path":"title","value":"changed"}]}"#;

/// One storage fault, start to end: refused writes, working reads, what the metrics,
/// readiness and log say, recovery without a restart or a client write, and after a
/// crash nothing acknowledged missing and nothing refused present.
async fn storage_fault_refuses_writes_and_service_resumes(mode: &str, logged: &str) {
    let mut f = Faulty::start("");
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push(create_user(&f.d, &format!("before-{i}")).await);
    }
    f.set(mode);

    let refused =
        f.d.post("/Users", &json!({"userName": "refused"}).to_string())
            .await;
    assert_eq!(refused.status, 503, "{mode}: {}", refused.text);
    assert!(
        refused.header("retry-after").is_some(),
        "{mode}: Retry-After"
    );
    assert_eq!(
        refused.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
        "{mode}"
    );
    let patched =
        f.d.patch(&format!("/Users/{}", acked[0]), PATCH_TITLE)
            .await;
    assert_eq!(patched.status, 503, "{mode}: {}", patched.text);
    let deleted = f.d.delete(&format!("/Users/{}", acked[1])).await;
    assert_eq!(deleted.status, 503, "{mode}: {}", deleted.text);

    // Reads keep working, and show nothing of the refused writes.
    let one = f.d.get(&format!("/Users/{}", acked[0])).await;
    assert_eq!(one.status, 200, "{mode}: {}", one.text);
    assert!(one.body.get("title").is_none(), "{mode}: {}", one.text);
    let all = f.d.get("/Users?filter=userName%20sw%20%22%22").await;
    assert_eq!(all.status, 200, "{mode}: {}", all.text);
    let list = f.d.get("/Users?count=0").await;
    assert_eq!(list.body["totalResults"], 5, "{mode}: {}", list.text);

    // Metrics, readiness and the log say what is wrong.
    let m = metrics(&f.d).await;
    assert_eq!(metric(&m, "scim_store_writable"), Some(0.0), "{mode}:\n{m}");
    assert!(
        metric(&m, "scim_journal_commit_failures_total").unwrap_or(0.0) >= 1.0,
        "{mode}:\n{m}"
    );
    let (status, body) = readyz(&f.d).await;
    assert_eq!(status, 503, "{mode}: {body}");
    assert!(body.to_string().contains("journal"), "{mode}: {body}");
    let log = f.log();
    assert!(
        log.contains("group commit failed") && log.contains(logged),
        "{mode}: the log says what failed ({logged}):\n{log}"
    );

    // The fault ends: readiness comes back by itself (its probe write), then writes.
    f.clear(mode);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = readyz(&f.d).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{mode}: never ready again: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = metrics(&f.d).await;
    assert_eq!(metric(&m, "scim_store_writable"), Some(1.0), "{mode}:\n{m}");
    acked.push(create_user(&f.d, "after").await);
    let patched =
        f.d.patch(&format!("/Users/{}", acked[0]), PATCH_TITLE)
            .await;
    assert_eq!(patched.status, 200, "{mode}: {}", patched.text);

    // A crash now loses nothing acknowledged and brings back nothing refused.
    f.d.kill_hard();
    f.d.start_again();
    for id in &acked {
        assert_eq!(
            f.d.get(&format!("/Users/{id}")).await.status,
            200,
            "{mode}: {id}"
        );
    }
    let names: Vec<String> = f.d.get("/Users?count=100").await.body["Resources"]
        .as_array()
        .expect("Resources")
        .iter()
        .filter_map(|u| u["userName"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(names.len(), 6, "{mode}: {names:?}");
    assert!(!names.iter().any(|n| n == "refused"), "{mode}: {names:?}");
    let title = f.d.get(&format!("/Users/{}", acked[0])).await.body["title"].clone();
    assert_eq!(title, "changed", "{mode}");
    f.d.stop();
    journal_verify(&f.d);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_writes_with_503_keeps_reads_and_resumes_when_space_returns() {
    storage_fault_refuses_writes_and_service_resumes("enospc", "disk is full").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_disk_refuses_writes_with_503_keeps_reads_and_resumes_when_writable() {
    storage_fault_refuses_writes_and_service_resumes("erofs", "disk I/O error").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_fsync_refuses_the_write_it_could_not_make_durable() {
    storage_fault_refuses_writes_and_service_resumes("eio_fsync", "disk I/O error").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_locked_by_another_process_refuses_writes_after_waiting_and_keeps_reads() {
    let f = Faulty::start("");
    let id = create_user(&f.d, "kept").await;
    // Another process (an operator's sqlite3 shell, a backup tool) holds the write lock.
    let other = rusqlite::Connection::open(f.d.state_dir.join("state.db")).expect("open");
    other
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let started = Instant::now();
    let r =
        f.d.post("/Users", &json!({"userName": "waits"}).to_string())
            .await;
    let waited = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.header("retry-after").is_some());
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(8),
        "waited {waited:?} for the lock (busy timeout 5 s)"
    );
    // Reads are not blocked by the other process's lock.
    let started = Instant::now();
    let got = f.d.get(&format!("/Users/{id}")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(f.log().contains("database is locked"), "{}", f.log());
    let m = metrics(&f.d).await;
    assert_eq!(metric(&m, "scim_store_writable"), Some(0.0), "{m}");
    // The other process lets go: the next write goes through.
    other.execute_batch("ROLLBACK").expect("release");
    drop(other);
    create_user(&f.d, "after-lock").await;
    let list = f.d.get("/Users?count=0").await;
    assert_eq!(list.body["totalResults"], 2, "{}", list.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_daemon_on_the_same_state_directory_refuses_to_start() {
    let d = Daemon::start();
    create_user(&d, "one").await;
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .current_dir(d.dir())
        .env("SCIM_BRIDGE_TOKEN", crate::harness::TOKEN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&d.config_path)
        .output()
        .expect("run a second daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("in use by another scim-bridge daemon")
            && stderr.contains(&format!("pid {}", d.pid().expect("pid"))),
        "{stderr}"
    );
    // The first one is unaffected.
    create_user(&d, "two").await;
}

/// The LDAP outage faults: a daemon delivering to a throw-away slapd.
fn ldap_daemon(slapd: &Slapd) -> Faulty {
    Faulty::start(&slapd.example_target_yaml())
}

async fn wait_for_entry(slapd: &Slapd, uid: &str, timeout: Duration) -> bool {
    let people = format!("ou=people,{}", slapd.base);
    let deadline = Instant::now() + timeout;
    loop {
        if slapd
            .ldapsearch(&people, &format!("(uid={uid})"), &["uid"])
            .contains("dn:")
        {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_no_pending(d: &Daemon, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let m = metrics(d).await;
        if metric(&m, "scim_delivery_pending{endpoint=\"default\"}") == Some(0.0) {
            return m;
        }
        assert!(Instant::now() < deadline, "the backlog did not drain:\n{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_directory_keeps_writes_pending_and_they_drain_by_themselves_after_restart() {
    let mut slapd = Slapd::start();
    let f = ldap_daemon(&slapd);
    create_user(&f.d, "before").await;
    let pid = slapd.pid().expect("slapd pid");
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    slapd.stop(); // reaps the killed process
    // Writes are accepted and kept pending; reads are served from the state store.
    let mut pending = Vec::new();
    for i in 0..3 {
        pending.push(create_user(&f.d, &format!("during-{i}")).await);
    }
    for id in &pending {
        assert_eq!(f.d.get(&format!("/Users/{id}")).await.status, 200);
    }
    let m = metrics(&f.d).await;
    assert_eq!(
        metric(&m, "scim_delivery_pending{endpoint=\"default\"}"),
        Some(3.0),
        "{m}"
    );
    assert!(
        metric(&m, "scim_deliveries_total{outcome=\"unavailable\"}").unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    let (status, body) = readyz(&f.d).await;
    assert!(
        body.to_string().contains("pending"),
        "readiness reports the backlog ({status}): {body}"
    );
    assert!(
        f.log().contains("records stay pending"),
        "the log says the target is unavailable:\n{}",
        f.log()
    );
    // slapd comes back on the same port with its data; no client write is needed.
    slapd.start_again();
    for i in 0..3 {
        assert!(
            wait_for_entry(&slapd, &format!("during-{i}"), Duration::from_secs(30)).await,
            "during-{i} was not delivered after the restart"
        );
    }
    wait_for_no_pending(&f.d, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_answering_slowly_delays_writes_by_the_operation_timeout_at_most() {
    let slapd = Slapd::start();
    let f = ldap_daemon(&slapd);
    create_user(&f.d, "before").await;
    let pid = slapd.pid().expect("slapd pid").to_string();
    // A hung directory: it keeps its connections and answers nothing.
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let started = Instant::now();
    let id = create_user(&f.d, "while-hung").await;
    let took = started.elapsed();
    // operation_timeout is 2 s in the test target; the write waits at most about that long
    // for the directory and is then kept pending.
    assert!(took < Duration::from_secs(8), "the write waited {took:?}");
    let started = Instant::now();
    assert_eq!(f.d.get(&format!("/Users/{id}")).await.status, 200);
    let list = f.d.get("/Users?count=0").await;
    assert_eq!(list.body["totalResults"], 2, "{}", list.text);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "reads wait for the directory"
    );
    let m = metrics(&f.d).await;
    assert!(
        metric(&m, "scim_delivery_pending{endpoint=\"default\"}").unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    assert!(
        wait_for_entry(&slapd, "while-hung", Duration::from_secs(30)).await,
        "not delivered after the directory woke up:\n{}",
        f.log()
    );
    wait_for_no_pending(&f.d, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_sync_delivery_a_killed_directory_gives_503_and_the_change_is_kept_and_delivered() {
    let mut slapd = Slapd::start();
    let f = Faulty::start(&slapd.example_target_yaml().replacen(
        "target:\n",
        "target:\n  delivery: sync\n",
        1,
    ));
    create_user(&f.d, "before").await;
    slapd.stop();
    let r =
        f.d.post("/Users", &json!({"userName": "kept"}).to_string())
            .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.header("retry-after").is_some());
    slapd.start_again();
    assert!(
        wait_for_entry(&slapd, "kept", Duration::from_secs(30)).await,
        "the change answered 503 was kept and delivered"
    );
    // The provider's retry finds it there.
    let retry =
        f.d.post("/Users", &json!({"userName": "kept"}).to_string())
            .await;
    assert_eq!(retry.status, 409, "{}", retry.text);
}
