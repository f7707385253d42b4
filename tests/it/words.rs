//! What the text output says, word for word: summaries and plans in plain words, with
//! plurals, sizes and short snapshot ids; what push and pull did and left; the
//! mass-delete guard's exact flag; exit 3 as an outcome, not an error.

use crate::sync::Client;

/// The output with what changes from run to run replaced: the remote's temporary
/// path, a duration, a snapshot's time.
fn redact(text: &[u8], remote: &str) -> String {
    let s = String::from_utf8_lossy(text).replace(remote, "<remote>");
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find([' ', '\n']) {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        // " in 0.04 s" and ", snapshot 2026-12-01T18:04:13Z".
        let secs = rest.strip_prefix("in ").and_then(|a| a.find(" s").map(|end| (a, end)));
        if let Some((after, end)) = secs
            && after[..end].chars().all(|c| c.is_ascii_digit() || c == '.')
        {
            out.push_str("in <secs>");
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix("snapshot ")
            && after.len() >= 20
            && after.as_bytes()[4] == b'-'
            && after.as_bytes()[19] == b'Z'
        {
            out.push_str("snapshot <time>");
            rest = &after[20..];
        }
    }
    out.push_str(rest);
    out
}

struct Said {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn say(c: &Client, args: &[&str], remote: &str) -> Said {
    let o = c.run(args);
    Said { code: o.status.code(), stdout: redact(&o.stdout, remote), stderr: redact(&o.stderr, remote) }
}

#[test]
fn summaries_plans_and_the_guard_in_plain_words() {
    let bucket = tempfile::tempdir().expect("tmp");
    let remote = format!("file://{}", bucket.path().display());
    let alice = Client::new("alice", &remote, None);
    for n in ["a", "b", "c"] {
        alice.write(&format!("{n}.md"), &format!("# {n}\n"));
    }
    std::fs::write(alice.path("big.bin"), vec![7u8; 2 * 1024 * 1024]).expect("write");
    let s = say(&alice, &["sync"], &remote);
    assert_eq!(
        (s.code, s.stdout.as_str(), s.stderr.as_str()),
        (Some(0), "Synced with <remote>: 4 uploaded (2.00 MiB up) in <secs>, snapshot <time>\n", "")
    );
    let s = say(&alice, &["sync"], &remote);
    assert_eq!(s.stdout, "Already in sync with <remote> in <secs>, snapshot <time>\n");

    // A rename is a move, in the plan and in the summary.
    std::fs::create_dir(alice.path("notes")).expect("mkdir");
    std::fs::rename(alice.path("a.md"), alice.path("notes/a.md")).expect("mv");
    let s = say(&alice, &["plan"], &remote);
    assert_eq!(
        s.stdout,
        "Plan against <remote> (changes since the last sync): 1 operation\n       1  move there\n\n\
         action        why                              path\n\
         move there    renamed here                     notes/a.md (from a.md)\n"
    );
    assert_eq!(
        say(&alice, &["sync"], &remote).stdout,
        "Synced with <remote>: 1 moved in <secs>, snapshot <time>\n"
    );

    // A first sync is a union, in words.
    let bob = Client::new("bob", &remote, None);
    let s = say(&bob, &["plan"], &remote);
    assert!(
        s.stdout.starts_with(
            "Plan against <remote> (first sync with this remote: both sides combined, nothing deleted): 4 operations\n       4  download\n"
        ) && s.stdout.contains("download      only there (first sync)          b.md\n"),
        "{}",
        s.stdout
    );
    let s = say(&bob, &["pull"], &remote);
    assert_eq!(s.stdout, "Pulled from <remote>: 4 downloaded (2.00 MiB down) in <secs>, snapshot <time>\n");

    // push without --delete says what --delete would add; with it, the guard gives the
    // side and the exact flag, and plan shows what it refuses.
    for gone in ["b.md", "c.md", "big.bin"] {
        std::fs::remove_file(alice.path(gone)).expect("rm");
    }
    let s = say(&alice, &["push"], &remote);
    assert_eq!(
        (s.code, s.stdout.as_str()),
        (
            Some(0),
            "Nothing to push to <remote> in <secs>, snapshot <time>\n\
             3 local deletions not carried: `bmsync push --delete` deletes them in the bucket too\n"
        )
    );
    let s = say(&alice, &["push", "--delete"], &remote);
    assert_eq!(
        (s.code, s.stdout.as_str(), s.stderr.as_str()),
        (
            Some(1),
            "",
            "error: the sync would delete 3 of the 4 files of the last sync (0 here in the folder, 3 there in the \
             bucket), more than the limit of 2: \"b.md\", \"big.bin\", \"c.md\"\n\
             hint: nothing was changed. If these deletions are meant: `bmsync push --delete --max-delete 3` \
             (`bmsync plan --max-delete 3` lists them first)\n"
        )
    );
    let s = say(&alice, &["plan"], &remote);
    assert_eq!(s.code, Some(1), "plan previews what the guard refuses, and exits 1");
    assert!(
        s.stdout.contains("       3  delete there\n") && s.stdout.contains("delete there  deleted here"),
        "{}",
        s.stdout
    );
    assert!(
        s.stderr.starts_with("a sync would refuse this plan: the sync would delete 3 of the 4"),
        "{}",
        s.stderr
    );
    assert!(s.stderr.contains("hint: if these deletions are meant, pass --max-delete 3"), "{}", s.stderr);
    let s = say(&alice, &["push", "--delete", "--max-delete", "3"], &remote);
    assert_eq!(s.stdout, "Pushed to <remote>: 3 deleted there in <secs>, snapshot <time>\n");
}

#[test]
fn open_conflicts_end_with_exit_3_and_a_note_not_an_error() {
    let bucket = tempfile::tempdir().expect("tmp");
    let remote = format!("file://{}", bucket.path().display());
    let alice = Client::new("alice", &remote, None);
    let bob = Client::new("bob", &remote, None);
    alice.write("x.md", "first\n");
    alice.ok(&["sync"]);
    bob.ok(&["sync"]);
    alice.write("x.md", "alice's line\n");
    bob.write("x.md", "bob's line\n");
    bob.ok(&["sync"]);
    let s = say(&alice, &["sync"], &remote);
    assert_eq!(s.code, Some(3));
    assert!(
        s.stdout.starts_with(
            "Synced with <remote>: 1 uploaded, 1 downloaded and 1 conflict (13 B up, 22 B down) in <secs>"
        ),
        "{}",
        s.stdout
    );
    assert!(
        s.stdout.contains("conflict: x.md (edit/edit); your version is in x.conflict-alice-"),
        "{}",
        s.stdout
    );
    assert!(s.stderr.starts_with("1 conflict open: both versions were kept\nhint: "), "{}", s.stderr);
    for said in [&s.stdout, &s.stderr] {
        for rust in ["EditEdit", "Union", "ThreeWay", "OnlyLocal", "1 conflicts", "error:"] {
            assert!(!said.contains(rust), "{rust:?} in {said}");
        }
    }
}
