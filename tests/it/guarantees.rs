//! What the bucket guarantees (probed, recorded, refused), typed remote errors, and
//! remotes that are not what they seem.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use bmsync::Repo;
use bmsync::apply::{SyncError, SyncOptions};
use bmsync::remote::{FileRemote, Probed, Remote, RemoteError, S3Remote, list_all};

use crate::remote_contract::{create_bucket, raw_client, s3_opts};
use crate::sync::{Client, Hooked, bucket_keys};
use crate::sync_table::walk;
use crate::tigris_server::{ACCESS_KEY, Quirks, SECRET_KEY, TigrisServer};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `bmsync -C DIR ARGS` with the test server's credentials.
fn run(dir: &Path, args: &[&str]) -> Output {
    run_env(dir, args, &[])
}

fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_bmsync"))
        .env("HOME", dir)
        .env_remove("BASIC_MEMORY_CONFIG_DIR")
        .env_remove("AWS_PROFILE")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .envs(env.iter().copied())
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("run bmsync")
}

/// Every file under `dir` (state included) with its bytes.
fn bytes_of_every_file(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walk(dir, true)
        .into_iter()
        .map(|p| {
            (p.strip_prefix(dir).expect("under").display().to_string(), std::fs::read(&p).expect("read"))
        })
        .collect()
}

/// Every key in the bucket, prefix included, with its ETag.
fn raw_listing(ep: &str, bucket: &str) -> Vec<(String, String)> {
    let (rt, c) = raw_client(ep, ACCESS_KEY, SECRET_KEY);
    let out = rt.block_on(c.list_objects_v2().bucket(bucket).send()).expect("list");
    out.contents()
        .iter()
        .map(|o| (o.key().unwrap_or_default().to_owned(), o.e_tag().unwrap_or_default().to_owned()))
        .collect()
}

fn probe_record(dir: &Path) -> bmsync::remote::ProbeRecord {
    Repo::open(dir).expect("open").probe_record().expect("meta").expect("a probe record")
}

#[test]
fn init_refuses_a_bucket_that_ignores_conditional_puts_and_writes_no_note() {
    let server = TigrisServer::start_with(Quirks { ignore_conditions: true, ..Quirks::default() });
    let ep = server.endpoint();
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", true);
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("note.md"), "mine\n").expect("write");
    let before = bytes_of_every_file(dir.path());
    let o = run(dir.path(), &["init", "--remote", "s3://team/vault", "--endpoint", &ep]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("ignores If-None-Match and If-Match on PUT") && err.contains("lost updates"),
        "{err}"
    );
    assert!(err.contains("--accept-lost-updates"), "the hint names the opt-in: {err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "one line says it: {err}");
    assert_eq!(bytes_of_every_file(dir.path()), before, "no .bmsync left behind, the folder untouched");
    assert_eq!(raw_listing(&ep, "team"), [], "the probe cleaned up after itself");
}

#[test]
fn sync_push_and_pull_refuse_such_a_bucket_before_writing_anything() {
    let good = TigrisServer::start();
    let bad = TigrisServer::start_with(Quirks { ignore_conditions: true, ..Quirks::default() });
    for s in [&good, &bad] {
        create_bucket(&s.endpoint(), ACCESS_KEY, SECRET_KEY, "team", true);
    }
    let alice = Client::new("alice", "s3://team/vault", Some(&good.endpoint()));
    alice.write("a.md", "alice\n");
    // The endpoint changes: the bucket is probed again, and found wanting.
    let o = alice.run(&["remote", "set-url", "s3://team/vault", "--endpoint", &bad.endpoint()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!probe_record(alice.dir.path()).if_match);
    let before = bytes_of_every_file(alice.dir.path());
    let requests = bad.requests();
    for cmd in ["sync", "push", "pull"] {
        let o = alice.run(&[cmd]);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {}", stderr(&o));
        assert!(stderr(&o).contains("ignores If-None-Match and If-Match on PUT"), "{cmd}: {}", stderr(&o));
        assert!(stderr(&o).contains("nothing was written"), "{cmd}: {}", stderr(&o));
    }
    // Two requests per run (HeadBucket, GetBucketVersioning), none of them a write.
    assert_eq!(bad.requests() - requests, 3 * 2);
    assert_eq!(raw_listing(&bad.endpoint(), "team"), [], "no note was written");
    assert_eq!(bytes_of_every_file(alice.dir.path()), before, "nothing local changed, state included");
}

#[test]
fn accepting_lost_updates_lets_a_single_user_folder_go_on_with_a_warning_every_time() {
    let server = TigrisServer::start_with(Quirks { ignore_conditions: true, ..Quirks::default() });
    let ep = server.endpoint();
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "solo", false);
    let dir = tempfile::tempdir().expect("tmp");
    let o = run(dir.path(), &["init", "--remote", "s3://solo", "--endpoint", &ep, "--accept-lost-updates"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("lost updates") && stderr(&o).contains("accepted"), "{}", stderr(&o));
    std::fs::write(dir.path().join("a.md"), "one\n").expect("write");
    for _ in 0..2 {
        let o = run(dir.path(), &["sync"]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).contains("warning:") && stderr(&o).contains("lost updates"), "{}", stderr(&o));
    }
    assert_eq!(raw_listing(&ep, "solo").len(), 1);

    // The opt-in on sync (not init) is recorded too, for this remote only.
    let other = tempfile::tempdir().expect("tmp");
    let o = run(other.path(), &["init", "--remote", "s3://solo", "--endpoint", &ep]);
    assert_eq!(o.status.code(), Some(1), "refused without the opt-in");
    let good = TigrisServer::start();
    create_bucket(&good.endpoint(), ACCESS_KEY, SECRET_KEY, "solo", false);
    assert!(
        run(other.path(), &["init", "--remote", "s3://solo", "--endpoint", &good.endpoint()])
            .status
            .success()
    );
    assert!(run(other.path(), &["remote", "set-url", "s3://solo", "--endpoint", &ep]).status.success());
    assert_eq!(run(other.path(), &["pull"]).status.code(), Some(1));
    let o = run(other.path(), &["pull", "--accept-lost-updates"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(other.path().join("a.md")).ok().as_deref(), Some("one\n"));
    let o = run(other.path(), &["sync"]);
    assert!(o.status.success() && stderr(&o).contains("lost updates"), "{}", stderr(&o));
}

#[test]
fn a_delete_without_a_condition_never_removes_a_version_it_did_not_see() {
    let server = TigrisServer::start_with(Quirks { ignore_conditional_delete: true, ..Quirks::default() });
    let ep = server.endpoint();
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", false);
    let alice = Client::new("alice", "s3://team/vault", Some(&ep));
    let bob = Client::new("bob", "s3://team/vault", Some(&ep));
    let rec = probe_record(alice.dir.path());
    assert!(rec.conditional_put() && !rec.conditional_delete, "{rec:?}");
    alice.write("a.md", "v1\n");
    alice.write("b.md", "b\n");
    alice.sync(0);
    bob.sync(0);

    // Bob deletes both; a teammate writes a.md just before bob's delete reaches it.
    std::fs::remove_file(bob.path("a.md")).expect("rm");
    std::fs::remove_file(bob.path("b.md")).expect("rm");
    let repo = Repo::open(bob.dir.path()).expect("open");
    let record = repo.probe_record().expect("meta").expect("record");
    let inner = Probed::new(
        Box::new(S3Remote::connect("team", "vault", &s3_opts(&ep, ACCESS_KEY, SECRET_KEY)).expect("connect")),
        record,
    );
    assert!(!inner.capabilities().conditional_delete);
    let remote = Hooked::before_first_put(inner, "a.md", |r| {
        let etag = r.head("a.md", None).expect("head").etag;
        let theirs = b"teammate's v2\n";
        let cond = bmsync::remote::Condition::IfMatch(etag);
        r.put(
            "a.md",
            bmsync::remote::Body::Bytes(theirs),
            bmsync::ObjectId::for_blob(theirs),
            bmsync::EntryKind::File,
            &cond,
        )
        .expect("the teammate's write");
    });
    let opts = {
        let mut o = SyncOptions::default();
        o.jobs = Some(1);
        o.max_delete = Some(2);
        o
    };
    let s = bmsync::apply::sync(&repo, &remote, &opts).expect("sync");
    assert!(remote.fired());
    assert_eq!(s.deleted_remote, 1, "b.md went: {s:?}");
    drop(repo);
    // Nothing lost: the teammate's a.md is in the bucket and back in bob's folder.
    let mut got = Vec::new();
    remote.inner.get("a.md", None, &mut got).expect("a.md survives");
    assert_eq!(got, b"teammate's v2\n");
    assert_eq!(bob.read("a.md").as_deref(), Some("teammate's v2\n"), "{s:?}");
    assert_eq!(bucket_keys(&remote.inner), ["a.md"], "b.md is gone, its tombstone too");
    assert_eq!(raw_listing(&ep, "team").len(), 1);
    // Alice sees b.md deleted (never a tombstone file) and the teammate's a.md.
    let s = alice.sync(0);
    assert_eq!((s["deleted_local"].as_u64(), s["downloaded"].as_u64()), (Some(1), Some(1)), "{s}");
    assert_eq!(alice.files(), ["a.md"]);
}

#[test]
fn a_tombstone_left_by_an_interrupted_delete_reads_as_absent() {
    let server = TigrisServer::start_with(Quirks { ignore_conditional_delete: true, ..Quirks::default() });
    let ep = server.endpoint();
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", false);
    let alice = Client::new("alice", "s3://team/vault", Some(&ep));
    alice.write("gone.md", "v1\n");
    alice.write("kept.md", "k\n");
    alice.sync(0);
    // A delete cut short after its tombstone, and a teammate's probe object in flight.
    let raw = S3Remote::connect("team", "vault", &s3_opts(&ep, ACCESS_KEY, SECRET_KEY)).expect("connect");
    let etag = raw.head("gone.md", None).expect("head").etag;
    let t = bmsync::remote::TOMBSTONE;
    raw.put(
        "gone.md",
        bmsync::remote::Body::Bytes(t),
        bmsync::ObjectId::for_blob(t),
        bmsync::EntryKind::File,
        &bmsync::remote::Condition::IfMatch(etag),
    )
    .expect("tombstone");
    let p = b"probe";
    raw.put(
        ".bmsync/probe/bob-1",
        bmsync::remote::Body::Bytes(p),
        bmsync::ObjectId::for_blob(p),
        bmsync::EntryKind::File,
        &bmsync::remote::Condition::IfAbsent,
    )
    .expect("probe object");
    let s = alice.sync(0);
    assert_eq!(s["deleted_local"], 1, "{s}");
    assert_eq!(alice.files(), ["kept.md"]);
    assert_eq!(s["remote_skipped"], serde_json::json!([]), "bmsync's own keys are no notes: {s}");
}

#[test]
fn the_probe_is_recorded_with_its_time_and_shown() {
    let server = TigrisServer::start_with(Quirks { ignore_conditional_delete: true, ..Quirks::default() });
    let ep = server.endpoint();
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", true);
    let dir = tempfile::tempdir().expect("tmp");
    let t0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    let o = run(dir.path(), &["init", "--remote", "s3://team/vault", "--endpoint", &ep]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rec = probe_record(dir.path());
    assert_eq!((rec.remote.as_str(), rec.endpoint.as_deref()), ("s3://team/vault", Some(ep.as_str())));
    assert!((rec.if_none_match, rec.if_match, rec.conditional_delete) == (true, true, false), "{rec:?}");
    assert!(rec.snapshots && !rec.versioning, "{rec:?}");
    assert!(u128::from(rec.probed_ns) >= t0);
    let o = run(dir.path(), &["--json", "remote", "show"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["probe"]["if_none_match"], true);
    assert_eq!(v["probe"]["conditional_delete"], false);
    assert_eq!(v["probe"]["probed_ns"], rec.probed_ns);
    assert!(v["probed_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
    assert_eq!(v["capabilities"]["conditional_delete"], false);
    let text = String::from_utf8(run(dir.path(), &["remote", "show"]).stdout).expect("utf-8");
    assert!(text.contains("PUT If-Match:       yes (probed)"), "{text}");
    assert!(text.contains("conditional delete: no (probed)"), "{text}");
    assert!(text.contains("probed:             20"), "{text}");
    // --probe probes again; nothing is left in the bucket either time.
    let o = run(dir.path(), &["remote", "show", "--probe"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(probe_record(dir.path()).probed_ns > rec.probed_ns);
    assert_eq!(raw_listing(&ep, "team"), []);
}

/// A no-change sync costs what it did before probes existed, and never probes.
fn no_change_sync_costs(c: &Client, requests: &dyn Fn() -> u64) -> u64 {
    c.write("a.md", "a\n");
    c.sync(0);
    c.sync(0);
    let probed = probe_record(c.dir.path()).probed_ns;
    let before = requests();
    let s = c.sync(0);
    assert_eq!((s["uploaded"].as_u64(), s["downloaded"].as_u64()), (Some(0), Some(0)), "{s}");
    assert_eq!(probe_record(c.dir.path()).probed_ns, probed, "the probe did not run again");
    requests() - before
}

#[test]
fn healthy_remotes_see_no_probe_and_no_extra_request_on_a_no_change_sync() {
    // Tigris-compatible (snapshots): HeadBucket, GetBucketVersioning, a snapshot, a listing.
    let server = TigrisServer::start();
    let ep = server.endpoint();
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", true);
    let alice = Client::new("alice", "s3://team/vault", Some(&ep));
    let rec = probe_record(alice.dir.path());
    assert!(rec.conditional_put() && rec.conditional_delete, "{rec:?}");
    assert_eq!(no_change_sync_costs(&alice, &|| server.requests()), 4);
    // file://: the probe record stays as init left it.
    let bucket = tempfile::tempdir().expect("tmp");
    let bob = Client::new("bob", &format!("file://{}", bucket.path().display()), None);
    assert!(probe_record(bob.dir.path()).conditional_delete);
    no_change_sync_costs(&bob, &|| 0);
    assert_eq!(bucket_keys(&FileRemote::open(bucket.path()).expect("open")), ["a.md"]);
}

#[test]
fn moto_is_probed_healthy_and_a_no_change_sync_costs_three_requests() {
    let Some(ep) = crate::remote_contract::moto_endpoint("moto_is_probed_healthy") else { return };
    let bucket = format!("probe-{}", std::process::id());
    create_bucket(&ep, "test", "test", &bucket, false);
    let proxy =
        crate::sync_faults::CountingProxy::start(ep.trim_start_matches("http://").parse().expect("addr"));
    let c = Client::new("carol", &format!("s3://{bucket}/vault"), Some(&proxy.endpoint()));
    let rec = probe_record(c.dir.path());
    assert!(rec.conditional_put() && rec.conditional_delete, "moto honours every condition: {rec:?}");
    // HeadBucket, GetBucketVersioning, one listing.
    assert_eq!(no_change_sync_costs(&c, &|| proxy.requests()), 3);
    let err =
        S3Remote::connect("no-such-bucket-here", "", &s3_opts(&ep, "test", "test")).expect_err("missing");
    assert!(matches!(err, RemoteError::NoSuchBucket { .. }), "{err}");
}

// ---- typed errors ----

#[test]
fn a_missing_bucket_fails_at_once_naming_it() {
    let server = TigrisServer::start();
    let ep = server.endpoint();
    let dir = tempfile::tempdir().expect("tmp");
    let o = run(dir.path(), &["init", "--remote", "s3://no-such-bucket/vault", "--endpoint", &ep]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("bucket \"no-such-bucket\" does not exist"), "{}", stderr(&o));
    assert!(!dir.path().join(".bmsync").exists(), "a plainly wrong remote leaves nothing");
    // A bucket removed after init: sync stops with its name, not as a race.
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", true);
    let alice = Client::new("alice", "s3://team/vault", Some(&ep));
    alice.write("a.md", "a\n");
    let (rt, c) = raw_client(&ep, ACCESS_KEY, SECRET_KEY);
    rt.block_on(c.delete_bucket().bucket("team").send()).expect("delete bucket");
    let o = alice.run(&["sync"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bucket \"team\" does not exist"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("kept changing"), "{}", stderr(&o));
}

#[test]
fn wrong_credentials_fail_with_a_clear_message() {
    let server = TigrisServer::start();
    let ep = server.endpoint();
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", true);
    let alice = Client::new("alice", "s3://team/vault", Some(&ep));
    alice.write("a.md", "a\n");
    for (var, value, code) in [
        ("AWS_SECRET_ACCESS_KEY", "wrong-secret", "SignatureDoesNotMatch"),
        // s3s says NotSignedUp where AWS says InvalidAccessKeyId; both are credentials.
        ("AWS_ACCESS_KEY_ID", "unknown-key", "NotSignedUp"),
    ] {
        let o = alice.command(&["sync"]).env(var, value).output().expect("run");
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("credentials were refused") && err.contains(code), "{err}");
        assert!(err.contains("hint: check the credentials"), "{err}");
    }
    // moto does not check signatures, so this cannot be shown against it.
}

#[test]
fn access_denied_stops_the_sync_with_its_own_message() {
    let server = TigrisServer::start_with(Quirks { deny_writes: true, ..Quirks::default() });
    let ep = server.endpoint();
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", true);
    // Read-only credentials cannot even write the probe: kept, as not plainly wrong.
    let dir = tempfile::tempdir().expect("tmp");
    let o = run(dir.path(), &["init", "--remote", "s3://team/vault", "--endpoint", &ep]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("permission denied"), "{}", stderr(&o));
    std::fs::write(dir.path().join("a.md"), "a\n").expect("write");
    let o = run(dir.path(), &["sync"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("permission denied") && err.contains("AccessDenied"), "{err}");
    assert!(err.contains("hint: check the credentials"), "{err}");
    assert!(!err.contains("kept changing"), "{err}");
}

#[test]
fn a_new_remote_url_syncs_like_a_first_sync_and_deletes_nothing() {
    let server = TigrisServer::start();
    let ep = server.endpoint();
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "old", true);
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "new", true);
    let alice = Client::new("alice", "s3://old/vault", Some(&ep));
    alice.write("a.md", "a\n");
    alice.write("b.md", "b\n");
    alice.sync(0);
    let o = alice.run(&["--json", "remote", "set-url", "s3://new/vault"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["base_reset"], true);
    assert_eq!(v["endpoint"], ep.as_str(), "the endpoint is kept");
    // Against the old base, an empty bucket would read as "everything was deleted there".
    let s = alice.sync(0);
    assert_eq!((s["uploaded"].as_u64(), s["deleted_local"].as_u64()), (Some(2), Some(0)), "{s}");
    assert_eq!(alice.files(), ["a.md", "b.md"]);
    assert_eq!(raw_listing(&ep, "new").len(), 2);
    assert_eq!(raw_listing(&ep, "old").len(), 2, "the old bucket is untouched");
}

/// A remote whose disk is full: every put fails as the file remote reports ENOSPC.
struct FullDisk {
    inner: FileRemote,
    puts: std::sync::atomic::AtomicUsize,
}

impl Remote for FullDisk {
    fn url(&self) -> String {
        self.inner.url()
    }
    fn capabilities(&self) -> bmsync::remote::Capabilities {
        self.inner.capabilities()
    }
    fn list(&self, at: Option<u64>, each: &mut dyn FnMut(bmsync::remote::Listed)) -> Result<(), RemoteError> {
        self.inner.list(at, each)
    }
    fn head(&self, key: &str, at: Option<u64>) -> Result<bmsync::remote::ObjectInfo, RemoteError> {
        self.inner.head(key, at)
    }
    fn get(
        &self,
        key: &str,
        at: Option<u64>,
        out: &mut dyn std::io::Write,
    ) -> Result<bmsync::remote::ObjectInfo, RemoteError> {
        self.inner.get(key, at, out)
    }
    fn put(
        &self,
        _key: &str,
        _body: bmsync::remote::Body<'_>,
        _content: bmsync::ObjectId,
        _kind: bmsync::EntryKind,
        _cond: &bmsync::remote::Condition,
    ) -> Result<bmsync::remote::Written, RemoteError> {
        self.puts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(RemoteError::DiskFull { op: "put", detail: "No space left on device (os error 28)".to_owned() })
    }
    fn delete(&self, key: &str, if_match: &str) -> Result<(), RemoteError> {
        self.inner.delete(key, if_match)
    }
    fn snapshot(&self, name: Option<&str>) -> Result<u64, RemoteError> {
        self.inner.snapshot(name)
    }
    fn snapshots(&self) -> Result<Vec<bmsync::remote::SnapshotInfo>, RemoteError> {
        self.inner.snapshots()
    }
}

#[test]
fn a_full_disk_stops_the_sync_at_once_instead_of_looking_like_a_race() {
    let bucket = tempfile::tempdir().expect("tmp");
    let alice = Client::new("alice", &format!("file://{}", bucket.path().display()), None);
    for i in 0..5 {
        alice.write(&format!("n{i}.md"), "x\n");
    }
    let remote = FullDisk { inner: FileRemote::open(bucket.path()).expect("open"), puts: 0.into() };
    let repo = Repo::open(alice.dir.path()).expect("open");
    let opts = {
        let mut o = SyncOptions::default();
        o.jobs = Some(1);
        o
    };
    let err = bmsync::apply::sync(&repo, &remote, &opts).expect_err("a full disk");
    assert!(matches!(err, SyncError::Remote(RemoteError::DiskFull { .. })), "{err:?}");
    assert!(err.to_string().contains("disk is full"), "{err}");
    assert_eq!(remote.puts.load(std::sync::atomic::Ordering::SeqCst), 1, "stopped at the first failure");
    assert_eq!(list_all(&remote.inner, None).expect("list").0.len(), 0);
}

// ---- remotes that are not what they seem ----

#[test]
fn init_never_creates_a_missing_file_remote_unless_asked() {
    let shared = tempfile::tempdir().expect("tmp");
    let missing = shared.path().join("missing/deeper");
    let url = format!("file://{}", missing.display());
    let dir = tempfile::tempdir().expect("tmp");
    let o = run(dir.path(), &["init", "--remote", &url]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not exist") && stderr(&o).contains("--create"), "{}", stderr(&o));
    assert!(!shared.path().join("missing").exists(), "nothing was created");
    assert!(!dir.path().join(".bmsync").exists());
    let o = run(dir.path(), &["init", "--remote", &url, "--create"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(missing.join("bmsync-remote.redb").is_file());
}

#[test]
fn init_refuses_plainly_wrong_remotes_and_leaves_nothing() {
    let shared = tempfile::tempdir().expect("tmp");
    let file = shared.path().join("a-file");
    std::fs::write(&file, "not a folder").expect("write");
    let file_url = format!("file://{}", file.display());
    let dir = tempfile::tempdir().expect("tmp");
    for (url, needle) in [
        (file_url.as_str(), "not a folder"),
        ("s3://my..bucket", "invalid remote"),
        ("s3://10.0.0.1", "not an IP address"),
        ("s3://xn--bucket", "invalid remote"),
        ("s3://Team_Notes", "invalid remote"),
    ] {
        let o = run(dir.path(), &["init", "--remote", url]);
        assert_eq!(o.status.code(), Some(1), "{url}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{url}: {}", stderr(&o));
        assert!(!dir.path().join(".bmsync").exists(), "{url} left state behind");
    }
    // Asked to create a folder where none can be: plainly wrong too, not "unreachable".
    let under_file = format!("file://{}/sub", file.display());
    let o = run(dir.path(), &["init", "--remote", &under_file, "--create"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!dir.path().join(".bmsync").exists());
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "not a folder");
}

#[test]
fn an_unreachable_remote_is_kept_and_can_be_changed_later() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let dead = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("tmp");
    let o = run(dir.path(), &["init", "--remote", "s3://team/vault", "--endpoint", &dead]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot reach") && stderr(&o).contains("remote set-url"), "{}", stderr(&o));
    assert!(Repo::open(dir.path()).expect("kept").probe_record().expect("meta").is_none());
    let server = TigrisServer::start();
    let ep = server.endpoint();
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", true);
    let o = run(dir.path(), &["--json", "remote", "set-url", "s3://team/vault", "--endpoint", &ep]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["probe"]["endpoint"], ep.as_str());
    assert_eq!(v["probe"]["if_match"], true);
    std::fs::write(dir.path().join("a.md"), "a\n").expect("write");
    let o = run(dir.path(), &["sync"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(raw_listing(&ep, "team").len(), 1);
}

#[test]
fn a_vanished_file_remote_fails_clearly_and_is_never_recreated() {
    let shared = tempfile::tempdir().expect("tmp");
    let remote_dir = shared.path().join("drive");
    std::fs::create_dir(&remote_dir).expect("mkdir");
    let alice = Client::new("alice", &format!("file://{}", remote_dir.display()), None);
    alice.write("a.md", "a\n");
    alice.sync(0);
    // The drive is unmounted: the folder is gone.
    std::fs::remove_dir_all(&remote_dir).expect("rm");
    let o = alice.run(&["sync"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist") && stderr(&o).contains("mounted"), "{}", stderr(&o));
    assert!(!remote_dir.exists(), "never recreated");
    // Or only the empty mount point is left.
    std::fs::create_dir(&remote_dir).expect("mkdir");
    let o = alice.run(&["sync"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a bmsync remote folder"), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(&remote_dir).expect("read").count(), 0, "nothing written into it");
    assert_eq!(alice.read("a.md").as_deref(), Some("a\n"));
}

#[test]
fn a_changed_endpoint_is_probed_again_by_the_next_sync() {
    let good = TigrisServer::start();
    let bad = TigrisServer::start_with(Quirks { ignore_conditions: true, ..Quirks::default() });
    for s in [&good, &bad] {
        create_bucket(&s.endpoint(), ACCESS_KEY, SECRET_KEY, "team", true);
    }
    // No --endpoint: it comes from the environment, which changes between runs.
    let dir = tempfile::tempdir().expect("tmp");
    let env_good = [("AWS_ENDPOINT_URL", good.endpoint())];
    let env_good: Vec<(&str, &str)> = env_good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let o = run_env(dir.path(), &["init", "--remote", "s3://team/vault"], &env_good);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(probe_record(dir.path()).endpoint, Some(good.endpoint()));
    std::fs::write(dir.path().join("a.md"), "a\n").expect("write");
    let bad_ep = bad.endpoint();
    let o = run_env(dir.path(), &["sync"], &[("AWS_ENDPOINT_URL", bad_ep.as_str())]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("ignores If-None-Match and If-Match on PUT"), "{}", stderr(&o));
    let rec = probe_record(dir.path());
    assert_eq!(rec.endpoint, Some(bad.endpoint()), "probed again, through the new endpoint");
    assert_eq!(raw_listing(&bad.endpoint(), "team"), [], "nothing but the cleaned-up probe");
    // Back on the good endpoint: probed again, and the sync goes ahead.
    let o = run_env(dir.path(), &["sync"], &env_good);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(raw_listing(&good.endpoint(), "team").len(), 1);
}
