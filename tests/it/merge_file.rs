//! `bmsync::merge::merge_text` against `git merge-file` on the same inputs.
//!
//! The contract, per case: when both merge cleanly, the bytes are the same. Conflicts are
//! compared with `git merge-file --diff3` (whose markers bmsync writes). gitoxide's diff
//! slides some changes to another of several equal places than xdiff does, so now and
//! then one side sees a conflict where the other does not (about 5 in 10 000 generated
//! cases); that is held to a rate on a fixed sample, not per case.
//! Without git the tests say loudly that they did not run; under `CI=true` they fail.

use std::path::Path;
use std::process::Command;

use bmsync::merge::{MergeOptions, TextMerge, merge_file_exit, merge_text};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Whether git can run; fails under `CI=true` when it cannot.
fn have_git(test: &str) -> bool {
    let ok = Command::new("git").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but git is not installed");
        eprintln!("\n*** {test} DID NOT RUN: git is not installed ***\n");
    }
    ok
}

/// `git merge-file -p [--diff3] current base other`: its output and exit status.
fn git_merge_file(dir: &Path, base: &[u8], current: &[u8], other: &[u8], diff3: bool) -> (Vec<u8>, i32) {
    for (name, bytes) in [("base", base), ("current", current), ("other", other)] {
        std::fs::write(dir.join(name), bytes).expect("write input");
    }
    let mut cmd = Command::new("git");
    cmd.current_dir(dir).args(["merge-file", "-p"]);
    if diff3 {
        cmd.arg("--diff3");
    }
    cmd.args(["-L", "current", "-L", "base", "-L", "other", "current", "base", "other"]);
    let out = cmd.output().expect("run git merge-file");
    (out.stdout, out.status.code().expect("git exited"))
}

/// What the comparison of one case found.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Same result (clean and equal, or conflicted with git's count and markers).
    Same,
    /// Both conflicted; count or marker bytes differ from `git merge-file --diff3`.
    ConflictDiffers,
    /// bmsync merged cleanly where git reports a conflict.
    CleanWhereGitConflicts,
    /// bmsync reports a conflict where git merged cleanly.
    ConflictWhereGitClean,
}

fn compare(dir: &Path, base: &[u8], current: &[u8], other: &[u8]) -> Outcome {
    let ours = merge_text(base, current, other, &MergeOptions::default()).expect("text inputs");
    let (git_out, git_exit) = git_merge_file(dir, base, current, other, false);
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let case = format!("base={:?} current={:?} other={:?}", show(base), show(current), show(other));
    if git_exit == 0 {
        let TextMerge::Clean(ours) = &ours else { return Outcome::ConflictWhereGitClean };
        assert_eq!(show(ours), show(&git_out), "both merged cleanly, to different bytes; {case}");
        return Outcome::Same;
    }
    assert!(git_exit > 0, "git failed: {git_exit}; {case}");
    let TextMerge::Conflicted { with_markers, .. } = &ours else { return Outcome::CleanWhereGitConflicts };
    let (git3_out, git3_exit) = git_merge_file(dir, base, current, other, true);
    if i32::from(merge_file_exit(&ours)) == git3_exit && *with_markers == git3_out {
        Outcome::Same
    } else {
        Outcome::ConflictDiffers
    }
}

const LINES: [&str; 7] = ["a", "b", "c", "d", "", "}", "e f"];

/// One edit of a line list: delete, insert or replace at a position (taken modulo the length).
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    Insert(usize, usize),
    Replace(usize, usize),
}

fn apply(base: &[&'static str], edits: &[Edit]) -> Vec<String> {
    let mut v: Vec<String> = base.iter().map(|s| (*s).to_owned()).collect();
    for edit in edits {
        match *edit {
            Edit::Delete(at) if !v.is_empty() => {
                v.remove(at % v.len());
            }
            Edit::Insert(at, line) => v.insert(at % (v.len() + 1), format!("{}x", LINES[line])),
            Edit::Replace(at, line) if !v.is_empty() => {
                let at = at % v.len();
                LINES[line].clone_into(&mut v[at]);
            }
            Edit::Delete(_) | Edit::Replace(..) => {}
        }
    }
    v
}

fn join(lines: &[String], eol: &str, final_eol: bool) -> Vec<u8> {
    let mut s = lines.join(eol);
    if final_eol && !lines.is_empty() {
        s.push_str(eol);
    }
    s.into_bytes()
}

fn edit_strategy() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), 0..LINES.len()).prop_map(|(a, l)| Edit::Insert(a, l)),
        (any::<usize>(), 0..LINES.len()).prop_map(|(a, l)| Edit::Replace(a, l)),
    ];
    prop::collection::vec(edit, 0..4)
}

fn case_strategy() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, Vec<u8>)> {
    (
        prop::collection::vec(prop::sample::select(LINES.to_vec()), 0..9),
        edit_strategy(),
        edit_strategy(),
        prop::bool::weighted(0.2),
        prop::sample::select(vec![
            (true, true, true),
            (false, false, false),
            (true, false, true),
            (false, true, true),
        ]),
    )
        .prop_map(|(base, ce, oe, crlf, (b_nl, c_nl, o_nl))| {
            let eol = if crlf { "\r\n" } else { "\n" };
            let lines: Vec<String> = base.iter().map(|s| (*s).to_owned()).collect();
            (
                join(&lines, eol, b_nl),
                join(&apply(&base, &ce), eol, c_nl),
                join(&apply(&base, &oe), eol, o_nl),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    /// When both merge cleanly, they agree byte for byte.
    #[test]
    fn clean_merges_equal_git((base, current, other) in case_strategy()) {
        if !have_git("merge_file::clean_merges_equal_git") {
            return Ok(());
        }
        let dir = tempfile::tempdir().expect("temp dir");
        compare(dir.path(), &base, &current, &other);
    }
}

/// A fixed sample (seeded generator, so it never flakes): clean merges match git's
/// bytes, conflicts match git's `--diff3` output in nearly all cases, and clean against
/// conflicted is rare either way.
#[test]
fn conflicts_match_git_on_a_fixed_sample() {
    if !have_git("merge_file::conflicts_match_git_on_a_fixed_sample") {
        return;
    }
    let seed = [7u8; 32];
    let mut runner =
        TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut same, mut differs, mut clean_vs_conflict, mut conflict_vs_clean) = (0, 0, 0, 0);
    let strategy = case_strategy();
    for _ in 0..400 {
        let (base, current, other) = strategy.new_tree(&mut runner).expect("generate").current();
        match compare(dir.path(), &base, &current, &other) {
            Outcome::Same => same += 1,
            Outcome::ConflictDiffers => differs += 1,
            Outcome::CleanWhereGitConflicts => clean_vs_conflict += 1,
            Outcome::ConflictWhereGitClean => conflict_vs_clean += 1,
        }
    }
    eprintln!(
        "merge_file sample: same {same}, conflict differs {differs}, clean where git conflicts {clean_vs_conflict}, \
         conflict where git is clean {conflict_vs_clean}"
    );
    assert!(differs * 100 <= 400 * 5, "conflicts differ from git in {differs} of 400");
    assert!(clean_vs_conflict * 100 <= 400, "clean where git conflicts in {clean_vs_conflict} of 400");
    assert!(conflict_vs_clean * 100 <= 400, "conflict where git is clean in {conflict_vs_clean} of 400");
    assert!(same >= 370, "{same}");
}

/// Fixed cases, each checked against git.
#[test]
fn fixed_cases_match_git() {
    if !have_git("merge_file::fixed_cases_match_git") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    // (base, current, other)
    let cases: &[(&str, &str, &str)] = &[
        ("a\nb\nc\n", "A\nb\nc\n", "a\nb\nC\n"),
        ("a\nb\nc\n", "a\nX\nc\n", "a\nY\nc\n"),
        ("a\nb\nc\n", "a\nX\nc\n", "a\nX\nc\n"),
        ("", "", ""),
        ("", "one\n", ""),
        ("", "one\n", "one\n"),
        ("", "one\n", "two\n"),
        ("a\nb\n", "", "a\nb\n"),
        ("a\nb\n", "", "a\nB\n"),
        ("a\nb\nc", "A\nb\nc", "a\nb\nC"),
        ("a\nb\nc", "a\nb\nc\n", "A\nb\nc"),
        ("a\nb\nc", "a\nb\nX", "a\nb\nY"),
        ("a\r\nb\r\nc\r\n", "A\r\nb\r\nc\r\n", "a\r\nb\r\nC\r\n"),
        ("a\r\nb\r\nc\r\n", "a\r\nX\r\nc\r\n", "a\r\nY\r\nc\r\n"),
        ("1\n2\n3\n4\n5\n6\n7\n8\n", "1\nA\n3\n4\n5\n6\nB\n8\n", "1\nC\n3\n4\n5\n6\nD\n8\n"),
        ("x\ny\n", "x\ny\nz\n", "w\nx\ny\n"),
        ("---\ntitle: a\ntype: b\n---\n", "---\ntitle: A\ntype: b\n---\n", "---\ntitle: a\ntype: B\n---\n"),
        ("é\nü\n", "É\nü\n", "é\nÜ\n"),
    ];
    for (base, current, other) in cases {
        let outcome = compare(dir.path(), base.as_bytes(), current.as_bytes(), other.as_bytes());
        assert_eq!(outcome, Outcome::Same, "base={base:?} current={current:?} other={other:?}");
    }
}

/// The two kinds of disagreement, one case each: the changes are the same, but
/// gitoxide's diff puts a deletion in a run of equal lines at another place than xdiff
/// does, so the two sides' changes touch in one merge and not in the other.
#[test]
fn known_divergences_from_git() {
    if !have_git("merge_file::known_divergences_from_git") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (b, c, o) = ("\nc\nc\nd\n", "\nc\nc\n", "\nc\nd\n");
    assert_eq!(
        compare(dir.path(), b.as_bytes(), c.as_bytes(), o.as_bytes()),
        Outcome::CleanWhereGitConflicts
    );
    let m = merge_text(b.as_bytes(), c.as_bytes(), o.as_bytes(), &MergeOptions::default()).expect("text");
    assert_eq!(m, TextMerge::Clean(b"\nc\n".to_vec()), "both deletions applied");
    let (b, c, o) = ("\ne\ne\nc\n}\n", "\nx\ne\ne\nc\n}\n", "x\nbx\n\ne\nc\n}\n");
    assert_eq!(compare(dir.path(), b.as_bytes(), c.as_bytes(), o.as_bytes()), Outcome::ConflictWhereGitClean);
}

/// `bmsync merge-file` is the plumbing over the same merge, with git's interface: the
/// same output as `git merge-file --diff3` (bmsync always writes diff3-style markers),
/// the same exit codes (0 clean, else the number of conflicts), and without `-p` the
/// result written into CURRENT.
#[test]
fn the_merge_file_command_matches_git() {
    if !have_git("merge_file::the_merge_file_command_matches_git") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let cases: &[(&str, &str, &str)] = &[
        ("a\nb\nc\n", "A\nb\nc\n", "a\nb\nC\n"),
        ("a\nb\nc\n", "a\nX\nc\n", "a\nY\nc\n"),
        ("1\n2\n3\n4\n5\n6\n7\n8\n", "1\nA\n3\n4\n5\n6\nB\n8\n", "1\nC\n3\n4\n5\n6\nD\n8\n"),
        ("x\ny\n", "x\ny\nz\n", "w\nx\ny\n"),
        ("", "one\n", "two\n"),
    ];
    let bmsync = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_bmsync")).current_dir(dir.path()).args(args).output().expect("run")
    };
    for (base, current, other) in cases {
        let (git_out, git_code) =
            git_merge_file(dir.path(), base.as_bytes(), current.as_bytes(), other.as_bytes(), true);
        // git_merge_file labels the markers current/base/other, as these names do.
        let o = bmsync(&["merge-file", "-p", "current", "base", "other"]);
        let case = format!("base={base:?} current={current:?} other={other:?}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&git_out), "{case}");
        assert_eq!(o.status.code(), Some(git_code), "{case}");
        // Without -p the result goes into CURRENT, as git writes it.
        let o = bmsync(&["merge-file", "-q", "current", "base", "other"]);
        assert_eq!(o.status.code(), Some(git_code), "{case}");
        assert_eq!(std::fs::read(dir.path().join("current")).expect("current"), git_out, "{case}");
        assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{case}: -q says nothing");
    }
    // Not text: never merged, exit 255 as git does for binaries.
    std::fs::write(dir.path().join("current"), b"a\0b").expect("write");
    let o = bmsync(&["merge-file", "-p", "current", "base", "other"]);
    assert_eq!(o.status.code(), Some(255));
}
