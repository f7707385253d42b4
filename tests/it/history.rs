//! History and recovery: `fsck`, `gc`, revisions, `log`, `show`, `restore`, through the
//! CLI on real stores and remotes.

use std::path::Path;

use bmsync::{ObjectId, ObjectKind};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::sync::Client;

const OBJECTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("objects");
const REFS: TableDefinition<&str, &[u8; 32]> = TableDefinition::new("refs");

/// A client on a fresh `file://` bucket (the bucket's temp dir comes back too).
fn file_client(name: &str) -> (tempfile::TempDir, Client) {
    let bucket = tempfile::tempdir().expect("tmp");
    let url = format!("file://{}", bucket.path().display());
    let c = Client::new(name, &url, None);
    (bucket, c)
}

fn store_path(c: &Client) -> std::path::PathBuf {
    c.path(".bmsync/store.redb")
}

/// Runs `f` on the store's raw redb database, as bit rot or a bad tool would.
fn with_db(path: &Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::open(path).expect("open raw");
    let txn = db.begin_write().expect("write txn");
    f(&txn);
    txn.commit().expect("commit");
}

fn object_ids(path: &Path) -> Vec<ObjectId> {
    let db = redb::Database::open(path).expect("open raw");
    let txn = db.begin_read().expect("read txn");
    let t = txn.open_table(OBJECTS).expect("objects");
    t.iter().expect("iter").map(|i| ObjectId::from_bytes(*i.expect("row").0.value())).collect()
}

/// Runs `--json fsck`; returns the exit code and the report.
fn fsck(c: &Client) -> (Option<i32>, serde_json::Value) {
    let o = c.run(&["--json", "fsck"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    (o.status.code(), serde_json::from_slice(&o.stdout).expect("fsck prints JSON"))
}

/// The findings' (kind, subject) pairs.
fn findings(report: &serde_json::Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (f["kind"].as_str().expect("kind").to_owned(), f["subject"].as_str().expect("subject").to_owned())
        })
        .collect()
}

/// A client with a few synced files, in a folder and at the top, and a local commit.
fn synced_client() -> (tempfile::TempDir, Client) {
    let (b, c) = file_client("alice");
    c.write("a.md", "alpha\n");
    c.write("notes/b.md", "bravo\n");
    c.write("notes/deep/c.md", "charlie\n");
    // A symlink and a file stored in chunks, which fsck and gc must handle too.
    std::os::unix::fs::symlink("a.md", c.path("link.md")).expect("symlink");
    let big: Vec<u8> = (0..(3 << 19)).map(|i: u32| (i % 253) as u8).collect();
    std::fs::create_dir_all(c.path("att")).expect("mkdir");
    std::fs::write(c.path("att/big.pdf"), big).expect("write");
    c.sync(0);
    c.write("a.md", "alpha 2\n");
    c.ok(&["commit", "-m", "local edit"]);
    (b, c)
}

#[test]
fn fsck_passes_a_healthy_store_and_finds_a_flipped_byte() {
    let (_b, c) = synced_client();
    let (code, report) = fsck(&c);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["healthy"], true);
    assert!(report["objects"].as_u64().expect("objects") >= 8, "{report}");
    assert_eq!(report["commits"], 2, "{report}");
    let text = String::from_utf8(c.ok(&["fsck"]).stdout).expect("utf-8");
    assert!(text.contains("no problems"), "{text}");

    // One byte of a blob's compressed row flipped.
    let blob = ObjectId::for_blob(b"bravo\n");
    with_db(&store_path(&c), |txn| {
        let mut t = txn.open_table(OBJECTS).expect("objects");
        let mut row = t.get(blob.as_bytes()).expect("get").expect("row present").value().to_vec();
        let last = row.len() - 1;
        row[last] ^= 0x40;
        t.insert(blob.as_bytes(), row.as_slice()).expect("insert");
    });
    let (code, report) = fsck(&c);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(findings(&report), [("corrupt_object".to_owned(), blob.to_hex())], "{report}");
    let o = c.run(&["fsck"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&format!("corrupt_object {blob}")) && text.contains("1 problem\n"), "{text}");
}

#[test]
fn fsck_finds_a_missing_object_and_a_dangling_ref() {
    let (_b, c) = synced_client();
    // The tree of notes/deep/, which both commits name.
    let deep = {
        let repo = bmsync::Repo::open(c.dir.path()).expect("open");
        let root = repo.resolve_tree("base").expect("base").expect("a base");
        repo.lookup(root, "notes/deep", "base").expect("lookup").id
    };
    with_db(&store_path(&c), |txn| {
        txn.open_table(OBJECTS).expect("objects").remove(deep.as_bytes()).expect("remove");
    });
    let (code, report) = fsck(&c);
    assert_eq!(code, Some(1), "{report}");
    let found = findings(&report);
    assert!(found.iter().all(|f| f == &("missing_object".to_owned(), deep.to_hex())), "{report}");
    assert!(!found.is_empty());

    let ghost = ObjectId::for_blob(b"never stored");
    with_db(&store_path(&c), |txn| {
        txn.open_table(REFS).expect("refs").insert("backup", ghost.as_bytes()).expect("insert");
    });
    let (code, report) = fsck(&c);
    assert_eq!(code, Some(1));
    assert!(findings(&report).contains(&("dangling_ref".to_owned(), "ref backup".to_owned())), "{report}");
}

#[test]
fn fsck_reports_a_damaged_store_file_without_panicking() {
    let (_b, c) = synced_client();
    let path = store_path(&c);
    let mut bytes = std::fs::read(&path).expect("read");
    for b in bytes.iter_mut().skip(4096).take(8192) {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).expect("write");
    let (code, report) = fsck(&c);
    assert_eq!(code, Some(1), "{report}");
    assert!(findings(&report).iter().any(|(k, _)| k == "damaged" || k == "corrupt_object"), "{report}");
    let _ = ObjectKind::Blob;
}

#[test]
fn gc_keeps_what_is_reachable_and_removes_what_is_not() {
    let (_b, c) = synced_client();
    c.sync(0); // the local commit becomes the sync commit's second parent
    c.write("notes/b.md", "bravo 2\n");
    c.sync(0);
    // Unreachable: a blob written by hand, and a commit no ref reaches any more.
    c.write("loose.txt", "nobody needs me\n");
    c.ok(&["hash-object", "-w", "loose.txt"]);
    std::fs::remove_file(c.path("loose.txt")).expect("rm");
    // A large one too, stored in chunks: its chunk rows must go with it.
    let big: Vec<u8> = (0..(5 << 19)).map(|i: u32| (i % 251) as u8).collect();
    std::fs::write(c.path("big.bin"), &big).expect("write");
    c.ok(&["hash-object", "-w", "big.bin"]);
    std::fs::remove_file(c.path("big.bin")).expect("rm");
    c.write("a.md", "alpha 3\n");
    let made = c.ok(&["--json", "commit", "-m", "abandoned"]);
    let abandoned: serde_json::Value = serde_json::from_slice(&made.stdout).expect("json");
    let abandoned = abandoned["id"].as_str().expect("id").to_owned();
    let base = String::from_utf8(c.ok(&["cat-object", "-t", "base"]).stdout).expect("utf-8");
    assert_eq!(base, "commit\n");
    c.ok(&["update-ref", "head", "base"]);
    c.write("a.md", "alpha 2\n");

    let before = object_ids(&store_path(&c));
    let loose = ObjectId::for_blob(b"nobody needs me\n");
    assert!(before.contains(&loose));
    let o = c.ok(&["--json", "gc"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let after = object_ids(&store_path(&c));
    assert!(!after.contains(&loose), "{r}");
    assert!(!after.contains(&ObjectId::for_blob(&big)), "{r}");
    assert!(!after.iter().any(|id| id.to_hex() == abandoned), "{r}");
    assert_eq!(r["removed"].as_u64(), Some((before.len() - after.len()) as u64), "{r}");
    assert!(r["removed"].as_u64().expect("removed") >= 2, "{r}");
    // Everything the history names is still there, and reads back.
    let (code, report) = fsck(&c);
    assert_eq!(code, Some(0), "{report}");
    for (rev, want) in [
        ("base:notes/b.md", "bravo 2\n"),
        ("base~1:notes/b.md", "bravo\n"),
        ("base~1:a.md", "alpha 2\n"),
        ("base~2:a.md", "alpha\n"),
    ] {
        assert_eq!(String::from_utf8(c.ok(&["show", rev]).stdout).expect("utf-8"), want, "{rev}");
    }
    // A second gc finds nothing more.
    let o = c.ok(&["--json", "gc"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["removed"], 0, "{r}");
}

#[test]
fn an_interrupted_gc_leaves_a_store_fsck_passes() {
    let (_b, c) = synced_client();
    for i in 0..6 {
        c.write(&format!("loose-{i}.txt"), &format!("loose {i}\n"));
        c.ok(&["hash-object", "-w", &format!("loose-{i}.txt")]);
        std::fs::remove_file(c.path(&format!("loose-{i}.txt"))).expect("rm");
    }
    let repo = bmsync::Repo::open(c.dir.path()).expect("open");
    let mut opts = bmsync::repo::GcOptions::default();
    opts.batch = 2;
    opts.max_batches = Some(1);
    let r = repo.gc(&opts).expect("gc");
    assert_eq!((r.removed, r.left), (2, 4), "{r:?}");
    assert!(repo.store().fsck().healthy(), "{:?}", repo.store().fsck());
    opts.max_batches = None;
    let r = repo.gc(&opts).expect("gc");
    assert_eq!((r.removed, r.left), (4, 0), "{r:?}");
    assert!(repo.store().fsck().healthy());
}

#[test]
fn gc_removes_trash_older_than_keep_days() {
    let (_b, c) = synced_client();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    let day = 24 * 3600 * 1_000_000_000u128;
    let old = c.path(&format!(".bmsync/trash/{}", now - 10 * day));
    let recent = c.path(&format!(".bmsync/trash/{}", now - day));
    for d in [&old, &recent] {
        std::fs::create_dir_all(d.join("notes")).expect("mkdir");
        std::fs::write(d.join("notes/x.md"), "x").expect("write");
    }
    let o = c.ok(&["--json", "gc", "--keep", "5"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["trash_removed"], 1, "{r}");
    assert!(!old.exists() && recent.join("notes/x.md").exists());
}

fn text(o: &std::process::Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `log --json` from head (or base), parsed.
fn log_json(c: &Client, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["--json", "log"];
    args.extend_from_slice(extra);
    serde_json::from_slice::<serde_json::Value>(&c.ok(&args).stdout)
        .expect("json")
        .as_array()
        .expect("array")
        .clone()
}

/// RFC 3339 (UTC, nanoseconds) of a commit's time plus `delta_ns`.
fn rfc3339(ns: i64, delta_ns: i64) -> String {
    let t = std::time::UNIX_EPOCH
        + std::time::Duration::from_nanos(u64::try_from(ns + delta_ns).expect("after 1970"));
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Three syncs of a.md (v1, v2, v3) and of notes/; returns the client and the commits'
/// ids and times, oldest first.
fn three_syncs() -> (tempfile::TempDir, Client, Vec<(String, i64)>) {
    let (b, c) = file_client("alice");
    for v in 1..=3 {
        c.write("a.md", &format!("alpha v{v}\n"));
        c.write("notes/n.md", &format!("note v{v}\n"));
        c.sync(0);
    }
    let mut commits: Vec<(String, i64)> = log_json(&c, &[])
        .iter()
        .map(|v| (v["id"].as_str().expect("id").to_owned(), v["timestamp_ns"].as_i64().expect("ns")))
        .collect();
    commits.reverse();
    assert_eq!(commits.len(), 3);
    (b, c, commits)
}

#[test]
fn revisions_name_commits_by_ref_prefix_ancestry_and_time() {
    let (_b, c, commits) = three_syncs();
    let show = |rev: &str| text(&c.ok(&["show", rev]));
    assert_eq!(show("base:a.md"), "alpha v3\n");
    assert_eq!(show("HEAD:a.md"), "alpha v3\n");
    assert_eq!(show("base~1:a.md"), "alpha v2\n");
    assert_eq!(show("base~2:a.md"), "alpha v1\n");
    assert_eq!(show("base^:a.md"), "alpha v2\n");
    assert_eq!(show("base^1^1:a.md"), "alpha v1\n");
    assert_eq!(show(&format!("{}:a.md", &commits[1].0[..10])), "alpha v2\n");
    // @{TIME}: the newest commit at or before TIME, in any RFC 3339 spelling.
    assert_eq!(show(&format!("@{{{}}}:a.md", rfc3339(commits[0].1, 0))), "alpha v1\n");
    assert_eq!(show(&format!("@{{{}}}:a.md", rfc3339(commits[1].1, 1))), "alpha v2\n");
    assert_eq!(show(&format!("@{{{}}}:a.md", rfc3339(commits[2].1, -1))), "alpha v2\n");
    assert_eq!(show(&format!("@{{{}}}~1:notes/n.md", rfc3339(commits[2].1, 0))), "note v2\n");
    // A folder, with or without a trailing slash.
    assert_eq!(show("base~2:notes/"), "n.md\n");
    assert_eq!(show("base~2:notes"), "n.md\n");

    for (rev, needle) in [
        ("base~3", "has 0 parent(s)"),
        ("@{1999-01-01T00:00:00Z}", "no local commit at or before 1999-01-01T00:00:00Z"),
        ("@{last tuesday}", "not an RFC 3339 time"),
        ("nosuchrev", "remote@{TIME}"),
    ] {
        let o = c.run(&["show", rev]);
        assert_eq!(o.status.code(), Some(1), "{rev}");
        assert!(stderr(&o).contains(needle), "{rev}: {}", stderr(&o));
    }
    // Every command that takes a revision documents the grammar in its help.
    for cmd in ["show", "diff", "log", "restore"] {
        let help = text(&c.ok(&[cmd, "--help"]));
        assert!(help.contains("remote@{TIME}") && help.contains("2026-11-20T10:00:00Z"), "{cmd}: {help}");
    }
    let o = c.run(&["show", "nosuchrev:a.md"]);
    for form in ["@{TIME}", "REV~N", "REV^N", "snapshot:VERSION", "head", "base", "RFC 3339"] {
        assert!(stderr(&o).contains(form), "{form}: {}", stderr(&o));
    }
}

#[test]
fn show_prints_a_file_exactly_and_diff_takes_a_path_without_dashes() {
    let (_b, c) = file_client("alice");
    let bytes: &[u8] = b"no final newline\r\n\x00\xff binary tail";
    std::fs::write(c.path("raw.bin"), bytes).expect("write");
    c.write("a.md", "one\n");
    c.write("b.md", "bee\n");
    c.sync(0);
    assert_eq!(c.ok(&["show", "base:raw.bin"]).stdout, bytes);
    c.write("a.md", "two\n");
    c.write("b.md", "bee 2\n");
    let only_a = text(&c.ok(&["diff", "--name-status", "a.md"]));
    assert_eq!(only_a, "M\ta.md\n");
    assert_eq!(text(&c.ok(&["diff", "--name-status", "base", "a.md"])), "M\ta.md\n");
    assert_eq!(text(&c.ok(&["diff", "--name-status", "--", "b.md"])), "M\tb.md\n");
    let o = c.run(&["diff", "neither-a-rev-nor-a-path"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown revision"), "{}", stderr(&o));
}

#[test]
fn log_walks_merges_and_filters_by_path() {
    let (_b, c) = file_client("alice");
    c.write("a.md", "a1\n");
    c.write("notes/b.md", "b1\n");
    c.sync(0); // 1: adds a.md, notes/b.md
    c.write("a.md", "a2\n");
    c.ok(&["commit", "-m", "local edit of a"]); // 2: local commit
    c.sync(0); // 3: the sync commit, whose second parent is 2
    c.write("notes/b.md", "b2\n");
    c.sync(0); // 4: edits notes/b.md
    c.write("c.md", "c\n");
    c.sync(0); // 5: adds c.md

    let all = log_json(&c, &[]);
    let msgs: Vec<&str> = all.iter().map(|v| v["message"].as_str().expect("message")).collect();
    assert_eq!(all.len(), 5, "{msgs:?}");
    assert!(msgs.contains(&"local edit of a"), "{msgs:?}");
    let ids: Vec<String> = all.iter().map(|v| v["id"].as_str().expect("id").to_owned()).collect();
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 5, "each commit once");
    let local = all.iter().find(|v| v["message"] == "local edit of a").expect("local commit");
    assert_eq!(local["client"], "alice");
    assert_eq!(local["snapshot"], serde_json::Value::Null);
    assert_eq!(local["changes"]["modified"], 1, "{local}");
    let merge = all.iter().find(|v| v["parents"].as_array().is_some_and(|p| p.len() == 2)).expect("a merge");
    assert!(merge["parents"].as_array().expect("parents").contains(&local["id"]));
    assert!(merge["snapshot"].is_u64() || merge["remote"].is_string(), "{merge}");
    let newest = &all[0];
    assert_eq!(
        (newest["changes"]["added"].as_u64(), newest["changes"]["modified"].as_u64()),
        (Some(1), Some(0))
    );
    for key in ["id", "time", "client", "parents", "snapshot", "changes"] {
        assert!(newest.get(key).is_some(), "{key} in {newest}");
    }

    // --first-parent hides what the merge brought in.
    let fp = log_json(&c, &["--first-parent"]);
    assert_eq!(fp.len(), 4);
    assert!(!fp.iter().any(|v| v["message"] == "local edit of a"));

    // -- PATH: exactly the commits that changed it.
    let changed = |path: &str| -> Vec<String> {
        log_json(&c, &["--", path]).iter().map(|v| v["id"].as_str().expect("id").to_owned()).collect()
    };
    // The chronological order: ids[4] is commit 1, ids[0] commit 5.
    assert_eq!(changed("a.md"), [local["id"].as_str().expect("id").to_owned(), ids[4].clone()]);
    assert_eq!(changed("notes/b.md"), [ids[1].clone(), ids[4].clone()]);
    assert_eq!(changed("notes/"), [ids[1].clone(), ids[4].clone()]);
    assert_eq!(changed("c.md"), [ids[0].clone()]);
    assert!(changed("nothing-here.md").is_empty());

    // show names both parents of the merge.
    let shown = text(&c.ok(&["show", merge["id"].as_str().expect("id")]));
    let parents: Vec<String> = merge["parents"]
        .as_array()
        .expect("parents")
        .iter()
        .map(|p| p.as_str().expect("hex")[..12].to_owned())
        .collect();
    assert!(shown.contains(&format!("Merge:  {} {}", parents[0], parents[1])), "{shown}");
    let human = text(&c.ok(&["log"]));
    assert!(human.contains("local edit of a") && human.contains("Merge:  "), "{human}");
}

/// Every file's bytes under the folder, `.bmsync/` left out.
fn bytes_of_files(c: &Client) -> std::collections::BTreeMap<String, Vec<u8>> {
    c.files()
        .into_iter()
        .map(|f| {
            let b = std::fs::read(c.path(&f)).expect("read");
            (f, b)
        })
        .collect()
}

#[test]
fn restore_brings_back_a_file_deleted_three_syncs_ago_and_a_folder() {
    let (bucket, c) = file_client("alice");
    c.write("a.md", "alpha\n");
    c.write("notes/x.md", "ex\n");
    c.write("notes/deep/y.md", "why\n");
    c.write("other.md", "o1\n");
    c.sync(0);
    std::fs::remove_file(c.path("a.md")).expect("rm");
    c.sync(0);
    c.write("other.md", "o2\n");
    c.sync(0);
    c.write("other.md", "o3\n");
    c.sync(0);

    let before = bytes_of_files(&c);
    let o = c.ok(&["--json", "restore", "a.md", "--from", "base~3"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["restored"], serde_json::json!(["a.md"]), "{r}");
    assert_eq!(c.read("a.md").as_deref(), Some("alpha\n"));
    let mut after = bytes_of_files(&c);
    after.remove("a.md");
    assert_eq!(after, before, "nothing else changed");
    // A local change the next sync carries to the bucket.
    let st: serde_json::Value = serde_json::from_slice(&c.ok(&["--json", "status"]).stdout).expect("json");
    assert_eq!(st["changes"][0]["path"], "a.md", "{st}");
    let s = c.sync(0);
    assert_eq!(s["uploaded"], 1, "{s}");
    let remote = bmsync::remote::FileRemote::open(bucket.path()).expect("open");
    assert!(crate::sync::bucket_keys(&remote).contains(&"a.md".to_owned()));

    // A whole folder, deleted and synced; a file made since stays.
    std::fs::remove_dir_all(c.path("notes")).expect("rm");
    c.sync(0);
    c.write("notes/new.md", "new\n");
    let o = c.ok(&["restore", "notes/", "--from", "base~1"]);
    assert!(text(&o).contains("restored notes/deep/y.md"), "{}", text(&o));
    assert_eq!(c.read("notes/x.md").as_deref(), Some("ex\n"));
    assert_eq!(c.read("notes/deep/y.md").as_deref(), Some("why\n"));
    assert_eq!(c.read("notes/new.md").as_deref(), Some("new\n"));
}

#[test]
fn restore_refuses_to_overwrite_without_force_and_trashes_with_it() {
    let (_b, c) = file_client("alice");
    c.write("notes/x.md", "ex v1\n");
    c.write("notes/z.md", "zed v1\n");
    c.sync(0);
    c.write("notes/x.md", "ex v2\n");
    c.write("notes/z.md", "zed v2\n");
    c.sync(0);
    c.write("notes/x.md", "my unsaved work\n");
    let before = bytes_of_files(&c);
    let state = std::fs::read(c.path(".bmsync/store.redb")).expect("read");
    let o = c.run(&["restore", "notes", "--from", "base~1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("notes/x.md") && stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(bytes_of_files(&c), before, "a refusal writes nothing");
    assert!(std::fs::read(c.path(".bmsync/store.redb")).expect("read") == state, "the state changed");

    let o = c.ok(&["--json", "restore", "notes/x.md", "--from", "base~1", "--force"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(c.read("notes/x.md").as_deref(), Some("ex v1\n"));
    assert_eq!(c.read("notes/z.md").as_deref(), Some("zed v2\n"), "not named, not touched");
    let trashed = r["trashed"][0][1].as_str().expect("a trash path");
    assert!(trashed.starts_with(".bmsync/trash/"), "{r}");
    assert_eq!(std::fs::read_to_string(c.path(trashed)).expect("trash"), "my unsaved work\n");
    // Restoring what is already there is a no-op.
    let o = c.ok(&["--json", "restore", "notes/z.md", "--from", "base"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["unchanged"], serde_json::json!(["notes/z.md"]), "{r}");
}

/// Now as RFC 3339 with nanoseconds.
fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

/// The bucket's past on a remote that reads at any instant: alice syncs a.md v1 (then
/// TIME is taken), v2, deletes it, and edits b.md twice; bob joins only at the end.
/// `show remote@{TIME}:a.md` gives bob v1, which he never downloaded, and `restore`
/// brings it back from the bucket.
fn bucket_past(url: &str, endpoint: Option<&str>) {
    let alice = Client::new("alice", url, endpoint);
    alice.write("a.md", "alpha v1\n");
    alice.write("notes/b.md", "bravo v1\n");
    alice.sync(0);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let t1 = now_rfc3339();
    std::thread::sleep(std::time::Duration::from_millis(5));
    alice.write("a.md", "alpha v2\n");
    alice.sync(0);
    let snap = log_json(&alice, &[])[0]["snapshot"].as_u64();
    std::fs::remove_file(alice.path("a.md")).expect("rm");
    alice.sync(0);
    for v in 2..=3 {
        alice.write("notes/b.md", &format!("bravo v{v}\n"));
        alice.sync(0);
    }
    let bob = Client::new("bob", url, endpoint);
    bob.sync(0);
    assert_eq!(bob.files(), ["notes/b.md"]);

    let show = |rev: &str| text(&bob.ok(&["show", rev]));
    assert_eq!(show(&format!("remote@{{{t1}}}:a.md")), "alpha v1\n");
    assert_eq!(show(&format!("remote@{{{t1}}}:notes/b.md")), "bravo v1\n");
    assert_eq!(show(&format!("remote@{{{t1}}}:")), "a.md\nnotes/\n");
    assert_eq!(show("remote:notes/b.md"), "bravo v3\n");
    assert_eq!(show("remote:"), "notes/\n");
    let v = snap.expect("a sync on a bucket with snapshots records its version");
    assert_eq!(show(&format!("snapshot:{v}:a.md")), "alpha v2\n");
    // Bob's own history does not have it: that is what the bucket's past is for.
    assert_eq!(bob.run(&["show", &format!("@{{{t1}}}:a.md")]).status.code(), Some(1));

    // restore from the bucket's past: only a.md is downloaded; b.md is not named.
    let o = bob.ok(&["--json", "restore", "a.md", "--from", &format!("remote@{{{t1}}}")]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["restored"], serde_json::json!(["a.md"]), "{r}");
    assert_eq!(r["downloaded_bytes"], "alpha v1\n".len(), "{r}");
    assert_eq!(bob.read("a.md").as_deref(), Some("alpha v1\n"));
    assert_eq!(bob.read("notes/b.md").as_deref(), Some("bravo v3\n"));
    // A folder whose file is already as it was: nothing downloaded for it.
    bob.write("notes/b.md", "bravo v1\n");
    let o = bob.ok(&["--json", "restore", "notes", "--from", &format!("remote@{{{t1}}}")]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["unchanged"], serde_json::json!(["notes/b.md"]), "{r}");
    assert_eq!(r["downloaded_bytes"], 0, "{r}");
    // The restored file is a local change the next sync carries.
    let s = bob.sync(0);
    assert!(s["uploaded"].as_u64().expect("uploaded") >= 1, "{s}");
    alice.sync(0);
    assert_eq!(alice.read("a.md").as_deref(), Some("alpha v1\n"));
    // Stores that uploaded, downloaded and restored are healthy.
    for c in [&alice, &bob] {
        let (code, report) = fsck(c);
        assert_eq!(code, Some(0), "{report}");
    }
}

#[test]
fn the_bucket_past_on_the_tigris_compatible_server() {
    let (_server, ep) = crate::tigris_server::TigrisServer::with_bucket("team");
    bucket_past("s3://team/vault", Some(&ep));
}

#[test]
fn the_bucket_past_on_the_file_remote() {
    let bucket = tempfile::tempdir().expect("tmp");
    bucket_past(&format!("file://{}", bucket.path().display()), None);
}

#[test]
fn the_bucket_past_on_a_bucket_without_snapshots_is_a_clear_error() {
    let Some(ep) = crate::remote_contract::moto_endpoint("the_bucket_past_on_a_bucket_without_snapshots")
    else {
        return;
    };
    let bucket = format!("history-{}", std::process::id());
    crate::remote_contract::create_bucket(&ep, "test", "test", &bucket, false);
    let c = Client::new("carol", &format!("s3://{bucket}/vault"), Some(&ep));
    c.write("a.md", "alpha\n");
    c.sync(0);
    assert_eq!(text(&c.ok(&["show", "remote:a.md"])), "alpha\n");
    for rev in [format!("remote@{{{}}}:a.md", now_rfc3339()), "snapshot:1:a.md".to_owned()] {
        let o = c.run(&["show", &rev]);
        assert_eq!(o.status.code(), Some(1), "{rev}");
        let err = stderr(&o);
        assert!(err.contains("has no snapshots") && err.contains("@{TIME}"), "{rev}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let o = c.run(&["restore", "a.md", "--from", &format!("remote@{{{}}}", now_rfc3339())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("has no snapshots"), "{}", stderr(&o));
}

#[test]
fn status_tells_when_the_bucket_changed_since_the_base_without_downloading() {
    let server = crate::tigris_server::TigrisServer::start();
    let ep = server.endpoint();
    let (key, secret) = (crate::tigris_server::ACCESS_KEY, crate::tigris_server::SECRET_KEY);
    crate::remote_contract::create_bucket(&ep, key, secret, "team", true);
    let alice = Client::new("alice", "s3://team/vault", Some(&ep));
    let bob = Client::new("bob", "s3://team/vault", Some(&ep));
    alice.write("a.md", "alpha\n");
    alice.write("gone.md", "soon gone\n");
    alice.sync(0);
    bob.sync(0);
    let st: serde_json::Value = serde_json::from_slice(&bob.ok(&["--json", "status"]).stdout).expect("json");
    assert_eq!(st["remote"], serde_json::json!({"added": [], "changed": [], "deleted": []}), "{st}");
    assert!(text(&bob.ok(&["status"])).contains("The bucket is as the last sync left it"));

    alice.write("a.md", "alpha, edited\n");
    alice.write("new.md", "new\n");
    std::fs::remove_file(alice.path("gone.md")).expect("rm");
    alice.sync(0);
    let files = bytes_of_files(&bob);
    let before = server.requests();
    let st: serde_json::Value = serde_json::from_slice(&bob.ok(&["--json", "status"]).stdout).expect("json");
    let cost = server.requests() - before;
    assert_eq!(
        st["remote"],
        serde_json::json!({"added": ["new.md"], "changed": ["a.md"], "deleted": ["gone.md"]}),
        "{st}"
    );
    // Connecting (HeadBucket, GetBucketVersioning) and one listing: no GET, no HEAD of an object.
    assert!(cost <= 3, "status cost {cost} requests");
    eprintln!("status against the Tigris-compatible server: {cost} requests");
    assert_eq!(bytes_of_files(&bob), files, "nothing was downloaded");
    let human = text(&bob.ok(&["status"]));
    assert!(
        human.contains("The bucket changed since the last sync (1 added, 1 changed and 1 deleted there"),
        "{human}"
    );
    assert!(!text(&bob.ok(&["status", "--offline"])).contains("bucket"));

    // An unreachable bucket is a warning, not a failure.
    drop(server);
    let o = bob.ok(&["status"]);
    assert!(text(&o).contains("warning: the bucket was not checked"), "{}", text(&o));
}

#[test]
fn status_leaves_paths_the_rules_now_ignore_out_of_the_bucket_drift() {
    let bucket = tempfile::tempdir().expect("tmp");
    let url = format!("file://{}", bucket.path().display());
    let alice = Client::new("alice", &url, None);
    let bob = Client::new("bob", &url, None);
    alice.write("a.md", "alpha\n");
    alice.write("drafts/x.md", "draft\n");
    alice.write("drafts/y.md", "draft\n");
    alice.sync(0);
    bob.sync(0);
    // Bob now ignores drafts/; in the bucket x stays as it was, y is deleted.
    bob.write(".bmignore", "drafts/\n");
    std::fs::remove_file(alice.path("drafts/y.md")).expect("rm");
    alice.sync(0);
    let st: serde_json::Value = serde_json::from_slice(&bob.ok(&["--json", "status"]).stdout).expect("json");
    // A sync leaves ignored paths alone on both sides, so they are no drift of the bucket.
    assert_eq!(st["remote"], serde_json::json!({"added": [], "changed": [], "deleted": []}), "{st}");
    // Nor are they deleted here: still on disk, only ignored.
    assert_eq!(st["changes"], serde_json::json!([]), "{st}");
    assert!(text(&bob.ok(&["status", "--offline"])).contains("Nothing changed"));
    // Nor does his sync delete them from the bucket.
    bob.sync(0);
    alice.sync(0);
    assert_eq!(alice.files(), ["a.md", "drafts/x.md"]);
}

#[test]
fn the_trash_is_listed_and_restore_from_trash_brings_a_file_back() {
    let bucket = tempfile::tempdir().expect("tmp");
    let url = format!("file://{}", bucket.path().display());
    let alice = Client::new("alice", &url, None);
    let bob = Client::new("bob", &url, None);
    alice.write("notes/x.md", "ex\n");
    alice.write("notes/y.md", "why\n");
    alice.write("keep.md", "kept\n");
    alice.sync(0);
    bob.sync(0);
    std::fs::remove_dir_all(alice.path("notes")).expect("rm");
    alice.ok(&["sync", "--max-delete", "2"]);
    bob.ok(&["sync", "--max-delete", "2"]); // bob's copies go to his trash
    assert_eq!(bob.files(), ["keep.md"]);
    assert_eq!(text(&alice.ok(&["trash"])), "The trash is empty\n");
    let rounds: serde_json::Value =
        serde_json::from_slice(&bob.ok(&["--json", "trash"]).stdout).expect("json");
    let listed: Vec<&str> = rounds
        .as_array()
        .expect("rounds")
        .iter()
        .flat_map(|r| r["files"].as_array().expect("files").iter().map(|f| f.as_str().expect("path")))
        .collect();
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["notes/x.md", "notes/y.md"], "{rounds}");
    assert!(text(&bob.ok(&["trash"])).contains("  notes/x.md"));

    let o = bob.ok(&["--json", "restore", "notes/x.md", "--from", "trash"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["restored"], serde_json::json!(["notes/x.md"]), "{r}");
    assert_eq!(bob.read("notes/x.md").as_deref(), Some("ex\n"));
    assert!(bob.read("notes/y.md").is_none(), "not named, not restored");
    bob.ok(&["restore", "notes", "--from", "trash"]);
    assert_eq!(bob.read("notes/y.md").as_deref(), Some("why\n"));
    let o = bob.run(&["restore", "never.md", "--from", "trash"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("never.md is not in the trash"), "{}", stderr(&o));
    let o = bob.run(&["restore", "notes/x.md", "--from", "trash@{1999-01-01T00:00:00Z}"]);
    assert!(stderr(&o).contains("not in the trash at or before"), "{}", stderr(&o));
    // Restored from the trash, they are local changes the next sync carries back.
    let s = bob.sync(0);
    assert_eq!(s["uploaded"], 2, "{s}");
}

#[test]
fn bytes_from_the_bucket_that_miss_their_content_id_are_refused() {
    let server = crate::tigris_server::TigrisServer::start();
    let ep = server.endpoint();
    let (key, secret) = (crate::tigris_server::ACCESS_KEY, crate::tigris_server::SECRET_KEY);
    crate::remote_contract::create_bucket(&ep, key, secret, "team", true);
    let c = Client::new("carol", "s3://team/vault", Some(&ep));
    let (rt, raw) = crate::remote_contract::raw_client(&ep, key, secret);
    let claimed = ObjectId::for_blob(b"what the metadata claims");
    rt.block_on(
        raw.put_object()
            .bucket("team")
            .key("vault/liar.md")
            .metadata(bmsync::remote::META_CONTENT_ID, claimed.to_hex())
            .body(b"other bytes".to_vec().into())
            .send(),
    )
    .expect("raw put");
    let o = c.run(&["show", "remote:liar.md"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&format!("not to the recorded {claimed}")), "{}", stderr(&o));
    let o = c.run(&["restore", "liar.md", "--from", "remote"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!c.path("liar.md").exists(), "nothing was written");
}

#[test]
fn keep_remote_says_where_your_version_went_and_restore_brings_it_back() {
    let bucket = tempfile::tempdir().expect("tmp");
    let url = format!("file://{}", bucket.path().display());
    let alice = Client::new("alice", &url, None);
    let bob = Client::new("bob", &url, None);
    alice.write("x.md", "base\n");
    alice.sync(0);
    bob.sync(0);
    alice.write("x.md", "alice's line\n");
    alice.sync(0);
    bob.write("x.md", "bob's line\n");
    let o = bob.ok(&["sync", "--on-conflict", "keep-remote"]);
    let said = text(&o);
    assert!(said.contains("conflict resolved as asked: x.md; your version is in the trash"), "{said}");
    assert!(said.contains("bmsync restore x.md --from trash"), "{said}");
    assert_eq!(bob.read("x.md").as_deref(), Some("alice's line\n"));
    bob.ok(&["restore", "x.md", "--from", "trash", "--force"]);
    assert_eq!(bob.read("x.md").as_deref(), Some("bob's line\n"));
    // Merges and conflicts leave healthy stores too.
    alice.write("m.md", "one\ntwo\nthree\n");
    alice.sync(0);
    bob.sync(0);
    alice.write("m.md", "ONE\ntwo\nthree\n");
    bob.write("m.md", "one\ntwo\nTHREE\n");
    alice.sync(0);
    bob.sync(0);
    assert_eq!(bob.read("m.md").as_deref(), Some("ONE\ntwo\nTHREE\n"));
    for c in [&alice, &bob] {
        let (code, report) = fsck(c);
        assert_eq!(code, Some(0), "{report}");
    }
}

#[test]
fn gc_keeps_the_manifest_tree_the_planner_patches() {
    let (_b, c) = synced_client();
    let repo = bmsync::Repo::open(c.dir.path()).expect("open");
    // A tree (and one beneath it, and a blob) that only the `manifest-tree` record names.
    let (blob, _) = repo.store().put(ObjectKind::Blob, b"only the manifest tree holds this\n").expect("put");
    let entry = |name: &str, kind, id| bmsync::TreeEntry { name: name.into(), kind, id, size: 34 };
    let inner = bmsync::Tree::new(vec![entry("x.md", bmsync::EntryKind::File, blob)]).expect("tree");
    let (inner_id, _) = repo.store().put(ObjectKind::Tree, &inner.encode()).expect("put");
    let outer = bmsync::Tree::new(vec![entry("d", bmsync::EntryKind::Tree, inner_id)]).expect("tree");
    let (outer_id, _) = repo.store().put(ObjectKind::Tree, &outer.encode()).expect("put");
    let mut record = vec![0; 32];
    record.extend_from_slice(outer_id.as_bytes());
    repo.store().set_meta(bmsync::repo::META_MANIFEST_TREE, &record).expect("meta");
    repo.gc(&bmsync::repo::GcOptions::default()).expect("gc");
    let ids = repo.store().object_ids().expect("ids");
    for id in [blob, inner_id, outer_id] {
        assert!(ids.contains(&id), "{id} was removed");
    }
    assert!(repo.store().fsck().healthy(), "{:?}", repo.store().fsck());
}
