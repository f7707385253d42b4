//! Every row of the reconciliation table (`format-spec/plan.md`) end to end, three
//! clients on one prefix, and the one-way `push`/`pull`, on every backend: `file://`,
//! the Tigris-compatible server, and moto (started by `scripts/test-all`).

use std::collections::BTreeMap;

use bmsync::remote::{FileRemote, Remote, S3Remote};

use crate::sync::{Client, Hooked, bucket_keys};
use crate::tigris_server::{ACCESS_KEY, SECRET_KEY, TigrisServer};

/// A bucket to sync with, and a handle to inspect it.
pub(crate) struct Backend {
    pub(crate) name: &'static str,
    pub(crate) url: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) inspect: Box<dyn Remote>,
    /// How to open another handle on the bucket: a folder, or a bucket and options.
    open: Opener,
    _dir: Option<tempfile::TempDir>,
    _server: Option<TigrisServer>,
}

enum Opener {
    File(std::path::PathBuf),
    S3(String, bmsync::remote::S3Options),
}

/// The moto endpoint `scripts/test-all` started, or `None` (loudly; an error under CI).
pub(crate) fn moto_endpoint(test: &str) -> Option<String> {
    let ep = std::env::var("BMSYNC_TEST_MOTO_ENDPOINT").ok().filter(|v| !v.is_empty());
    if ep.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but BMSYNC_TEST_MOTO_ENDPOINT is not set: run the tests through scripts/test-all"
        );
        eprintln!("\n*** {test} DID NOT RUN against moto: no moto server (run scripts/test-all) ***\n");
    }
    ep
}

/// `file://`, the Tigris-compatible server, and moto when it runs. Each gets a fresh,
/// empty bucket named after `test`.
pub(crate) fn backends(test: &str) -> Vec<Backend> {
    let dir = tempfile::tempdir().expect("tmp");
    let mut out = vec![Backend {
        name: "file",
        url: format!("file://{}", dir.path().display()),
        endpoint: None,
        inspect: Box::new(FileRemote::open(dir.path()).expect("open")),
        open: Opener::File(dir.path().to_owned()),
        _dir: Some(dir),
        _server: None,
    }];
    let server = TigrisServer::start();
    let ep = server.endpoint();
    crate::remote_contract::create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", true);
    let opts = crate::remote_contract::s3_opts(&ep, ACCESS_KEY, SECRET_KEY);
    out.push(Backend {
        name: "tigris",
        url: "s3://team/vault".to_owned(),
        endpoint: Some(ep),
        inspect: Box::new(S3Remote::connect("team", "vault", &opts).expect("connect")),
        open: Opener::S3("team".to_owned(), opts),
        _dir: None,
        _server: Some(server),
    });
    if let Some(ep) = moto_endpoint(test) {
        let bucket = format!("{}-{}", test.replace('_', "-"), std::process::id());
        crate::remote_contract::create_bucket(&ep, "test", "test", &bucket, false);
        let opts = crate::remote_contract::s3_opts(&ep, "test", "test");
        out.push(Backend {
            name: "moto",
            url: format!("s3://{bucket}/vault"),
            endpoint: Some(ep),
            inspect: Box::new(S3Remote::connect(&bucket, "vault", &opts).expect("connect")),
            open: Opener::S3(bucket.clone(), opts),
            _dir: None,
            _server: None,
        });
    }
    out
}

impl Backend {
    pub(crate) fn client(&self, name: &str) -> Client {
        Client::new(name, &self.url, self.endpoint.as_deref())
    }

    pub(crate) fn content(&self, key: &str) -> Option<String> {
        let mut out = Vec::new();
        self.inspect.get(key, None, &mut out).ok()?;
        Some(String::from_utf8(out).expect("test content is UTF-8"))
    }
}

/// Runs `check` with a fresh handle on the backend's bucket, of its concrete type.
macro_rules! with_remote {
    ($b:expr, |$r:ident| $check:expr) => {
        match &$b.open {
            Opener::File(dir) => {
                let $r = FileRemote::open(dir).expect("open");
                $check
            }
            Opener::S3(bucket, opts) => {
                let $r = S3Remote::connect(bucket, "vault", opts).expect("connect");
                $check
            }
        }
    };
}

/// Every synced file of a client with its content.
fn tree(c: &Client) -> BTreeMap<String, String> {
    c.files().into_iter().map(|f| (f.clone(), c.read(&f).expect("readable"))).collect()
}

/// The plan's (action, reason) per path.
fn plan_of(c: &Client) -> BTreeMap<String, (String, String)> {
    let o = c.run(&["--json", "plan"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("plan json");
    // Exit 3 exactly when the plan holds conflicts.
    let conflicts = v["stats"]["conflicts"].as_u64().expect("stats");
    assert_eq!(
        o.status.code(),
        Some(if conflicts > 0 { 3 } else { 0 }),
        "plan: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    v["ops"]
        .as_array()
        .expect("ops")
        .iter()
        .map(|op| {
            let s = |k: &str| op[k].as_str().unwrap_or_default().to_owned();
            (s("path"), (s("action"), s("reason")))
        })
        .collect()
}

fn rm(c: &Client, rel: &str) {
    std::fs::remove_file(c.path(rel)).expect("rm");
}

fn mv(c: &Client, from: &str, to: &str) {
    std::fs::rename(c.path(from), c.path(to)).expect("mv");
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, read top to bottom
fn every_row_of_the_reconciliation_table_end_to_end() {
    for b in backends("table") {
        let alice = b.client("alice");
        let bob = b.client("bob");
        let base = [
            "r01.md",
            "r03.md",
            "r05.md",
            "r06.md",
            "r07.md",
            "r09.md",
            "r10.md",
            "r12.md",
            "r13.md",
            "r14",
            "r15.md",
            "r16.md",
            "keep1.md",
            "keep2.md",
            "keep3.md",
            "keep4.md",
            "keep5.md",
            "keep6.md",
            "keep7.md",
            "keep8.md",
            "keep9.md",
            "keep10.md",
        ];
        for f in base {
            alice.write(f, &format!("base {f}\n"));
        }
        alice.write("r17.md", "one\ntwo\nthree\nfour\n");
        alice.sync(0);
        bob.sync(0);

        // The remote side of each row, made by bob.
        bob.write("r03.md", "bob changed\n");
        bob.write("r04.md", "bob added\n");
        rm(&bob, "r06.md");
        bob.write("r07.md", "same change\n");
        bob.write("r08.md", "same add\n");
        rm(&bob, "r09.md");
        bob.write("r10.md", "bob's edit\n");
        bob.write("r11.md", "bob's add\n");
        bob.write("r12.md", "bob's edit of what alice deletes\n");
        rm(&bob, "r13.md");
        mv(&bob, "r16.md", "r16-renamed.md");
        bob.write("r17.md", "one\ntwo\nthree\nfour, bob\n");
        bob.sync(0);

        // The local side, made by alice.
        alice.write("r01.md", "alice changed\n");
        alice.write("r02.md", "alice added\n");
        rm(&alice, "r05.md");
        alice.write("r07.md", "same change\n");
        alice.write("r08.md", "same add\n");
        rm(&alice, "r09.md");
        alice.write("r10.md", "alice's edit\n");
        alice.write("r11.md", "alice's add\n");
        rm(&alice, "r12.md");
        alice.write("r13.md", "alice's edit of what bob deletes\n");
        rm(&alice, "r14");
        alice.write("r14/inside.md", "a file became a folder\n");
        mv(&alice, "r15.md", "r15-renamed.md");
        alice.write("r17.md", "one, alice\ntwo\nthree\nfour\n");

        let plan = plan_of(&alice);
        let row = |p: &str| plan.get(p).map(|(a, r)| (a.as_str(), r.as_str()));
        let n = b.name;
        assert_eq!(row("r01.md"), Some(("upload", "local_changed")), "{n}");
        assert_eq!(row("r02.md"), Some(("upload", "local_added")), "{n}");
        assert_eq!(row("r03.md"), Some(("download", "remote_changed")), "{n}");
        assert_eq!(row("r04.md"), Some(("download", "remote_added")), "{n}");
        assert_eq!(row("r05.md"), Some(("delete_remote", "local_deleted")), "{n}");
        assert_eq!(row("r06.md"), Some(("delete_local", "remote_deleted")), "{n}");
        assert_eq!(row("r07.md"), Some(("record", "both_changed")), "{n}");
        assert_eq!(row("r08.md"), Some(("record", "both_added")), "{n}");
        assert_eq!(row("r09.md"), Some(("record", "both_deleted")), "{n}");
        // Both edited: a merge, which overlaps for r10 (one line each) and not for r17.
        assert_eq!(row("r10.md"), Some(("merge", "edit_edit")), "{n}");
        assert_eq!(row("r17.md"), Some(("merge", "edit_edit")), "{n}");
        assert_eq!(row("r11.md"), Some(("conflict", "add_add")), "{n}");
        assert_eq!(row("r12.md"), Some(("download", "delete_edit")), "{n}");
        assert_eq!(row("r13.md"), Some(("upload", "edit_delete")), "{n}");
        assert_eq!(row("r14"), Some(("conflict", "type_change")), "{n}: {plan:?}");
        assert_eq!(row("r15-renamed.md"), Some(("move_remote", "local_renamed")), "{n}");
        assert_eq!(row("r16-renamed.md"), Some(("move_local", "remote_renamed")), "{n}");
        assert!(plan.keys().all(|p| !p.starts_with("keep")), "{n}: untouched files stay out of the plan");

        let s = alice.sync(3);
        let copies = crate::sync::conflict_copies(&s);
        assert_eq!(copies.len(), 2, "{n}: r10 and r11 keep alice's version aside: {s}");
        let mut kinds: Vec<&str> = s["conflicts"]
            .as_array()
            .expect("conflicts")
            .iter()
            .filter_map(|c| c["reason"].as_str())
            .collect();
        kinds.sort_unstable();
        assert_eq!(kinds, ["add_add", "delete_edit", "edit_delete", "edit_edit"], "{n}: {s}");
        assert_eq!(s["merged"][0]["path"], "r17.md", "{n}: {s}");
        // Each row's outcome, in alice's folder and in the bucket.
        let want: &[(&str, Option<&str>)] = &[
            ("r01.md", Some("alice changed\n")),
            ("r02.md", Some("alice added\n")),
            ("r03.md", Some("bob changed\n")),
            ("r04.md", Some("bob added\n")),
            ("r05.md", None),
            ("r06.md", None),
            ("r07.md", Some("same change\n")),
            ("r08.md", Some("same add\n")),
            ("r09.md", None),
            ("r10.md", Some("bob's edit\n")),
            ("r11.md", Some("bob's add\n")),
            ("r12.md", Some("bob's edit of what alice deletes\n")),
            ("r13.md", Some("alice's edit of what bob deletes\n")),
            ("r15.md", None),
            ("r15-renamed.md", Some("base r15.md\n")),
            ("r16.md", None),
            ("r16-renamed.md", Some("base r16.md\n")),
            ("r17.md", Some("one, alice\ntwo\nthree\nfour, bob\n")),
        ];
        for (p, content) in want {
            assert_eq!(alice.read(p).as_deref(), *content, "{n}: {p} in the folder");
            assert_eq!(b.content(p).as_deref(), *content, "{n}: {p} in the bucket");
        }
        for c in &copies {
            let theirs = alice.read(c).expect("the copy is on disk");
            assert!(theirs == "alice's edit\n" || theirs == "alice's add\n", "{n}: {c}: {theirs}");
            assert_eq!(b.content(c).as_deref(), Some(theirs.as_str()), "{n}: {c} in the bucket");
        }
        // The type change: the folder takes the path; the file it replaced was the base's,
        // so it goes as a deletion would (in a later round of the same sync).
        assert_eq!(alice.read("r14/inside.md").as_deref(), Some("a file became a folder\n"), "{n}");
        assert_eq!(b.content("r14/inside.md").as_deref(), Some("a file became a folder\n"), "{n}");
        assert_eq!(b.content("r14"), None, "{n}");

        // Bob catches up (his unchanged file r14 gives way to the folder), and both
        // folders equal the bucket.
        bob.sync(0);
        let (ta, tb) = (tree(&alice), tree(&bob));
        assert_eq!(ta, tb, "{n}: alice and bob converge");
        let keys = bucket_keys(b.inspect.as_ref());
        assert_eq!(keys, ta.keys().cloned().collect::<Vec<_>>(), "{n}: the bucket holds the same files");
    }
}

#[test]
fn three_clients_on_one_prefix_converge_and_lose_nothing() {
    for b in backends("three") {
        let n = b.name;
        let clients = [b.client("alice"), b.client("bob"), b.client("carol")];
        clients[0].write("shared.md", "v0\n");
        for c in &clients {
            c.sync(0);
        }
        // Each edits its own note and the shared one.
        for (i, c) in clients.iter().enumerate() {
            c.write(&format!("own-{i}.md"), &format!("by {i}\n"));
            c.write("shared.md", &format!("edited by {i}\n"));
        }
        let mut codes = Vec::new();
        for c in &clients {
            let o = c.run(&["--json", "sync"]);
            codes.push(o.status.code());
        }
        assert_eq!(
            codes,
            [Some(0), Some(3), Some(3)],
            "{n}: the first writer wins the path, the others conflict"
        );
        for (c, code) in clients.iter().zip([0, 3, 3]) {
            c.sync(code);
        }
        let t0 = tree(&clients[0]);
        assert_eq!(tree(&clients[1]), t0, "{n}");
        assert_eq!(tree(&clients[2]), t0, "{n}");
        assert_eq!(bucket_keys(b.inspect.as_ref()), t0.keys().cloned().collect::<Vec<_>>(), "{n}");
        // Every version anyone wrote is still somewhere.
        let all: Vec<&String> = t0.values().collect();
        for i in 0..3 {
            assert!(all.contains(&&format!("by {i}\n")), "{n}: own-{i}");
            assert!(all.contains(&&format!("edited by {i}\n")), "{n}: shared edit {i}: {t0:?}");
        }
        assert_eq!(t0.keys().filter(|k| k.contains("conflict")).count(), 2, "{n}: {t0:?}");
    }
}

#[test]
fn push_and_pull_move_one_way_and_delete_only_when_told() {
    for b in backends("oneway") {
        let n = b.name;
        let alice = b.client("alice");
        let bob = b.client("bob");
        for f in ["a.md", "b.md", "c.md", "d.md", "x.md", "y.md"] {
            alice.write(f, &format!("base {f}\n"));
        }
        alice.sync(0);
        bob.sync(0);

        // Alice edits, deletes and adds; bob adds. A push sends alice's edit and addition
        // only: no download, and no remote deletion without --delete.
        alice.write("a.md", "alice's a\n");
        rm(&alice, "b.md");
        alice.write("new.md", "alice's new\n");
        bob.write("bob.md", "bob's new\n");
        bob.sync(0);
        let o = alice.run(&["--json", "push"]);
        assert_eq!(o.status.code(), Some(0), "{n}: {}", String::from_utf8_lossy(&o.stderr));
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!((s["uploaded"].as_u64(), s["downloaded"].as_u64()), (Some(2), Some(0)), "{n}: {s}");
        assert_eq!(s["deleted_remote"], 0, "{n}");
        assert!(alice.read("bob.md").is_none(), "{n}: push never writes locally");
        assert_eq!(b.content("b.md").as_deref(), Some("base b.md\n"), "{n}: no --delete, no deletion");

        // A pull brings bob's note; it deletes nothing locally without --delete.
        bob.write("c.md", "bob's c\n");
        rm(&bob, "d.md");
        bob.sync(0);
        let o = alice.run(&["--json", "pull"]);
        assert_eq!(o.status.code(), Some(0), "{n}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(alice.read("bob.md").as_deref(), Some("bob's new\n"), "{n}");
        assert_eq!(alice.read("c.md").as_deref(), Some("bob's c\n"), "{n}");
        assert_eq!(alice.read("d.md").as_deref(), Some("base d.md\n"), "{n}: no --delete, no deletion");
        assert_eq!(b.content("b.md").as_deref(), Some("base b.md\n"), "{n}: pull never writes remotely");

        // With --delete, each carries its deletions.
        let o = alice.run(&["push", "--delete"]);
        assert_eq!(o.status.code(), Some(0), "{n}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(b.content("b.md").is_none(), "{n}");
        let o = alice.run(&["pull", "--delete"]);
        assert_eq!(o.status.code(), Some(0), "{n}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(alice.read("d.md").is_none(), "{n}");

        // Conflicts stop a push or pull before anything changes...
        alice.write("x.md", "alice's x\n");
        alice.write("y.md", "alice's y\n");
        alice.write("z.md", "alice's z\n");
        bob.write("x.md", "bob's x\n");
        bob.write("y.md", "bob's y\n");
        bob.sync(0);
        for verb in ["push", "pull"] {
            let o = alice.run(&[verb]);
            assert_eq!(o.status.code(), Some(3), "{n}: {verb}: {}", String::from_utf8_lossy(&o.stderr));
            assert!(String::from_utf8_lossy(&o.stderr).contains("nothing was changed"), "{n}");
        }
        assert!(b.content("z.md").is_none(), "{n}: a refused push sends nothing");
        assert_eq!(alice.read("x.md").as_deref(), Some("alice's x\n"), "{n}");
        // ...unless told how to resolve them: keep-local pushes alice's version...
        let o = alice.run(&["--json", "push", "--on-conflict", "keep-local"]);
        assert_eq!(o.status.code(), Some(0), "{n}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(b.content("x.md").as_deref(), Some("alice's x\n"), "{n}");
        assert_eq!(b.content("y.md").as_deref(), Some("alice's y\n"), "{n}");
        assert_eq!(b.content("z.md").as_deref(), Some("alice's z\n"), "{n}");
        // ...keep-remote pulls bob's, with alice's in the trash...
        bob.sync(0);
        bob.write("x.md", "bob's x again\n");
        bob.sync(0);
        alice.write("x.md", "alice's x again\n");
        let o = alice.run(&["--json", "pull", "--on-conflict", "keep-remote"]);
        assert_eq!(o.status.code(), Some(0), "{n}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(alice.read("x.md").as_deref(), Some("bob's x again\n"), "{n}");
        let trashed = walk(&alice.path(".bmsync/trash"), false);
        assert!(
            trashed.iter().any(|p| std::fs::read_to_string(p).ok().as_deref() == Some("alice's x again\n")),
            "{n}: alice's losing version is recoverable from the trash"
        );
        // ...and keep-both keeps both.
        bob.write("y.md", "bob's y again\n");
        bob.sync(0);
        alice.write("y.md", "alice's y again\n");
        let o = alice.run(&["--json", "pull", "--on-conflict", "keep-both"]);
        assert_eq!(o.status.code(), Some(3), "{n}: {}", String::from_utf8_lossy(&o.stderr));
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        let copy = s["conflicts"][0]["local_copy"].as_str().expect("a copy").to_owned();
        assert_eq!(alice.read(&copy).as_deref(), Some("alice's y again\n"), "{n}");
        assert_eq!(alice.read("y.md").as_deref(), Some("bob's y again\n"), "{n}");

        // A final sync each way leaves both folders equal (alice's conflict stays open).
        alice.sync(3);
        bob.sync(0);
        assert_eq!(tree(&alice), tree(&bob), "{n}");
    }
}

/// Every file under `dir` (without `.bmsync/` when `skip_state`).
pub(crate) fn walk(dir: &std::path::Path, skip_state: bool) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if skip_state && p.file_name().is_some_and(|n| n == ".bmsync") {
                continue;
            }
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out
}

#[test]
fn the_sync_scenarios_pass_against_moto() {
    let Some(ep) = moto_endpoint("the_sync_scenarios_pass_against_moto") else { return };
    let bucket = format!("scenarios-{}", std::process::id());
    crate::remote_contract::create_bucket(&ep, "test", "test", &bucket, false);
    let inspect = S3Remote::connect(&bucket, "vault", &crate::remote_contract::s3_opts(&ep, "test", "test"))
        .expect("connect");
    crate::sync::scenarios(&format!("s3://{bucket}/vault"), Some(&ep), &inspect);
}

#[test]
fn a_teammate_write_racing_our_apply_is_never_lost() {
    for b in backends("race") {
        with_remote!(b, |inner| teammate_races(&b, inner));
    }
}

fn teammate_races<R: Remote + 'static>(b: &Backend, inner: R) {
    let n = b.name;
    let alice = b.client("alice");
    alice.write("shared.md", "v1\n");
    alice.sync(0);
    alice.write("shared.md", "alice's edit\n");
    // A teammate writes shared.md directly, between our plan and our upload.
    let racing = Hooked::before_first_put(inner, "shared.md", |inner| {
        let etag = inner.head("shared.md", None).expect("teammate reads").etag;
        let theirs = b"teammate's racing edit\n";
        let cond = bmsync::remote::Condition::IfMatch(etag);
        let body = bmsync::remote::Body::Bytes(theirs);
        inner
            .put("shared.md", body, bmsync::ObjectId::for_blob(theirs), bmsync::EntryKind::File, &cond)
            .expect("teammate writes");
    });
    let repo = bmsync::Repo::open(alice.dir.path()).expect("open repo");
    let summary = bmsync::apply::sync(&repo, &racing, &bmsync::apply::SyncOptions::default()).expect("sync");
    assert!(racing.fired(), "{n}: the race happened");
    // The upload lost its If-Match; the next round saw both edits and kept both.
    assert_eq!(summary.conflicts.len(), 1, "{n}: {summary:?}");
    let copy = summary.conflicts[0].local_copy.clone().expect("alice's version kept aside");
    assert_eq!(alice.read("shared.md").as_deref(), Some("teammate's racing edit\n"), "{n}");
    assert_eq!(alice.read(&copy).as_deref(), Some("alice's edit\n"), "{n}");
    let keys = bucket_keys(&racing.inner);
    assert!(keys.contains(&copy) && keys.contains(&"shared.md".to_owned()), "{n}: {keys:?}");
    assert_eq!(b.content("shared.md").as_deref(), Some("teammate's racing edit\n"), "{n}: not overwritten");
}
