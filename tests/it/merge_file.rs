//! `bmsync::merge::merge_text` against `git merge-file` on the same inputs.
//!
//! The contract: whenever git merges cleanly, bmsync merges cleanly to the same bytes.
//! Conflicts are compared with `git merge-file --diff3` (whose markers bmsync writes);
//! there the diff alignment can differ now and then (gitoxide's diff slides some hunks
//! another way than xdiff), so counts are held to a rate on a fixed sample, not per case.
//! Without git the tests say loudly that they did not run; under `CI=true` they fail.

use std::path::Path;
use std::process::Command;

use bmsync::merge::{MergeOptions, TextMerge, merge_file_exit, merge_text};
use proptest::prelude::*;

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
}

fn compare(dir: &Path, base: &[u8], current: &[u8], other: &[u8]) -> Outcome {
    let ours = merge_text(base, current, other, &MergeOptions::default()).expect("text inputs");
    let (git_out, git_exit) = git_merge_file(dir, base, current, other, false);
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let case = format!("base={:?} current={:?} other={:?}", show(base), show(current), show(other));
    if git_exit == 0 {
        assert_eq!(
            ours,
            TextMerge::Clean(git_out.clone()),
            "git merged cleanly; {case}: git={:?}",
            show(&git_out)
        );
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
                v[at] = LINES[line].to_owned();
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
    /// Whenever git merges cleanly, so does bmsync, to the same bytes.
    #[test]
    fn clean_merges_equal_git((base, current, other) in case_strategy()) {
        if !have_git("merge_file::clean_merges_equal_git") {
            return Ok(());
        }
        let dir = tempfile::tempdir().expect("temp dir");
        compare(dir.path(), &base, &current, &other);
    }
}

/// A fixed sample (seeded generator, so it never flakes): every clean git merge is
/// matched; conflicts match git's `--diff3` output in nearly all cases; bmsync is
/// rarely clean where git is not.
#[test]
fn conflicts_match_git_on_a_fixed_sample() {
    if !have_git("merge_file::conflicts_match_git_on_a_fixed_sample") {
        return;
    }
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let seed = [7u8; 32];
    let mut runner =
        TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut same, mut differs, mut clean_vs_conflict) = (0, 0, 0);
    let strategy = case_strategy();
    for _ in 0..400 {
        let (base, current, other) = strategy.new_tree(&mut runner).expect("generate").current();
        match compare(dir.path(), &base, &current, &other) {
            Outcome::Same => same += 1,
            Outcome::ConflictDiffers => differs += 1,
            Outcome::CleanWhereGitConflicts => clean_vs_conflict += 1,
        }
    }
    eprintln!(
        "merge_file sample: same {same}, conflict differs {differs}, clean where git conflicts {clean_vs_conflict}"
    );
    assert!(differs * 100 <= 400 * 5, "conflicts differ from git in {differs} of 400");
    assert!(clean_vs_conflict * 100 <= 400, "clean where git conflicts in {clean_vs_conflict} of 400");
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
