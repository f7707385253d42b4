//! Real folders as users have them: names in NFD and in two cases, a backslash, an
//! executable, symlinks inside and outside the folder. Every scenario runs on every
//! backend (`file://`, the Tigris-compatible server, moto).

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::sync::{Client, bucket_keys};
use crate::sync_table::backends;

/// `café.md` with a composed and with a decomposed `é`.
const NFC: &str = "caf\u{e9}.md";
const NFD: &str = "cafe\u{301}.md";

/// One entry on disk: mode (with the kind), size, mtime (s, ns), link target, bytes.
type DiskEntry = (u32, u64, i64, i64, Option<String>, Vec<u8>);

/// Every entry under `root` (but `.bmsync`), keyed by the on-disk name. What "nothing
/// changed" compares.
pub(crate) fn disk_state(root: &Path) -> BTreeMap<String, DiskEntry> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<String, DiskEntry>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
            if rel == ".bmsync" {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let link = m
                .file_type()
                .is_symlink()
                .then(|| std::fs::read_link(&p).expect("readlink").to_string_lossy().into_owned());
            let bytes = if m.is_file() { std::fs::read(&p).expect("read") } else { Vec::new() };
            out.insert(rel, (m.mode(), m.size(), m.mtime(), m.mtime_nsec(), link, bytes));
            if m.is_dir() {
                go(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, root, &mut out);
    out
}

/// A teammate's (or another tool's) new object, written straight to the bucket.
fn put_new(remote: &dyn bmsync::remote::Remote, key: &str, bytes: &[u8], kind: bmsync::EntryKind) {
    let id = bmsync::ObjectId::for_blob(bytes);
    let body = bmsync::remote::Body::Bytes(bytes);
    remote.put(key, body, id, kind, &bmsync::remote::Condition::IfAbsent).expect("put");
}

fn names_on_disk(c: &Client) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(c.dir.path())
        .expect("read_dir")
        .flatten()
        .map(|e| e.file_name().into_string().expect("utf-8"))
        .filter(|n| n != ".bmsync")
        .collect();
    v.sort();
    v
}

#[test]
fn an_nfd_name_syncs_as_one_nfc_key_and_stays_itself_on_disk() {
    for b in backends("nfd_name") {
        let alice = b.client("alice");
        let bob = b.client("bob");
        alice.write(NFD, "une note\n");
        let s = alice.sync(0);
        assert_eq!(s["uploaded"], 1, "{}: {s}", b.name);
        assert_eq!(bucket_keys(b.inspect.as_ref()), [NFC], "{}: one key, in NFC", b.name);
        // The next sync has nothing to do and does nothing.
        let before = disk_state(alice.dir.path());
        let s = alice.sync(0);
        assert_eq!((s["uploaded"].as_u64(), s["downloaded"].as_u64()), (Some(0), Some(0)), "{}", b.name);
        assert_eq!(disk_state(alice.dir.path()), before, "{}", b.name);
        // A teammate gets it in NFC and edits it; the edit lands in Alice's NFD file, with
        // no second file beside it.
        bob.sync(0);
        assert_eq!(names_on_disk(&bob), [NFC], "{}", b.name);
        bob.write(NFC, "une note, corrigée\n");
        bob.sync(0);
        let s = alice.sync(0);
        assert_eq!(s["downloaded"], 1, "{}: {s}", b.name);
        assert_eq!(names_on_disk(&alice), [NFD], "{}", b.name);
        assert_eq!(alice.read(NFD).as_deref(), Some("une note, corrigée\n"), "{}", b.name);
        // Alice's edit of her NFD file goes up to the one key.
        alice.write(NFD, "une note, encore\n");
        let o = alice.run(&["show", &format!("local:{NFC}")]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "une note, encore\n",
            "{}: show reads the NFD file",
            b.name
        );
        let o = alice.run(&["diff", "--name-status"]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(out, format!("M\t{NFC}\n"), "{}: diff sees it too", b.name);
        let s = alice.sync(0);
        assert_eq!(s["uploaded"], 1, "{}: {s}", b.name);
        assert_eq!(bucket_keys(b.inspect.as_ref()), [NFC], "{}", b.name);
        // A new note inside an NFD-named folder lands in that folder, not in a twin.
        alice.write("re\u{301}sume\u{301}/a.md", "a\n");
        alice.sync(0);
        bob.sync(0);
        bob.write("r\u{e9}sum\u{e9}/b.md", "b\n");
        bob.sync(0);
        alice.sync(0);
        assert_eq!(names_on_disk(&alice), [NFD, "re\u{301}sume\u{301}"], "{}", b.name);
        assert_eq!(alice.read("re\u{301}sume\u{301}/b.md").as_deref(), Some("b\n"), "{}", b.name);
    }
}

#[test]
fn a_folder_holding_both_forms_reports_the_collision_and_loses_nothing() {
    for b in backends("nfc_nfd_pair") {
        let alice = b.client("alice");
        alice.write(NFC, "composed\n");
        alice.write(NFD, "decomposed\n");
        let s = alice.sync(0);
        assert_eq!(s["collisions"][0]["paths"].as_array().map(Vec::len), Some(2), "{}: {s}", b.name);
        assert_eq!(s["collisions"][0]["synced"], NFC, "{}: {s}", b.name);
        // Neither syncs until they are one (either may be the one the bucket knows);
        // neither is touched on disk; the second sync is quiet too.
        assert_eq!(s["uploaded"], 0, "{}: {s}", b.name);
        let before = disk_state(alice.dir.path());
        alice.sync(0);
        assert_eq!(disk_state(alice.dir.path()), before, "{}", b.name);
        let o = alice.run(&["sync"]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        assert!(out.contains(NFD) && out.contains("collid"), "{}: text names it: {out}", b.name);
        let o = alice.run(&["--json", "status"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(
            v["collisions"][0]["paths"].as_array().map(Vec::len),
            Some(2),
            "{}: status too: {v}",
            b.name
        );
        let o = alice.run(&["status"]);
        assert!(String::from_utf8_lossy(&o.stdout).contains("collid"), "{}: status text", b.name);
    }
}

#[test]
fn a_twin_folder_appearing_in_the_other_form_deletes_nothing_in_the_bucket() {
    for b in backends("twin_folder") {
        let alice = b.client("alice");
        // A synced folder whose name is NFD on disk.
        alice.write("re\u{301}sume\u{301}/x.md", "x\n");
        alice.write("keep.md", "k\n");
        alice.sync(0);
        let keys = bucket_keys(b.inspect.as_ref());
        assert_eq!(keys, ["keep.md", "r\u{e9}sum\u{e9}/x.md"], "{}", b.name);
        // An app writes a note under the NFC name: Linux makes a second folder.
        alice.write("r\u{e9}sum\u{e9}/new.md", "new\n");
        let before = disk_state(alice.dir.path());
        let s = alice.sync(0);
        assert_eq!(s["deleted_remote"], 0, "{}: {s}", b.name);
        assert_eq!(s["collisions"][0]["kind"], "unicode", "{}: {s}", b.name);
        assert_eq!(bucket_keys(b.inspect.as_ref()), keys, "{}: the bucket is left as it was", b.name);
        assert_eq!(disk_state(alice.dir.path()), before, "{}: the folder too", b.name);
    }
}

#[test]
fn names_differing_only_by_case_sync_as_themselves_on_a_case_sensitive_folder() {
    for b in backends("case_pair") {
        let alice = b.client("alice");
        let bob = b.client("bob");
        alice.write("Notes.md", "upper\n");
        alice.write("notes.md", "lower\n");
        let s = alice.sync(0);
        assert_eq!(s["uploaded"], 2, "{}: {s}", b.name);
        assert_eq!(bucket_keys(b.inspect.as_ref()), ["Notes.md", "notes.md"], "{}", b.name);
        bob.sync(0);
        assert_eq!(bob.read("Notes.md").as_deref(), Some("upper\n"), "{}", b.name);
        assert_eq!(bob.read("notes.md").as_deref(), Some("lower\n"), "{}", b.name);
    }
}

#[test]
fn a_case_insensitive_folder_never_writes_an_alias_and_says_so() {
    for b in backends("case_insensitive") {
        let alice = b.client("alice");
        alice.write("Notes.md", "upper\n");
        alice.write("notes.md", "lower\n");
        alice.sync(0);
        // Bob's folder is on a case-insensitive file system (as `init` detected it).
        let bob = b.client("bob");
        let mut repo = bmsync::Repo::open(bob.dir.path()).expect("open");
        assert!(!repo.case_insensitive(), "{}: this test machine's folders are case-sensitive", b.name);
        repo.set_case_insensitive(true).expect("set");
        drop(repo);
        let s = bob.sync(0);
        assert_eq!(s["downloaded"], 1, "{}: only one of the pair: {s}", b.name);
        assert_eq!(bob.files(), ["Notes.md"], "{}", b.name);
        assert_eq!(
            s["collisions"][0]["paths"],
            serde_json::json!(["Notes.md", "notes.md"]),
            "{}: {s}",
            b.name
        );
        let o = bob.run(&["sync"]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        assert!(out.contains("notes.md") && out.contains("collid"), "{}: {out}", b.name);
        let o = bob.run(&["--json", "status"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(v["collisions"][0]["synced"], "Notes.md", "{}: status names it: {v}", b.name);
        let o = bob.run(&["status"]);
        assert!(String::from_utf8_lossy(&o.stdout).contains("collide"), "{}: status text", b.name);
        // Nothing was lost in the bucket.
        assert_eq!(bucket_keys(b.inspect.as_ref()), ["Notes.md", "notes.md"], "{}", b.name);
        // Alice drops her lower-case twin; Bob then renames his note to that spelling
        // (a change of case only): the old key goes, and no alias is ever written.
        std::fs::remove_file(alice.path("notes.md")).expect("rm");
        alice.sync(0);
        bob.sync(0);
        std::fs::rename(bob.path("Notes.md"), bob.path("notes.md")).expect("rename");
        bob.sync(0);
        assert_eq!(bucket_keys(b.inspect.as_ref()), ["notes.md"], "{}: one key, the new spelling", b.name);
        assert_eq!(bob.files(), ["notes.md"], "{}", b.name);
    }
}

#[test]
fn a_backslash_is_an_ordinary_character() {
    for b in backends("backslash") {
        let alice = b.client("alice");
        let bob = b.client("bob");
        alice.write("back\\slash.md", "x\n");
        alice.write("plain.md", "y\n");
        let s = alice.sync(0);
        assert_eq!(s["uploaded"], 2, "{}: {s}", b.name);
        assert_eq!(bucket_keys(b.inspect.as_ref()), ["back\\slash.md", "plain.md"], "{}", b.name);
        bob.sync(0);
        assert_eq!(bob.read("back\\slash.md").as_deref(), Some("x\n"), "{}", b.name);
    }
}

#[test]
fn executables_and_symlinks_survive_a_sync_and_reach_teammates() {
    for b in backends("kinds") {
        let alice = b.client("alice");
        let bob = b.client("bob");
        alice.write("t.md", "target\n");
        alice.write("run.sh", "#!/bin/sh\necho hi\n");
        std::fs::set_permissions(alice.path("run.sh"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::create_dir_all(alice.path("sub")).expect("mkdir");
        std::os::unix::fs::symlink("t.md", alice.path("link.md")).expect("symlink");
        std::os::unix::fs::symlink("../t.md", alice.path("sub/up.md")).expect("symlink");
        // Links that leave the folder never leave the machine.
        std::os::unix::fs::symlink("/etc/hostname", alice.path("abs.md")).expect("symlink");
        std::os::unix::fs::symlink("../outside.md", alice.path("out.md")).expect("symlink");
        let s = alice.sync(0);
        assert_eq!(s["uploaded"], 4, "{}: {s}", b.name);
        assert_eq!(bucket_keys(b.inspect.as_ref()), ["link.md", "run.sh", "sub/up.md", "t.md"], "{}", b.name);
        // The second sync has nothing to do, and changes nothing on disk.
        let before = disk_state(alice.dir.path());
        let s = alice.sync(0);
        assert_eq!((s["uploaded"].as_u64(), s["downloaded"].as_u64()), (Some(0), Some(0)), "{}: {s}", b.name);
        assert_eq!(disk_state(alice.dir.path()), before, "{}", b.name);
        let skipped: Vec<&str> =
            s["local_skipped"].as_array().expect("list").iter().filter_map(|k| k["path"].as_str()).collect();
        assert_eq!(skipped, ["abs.md", "out.md"], "{}: the links out are reported: {s}", b.name);
        let o = alice.run(&["sync"]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("skipped out.md: symlink points outside the folder"), "{}: {out}", b.name);
        // A teammate gets the executable bit and the links as links.
        bob.sync(0);
        let mode = std::fs::metadata(bob.path("run.sh")).expect("stat").mode();
        assert_eq!(mode & 0o111, 0o111, "{}: run.sh is executable for bob ({mode:o})", b.name);
        assert_eq!(
            std::fs::read_link(bob.path("link.md")).expect("a link").to_str(),
            Some("t.md"),
            "{}",
            b.name
        );
        assert_eq!(
            std::fs::read_link(bob.path("sub/up.md")).expect("a link").to_str(),
            Some("../t.md"),
            "{}",
            b.name
        );
        assert_eq!(bob.read("sub/up.md").as_deref(), Some("target\n"), "{}", b.name);
        let before = disk_state(bob.dir.path());
        let s = bob.sync(0);
        assert_eq!((s["uploaded"].as_u64(), s["downloaded"].as_u64()), (Some(0), Some(0)), "{}: {s}", b.name);
        assert_eq!(disk_state(bob.dir.path()), before, "{}", b.name);
        // A mode change alone is a change: it goes up. On `file://` the ETag names the
        // kind, so teammates see it at once. An S3 ETag is the bytes' MD5, which a change
        // of mode alone leaves as it was: a teammate takes the new mode with the next
        // change of the bytes (documented in format-spec/remote-objects.md).
        std::fs::set_permissions(bob.path("run.sh"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let s = bob.sync(0);
        assert_eq!(s["uploaded"], 1, "{}: {s}", b.name);
        let before = disk_state(alice.dir.path());
        let s = alice.sync(0);
        let mode = std::fs::metadata(alice.path("run.sh")).expect("stat").mode();
        if b.name == "file" {
            assert_eq!(s["downloaded"], 1, "{}: {s}", b.name);
            assert_eq!(mode & 0o111, 0, "{}: no longer executable ({mode:o})", b.name);
        } else {
            assert_eq!(disk_state(alice.dir.path()), before, "{}: nothing else changes", b.name);
            bob.write("run.sh", "#!/bin/sh\necho bye\n");
            bob.sync(0);
            alice.sync(0);
            let mode = std::fs::metadata(alice.path("run.sh")).expect("stat").mode();
            assert_eq!(mode & 0o111, 0, "{}: the next edit carries the mode ({mode:o})", b.name);
            assert_eq!(alice.read("run.sh").as_deref(), Some("#!/bin/sh\necho bye\n"), "{}", b.name);
        }
    }
}

#[test]
fn a_remote_symlink_out_of_the_folder_is_never_written() {
    for b in backends("evil_link") {
        let bob = b.client("bob");
        let put =
            |key: &str, target: &[u8]| put_new(b.inspect.as_ref(), key, target, bmsync::EntryKind::Symlink);
        put("escape.md", b"../../../../etc/passwd");
        put("abs.md", b"/etc/passwd");
        put("state.md", b".bmsync/store.redb");
        put("fine.md", b"t.md");
        let s = bob.sync(0);
        assert_eq!(s["downloaded"], 1, "{}: {s}", b.name);
        let skipped: Vec<&str> =
            s["remote_skipped"].as_array().expect("list").iter().filter_map(|k| k["key"].as_str()).collect();
        assert_eq!(skipped, ["abs.md", "escape.md", "state.md"], "{}: {s}", b.name);
        assert_eq!(bob.files(), ["fine.md"], "{}: only the link inside the folder", b.name);
        assert!(std::fs::symlink_metadata(bob.path("fine.md")).expect("lstat").file_type().is_symlink());
        let o = bob.run(&["sync"]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("escape.md") && out.contains("outside the folder"), "{}: {out}", b.name);
    }
}

#[test]
fn an_nfd_key_from_another_tool_is_reported_and_deletes_nothing() {
    for b in backends("nfd_key") {
        let alice = b.client("alice");
        alice.write(NFC, "mine\n");
        alice.write("keep.md", "keeps the listing from looking empty\n");
        alice.sync(0);
        // Another tool (rclone on macOS, say) renames the key to its NFD form.
        let etag = b.inspect.head(NFC, None).expect("head").etag;
        put_new(b.inspect.as_ref(), NFD, b"mine\n", bmsync::EntryKind::File);
        b.inspect.delete(NFC, &etag).expect("delete");
        let before = disk_state(alice.dir.path());
        let s = alice.sync(0);
        assert_eq!(disk_state(alice.dir.path()), before, "{}: nothing deleted: {s}", b.name);
        assert_eq!(s["remote_skipped"][0]["key"], NFD, "{}: {s}", b.name);
        let reason = s["remote_skipped"][0]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("NFD"), "{}: {reason}", b.name);
        // And again: no loop, no change.
        alice.sync(0);
        assert_eq!(disk_state(alice.dir.path()), before, "{}", b.name);
        assert_eq!(
            bucket_keys(b.inspect.as_ref()),
            [NFD, "keep.md"],
            "{}: the bucket is left as it is",
            b.name
        );
    }
}

#[test]
fn a_file_where_the_other_side_has_a_folder_converges_and_loses_nothing() {
    for b in backends("type_change") {
        let alice = b.client("alice");
        let bob = b.client("bob");
        alice.write("keep.md", "k\n");
        alice.sync(0);
        bob.sync(0);
        // Both add at once: alice a file `plans`, bob a folder `plans/`.
        alice.write("plans", "alice's file\n");
        bob.write("plans/q1.md", "bob's note\n");
        alice.sync(0);
        let s = bob.sync(3);
        assert_eq!(s["conflicts"][0]["reason"], "type_change", "{}: {s}", b.name);
        let copy = s["conflicts"][0]["local_copy"].as_str().expect("a copy").to_owned();
        assert!(copy.starts_with("plans.conflict-bob-"), "{}: {copy}", b.name);
        assert_eq!(bob.read("plans/q1.md").as_deref(), Some("bob's note\n"), "{}", b.name);
        assert_eq!(bob.read(&copy).as_deref(), Some("alice's file\n"), "{}", b.name);
        alice.sync(0);
        // Open until bob settles it: the copy is a note of its own now.
        bob.sync(3);
        bob.ok(&["resolve", "plans", "--keep", "both"]);
        bob.sync(0);
        assert_eq!(alice.files(), bob.files(), "{}", b.name);
        assert_eq!(alice.files(), ["keep.md", copy.as_str(), "plans/q1.md"], "{}", b.name);
        assert_eq!(bucket_keys(b.inspect.as_ref()), alice.files(), "{}", b.name);
        // And the other way round: a local file where the bucket has a folder.
        bob.write("ideas/x.md", "bob's idea\n");
        bob.sync(0);
        alice.write("ideas", "alice's file\n");
        let s = alice.sync(3);
        let copy = s["conflicts"][0]["local_copy"].as_str().expect("a copy").to_owned();
        assert_eq!(alice.read(&copy).as_deref(), Some("alice's file\n"), "{}", b.name);
        assert_eq!(alice.read("ideas/x.md").as_deref(), Some("bob's idea\n"), "{}", b.name);
        bob.sync(0);
        assert_eq!(alice.files(), bob.files(), "{}", b.name);
        assert_eq!(bucket_keys(b.inspect.as_ref()), alice.files(), "{}", b.name);
    }
}

#[test]
fn a_bucket_holding_both_forms_keeps_syncing_the_nfc_one() {
    for b in backends("nfd_twin_key") {
        let alice = b.client("alice");
        alice.write(NFC, "mine\n");
        alice.sync(0);
        put_new(b.inspect.as_ref(), NFD, b"theirs\n", bmsync::EntryKind::File);
        alice.write(NFC, "mine, edited\n");
        let s = alice.sync(0);
        assert_eq!(s["uploaded"], 1, "{}: the NFC note still syncs: {s}", b.name);
        assert_eq!(s["remote_skipped"][0]["key"], NFD, "{}: {s}", b.name);
        let reason = s["remote_skipped"][0]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("collides"), "{}: {reason}", b.name);
    }
}

#[test]
fn a_bucket_holding_a_file_and_a_folder_of_one_name_converges() {
    for b in backends("file_and_folder_keys") {
        // Two teammates wrote `plans` and `plans/q1.md` at once: S3 takes both.
        let put = |key: &str, bytes: &[u8]| put_new(b.inspect.as_ref(), key, bytes, bmsync::EntryKind::File);
        put("plans", b"a file\n");
        put("plans/q1.md", b"a note\n");
        let alice = b.client("alice");
        let s = alice.sync(3);
        let copy = s["conflicts"][0]["local_copy"].as_str().expect("a copy").to_owned();
        assert!(copy.starts_with("plans.conflict-alice-"), "{}: {s}", b.name);
        assert_eq!(alice.read(&copy).as_deref(), Some("a file\n"), "{}", b.name);
        assert_eq!(alice.read("plans/q1.md").as_deref(), Some("a note\n"), "{}", b.name);
        assert_eq!(bucket_keys(b.inspect.as_ref()), alice.files(), "{}: converged", b.name);
        // Still open (exit 3) until the copy is settled; deleting it by hand settles it.
        let s = alice.sync(3);
        assert_eq!((s["uploaded"].as_u64(), s["downloaded"].as_u64()), (Some(0), Some(0)), "{}: {s}", b.name);
    }
}

#[test]
fn a_hidden_file_key_beside_a_folder_settles_when_the_folder_has_the_file_too() {
    for b in backends("hidden_file_local") {
        let alice = b.client("alice");
        alice.write("plans", "alice's file\n");
        alice.write("keep.md", "k\n");
        alice.sync(0);
        // A teammate's tool writes a note under `plans/`, beside the file `plans`.
        put_new(b.inspect.as_ref(), "plans/q1.md", b"a note\n", bmsync::EntryKind::File);
        let plan = String::from_utf8_lossy(&alice.run(&["--json", "plan"]).stdout).into_owned();
        let o = alice.run(&["--json", "sync"]);
        assert!(matches!(o.status.code(), Some(0 | 3)), "{}: {}", b.name, String::from_utf8_lossy(&o.stderr));
        let first = String::from_utf8_lossy(&o.stdout).into_owned();
        let s = alice.sync(o.status.code().unwrap_or(1));
        assert_eq!(
            alice.read("plans/q1.md").as_deref(),
            Some("a note\n"),
            "{}: {plan}\n{first}\n{s}",
            b.name
        );
        let files = alice.files();
        let copies: Vec<&String> = files.iter().filter(|f| f.starts_with("plans.conflict-")).collect();
        assert_eq!(copies.len(), 1, "{}: one copy of the file: {files:?}", b.name);
        assert_eq!(alice.read(copies[0]).as_deref(), Some("alice's file\n"), "{}", b.name);
        assert_eq!(bucket_keys(b.inspect.as_ref()), files, "{}: converged", b.name);
    }
}

#[test]
fn a_folder_of_ignored_files_in_the_way_of_a_download_is_reported_not_retried() {
    for b in backends("folder_in_the_way") {
        let alice = b.client("alice");
        alice.write("keep.md", "k\n");
        alice.sync(0);
        put_new(b.inspect.as_ref(), "drafts", b"a file named drafts\n", bmsync::EntryKind::File);
        // Locally, `drafts/` holds only an ignored file.
        alice.write("drafts/x.tmp", "junk\n");
        let before = disk_state(alice.dir.path());
        let s = alice.sync(0);
        assert_eq!(s["remote_skipped"][0]["key"], "drafts", "{}: {s}", b.name);
        assert_eq!(disk_state(alice.dir.path()), before, "{}: nothing changes", b.name);
        // An empty folder gives way.
        std::fs::remove_file(alice.path("drafts/x.tmp")).expect("rm");
        alice.sync(0);
        assert_eq!(alice.read("drafts").as_deref(), Some("a file named drafts\n"), "{}", b.name);
    }
}
