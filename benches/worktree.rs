//! Working-tree benchmarks, measured against git and b3sum in the same run.
//!
//! `cargo bench --bench worktree -- [--files N] [--seed S]` (default 100,000 files).
//! Prints each figure and its ratio to the anchor; BENCHMARKS.md records a run.

// A benchmark prints ratios of measured floats and folds small counters into bytes.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::format_push_string,
    clippy::unreadable_literal
)]

// Sizes are sampled as floats and clamped to a small positive range before the cast.
#[path = "support/args.rs"]
mod args;
#[path = "support/genvault.rs"]
mod genvault;

use args::arg;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bmsync::object::{EntryKind, Tree, TreeEntry};
use bmsync::reconcile::{DiffStats, diff_trees};
use bmsync::store::Store;
use bmsync::{ObjectId, ObjectKind};

/// Runs a command in `dir`, returning its wall time; panics with its stderr on failure.
fn timed(dir: &Path, prog: &str, args: &[&str]) -> (Duration, String) {
    let t = Instant::now();
    let out = Command::new(prog)
        .args(args)
        .current_dir(dir)
        .env("BMSYNC_REPORT_PEAK_RSS", "1")
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"));
    let d = t.elapsed();
    assert!(out.status.success(), "{prog} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    (d, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn timed_out(dir: &Path, prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog).args(args).current_dir(dir).output().expect("run");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn median(dir: &Path, prog: &str, args: &[&str], runs: usize) -> Duration {
    let mut v: Vec<Duration> = (0..runs).map(|_| timed(dir, prog, args).0).collect();
    v.sort();
    v[runs / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn ms_f(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
}

fn peak_rss_kib(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|l| l.strip_prefix("peak_rss_kib: ")).and_then(|v| v.trim().parse().ok())
}

fn have(prog: &str) -> bool {
    Command::new(prog).arg("--version").output().is_ok_and(|o| o.status.success())
}

fn main() {
    // `cargo bench` passes --bench; anything else (`cargo test --all-targets`) is not a
    // request to spend minutes measuring.
    if !std::env::args().any(|a| a == "--bench") {
        println!("worktree benchmark: run it with `cargo bench --bench worktree`");
        return;
    }
    if std::env::args().any(|a| a == "--diff-only") {
        tree_diff_bench(tempfile::tempdir().expect("temp dir").path());
        plan_bench();
        return;
    }
    let n = arg("--files", 100_000);
    let seed = arg("--seed", 1) as u64;
    let bm = env!("CARGO_BIN_EXE_bmsync");
    let tmp = tempfile::tempdir().expect("temp dir");
    let vault = tmp.path().join("vault");
    println!("# bmsync worktree benchmark: {n} files, seed {seed}, {} cores", num_cpus());
    let t = Instant::now();
    genvault::generate(&vault, n, seed).expect("generate vault");
    let bytes: u64 = walk_size(&vault);
    println!("generated {n} files, {:.1} MiB, in {}", bytes as f64 / 1048576.0, ms(t.elapsed()));

    // git: a repository over the same folder, told to leave .bmsync alone.
    timed(&vault, "git", &["init", "-q"]);
    // No background gc: it would compete with the timings below.
    timed(&vault, "git", &["config", "gc.auto", "0"]);
    std::fs::write(vault.join(".git/info/exclude"), ".bmsync/\n").expect("exclude");
    timed(&vault, bm, &["init", "--client-id", "bench"]);
    sync_fs();

    // First commit: hash and store everything, against git add -A and b3sum.
    let (bm_commit, err) = timed(&vault, bm, &["commit", "-m", "first"]);
    let commit_rss = peak_rss_kib(&err);
    // Make the commit the sync base, so status compares against it (as after a sync).
    timed(&vault, bm, &["update-ref", "base", "head"]);
    let (git_add, _) = timed(&vault, "git", &["add", "-A"]);
    timed(&vault, "git", &["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "x"]);
    println!("\n## first commit (hash + store everything)");
    println!(
        "bmsync commit        {:>10}   peak RSS {} MiB",
        ms(bm_commit),
        commit_rss.map_or(0, |k| k / 1024)
    );
    println!(
        "git add -A           {:>10}   bmsync/git = {}  (target <= 0.50x)",
        ms(git_add),
        ratio(bm_commit, git_add)
    );
    if have("b3sum") {
        let (b3, _) = timed(
            &vault,
            "sh",
            &[
                "-c",
                "find . -path ./.git -prune -o -path ./.bmsync -prune -o -type f -print0 | xargs -0 -P 2 -n 512 b3sum > /dev/null",
            ],
        );
        println!(
            "b3sum (2 procs)      {:>10}   bmsync/b3sum = {}  (target <= 2.00x)",
            ms(b3),
            ratio(bm_commit, b3)
        );
    } else {
        println!("b3sum                not installed (cargo install b3sum): ratio not measured");
    }

    // No-change status, warm cache.
    timed(&vault, bm, &["status"]);
    let bm_status = median(&vault, bm, &["status"], 7);
    assert!(timed_out(&vault, bm, &["status"]).contains("Nothing changed"), "the vault must be clean");
    let (_, err) = timed(&vault, bm, &["status"]);
    let status_rss = peak_rss_kib(&err);
    let git_status = median(&vault, "git", &["status", "--porcelain"], 7);
    println!("\n## status, no changes, warm cache (median of 7)");
    println!(
        "bmsync status        {:>10}   peak RSS {} MiB (target < 200)",
        ms(bm_status),
        status_rss.map_or(0, |k| k / 1024)
    );
    println!(
        "git status --porcelain {:>8}   bmsync/git = {}  (target <= 1.00x, stretch 0.50x)",
        ms(git_status),
        ratio(bm_status, git_status)
    );

    // Touch 100 files (append a line), then status.
    let files = list_files(&vault);
    for f in files.iter().step_by((files.len() / 100).max(1)).take(100) {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(f)
            .expect("open")
            .write_all(b"\nedit\n")
            .expect("append");
    }
    let (touched, _) = timed(&vault, bm, &["status"]);
    let touched_again = median(&vault, bm, &["status"], 5);
    println!("\n## status after appending to 100 files");
    println!(
        "first status         {:>10}   / no-change = {}  (target <= 1.20x)",
        ms(touched),
        ratio(touched, bm_status)
    );
    println!(
        "later statuses       {:>10}   / no-change = {}",
        ms(touched_again),
        ratio(touched_again, bm_status)
    );

    tree_diff_bench(tmp.path());
    plan_bench();
}

/// Planning against a 100,000-file base with 100 changes (50 local, 50 remote), from
/// in-memory trees: the planner's own cost, with the remote tree built from the listing.
fn plan_bench() {
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    use bmsync::object::{Manifest, ManifestEntry};
    use bmsync::reconcile::{Base, Leaf, ListingStatus, PlanInput, RemoteObject, build_tree, plan};

    let path = |i: usize| format!("area-{:02}/topic-{}/note-{:02}.md", i / 1000, (i / 100) % 10, i % 100);
    let leaf =
        |s: &str| Leaf { kind: EntryKind::File, id: ObjectId::for_blob(s.as_bytes()), size: s.len() as u64 };
    let base_leaves: Vec<(String, Leaf)> = (0..100_000).map(|i| (path(i), leaf(&i.to_string()))).collect();
    let manifest = Manifest::new(
        base_leaves
            .iter()
            .enumerate()
            .map(|(i, (p, l))| ManifestEntry {
                path: p.clone(),
                key: p.clone(),
                etag: format!("\"{i}\""),
                size: l.size,
                content: Some(l.id),
                kind: l.kind,
            })
            .collect(),
    )
    .expect("manifest");
    let mut local = base_leaves.clone();
    let mut remote: BTreeMap<String, RemoteObject> = manifest
        .entries()
        .iter()
        .map(|e| {
            let o = RemoteObject {
                key: e.key.clone(),
                etag: e.etag.clone(),
                size: e.size,
                kind: EntryKind::File,
                content: e.content,
            };
            (e.path.clone(), o)
        })
        .collect();
    for k in 0..50 {
        local[k * 1999].1 = leaf(&format!("local edit {k}"));
        let p = path(k * 1999 + 777);
        let l = leaf(&format!("remote edit {k}"));
        remote.insert(
            p.clone(),
            RemoteObject {
                key: p,
                etag: format!("\"r{k}\""),
                size: l.size,
                kind: EntryKind::File,
                content: Some(l.id),
            },
        );
    }
    let (base_root, mut trees) = build_tree(base_leaves).expect("base tree");
    let (local_root, local_trees) = build_tree(local).expect("local tree");
    trees.extend(local_trees);
    let trees: HashMap<ObjectId, Tree> = trees;
    let (protected, ignored) = (BTreeSet::new(), BTreeSet::new());
    let mut times = Vec::new();
    let mut visited = 0;
    for _ in 0..5 {
        let input = PlanInput {
            trees: &trees,
            base: Some(Base { tree: base_root, manifest: &manifest, manifest_tree: base_root }),
            local: local_root,
            remote: &remote,
            listing: ListingStatus::Complete,
            protected: &protected,
            ignored: &ignored,
            max_delete: None,
            allow_empty_remote: false,
            similarity: None,
        };
        let t = Instant::now();
        let p = plan(&input).expect("plan");
        times.push(t.elapsed());
        assert_eq!(p.ops.len(), 100);
        visited = p.stats.trees_visited;
    }
    times.sort();
    let builds = time_remote_tree(&remote);
    println!("\n## plan: 100,000-file base, 50 local + 50 remote changes (in-memory trees)");
    println!(
        "remote tree alone    {:>10}   (median of 5: build_tree over the 100,000 listed objects)",
        ms(builds[2])
    );
    println!(
        "median of 5          {:>10}   ({visited} tree nodes visited; the base manifest's tree patched with the listing's changes)",
        ms(times[2])
    );
    println!("BENCH plan {:.3} {:.3} {:.3}", ms_f(times[2]), ms_f(times[0]), ms_f(times[4]));
    println!("BENCH remote-tree {:.3} {:.3} {:.3}", ms_f(builds[2]), ms_f(builds[0]), ms_f(builds[4]));
}

/// Where the planner's time goes: building the remote tree from the listing alone (five
/// runs, sorted).
fn time_remote_tree(
    remote: &std::collections::BTreeMap<String, bmsync::reconcile::RemoteObject>,
) -> Vec<Duration> {
    use bmsync::reconcile::{Leaf, build_tree};
    let mut builds: Vec<Duration> = (0..5)
        .map(|_| {
            let leaves = remote.iter().map(|(p, o)| {
                let l = Leaf { kind: o.kind, id: o.content.expect("known content"), size: o.size };
                (p.clone(), l)
            });
            let t = Instant::now();
            build_tree(leaves).expect("remote tree");
            t.elapsed()
        })
        .collect();
    builds.sort();
    builds
}

/// Two 1,000,000-entry trees differing in 100 files. The shape follows the generated
/// vaults: 100 files a folder, 100 folders a parent, 100 parents under the root.
fn tree_diff_bench(dir: &Path) {
    const FAN: usize = 100;
    let store = Store::create(&dir.join("diff.redb"), &[]).expect("store");
    let build = |changed: &[(usize, usize, usize)]| -> ObjectId {
        let batch = store.batch().expect("batch");
        let put = |entries: Vec<TreeEntry>| -> (ObjectId, u64) {
            let t = Tree::new(entries).expect("tree");
            (batch.put(ObjectKind::Tree, &t.encode()).expect("put").0, t.total_size())
        };
        let mut top = Vec::with_capacity(FAN);
        for p in 0..FAN {
            let mut mid = Vec::with_capacity(FAN);
            for d in 0..FAN {
                let leaves = (0..FAN)
                    .map(|f| {
                        let v = u8::from(changed.contains(&(p, d, f)));
                        let key = [p as u8, d as u8, f as u8, v];
                        TreeEntry {
                            name: format!("note-{f:03}.md"),
                            kind: EntryKind::File,
                            id: ObjectId::for_blob(&key),
                            size: 4096,
                        }
                    })
                    .collect();
                let (id, size) = put(leaves);
                mid.push(TreeEntry { name: format!("topic-{d:03}"), kind: EntryKind::Tree, id, size });
            }
            let (id, size) = put(mid);
            top.push(TreeEntry { name: format!("area-{p:03}"), kind: EntryKind::Tree, id, size });
        }
        let (root, _) = put(top);
        batch.commit().expect("commit");
        root
    };
    let a = build(&[]);
    // 100 changed files spread over 100 folders in 50 parents.
    let changed: Vec<(usize, usize, usize)> =
        (0..100).map(|i| (i / 2, (i * 37) % FAN, (i * 53) % FAN)).collect();
    let b = build(&changed);
    let mut times = Vec::new();
    let mut loaded = 0;
    for _ in 0..9 {
        let mut st = DiffStats::default();
        let t = Instant::now();
        let reader = store.reader().expect("reader");
        let changes = diff_trees(&reader, Some(a), Some(b), &mut st).expect("diff");
        times.push(t.elapsed());
        assert_eq!(changes.len(), 100);
        loaded = st.trees_loaded;
    }
    let first = times[0];
    times.sort();
    println!("\n## tree diff: two 1,000,000-entry trees (100x100x100), 100 changed files");
    println!("first run            {:>10}   ({loaded} trees loaded of 20,202)", ms(first));
    println!("median of 9          {:>10}   (target < 5 ms)", ms(times[4]));
    // For scripts/bench: median, fastest, slowest, in ms.
    println!("BENCH tree-diff {:.3} {:.3} {:.3}", ms_f(times[4]), ms_f(times[0]), ms_f(times[8]));
}

fn list_files(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).expect("read_dir").flatten() {
        let name = e.file_name();
        if name == ".git" || name == ".bmsync" {
            continue;
        }
        if e.file_type().expect("type").is_dir() {
            out.extend(list_files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

fn sync_fs() {
    let _ = Command::new("sync").status();
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

fn walk_size(p: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).expect("read_dir").flatten() {
        let m = e.metadata().expect("metadata");
        total += if m.is_dir() { walk_size(&e.path()) } else { m.len() };
    }
    total
}
