//! Renames and moves end to end through the CLI on every backend: an edit follows a
//! rename, renames on both sides, a rename kept over a deletion, a file that follows its
//! renamed folder (each with either client syncing first), moves that transfer nothing,
//! and no empty folders left behind.

use crate::sync::Client;
use crate::sync_table::{Backend, backends};

/// Alice and bob both synced `files`.
fn pair(b: &Backend, files: &[(&str, &str)]) -> (Client, Client) {
    let alice = b.client("alice");
    let bob = b.client("bob");
    alice.write("keep.md", "k\n");
    for (p, t) in files {
        alice.write(p, t);
    }
    alice.sync(0);
    bob.sync(0);
    (alice, bob)
}

fn mv(c: &Client, from: &str, to: &str) {
    let dest = c.path(to);
    std::fs::create_dir_all(dest.parent().expect("a parent")).expect("mkdir");
    std::fs::rename(c.path(from), dest).expect("rename");
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// Both clients and the bucket hold exactly `want` (besides `keep.md`).
fn everywhere(b: &Backend, clients: [&Client; 2], want: &[(&str, &str)], what: &str) {
    let mut paths: Vec<String> =
        want.iter().map(|(p, _)| (*p).to_owned()).chain(["keep.md".to_owned()]).collect();
    paths.sort();
    for c in clients {
        assert_eq!(c.files(), paths, "{}: {what}: files of {}", b.name, c.dir.path().display());
        for (p, t) in want {
            assert_eq!(c.read(p).as_deref(), Some(*t), "{}: {what}: {p}", b.name);
        }
    }
    for (p, t) in want {
        assert_eq!(b.content(p).as_deref(), Some(*t), "{}: {what}: bucket {p}", b.name);
    }
}

#[test]
fn an_edit_follows_a_rename_whoever_syncs_first() {
    const OLD: &str = "---\ntitle: Ideas\n---\n# Ideas\n\none\n";
    const NEW: &str = "---\ntitle: Ideas\n---\n# Ideas\n\none\ntwo, added by bob\n";
    for rename_first in [true, false] {
        for b in backends(&format!("rename_edit_{rename_first}")) {
            let (alice, bob) = pair(&b, &[("ideas.md", OLD)]);
            mv(&alice, "ideas.md", "notes/ideas.md");
            bob.write("ideas.md", NEW);
            let (first, second) = if rename_first { (&alice, &bob) } else { (&bob, &alice) };
            first.sync(0);
            let s = second.sync(0);
            assert_eq!(s["conflicts"].as_array().map(Vec::len), Some(0), "{}: {s}", b.name);
            assert_eq!(n(&s, "moved_local") + n(&s, "moved_remote"), 1, "{}: {s}", b.name);
            first.sync(0);
            everywhere(&b, [&alice, &bob], &[("notes/ideas.md", NEW)], "one file, with the edit");
            assert_eq!(b.content("ideas.md"), None, "{}", b.name);
        }
    }
}

#[test]
fn renames_to_two_paths_conflict_and_keep_the_remote_path() {
    for alice_first in [true, false] {
        for b in backends(&format!("rename_rename_{alice_first}")) {
            let (alice, bob) = pair(&b, &[("a.md", "text\n")]);
            mv(&alice, "a.md", "by-alice.md");
            mv(&bob, "a.md", "by-bob.md");
            let (first, second, won, lost) = if alice_first {
                (&alice, &bob, "by-alice.md", "by-bob.md")
            } else {
                (&bob, &alice, "by-bob.md", "by-alice.md")
            };
            first.sync(0);
            let s = second.sync(3);
            assert_eq!(s["conflicts"][0]["reason"], "rename_rename", "{}: {s}", b.name);
            let o = second.ok(&["--json", "conflicts"]);
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
            assert_eq!(v["conflicts"][0]["path"], won, "{}: {v}", b.name);
            assert_eq!(v["conflicts"][0]["renamed"], lost, "{}: {v}", b.name);
            first.sync(0);
            everywhere(&b, [&alice, &bob], &[(won, "text\n")], "the remote's path wins, one file");
            // Keeping this client's name moves it there; the next syncs carry the move.
            second.ok(&["resolve", won, "--keep", "local"]);
            second.sync(0);
            first.sync(0);
            everywhere(&b, [&alice, &bob], &[(lost, "text\n")], "resolved to the local name");
        }
    }
}

#[test]
fn a_rename_survives_a_deletion_on_the_other_side() {
    for rename_first in [true, false] {
        for b in backends(&format!("rename_delete_{rename_first}")) {
            let (alice, bob) = pair(&b, &[("a.md", "keep me\n")]);
            mv(&alice, "a.md", "moved/a.md");
            std::fs::remove_file(bob.path("a.md")).expect("rm");
            let (first, second) = if rename_first { (&alice, &bob) } else { (&bob, &alice) };
            first.sync(0);
            let s = second.sync(0);
            assert_eq!(s["renames_kept"][0][0], "moved/a.md", "{}: {s}", b.name);
            assert_eq!(s["renames_kept"][0][1], "a.md", "{}: {s}", b.name);
            first.sync(0);
            everywhere(&b, [&alice, &bob], &[("moved/a.md", "keep me\n")], "the rename is kept");
        }
    }
}

#[test]
fn a_new_file_follows_its_renamed_folder_and_no_empty_folder_stays() {
    for rename_first in [true, false] {
        for b in backends(&format!("folder_rename_{rename_first}")) {
            let (alice, bob) = pair(&b, &[("d/x.md", "x\n"), ("d/y.md", "y\n"), ("d/sub/z.md", "z\n")]);
            mv(&alice, "d", "e");
            bob.write("d/new.md", "new\n");
            let (first, second) = if rename_first { (&alice, &bob) } else { (&bob, &alice) };
            first.sync(0);
            second.sync(0);
            first.sync(0);
            let want = [("e/new.md", "new\n"), ("e/sub/z.md", "z\n"), ("e/x.md", "x\n"), ("e/y.md", "y\n")];
            everywhere(&b, [&alice, &bob], &want, "the new file is in the renamed folder");
            for c in [&alice, &bob] {
                assert!(
                    !c.path("d").exists(),
                    "{}: no empty folder d/ in {}",
                    b.name,
                    c.dir.path().display()
                );
            }
        }
    }
}

#[test]
fn moves_send_and_receive_almost_nothing() {
    for b in backends("move_costs") {
        let (alice, bob) = pair(&b, &[]);
        // A 40 MiB attachment moved between folders.
        let big: Vec<u8> = (0..40u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        std::fs::create_dir_all(alice.path("assets")).expect("mkdir");
        std::fs::write(alice.path("assets/scan.bin"), &big).expect("write");
        alice.sync(0);
        bob.sync(0);
        mv(&alice, "assets/scan.bin", "archive/2026/scan.bin");
        let sent = alice.sync(0);
        let got = bob.sync(0);
        let (up, down) = (n(&sent["requests"], "bytes_sent"), n(&got["requests"], "bytes_received"));
        assert!(up + n(&sent["requests"], "bytes_received") < 1 << 20, "{}: mover: {sent}", b.name);
        assert!(down + n(&got["requests"], "bytes_sent") < 1 << 20, "{}: receiver: {got}", b.name);
        assert_eq!((n(&sent, "moved_remote"), n(&got, "moved_local")), (1, 1), "{}", b.name);
        assert_eq!(std::fs::read(bob.path("archive/2026/scan.bin")).expect("moved"), big, "{}", b.name);
        assert!(!bob.path("assets").exists(), "{}: the emptied folder is gone", b.name);

        // A folder of 200 notes renamed: 200 moves, nothing sent or fetched again.
        for i in 0..200 {
            alice.write(&format!("team/note-{i:03}.md"), &format!("# Note {i}\n\nbody {i}\n"));
        }
        alice.sync(0);
        bob.sync(0);
        mv(&alice, "team", "people");
        let sent = alice.sync(0);
        assert_eq!(n(&sent, "moved_remote"), 200, "{}: {sent}", b.name);
        assert_eq!((n(&sent, "uploaded"), n(&sent, "downloaded")), (0, 0), "{}: {sent}", b.name);
        let got = bob.sync(0);
        assert_eq!(n(&got, "moved_local"), 200, "{}: {got}", b.name);
        assert_eq!((n(&got, "uploaded"), n(&got, "downloaded")), (0, 0), "{}: {got}", b.name);
        assert_eq!(n(&got["requests"], "get"), 0, "{}: nothing fetched: {got}", b.name);
        assert!(!bob.path("team").exists(), "{}", b.name);
        assert_eq!(alice.files(), bob.files(), "{}", b.name);
    }
}

#[test]
fn a_sync_round_trashes_into_one_folder_and_leaves_no_empty_folder() {
    let b = backends("trash_round").into_iter().next().expect("the file backend");
    let (alice, bob) =
        pair(&b, &[("a/one.md", "1\n"), ("a/two.md", "2\n"), ("b/three.md", "3\n"), ("c/four.md", "4\n")]);
    std::fs::remove_file(alice.path("a/one.md")).expect("rm");
    std::fs::remove_file(alice.path("a/two.md")).expect("rm");
    mv(&alice, "b/three.md", "d/three.md");
    alice.write("c/four.md", "4, edited\n");
    alice.sync(0);
    let s = bob.sync(0);
    assert_eq!((n(&s, "deleted_local"), n(&s, "moved_local"), n(&s, "downloaded")), (2, 1, 1), "{s}");
    let trash = bob.path(".bmsync/trash");
    let rounds: Vec<_> = std::fs::read_dir(&trash).expect("trash").flatten().map(|e| e.path()).collect();
    assert_eq!(rounds.len(), 1, "one folder for the round: {rounds:?}");
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let mut stack = rounds.clone();
    while let Some(d) = stack.pop() {
        let entries: Vec<_> = std::fs::read_dir(&d).expect("read").flatten().collect();
        assert!(!entries.is_empty(), "an empty folder is left in the trash: {}", d.display());
        for e in entries {
            if e.path().is_dir() {
                dirs.push(e.path());
                stack.push(e.path());
            } else {
                files.push(e.path().strip_prefix(&rounds[0]).expect("inside").to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    assert_eq!(files, ["a/one.md", "a/two.md"], "the deleted files, at their paths; {dirs:?}");
    assert!(!bob.path("a").exists() && !bob.path("b").exists(), "emptied folders are gone");
}
