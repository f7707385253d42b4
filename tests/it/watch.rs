//! `bmsync watch` end to end on every backend: a local write reaches the bucket, a
//! teammate's note reaches the folder, edits on both sides keep both versions, SIGTERM
//! stops it with exit 0, and an outage is survived.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::sync::Client;
use crate::sync_table::backends;

/// A running watcher, stopped (SIGTERM) when dropped.
struct Watcher {
    child: Child,
}

impl Watcher {
    fn start(c: &Client) -> Self {
        let child = c
            .command(&["--json", "watch", "--interval", "0.5", "--debounce", "0.3", "--full-every", "2"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(c.path(".bmsync/watch-test.log")).expect("log"))
            .spawn()
            .expect("start the watcher");
        Self { child }
    }

    /// Sends SIGTERM and waits: the exit status, and how long it took.
    fn stop(&mut self) -> (Option<i32>, Duration) {
        let t = Instant::now();
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return (s.code(), t.elapsed());
            }
            if t.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return (None, t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// Waits up to 30 s for `cond`.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(30), "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_watcher_keeps_the_folder_and_the_bucket_in_sync_and_stops_cleanly() {
    for b in backends("watch") {
        let n = b.name;
        let alice = b.client("alice");
        let bob = b.client("bob");
        alice.write("note.md", "one\ntwo\nthree\n");
        alice.sync(0);
        bob.sync(0);
        let mut w = Watcher::start(&alice);
        // A local write reaches the bucket.
        alice.write("ideas.md", "an idea\n");
        eventually(&format!("{n}: ideas.md in the bucket"), || {
            b.content("ideas.md").as_deref() == Some("an idea\n")
        });
        // A teammate's note reaches the folder.
        bob.write("from-bob.md", "hello\n");
        bob.sync(0);
        eventually(&format!("{n}: bob's note in alice's folder"), || {
            alice.read("from-bob.md").as_deref() == Some("hello\n")
        });
        // Edits on both sides of one line: both versions are kept.
        bob.sync(0);
        bob.write("note.md", "one\nTWO by bob\nthree\n");
        alice.write("note.md", "one\nTWO by alice\nthree\n");
        let _ = bob.run(&["sync"]);
        eventually(&format!("{n}: both versions kept"), || {
            let _ = bob.run(&["sync"]);
            let texts: Vec<String> = bob.files().iter().filter_map(|p| bob.read(p)).collect();
            texts.iter().any(|t| t.contains("TWO by bob")) && texts.iter().any(|t| t.contains("TWO by alice"))
        });
        let (code, took) = w.stop();
        assert_eq!(code, Some(0), "{n}: SIGTERM stops the watcher with exit 0");
        assert!(took < Duration::from_secs(10), "{n}: it stopped in {took:?}");
    }
}

#[test]
fn a_watcher_survives_an_outage_and_converges_after_it() {
    let (_server, ep) = crate::tigris_server::TigrisServer::with_bucket("team");
    let proxy = crate::sync_faults::Proxy::start(ep.trim_start_matches("http://").parse().expect("address"));
    let alice = Client::new("alice", "s3://team/vault", Some(&proxy.endpoint()));
    alice.write("keep.md", "k\n");
    alice.sync(0);
    let direct = bmsync::remote::S3Remote::connect(
        "team",
        "vault",
        &crate::remote_contract::s3_opts(
            &ep,
            crate::tigris_server::ACCESS_KEY,
            crate::tigris_server::SECRET_KEY,
        ),
    )
    .expect("connect");
    let has = |key: &str, want: &[u8]| {
        let mut out = Vec::new();
        bmsync::Remote::get(&direct, key, None, &mut out).is_ok() && out == want
    };
    let mut w = Watcher::start(&alice);
    alice.write("before.md", "before the outage\n");
    eventually("the watcher runs", || has("before.md", b"before the outage\n"));
    proxy.set_down(true);
    alice.write("during.md", "written during the outage\n");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        matches!(w.child.try_wait(), Ok(None)),
        "the watcher keeps running through the outage: {}",
        std::fs::read_to_string(alice.path(".bmsync/watch-test.log")).unwrap_or_default()
    );
    assert!(!has("during.md", b"written during the outage\n"), "the outage held");
    proxy.set_down(false);
    eventually("the note written during the outage reaches the bucket", || {
        has("during.md", b"written during the outage\n")
    });
    assert_eq!(w.stop().0, Some(0));
}
