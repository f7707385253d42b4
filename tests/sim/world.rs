//! One simulated world: N real engines over temp folders, one shared bucket, the user
//! and teammate operations, and the invariants checked after every step.
//!
//! One file on purpose: the operations and the invariants share one model of who wrote
//! what (`Shared`), and each invariant is read beside the operations that can break it
//! (`SIMULATION.md` numbers them).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bmsync::apply::{SyncError, SyncOptions, SyncSummary, make_plan, sync};
use bmsync::reconcile::{Change, DiffStats, diff_trees};
use bmsync::remote::{Body, Condition, FileRemote, Remote, list_all};
use bmsync::worktree::IgnoreRules;
use bmsync::{InitOptions, ObjectId, Repo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::remote::{FaultRemote, Faults, MemRemote, SimCrash};
use super::{Backend, Config, Step, UserOp};

/// Folders the users put notes in. No folder name has a dot and every file name does,
/// so no path is ever a file on one side and a folder on the other (a type change,
/// which is a conflict left for the user by design).
const DIRS: [&str; 5] = ["", "a", "b", "a/c", "b/d"];
/// File names.
const NAMES: [&str; 6] = ["n0.md", "n1.md", "n2.md", "n3.md", "n4.md", "n5.md"];
/// The names real folders have (`Config::odd_names`): an NFC name that every other
/// client writes in NFD, a pair that differs only by case, a backslash, an emoji, and
/// `c`, which in folder `a` is a file where others may have the folder `a/c` (a type
/// change).
const ODD_NAMES: [&str; 6] =
    ["caf\u{e9}.md", "Note.md", "note.md", "back\\slash.md", "\u{1f4dd} idea.md", "c"];
/// A folder with an NFC name, written in NFD by every other client.
const ODD_DIR: &str = "r\u{e9}sum\u{e9}";
/// Files the ignore rules keep out of the bucket.
const IGNORED: [&str; 5] = [".DS_Store", "a/x.tmp", ".obsidian/ws.json", "b/n1.md~", "notes.db"];
/// A note no one touches: it keeps the bucket from ever being truly empty, which the
/// engine (on purpose) refuses to take at face value against a non-empty base.
pub const KEEP: &str = "keep.md";

/// Stands for the teammate's folder in `Shared::placed` (the teammate writes the bucket).
const TEAMMATE: &str = "<teammate>";
/// Sync passes per client allowed in the quiescent phase.
const QUIESCENT_PASSES: usize = 3;

/// A folder's files: relative path → bytes.
pub type Files = BTreeMap<String, Vec<u8>>;

/// A base manifest: path → (ETag, content).
type Entries = BTreeMap<String, (String, Option<ObjectId>)>;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant (1-8, as numbered in SIMULATION.md; 0 for an unexpected panic).
    pub invariant: u8,
    /// What was seen.
    pub what: String,
}

/// What is known of one version (one content, unique by construction).
#[derive(Clone, Copy, Debug, Default)]
pub struct VInfo {
    /// A user replaced or deleted a file holding exactly this version: it may go.
    pub killed: bool,
    /// How many users wrote it (2 for identical edits).
    pub writers: u32,
}

/// A user deletion, watched for resurrection once every client has seen it.
#[derive(Clone, Debug)]
pub struct PendingDelete {
    path: String,
    content: Vec<u8>,
    seen: BTreeSet<usize>,
    settled: bool,
}

/// State shared by the world and the fault wrappers (which act for the teammate and
/// the user in the middle of a sync).
pub struct Shared {
    counter: u64,
    step: usize,
    versions: HashMap<Vec<u8>, VInfo>,
    /// Every successful write: (key, ETag) → content.
    log: HashMap<(String, String), ObjectId>,
    trace: Vec<String>,
    violations: Vec<Violation>,
    ignore: IgnoreRules,
    deletes: Vec<PendingDelete>,
    /// Local paths the user changed during the current sync.
    touched: BTreeSet<String>,
    /// At each base the current sync recorded (by the snapshot version it is paired
    /// with): the folder then, and the paths the user had touched by then.
    recorded: HashMap<u64, (Files, BTreeSet<String>)>,
    /// Users pick odd names and kinds too (`Config::odd_names`).
    odd: bool,
    /// Users add lines at either end, and merged contents are admitted (`Config::merges`).
    merges: bool,
    /// Where users (and the teammate) put each content and left it: (path, content).
    /// Every write is a fresh version, so a content at two paths is a rename or a copy
    /// the engine made (invariant 9).
    /// Keyed by the folder whose user did it (the teammate's is `TEAMMATE`). A rename
    /// takes the content away from its old path for everyone, except where another user
    /// wrote the same bytes there on their own (`both write`).
    placed: HashSet<(PathBuf, String, Vec<u8>)>,
    /// Every rename a user made: (from, to). A version written at `from` by someone who
    /// had not seen the rename yet legitimately ends at `to` (the edit follows it).
    renames: Vec<(String, String)>,
    /// The placements two users made on their own at once (`both write`).
    twins: HashSet<(PathBuf, String, Vec<u8>)>,
    /// Contents a client held, or the bucket did, when that client lost its state (its
    /// next sync is a union, which may keep them at two paths), and what a disturbed sync
    /// moved: invariant 9 exempts them.
    unioned: HashSet<Vec<u8>>,
}

/// Conflict copies are named with the wall clock (`-YYYYMMDDTHHMMSS`): the trace drops
/// that part so runs compare equal.
pub fn normalise(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let stamp = b.len() >= i + 16
            && b[i] == b'-'
            && b[i + 1..i + 9].iter().all(u8::is_ascii_digit)
            && b[i + 9] == b'T'
            && b[i + 10..i + 16].iter().all(u8::is_ascii_digit);
        if stamp && line[..i].contains(".conflict-") {
            i += 16;
            // The counter the engine adds when a copy of that second exists already.
            let digits = b[(i + 1).min(b.len())..].iter().take_while(|c| c.is_ascii_digit()).count();
            if b.get(i) == Some(&b'-') && digits > 0 {
                i += 1 + digits;
            }
            continue;
        }
        let ch = line[i..].chars().next().expect("i is on a char boundary");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// A short, stable name for a content in the trace.
pub fn short(content: &[u8]) -> String {
    let text = String::from_utf8_lossy(content);
    let last = text.lines().last().unwrap_or("").trim_start_matches("+ ");
    let n = text.lines().count();
    if n > 1 { format!("[{last} +{}]", n - 1) } else { format!("[{last}]") }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") }
}

fn random_path(rng: &mut StdRng, odd: bool) -> String {
    // The odd draws come after the usual ones, so a history without them is the same.
    let path = join(DIRS[rng.random_range(0..DIRS.len())], NAMES[rng.random_range(0..NAMES.len())]);
    if !odd || !rng.random_bool(0.3) {
        return path;
    }
    let dir = match rng.random_range(0..4) {
        0 => ODD_DIR,
        1 => "a",
        _ => "",
    };
    join(dir, ODD_NAMES[rng.random_range(0..ODD_NAMES.len())])
}

/// Where the (NFC) path `rel` is on disk: each name as the folder already holds it, in
/// whatever Unicode form; names not there yet in NFD when `nfd`.
fn on_disk(root: &Path, rel: &str, nfd: bool) -> PathBuf {
    use unicode_normalization::UnicodeNormalization;
    let mut p = root.to_owned();
    for part in rel.split('/') {
        let existing = std::fs::read_dir(&p).ok().and_then(|rd| {
            rd.flatten().map(|e| e.file_name()).find(|n| n.to_str().is_some_and(|n| n.nfc().eq(part.chars())))
        });
        match existing {
            Some(n) => p.push(n),
            None if nfd => p.push(part.nfd().collect::<String>()),
            None => p.push(part),
        }
    }
    p
}

/// Whether a file at `path` would clash with what `paths` hold: a file where they have
/// a folder, or a folder where they have a file.
fn in_the_way<'a>(path: &str, mut paths: impl Iterator<Item = &'a String>) -> bool {
    paths.any(|p| p.starts_with(&format!("{path}/")) || path.starts_with(&format!("{p}/")))
}

/// Whether the folder cannot take a file at `rel`: a folder is there (maybe empty), or
/// a file (or link) where a folder above it would go.
fn blocked(root: &Path, rel: &str) -> bool {
    let is = |p: &str, dir: bool| {
        std::fs::symlink_metadata(on_disk(root, p, false)).is_ok_and(|m| m.is_dir() == dir)
    };
    is(rel, true) || rel.match_indices('/').any(|(i, _)| is(&rel[..i], false))
}

/// Whether a client writes new names in NFD (as macOS tools do): every other one.
fn writes_nfd(who: &str) -> bool {
    who.bytes().last().is_some_and(|b| b % 2 == 1)
}

/// Every file of a folder but `.bmsync/`: relative path → bytes.
pub fn folder(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            // Paths in NFC, whatever form the names have on disk: what they sync as.
            let rel: String = unicode_normalization::UnicodeNormalization::nfc(
                p.strip_prefix(root).expect("under root").to_string_lossy().as_ref(),
            )
            .collect();
            if rel == ".bmsync" {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => go(root, &p, out),
                // A symlink is its target (what the bucket holds), never followed.
                Ok(t) if t.is_symlink() => {
                    if let Ok(t) = std::fs::read_link(&p) {
                        out.insert(rel, t.into_os_string().into_encoded_bytes());
                    }
                }
                Ok(_) => {
                    if let Ok(b) = std::fs::read(&p) {
                        out.insert(rel, b);
                    }
                }
                Err(_) => {}
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, root, &mut out);
    out
}

/// The non-root folders under `root` (but `.bmsync/` and ignored ones).
fn subdirs(root: &Path) -> Vec<String> {
    DIRS.iter().filter(|d| !d.is_empty() && root.join(d).is_dir()).map(|d| (*d).to_owned()).collect()
}

/// Writes a file at the (NFC) path `rel`, through the names on disk; a symlink there is
/// replaced by the file (never written through).
fn write_file(root: &Path, rel: &str, bytes: &[u8], nfd: bool) {
    let p = on_disk(root, rel, nfd);
    std::fs::create_dir_all(p.parent().expect("files have a parent")).expect("mkdir in the sim's folder");
    if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(&p).expect("replace a symlink in the sim's folder");
    }
    std::fs::write(&p, bytes).expect("write in the sim's folder");
}

/// What each file of a folder is: path → (executable, symlink).
pub fn kinds(root: &Path) -> BTreeMap<String, bmsync::EntryKind> {
    use std::os::unix::fs::PermissionsExt;
    folder(root)
        .into_keys()
        .filter_map(|rel| {
            let m = std::fs::symlink_metadata(on_disk(root, &rel, false)).ok()?;
            let kind = if m.file_type().is_symlink() {
                bmsync::EntryKind::Symlink
            } else if m.permissions().mode() & 0o111 != 0 {
                bmsync::EntryKind::Executable
            } else {
                bmsync::EntryKind::File
            };
            Some((rel, kind))
        })
        .collect()
}

impl Shared {
    fn new(ignore: IgnoreRules, odd: bool, merges: bool) -> Self {
        Self {
            odd,
            merges,
            counter: 0,
            step: 0,
            versions: HashMap::new(),
            log: HashMap::new(),
            trace: Vec::new(),
            violations: Vec::new(),
            ignore,
            deletes: Vec::new(),
            touched: BTreeSet::new(),
            recorded: HashMap::new(),
            placed: HashSet::new(),
            twins: HashSet::new(),
            renames: Vec::new(),
            unioned: HashSet::new(),
        }
    }

    /// The engine is recording a base paired with snapshot `version` (its last remote
    /// call before it moves the base ref): remember what the folder holds now.
    pub fn recording(&mut self, version: u64, root: &Path) {
        let touched = self.touched.clone();
        self.recorded.insert(version, (folder(root), touched));
    }

    /// Adds a line to the trace.
    pub fn trace_line(&mut self, line: &str) {
        self.trace.push(normalise(line));
    }

    fn violate(&mut self, invariant: u8, what: String) {
        self.violations.push(Violation { invariant, what });
    }

    /// Whether a path is kept out of the bucket.
    pub fn ignored(&self, rel: &str) -> bool {
        self.ignore.matched_with_parents(rel, false).is_some()
    }

    /// A line no one wrote before: who writes it, at which step, and a counter.
    fn next_line(&mut self, who: &str, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{who} s{} #{}\n", self.step, self.counter)
    }

    /// A new version, unique: who wrote it, at which step, and a counter.
    fn fresh(&mut self, who: &str, old: Option<&[u8]>) -> Vec<u8> {
        let mut v = old.map(<[u8]>::to_vec).unwrap_or_default();
        let line = self.next_line(who, if old.is_some() { "+ " } else { "" });
        v.extend_from_slice(line.as_bytes());
        self.versions.entry(v.clone()).or_default().writers += 1;
        v
    }

    /// A new version: `old` with a line added at the top.
    fn fresh_on_top(&mut self, who: &str, old: &[u8]) -> Vec<u8> {
        let mut v = self.next_line(who, "+ ").into_bytes();
        v.extend_from_slice(old);
        self.versions.entry(v.clone()).or_default().writers += 1;
        v
    }

    /// Whether `v`, which no user wrote, is the clean three-way merge of versions users
    /// did write (the engine merges edits of one note): then it is a version of its
    /// own, and the two it merged may go. Only versions all of whose whole lines `v`
    /// holds can take part, which keeps the search small.
    fn admit_merge(&mut self, v: &[u8]) -> bool {
        if !self.merges {
            return false;
        }
        let lines: HashSet<&[u8]> = v.split_inclusive(|&b| b == b'\n').collect();
        let parts: Vec<Vec<u8>> = self
            .versions
            .keys()
            // (A last line without its newline may have been joined to an appended one.)
            .filter(|k| k.split_inclusive(|&b| b == b'\n').all(|l| lines.contains(l) || !l.ends_with(b"\n")))
            .cloned()
            .collect();
        let opts = bmsync::merge::MergeOptions::default();
        for base in &parts {
            for (i, local) in parts.iter().enumerate() {
                for remote in &parts[i + 1..] {
                    if base == local || base == remote {
                        continue;
                    }
                    let merged = bmsync::merge::merge_text(base, local, remote, &opts);
                    if matches!(merged, Ok(bmsync::merge::TextMerge::Clean(ref m)) if m == v) {
                        let (local, remote) = (local.clone(), remote.clone());
                        self.versions.entry(v.to_vec()).or_default().writers += 1;
                        self.kill(&local);
                        self.kill(&remote);
                        return true;
                    }
                }
            }
        }
        false
    }

    fn kill(&mut self, v: &[u8]) {
        if let Some(i) = self.versions.get_mut(v) {
            i.killed = true;
        }
    }

    /// A successful write reached the bucket. `client` is `None` for the teammate.
    pub fn logged_put(&mut self, client: Option<usize>, key: &str, etag: &str, content: ObjectId) {
        self.log.insert((key.to_owned(), etag.to_owned()), content);
        if client.is_some() && self.ignored(key) {
            self.violate(7, format!("client c{} uploaded the ignored path {key}", client.unwrap_or(0)));
        }
    }

    fn deleted(&mut self, path: &str, content: Vec<u8>) {
        self.kill(&content);
        self.deletes.push(PendingDelete {
            path: path.to_owned(),
            content,
            seen: BTreeSet::new(),
            settled: false,
        });
    }

    /// A user placed `content` at `path` (a rename): any deletion of it there is void.
    fn placed(&mut self, root: &Path, path: &str, content: &[u8]) {
        self.deletes.retain(|d| !(d.path == path && d.content == content));
        self.put_at(root, path, content);
    }

    /// The user of `root` (or the teammate) wrote `content` at `path` (invariant 9).
    fn put_at(&mut self, root: &Path, path: &str, content: &[u8]) {
        self.placed.insert((root.to_owned(), path.to_owned(), content.to_vec()));
    }

    /// The user of `root` (or the teammate) took `content` away from `path`.
    fn took_from(&mut self, root: &Path, path: &str, content: &[u8]) {
        self.placed.remove(&(root.to_owned(), path.to_owned(), content.to_vec()));
    }

    /// Whether some user (or the teammate) put `content` at `path` and left it there, or
    /// put it at a path some user renamed (in one or more steps) to `path`.
    fn put_by_someone(&self, path: &str, content: &[u8]) -> bool {
        let mut reach: BTreeSet<&str> =
            self.placed.iter().filter(|(_, _, v)| v == content).map(|(_, p, _)| p.as_str()).collect();
        loop {
            let more: Vec<&str> = self
                .renames
                .iter()
                .filter(|(f, t)| reach.contains(f.as_str()) && !reach.contains(t.as_str()))
                .map(|(_, t)| t.as_str())
                .collect();
            if more.is_empty() {
                return reach.contains(path);
            }
            reach.extend(more);
        }
    }

    /// A teammate writes or deletes in the bucket directly. `target`: the key to race
    /// with (a precondition race), if any.
    pub fn teammate_race(&mut self, bucket: &dyn Remote, target: Option<&str>, rng: &mut StdRng) -> String {
        let (objs, _) = match list_all(bucket, None) {
            Ok(l) => l,
            Err(e) => return format!("teammate cannot list: {e}"),
        };
        let live: Vec<String> = objs.into_iter().map(|o| o.key).filter(|k| k != KEEP).collect();
        let target = target.filter(|k| *k != KEEP && !self.ignored(k)).map(str::to_owned);
        let key = match target {
            Some(k) => k,
            None if !live.is_empty() && rng.random_bool(0.6) => live[rng.random_range(0..live.len())].clone(),
            None => random_path(rng, self.odd),
        };
        if in_the_way(&key, live.iter()) {
            return format!("teammate does not write {key}: a file or folder of that name is in the way");
        }
        let mut old = Vec::new();
        let current = bucket.get(&key, None, &mut old).ok();
        let delete = current.is_some() && rng.random_bool(0.25);
        match current {
            Some(info) if delete => match bucket.delete(&key, &info.etag) {
                Ok(()) => {
                    self.deleted(&key, old.clone());
                    self.took_from(Path::new(TEAMMATE), &key, &old);
                    format!("teammate deletes {key} {}", short(&old))
                }
                Err(e) => format!("teammate fails to delete {key}: {e}"),
            },
            current => {
                let new = self.fresh("tm", None);
                let cond =
                    current.as_ref().map_or(Condition::IfAbsent, |i| Condition::IfMatch(i.etag.clone()));
                let id = ObjectId::for_blob(&new);
                match bucket.put(&key, Body::Bytes(&new), id, bmsync::EntryKind::File, &cond) {
                    Ok(w) => {
                        if current.is_some() {
                            self.kill(&old);
                            self.took_from(Path::new(TEAMMATE), &key, &old);
                        }
                        self.put_at(Path::new(TEAMMATE), &key, &new);
                        self.logged_put(None, &key, &w.etag, id);
                        format!("teammate writes {key} {}", short(&new))
                    }
                    Err(e) => format!("teammate fails to write {key}: {e}"),
                }
            }
        }
    }

    /// The user edits a file while a sync runs (between its scan and its apply).
    pub fn local_change(&mut self, client: usize, root: &Path, rng: &mut StdRng) -> String {
        let op = match rng.random_range(0..10) {
            0..5 => UserOp::Edit,
            5..8 => UserOp::Append,
            _ => UserOp::Delete,
        };
        let line = self.user_op(&format!("c{client}"), root, op, rng);
        format!("user of c{client} meanwhile: {line}")
    }

    /// The files a user may pick: synced ones, not the pinned note.
    fn candidates(&self, files: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
        files.keys().filter(|p| *p != KEEP && !self.ignored(p)).cloned().collect()
    }

    /// A symlink inside the folder, to a name of its own (a new version): it syncs as a
    /// link.
    fn link(&mut self, who: &str, root: &Path, path: &str) -> String {
        self.counter += 1;
        let target = format!("x-{who}-s{}-{}", self.step, self.counter);
        self.versions.entry(target.clone().into_bytes()).or_default().writers += 1;
        let p = on_disk(root, path, writes_nfd(who));
        std::fs::create_dir_all(p.parent().expect("files have a parent")).expect("mkdir");
        if std::fs::symlink_metadata(&p).is_ok() {
            std::fs::remove_file(&p).expect("replace a file in the sim's folder");
        }
        std::os::unix::fs::symlink(&target, &p).expect("symlink in the sim's folder");
        self.touched.insert(path.to_owned());
        format!("{who} links {path} -> {target}")
    }

    /// A new file (sometimes executable, sometimes a symlink) at a random path.
    fn create(
        &mut self,
        who: &str,
        root: &Path,
        files: &BTreeMap<String, Vec<u8>>,
        rng: &mut StdRng,
    ) -> String {
        let path = random_path(rng, self.odd);
        if in_the_way(&path, files.keys()) || blocked(root, &path) {
            return format!("{who} does not create {path}: a file or folder of that name is in the way");
        }
        if let Some(old) = files.get(&path) {
            let old = old.clone();
            self.kill(&old);
        }
        let kind = if self.odd { rng.random_range(0..10) } else { 9 };
        if kind == 0 {
            return self.link(who, root, &path);
        }
        let v = self.fresh(who, None);
        write_file(root, &path, &v, writes_nfd(who));
        self.put_at(root, &path, &v);
        if kind == 1 {
            use std::os::unix::fs::PermissionsExt;
            let p = on_disk(root, &path, false);
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        self.touched.insert(path.clone());
        let x = if kind == 1 { " (executable)" } else { "" };
        format!("{who} creates {path}{x} {}", short(&v))
    }

    /// One user operation on a folder. Returns its trace line.
    pub fn user_op(&mut self, who: &str, root: &Path, op: UserOp, rng: &mut StdRng) -> String {
        let files = folder(root);
        let cands = self.candidates(&files);
        let pick = |rng: &mut StdRng| -> Option<String> {
            (!cands.is_empty()).then(|| cands[rng.random_range(0..cands.len())].clone())
        };
        let op = match op {
            UserOp::Edit | UserOp::Append | UserOp::Delete | UserOp::Rename if cands.is_empty() => {
                UserOp::Create
            }
            op => op,
        };
        match op {
            UserOp::Create => self.create(who, root, &files, rng),
            UserOp::Edit | UserOp::Append => {
                let path = pick(rng).expect("candidates checked above");
                let old = files[&path].clone();
                self.kill(&old);
                // The draw comes only with merges on, so a history without them is the same.
                let v = if op == UserOp::Append && self.merges && rng.random_bool(0.5) {
                    self.fresh_on_top(who, &old)
                } else if op == UserOp::Append {
                    self.fresh(who, Some(&old))
                } else {
                    self.fresh(who, None)
                };
                write_file(root, &path, &v, writes_nfd(who));
                self.took_from(root, &path, &old);
                self.put_at(root, &path, &v);
                self.touched.insert(path.clone());
                let verb = if op == UserOp::Append { "appends to" } else { "edits" };
                format!("{who} {verb} {path} {}", short(&v))
            }
            UserOp::Delete => {
                let path = pick(rng).expect("candidates checked above");
                let old = files[&path].clone();
                std::fs::remove_file(on_disk(root, &path, false)).expect("delete in the sim's folder");
                self.deleted(&path, old.clone());
                self.took_from(root, &path, &old);
                self.touched.insert(path.clone());
                format!("{who} deletes {path} {}", short(&old))
            }
            UserOp::Rename => {
                let from = pick(rng).expect("candidates checked above");
                let to = random_path(rng, self.odd);
                if files.contains_key(&to) {
                    return format!("{who} does not rename {from} onto the existing {to}");
                }
                if in_the_way(&to, files.keys()) || blocked(root, &to) {
                    return format!("{who} does not rename {from} to {to}: a file or folder is in the way");
                }
                let v = files[&from].clone();
                let dest = on_disk(root, &to, writes_nfd(who));
                std::fs::create_dir_all(dest.parent().expect("files have a parent")).expect("mkdir");
                std::fs::rename(on_disk(root, &from, false), &dest).expect("rename in the sim's folder");
                self.placed(root, &to, &v);
                self.renames.push((from.clone(), to.clone()));
                let twins = &self.twins;
                self.placed.retain(|(r, p, c)| {
                    !(*p == from
                        && *c == v
                        && (r == root || !twins.contains(&(r.clone(), p.clone(), c.clone()))))
                });
                self.touched.insert(from.clone());
                self.touched.insert(to.clone());
                format!("{who} moves {from} to {to} {}", short(&v))
            }
            UserOp::MkDir => {
                let d = DIRS[rng.random_range(1..DIRS.len())];
                let prefixes: Vec<String> =
                    d.match_indices('/').map(|(i, _)| d[..i].to_owned()).chain([d.to_owned()]).collect();
                if prefixes.iter().any(|p| files.contains_key(p)) || blocked(root, &format!("{d}/x")) {
                    return format!("{who} does not create folder {d}: a file is in the way");
                }
                std::fs::create_dir_all(root.join(d)).expect("mkdir in the sim's folder");
                format!("{who} creates folder {d}")
            }
            UserOp::RmDir => {
                let dirs = subdirs(root);
                if dirs.is_empty() {
                    return format!("{who} has no folder to delete");
                }
                let d = dirs[rng.random_range(0..dirs.len())].clone();
                let inside: Vec<(String, Vec<u8>)> = files
                    .iter()
                    .filter(|(p, _)| p.starts_with(&format!("{d}/")) && !self.ignored(p))
                    .map(|(p, v)| (p.clone(), v.clone()))
                    .collect();
                std::fs::remove_dir_all(root.join(&d)).expect("rmdir in the sim's folder");
                for (p, v) in &inside {
                    self.deleted(p, v.clone());
                    self.touched.insert(p.clone());
                }
                format!("{who} deletes folder {d} ({} notes)", inside.len())
            }
            UserOp::Ignored => {
                let p = IGNORED[rng.random_range(0..IGNORED.len())];
                self.counter += 1;
                write_file(root, p, format!("junk #{}\n", self.counter).as_bytes(), false);
                format!("{who} writes ignored {p}")
            }
        }
    }
}

struct Client {
    name: String,
    generation: u32,
    root: PathBuf,
    repo: Option<Repo>,
    remote: FaultRemote,
}

/// A base: manifest entries (path → (ETag, content)) and tree leaves (path → content).
type BaseView = (BTreeMap<String, (String, Option<ObjectId>)>, BTreeMap<String, ObjectId>);

fn read_base(repo: &Repo) -> BaseView {
    match repo.base().expect("read the base ref") {
        Some(id) => read_commit(repo, id),
        None => BaseView::default(),
    }
}

/// The base commit's parent (the base the sync that recorded it planned against) and
/// the snapshot version it was recorded with.
fn base_lineage(repo: &Repo) -> Option<(ObjectId, Option<ObjectId>, Option<u64>)> {
    let id = repo.base().expect("read the base ref")?;
    let commit = repo.store().get_commit(&id).expect("the base commit is stored");
    Some((id, commit.parents.first().copied(), commit.baseline.and_then(|b| b.snapshot)))
}

/// The kinds (file, executable, symlink) of the base's entries.
fn base_kinds(repo: &Repo) -> BTreeMap<String, bmsync::EntryKind> {
    let Some(id) = repo.base().expect("read the base ref") else { return BTreeMap::new() };
    let store = repo.store();
    let commit = store.get_commit(&id).expect("the base commit is stored");
    commit
        .baseline
        .map(|b| store.get_manifest(&b.manifest).expect("the base manifest is stored"))
        .unwrap_or_default()
        .entries()
        .iter()
        .map(|e| (e.path.clone(), e.kind))
        .collect()
}

fn read_commit(repo: &Repo, id: ObjectId) -> BaseView {
    let store = repo.store();
    let commit = store.get_commit(&id).expect("the base commit is stored");
    let manifest = commit
        .baseline
        .as_ref()
        .map(|b| store.get_manifest(&b.manifest).expect("the base manifest is stored"))
        .unwrap_or_default();
    let entries = manifest.entries().iter().map(|e| (e.path.clone(), (e.etag.clone(), e.content))).collect();
    let reader = store.reader().expect("a store reader");
    let mut st = DiffStats::default();
    let leaves = diff_trees(&reader, None, Some(commit.tree), &mut st)
        .expect("the base tree is readable")
        .into_iter()
        .filter_map(|c| match c {
            Change::Added { path, new } => Some((path, new.id)),
            _ => None,
        })
        .collect();
    // Key ≠ path would be a bug; keep both visible to the checks.
    let mut m: BTreeMap<String, (String, Option<ObjectId>)> = entries;
    for e in manifest.entries() {
        if e.key != e.path {
            m.insert(format!("{} (key {})", e.path, e.key), (e.etag.clone(), e.content));
        }
    }
    (m, leaves)
}

fn error_kind(e: &SyncError) -> String {
    let variant = |d: String| d.split([' ', '(', '{']).next().unwrap_or("").to_owned();
    match e {
        SyncError::Remote(r) => format!("remote {}", variant(format!("{r:?}"))),
        SyncError::Plan(p) => format!("plan {}", variant(format!("{p:?}"))),
        SyncError::Io { .. } => "io".to_owned(),
        SyncError::Repo(_) | SyncError::Store(_) => "store".to_owned(),
        SyncError::Recover(_) => "recover".to_owned(),
        SyncError::Conflicts { .. } => "conflicts".to_owned(),
        SyncError::LostUpdates { .. } => "lost updates".to_owned(),
    }
}

/// How a sync ended.
enum Ended {
    Ok(Box<SyncSummary>),
    Failed(String),
    Crashed,
}

/// The world of one seed.
pub struct World {
    cfg: Config,
    shared: Arc<Mutex<Shared>>,
    bucket: Arc<dyn Remote>,
    clients: Vec<Client>,
    /// Each client's folder as of the end of the last step (re-read only where a step
    /// could have changed it).
    folders: Vec<BTreeMap<String, Vec<u8>>>,
    opts: SyncOptions,
    _tmp: tempfile::TempDir,
}

/// Where the folders live: tmpfs when there is one (fsyncs are free there).
fn temp_root() -> tempfile::TempDir {
    let base = std::env::var_os("BMSYNC_SIM_TMP").map(PathBuf::from).or_else(|| {
        let shm = Path::new("/dev/shm");
        shm.is_dir().then(|| shm.to_owned())
    });
    let b =
        tempfile::Builder::new().prefix("bmsync-sim-").tempdir_in(base.unwrap_or_else(std::env::temp_dir));
    b.expect("a temp folder for the simulation")
}

impl World {
    /// Sets up the clients and the bucket, with a pinned note client 0 uploads.
    pub fn new(cfg: &Config) -> Self {
        let tmp = temp_root();
        let ignore = IgnoreRules::load(tmp.path(), &[]).expect("the built-in ignore rules load");
        let shared = Arc::new(Mutex::new(Shared::new(ignore, cfg.odd_names, cfg.merges)));
        let bucket: Arc<dyn Remote> = match cfg.backend {
            Backend::Mem => Arc::new(MemRemote::default()),
            Backend::File => {
                Arc::new(FileRemote::create(&tmp.path().join("bucket")).expect("create the file remote"))
            }
        };
        let clients = (0..cfg.clients)
            .map(|i| {
                let root = tmp.path().join(format!("c{i}"));
                std::fs::create_dir_all(&root).expect("client folder");
                let name = format!("c{i}");
                let opts = {
                    let mut o = InitOptions::default();
                    o.client_id = Some(name.clone());
                    o
                };
                let repo = Repo::init(&root, &opts).expect("init a client");
                let remote = FaultRemote::new(
                    bucket.clone(),
                    i,
                    root.clone(),
                    shared.clone(),
                    cfg.edit_during_download,
                );
                Client { name, generation: 0, root, repo: Some(repo), remote }
            })
            .collect();
        // Every deletion a user makes is meant: the mass-delete guard would only refuse them.
        let mut opts = SyncOptions::default();
        opts.max_delete = Some(usize::MAX);
        // One operation at a time, in plan order: the same seed, the same trace.
        opts.jobs = Some(1);
        opts.planted = cfg.planted;
        let folders = vec![BTreeMap::new(); cfg.clients];
        let mut w = Self { cfg: cfg.clone(), shared, bucket, clients, folders, opts, _tmp: tmp };
        let keep = w.lock().fresh("setup", None);
        write_file(&w.clients[0].root, KEEP, &keep, false);
        w.lock().trace_line(&format!("setup: {} clients, {:?} bucket", cfg.clients, cfg.backend));
        w.folders[0] = folder(&w.clients[0].root);
        // The others join on their first sync, in union mode.
        w.sync(0, &Faults::default(), 0);
        w
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().expect("no panic happens while the shared state is locked")
    }

    /// The trace so far.
    pub fn trace(&self) -> Vec<String> {
        self.lock().trace.clone()
    }

    /// The first violation seen, if any.
    pub fn violation(&self) -> Option<Violation> {
        self.lock().violations.first().cloned()
    }

    /// The bucket now: key → (ETag, bytes).
    fn bucket_state(&self) -> BTreeMap<String, (String, Vec<u8>)> {
        let (objs, _) = list_all(&*self.bucket, None).expect("list the bucket");
        objs.into_iter()
            .map(|o| {
                let mut b = Vec::new();
                self.bucket.get(&o.key, None, &mut b).expect("read the bucket");
                (o.key, (o.etag, b))
            })
            .collect()
    }

    /// Runs one step of the history.
    pub fn step(&mut self, index: usize, step: &Step) {
        self.lock().step = index;
        match step {
            Step::User { client, op, sel } => {
                let c = usize::from(*client) % self.clients.len();
                let mut rng = StdRng::seed_from_u64(*sel);
                let root = self.clients[c].root.clone();
                let name = self.clients[c].name.clone();
                {
                    let mut s = self.lock();
                    let line = s.user_op(&name, &root, *op, &mut rng);
                    s.trace_line(&format!("s{index} {line}"));
                }
                self.folders[c] = folder(&root);
            }
            // With merges on, half of these steps are edits at both ends of one note
            // instead (drawn from a stream of their own, so the step's choices stay).
            Step::Identical { a, b, sel }
                if self.cfg.merges && StdRng::seed_from_u64(*sel ^ 0x6d65_7267_6573).random_bool(0.5) =>
            {
                self.both_ends(index, *a, *b, *sel);
            }
            Step::Identical { a, b, sel } => self.identical(index, *a, *b, *sel),
            Step::Teammate { sel } => {
                let mut rng = StdRng::seed_from_u64(*sel);
                let bucket = self.bucket.clone();
                let mut s = self.lock();
                let line = s.teammate_race(&*bucket, None, &mut rng);
                s.trace_line(&format!("s{index} {line}"));
            }
            Step::Sync { client, faults, sel } => {
                let c = usize::from(*client) % self.clients.len();
                self.lock().trace_line(&format!(
                    "s{index} {} syncs{}",
                    self.clients[c].name,
                    describe(faults)
                ));
                self.sync(c, faults, *sel);
            }
            Step::LoseState { client } => self.lose_state(index, usize::from(*client) % self.clients.len()),
        }
        self.check_step();
    }

    /// The same edit made on two clients (identical changes must never conflict).
    fn identical(&mut self, index: usize, one: u8, other: u8, sel: u64) {
        let count = self.clients.len();
        let (a, b) = (usize::from(one) % count, usize::from(other) % count);
        if a == b {
            return;
        }
        let mut rng = StdRng::seed_from_u64(sel);
        let (ra, rb) = (self.clients[a].root.clone(), self.clients[b].root.clone());
        let (fa, fb) = (&self.folders[a], &self.folders[b]);
        let mut s = self.shared.lock().expect("no panic happens while the shared state is locked");
        let mut cands = s.candidates(fa);
        cands.extend(s.candidates(fb));
        let path = if !cands.is_empty() && rng.random_bool(0.7) {
            cands[rng.random_range(0..cands.len())].clone()
        } else {
            random_path(&mut rng, s.odd)
        };
        if in_the_way(&path, fa.keys().chain(fb.keys())) || blocked(&ra, &path) || blocked(&rb, &path) {
            s.trace_line(&format!("s{index} c{a} and c{b} do not write {path}: something is in the way"));
            return;
        }
        for f in [fa, fb] {
            if let Some(old) = f.get(&path) {
                s.kill(old);
            }
        }
        let v = s.fresh("both", None);
        s.versions.entry(v.clone()).or_default().writers += 1;
        write_file(&ra, &path, &v, writes_nfd(&self.clients[a].name));
        write_file(&rb, &path, &v, writes_nfd(&self.clients[b].name));
        for r in [&ra, &rb] {
            s.put_at(r, &path, &v);
            s.twins.insert((r.clone(), path.clone(), v.clone()));
        }
        s.trace_line(&format!("s{index} c{a} and c{b} both write {path} {}", short(&v)));
        drop(s);
        self.folders[a] = folder(&ra);
        self.folders[b] = folder(&rb);
    }

    /// Two clients add a line to one note they both hold, one at its top and the other
    /// at its end: edits the engine merges when both sync.
    fn both_ends(&mut self, index: usize, one: u8, other: u8, sel: u64) {
        let count = self.clients.len();
        let mut rng = StdRng::seed_from_u64(sel);
        let plain = |root: &Path, p: &str| std::fs::symlink_metadata(root.join(p)).is_ok_and(|m| m.is_file());
        let mut s = self.shared.lock().expect("no panic happens while the shared state is locked");
        // The first pair, from the one drawn on, that holds a note in common.
        let (start, step) = (usize::from(one) % count, 1 + usize::from(other) % (count - 1));
        let found = (0..count).find_map(|k| {
            let (a, b) = ((start + k) % count, (start + k + step) % count);
            let (ra, rb) = (&self.clients[a].root, &self.clients[b].root);
            let (fa, fb) = (&self.folders[a], &self.folders[b]);
            let common: Vec<String> = s
                .candidates(fa)
                .into_iter()
                .filter(|p| fb.get(p) == fa.get(p) && plain(ra, p) && plain(rb, p))
                .collect();
            (!common.is_empty()).then_some((a, b, common))
        });
        let Some((a, b, common)) = found else {
            s.trace_line(&format!("s{index} no two clients hold a note in common to edit"));
            return;
        };
        let (ra, rb) = (self.clients[a].root.clone(), self.clients[b].root.clone());
        let (na, nb) = (self.clients[a].name.clone(), self.clients[b].name.clone());
        let path = common[rng.random_range(0..common.len())].clone();
        let old = self.folders[a][&path].clone();
        s.kill(&old);
        let top = s.fresh_on_top(&na, &old);
        let end = s.fresh(&nb, Some(&old));
        write_file(&ra, &path, &top, writes_nfd(&na));
        write_file(&rb, &path, &end, writes_nfd(&nb));
        s.placed.retain(|(_, p, c)| !(*p == path && *c == old));
        s.put_at(&ra, &path, &top);
        s.put_at(&rb, &path, &end);
        s.touched.insert(path.clone());
        s.trace_line(&format!("s{index} {na} adds a line on top of {path}, {nb} one at its end"));
        drop(s);
        self.folders[a] = folder(&ra);
        self.folders[b] = folder(&rb);
    }

    /// A client loses `.bmsync/` and starts again from its folder (union mode).
    fn lose_state(&mut self, index: usize, c: usize) {
        let cl = &mut self.clients[c];
        cl.repo = None;
        std::fs::remove_dir_all(cl.root.join(".bmsync")).expect("remove .bmsync");
        cl.generation += 1;
        cl.name = format!("c{c}g{}", cl.generation);
        let opts = {
            let mut o = InitOptions::default();
            o.client_id = Some(cl.name.clone());
            o
        };
        cl.repo = Some(Repo::init(&cl.root, &opts).expect("re-init a client"));
        let held: Vec<Vec<u8>> = folder(&self.clients[c].root)
            .into_values()
            .chain(self.bucket_state().into_values().map(|(_, b)| b))
            .collect();
        let mut s = self.lock();
        s.unioned.extend(held);
        for d in &mut s.deletes {
            if !d.settled {
                d.seen.remove(&c);
            }
        }
        s.trace_line(&format!(
            "s{index} c{c} loses its state and re-initialises as {}",
            self.clients[c].name
        ));
    }

    fn sync(&mut self, c: usize, faults: &Faults, sel: u64) -> Ended {
        let before = std::mem::take(&mut self.folders[c]);
        let disturbed = *faults != Faults::default();
        let bucket_before: BTreeMap<String, Vec<u8>> = if disturbed {
            self.bucket_state().into_iter().map(|(k, (_, b))| (k, b)).collect()
        } else {
            BTreeMap::new()
        };
        let repo = self.clients[c].repo.as_ref().expect("the client is open");
        let base_before = (read_base(repo).0, base_lineage(repo).map(|l| l.0), base_kinds(repo));
        {
            let mut s = self.lock();
            s.touched.clear();
            s.recorded.clear();
        }
        // Conflict copies are named by the step, not the wall clock: the same seed, the
        // same names.
        let step = self.lock().step;
        let opts = {
            let mut o = self.opts.clone();
            o.conflict_stamp = Some(format!("20260101T{step:06}"));
            o
        };
        let cl = &mut self.clients[c];
        cl.remote.arm(faults.clone(), StdRng::seed_from_u64(sel));
        let repo = cl.repo.as_ref().expect("the client is open");
        let r = catch_unwind(AssertUnwindSafe(|| sync(repo, &cl.remote, &opts)));
        cl.remote.disarm();
        let ended = match r {
            Ok(Ok(s)) => Ended::Ok(Box::new(s)),
            Ok(Err(e)) => Ended::Failed(error_kind(&e)),
            Err(p) if p.is::<SimCrash>() => {
                // kill -9: nothing more of this engine runs; restart from the store.
                cl.repo = None;
                cl.repo = Some(Repo::open(&cl.root).expect("reopen the store after a crash"));
                Ended::Crashed
            }
            Err(p) => std::panic::resume_unwind(p),
        };
        let line = match &ended {
            Ended::Ok(s) => {
                let conflicts: Vec<String> =
                    s.conflicts.iter().map(|r| format!("{}:{:?}", r.path, r.reason)).collect();
                format!(
                    "    -> ok: up {} down {} del-local {} del-remote {} recorded {} rounds {} merged {} conflicts {conflicts:?} raced {:?}",
                    s.uploaded,
                    s.downloaded,
                    s.deleted_local,
                    s.deleted_remote,
                    s.recorded,
                    s.rounds,
                    s.merged.len(),
                    s.raced
                )
            }
            Ended::Failed(k) => format!("    -> failed: {k}"),
            Ended::Crashed => "    -> crashed; restarted from the store".to_owned(),
        };
        self.lock().trace_line(&line);
        if disturbed || !matches!(ended, Ended::Ok(_)) {
            // What a sync a fault interrupted or raced moved may be left at two paths
            // for good (a download a teammate's deletion overtook, a copy whose delete
            // never ran): never lost, and exempt from invariant 9.
            let now = folder(&self.clients[c].root);
            let bucket_now: BTreeMap<String, Vec<u8>> =
                self.bucket_state().into_iter().map(|(k, (_, b))| (k, b)).collect();
            let moved: Vec<Vec<u8>> = now
                .iter()
                .filter(|(p, v)| before.get(*p) != Some(*v))
                .chain(bucket_now.iter().filter(|(p, v)| bucket_before.get(*p) != Some(*v)))
                .map(|(_, v)| v.clone())
                .collect();
            self.lock().unioned.extend(moved);
        }
        self.after_sync(c, &before, &base_before, &ended);
        ended
    }

    /// Invariants 1 (locally), 3 (who saw a deletion), 4 and 5, right after a sync.
    fn after_sync(
        &mut self,
        c: usize,
        before: &BTreeMap<String, Vec<u8>>,
        (base_before, base_id_before, kinds_before): &(
            Entries,
            Option<ObjectId>,
            BTreeMap<String, bmsync::EntryKind>,
        ),
        ended: &Ended,
    ) {
        let cl = &self.clients[c];
        let after = folder(&cl.root);
        self.folders[c].clone_from(&after);
        let bucket = self.bucket_state();
        let repo = cl.repo.as_ref().expect("the client is open");
        let (manifest, leaves) = read_base(repo);
        // What the last record of this sync added, against the base it planned on.
        let lineage = base_lineage(repo).filter(|l| Some(l.0) != *base_id_before);
        let claimed = lineage.map(|(_, parent, snapshot)| {
            let prev = parent.map(|p| read_commit(repo, p).0).unwrap_or_default();
            (prev, snapshot)
        });
        let name = cl.name.clone();
        let n_clients = self.clients.len();
        let mut s = self.lock();
        // 1: the engine removes a version from a folder only when a user replaced or
        // deleted it, or the bucket no longer holds it there.
        let now: HashSet<&Vec<u8>> = after.values().collect();
        for (p, v) in before {
            if s.ignored(p) || now.contains(v) || s.versions.get(v).is_none_or(|i| i.killed) {
                continue;
            }
            if bucket.get(p).is_some_and(|(_, b)| b == v) {
                s.violate(1, format!("{name} lost {p} {} from its folder though no one replaced or deleted it and the bucket still holds it", short(v)));
            }
        }
        // 5: every base entry names a write the bucket really took, with that content,
        // and the tree agrees with the manifest.
        for (p, (etag, content)) in &manifest {
            let logged = s.log.get(&(p.clone(), etag.clone())).copied();
            if content.is_none() || logged != *content {
                s.violate(5, format!("{name}'s base claims {p} synced at ETag {etag}, which the bucket never held with that content"));
            }
            if leaves.get(p) != content.as_ref() {
                s.violate(5, format!("{name}'s base tree and manifest disagree on {p}"));
            }
        }
        for p in leaves.keys() {
            if !manifest.contains_key(p) {
                s.violate(5, format!("{name}'s base tree has {p}, its manifest does not"));
            }
        }
        // 5: what the new base newly claims, the folder held when it was recorded.
        if let Some((prev, snapshot)) = claimed {
            // Without a snapshot (the one after apply failed), the base was recorded as
            // the sync ended: compare with the folder now.
            let at = match snapshot {
                Some(v) => s.recorded.get(&v).cloned(),
                None => Some((after.clone(), s.touched.clone())),
            };
            match at {
                None => s.violate(5, format!("{name}'s base moved without a recording snapshot")),
                Some((then, touched)) => {
                    for (p, (etag, content)) in &manifest {
                        let new = prev.get(p) != Some(&(etag.clone(), *content));
                        let local = then.get(p).map(|b| ObjectId::for_blob(b));
                        if new && !touched.contains(p) && local != *content {
                            s.violate(
                                5,
                                format!(
                                    "{name}'s base claims {p} synced, but the folder did not hold that content when it was recorded"
                                ),
                            );
                        }
                    }
                }
            }
        }
        if let Ended::Ok(summary) = ended {
            // 4: a conflict copy holds the local version, the path the remote one; they
            // differ, and neither is the base's.
            // (A file key moved aside from beside a folder of its name is no edit conflict.)
            for r in
                summary.conflicts.iter().filter(|r| r.reason != bmsync::reconcile::Reason::RemoteKeyCollision)
            {
                let Some(copy) = &r.local_copy else { continue };
                // A version is its bytes and its kind (a change of mode alone is a change).
                let kinds_now = kinds(&cl.root);
                let kind = |p: &String| kinds_now.get(p).copied();
                let (l, rm) = (
                    after.get(copy).map(|b| (b, kind(copy))),
                    after.get(&r.path).map(|b| (b, kind(&r.path))),
                );
                if let (Some(l), Some(rm)) = (l, rm)
                    && l == rm
                {
                    s.violate(4, format!("{name}: identical versions of {} conflicted", r.path));
                }
                let base = base_before.get(&r.path).and_then(|(_, c)| *c);
                let base_kind = kinds_before.get(&r.path).copied();
                for (side, side_kind) in [l, rm].into_iter().flatten() {
                    if base.is_some() && Some(ObjectId::for_blob(side)) == base && side_kind == base_kind {
                        s.violate(
                            4,
                            format!("{name}: {} conflicted though one side was unchanged since base", r.path),
                        );
                    }
                }
            }
            // 3: this client has now seen these deletions.
            for d in &mut s.deletes {
                if !d.settled
                    && !bucket.contains_key(&d.path)
                    && !after.contains_key(&d.path)
                    && !manifest.contains_key(&d.path)
                {
                    d.seen.insert(c);
                    d.settled = d.seen.len() == n_clients;
                }
            }
        }
    }

    /// Invariants checked after every step: 1, 3, 6 and 7.
    fn check_step(&self) {
        let bucket = self.bucket_state();
        let folders: Vec<(&String, &BTreeMap<String, Vec<u8>>)> =
            self.clients.iter().map(|c| &c.name).zip(&self.folders).collect();
        let mut s = self.lock();
        // 7: nothing ignored in the bucket.
        for k in bucket.keys() {
            if s.ignored(k) {
                s.violate(7, format!("the ignored path {k} is in the bucket"));
            }
        }
        // 6: every file holds a whole version (or a clean merge of versions); no
        // temporary file is left.
        for (name, files) in folders.iter().copied() {
            for (p, v) in files {
                let file = p.rsplit('/').next().unwrap_or(p);
                if file.starts_with(".bmsync-") {
                    s.violate(6, format!("{name} has a leftover temporary file {p}"));
                } else if !s.ignored(p) && !s.versions.contains_key(v) && !s.admit_merge(v) {
                    s.violate(6, format!("{name}'s {p} holds content no one wrote (torn?): {}", short(v)));
                }
            }
        }
        // 1: every version no user replaced is somewhere.
        let mut somewhere: HashSet<&Vec<u8>> = bucket.values().map(|(_, b)| b).collect();
        for (_, files) in &folders {
            somewhere.extend(files.iter().filter(|(p, _)| !s.ignored(p)).map(|(_, v)| v));
        }
        let mut lost: Vec<String> = s
            .versions
            .iter()
            .filter(|(v, i)| !i.killed && !somewhere.contains(v))
            .map(|(v, _)| short(v))
            .collect();
        lost.sort();
        if !lost.is_empty() {
            s.violate(1, format!("lost versions, replaced or deleted by no user: {}", lost.join(", ")));
        }
        // 3: a deletion every client saw stays deleted. Until all have seen it, it may
        // come back legitimately (a client that edited it never saw it): then every
        // client must see it again.
        let mut back = Vec::new();
        for d in &mut s.deletes {
            let in_bucket = bucket.get(&d.path).is_some_and(|(_, b)| *b == d.content);
            let in_folder = folders.iter().any(|(_, f)| f.get(&d.path) == Some(&d.content));
            if !(in_bucket || in_folder) {
                continue;
            }
            if d.settled {
                back.push(format!("{} {}", d.path, short(&d.content)));
            } else {
                d.seen.clear();
            }
        }
        for b in back {
            s.violate(3, format!("{b} came back after every client saw it deleted"));
        }
    }

    /// The quiescent phase: no faults, no users; every client syncs until its plans are
    /// empty, within a bounded number of passes. Then invariant 2, and the final state
    /// goes in the trace.
    pub fn finish(&mut self) {
        self.lock().trace_line("quiescent phase");
        let mut quiet = false;
        for _ in 0..QUIESCENT_PASSES {
            for c in 0..self.clients.len() {
                if let Ended::Failed(k) = self.sync(c, &Faults::default(), 0) {
                    self.lock()
                        .violate(2, format!("{} failed to sync with no faults: {k}", self.clients[c].name));
                }
            }
            if self.violation().is_some() {
                return;
            }
            quiet = self.clients.iter().all(|c| {
                let repo = c.repo.as_ref().expect("the client is open");
                make_plan(repo, &c.remote, &self.opts, true).is_ok_and(|p| p.plan.is_empty())
            });
            if quiet {
                break;
            }
        }
        self.check_step();
        let bucket = self.bucket_state();
        let bucket_kinds: BTreeMap<String, bmsync::EntryKind> = bucket
            .keys()
            .map(|k| {
                let kind =
                    self.bucket.head(k, None).ok().and_then(|i| i.kind).unwrap_or(bmsync::EntryKind::File);
                (k.clone(), kind)
            })
            .collect();
        let mut s = self.lock();
        if !quiet {
            s.violate(2, format!("plans not empty after {QUIESCENT_PASSES} quiescent syncs per client"));
        }
        for c in &self.clients {
            let files: BTreeMap<String, Vec<u8>> =
                folder(&c.root).into_iter().filter(|(p, _)| !s.ignored(p)).collect();
            let want: BTreeMap<String, Vec<u8>> =
                bucket.iter().map(|(k, (_, b))| (k.clone(), b.clone())).collect();
            if files != want {
                let only_here: Vec<&String> =
                    files.keys().filter(|k| want.get(*k) != files.get(*k)).collect();
                let only_there: Vec<&String> =
                    want.keys().filter(|k| want.get(*k) != files.get(*k)).collect();
                s.violate(2, format!("{} differs from the bucket: {only_here:?} vs {only_there:?}", c.name));
            }
            let here: BTreeMap<String, bmsync::EntryKind> =
                kinds(&c.root).into_iter().filter(|(p, _)| !s.ignored(p)).collect();
            if files == want && here != bucket_kinds {
                let differ: Vec<&String> =
                    here.keys().filter(|k| here.get(*k) != bucket_kinds.get(*k)).collect();
                s.violate(
                    2,
                    format!(
                        "{}'s files differ from the bucket in kind (executable, symlink): {differ:?}",
                        c.name
                    ),
                );
            }
            let (manifest, leaves) = read_base(c.repo.as_ref().expect("the client is open"));
            let base: BTreeMap<String, (String, Option<ObjectId>)> = bucket
                .iter()
                .map(|(k, (e, b))| (k.clone(), (e.clone(), Some(ObjectId::for_blob(b)))))
                .collect();
            let tree: BTreeMap<String, ObjectId> =
                want.iter().map(|(k, b)| (k.clone(), ObjectId::for_blob(b))).collect();
            if manifest != base || leaves != tree {
                s.violate(2, format!("{}'s base does not equal the bucket", c.name));
            }
        }
        // 9: once all is synced, no content sits at two paths unless users put it at
        // both (a rename is never a copy). Conflict copies are the engine's on purpose;
        // a client that lost its state unions what it held with the bucket, by design.
        let mut at: HashMap<&Vec<u8>, Vec<&String>> = HashMap::new();
        for (p, (_, v)) in &bucket {
            if !p.contains(".conflict-") && s.versions.contains_key(v) && !s.unioned.contains(v) {
                at.entry(v).or_default().push(p);
            }
        }
        let mut twins: Vec<String> = Vec::new();
        for (v, paths) in at.into_iter().filter(|(_, ps)| ps.len() > 1) {
            let extra: Vec<&&String> = paths.iter().filter(|p| !s.put_by_someone(p, v)).collect();
            if !extra.is_empty() {
                let all: Vec<&str> = paths.iter().map(|p| p.as_str()).collect();
                twins.push(format!("{} at {} (no user put it at {extra:?})", short(v), all.join(", ")));
            }
        }
        twins.sort();
        for t in twins {
            s.violate(9, format!("the synced state holds one content at two paths: {t}"));
        }
        s.trace_line(&format!("final: {} objects", bucket.len()));
        for (k, (_, b)) in &bucket {
            s.trace_line(&format!("  {k} {}", short(b)));
        }
    }

    /// The seed's configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
}

fn describe(f: &Faults) -> String {
    if f.is_empty() {
        return String::new();
    }
    let mut parts = Vec::new();
    if let Some(k) = f.crash_at {
        parts.push(format!("crash@{k}{}", if f.crash_after { "+" } else { "" }));
    }
    if let Some((k, kind)) = f.fail_at {
        parts.push(format!("{kind:?}@{k}"));
    }
    if let Some(l) = f.list {
        parts.push(format!("list:{l:?}"));
    }
    if let Some(k) = f.teammate_at {
        parts.push(format!("teammate@{k}"));
    }
    if let Some(w) = f.local_change {
        parts.push(format!("local-change:{w:?}"));
    }
    format!(" [{}]", parts.join(" "))
}
