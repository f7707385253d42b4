//! Reading both sides once and planning from them.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use unicode_normalization::UnicodeNormalization;

use super::rounds::leaves;
use super::{PlantedBug, SyncError, SyncOptions};
use crate::id::ObjectId;
use crate::object::{EntryKind, Manifest, check_path};
use crate::reconcile::{
    Action, Base, ListingStatus, Overlay, Plan, PlanError, PlanInput, Reason, case_collisions,
    check_deletions, plan,
};
use crate::remote::{Remote, RemoteView};
use crate::repo::{Repo, RepoError};
use crate::worktree::{Collision, CollisionKind, IgnoreRules, Snapshot, global_ignore_files};

/// Edited renames judged on bytes this machine holds: the store's blobs (base versions,
/// and the files a scan stored), else the folder's files, checked against their ids.
/// Remote content not held here is never fetched for it: a rename and edit made on the
/// remote pairs only when the bytes are already known.
struct HeldBytes<'a> {
    repo: &'a Repo,
    local: &'a Snapshot,
    /// The folder's files by path, listed on first use (a plan without a rename to judge
    /// never holds them all).
    paths: std::cell::OnceCell<BTreeMap<String, crate::reconcile::Leaf>>,
    cache: RefCell<HashMap<ObjectId, Option<std::rc::Rc<Vec<u8>>>>>,
}

impl HeldBytes<'_> {
    fn paths(&self) -> Result<&BTreeMap<String, crate::reconcile::Leaf>, SyncError> {
        if let Some(p) = self.paths.get() {
            return Ok(p);
        }
        let p = leaves(self.repo, self.local.root, &self.local.unstored_trees)?;
        Ok(self.paths.get_or_init(|| p))
    }

    fn bytes(&self, id: ObjectId) -> Option<std::rc::Rc<Vec<u8>>> {
        if let Some(b) = self.cache.borrow().get(&id) {
            return b.clone();
        }
        let from_store = self.repo.store().get_kind(&id, crate::id::ObjectKind::Blob).ok();
        let bytes = from_store.or_else(|| {
            let (path, _) = self.paths().ok()?.iter().find(|(_, l)| l.id == id)?;
            let b = std::fs::read(self.local.disk_path(self.repo.root(), path)).ok()?;
            (ObjectId::for_blob(&b) == id).then_some(b)
        });
        let bytes = bytes.map(std::rc::Rc::new);
        self.cache.borrow_mut().insert(id, bytes.clone());
        bytes
    }
}

impl crate::reconcile::Similarity for HeldBytes<'_> {
    fn score(&self, old: ObjectId, new: ObjectId) -> Option<u8> {
        crate::reconcile::similarity(&self.bytes(old)?, &self.bytes(new)?)
    }
}

/// The base with `transferred` added (see [`make_plan_knowing`]): its root, the trees
/// made, and its manifest. `None` when nothing is added.
#[allow(clippy::type_complexity)]
fn known_base(
    repo: &Repo,
    base: Option<&BaseState>,
    view: &RemoteView,
    transferred: &[super::journal::Transfer],
    local: &BTreeMap<String, crate::reconcile::Leaf>,
) -> Result<Option<(Option<ObjectId>, HashMap<ObjectId, crate::object::Tree>, Manifest)>, SyncError> {
    let local_kinds: HashMap<ObjectId, EntryKind> = local.values().map(|l| (l.id, l.kind)).collect();
    let local_sizes: HashMap<ObjectId, u64> = local.values().map(|l| (l.id, l.size)).collect();
    // With no base at all (a first sync that was interrupted), what landed is the base.
    let empty = Manifest::default();
    let manifest = base.map_or(&empty, |b| &b.manifest);
    let added: Vec<(String, crate::reconcile::Leaf, crate::object::ManifestEntry)> = transferred
        .iter()
        // (A path the base has at other content: the transfer is newer, it replaces it.)
        .filter(|t| manifest.get(&t.path).is_none_or(|e| e.content != Some(t.content)))
        .filter_map(|t| {
            let there = view.objects.get(&t.path).filter(|e| e.content == Some(t.content));
            // Sure to have been on both sides at the path. An upload: the bucket holds
            // it there (whoever wrote it, the folder held it there when planned), or at a
            // path the base does not know, where a teammate can only have moved it. A
            // download (its source held it there): the folder holds it at the path, or
            // at a path the base does not know, where the user can only have moved it.
            // ("Done" says only that the operation ended, not that it landed.)
            let here = local.get(&t.path).is_some_and(|l| l.id == t.content)
                || local.iter().any(|(p, l)| l.id == t.content && manifest.get(p).is_none());
            let moved_there =
                view.objects.iter().any(|(p, e)| e.content == Some(t.content) && manifest.get(p).is_none());
            let sure = if t.upload { there.is_some() || moved_there } else { here };
            if !sure {
                return None;
            }
            let (kind, size, etag) = match there {
                Some(e) => (e.kind, e.size, e.etag.clone()),
                // Gone from the bucket (moved, deleted) or replaced since: no ETag of it
                // is known, and none is needed to see that it changed.
                None => (EntryKind::File, 0, "\"unknown\"".to_owned()),
            };
            let kind = local_kinds.get(&t.content).copied().unwrap_or(kind);
            let size = local_sizes.get(&t.content).copied().unwrap_or(size);
            let leaf = crate::reconcile::Leaf { kind, id: t.content, size };
            let entry = crate::object::ManifestEntry {
                path: t.path.clone(),
                key: t.path.clone(),
                etag,
                size,
                content: Some(t.content),
                kind,
            };
            Some((t.path.clone(), leaf, entry))
        })
        .collect();
    if added.is_empty() {
        return Ok(None);
    }
    let mut all = match base.and_then(|b| b.tree) {
        Some(t) => leaves(repo, t, &HashMap::new())?,
        None => BTreeMap::new(),
    };
    let mut entries: Vec<crate::object::ManifestEntry> = manifest.entries().to_vec();
    for (p, leaf, entry) in added {
        // A path that is now a folder in the base (or under a file of it) is left out.
        if all.keys().any(|k| k.starts_with(&format!("{p}/")) || p.starts_with(&format!("{k}/"))) {
            continue;
        }
        entries.retain(|e| e.path != p);
        all.insert(p, leaf);
        entries.push(entry);
    }
    let Ok((root, trees)) = crate::reconcile::build_tree(all) else { return Ok(None) };
    let Ok(manifest) = Manifest::new(entries) else { return Ok(None) };
    Ok(Some((root, trees, manifest)))
}

/// The last sync as read from the store: its commit, tree and manifest.
pub(super) struct BaseState {
    /// The base commit.
    pub(super) commit: ObjectId,
    /// Its root tree.
    pub(super) tree: Option<ObjectId>,
    /// Its remote manifest.
    pub(super) manifest: Manifest,
    /// The tree of the manifest's entries, when the store records it (`manifest-tree`).
    pub(super) manifest_tree: Option<ObjectId>,
}

impl BaseState {
    fn as_base(&self) -> Base<'_> {
        Base { tree: self.tree, manifest: &self.manifest, manifest_tree: self.manifest_tree }
    }
}

/// The tree the store records for `manifest` (by id), if the record is about it.
fn manifest_tree(repo: &Repo, manifest: &ObjectId) -> Result<Option<ObjectId>, SyncError> {
    let Some(v) = repo.store().meta(crate::repo::META_MANIFEST_TREE)? else { return Ok(None) };
    Ok(crate::repo::parse_manifest_tree(&v).filter(|(m, _)| m == manifest).map(|(_, t)| t))
}

pub(super) fn base_state(repo: &Repo) -> Result<Option<BaseState>, SyncError> {
    let Some(id) = repo.base()? else { return Ok(None) };
    let c = repo.store().get_commit(&id)?;
    let (manifest, manifest_tree) = match &c.baseline {
        Some(b) => (repo.store().get_manifest(&b.manifest)?, manifest_tree(repo, &b.manifest)?),
        None => (Manifest::default(), None),
    };
    Ok(Some(BaseState { commit: id, tree: Some(c.tree), manifest, manifest_tree }))
}

/// The folder where a sync's remote view keeps the objects it read whole, for the apply
/// step to place (`.bmsync/stage`); emptied before each plan and after each sync.
pub(super) fn stage_dir(repo: &Repo) -> std::path::PathBuf {
    repo.root().join(crate::layout::STATE_DIR).join("stage")
}

/// Removes the stage folder, if there is one (what is left in it was not needed).
pub(super) fn clear_stage(dir: &std::path::Path) {
    if dir.exists() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The remote view of a plan: a sync reads what the base does not know whole, once, into
/// a fresh stage folder (a dry run only sends HEADs, and takes no snapshot).
fn fetch_view(
    repo: &Repo,
    remote: &dyn Remote,
    base: Option<&Manifest>,
    ignored: impl Fn(&str) -> bool,
    dry_run: bool,
    opts: &SyncOptions,
) -> Result<RemoteView, SyncError> {
    let jobs = opts.jobs.unwrap_or(super::options::DEFAULT_JOBS);
    // (A push writes no local file, so it reads no object whole.)
    let stage = (!dry_run && opts.direction != super::options::Direction::Push).then(|| stage_dir(repo));
    if let Some(dir) = &stage {
        clear_stage(dir);
    }
    Ok(RemoteView::fetch_with(remote, base, ignored, !dry_run, jobs, stage.as_deref())?)
}

/// Everything a plan is made from, read once.
pub struct Planned {
    /// The folder as scanned.
    pub local: Snapshot,
    /// The remote as listed.
    pub view: RemoteView,
    /// The plan.
    pub plan: Plan,
    /// Names that collide (Unicode forms in the folder; on a folder that ignores case,
    /// remote names that would alias a local one): only one of each syncs.
    pub collisions: Vec<Collision>,
    /// What the mass-delete guard refuses in this plan: only a dry run (`bmsync plan`)
    /// gets a plan the guard refuses, to preview the deletions; a sync fails instead.
    pub refused: Option<PlanError>,
    pub(super) base: Option<BaseState>,
}

/// The mass-delete guard over the deletions this run carries: a sync fails; a dry run
/// gets the refusal to show with its plan.
fn guard(plan: &Plan, opts: &SyncOptions, dry_run: bool) -> Result<Option<PlanError>, SyncError> {
    match check_deletions(&plan.ops, plan.stats.base_files, opts.max_delete, |o| opts.carries(o)) {
        Err(e) if !dry_run => Err(SyncError::Plan(e)),
        r => Ok(r.err()),
    }
}

/// Runs `f`, logging how long it took.
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let r = f();
    tracing::info!(target: "bmsync::plan", "{what} in {:.1} ms", started.elapsed().as_secs_f64() * 1000.0);
    r
}

/// Scans, reads the remote at one snapshot, and plans. With `dry_run` it writes nothing
/// at all (for `bmsync plan`: give it a read-only repo and remote): the remote is read
/// live, without a snapshot, and the scan leaves the stat cache and its stamp alone.
/// Otherwise the scan stores the folder's objects, ready for the apply step. No file is
/// touched and no ref moves either way.
pub fn make_plan(
    repo: &Repo,
    remote: &dyn Remote,
    opts: &SyncOptions,
    dry_run: bool,
) -> Result<Planned, SyncError> {
    make_plan_knowing(repo, remote, opts, dry_run, &[])
}

/// [`make_plan`], also taking as synced the `transferred` (path, content) pairs an
/// interrupted sync started without recording them, where the base has no entry there,
/// the bucket still holds that content at the path and the folder holds it somewhere.
/// The base itself is not changed.
pub(super) fn make_plan_knowing(
    repo: &Repo,
    remote: &dyn Remote,
    opts: &SyncOptions,
    dry_run: bool,
    transferred: &[super::journal::Transfer],
) -> Result<Planned, SyncError> {
    let scan_opts = crate::worktree::ScanOptions { store_blobs: !dry_run, dry_run, ..Default::default() };
    let local = timed("scanned the folder", || repo.scan_with(&scan_opts))?;
    let rules =
        IgnoreRules::load(repo.root(), &global_ignore_files()).map_err(|e| RepoError::Scan(e.into()))?;
    let base = base_state(repo)?;
    let filter = rules.path_filter();
    let ignored_now = |p: &str| filter.ignored(p);
    // A plan takes no snapshot: it reads the live state (taking one is a write).
    let mut view = fetch_view(repo, remote, base.as_ref().map(|b| &b.manifest), ignored_now, dry_run, opts)?;
    let mut protected: BTreeSet<String> = local.report.protected_paths().into_iter().collect();
    // A key in another Unicode form (which the view skips) still holds that note: its NFC
    // path is never taken for deleted there.
    // (Where the bucket holds the NFC key as well, that one syncs as usual.)
    protected.extend(
        view.skipped
            .iter()
            .map(|k| k.key.nfc().collect::<String>())
            .filter(|p| check_path(p).is_ok() && !view.objects.contains_key(p)),
    );
    let mut collisions = local.report.collisions.clone();
    if repo.case_insensitive() {
        // A second spelling of a name the folder already holds would alias it: never
        // written here, never deleted there, and reported.
        // Paths the scan left out (a symlink out of the folder...) are there too.
        let local_paths = leaves(repo, local.root, &local.unstored_trees)?;
        let here = local_paths.keys().chain(protected.iter()).map(String::as_str);
        // A spelling the last sync left as it is in the bucket writes nothing here: if
        // the folder now spells it otherwise (a rename of its case), the old key goes
        // the way of any local rename, under If-Match.
        let unchanged = |p: &str, etag: &str| {
            base.as_ref().and_then(|b| b.manifest.get(p)).is_some_and(|e| e.etag == etag)
        };
        let there = view.objects.iter().filter(|(p, e)| !unchanged(p, &e.etag)).map(|(p, _)| p.as_str());
        for c in case_collisions(here, there) {
            protected.insert(c.refused.clone());
            collisions.push(Collision {
                kind: CollisionKind::Case,
                paths: vec![c.holder.clone(), c.refused],
                synced: c.holder,
            });
        }
    }
    let ignored: BTreeSet<String> = base
        .as_ref()
        .map(|b| b.manifest.entries().iter().map(|e| e.path.clone()).filter(|p| ignored_now(p)).collect())
        .unwrap_or_default();
    let reader = repo.store().reader()?;
    let held =
        HeldBytes { repo, local: &local, paths: std::cell::OnceCell::new(), cache: RefCell::default() };
    let known = if transferred.is_empty() {
        None
    } else {
        known_base(repo, base.as_ref(), &view, transferred, held.paths()?)?
    };
    let mut mem = local.unstored_trees.clone();
    if let Some((_, trees, _)) = &known {
        mem.extend(trees.iter().map(|(id, t)| (*id, t.clone())));
    }
    let trees = Overlay { mem: &mem, inner: &reader };
    loop {
        let input = PlanInput {
            trees: &trees,
            base: match &known {
                Some((root, _, manifest)) => Some(Base { tree: *root, manifest, manifest_tree: None }),
                None => base.as_ref().map(BaseState::as_base),
            },
            local: Some(local.root),
            remote: &view.objects,
            listing: ListingStatus::Complete,
            protected: &protected,
            ignored: &ignored,
            // The guard below counts only the deletions this run carries out.
            max_delete: Some(usize::MAX),
            allow_empty_remote: opts.allow_empty_remote || opts.planted(PlantedBug::EmptyListingAsDeletions),
            similarity: Some(&held),
        };
        let plan = plan(&input)?;
        // A content id from metadata is a hint: another tool may have replaced the bytes
        // and kept the metadata. Where the plan would skip a transfer because of it
        // ("same content", "only the ETag changed"), hash the object first, and plan
        // again if the hint was wrong. Downloads verify their bytes anyway.
        let hinted: Vec<String> = plan
            .ops
            .iter()
            .filter(|o| {
                o.action == Action::Record
                    && matches!(o.reason, Reason::BothAdded | Reason::BothChanged | Reason::RemoteEtagChanged)
                    && view.hinted.contains(&o.path)
            })
            .map(|o| o.path.clone())
            .collect();
        let mut wrong = false;
        for p in &hinted {
            wrong |= view.verify_hint(remote, p)?;
        }
        if !wrong {
            let refused = guard(&plan, opts, dry_run)?;
            return Ok(Planned { local, view, plan, collisions, refused, base });
        }
    }
}
