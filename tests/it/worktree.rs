//! Scanning real folders: stat cache, racy timestamps, ignore rules, names, symlinks.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use bmsync::reconcile::Change;
use bmsync::worktree::{CollisionKind, ScanOptions, Snapshot, scan};
use bmsync::{EntryKind, InitOptions, ObjectId, ObjectKind, Repo};

fn repo() -> (tempfile::TempDir, Repo) {
    let d = tempfile::tempdir().expect("tmp");
    let r = Repo::init(d.path(), &{
        let mut o = InitOptions::default();
        o.client_id = Some("t".into());
        o
    })
    .expect("init");
    (d, r)
}

fn opts(store_blobs: bool) -> ScanOptions {
    let mut o = ScanOptions::default();
    o.store_blobs = store_blobs;
    o.global_ignore_files = vec![];
    o
}

fn scan_of(r: &Repo, store_blobs: bool) -> Snapshot {
    scan(r.root(), r.store(), &opts(store_blobs)).expect("scan")
}

fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
    fs::write(&p, content).expect("write");
}

/// Sets a file's mtime `secs` seconds from now (negative: in the past).
fn set_mtime(path: &Path, secs: i64) {
    let now = SystemTime::now();
    let t = if secs >= 0 {
        now + Duration::from_secs(secs.unsigned_abs())
    } else {
        now - Duration::from_secs(secs.unsigned_abs())
    };
    fs::File::options().write(true).open(path).expect("open").set_modified(t).expect("set mtime");
}

/// Every leaf path in a tree, with its kind.
fn leaves(r: &Repo, root: ObjectId) -> Vec<(String, EntryKind)> {
    fn go(r: &Repo, id: ObjectId, prefix: &str, out: &mut Vec<(String, EntryKind)>) {
        for e in r.store().get_tree(&id).expect("tree").entries() {
            let p = if prefix.is_empty() { e.name.clone() } else { format!("{prefix}/{}", e.name) };
            if e.kind.is_tree() {
                go(r, e.id, &p, out);
            } else {
                out.push((p, e.kind));
            }
        }
    }
    let mut out = Vec::new();
    go(r, root, "", &mut out);
    out
}

fn paths(r: &Repo, root: ObjectId) -> Vec<String> {
    leaves(r, root).into_iter().map(|(p, _)| p).collect()
}

#[test]
fn an_unchanged_folder_is_not_rehashed_and_trees_are_reused() {
    let (d, r) = repo();
    for i in 0..30 {
        write(d.path(), &format!("n{}/note{i}.md", i % 3), format!("note {i}").as_bytes());
    }
    for i in 0..30 {
        set_mtime(&d.path().join(format!("n{}/note{i}.md", i % 3)), -100);
    }
    let first = scan_of(&r, false);
    assert_eq!((first.stats.files, first.stats.hashed, first.stats.dirs), (30, 30, 4));
    let second = scan_of(&r, false);
    assert_eq!(second.root, first.root);
    assert_eq!(second.stats.hashed, 0, "stat cache must spare every read");
    assert_eq!(second.stats.reused_trees, 4, "every folder keeps its tree id without encoding");
    // Touch one file's content: only it is re-read, and only its folder and the root re-encoded.
    write(d.path(), "n1/note4.md", b"edited!");
    set_mtime(&d.path().join("n1/note4.md"), -50);
    let third = scan_of(&r, false);
    assert_ne!(third.root, first.root);
    assert_eq!(third.stats.hashed, 1);
    assert_eq!(third.stats.reused_trees, 2);
}

#[test]
fn a_rewrite_within_the_same_timestamp_tick_is_still_seen() {
    let (d, r) = repo();
    let path = d.path().join("racy.md");
    // Coarse-clock filesystems give both writes one timestamp; fine-grained ones may
    // not, and then the stat differs anyway. Either way the new content must be seen.
    // (The rule itself is tested cell by cell next to the scanner.)
    for attempt in 0..20u32 {
        let a = format!("version A {attempt:05}");
        let b = format!("version B {attempt:05}");
        fs::write(&path, &a).expect("write a");
        let s1 = scan_of(&r, false);
        fs::write(&path, &b).expect("write b");
        let s2 = scan_of(&r, false);
        assert_ne!(s1.root, s2.root, "attempt {attempt}: the second version must be seen");
        let want = ObjectId::for_blob(b.as_bytes());
        assert_eq!(r.store().get_tree(&s2.root).expect("tree").entries()[0].id, want);
    }
}

#[test]
fn ignored_paths_never_enter_the_tree() {
    let (d, r) = repo();
    write(d.path(), "keep.md", b"k");
    write(d.path(), ".DS_Store", b"x");
    write(d.path(), "a/.DS_Store", b"x");
    write(d.path(), "scratch.tmp", b"x");
    write(d.path(), ".obsidian/workspace.json", b"{}");
    write(d.path(), "node_modules/x/index.js", b"x");
    write(d.path(), "memory.db", b"x");
    write(d.path(), "drafts/wip.md", b"x");
    write(d.path(), "a/b.md", b"b");
    let before = scan_of(&r, false);
    assert_eq!(paths(&r, before.root), ["a/b.md", "drafts/wip.md", "keep.md"]);
    write(d.path(), ".bmignore", b"drafts/\n");
    let after = scan_of(&r, false);
    assert_eq!(paths(&r, after.root), ["a/b.md", "keep.md"]);
    // Nothing from .bmsync itself is ever scanned.
    assert!(d.path().join(".bmsync/store.redb").exists());
}

#[test]
fn an_inner_state_folder_is_never_scanned_at_any_depth_even_if_a_bmignore_asks() {
    let (d, r) = repo();
    write(d.path(), "keep.md", b"k");
    // Inner bmsync folders at several depths (made before nesting was refused, or copied
    // in), with their state and a note each.
    for inner in ["team", "team/deep/er"] {
        let inner_dir = d.path().join(inner);
        fs::create_dir_all(&inner_dir).expect("mkdir");
        write(&inner_dir, ".bmsync/store.redb", b"not really a store");
        write(&inner_dir, ".bmsync/scan-stamp", b"");
        write(&inner_dir, ".bmsync/trash/x.md", b"t");
        write(&inner_dir, "n.md", b"n");
    }
    // A user rule cannot re-include state folders.
    write(
        d.path(),
        ".bmignore",
        b"!.bmsync/
!**/.bmsync/**
!.bmsync
",
    );
    let s = scan_of(&r, true);
    let all = paths(&r, s.root);
    assert_eq!(all, ["keep.md", "team/deep/er/n.md", "team/n.md"]);
    assert!(all.iter().all(|p| !p.split('/').any(|seg| seg == ".bmsync")), "{all:?}");
}

#[test]
fn init_inside_a_bmsync_folder_is_refused_naming_the_outer_one() {
    let (d, _r) = repo();
    let inner = d.path().join("notes/team");
    fs::create_dir_all(&inner).expect("mkdir");
    let err = Repo::init(&inner, &InitOptions::default()).expect_err("nested init");
    let msg = err.to_string();
    let outer = fs::canonicalize(d.path()).expect("canonical");
    assert!(matches!(&err, bmsync::RepoError::Nested { outer: o, .. } if *o == outer), "{msg}");
    assert!(msg.contains(&outer.display().to_string()), "{msg}");
    assert!(!inner.join(".bmsync").exists(), "nothing was created");
    // Reached through a symlink, the folder is still inside.
    let link_parent = tempfile::tempdir().expect("tmp");
    let link = link_parent.path().join("link");
    symlink(&inner, &link).expect("symlink");
    assert!(matches!(Repo::init(&link, &InitOptions::default()), Err(bmsync::RepoError::Nested { .. })));
    assert!(!inner.join(".bmsync").exists());
}

#[test]
fn symlinks_are_recorded_never_followed() {
    let (d, r) = repo();
    let outside = tempfile::tempdir().expect("outside");
    write(outside.path(), "secret.md", b"do not sync");
    write(d.path(), "real/n.md", b"n");
    symlink(outside.path(), d.path().join("out")).expect("symlink");
    symlink("real", d.path().join("in")).expect("symlink");
    symlink("/nonexistent/target", d.path().join("dangling")).expect("symlink");
    let s = scan_of(&r, true);
    let got = leaves(&r, s.root);
    assert_eq!(got, [("in".to_owned(), EntryKind::Symlink), ("real/n.md".to_owned(), EntryKind::File)]);
    // Links out of the folder are left out, reported, and protected from the sync.
    let skipped: Vec<&str> = s.report.skipped.iter().map(|x| x.path.as_str()).collect();
    assert_eq!(skipped, ["dangling", "out"]);
    assert!(s.report.skipped.iter().all(|x| x.reason.contains("outside the folder")));
    assert_eq!(s.report.protected_paths(), ["dangling", "out"]);
    let tree = r.store().get_tree(&s.root).expect("tree");
    let inside = tree.entries().iter().find(|e| e.name == "in").expect("in");
    assert_eq!(r.store().get_kind(&inside.id, ObjectKind::Blob).expect("target blob"), b"real");
    let outside_target = ObjectId::for_blob(outside.path().as_os_str().as_encoded_bytes());
    assert!(!r.store().contains(&outside_target).expect("contains"), "the outside target is not even stored");
}

#[test]
fn unicode_collisions_are_reported_and_case_pairs_are_distinct_names() {
    let (d, r) = repo();
    let nfc = "caf\u{e9}.md";
    let nfd = "cafe\u{301}.md";
    write(d.path(), nfc, b"composed");
    write(d.path(), nfd, b"decomposed");
    write(d.path(), "Note.md", b"upper");
    write(d.path(), "note.md", b"lower");
    write(d.path(), "sub/\u{212b}ngstr\u{f6}m.md", b"only nfd-ish");
    let s = scan_of(&r, false);
    let kinds: Vec<_> =
        s.report.collisions.iter().map(|c| (c.kind, c.paths.clone(), c.synced.clone())).collect();
    assert_eq!(kinds, [(CollisionKind::Unicode, vec![nfd.to_owned(), nfc.to_owned()], nfc.to_owned())]);
    // On this case-sensitive file system, names that differ by case are two files.
    let all = paths(&r, s.root);
    assert!(all.contains(&"Note.md".to_owned()) && all.contains(&"note.md".to_owned()), "{all:?}");
    // The lone NFD name is found under its name on disk.
    assert_eq!(
        s.disk_names.get("sub/\u{c5}ngstr\u{f6}m.md").map(String::as_str),
        Some("sub/\u{212b}ngstr\u{f6}m.md")
    );
    let tree = r.store().get_tree(&s.root).expect("tree");
    let cafe: Vec<_> = tree.entries().iter().filter(|e| e.name.starts_with("caf")).collect();
    assert_eq!(cafe.len(), 1, "one name in the tree");
    assert_eq!(cafe[0].name, nfc);
    assert_eq!(cafe[0].id, ObjectId::for_blob(b"composed"), "the NFC-named file is the one kept");
    // A lone non-NFC name is stored NFC-normalised.
    assert!(paths(&r, s.root).contains(&"sub/\u{c5}ngstr\u{f6}m.md".to_owned()));
}

#[test]
fn odd_names_and_special_files_are_reported_not_dropped_silently() {
    use std::os::unix::ffi::OsStrExt;
    let (d, r) = repo();
    write(d.path(), "ok.md", b"ok");
    fs::write(d.path().join(std::ffi::OsStr::from_bytes(b"bad\xffname.md")), b"x").expect("write");
    let _sock = std::os::unix::net::UnixListener::bind(d.path().join("agent.sock")).expect("socket");
    fs::create_dir(d.path().join("empty")).expect("mkdir");
    let s = scan_of(&r, false);
    assert_eq!(paths(&r, s.root), ["ok.md"], "empty folders are not kept");
    let skipped: Vec<_> = s.report.skipped.iter().map(|x| (x.path.as_str(), x.reason.as_str())).collect();
    assert!(skipped.contains(&("bad\u{fffd}name.md", "name is not valid UTF-8")), "{skipped:?}");
    assert!(skipped.iter().any(|(p, r)| *p == "agent.sock" && r.contains("special file")), "{skipped:?}");
}

#[test]
fn kinds_and_sizes_are_recorded() {
    let (d, r) = repo();
    write(d.path(), "run.sh", b"#!/bin/sh\n");
    fs::set_permissions(d.path().join("run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    let big: Vec<u8> = (0..2_500_000u32).map(|i| (i * 31 % 256) as u8).collect();
    write(d.path(), "att/big.bin", &big);
    let s = scan_of(&r, true);
    assert_eq!(s.size, 10 + big.len() as u64);
    assert_eq!(s.stats.stored_blobs, 2);
    assert_eq!(
        leaves(&r, s.root),
        [("att/big.bin".into(), EntryKind::File), ("run.sh".into(), EntryKind::Executable)]
    );
    let mut out = Vec::new();
    r.store().read_blob_to(&ObjectId::for_blob(&big), &mut out).expect("stored large blob");
    assert!(out == big);
}

#[test]
fn commit_stores_blobs_that_status_only_hashed() {
    let (d, r) = repo();
    write(d.path(), "a.md", b"alpha");
    set_mtime(&d.path().join("a.md"), -100);
    let st = r.status().expect("status");
    assert_eq!(st.changes.len(), 1);
    assert!(!r.store().contains(&ObjectId::for_blob(b"alpha")).expect("contains"));
    let (id, c) = r.commit("m").expect("commit").expect("something to commit");
    assert!(r.store().contains(&ObjectId::for_blob(b"alpha")).expect("contains"));
    assert_eq!(r.head().expect("head"), Some(id));
    assert_eq!(c.tree, st.snapshot.root);
    assert!(r.commit("again").expect("commit").is_none(), "nothing changed");
}

#[test]
fn status_pairs_renames_and_sees_edits_and_deletes() {
    let (d, r) = repo();
    write(d.path(), "a.md", b"alpha");
    write(d.path(), "dir/b.md", b"beta");
    write(d.path(), "c.md", b"gamma");
    let (first, _) = r.commit("one").expect("commit").expect("new");
    // Make it the sync base, as a sync would.
    r.store().update_ref("base", None, Some(first)).expect("base");
    fs::rename(d.path().join("dir/b.md"), d.path().join("b-moved.md")).expect("mv");
    write(d.path(), "a.md", b"alpha, edited");
    fs::remove_file(d.path().join("c.md")).expect("rm");
    write(d.path(), "new.md", b"new");
    let st = r.status().expect("status");
    assert_eq!(st.base, Some(first));
    let got: Vec<String> = st
        .changes
        .iter()
        .map(|c| match c {
            Change::Added { path, .. } => format!("A {path}"),
            Change::Deleted { path, .. } => format!("D {path}"),
            Change::Modified { path, .. } => format!("M {path}"),
            Change::Renamed { from, path, .. } => format!("R {from} {path}"),
        })
        .collect();
    assert_eq!(got, ["M a.md", "R dir/b.md b-moved.md", "D c.md", "A new.md"]);
}

/// Sets the mtime of every folder under `root` (itself included) `secs` seconds from now,
/// as if nothing had been added to any of them for a while.
fn age_folders(root: &Path, secs: i64) {
    fn go(p: &Path, t: SystemTime) {
        for e in fs::read_dir(p).expect("read_dir").flatten() {
            if e.file_type().expect("type").is_dir() && e.file_name() != ".bmsync" {
                go(&e.path(), t);
            }
        }
        fs::File::open(p).expect("open folder").set_modified(t).expect("set folder mtime");
    }
    go(root, SystemTime::now() - Duration::from_secs(secs.unsigned_abs()));
}

/// Every file under `root` (outside `.bmsync`) aged by `secs` seconds.
fn age_files(root: &Path, secs: i64) {
    for e in fs::read_dir(root).expect("read_dir").flatten() {
        if e.file_name() == ".bmsync" {
            continue;
        }
        if e.file_type().expect("type").is_dir() {
            age_files(&e.path(), secs);
        } else {
            set_mtime(&e.path(), secs);
        }
    }
}

#[test]
fn an_unchanged_folder_is_not_listed_again_but_its_files_are_still_stated() {
    let (d, r) = repo();
    for i in 0..30 {
        write(d.path(), &format!("n{}/deep/note{i}.md", i % 3), format!("note {i}").as_bytes());
    }
    age_files(d.path(), -100);
    age_folders(d.path(), -100);
    let first = scan_of(&r, false);
    assert_eq!((first.stats.dirs, first.stats.listed_dirs), (7, 7));
    let second = scan_of(&r, false);
    assert_eq!(second.root, first.root);
    assert_eq!((second.stats.files, second.stats.hashed), (30, 0));
    assert_eq!(
        (second.stats.dirs, second.stats.listed_dirs),
        (7, 0),
        "no folder changed: none is read again"
    );
    // An edit in place changes no folder, and is still seen: each file is stat'ed.
    write(d.path(), "n1/deep/note4.md", b"edited!");
    set_mtime(&d.path().join("n1/deep/note4.md"), -50);
    let third = scan_of(&r, false);
    assert_ne!(third.root, first.root);
    assert_eq!(third.stats.hashed, 1);
    assert_eq!(third.stats.listed_dirs, 1, "only the edited file's folder is read again");
    assert!(paths(&r, third.root).contains(&"n1/deep/note4.md".to_owned()));
    // A new file changes its folder's mtime: that folder is listed, the file found.
    write(d.path(), "n2/deep/new.md", b"new");
    let fourth = scan_of(&r, false);
    assert!(paths(&r, fourth.root).contains(&"n2/deep/new.md".to_owned()));
    assert_eq!(fourth.stats.files, 31);
}

#[test]
fn a_file_added_to_a_folder_the_tree_leaves_out_is_seen() {
    // An empty folder, and one holding only ignored files, have no tree: their parent's
    // tree does not name them, so its cached listing must not stand in for reading it.
    let (d, r) = repo();
    write(d.path(), "a/keep.md", b"k");
    fs::create_dir_all(d.path().join("a/empty")).expect("mkdir");
    write(d.path(), "a/scratch/x.tmp", b"ignored");
    age_files(d.path(), -100);
    age_folders(d.path(), -100);
    let first = scan_of(&r, false);
    let second = scan_of(&r, false);
    assert_eq!(paths(&r, second.root), ["a/keep.md"]);
    assert_eq!(first.root, second.root);
    // Adding a file changes only the mtime of the folder it lands in.
    write(d.path(), "a/empty/new.md", b"n");
    write(d.path(), "a/scratch/note.md", b"n");
    let third = scan_of(&r, false);
    assert_eq!(paths(&r, third.root), ["a/empty/new.md", "a/keep.md", "a/scratch/note.md"]);
}

#[test]
fn a_changed_bmignore_reads_every_folder_again() {
    // Rewriting .bmignore in place changes no folder's mtime, yet it changes what each
    // listing keeps: no cached listing is trusted under other rules.
    let (d, r) = repo();
    write(d.path(), ".bmignore", b"secret.md\n");
    write(d.path(), "a/secret.md", b"s");
    write(d.path(), "a/open.md", b"o");
    age_files(d.path(), -100);
    age_folders(d.path(), -100);
    scan_of(&r, false);
    let trusted = scan_of(&r, false);
    assert_eq!(trusted.stats.listed_dirs, 0);
    assert_eq!(paths(&r, trusted.root), ["a/open.md"]);
    fs::write(d.path().join(".bmignore"), b"open.md\n").expect("rewrite");
    let after = scan_of(&r, false);
    assert_eq!(paths(&r, after.root), ["a/secret.md"]);
    assert_eq!(after.stats.listed_dirs, 2);
    // A global ignore file counts as much as the folder's own.
    let g = tempfile::tempdir().expect("tmp");
    let global = g.path().join(".bmignore");
    fs::write(&global, b"secret.md\n").expect("global");
    let mut o = opts(false);
    o.global_ignore_files = vec![global];
    let with_global = scan(r.root(), r.store(), &o).expect("scan");
    assert!(paths(&r, with_global.root).is_empty(), "{:?}", paths(&r, with_global.root));
}

#[test]
fn what_a_listing_reports_is_reported_on_every_scan() {
    // Names not in NFC, collisions and links are found by listing; a folder holding one
    // is listed on every scan, so each scan reports the same.
    let (d, r) = repo();
    write(d.path(), "sub/\u{212b}ngstr\u{f6}m.md", b"nfd-ish name");
    write(d.path(), "twins/caf\u{e9}.md", b"composed");
    write(d.path(), "twins/cafe\u{301}.md", b"decomposed");
    write(d.path(), "links/t.md", b"t");
    symlink("t.md", d.path().join("links/l.md")).expect("symlink");
    symlink("/etc/hostname", d.path().join("links/out.md")).expect("symlink");
    age_files(d.path(), -100);
    age_folders(d.path(), -100);
    let first = scan_of(&r, false);
    let second = scan_of(&r, false);
    assert_eq!(second.root, first.root);
    assert_eq!(second.disk_names, first.disk_names);
    assert_eq!(second.disk_names.len(), 1);
    assert_eq!(second.report, first.report);
    assert_eq!((second.report.collisions.len(), second.report.skipped.len()), (1, 1));
    assert_eq!((second.stats.dirs, second.stats.listed_dirs), (4, 3), "only the root's listing is trusted");
}
