//! One folder, one applying run at a time: the sync lock (`.bmsync/sync.lock`, an OS
//! file lock that dies with its process).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Child;

use bmsync::apply::{Progress, SyncError, SyncOptions};
use bmsync::remote::FileRemote;
use bmsync::{Repo, RepoError};

use crate::sync::{Client, bucket_keys};

/// `O_NONBLOCK`, Linux's value (no libc dependency for one constant).
const O_NONBLOCK: i32 = 0o4000;

fn file_remote() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let url = format!("file://{}", dir.path().display());
    (dir, url)
}

/// Takes the folder's lock in this test process, as another bmsync run would: an
/// exclusive OS lock on `.bmsync/sync.lock`, which holds the holder's pid
/// (`format-spec/store.md`).
fn hold(dir: &Path) -> std::fs::File {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir.join(".bmsync/sync.lock"))
        .expect("open the lock file");
    f.try_lock().expect("the folder is free");
    write!(f, "{}", std::process::id()).expect("write pid");
    f
}

/// Reads a child's stderr until a line contains `needle` (or the stream ends); returns
/// what was read.
fn read_until(child: &mut Child, needle: &str) -> (BufReader<std::process::ChildStderr>, String) {
    let mut r = BufReader::new(child.stderr.take().expect("stderr piped"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).expect("read stderr") == 0 {
            return (r, seen);
        }
        seen.push_str(&line);
        if line.contains(needle) {
            return (r, seen);
        }
    }
}

#[test]
fn a_second_sync_waits_for_the_first_and_they_never_both_apply() {
    let (rdir, url) = file_remote();
    let alice = Client::new("alice", &url, None);
    for i in 0..20 {
        alice.write(&format!("notes/n{i}.md"), &format!("note {i}\n"));
    }
    // Both runs start while the folder is busy, so they are sure to overlap.
    let held = hold(alice.dir.path());
    let mut runs: Vec<Child> = (0..2)
        .map(|_| alice.command(&["--json", "sync", "--lock-wait", "600"]).spawn().expect("spawn"))
        .collect();
    let mut readers = Vec::new();
    for run in &mut runs {
        let (r, seen) = read_until(run, "waiting for another bmsync sync on this folder");
        let me = std::process::id();
        assert!(seen.contains(&format!("(pid {me})")), "names the holder: {seen}");
        readers.push(r);
    }
    drop(held);
    let mut uploaded = Vec::new();
    for (mut run, mut r) in runs.into_iter().zip(readers) {
        let mut rest = String::new();
        r.read_to_string(&mut rest).expect("stderr");
        let mut out = String::new();
        run.stdout.take().expect("stdout").read_to_string(&mut out).expect("stdout");
        let status = run.wait().expect("wait");
        assert!(status.success(), "{status:?}: {rest}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json summary");
        assert_eq!(
            (v["conflicts"].as_array().map(Vec::len), v["raced"].as_array().map(Vec::len)),
            (Some(0), Some(0))
        );
        uploaded.push(v["uploaded"].as_u64().expect("count"));
    }
    uploaded.sort_unstable();
    // One run applied everything; the other, after it, found nothing left to do.
    assert_eq!(uploaded, [0, 20]);
    let remote = FileRemote::open(rdir.path()).expect("open remote");
    assert_eq!(bucket_keys(&remote).len(), 20);
}

#[test]
fn the_bounded_wait_says_who_holds_the_folder_then_gives_up_changing_nothing() {
    let (rdir, url) = file_remote();
    let alice = Client::new("alice", &url, None);
    alice.write("a.md", "a\n");
    let held = hold(alice.dir.path());
    for cmd in ["sync", "push", "pull"] {
        let o = alice.run(&[cmd, "--lock-wait", "0"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {err}");
        let me = std::process::id();
        assert!(err.contains(&format!("waiting for another bmsync sync on this folder (pid {me})")), "{err}");
        assert!(
            err.contains(&format!("another bmsync sync is running on {}", alice.dir.path().display())),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let remote = FileRemote::open(rdir.path()).expect("open remote");
    assert!(bucket_keys(&remote).is_empty(), "nothing was applied");
    // plan and status take no lock.
    for cmd in ["plan", "status"] {
        let o = alice.run(&[cmd]);
        assert!(o.status.success(), "{cmd}: {}", String::from_utf8_lossy(&o.stderr));
    }
    drop(held);
    assert_eq!(alice.sync(0)["uploaded"], 1);
}

#[test]
fn a_sync_killed_while_holding_the_lock_never_blocks_the_next() {
    use std::os::unix::fs::OpenOptionsExt;
    let (rdir, url) = file_remote();
    let alice = Client::new("alice", &url, None);
    alice.write("big.md", "the note bob will fetch\n");
    alice.sync(0);
    let bob = Client::new("bob", &url, None);
    // Bob's download opens the object's blob: make it a FIFO, so bob blocks there, in
    // the middle of applying, holding the lock.
    let id = bmsync::ObjectId::for_blob(b"the note bob will fetch\n").to_hex();
    let blob = rdir.path().join("blobs").join(&id[..2]).join(&id);
    let bytes = std::fs::read(&blob).expect("blob");
    std::fs::remove_file(&blob).expect("rm blob");
    let made = std::process::Command::new("mkfifo").arg(&blob).status().expect("mkfifo");
    assert!(made.success());
    let mut run = bob.command(&["sync"]).spawn().expect("spawn");
    // Opening a FIFO's write end without blocking fails until a reader has it open.
    let writer = loop {
        if let Ok(w) = std::fs::OpenOptions::new().write(true).custom_flags(O_NONBLOCK).open(&blob) {
            break w;
        }
        assert!(run.try_wait().expect("poll").is_none(), "bob's sync ended before its download");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // Bob is now reading the blob, inside his sync, with the lock held.
    run.kill().expect("SIGKILL");
    run.wait().expect("reap");
    drop(writer);
    std::fs::remove_file(&blob).expect("rm fifo");
    std::fs::write(&blob, &bytes).expect("restore blob");
    // A plan, which writes nothing, cannot repair what the kill left: it says so.
    let p = bob.run(&["plan"]);
    let perr = String::from_utf8_lossy(&p.stderr);
    assert_eq!(p.status.code(), Some(1), "{perr}");
    assert!(perr.contains("needs a repair") && !perr.contains("panicked"), "{perr}");
    let o = bob.run(&["--json", "sync", "--lock-wait", "0"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("waiting"), "{err}");
    assert_eq!(bob.read("big.md").as_deref(), Some("the note bob will fetch\n"));
}

#[derive(Default)]
struct Told(std::sync::atomic::AtomicBool);

impl Progress for Told {
    fn waiting_for_lock(&self, _pid: Option<u32>) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn two_threads_of_one_process_never_sync_the_folder_at_once() {
    let (rdir, url) = file_remote();
    let alice = Client::new("alice", &url, None);
    for i in 0..10 {
        alice.write(&format!("n{i}.md"), &format!("{i}\n"));
    }
    let repo = Repo::open(alice.dir.path()).expect("open");
    let remote = repo.open_remote().expect("remote");
    let told = Told::default();
    let zero = {
        let mut o = SyncOptions::default();
        o.lock_wait = Some(std::time::Duration::ZERO);
        o
    };
    {
        let guard = repo.lock_sync(std::time::Duration::ZERO, &mut |_| panic!("free")).expect("lock");
        std::thread::scope(|s| {
            let r = s
                .spawn(|| bmsync::apply::sync_with_progress(&repo, remote.as_ref(), &zero, &told))
                .join()
                .expect("no panic");
            assert!(matches!(r, Err(SyncError::Repo(RepoError::Busy { .. }))), "{r:?}");
        });
        assert!(told.0.load(std::sync::atomic::Ordering::SeqCst), "the waiting run was told");
        drop(guard);
    }
    assert!(bucket_keys(remote.as_ref()).is_empty(), "the refused run applied nothing");
    // Two at once: one applies, the other waits and then finds nothing to do.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| bmsync::apply::sync(&repo, remote.as_ref(), &SyncOptions::default()));
        let b = s.spawn(|| bmsync::apply::sync(&repo, remote.as_ref(), &SyncOptions::default()));
        (a.join().expect("no panic").expect("sync a"), b.join().expect("no panic").expect("sync b"))
    });
    let mut ups = [a.uploaded, b.uploaded];
    ups.sort_unstable();
    assert_eq!(ups, [0, 10]);
    assert!(a.conflicts.is_empty() && b.conflicts.is_empty() && a.raced.is_empty() && b.raced.is_empty());
    drop(rdir);
}
