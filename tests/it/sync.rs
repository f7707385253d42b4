//! `bmsync sync` end to end: two and three clients on one remote (`file://` and the
//! Tigris-compatible server), through the CLI, checking files on disk and in the bucket.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bmsync::remote::{FileRemote, Remote, list_all};

use crate::tigris_server::{ACCESS_KEY, SECRET_KEY, TigrisServer};

/// The conflict copies a sync's JSON summary names.
pub(crate) fn conflict_copies(summary: &serde_json::Value) -> Vec<String> {
    summary["conflicts"]
        .as_array()
        .expect("conflicts")
        .iter()
        .filter_map(|c| c["local_copy"].as_str().map(str::to_owned))
        .collect()
}

pub(crate) struct Client {
    pub(crate) dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Client {
    pub(crate) fn new(name: &str, remote: &str, endpoint: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let env = vec![
            ("AWS_ACCESS_KEY_ID".to_owned(), ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), SECRET_KEY.to_owned()),
            ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
        ];
        let c = Self { dir, env };
        let mut args = vec!["init", "--client-id", name, "--remote", remote];
        if let Some(ep) = endpoint {
            args.extend(["--endpoint", ep]);
        }
        let o = c.run(&args);
        assert!(o.status.success(), "init: {}", String::from_utf8_lossy(&o.stderr));
        c
    }

    /// The command line for `bmsync -C DIR ARGS...` in this client's environment.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bmsync"));
        c.env("HOME", self.dir.path())
            .env_remove("BASIC_MEMORY_CONFIG_DIR")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .arg("-C")
            .arg(self.dir.path())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run bmsync")
    }

    /// Runs `sync --json`, asserting its exit code; returns the summary.
    #[track_caller]
    pub(crate) fn sync(&self, code: i32) -> serde_json::Value {
        let o = self.run(&["--json", "sync"]);
        assert_eq!(o.status.code(), Some(code), "stderr: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Runs a command that must succeed.
    pub(crate) fn ok(&self, args: &[&str]) -> std::process::Output {
        let o = self.run(args);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        o
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(crate) fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    pub(crate) fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.path(rel)).ok()
    }

    /// Every synced file (not under .bmsync), relative.
    pub(crate) fn files(&self) -> Vec<String> {
        fn go(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
                let p = e.path();
                let rel = p.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
                if rel == ".bmsync" {
                    continue;
                }
                if p.is_dir() {
                    go(root, &p, out);
                } else {
                    out.push(rel);
                }
            }
        }
        let mut out = Vec::new();
        go(self.dir.path(), self.dir.path(), &mut out);
        out.sort();
        out
    }
}

pub(crate) fn bucket_keys(remote: &dyn Remote) -> Vec<String> {
    let (objs, _) = list_all(remote, None).expect("list");
    objs.into_iter().map(|o| o.key).collect()
}

/// The scenarios every backend must pass. `remote()` opens the bucket for inspection.
pub(crate) fn scenarios(url: &str, endpoint: Option<&str>, remote: &dyn Remote) {
    let alice = Client::new("alice", url, endpoint);
    let bob = Client::new("bob", url, endpoint);

    // Alice's notes reach the bucket; junk never does.
    alice.write("notes/idea.md", "---\ntitle: Idea\n---\nfirst\n");
    alice.write("todo.md", "- milk\n");
    alice.write(".DS_Store", "junk");
    alice.write("scratch.tmp", "junk");
    alice.write(".obsidian/workspace.json", "{}");
    let s = alice.sync(0);
    assert_eq!(s["uploaded"], 2);
    assert_eq!(bucket_keys(remote), ["notes/idea.md", "todo.md"]);

    // Bob, a newcomer with an empty folder, gets everything and deletes nothing.
    let s = bob.sync(0);
    assert_eq!((s["downloaded"].as_u64(), s["deleted_remote"].as_u64()), (Some(2), Some(0)));
    assert_eq!(bob.files(), ["notes/idea.md", "todo.md"]);

    // An edit travels; a second sync is a no-op.
    bob.write("todo.md", "- milk\n- eggs\n");
    bob.sync(0);
    let s = alice.sync(0);
    assert_eq!(s["downloaded"], 1);
    assert_eq!(alice.read("todo.md").as_deref(), Some("- milk\n- eggs\n"));
    let s = alice.sync(0);
    assert_eq!((s["uploaded"].as_u64(), s["downloaded"].as_u64()), (Some(0), Some(0)));

    // Edit/edit: both versions are kept on both sides, under a name with `conflict`.
    alice.write("notes/idea.md", "alice's version\n");
    bob.write("notes/idea.md", "bob's version\n");
    alice.sync(0);
    let s = bob.sync(3);
    assert_eq!(s["conflicts"][0]["reason"], "edit_edit");
    let copy = s["conflicts"][0]["local_copy"].as_str().expect("a conflict copy").to_owned();
    assert!(copy.contains("conflict"), "{copy}");
    assert_eq!(bob.read("notes/idea.md").as_deref(), Some("alice's version\n"));
    assert_eq!(bob.read(&copy).as_deref(), Some("bob's version\n"));
    alice.sync(0);
    assert_eq!(alice.read(&copy).as_deref(), Some("bob's version\n"));
    assert!(bucket_keys(remote).contains(&copy));
    // The conflict stays open on bob's side (exit 3) until he settles it.
    let s = bob.sync(3);
    assert_eq!(s["open_conflicts"][0]["copy"].as_str(), Some(copy.as_str()), "{s}");
    bob.ok(&["resolve", "notes/idea.md", "--keep", "both"]);

    // A delete travels, into the other side's trash.
    bob.sync(0);
    std::fs::remove_file(alice.path("todo.md")).expect("rm");
    let s = alice.sync(0);
    assert_eq!(s["deleted_remote"], 1);
    let s = bob.sync(0);
    assert_eq!(s["deleted_local"], 1);
    assert!(bob.read("todo.md").is_none());
    assert!(!bucket_keys(remote).contains(&"todo.md".to_owned()));

    // The mass-delete guard: deleting everything is refused, and nothing is deleted.
    for f in alice.files() {
        std::fs::remove_file(alice.path(&f)).expect("rm");
    }
    let before = bucket_keys(remote);
    let o = alice.run(&["sync"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("max-delete"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(bucket_keys(remote), before, "a refused plan deletes nothing");

    // A client that lost its .bmsync deletes nothing: union mode.
    let carol = Client::new("carol", url, endpoint);
    carol.write("notes/idea.md", "carol's differing copy\n");
    carol.write("carol.md", "new\n");
    let s = carol.sync(3);
    assert_eq!(s["deleted_remote"], 0);
    assert_eq!(s["deleted_local"], 0);
    assert!(bucket_keys(remote).contains(&"carol.md".to_owned()));
    assert!(bucket_keys(remote).iter().filter(|k| k.starts_with("notes/idea")).count() >= 2);
}

#[test]
fn sync_over_the_file_remote() {
    let bucket = tempfile::tempdir().expect("tmp");
    let url = format!("file://{}", bucket.path().display());
    let inspect = FileRemote::open(bucket.path()).expect("open");
    scenarios(&url, None, &inspect);
}

#[test]
fn sync_over_the_tigris_compatible_server() {
    let server = TigrisServer::start();
    let ep = server.endpoint();
    crate::remote_contract::create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", true);
    let opts = bmsync::remote::S3Options {
        endpoint: Some(ep.clone()),
        credentials: Some((ACCESS_KEY.to_owned(), SECRET_KEY.to_owned())),
        ..Default::default()
    };
    let inspect = bmsync::remote::S3Remote::connect("team", "vault", &opts).expect("connect");
    scenarios("s3://team/vault", Some(&ep), &inspect);
}

#[test]
fn plan_shows_the_sync_and_writes_nothing() {
    let bucket = tempfile::tempdir().expect("tmp");
    let url = format!("file://{}", bucket.path().display());
    let alice = Client::new("alice", &url, None);
    alice.write("a.md", "one\n");
    alice.write("b.md", "two\n");
    alice.sync(0);
    alice.write("a.md", "one, edited\n");
    alice.write("c.md", "three\n");
    std::fs::remove_file(alice.path("b.md")).expect("rm");
    let state = || {
        let repo = bmsync::Repo::open(alice.dir.path()).expect("open");
        let ids = repo.store().object_ids().expect("ids");
        let refs = repo.store().refs().expect("refs");
        let cache = repo.store().worktree_state("worktree-stamp").expect("cache");
        (ids, refs, cache)
    };
    let before = state();
    let files_before = alice.files();
    let o = alice.run(&["--json", "plan"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["version"], 4);
    assert_eq!(v["refused"], serde_json::Value::Null);
    let ops: Vec<(String, String)> = v["ops"]
        .as_array()
        .expect("ops")
        .iter()
        .map(|op| {
            (op["path"].as_str().expect("path").to_owned(), op["action"].as_str().expect("action").to_owned())
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("a.md".into(), "upload".into()),
            ("b.md".into(), "delete_remote".into()),
            ("c.md".into(), "upload".into())
        ]
    );
    let text = String::from_utf8(alice.run(&["plan"]).stdout).expect("utf-8");
    assert!(
        text.contains("3 operations") && text.contains("delete there") && text.contains("b.md"),
        "{text}"
    );
    assert!(state() == before, "plan must not write objects, refs or the stat cache");
    assert_eq!(alice.files(), files_before);
    let inspect = FileRemote::open(bucket.path()).expect("open");
    assert_eq!(bucket_keys(&inspect), ["a.md", "b.md"], "plan must not write to the bucket");
}

#[test]
fn a_fresh_download_reads_each_object_once() {
    let bucket = tempfile::tempdir().expect("tmp");
    let url = format!("file://{}", bucket.path().display());
    let (alice, bob) = (Client::new("alice", &url, None), Client::new("bob", &url, None));
    for i in 0..20 {
        alice.write(&format!("notes/n{i}.md"), &format!("note {i}\n"));
    }
    std::fs::write(alice.path("notes/run.sh"), "#!/bin/sh\n").expect("write");
    let mut mode = std::fs::metadata(alice.path("notes/run.sh")).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o755);
    std::fs::set_permissions(alice.path("notes/run.sh"), mode).expect("chmod");
    alice.sync(0);
    // A push writes no local file, so it reads nothing whole: HEADs only.
    let o = bob.run(&["--json", "push"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pushed: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(pushed["requests"]["get"], 0, "{pushed}");
    assert!(!bob.path(".bmsync/stage").exists());
    let got = bob.sync(0);
    let req = |k: &str| got["requests"][k].as_u64().unwrap_or_else(|| panic!("{k} in {got}"));
    // One GET per object and no HEAD of any: the view's read is the download.
    assert_eq!((req("get"), req("head")), (21, 0), "{got}");
    assert_eq!(alice.files(), bob.files());
    let mode = std::fs::metadata(bob.path("notes/run.sh")).expect("stat").permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o111, 0o111, "the kind came with the GET");
    assert!(!bob.path(".bmsync/stage").exists(), "the stage folder is gone after the sync");
}

#[test]
fn a_plan_rebuilds_only_the_remote_folders_a_teammate_changed() {
    let bucket = tempfile::tempdir().expect("tmp");
    let url = format!("file://{}", bucket.path().display());
    let (alice, bob) = (Client::new("alice", &url, None), Client::new("bob", &url, None));
    for i in 0..40 {
        alice.write(&format!("d{}/e{}/n{i}.md", i % 5, i % 4), &format!("note {i}\n"));
    }
    alice.sync(0);
    bob.sync(0);
    alice.write("d1/e1/n1.md", "note 1, edited\n");
    alice.sync(0);
    let plan = |c: &Client| -> serde_json::Value {
        let o = c.run(&["--json", "plan"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("json")
    };
    let v = plan(&bob);
    assert_eq!(v["ops"].as_array().expect("ops").len(), 1, "{v}");
    assert_eq!(v["ops"][0]["action"], "download");
    // The root, d1 and d1/e1, not the 26 folders of the whole listing: the last sync's
    // manifest tree was patched.
    assert_eq!(v["stats"]["remote_trees_built"], 3, "{v}");
    // A record that names another manifest is no hint: the same plan, built in full.
    let repo = bmsync::Repo::open(bob.dir.path()).expect("open");
    repo.store().set_meta("manifest-tree", &[0; 64]).expect("meta");
    drop(repo);
    let full = plan(&bob);
    assert_eq!(full["ops"], v["ops"]);
    assert_eq!(full["stats"]["remote_trees_built"], 26, "{full}");
}

/// Everything about every entry under `root` (itself included): kind, mode, mtime, and
/// bytes or link target. Two equal fingerprints mean nothing there changed.
type Fingerprint = std::collections::BTreeMap<PathBuf, (u32, i64, i64, Vec<u8>)>;

fn fingerprint(root: &Path) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    fn go(p: &Path, out: &mut Fingerprint) {
        let m = std::fs::symlink_metadata(p).expect("lstat");
        let content = if m.is_file() {
            std::fs::read(p).expect("read")
        } else if m.file_type().is_symlink() {
            std::fs::read_link(p).expect("readlink").into_os_string().into_encoded_bytes()
        } else {
            Vec::new()
        };
        out.insert(p.to_owned(), (m.mode(), m.mtime(), m.mtime_nsec(), content));
        if m.is_dir() {
            for e in std::fs::read_dir(p).expect("read_dir") {
                go(&e.expect("entry").path(), out);
            }
        }
    }
    let mut out = Fingerprint::new();
    go(root, &mut out);
    out
}

/// Sets the mtime of every entry under `root` an hour back, so that any write, even in
/// the same clock tick as the last one, shows as a changed mtime.
fn age(root: &Path) {
    fn go(p: &Path, t: std::time::SystemTime) {
        let m = std::fs::symlink_metadata(p).expect("lstat");
        if m.is_dir() {
            for e in std::fs::read_dir(p).expect("read_dir") {
                go(&e.expect("entry").path(), t);
            }
        }
        if !m.file_type().is_symlink() {
            std::fs::File::open(p).expect("open").set_modified(t).expect("set mtime");
        }
    }
    go(root, std::time::SystemTime::now() - std::time::Duration::from_secs(3600));
}

#[test]
fn plan_changes_no_byte_or_mtime_of_the_folder_its_state_or_the_remote() {
    let bucket = tempfile::tempdir().expect("tmp");
    let url = format!("file://{}", bucket.path().display());
    let alice = Client::new("alice", &url, None);
    let bob = Client::new("bob", &url, None);
    alice.write("a.md", "one\n");
    alice.write("b.md", "two\n");
    alice.write("notes/c.md", "three\n");
    alice.sync(0);
    bob.sync(0);
    // Remote changes (alice) and local ones (bob), both not yet synced by bob.
    alice.write("a.md", "one, edited by alice\n");
    std::fs::remove_file(alice.path("b.md")).expect("rm");
    alice.write("e.md", "new from alice\n");
    alice.sync(0);
    bob.write("notes/c.md", "three, edited by bob\n");
    bob.write("d.md", "new from bob\n");
    age(bob.dir.path());
    age(bucket.path());
    let (folder, remote) = (fingerprint(bob.dir.path()), fingerprint(bucket.path()));
    assert!(folder.keys().any(|p| p.ends_with(".bmsync/store.redb")), "the state is compared too");
    for args in [&["--json", "plan"][..], &["plan"]] {
        let o = bob.run(args);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        if args[0] == "--json" {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
            let mut actions: Vec<String> = v["ops"]
                .as_array()
                .expect("ops")
                .iter()
                .map(|op| {
                    format!(
                        "{} {}",
                        op["action"].as_str().expect("action"),
                        op["path"].as_str().expect("path")
                    )
                })
                .collect();
            actions.sort();
            assert_eq!(
                actions,
                ["delete_local b.md", "download a.md", "download e.md", "upload d.md", "upload notes/c.md"]
            );
        }
        let (f2, r2) = (fingerprint(bob.dir.path()), fingerprint(bucket.path()));
        for (what, a, b) in [("folder", &folder, &f2), ("remote", &remote, &r2)] {
            let changed: Vec<&PathBuf> =
                a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).collect();
            assert!(changed.is_empty(), "{args:?} changed the {what}: {changed:?}");
        }
    }
    // The plan was right: a sync then does it.
    let s = bob.sync(0);
    assert_eq!(
        (s["uploaded"].as_u64(), s["downloaded"].as_u64(), s["deleted_local"].as_u64()),
        (Some(2), Some(2), Some(1))
    );
}

/// A hook that runs inside a remote call, given the inner remote.
type Hook<R> = Box<dyn Fn(&R) + Send + Sync>;

/// Fault injection around a real remote: a hook runs once, just before the first put of
/// a key (a teammate's racing write, a file changing under its upload, an outage...), or
/// just before the first get of a key (an edit during a download), or just before the
/// n-th snapshot (a teammate writing between our apply and our snapshot).
pub(crate) struct Hooked<R: Remote> {
    pub(crate) inner: R,
    put: Option<(String, Hook<R>)>,
    get: Option<(String, Hook<R>)>,
    snapshot: Option<(usize, Hook<R>)>,
    snapshots: std::sync::atomic::AtomicUsize,
    fired: std::sync::atomic::AtomicBool,
}

impl<R: Remote> Hooked<R> {
    /// Runs `hook` once, before the first put of `key`.
    pub(crate) fn before_first_put(inner: R, key: &str, hook: impl Fn(&R) + Send + Sync + 'static) -> Self {
        Self { put: Some((key.to_owned(), Box::new(hook))), ..Self::plain(inner) }
    }

    /// Runs `hook` once, before the first get of `key` (a download under way).
    pub(crate) fn before_first_get(inner: R, key: &str, hook: impl Fn(&R) + Send + Sync + 'static) -> Self {
        Self { get: Some((key.to_owned(), Box::new(hook))), ..Self::plain(inner) }
    }

    /// Runs `hook` once, before the `n`-th snapshot (counting from 1).
    pub(crate) fn before_snapshot(inner: R, n: usize, hook: impl Fn(&R) + Send + Sync + 'static) -> Self {
        Self { snapshot: Some((n, Box::new(hook))), ..Self::plain(inner) }
    }

    fn plain(inner: R) -> Self {
        Self {
            inner,
            put: None,
            get: None,
            snapshot: None,
            snapshots: std::sync::atomic::AtomicUsize::new(0),
            fired: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(crate) fn fired(&self) -> bool {
        self.fired.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn fire(&self, hook: &Hook<R>) {
        if !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            hook(&self.inner);
        }
    }
}

impl<R: Remote> Remote for Hooked<R> {
    fn url(&self) -> String {
        self.inner.url()
    }
    fn capabilities(&self) -> bmsync::remote::Capabilities {
        self.inner.capabilities()
    }
    fn list(
        &self,
        at: Option<u64>,
        each: &mut dyn FnMut(bmsync::remote::Listed),
    ) -> Result<(), bmsync::remote::RemoteError> {
        self.inner.list(at, each)
    }
    fn head(
        &self,
        key: &str,
        at: Option<u64>,
    ) -> Result<bmsync::remote::ObjectInfo, bmsync::remote::RemoteError> {
        self.inner.head(key, at)
    }
    fn get(
        &self,
        key: &str,
        at: Option<u64>,
        out: &mut dyn std::io::Write,
    ) -> Result<bmsync::remote::ObjectInfo, bmsync::remote::RemoteError> {
        if let Some((k, hook)) = &self.get
            && k == key
        {
            self.fire(hook);
        }
        self.inner.get(key, at, out)
    }
    fn put(
        &self,
        key: &str,
        body: bmsync::remote::Body<'_>,
        content: bmsync::ObjectId,
        kind: bmsync::EntryKind,
        cond: &bmsync::remote::Condition,
    ) -> Result<bmsync::remote::Written, bmsync::remote::RemoteError> {
        if let Some((k, hook)) = &self.put
            && k == key
        {
            self.fire(hook);
        }
        self.inner.put(key, body, content, kind, cond)
    }
    fn delete(&self, key: &str, if_match: &str) -> Result<(), bmsync::remote::RemoteError> {
        self.inner.delete(key, if_match)
    }
    fn snapshot(&self, name: Option<&str>) -> Result<u64, bmsync::remote::RemoteError> {
        let n = self.snapshots.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if let Some((at, hook)) = &self.snapshot
            && *at == n
        {
            self.fire(hook);
        }
        self.inner.snapshot(name)
    }
    fn snapshots(&self) -> Result<Vec<bmsync::remote::SnapshotInfo>, bmsync::remote::RemoteError> {
        self.inner.snapshots()
    }
    fn abort_uploads(&self, key: &str, since: u64) -> Result<usize, bmsync::remote::RemoteError> {
        self.inner.abort_uploads(key, since)
    }
}

#[test]
fn a_file_appended_during_its_upload_is_never_recorded_with_the_wrong_content() {
    let server = TigrisServer::start();
    let ep = server.endpoint();
    crate::remote_contract::create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", true);
    let alice = Client::new("alice", "s3://team/vault", Some(&ep));
    // Large enough to go up in parts, straight from the file.
    let big = (0..(17 << 20) / 32).fold(String::new(), |mut s, i| {
        use std::fmt::Write as _;
        writeln!(s, "{i:031}").expect("writing to a String cannot fail");
        s
    });
    alice.write("att/big.log", &big);
    let opts = bmsync::remote::S3Options {
        endpoint: Some(ep.clone()),
        credentials: Some((ACCESS_KEY.to_owned(), SECRET_KEY.to_owned())),
        ..Default::default()
    };
    let file = alice.path("att/big.log");
    let inner = bmsync::remote::S3Remote::connect("team", "vault", &opts).expect("connect");
    let remote = Hooked::before_first_put(inner, "att/big.log", move |_| {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new().append(true).open(&file).expect("open");
        f.write_all(b"appended while uploading\n").expect("append");
    });
    let repo = bmsync::Repo::open(alice.dir.path()).expect("open repo");
    let summary = bmsync::apply::sync(&repo, &remote, &bmsync::apply::SyncOptions::default()).expect("sync");
    assert!(remote.fired());
    assert!(summary.rounds >= 2, "the torn upload was re-planned: {summary:?}");
    // What the bucket holds is what the folder holds now, and the base says so truly.
    let mut got = Vec::new();
    remote.inner.get("att/big.log", None, &mut got).expect("get");
    let now = std::fs::read(alice.path("att/big.log")).expect("read");
    assert!(got == now, "bucket and folder agree");
    assert!(String::from_utf8_lossy(&now).ends_with("appended while uploading\n"));
    drop(repo);
    let s = alice.sync(0);
    assert_eq!((s["uploaded"].as_u64(), s["downloaded"].as_u64()), (Some(0), Some(0)), "nothing left to do");
}
