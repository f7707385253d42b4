//! Three-way merges and conflicts people and agents can settle, end to end through the
//! CLI on every backend (`file://`, the Tigris-compatible server, moto): merged edits,
//! frontmatter key by key, real collisions with copies, `conflicts`, `resolve`, and a
//! copy deleted by hand.

use crate::sync::Client;
use crate::sync_table::{Backend, backends};

const NOTE: &str =
    "---\ntitle: Plan\npermalink: plan\nstatus: draft\ntags: [a]\n---\n# Plan\n\none\n\ntwo\n\nthree\n";

/// Alice and bob both synced `plan.md` holding `base`.
fn pair(b: &Backend, base: &str) -> (Client, Client) {
    let alice = b.client("alice");
    let bob = b.client("bob");
    alice.write("keep.md", "k\n");
    alice.write("plan.md", base);
    alice.sync(0);
    bob.sync(0);
    (alice, bob)
}

/// No conflict markers anywhere in the text.
fn no_markers(text: &str) -> bool {
    !text.lines().any(|l| l.starts_with("<<<<<<<") || l.starts_with(">>>>>>>") || l.starts_with("|||||||"))
}

fn open_conflicts(c: &Client) -> Vec<serde_json::Value> {
    let o = c.ok(&["--json", "conflicts"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("conflicts json");
    assert_eq!(v["version"], 1);
    v["conflicts"].as_array().expect("a list").clone()
}

fn base_parents(c: &Client) -> usize {
    let repo = bmsync::Repo::open(c.dir.path()).expect("open");
    let id = repo.base().expect("base").expect("a base");
    repo.store().get_commit(&id).expect("commit").parents.len()
}

#[test]
fn edits_that_do_not_overlap_merge_into_one_file_everywhere() {
    for b in backends("merge_clean") {
        let n = b.name;
        let (alice, bob) = pair(&b, NOTE);
        alice.write("plan.md", &NOTE.replace("one\n", "one, by alice\n"));
        bob.write("plan.md", &NOTE.replace("three\n", "three, by bob\n"));
        alice.sync(0);
        let s = bob.sync(0);
        assert_eq!(s["merged"][0]["path"], "plan.md", "{n}: {s}");
        assert_eq!(s["conflicts"].as_array().map(Vec::len), Some(0), "{n}: {s}");
        let want = NOTE.replace("one\n", "one, by alice\n").replace("three\n", "three, by bob\n");
        assert_eq!(bob.read("plan.md").as_deref(), Some(want.as_str()), "{n}");
        assert_eq!(b.content("plan.md").as_deref(), Some(want.as_str()), "{n}: the bucket has the merge");
        assert_eq!(base_parents(&bob), 2, "{n}: a merged sync's commit names the remote state it merged");
        alice.sync(0);
        assert_eq!(alice.read("plan.md").as_deref(), Some(want.as_str()), "{n}");
        assert_eq!(alice.files(), bob.files(), "{n}: no copy anywhere");
    }
}

#[test]
fn frontmatter_merges_key_by_key_and_with_body_edits() {
    for b in backends("merge_frontmatter") {
        let n = b.name;
        let (alice, bob) = pair(&b, NOTE);
        // Adjacent keys, one per side.
        alice.write("plan.md", &NOTE.replace("status: draft", "status: done"));
        bob.write("plan.md", &NOTE.replace("tags: [a]", "tags: [a, b]"));
        alice.sync(0);
        bob.sync(0);
        let want = NOTE.replace("status: draft", "status: done").replace("tags: [a]", "tags: [a, b]");
        assert_eq!(bob.read("plan.md").as_deref(), Some(want.as_str()), "{n}: adjacent keys");
        alice.sync(0);
        // A frontmatter change against a body change.
        alice.write("plan.md", &want.replace("title: Plan", "title: The plan"));
        bob.write("plan.md", &want.replace("two\n", "two, edited\n"));
        alice.sync(0);
        bob.sync(0);
        let both = want.replace("title: Plan", "title: The plan").replace("two\n", "two, edited\n");
        assert_eq!(bob.read("plan.md").as_deref(), Some(both.as_str()), "{n}: frontmatter and body");
        alice.sync(0);
        assert_eq!(alice.read("plan.md").as_deref(), Some(both.as_str()), "{n}");
    }
}

#[test]
fn the_same_key_changed_both_ways_keeps_both_versions_without_markers() {
    for b in backends("merge_same_key") {
        let n = b.name;
        let (alice, bob) = pair(&b, NOTE);
        let theirs = NOTE.replace("status: draft", "status: done");
        let mine = NOTE.replace("status: draft", "status: dropped");
        alice.write("plan.md", &theirs);
        bob.write("plan.md", &mine);
        alice.sync(0);
        let s = bob.sync(3);
        assert_eq!(s["conflicts"][0]["reason"], "edit_edit", "{n}: {s}");
        assert_eq!(s["conflicts"][0]["keys"], serde_json::json!(["status"]), "{n}: {s}");
        let copy = s["conflicts"][0]["local_copy"].as_str().expect("a copy").to_owned();
        assert_eq!(bob.read("plan.md").as_deref(), Some(theirs.as_str()), "{n}: the path keeps the bucket's");
        let kept = bob.read(&copy).expect("the copy");
        assert!(no_markers(&kept), "{n}: {kept}");
        assert!(kept.contains("status: dropped") && kept.ends_with("three\n"), "{n}: {kept}");
        // The copy is a note of its own: its own permalink, and it says what it is.
        assert!(!kept.contains("permalink: plan\n"), "{n}: {kept}");
        assert!(kept.contains("conflict_of: plan.md"), "{n}: {kept}");
        let records = open_conflicts(&bob);
        assert_eq!(records.len(), 1, "{n}");
        assert_eq!(records[0]["path"], "plan.md");
        assert_eq!(records[0]["copy"].as_str(), Some(copy.as_str()));
        // Settled with bob's version: exactly his bytes go back to the path.
        bob.ok(&["resolve", "plan.md", "--keep", "local"]);
        assert_eq!(bob.read("plan.md").as_deref(), Some(mine.as_str()), "{n}: byte for byte");
        assert_eq!(bob.read(&copy), None, "{n}");
        bob.sync(0);
        alice.sync(0);
        assert_eq!(alice.read("plan.md").as_deref(), Some(mine.as_str()), "{n}");
        assert_eq!(alice.files(), bob.files(), "{n}: no copy left anywhere");
        assert!(!alice.files().iter().any(|f| f.contains(".conflict-")), "{n}");
    }
}

#[test]
fn overlapping_edits_and_binaries_keep_both_versions_byte_for_byte() {
    for b in backends("merge_overlap") {
        let n = b.name;
        let base = "a\nb\nc\n";
        let (alice, bob) = pair(&b, base);
        std::fs::write(alice.path("pic.bin"), [0u8, 1, 2]).expect("write");
        alice.sync(0);
        bob.sync(0);
        alice.write("plan.md", "a\nB by alice\nc\n");
        bob.write("plan.md", "a\nB by bob\nc\n");
        std::fs::write(alice.path("pic.bin"), [0u8, 1, 2, 3]).expect("write");
        std::fs::write(bob.path("pic.bin"), [9u8, 1, 2]).expect("write");
        alice.sync(0);
        let s = bob.sync(3);
        let copies = crate::sync::conflict_copies(&s);
        assert_eq!(copies.len(), 2, "{n}: {s}");
        assert_eq!(bob.read("plan.md").as_deref(), Some("a\nB by alice\nc\n"), "{n}");
        let note_copy = copies.iter().find(|c| bmsync::merge::is_note(c)).expect("the note's copy");
        assert_eq!(bob.read(note_copy).as_deref(), Some("a\nB by bob\nc\n"), "{n}: no markers, bob's bytes");
        let bin_copy = copies.iter().find(|c| !bmsync::merge::is_note(c)).expect("the binary's copy");
        assert_eq!(std::fs::read(bob.path(bin_copy)).expect("copy"), [9u8, 1, 2], "{n}");
        assert_eq!(std::fs::read(bob.path("pic.bin")).expect("path"), [0u8, 1, 2, 3], "{n}");
        // Deleting a copy by hand settles that conflict; `resolve` the other.
        std::fs::remove_file(bob.path(note_copy)).expect("rm");
        assert_eq!(open_conflicts(&bob).len(), 1, "{n}");
        bob.ok(&["resolve", "pic.bin", "--keep", "remote"]);
        bob.sync(0);
        alice.sync(0);
        assert_eq!(alice.files(), bob.files(), "{n}");
        assert!(!alice.files().iter().any(|f| f.contains(".conflict-")), "{n}: {:?}", alice.files());
    }
}

#[test]
fn a_deletion_against_an_edit_is_a_conflict_the_edit_survives() {
    for b in backends("merge_delete") {
        let n = b.name;
        let (alice, bob) = pair(&b, "v1\n");
        alice.write("other.md", "o1\n");
        alice.sync(0);
        bob.sync(0);
        // delete/edit on bob's side: alice edits plan.md, bob deletes it.
        alice.write("plan.md", "v2\n");
        std::fs::remove_file(bob.path("plan.md")).expect("rm");
        // edit/delete on bob's side: alice deletes other.md, bob edits it.
        std::fs::remove_file(alice.path("other.md")).expect("rm");
        bob.write("other.md", "o2\n");
        alice.sync(0);
        let s = bob.sync(3);
        let mut kinds: Vec<String> = s["conflicts"]
            .as_array()
            .expect("conflicts")
            .iter()
            .map(|c| format!("{}:{}", c["path"].as_str().unwrap_or(""), c["reason"].as_str().unwrap_or("")))
            .collect();
        kinds.sort();
        assert_eq!(kinds, ["other.md:edit_delete", "plan.md:delete_edit"], "{n}: {s}");
        assert_eq!(bob.read("plan.md").as_deref(), Some("v2\n"), "{n}: alice's edit came back");
        assert_eq!(b.content("other.md").as_deref(), Some("o2\n"), "{n}: bob's edit went back up");
        // Bob deletes plan.md again: he has seen the edit, so that settles it.
        std::fs::remove_file(bob.path("plan.md")).expect("rm");
        bob.ok(&["resolve", "other.md", "--keep", "local"]);
        bob.sync(0);
        alice.sync(0);
        assert_eq!(alice.read("plan.md"), None, "{n}");
        assert_eq!(alice.read("other.md").as_deref(), Some("o2\n"), "{n}");
    }
}

#[test]
fn two_conflicts_within_a_second_get_distinct_copies() {
    let b = backends("merge_twice").into_iter().next().expect("file backend");
    let (alice, bob) = pair(&b, "v1\n");
    alice.write("plan.md", "alice 1\n");
    bob.write("plan.md", "bob 1\n");
    alice.sync(0);
    bob.sync(3);
    alice.sync(0);
    alice.write("plan.md", "alice 2\n");
    bob.write("plan.md", "bob 2\n");
    alice.sync(0);
    bob.sync(3);
    let copies: Vec<String> = bob.files().into_iter().filter(|f| f.contains(".conflict-")).collect();
    assert_eq!(copies.len(), 2, "{copies:?}");
    let mut texts: Vec<String> = copies.iter().map(|c| bob.read(c).expect("copy")).collect();
    texts.sort();
    assert_eq!(texts, ["bob 1\n", "bob 2\n"], "nothing lost");
    assert_eq!(open_conflicts(&bob).len(), 2);
}

#[test]
fn resolve_both_and_merged_then_every_client_converges() {
    for b in backends("merge_resolve") {
        let n = b.name;
        let alice = b.client("alice");
        let bob = b.client("bob");
        let carol = b.client("carol");
        alice.write("keep.md", "k\n");
        alice.write("a.md", "a\n");
        alice.write("m.md", "m\n");
        alice.sync(0);
        bob.sync(0);
        carol.sync(0);
        alice.write("a.md", "a by alice\n");
        alice.write("m.md", "m by alice\n");
        bob.write("a.md", "a by bob\n");
        bob.write("m.md", "m by bob\n");
        alice.sync(0);
        bob.sync(3);
        let records = open_conflicts(&bob);
        assert_eq!(records.len(), 2, "{n}");
        // `both`: the copy stays as a file of its own; `merged`: bob's own merge.
        bob.ok(&["resolve", "a.md", "--keep", "both"]);
        bob.write("m.md", "m by alice and bob\n");
        bob.ok(&["resolve", "m.md", "--keep", "merged"]);
        assert!(open_conflicts(&bob).is_empty(), "{n}");
        bob.sync(0);
        alice.sync(0);
        carol.sync(0);
        for c in [&alice, &carol] {
            assert_eq!(c.files(), bob.files(), "{n}");
            assert_eq!(c.read("m.md").as_deref(), Some("m by alice and bob\n"), "{n}");
        }
        let copies: Vec<String> = bob.files().into_iter().filter(|f| f.contains(".conflict-")).collect();
        assert_eq!(copies.len(), 1, "{n}: only the kept-both copy: {copies:?}");
        assert!(copies[0].starts_with("a.conflict-bob-"), "{n}");
    }
}

#[test]
fn markers_are_written_only_when_asked() {
    let b = backends("merge_markers").into_iter().next().expect("file backend");
    let (alice, bob) = pair(&b, "a\nb\nc\n");
    alice.write("plan.md", "a\nB by alice\nc\n");
    bob.write("plan.md", "a\nB by bob\nc\n");
    alice.sync(0);
    let o = bob.run(&["--json", "sync", "--conflict-style", "markers"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let text = bob.read("plan.md").expect("the note");
    assert!(text.contains("<<<<<<< plan.md (local)\nB by bob\n"), "{text}");
    assert!(
        text.contains("||||||| plan.md (base)\nb\n=======\nB by alice\n>>>>>>> plan.md (remote)\n"),
        "{text}"
    );
    assert!(!bob.files().iter().any(|f| f.contains(".conflict-")), "no copy: the markers hold both");
    // Either version comes back exactly from the store.
    bob.ok(&["resolve", "plan.md", "--keep", "remote"]);
    assert_eq!(bob.read("plan.md").as_deref(), Some("a\nB by alice\nc\n"));
    bob.sync(0);
}

#[test]
fn plan_shows_a_merge_and_exits_3_only_for_conflicts() {
    let b = backends("merge_plan").into_iter().next().expect("file backend");
    let (alice, bob) = pair(&b, "a\nb\nc\n");
    alice.write("plan.md", "A\nb\nc\n");
    bob.write("plan.md", "a\nb\nC\n");
    alice.sync(0);
    let o = bob.run(&["--json", "plan"]);
    assert_eq!(o.status.code(), Some(0), "a merge is not a conflict yet");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("plan");
    assert_eq!(v["ops"][0]["action"], "merge");
    assert_eq!(v["ops"][0]["conflict"], false);
    assert_eq!(v["stats"]["merges"], 1);
    std::fs::write(bob.path("pic.bin"), [1u8]).expect("write");
    std::fs::write(alice.path("pic.bin"), [2u8]).expect("write");
    alice.sync(0);
    let o = bob.run(&["--json", "plan"]);
    assert_eq!(o.status.code(), Some(3), "an add/add is a conflict in the plan");
}

#[test]
fn three_clients_editing_one_note_converge_on_one_merge() {
    for b in backends("merge_three") {
        let n = b.name;
        let clients = [b.client("alice"), b.client("bob"), b.client("carol")];
        clients[0].write("keep.md", "k\n");
        clients[0].write("plan.md", NOTE);
        for c in &clients {
            c.sync(0);
        }
        // Each changes something else: a key, the first paragraph, the last one.
        clients[0].write("plan.md", &NOTE.replace("status: draft", "status: done"));
        clients[1].write("plan.md", &NOTE.replace("\none\n", "\none, by bob\n"));
        clients[2].write("plan.md", &NOTE.replace("three\n", "three, by carol\n"));
        for c in &clients {
            c.sync(0);
        }
        for c in &clients {
            c.sync(0);
        }
        let want = NOTE
            .replace("status: draft", "status: done")
            .replace("\none\n", "\none, by bob\n")
            .replace("three\n", "three, by carol\n");
        for c in &clients {
            assert_eq!(c.read("plan.md").as_deref(), Some(want.as_str()), "{n}");
            assert_eq!(c.files(), clients[0].files(), "{n}");
        }
        assert_eq!(b.content("plan.md").as_deref(), Some(want.as_str()), "{n}");
        // `status` has nothing open, in text and in JSON.
        let o = clients[1].ok(&["--json", "status"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status json");
        assert_eq!(v["conflicts"], serde_json::json!([]), "{n}");
    }
}

#[test]
fn status_lists_open_conflicts() {
    let b = backends("merge_status").into_iter().next().expect("file backend");
    let (alice, bob) = pair(&b, "v1\n");
    alice.write("plan.md", "alice\n");
    bob.write("plan.md", "bob\n");
    alice.sync(0);
    bob.sync(3);
    let o = bob.ok(&["--json", "status"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status json");
    assert_eq!(v["conflicts"][0]["path"], "plan.md");
    assert_eq!(v["conflicts"][0]["kind"], "edit_edit");
    let text = String::from_utf8_lossy(&bob.ok(&["status"]).stdout).into_owned();
    assert!(text.contains("Open conflicts") && text.contains("plan.md: edited on both sides"), "{text}");
    let text = String::from_utf8_lossy(&bob.ok(&["conflicts"]).stdout).into_owned();
    assert!(text.contains("the other version is in plan.conflict-bob-"), "{text}");
}
