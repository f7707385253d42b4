//! The scanner: walks the folder in parallel and builds its Merkle tree bottom-up,
//! trusting the stat cache where it safely can. It is long because the walk, the
//! cached-listing fast path and the store writer share one set of invariants (the racy
//! rules in `format-spec/store.md`), which are easier to check read together.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};

use rayon::prelude::*;
use unicode_normalization::UnicodeNormalization;

use super::ignore::IgnoreRules;
use super::stat_cache::{Child, ChildRef, DirRecord, DirStat, RecordView, Stat};
use super::{Collision, CollisionKind, ScanError, ScanOptions, ScanReport, ScanStats, Skipped, Snapshot};
use crate::id::{ObjectHasher, ObjectId, ObjectKind};
use crate::layout::{STAMP_FILE, STATE_DIR};
use crate::object::{EntryKind, Tree, TreeEntry, check_name, entry_order, join_path};
use crate::store::{self, CHUNK_SIZE, Prepared, Store, StoreError};

/// Meta key: the filesystem time at which the scan that wrote the stat cache started
/// (i64 LE nanoseconds). Files modified at or after it are re-hashed ("racy" entries).
pub const META_WORKTREE_STAMP: &str = "worktree-stamp";
/// Meta key: the digest of the ignore rules (`IgnoreRules::digest`) the stat cache's
/// folder listings were filtered by. Under other rules no cached listing is trusted.
pub const META_WORKTREE_RULES: &str = "worktree-rules";
/// How often a file that changes while it is read is retried before giving up.
const READ_ATTEMPTS: usize = 3;

type Result<T, E = ScanError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ScanError + '_ {
    move |source| ScanError::Io { path: path.to_owned(), source }
}

/// Writes the scan sends to the one thread that owns the store transaction.
enum Msg {
    Object(Prepared),
    Large(ObjectKind, Vec<u8>),
    LargeBlob(PathBuf, ObjectId),
    Record(String, Option<Vec<u8>>),
    /// Several of the above, in order: one hand-off per folder (or per few dozen
    /// objects), not one per file.
    Many(Vec<Msg>),
}

/// Messages queued by one folder's scan, sent together.
type Out = Vec<Msg>;
/// Queued messages are sent once there are this many...
const OUT_MSGS: usize = 64;
/// ...or once they hold this many bytes.
const OUT_BYTES: usize = 8 << 20;
/// The writer commits its transaction once this much has gone into it, and opens a
/// new one, so that a long first commit keeps what it stored if it is cut short. Memory
/// does not depend on it (redb writes a transaction's pages out as its cache fills).
/// Large, because each transaction costs a durable flush and, object ids being random,
/// makes the next one copy nearly every page it touches: on 100,000 files (275 MB of
/// rows) one transaction instead of four of 64 MiB left a 680 MB file instead of 880 MB.
/// (Unit tests use a small bound, so that their scans go through several transactions.)
const BATCH_BYTES: usize = if cfg!(test) { 4096 } else { 1 << 30 };

struct Scanner<'a> {
    root: &'a Path,
    rules: IgnoreRules,
    records: &'a store::WorktreeReader,
    /// Folders visited that have a record: when that is all of them, none is stale.
    with_record: AtomicU64,
    /// Entries with an mtime before this are trusted on a stat match.
    trusted_before: Option<i64>,
    /// Whether a cached listing may stand in for `readdir`: the ignore rules are the ones
    /// the cached listings were filtered by.
    trust_listings: bool,
    store_blobs: bool,
    dry_run: bool,
    unstored: Mutex<HashMap<ObjectId, Vec<u8>>>,
    tx: SyncSender<Msg>,
    report: Mutex<ScanReport>,
    visited: Mutex<HashSet<String>>,
    disk_names: Mutex<BTreeMap<String, String>>,
    racy: AtomicBool,
    files: AtomicU64,
    dirs: AtomicU64,
    listed: AtomicU64,
    hashed: AtomicU64,
    hashed_bytes: AtomicU64,
    reused_trees: AtomicU64,
}

/// What the stat cache's listing of a folder gave.
enum Unlisted {
    /// Trusted: the folder's tree (or `None`, not kept), as `scan_dir` returns it.
    Done(Option<(ObjectId, u64)>),
    /// Not trusted: list the folder.
    List,
}

/// One entry of a folder as listed, before it is classified.
struct DirItem {
    name: String,
    os_name: OsString,
    /// lstat data for files and symlinks, taken relative to the open folder (no path
    /// walk per file, which dominates a no-change scan otherwise).
    meta: Option<Metadata>,
}

fn time_ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

fn stat_of(m: &Metadata) -> Stat {
    Stat {
        size: m.len(),
        mtime_ns: time_ns(m.mtime(), m.mtime_nsec()),
        ctime_ns: time_ns(m.ctime(), m.ctime_nsec()),
        ino: m.ino(),
        mode: m.mode(),
    }
}

/// Stat data from a raw `stat` (field types differ between targets, hence the
/// conversions that are no-ops on some).
#[allow(clippy::useless_conversion, clippy::unnecessary_fallible_conversions)]
fn stat_of_raw(st: &rustix::fs::Stat) -> Stat {
    let ns = |secs, nsec| time_ns(i64::from(secs), i64::try_from(nsec).unwrap_or(0));
    Stat {
        size: u64::try_from(st.st_size).unwrap_or(u64::MAX),
        mtime_ns: ns(st.st_mtime, st.st_mtime_nsec),
        ctime_ns: ns(st.st_ctime, st.st_ctime_nsec),
        ino: u64::from(st.st_ino),
        mode: u32::from(st.st_mode),
    }
}

fn dir_stat_of(s: &Stat) -> DirStat {
    DirStat { mtime_ns: s.mtime_ns, ctime_ns: s.ctime_ns, ino: s.ino }
}

/// Opens a folder for reading its entries' stat data relative to it (one name to look
/// up per file, not a path). Below the root, a symlink is never followed.
fn open_dir(abs: &Path, follow: bool) -> Result<(rustix::fd::OwnedFd, DirStat)> {
    use rustix::fs::OFlags;
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    let fd = rustix::fs::open(abs, flags, rustix::fs::Mode::empty()).map_err(|e| io_err(abs)(e.into()))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| io_err(abs)(e.into()))?;
    Ok((fd, dir_stat_of(&stat_of_raw(&st))))
}

fn kind_of(m: &Metadata) -> Option<EntryKind> {
    let ft = m.file_type();
    if ft.is_symlink() {
        Some(EntryKind::Symlink)
    } else if ft.is_file() {
        Some(if m.mode() & 0o111 != 0 { EntryKind::Executable } else { EntryKind::File })
    } else if ft.is_dir() {
        Some(EntryKind::Tree)
    } else {
        None
    }
}

/// Scans the folder at `root` into a [`Snapshot`], storing every tree (and, with
/// `store_blobs`, every blob) and updating the stat cache, all in one transaction.
pub fn scan(root: &Path, store: &Store, opts: &ScanOptions) -> Result<Snapshot> {
    let rules = IgnoreRules::load(root, &opts.global_ignore_files)?;
    let digest = rules.digest();
    let (records, trusted_before, rules_changed) = cache_state(store, &digest)?;
    // A dry run commits nothing, so it needs no stamp, and leaves the stamp file alone.
    let stamp = if opts.dry_run { None } else { Some(take_stamp(root)?) };
    // Each message is a folder's worth (up to OUT_BYTES): a short queue bounds memory.
    let (tx, rx) = sync_channel::<Msg>(8);
    let ctx = Scanner {
        root,
        rules,
        records: &records,
        with_record: AtomicU64::new(0),
        trusted_before,
        trust_listings: !rules_changed,
        store_blobs: opts.store_blobs && !opts.dry_run,
        dry_run: opts.dry_run,
        unstored: Mutex::default(),
        tx,
        report: Mutex::default(),
        visited: Mutex::default(),
        disk_names: Mutex::default(),
        racy: AtomicBool::new(false),
        files: AtomicU64::new(0),
        dirs: AtomicU64::new(0),
        listed: AtomicU64::new(0),
        hashed: AtomicU64::new(0),
        hashed_bytes: AtomicU64::new(0),
        reused_trees: AtomicU64::new(0),
    };
    std::thread::scope(|s| {
        let walker = s.spawn(move || {
            let res = ctx.scan_root(root);
            // Dropping the context closes the channel, which ends the writer loop.
            let Scanner {
                report,
                visited,
                racy,
                files,
                dirs,
                listed,
                hashed,
                hashed_bytes,
                reused_trees,
                unstored,
                disk_names,
                with_record,
                ..
            } = ctx;
            let stats = ScanStats {
                files: files.into_inner(),
                dirs: dirs.into_inner(),
                listed_dirs: listed.into_inner(),
                hashed: hashed.into_inner(),
                hashed_bytes: hashed_bytes.into_inner(),
                reused_trees: reused_trees.into_inner(),
                stored_blobs: 0,
            };
            let report = report.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
            let visited = visited.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
            let unstored = unstored.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
            let disk_names = disk_names.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
            let with_record = with_record.into_inner();
            (res, report, visited, racy.into_inner(), stats, unstored, disk_names, with_record)
        });
        let mut batch = None;
        let mut stored_blobs = 0;
        let written = write_loop(store, &rx, &mut batch, &mut stored_blobs, rules_changed);
        // On a writer error, hang up so the walker stops at its next send.
        drop(rx);
        let (res, mut report, visited, racy, mut stats, unstored, disk_names, with_record) =
            walker.join().expect("the scan walker does not panic");
        written?;
        let (root_id, size) = res?;
        stats.stored_blobs = stored_blobs;
        report.skipped.sort_by(|a, b| a.path.cmp(&b.path));
        report.collisions.sort_by(|a, b| a.paths.cmp(&b.paths));
        // Rows of folders this scan did not visit (gone, renamed, now ignored).
        let stale: Vec<String> = if with_record == records.len() {
            Vec::new()
        } else {
            records.dirs()?.into_iter().filter(|k| !visited.contains(k)).collect()
        };
        let unstored_trees = decode_unstored(unstored)?;
        if opts.dry_run {
            return Ok(Snapshot { root: root_id, size, report, stats, unstored_trees, disk_names });
        }
        if batch.is_some() || racy || !stale.is_empty() || rules_changed {
            let b = match batch.take() {
                Some(b) => b,
                None => store.batch()?,
            };
            for k in &stale {
                b.set_worktree_record(k, None)?;
            }
            let stamp = stamp.expect("a scan that is not a dry run takes its stamp");
            b.set_meta(META_WORKTREE_STAMP, &stamp.to_le_bytes())?;
            // Every listing this scan left in the cache was filtered (or, trusted, was
            // already filtered) by these rules.
            b.set_meta(META_WORKTREE_RULES, &digest)?;
            b.commit()?;
        }
        Ok(Snapshot { root: root_id, size, report, stats, unstored_trees, disk_names })
    })
}

/// The trees a dry run did not store, decoded.
fn decode_unstored(unstored: HashMap<ObjectId, Vec<u8>>) -> Result<HashMap<ObjectId, Tree>> {
    unstored
        .into_iter()
        .map(|(id, bytes)| {
            let tree = Tree::decode(&bytes)
                .map_err(|e| StoreError::Invalid { kind: ObjectKind::Tree, source: e })?;
            Ok((id, tree))
        })
        .collect()
}

/// What the last scan that wrote the stat cache left: its records, the trust bound (its
/// stamp), and whether the ignore rules differ from the ones its listings followed.
fn cache_state(store: &Store, digest: &[u8; 32]) -> Result<(store::WorktreeReader, Option<i64>, bool)> {
    let records = store.worktree_reader(&[META_WORKTREE_STAMP, META_WORKTREE_RULES])?;
    let [stamp_prev, rules_prev] = records.meta() else { unreachable!("two keys asked, two values") };
    let trusted_before = stamp_prev
        .as_deref()
        .and_then(|v| <[u8; 8]>::try_from(v).ok())
        .map(i64::from_le_bytes)
        .filter(|_| !records.is_empty());
    let rules_changed = rules_prev.as_deref() != Some(digest.as_slice());
    Ok((records, trusted_before, rules_changed))
}

fn write_loop<'s>(
    store: &'s Store,
    rx: &std::sync::mpsc::Receiver<Msg>,
    batch: &mut Option<store::Batch<'s>>,
    stored_blobs: &mut u64,
    rules_changed: bool,
) -> Result<()> {
    let mut written = 0;
    for msg in rx {
        write_msg(store, msg, batch, stored_blobs, &mut written)?;
        if written >= BATCH_BYTES {
            // Objects (and records, which only follow the objects they name: each
            // folder's messages come after its files' and its subfolders') become
            // durable now. The stamp waits for the last transaction: an older stamp only
            // trusts less. Until then, no cached listing is trusted if the rules changed.
            let b = batch.take().expect("something was written into it");
            if rules_changed {
                b.set_meta(META_WORKTREE_RULES, b"")?;
            }
            b.commit()?;
            // The last transaction, whatever it holds, sets the stamp.
            *batch = Some(store.batch()?);
            written = 0;
        }
    }
    Ok(())
}

fn write_msg<'s>(
    store: &'s Store,
    msg: Msg,
    batch: &mut Option<store::Batch<'s>>,
    stored_blobs: &mut u64,
    written: &mut usize,
) -> Result<()> {
    if batch.is_none() {
        *batch = Some(store.batch()?);
    }
    let b = batch.as_ref().expect("set just above");
    match msg {
        Msg::Many(msgs) => {
            for m in msgs {
                write_msg(store, m, batch, stored_blobs, written)?;
            }
        }
        Msg::Object(p) => {
            let new = b.put_prepared(&p)?;
            *stored_blobs += u64::from(new && p.kind() == ObjectKind::Blob);
            *written += p.len();
        }
        Msg::Large(kind, bytes) => {
            let (_, new) = b.put(kind, &bytes)?;
            *stored_blobs += u64::from(new && kind == ObjectKind::Blob);
            *written += bytes.len();
        }
        Msg::LargeBlob(path, id) => {
            let mut f = File::open(&path).map_err(io_err(&path))?;
            match b.put_blob_from_reader(id, &mut f) {
                Ok((n, new)) => {
                    *stored_blobs += u64::from(new);
                    *written += usize::try_from(n).unwrap_or(usize::MAX);
                }
                Err(StoreError::BlobChanged { .. }) => return Err(ScanError::Unstable { path }),
                Err(e) => return Err(e.into()),
            }
        }
        Msg::Record(dir, value) => {
            *written += value.as_ref().map_or(0, Vec::len);
            b.set_worktree_record(&dir, value.as_deref())?;
        }
    }
    Ok(())
}

/// Touches the stamp file and returns its mtime: "now" on the filesystem's clock, which
/// is the clock file mtimes come from.
fn take_stamp(root: &Path) -> Result<i64> {
    let path = root.join(STATE_DIR).join(STAMP_FILE);
    fs::write(&path, b"").map_err(io_err(&path))?;
    let m = fs::metadata(&path).map_err(io_err(&path))?;
    Ok(time_ns(m.mtime(), m.mtime_nsec()))
}

impl Msg {
    /// Bytes held (roughly), for bounding what is queued.
    fn len(&self) -> usize {
        match self {
            Msg::Object(p) => p.len(),
            Msg::Large(_, b) => b.len(),
            Msg::LargeBlob(..) => 0,
            Msg::Record(_, v) => v.as_ref().map_or(0, Vec::len),
            Msg::Many(m) => m.iter().map(Msg::len).sum(),
        }
    }
}

impl Scanner<'_> {
    /// Queues a message for the writer; sends the queue when it is long enough.
    fn send(&self, out: &mut Out, msg: Msg) -> Result<()> {
        if self.dry_run {
            return Ok(());
        }
        out.push(msg);
        let bytes: usize = out.iter().map(Msg::len).sum();
        if out.len() >= OUT_MSGS || bytes >= OUT_BYTES { self.flush(out) } else { Ok(()) }
    }

    /// Sends what is queued. Each folder flushes before it returns, so a record always
    /// reaches the writer after every object it names.
    fn flush(&self, out: &mut Out) -> Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        // The writer hung up: it failed, and its error is the one reported.
        self.tx.send(Msg::Many(std::mem::take(out))).map_err(|_| ScanError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other("the store writer stopped"),
        })
    }

    fn skip(&self, path: String, reason: &str) {
        self.report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .skipped
            .push(Skipped { path, reason: reason.to_owned() });
    }

    fn put_object(&self, out: &mut Out, kind: ObjectKind, bytes: Vec<u8>) -> Result<ObjectId> {
        if self.dry_run {
            let id = ObjectId::hash(kind, &bytes);
            if kind == ObjectKind::Tree {
                self.unstored.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, bytes);
            }
            return Ok(id);
        }
        if bytes.len() > CHUNK_SIZE {
            let id = ObjectId::hash(kind, &bytes);
            self.send(out, Msg::Large(kind, bytes))?;
            Ok(id)
        } else {
            let p = store::prepare(kind, &bytes)?;
            let id = p.id;
            self.send(out, Msg::Object(p))?;
            Ok(id)
        }
    }

    fn scan_root(&self, root: &Path) -> Result<(ObjectId, u64)> {
        if let Some(x) = self.scan_dir("", root)? {
            return Ok(x);
        }
        let mut out = Out::new();
        let id = self.put_object(&mut out, ObjectKind::Tree, Tree::default().encode())?;
        self.flush(&mut out)?;
        Ok((id, 0))
    }

    /// Scans one folder; `None` if nothing in it is synced (empty folders are not kept).
    fn scan_dir(&self, rel: &str, abs: &Path) -> Result<Option<(ObjectId, u64)>> {
        self.dirs.fetch_add(1, Ordering::Relaxed);
        self.visited.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(rel.to_owned());
        let guard = self.records.get(rel)?;
        let old_bytes = guard.as_ref().map(redb::AccessGuard::value);
        self.with_record.fetch_add(u64::from(old_bytes.is_some()), Ordering::Relaxed);
        let old = old_bytes.and_then(RecordView::parse);
        // The folder's stat comes before its listing: a change during the listing then
        // leaves the recorded stat older than the folder, and the next scan lists again.
        let (fd, now) = open_dir(abs, rel.is_empty())?;
        // (The folder is closed before its subfolders are opened, either way.)
        let unlisted = if let Some(o) = &old {
            self.scan_unlisted(rel, abs, fd, now, o, old_bytes)?
        } else {
            drop(fd);
            Unlisted::List
        };
        if let Unlisted::Done(done) = unlisted {
            return Ok(done);
        }
        self.listed.fetch_add(1, Ordering::Relaxed);
        let (kids, clean) = self.list_dir(rel, abs)?;
        let old_children: HashMap<&str, ChildRef<'_>> =
            old.iter().flat_map(RecordView::children).map(|c| (c.name, c)).collect();
        let scan = |k: &DirItem, out: &mut Out| {
            self.scan_child(rel, abs, k, old_children.get(k.name.as_str()).copied(), out)
        };
        // Folders fan out across threads; files were stat'ed with the listing, so most of
        // them cost a lookup and are cheaper to do in line than to schedule.
        let (dirs, files): (Vec<&DirItem>, Vec<&DirItem>) = kids.iter().partition(|k| k.meta.is_none());
        let sub: Vec<Result<Option<Child>>> = dirs
            .par_iter()
            .map(|k| {
                // A folder flushes its own; this catches one that turned into a file.
                let mut out = Out::new();
                let r = scan(k, &mut out);
                self.flush(&mut out)?;
                r
            })
            .collect();
        let mut out = Out::new();
        let mut children = Vec::with_capacity(kids.len());
        for k in files {
            children.extend(scan(k, &mut out)?);
        }
        for r in sub {
            children.extend(r?);
        }
        // The listing can stand in for `readdir` next time only if it is all there is:
        // nothing reported, renamed or left out (an empty folder, a link not followed),
        // since those are found again only by listing.
        let complete = clean
            && children.len() == kids.len()
            && children.iter().all(|c| c.entry.kind != EntryKind::Symlink);
        let r = self.finish_dir(rel, old.as_ref(), old_bytes, children, complete.then_some(now), &mut out)?;
        self.flush(&mut out)?;
        Ok(r)
    }

    /// The stat cache's listing of a folder in place of `readdir`, when the folder is as
    /// the cache saw it (same mtime, ctime and inode: nothing was added, removed or
    /// renamed in it) and that was before the last scan began (git's racy-timestamp rule,
    /// applied to the folder). Each file is still stat'ed by name, relative to the open
    /// folder. `None` when the cache cannot be trusted here, or a file in it changed: the
    /// caller then lists the folder.
    fn scan_unlisted(
        &self,
        rel: &str,
        abs: &Path,
        fd: rustix::fd::OwnedFd,
        now: DirStat,
        old: &RecordView<'_>,
        old_bytes: Option<&[u8]>,
    ) -> Result<Unlisted> {
        if !self.trust_listings || old.listing != Some(now) {
            return Ok(Unlisted::List);
        }
        if self.trusted_before.is_none_or(|t| now.mtime_ns >= t) {
            // Changed too close to the last scan to trust; listed now, and the stamp
            // moves on, so that the next scan can trust it.
            self.racy.store(true, Ordering::Relaxed);
            return Ok(Unlisted::List);
        }
        let mut subdirs = Vec::new();
        let mut files = 0;
        for c in old.children() {
            if c.kind.is_tree() {
                subdirs.push(c);
                continue;
            }
            if c.kind == EntryKind::Symlink || (self.store_blobs && !c.stored) {
                return Ok(Unlisted::List);
            }
            let Ok(st) = rustix::fs::statat(&fd, c.name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) else {
                return Ok(Unlisted::List);
            };
            let stat = stat_of_raw(&st);
            // Equal stat data includes the mode, so the kind is the same too.
            if stat != c.stat || self.trusted_before.is_none_or(|t| stat.mtime_ns >= t) {
                return Ok(Unlisted::List);
            }
            files += 1;
        }
        self.files.fetch_add(files, Ordering::Relaxed);
        // Closed before descending: one open folder per level in flight, not per level
        // per thread's stolen work.
        drop(fd);
        let subs: Vec<Result<Option<(ObjectId, u64)>>> =
            subdirs.par_iter().map(|c| self.scan_dir(&join_path(rel, c.name), &abs.join(c.name))).collect();
        let mut results = Vec::with_capacity(subs.len());
        let mut same = true;
        for (c, r) in subdirs.iter().zip(subs) {
            let r = r?;
            same &= r == Some((c.id, c.size));
            results.push(r);
        }
        if same {
            self.reused_trees.fetch_add(1, Ordering::Relaxed);
            let size = old.children().map(|c| c.size).fold(0, u64::saturating_add);
            return Ok(Unlisted::Done(Some((old.tree, size))));
        }
        // A folder below changed: this folder's listing still holds, its tree does not.
        let mut results = results.into_iter();
        let mut complete = true;
        let mut children = Vec::with_capacity(old.count());
        for c in old.children() {
            if !c.kind.is_tree() {
                children.push(c.to_child());
            } else if let Some((id, size)) = results.next().expect("one result per subfolder") {
                let entry = TreeEntry { name: c.name.to_owned(), kind: c.kind, id, size };
                children.push(Child { entry, stat: Stat::default(), stored: true });
            } else {
                // Now empty: it leaves the tree, and the listing no longer says it all.
                complete = false;
            }
        }
        let mut out = Out::new();
        let r = self.finish_dir(rel, Some(old), old_bytes, children, complete.then_some(now), &mut out)?;
        self.flush(&mut out)?;
        Ok(Unlisted::Done(r))
    }

    /// Builds a folder's tree from its children (reusing the cached tree when the
    /// entries are the same) and queues its record if that changed.
    fn finish_dir(
        &self,
        rel: &str,
        old: Option<&RecordView<'_>>,
        old_bytes: Option<&[u8]>,
        mut children: Vec<Child>,
        listing: Option<DirStat>,
        out: &mut Out,
    ) -> Result<Option<(ObjectId, u64)>> {
        if children.is_empty() {
            if old_bytes.is_some() {
                self.send(out, Msg::Record(rel.to_owned(), None))?;
            }
            return Ok(None);
        }
        children.sort_by(|a, b| {
            entry_order(&a.entry.name, a.entry.kind.is_tree(), &b.entry.name, b.entry.kind.is_tree())
        });
        let size = children.iter().map(|c| c.entry.size).fold(0, u64::saturating_add);
        let same_entries = old.is_some_and(|o| {
            o.count() == children.len()
                && o.children().zip(&children).all(|(a, b)| {
                    a.name == b.entry.name
                        && a.kind == b.entry.kind
                        && a.id == b.entry.id
                        && a.size == b.entry.size
                })
        });
        let tree = match old {
            Some(o) if same_entries => {
                self.reused_trees.fetch_add(1, Ordering::Relaxed);
                o.tree
            }
            _ => {
                let t = Tree::new(children.iter().map(|c| c.entry.clone()).collect())?;
                self.put_object(out, ObjectKind::Tree, t.encode())?
            }
        };
        let bytes = DirRecord { tree, listing, children }.encode();
        if old_bytes != Some(bytes.as_slice()) {
            self.send(out, Msg::Record(rel.to_owned(), Some(bytes)))?;
        }
        Ok(Some((tree, size)))
    }

    /// Lists a folder: UTF-8, valid, NFC-normalised, not ignored; collisions reported.
    /// Also says whether the listing is clean: nothing reported, every name as on disk.
    fn list_dir(&self, rel: &str, abs: &Path) -> Result<(Vec<DirItem>, bool)> {
        let mut kids: Vec<DirItem> = Vec::new();
        let mut clean = true;
        for ent in fs::read_dir(abs).map_err(io_err(abs))? {
            let ent = ent.map_err(io_err(abs))?;
            let os_name = ent.file_name();
            let Some(raw) = os_name.to_str() else {
                self.skip(join_path(rel, &os_name.to_string_lossy()), "name is not valid UTF-8");
                clean = false;
                continue;
            };
            let name: String = if raw.is_ascii() { raw.to_owned() } else { raw.nfc().collect() };
            let child_rel = join_path(rel, &name);
            if let Err(e) = check_name(&name) {
                self.skip(child_rel, &format!("name cannot be synced: {e}"));
                clean = false;
                continue;
            }
            let ft = ent.file_type().map_err(io_err(&ent.path()))?;
            if self.rules.matched(&child_rel, ft.is_dir()).is_some() {
                continue;
            }
            if !(ft.is_file() || ft.is_dir() || ft.is_symlink()) {
                self.skip(child_rel, "special file (socket, fifo or device)");
                clean = false;
                continue;
            }
            let meta = if ft.is_dir() { None } else { Some(ent.metadata().map_err(io_err(&ent.path()))?) };
            kids.push(DirItem { name, os_name, meta });
        }
        kids.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.os_name.cmp(&b.os_name)));
        clean &= !self.find_collisions(rel, &mut kids);
        for k in kids.iter().filter(|k| k.os_name.to_str() != Some(k.name.as_str())) {
            clean = false;
            let on_disk = abs.join(&k.os_name);
            if let Some(d) = on_disk.strip_prefix(self.root).ok().and_then(Path::to_str) {
                self.disk_names
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(join_path(rel, &k.name), d.to_owned());
            }
        }
        Ok((kids, clean))
    }

    /// Several on-disk names that normalise to one NFC name: keep the one already in
    /// NFC (or the first), report them all. The others cannot be in the tree, so they are
    /// never uploaded, and nothing the sync writes ever lands on them. (Names that differ
    /// only by case are distinct names here; on a folder that ignores case they cannot
    /// both exist, and the sync refuses to write the second.)
    fn find_collisions(&self, rel: &str, kids: &mut Vec<DirItem>) -> bool {
        let mut found = Vec::new();
        let mut i = 0;
        while i < kids.len() {
            let j = (i..kids.len()).find(|&j| kids[j].name != kids[i].name).unwrap_or(kids.len());
            if j - i > 1 {
                let keep = (i..j).find(|&k| kids[k].os_name.to_str() == Some(&kids[k].name)).unwrap_or(i);
                let paths = kids[i..j].iter().map(|k| join_path(rel, &k.os_name.to_string_lossy())).collect();
                let synced = join_path(rel, &kids[keep].os_name.to_string_lossy());
                found.push(Collision { kind: CollisionKind::Unicode, paths, synced });
                let mut n = 0;
                kids.retain(|_| {
                    let r = n < i || n >= j || n == keep;
                    n += 1;
                    r
                });
                i += 1;
            } else {
                i = j;
            }
        }
        if found.is_empty() {
            return false;
        }
        self.report.lock().unwrap_or_else(std::sync::PoisonError::into_inner).collisions.extend(found);
        true
    }

    fn scan_child(
        &self,
        rel: &str,
        abs: &Path,
        kid: &DirItem,
        old: Option<ChildRef<'_>>,
        out: &mut Out,
    ) -> Result<Option<Child>> {
        let path = abs.join(&kid.os_name);
        let child_rel = join_path(rel, &kid.name);
        let meta = match &kid.meta {
            Some(m) => m.clone(),
            None => fs::symlink_metadata(&path).map_err(io_err(&path))?,
        };
        let Some(kind) = kind_of(&meta) else {
            self.skip(child_rel, "special file (socket, fifo or device)");
            return Ok(None);
        };
        if kind.is_tree() {
            return Ok(self.scan_dir(&child_rel, &path)?.map(|(id, size)| Child {
                entry: TreeEntry { name: kid.name.clone(), kind, id, size },
                stat: Stat::default(),
                stored: true,
            }));
        }
        let stat = stat_of(&meta);
        // Checked on every scan, cached or not: a cache written by an older bmsync may
        // hold a link this rule now keeps in.
        if kind == EntryKind::Symlink {
            let target = fs::read_link(&path).map_err(io_err(&path))?;
            if !super::link_stays_inside(&child_rel, target.as_os_str().as_encoded_bytes()) {
                self.skip(child_rel, "symlink points outside the folder; it never leaves this machine");
                return Ok(None);
            }
        }
        self.files.fetch_add(1, Ordering::Relaxed);
        let cached = old.filter(|o| o.kind == kind && o.stat == stat);
        if let Some(o) = cached {
            if self.trusted_before.is_some_and(|t| stat.mtime_ns < t) {
                let mut c = o.to_child();
                if self.store_blobs && !o.stored {
                    self.store_known(&path, kind, o.id, out)?;
                    c.stored = true;
                }
                return Ok(Some(c));
            }
            // Racy: modified too close to the last scan to trust the stat match.
            self.racy.store(true, Ordering::Relaxed);
        }
        let (id, stat) = self.read_blob(&path, kind, out)?;
        Ok(Some(Child {
            entry: TreeEntry { name: kid.name.clone(), kind, id, size: stat.size },
            stat,
            stored: self.store_blobs,
        }))
    }

    /// Stores a blob the stat cache already knows the id of, checking the bytes still
    /// hash to it.
    fn store_known(&self, path: &Path, kind: EntryKind, id: ObjectId, out: &mut Out) -> Result<()> {
        let (got, _) = self.read_blob(path, kind, out)?;
        if got == id { Ok(()) } else { Err(ScanError::Unstable { path: path.to_owned() }) }
    }

    /// Reads and hashes a file or symlink target (and queues it for storing), retrying
    /// when it changes underneath us.
    fn read_blob(&self, path: &Path, kind: EntryKind, out: &mut Out) -> Result<(ObjectId, Stat)> {
        for _ in 0..READ_ATTEMPTS {
            if let Some(r) = self.try_read_blob(path, kind, out)? {
                return Ok(r);
            }
        }
        Err(ScanError::Unstable { path: path.to_owned() })
    }

    fn try_read_blob(&self, path: &Path, kind: EntryKind, out: &mut Out) -> Result<Option<(ObjectId, Stat)>> {
        self.hashed.fetch_add(1, Ordering::Relaxed);
        if kind == EntryKind::Symlink {
            let before = fs::symlink_metadata(path).map_err(io_err(path))?;
            let target = fs::read_link(path).map_err(io_err(path))?;
            let bytes = target.into_os_string().into_encoded_bytes();
            let after = fs::symlink_metadata(path).map_err(io_err(path))?;
            if stat_of(&before) != stat_of(&after) {
                return Ok(None);
            }
            self.hashed_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            let id = if self.store_blobs {
                self.put_object(out, ObjectKind::Blob, bytes)?
            } else {
                ObjectId::for_blob(&bytes)
            };
            return Ok(Some((id, stat_of(&after))));
        }
        let mut f = File::open(path).map_err(io_err(path))?;
        let before = stat_of(&f.metadata().map_err(io_err(path))?);
        let small = usize::try_from(before.size).is_ok_and(|s| s <= CHUNK_SIZE);
        let (id, prepared, read) = if small {
            let mut buf = Vec::with_capacity(usize::try_from(before.size).unwrap_or(0) + 1);
            f.read_to_end(&mut buf).map_err(io_err(path))?;
            let n = buf.len() as u64;
            if n != before.size {
                return Ok(None);
            }
            // Preparing hashes too: each small file is hashed once, not once to name it
            // and again to store it.
            if self.store_blobs {
                let p = store::prepare(ObjectKind::Blob, &buf)?;
                (p.id, Some(p), n)
            } else {
                (ObjectId::for_blob(&buf), None, n)
            }
        } else {
            let mut h = ObjectHasher::new(ObjectKind::Blob);
            let n = std::io::copy(&mut f, &mut h).map_err(io_err(path))?;
            (h.finalize(), None, n)
        };
        let after = stat_of(&f.metadata().map_err(io_err(path))?);
        if before != after || read != after.size {
            return Ok(None);
        }
        self.hashed_bytes.fetch_add(read, Ordering::Relaxed);
        if let Some(p) = prepared {
            self.send(out, Msg::Object(p))?;
        } else if self.store_blobs {
            self.send(out, Msg::LargeBlob(path.to_owned(), id))?;
        }
        Ok(Some((id, after)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::{InitOptions, Repo};

    /// The racy-timestamp rule in isolation: plant a cache record whose stat matches the
    /// file exactly but whose id is stale (what a rewrite within one timestamp tick
    /// leaves behind), then scan with the cache's stamp before and after the file's mtime.
    #[test]
    fn racy_entries_are_rehashed_and_old_ones_trusted() {
        let d = tempfile::tempdir().expect("tmp");
        let repo = Repo::init(d.path(), &InitOptions::default()).expect("init");
        let path = d.path().join("n.md");
        fs::write(&path, b"new content").expect("write");
        let meta = fs::symlink_metadata(&path).expect("stat");
        let stat = stat_of(&meta);
        let stale = ObjectId::for_blob(b"old content");
        let plant = |stamp: i64| {
            let entry = TreeEntry { name: "n.md".into(), kind: EntryKind::File, id: stale, size: stat.size };
            let tree = Tree::new(vec![entry.clone()]).expect("tree");
            repo.store().put_tree(&tree).expect("put");
            let rec = DirRecord {
                tree: tree.id(),
                listing: None,
                children: vec![Child { entry, stat, stored: false }],
            };
            let b = repo.store().batch().expect("batch");
            b.set_worktree_record("", Some(&rec.encode())).expect("record");
            b.set_meta(META_WORKTREE_STAMP, &stamp.to_le_bytes()).expect("stamp");
            b.commit().expect("commit");
        };
        let opts = ScanOptions { store_blobs: false, global_ignore_files: vec![], dry_run: false };
        let id_of = |s: &Snapshot| repo.store().get_tree(&s.root).expect("tree").entries()[0].id;
        // Cache written in the same tick as the file's mtime: not trusted, re-read.
        plant(stat.mtime_ns);
        let s = scan(d.path(), repo.store(), &opts).expect("scan");
        assert_eq!((id_of(&s), s.stats.hashed), (ObjectId::for_blob(b"new content"), 1));
        // Cache written strictly later: trusted without reading (which is why the rule
        // above is what keeps a same-tick rewrite from being missed).
        plant(stat.mtime_ns + 1);
        let s = scan(d.path(), repo.store(), &opts).expect("scan");
        assert_eq!((id_of(&s), s.stats.hashed), (stale, 0));
    }

    /// The racy rule for a folder's listing, cell by cell: plant a record whose listing
    /// matches the folder's stat exactly but lacks a file that is there (what an addition
    /// within one timestamp tick of the listing leaves behind), and whose one file has a
    /// stale id; then scan with the cache's stamp at the folder's mtime, at the file's,
    /// and after both.
    #[test]
    fn racy_folders_are_listed_and_racy_files_in_trusted_folders_rehashed() {
        use std::time::{Duration, SystemTime};
        let d = tempfile::tempdir().expect("tmp");
        let repo = Repo::init(d.path(), &InitOptions::default()).expect("init");
        let sub = d.path().join("sub");
        fs::create_dir(&sub).expect("mkdir");
        fs::write(sub.join("n.md"), b"new content").expect("write");
        fs::write(sub.join("added.md"), b"added").expect("write");
        let set = |p: &Path, ago: u64| {
            let t = SystemTime::now() - Duration::from_secs(ago);
            File::open(p).expect("open").set_modified(t).expect("set mtime");
        };
        set(&sub.join("n.md"), 200);
        set(&sub, 100);
        let (_, folder) = open_dir(&sub, false).expect("open");
        let stale = ObjectId::for_blob(b"old content");
        let plant = |stamp: i64| {
            let file = stat_of(&fs::symlink_metadata(sub.join("n.md")).expect("stat"));
            let entry = TreeEntry { name: "n.md".into(), kind: EntryKind::File, id: stale, size: file.size };
            let tree = Tree::new(vec![entry.clone()]).expect("tree");
            repo.store().put_tree(&tree).expect("put");
            let rec = DirRecord {
                tree: tree.id(),
                listing: Some(folder),
                children: vec![Child { entry, stat: file, stored: false }],
            };
            let b = repo.store().batch().expect("batch");
            b.set_worktree_record("", None).expect("no root record");
            b.set_worktree_record("sub", Some(&rec.encode())).expect("record");
            b.set_meta(META_WORKTREE_STAMP, &stamp.to_le_bytes()).expect("stamp");
            b.set_meta(META_WORKTREE_RULES, &IgnoreRules::load(d.path(), &[]).expect("rules").digest())
                .expect("rules");
            b.commit().expect("commit");
            file
        };
        let opts = ScanOptions { store_blobs: false, global_ignore_files: vec![], dry_run: false };
        let sub_of = |s: &Snapshot| {
            let root = repo.store().get_tree(&s.root).expect("root");
            let sub = repo.store().get_tree(&root.entries()[0].id).expect("sub");
            sub.entries().iter().map(|e| (e.name.clone(), e.id)).collect::<Vec<_>>()
        };
        let fresh = vec![
            ("added.md".to_owned(), ObjectId::for_blob(b"added")),
            ("n.md".to_owned(), ObjectId::for_blob(b"new content")),
        ];
        // The file is old; the folder was listed in the tick the cache was written:
        // listed again, and the added file seen (the old file is trusted: its own stat
        // is older than the cache).
        plant(folder.mtime_ns);
        let s = scan(d.path(), repo.store(), &opts).expect("scan");
        let listed = vec![("added.md".to_owned(), ObjectId::for_blob(b"added")), ("n.md".to_owned(), stale)];
        assert_eq!((sub_of(&s), s.stats.listed_dirs), (listed, 2));
        // Both strictly older than the cache: trusted without listing or reading (which
        // is why the rules tested here are what keep a same-tick change from being missed).
        plant(folder.mtime_ns + 1);
        let s = scan(d.path(), repo.store(), &opts).expect("scan");
        let trusted = vec![("n.md".to_owned(), stale)];
        assert_eq!((sub_of(&s), s.stats.listed_dirs, s.stats.hashed), (trusted, 1, 0));
        // The folder is trusted, but its file was written in the cache's tick: the file
        // is read again (and its folder listed with it).
        set(&sub.join("n.md"), 50);
        let file = plant(0);
        plant(file.mtime_ns);
        let s = scan(d.path(), repo.store(), &opts).expect("scan");
        assert_eq!((sub_of(&s), s.stats.listed_dirs), (fresh, 2));
        assert!(s.stats.hashed >= 1);
    }
}
