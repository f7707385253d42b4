//! The `bmsync` binary: exit codes, human output, and `--json`.

use std::path::Path;
use std::process::{Command, Output};

use bmsync::object::{Commit, EntryKind, Tree, TreeEntry};
use bmsync::{ObjectId, Repo};

fn bmsync(dir: &Path, args: &[&str]) -> Output {
    // A private HOME keeps the developer's global ignore rules out of the results.
    Command::new(env!("CARGO_BIN_EXE_bmsync"))
        .env("HOME", dir)
        .env_remove("BASIC_MEMORY_CONFIG_DIR")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("run bmsync")
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
    let shared = tempfile::tempdir().expect("tmp");
    let url = format!("file://{}/team/", shared.path().display());
    let out = ok(&bmsync(
        tmp.path(),
        &["--json", "init", "--remote", &url, "--create", "--client-id", "alice-laptop"],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["client_id"], "alice-laptop");
    assert_eq!(v["remote"], url);
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
fn init_inside_a_bmsync_folder_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    ok(&bmsync(tmp.path(), &["init", "--client-id", "outer"]));
    let inner = tmp.path().join("projects/team");
    std::fs::create_dir_all(&inner).expect("mkdir");
    let o = bmsync(&inner, &["init", "--client-id", "inner"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let outer = std::fs::canonicalize(tmp.path()).expect("canonical");
    let err = stderr(&o);
    assert!(err.contains(&format!("inside the bmsync folder {}", outer.display())), "{err}");
    assert!(!inner.join(".bmsync").exists(), "nothing was created");
    assert!(!err.contains("panicked"), "{err}");
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

/// Replaces 64-hex ids and 12-hex short ids with placeholders, for stable snapshots.
fn redact(s: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() == 64 {
            out.push_str("<id>");
        } else if run.len() == 12 {
            out.push_str("<short>");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for ch in s.chars() {
        if ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase() {
            run.push(ch);
        } else {
            flush(&mut run, &mut out);
            out.push(ch);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[test]
fn status_commit_diff_log_show_snapshots() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    ok(&bmsync(d, &["init", "--client-id", "alice"]));
    std::fs::create_dir_all(d.join("notes")).expect("mkdir");
    std::fs::write(d.join("notes/idea.md"), "---\ntitle: Idea\n---\nfirst line\n").expect("write");
    std::fs::write(d.join("todo.md"), "- milk\n").expect("write");
    std::fs::write(d.join(".DS_Store"), "junk").expect("write");
    assert_eq!(
        ok(&bmsync(d, &["status"])),
        "No sync yet: every file is new to the remote\nLocal changes:\n  added:    notes/idea.md\n  added:    todo.md\n"
    );
    assert_eq!(redact(&ok(&bmsync(d, &["commit", "-m", "first"]))), "Committed <short> (tree <short>)\n");
    assert_eq!(
        ok(&bmsync(d, &["commit", "-m", "again"])),
        "Nothing to commit: the folder matches the last commit\n"
    );
    std::fs::write(d.join("notes/idea.md"), "---\ntitle: Idea\n---\nfirst line\nsecond line\n")
        .expect("write");
    std::fs::rename(d.join("todo.md"), d.join("notes/todo.md")).expect("mv");
    assert_eq!(
        ok(&bmsync(d, &["diff", "head"])),
        "diff --bmsync notes/idea.md notes/idea.md\n--- a/notes/idea.md\n+++ b/notes/idea.md\n@@ -2,3 +2,4 @@\n \
         title: Idea\n ---\n first line\n+second line\ndiff --bmsync todo.md notes/todo.md\n"
    );
    assert_eq!(
        ok(&bmsync(d, &["diff", "--name-status", "head", "local"])),
        "M\tnotes/idea.md\nR\ttodo.md\tnotes/todo.md\n"
    );
    assert_eq!(
        ok(&bmsync(d, &["diff", "--stat", "head", "local", "--", "notes/idea.md"])),
        " notes/idea.md | +1 -0\n 1 file changed, 1 insertion(+), 0 deletions(-)\n"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(&bmsync(d, &["--json", "diff", "--stat", "head"]))).expect("json");
    assert_eq!(v["changes"][0]["status"], "modified");
    assert_eq!(v["changes"][0]["insertions"], 1);
    assert_eq!(v["changes"][1]["status"], "renamed");
    assert_eq!(v["changes"][1]["from"], "todo.md");
    ok(&bmsync(d, &["commit", "-m", "second\n\nwith body"]));
    let log = redact(&ok(&bmsync(d, &["log"])));
    let log = log.lines().filter(|l| !l.starts_with("Date:")).collect::<Vec<_>>().join("\n");
    assert_eq!(
        log,
        "commit <id> (head)\nClient: alice\n\n    second\n    \n    with body\n\ncommit <id>\nClient: alice\n\n    first"
    );
    assert_eq!(ok(&bmsync(d, &["show", "head:notes/todo.md"])), "- milk\n");
    assert_eq!(ok(&bmsync(d, &["show", "head:notes"])), "idea.md\ntodo.md\n");
    assert_eq!(ok(&bmsync(d, &["show", "local:"])), "notes/\n");
    let shown = redact(&ok(&bmsync(d, &["show", "head"])));
    assert!(shown.ends_with("  modified: notes/idea.md\n  renamed:  todo.md -> notes/todo.md\n"), "{shown}");
    let missing = bmsync(d, &["show", "head:nope.md"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("\"nope.md\" is not in head"), "{}", stderr(&missing));
    let v: serde_json::Value = serde_json::from_str(&ok(&bmsync(d, &["--json", "status"]))).expect("json");
    assert_eq!(v["clean"], false);
    assert_eq!(v["base"], serde_json::Value::Null);
    assert_eq!(
        ok(&bmsync(d, &["check-ignore", ".DS_Store", "notes/idea.md", ".obsidian/x"])),
        ".DS_Store: ignored by built-in rule \".DS_Store\"\nnotes/idea.md: not ignored\n\
         .obsidian/x: ignored by built-in rule \".obsidian/\"\n"
    );
}

#[test]
fn an_unreadable_file_is_a_clear_error_and_nothing_is_recorded() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    ok(&bmsync(d, &["init"]));
    std::fs::write(d.join("ok.md"), "fine").expect("write");
    std::fs::write(d.join("locked.md"), "secret").expect("write");
    // Root reads anything, so as root the CLI runs as `nobody` (folder opened up for it).
    let as_root = std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    let run = |args: &[&str]| -> Output {
        if as_root {
            Command::new("setpriv")
                .args([
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    env!("CARGO_BIN_EXE_bmsync"),
                    "-C",
                ])
                .arg(d)
                .args(args)
                .env("HOME", d)
                .env_remove("BASIC_MEMORY_CONFIG_DIR")
                .output()
                .expect("setpriv runs (util-linux)")
        } else {
            bmsync(d, args)
        }
    };
    if as_root {
        for p in [d.to_path_buf(), d.join(".bmsync"), d.join(".bmsync/store.redb"), d.join("ok.md")] {
            let mode = if p.is_dir() { 0o777 } else { 0o666 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
    }
    std::fs::set_permissions(d.join("locked.md"), std::fs::Permissions::from_mode(0o000)).expect("chmod");
    for cmd in [&["status"][..], &["commit", "-m", "x"]] {
        let o = run(cmd);
        assert_eq!(o.status.code(), Some(1), "{cmd:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("locked.md") && err.contains("ermission denied"), "{cmd:?}: {err}");
        assert!(err.contains("nothing was recorded"), "{err}");
    }
    std::fs::set_permissions(d.join("locked.md"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_eq!(ok(&bmsync(d, &["log"])), "No commits yet\n");
    assert!(ok(&bmsync(d, &["status"])).contains("added:    locked.md"));
}

/// Runs bmsync with stdout (and, with `close_stderr`, stderr) read by no one: the pipes
/// are closed right after the start, so every write past the pipe's buffer fails with
/// EPIPE. Returns the exit code and what stderr said when it was kept open.
fn run_with_closed_pipes(dir: &Path, args: &[&str], close_stderr: bool) -> (Option<i32>, String) {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_bmsync"))
        .env("HOME", dir)
        .env_remove("BASIC_MEMORY_CONFIG_DIR")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn bmsync");
    drop(child.stdout.take());
    let mut err = String::new();
    let stderr_pipe = child.stderr.take().expect("stderr piped");
    if close_stderr {
        drop(stderr_pipe);
    } else {
        let mut p = stderr_pipe;
        p.read_to_string(&mut err).expect("read stderr");
    }
    (child.wait().expect("wait").code(), err)
}

#[test]
fn a_closed_stdout_or_stderr_ends_quietly_never_a_panic() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    ok(&bmsync(d, &["init", "--client-id", "alice"]));
    // Far more output than a pipe buffers (64 KiB), so writes fail after the close.
    let big: String =
        (0..60_000).flat_map(|i| ["line ".to_owned(), i.to_string(), "\n".to_owned()]).collect();
    std::fs::write(d.join("big.md"), &big).expect("write");
    ok(&bmsync(d, &["commit", "-m", "big"]));
    // Many commits for `log`.
    let repo = Repo::open(d).expect("open");
    let mut head = repo.head().expect("head");
    let tree = repo.store().get_commit(&head.expect("committed")).expect("commit").tree;
    for i in 0..3000 {
        let c = Commit {
            tree,
            parents: head.into_iter().collect(),
            client_id: "alice".into(),
            timestamp_ns: i,
            message: format!("commit number {i}"),
            baseline: None,
        };
        let id = repo.store().put_commit(&c).expect("put");
        repo.store().update_ref("head", head, Some(id)).expect("move head");
        head = Some(id);
    }
    drop(repo);
    for args in [&["show", "head:big.md"][..], &["log", "-n", "3000"], &["--json", "log", "-n", "3000"]] {
        for close_stderr in [false, true] {
            let (code, err) = run_with_closed_pipes(d, args, close_stderr);
            assert_eq!(code, Some(0), "{args:?} (stderr closed: {close_stderr}): {err}");
            assert!(err.is_empty(), "{args:?}: a closed stdout is a quiet end, got: {err}");
        }
    }
    // Output to a reader that stays is still complete.
    assert_eq!(ok(&bmsync(d, &["show", "head:big.md"])), big);
}
