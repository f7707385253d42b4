//! The `bmsync` binary: exit codes, human output, and `--json`.

use std::path::Path;
use std::process::{Command, Output};

use bmsync::object::{Commit, EntryKind, Tree, TreeEntry};
use bmsync::{ObjectId, Repo};

fn bmsync(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bmsync")).arg("-C").arg(dir).args(args).output().expect("run bmsync")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 stderr")
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}\nstdout: {}\nstderr: {}", o.status.code(), stdout(o), stderr(o));
    stdout(o)
}

#[test]
fn version_and_usage_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    assert_eq!(ok(&bmsync(tmp.path(), &["--version"])), format!("bmsync {}\n", env!("CARGO_PKG_VERSION")));
    let o = bmsync(tmp.path(), &["init", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
    assert!(ok(&bmsync(tmp.path(), &["--help"])).contains("hash-object"));
}

#[test]
fn init_creates_a_store_and_a_stable_client_id() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = ok(&bmsync(
        tmp.path(),
        &["--json", "init", "--remote", "file:///srv/team/", "--client-id", "alice-laptop"],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["client_id"], "alice-laptop");
    assert_eq!(v["remote"], "file:///srv/team/");
    assert!(tmp.path().join(".bmsync/store.redb").is_file());
    let repo = Repo::open(tmp.path()).expect("open");
    assert_eq!(repo.client_id(), "alice-laptop");
    drop(repo);
    let again = bmsync(tmp.path(), &["init"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already a bmsync folder"), "{}", stderr(&again));

    // A generated id is kept across opens.
    let other = tempfile::tempdir().expect("tmp");
    let human = ok(&bmsync(other.path(), &["init"]));
    let id = Repo::open(other.path()).expect("open").client_id().to_owned();
    assert!(id.starts_with("c-") && id.len() == 14, "{id}");
    assert!(human.contains(&id) && human.contains("remote none yet"), "{human}");
    assert_eq!(Repo::open(other.path()).expect("open").client_id(), id);
}

#[test]
fn init_rejects_bad_input_without_creating_anything() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (args, needle) in [
        (&["init", "--client-id", "bad id"][..], "invalid client id"),
        (&["init", "--remote", "ftp://x"][..], "invalid remote"),
        (&["init", "--remote", "file://relative"][..], "absolute path"),
    ] {
        let o = bmsync(tmp.path(), args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
        assert!(!tmp.path().join(".bmsync").exists(), "{args:?} left state behind");
    }
    let o = bmsync(&tmp.path().join("missing"), &["init"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot change to"), "{}", stderr(&o));
}

#[test]
fn hash_object_prints_what_b3sum_prints() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Official BLAKE3 test vectors, which `b3sum` prints for these files.
    std::fs::write(tmp.path().join("empty"), b"").expect("write");
    std::fs::write(tmp.path().join("abc"), b"abc").expect("write");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/objects/blob.blob");
    let o = ok(&bmsync(tmp.path(), &["hash-object", "empty", "abc", fixture.to_str().expect("utf-8 path")]));
    assert_eq!(
        o,
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262\n\
         6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85\n\
         551360b5ab33f4ec75eba81eb6404f7e1ac8dd2289f83ff2aca6af4c19680dfe\n"
    );
    // A multi-chunk file agrees with the library's in-memory hash.
    let big: Vec<u8> = (0..3_000_001u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(tmp.path().join("big"), &big).expect("write");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&bmsync(tmp.path(), &["--json", "hash-object", "big"]))).expect("json");
    assert_eq!(v[0]["id"], ObjectId::for_blob(&big).to_hex());
    assert_eq!(v[0]["size"], 3_000_001);
    let missing = bmsync(tmp.path(), &["hash-object", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("nope"), "{}", stderr(&missing));
}

#[test]
fn hash_object_write_then_cat_object_by_prefix() {
    let tmp = tempfile::tempdir().expect("tmp");
    let not_yet = bmsync(tmp.path(), &["cat-object", "abcd"]);
    assert_eq!(not_yet.status.code(), Some(1));
    assert!(stderr(&not_yet).contains("bmsync init"), "{}", stderr(&not_yet));
    ok(&bmsync(tmp.path(), &["init"]));
    std::fs::write(tmp.path().join("note.md"), b"# Note\n").expect("write");
    let id = ok(&bmsync(tmp.path(), &["hash-object", "-w", "note.md"])).trim().to_owned();
    assert_eq!(ok(&bmsync(tmp.path(), &["cat-object", &id[..6]])), "# Note\n");
    assert_eq!(ok(&bmsync(tmp.path(), &["cat-object", "-t", &id[..4]])), "blob\n");
    assert_eq!(ok(&bmsync(tmp.path(), &["cat-object", "-s", &id])), "7\n");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&bmsync(tmp.path(), &["--json", "cat-object", &id[..8]]))).expect("json");
    assert_eq!(v["text"], "# Note\n");
    assert_eq!(v["kind"], "blob");
    let short = bmsync(tmp.path(), &["cat-object", &id[..3]]);
    assert_eq!(short.status.code(), Some(1));
    assert!(stderr(&short).contains("unknown revision"), "{}", stderr(&short));
}

#[test]
fn an_ambiguous_prefix_lists_its_candidates() {
    let tmp = tempfile::tempdir().expect("tmp");
    ok(&bmsync(tmp.path(), &["init"]));
    let mut seen = std::collections::HashMap::new();
    let (a, b) = (0u32..)
        .find_map(|i| seen.insert(ObjectId::for_blob(format!("n{i}").as_bytes()).short(4), i).map(|j| (j, i)))
        .expect("a 4-hex collision exists");
    for i in [a, b] {
        std::fs::write(tmp.path().join(format!("f{i}")), format!("n{i}")).expect("write");
        ok(&bmsync(tmp.path(), &["hash-object", "-w", &format!("f{i}")]));
    }
    let prefix = ObjectId::for_blob(format!("n{a}").as_bytes()).short(4);
    let o = bmsync(tmp.path(), &["cat-object", &prefix]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("ambiguous"), "{err}");
    for i in [a, b] {
        assert!(err.contains(&format!("{} blob", ObjectId::for_blob(format!("n{i}").as_bytes()))), "{err}");
    }
}

#[test]
fn cat_object_prints_trees_and_commits() {
    let tmp = tempfile::tempdir().expect("tmp");
    ok(&bmsync(tmp.path(), &["init", "--client-id", "bob"]));
    let repo = Repo::open(tmp.path()).expect("open");
    let blob = ObjectId::for_blob(b"x");
    let tree = Tree::new(vec![
        TreeEntry { name: "b.md".into(), kind: EntryKind::File, id: blob, size: 1 },
        TreeEntry { name: "a".into(), kind: EntryKind::Tree, id: Tree::default().id(), size: 0 },
    ])
    .expect("valid");
    let tid = repo.store().put_tree(&tree).expect("put");
    let commit = Commit {
        tree: tid,
        parents: vec![],
        client_id: "bob".into(),
        timestamp_ns: 42,
        message: "hello".into(),
        baseline: None,
    };
    let cid = repo.store().put_commit(&commit).expect("put");
    drop(repo);
    assert_eq!(
        ok(&bmsync(tmp.path(), &["cat-object", &tid.to_hex()])),
        format!("tree       {} {:>10}\ta\nfile       {blob} {:>10}\tb.md\n", Tree::default().id(), 0, 1)
    );
    assert_eq!(
        ok(&bmsync(tmp.path(), &["cat-object", &cid.to_hex()])),
        format!("tree {tid}\nclient bob\ntimestamp 42\n\nhello\n")
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(&bmsync(tmp.path(), &["--json", "cat-object", &cid.to_hex()])))
            .expect("json");
    assert_eq!(v["commit"]["message"], "hello");
    assert_eq!(v["commit"]["tree"], tid.to_hex());
}
