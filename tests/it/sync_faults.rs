//! Syncs that are interrupted: `kill -9` in the middle of 2,000 files, an endpoint that
//! dies mid-sync, a journal left by a crash, and a teammate writing between our apply
//! and our snapshot. Each must end with nothing lost, nothing stray, and a base that
//! tells the truth.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bmsync::Repo;
use bmsync::apply::{SyncError, SyncOptions};
use bmsync::remote::{FileRemote, Remote, RemoteError, S3Options, S3Remote, list_all};

use crate::sync::{Client, Hooked, bucket_keys};
use crate::sync_table::walk;
use crate::tigris_server::{ACCESS_KEY, SECRET_KEY, TigrisServer};

const FILES: usize = 2_000;

/// 2,000 notes in 40 folders, of a few hundred bytes to a few KiB each.
fn write_vault(c: &Client) {
    for i in 0..FILES {
        let body =
            format!("---\ntitle: Note {i}\n---\n{}\n", "lorem ipsum dolor sit amet ".repeat(5 + i % 150));
        c.write(&format!("folder-{:02}/note-{i:04}.md", i % 40), &body);
    }
}

/// Starts `bmsync sync` as a child and kills it (SIGKILL) once `progress()` reaches
/// `at`. Returns the progress seen at the kill, or `None` if it finished first.
fn kill_midway(c: &Client, at: usize, progress: impl Fn() -> usize) -> Option<usize> {
    let mut child: Child = c.command(&["--json", "sync"]).spawn().expect("spawn bmsync");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().expect("poll child").is_some() {
            return None;
        }
        let n = progress();
        if n >= at {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
            return Some(n);
        }
        assert!(Instant::now() < deadline, "the sync made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Files under `dir` whose name says they are a sync's temporary file.
fn temp_files(dir: &Path) -> Vec<String> {
    walk(dir, true)
        .into_iter()
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(bmsync::apply::TEMP_PREFIX))
        })
        .map(|p| p.display().to_string())
        .collect()
}

fn count_files(dir: &Path) -> usize {
    walk(dir, true).len()
}

#[test]
fn kill_9_during_a_2000_file_sync_then_a_clean_rerun() {
    let server = TigrisServer::start();
    let ep = server.endpoint();
    crate::remote_contract::create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", true);
    let inspect =
        S3Remote::connect("team", "vault", &crate::remote_contract::s3_opts(&ep, ACCESS_KEY, SECRET_KEY))
            .expect("connect");
    let keys = || list_all(&inspect, None).map_or(0, |(o, _)| o.len());

    // Upload: killed twice (once during the recovery run), then run to the end.
    let alice = Client::new("alice", "s3://team/vault", Some(&ep));
    write_vault(&alice);
    let first = kill_midway(&alice, 300, keys).expect("killed before the upload finished");
    assert!(first < FILES, "{first}");
    let second = kill_midway(&alice, first + 600, keys);
    eprintln!("killed at {first} and {second:?} of {FILES} objects");
    let s = alice.sync(0);
    if second.is_some() {
        assert!(s["recovered"]["unfinished"].as_u64() > Some(0), "the journal saw the kill: {s}");
    }
    assert_eq!(keys(), FILES, "every note is in the bucket, once");
    for i in (0..FILES).step_by(97) {
        let key = format!("folder-{:02}/note-{i:04}.md", i % 40);
        let mut got = Vec::new();
        inspect.get(&key, None, &mut got).expect("get");
        assert_eq!(Some(String::from_utf8(got).expect("utf-8")), alice.read(&key), "{key}");
    }
    let s = alice.sync(0);
    assert_eq!((s["uploaded"].as_u64(), s["downloaded"].as_u64()), (Some(0), Some(0)), "nothing left: {s}");
    assert!(temp_files(alice.dir.path()).is_empty());

    // Download: a newcomer killed mid-way leaves no temporary file behind after the rerun,
    // and ends with exactly alice's notes.
    let bob = Client::new("bob", "s3://team/vault", Some(&ep));
    let killed = kill_midway(&bob, 300, || count_files(bob.dir.path()));
    assert!(killed.is_some_and(|n| n < FILES), "killed mid-download: {killed:?}");
    let s = bob.sync(0);
    assert_eq!(s["deleted_local"], 0);
    assert_eq!(s["deleted_remote"], 0);
    assert!(temp_files(bob.dir.path()).is_empty(), "{:?}", temp_files(bob.dir.path()));
    assert_eq!(bob.files(), alice.files());
    for f in bob.files().iter().step_by(89) {
        assert_eq!(bob.read(f), alice.read(f), "{f}");
    }
    let s = bob.sync(0);
    assert_eq!((s["uploaded"].as_u64(), s["downloaded"].as_u64()), (Some(0), Some(0)), "{s}");
}

/// A TCP proxy in front of a server, which can be cut: while it is down, open
/// connections are shut and new ones are closed at once (a dead endpoint).
pub(crate) struct Proxy {
    pub(crate) addr: std::net::SocketAddr,
    down: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub(crate) fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let down = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (d, o) = (down.clone(), open.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                let mut open = o.lock().expect("lock");
                open.extend([client.try_clone().expect("clone"), server.try_clone().expect("clone")]);
                drop(open);
                pipe(client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                pipe(server, client);
            }
        });
        Self { addr, down, open }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            for s in self.open.lock().expect("lock").drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

/// A TCP proxy in front of a server that counts the HTTP requests passing through it
/// (request lines sent upstream), for servers that cannot count them themselves (moto).
pub(crate) struct CountingProxy {
    addr: std::net::SocketAddr,
    requests: Arc<std::sync::atomic::AtomicU64>,
}

impl CountingProxy {
    pub(crate) fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let n = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                let (n, from, to) =
                    (n.clone(), client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                std::thread::spawn(move || count_requests(from, to, &n));
                pipe(server, client);
            }
        });
        Self { addr, requests }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to`, counting HTTP/1.1 request lines (the tests' bodies never hold one).
fn count_requests(mut from: TcpStream, mut to: TcpStream, n: &std::sync::atomic::AtomicU64) {
    const MARK: &[u8] = b" HTTP/1.1\r\n";
    let mut buf = [0u8; 16 << 10];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => {
                tail.extend_from_slice(&buf[..k]);
                let found = tail.windows(MARK.len()).filter(|w| *w == MARK).count();
                n.fetch_add(found as u64, Ordering::SeqCst);
                let keep = tail.len().min(MARK.len() - 1);
                tail.drain(..tail.len() - keep);
                if to.write_all(&buf[..k]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

#[test]
fn a_dead_endpoint_mid_sync_stops_cleanly_and_keeps_what_succeeded() {
    let server = TigrisServer::start();
    let ep = server.endpoint();
    crate::remote_contract::create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", true);
    let upstream = ep.trim_start_matches("http://").parse().expect("socket address");
    let proxy = Arc::new(Proxy::start(upstream));
    let alice = Client::new("alice", "s3://team/vault", Some(&proxy.endpoint()));
    for i in 0..300 {
        alice.write(&format!("n/{i:04}.md"), &format!("note {i}\n"));
    }
    let opts = S3Options {
        endpoint: Some(proxy.endpoint()),
        timeout: Duration::from_secs(2),
        max_attempts: 2,
        credentials: Some((ACCESS_KEY.to_owned(), SECRET_KEY.to_owned())),
    };
    let inner = S3Remote::connect("team", "vault", &opts).expect("connect");
    let p = proxy.clone();
    let remote = Hooked::before_first_put(inner, "n/0150.md", move |_| p.set_down(true));
    let repo = Repo::open(alice.dir.path()).expect("open");
    let err = bmsync::apply::sync(&repo, &remote, &SyncOptions::default()).expect_err("the endpoint died");
    assert!(remote.fired());
    match &err {
        SyncError::Remote(RemoteError::Unreachable { endpoint, .. }) => {
            assert!(endpoint.contains(&proxy.addr.port().to_string()), "{err}");
        }
        other => panic!("expected the endpoint to be reported unreachable, got {other:?}"),
    }
    // What succeeded before the outage is recorded as synced; nothing else is.
    let base = repo.base().expect("base").expect("the run recorded what succeeded");
    let commit = repo.store().get_commit(&base).expect("commit");
    let manifest = repo.store().get_manifest(&commit.baseline.expect("baseline").manifest).expect("manifest");
    let recorded = manifest.entries().len();
    assert!((100..300).contains(&recorded), "{recorded} paths recorded");
    drop(repo);

    // The endpoint comes back: the next sync sends only the rest.
    proxy.set_down(false);
    let s = alice.sync(0);
    // Writes that landed while their answers were lost in the outage are never sent
    // again: they show as "both sides agree" (recorded), or the journal the failed sync
    // kept says they landed (nothing to do at all).
    let (up, rec) = (s["uploaded"].as_u64().expect("n"), s["recorded"].as_u64().expect("n"));
    let rest = 300 - recorded as u64;
    assert!(up + rec <= rest && up + rec + 8 >= rest, "at most the operations in flight at the cut: {s}");
    assert!(rec <= 8, "at most the operations in flight at the cut: {s}");
    let repo = Repo::open(alice.dir.path()).expect("open");
    let base = repo.base().expect("base").expect("a base");
    let commit = repo.store().get_commit(&base).expect("commit");
    let manifest = repo.store().get_manifest(&commit.baseline.expect("baseline").manifest).expect("manifest");
    assert_eq!(manifest.entries().len(), 300, "every note is synced now");
    drop(repo);
    let direct =
        S3Remote::connect("team", "vault", &crate::remote_contract::s3_opts(&ep, ACCESS_KEY, SECRET_KEY))
            .expect("connect");
    assert_eq!(bucket_keys(&direct).len(), 300);
}

#[test]
fn an_interrupted_sync_is_cleaned_up_from_its_journal() {
    let server = TigrisServer::start();
    let ep = server.endpoint();
    crate::remote_contract::create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", true);
    let alice = Client::new("alice", "s3://team/vault", Some(&ep));
    alice.write("big.bin", "pretend this was 20 MiB\n");
    alice.write("sub/a.md", "a\n");
    // What a sync killed mid-flight leaves: two temporary downloads, a dangling multipart
    // upload of ours, and the journal naming them. A teammate's upload of another key is
    // in flight too, and must be left alone.
    let (rt, raw) = crate::remote_contract::raw_client(&ep, ACCESS_KEY, SECRET_KEY);
    let start = |key: &str| {
        rt.block_on(raw.create_multipart_upload().bucket("team").key(key).send())
            .expect("start an upload")
            .upload_id()
            .expect("an upload id")
            .to_owned()
    };
    start("vault/big.bin");
    start("vault/teammate.bin");
    let started =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos()
            - 1_000_000_000;
    alice.write(".bmsync-dl-7-0", "half a download");
    alice.write("sub/.bmsync-dl-7-1", "half another");
    let entry = |op: &str, path: &str, tmp: Option<&str>, multipart: bool, done: bool| {
        serde_json::to_vec(&serde_json::json!({
            "op": op, "path": path, "tmp": tmp, "multipart": multipart, "started_ns": started as u64, "done": done,
        }))
        .expect("json")
    };
    {
        let repo = Repo::open(alice.dir.path()).expect("open");
        repo.store()
            .journal_write(
                &[
                    (0, entry("download", "x.md", Some(".bmsync-dl-7-0"), false, false)),
                    (1, entry("download", "sub/y.md", Some("sub/.bmsync-dl-7-1"), false, false)),
                    (2, entry("upload", "big.bin", None, true, false)),
                    (3, entry("upload", "sub/a.md", None, false, true)),
                ],
                &[],
            )
            .expect("journal");
    }
    let s = alice.sync(0);
    assert_eq!(
        s["recovered"],
        serde_json::json!({"unfinished": 3, "temp_files": 2, "uploads_aborted": 1}),
        "{s}"
    );
    assert!(temp_files(alice.dir.path()).is_empty());
    let uploads = rt.block_on(raw.list_multipart_uploads().bucket("team").send()).expect("list uploads");
    let left: Vec<&str> = uploads.uploads().iter().filter_map(|u| u.key()).collect();
    assert_eq!(left, ["vault/teammate.bin"], "ours aborted, the teammate's untouched");
    assert_eq!(alice.files(), ["big.bin", "sub/a.md"]);
    // The journal is empty again: the next run recovers nothing.
    let s = alice.sync(0);
    assert!(s["recovered"].is_null(), "{s}");
}

#[test]
fn a_teammate_write_between_our_apply_and_our_snapshot_is_not_recorded_as_seen() {
    let bucket = tempfile::tempdir().expect("tmp");
    let url = format!("file://{}", bucket.path().display());
    let alice = Client::new("alice", &url, None);
    alice.write("shared.md", "v1\n");
    alice.sync(0);
    alice.write("shared.md", "alice's v2\n");
    // Snapshot 1 is the view; snapshot 2 is taken after apply. The teammate writes just
    // before it, over alice's fresh upload.
    let remote = Hooked::before_snapshot(FileRemote::open(bucket.path()).expect("open"), 2, |inner| {
        let etag = inner.head("shared.md", None).expect("head").etag;
        let theirs = b"teammate's v3\n";
        let cond = bmsync::remote::Condition::IfMatch(etag);
        inner
            .put(
                "shared.md",
                bmsync::remote::Body::Bytes(theirs),
                bmsync::ObjectId::for_blob(theirs),
                bmsync::EntryKind::File,
                &cond,
            )
            .expect("put");
    });
    let repo = Repo::open(alice.dir.path()).expect("open");
    let s = bmsync::apply::sync(&repo, &remote, &SyncOptions::default()).expect("sync");
    assert!(remote.fired());
    assert_eq!(s.uploaded, 1);
    assert_eq!(s.changed_after_apply, ["shared.md"], "{s:?}");
    // The base does not claim the teammate's version (or ours) as synced there.
    let commit = repo.store().get_commit(&s.base.expect("base")).expect("commit");
    let manifest = repo.store().get_manifest(&commit.baseline.expect("baseline").manifest).expect("manifest");
    let theirs_etag = remote.inner.head("shared.md", None).expect("head").etag;
    assert!(manifest.entries().iter().all(|e| e.etag != theirs_etag), "{manifest:?}");
    drop(repo);
    // The next sync sees the teammate's write as a change there, and keeps both versions.
    let s = alice.sync(3);
    let copy = s["conflicts"][0]["local_copy"].as_str().expect("a copy").to_owned();
    assert_eq!(alice.read("shared.md").as_deref(), Some("teammate's v3\n"));
    assert_eq!(alice.read(&copy).as_deref(), Some("alice's v2\n"));
    assert_eq!(list_all(&remote.inner, None).expect("list").0.len(), 2);
}

#[test]
fn a_stale_content_hint_never_hides_a_teammates_edit() {
    let server = TigrisServer::start();
    let ep = server.endpoint();
    crate::remote_contract::create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", true);
    let alice = Client::new("alice", "s3://team/vault", Some(&ep));
    alice.write("a.md", "v1\n");
    alice.write("b.md", "same\n");
    alice.write("c.md", "c1\n");
    alice.sync(0);
    // Another tool replaces the objects but keeps bmsync's metadata, which now lies:
    // a.md's and c.md's claim their old content, b.md's claims what alice is about to
    // write. a.md and b.md keep their sizes, so only the content id tells them apart.
    let raw =
        S3Remote::connect("team", "vault", &crate::remote_contract::s3_opts(&ep, ACCESS_KEY, SECRET_KEY))
            .expect("connect");
    let put = |key: &str, bytes: &[u8], claimed: &[u8]| {
        let etag = raw.head(key, None).expect("head").etag;
        let cond = bmsync::remote::Condition::IfMatch(etag);
        raw.put(
            key,
            bmsync::remote::Body::Bytes(bytes),
            bmsync::ObjectId::for_blob(claimed),
            bmsync::EntryKind::File,
            &cond,
        )
        .expect("put");
    };
    put("a.md", b"v2\n", b"v1\n");
    put("b.md", b"bob's bb!\n", b"alice's b\n");
    put("c.md", b"teammate's c2\n", b"c1\n");
    alice.write("b.md", "alice's b\n");
    // Taken at face value, a.md would be "only the ETag changed" and b.md "both made the
    // same edit", hiding the teammate's work until alice's next edit overwrote it. The
    // bytes decide instead: a.md and c.md download, b.md is a conflict that keeps both.
    let s = alice.sync(3);
    assert_eq!(alice.read("a.md").as_deref(), Some("v2\n"), "{s}");
    assert_eq!(alice.read("c.md").as_deref(), Some("teammate's c2\n"), "{s}");
    assert_eq!(s["conflicts"][0]["path"], "b.md", "{s}");
    assert_eq!(alice.read("b.md").as_deref(), Some("bob's bb!\n"));
    let copy = s["conflicts"][0]["local_copy"].as_str().expect("copy");
    assert_eq!(alice.read(copy).as_deref(), Some("alice's b\n"));
    // Settled on both sides, and still an open conflict until alice says which to keep.
    let s = alice.sync(3);
    assert_eq!((s["uploaded"].as_u64(), s["downloaded"].as_u64()), (Some(0), Some(0)), "settled: {s}");
}

#[test]
fn an_edit_made_while_its_file_downloads_is_never_overwritten() {
    let bucket = tempfile::tempdir().expect("tmp");
    let url = format!("file://{}", bucket.path().display());
    let alice = Client::new("alice", &url, None);
    let bob = Client::new("bob", &url, None);
    alice.write("a.md", "v1\n");
    alice.write("gone.md", "v1\n");
    alice.sync(0);
    bob.sync(0);
    alice.write("a.md", "alice's v2\n");
    std::fs::remove_file(alice.path("gone.md")).expect("rm");
    alice.sync(0);
    // Bob's sync downloads a.md and deletes gone.md; bob edits both while a.md's bytes
    // are on their way (after the sync checked them).
    let (a, gone) = (bob.path("a.md"), bob.path("gone.md"));
    let remote =
        Hooked::before_first_get(FileRemote::open(bucket.path()).expect("open"), "a.md", move |_| {
            std::fs::write(&a, "bob's edit during the download\n").expect("edit");
            std::fs::write(&gone, "bob's edit of a deleted note\n").expect("edit");
        });
    let repo = Repo::open(bob.dir.path()).expect("open");
    let opts = {
        let mut o = SyncOptions::default();
        o.jobs = Some(1);
        o
    };
    let s = bmsync::apply::sync(&repo, &remote, &opts).expect("sync");
    assert!(remote.fired());
    // Nothing of bob's was overwritten or deleted: the next round saw both edits as his,
    // and kept both versions of a.md.
    let copy = s.conflicts.iter().find(|c| c.path == "a.md").and_then(|c| c.local_copy.clone());
    let copy = copy.unwrap_or_else(|| panic!("a.md is a conflict: {s:?}"));
    assert_eq!(bob.read(&copy).as_deref(), Some("bob's edit during the download\n"));
    assert_eq!(bob.read("a.md").as_deref(), Some("alice's v2\n"));
    assert_eq!(bob.read("gone.md").as_deref(), Some("bob's edit of a deleted note\n"), "{s:?}");
    assert!(temp_files(bob.dir.path()).is_empty());
}
