//! Sync rounds: plan, apply the operations at once under their preconditions, repeat
//! while teammates' races leave paths unsynced.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::ops::{Effects, RemoteSide};
use super::options::{DEFAULT_JOBS, MAX_ROUNDS, TRASH_KEEP};
use super::recording::{record_base, remember_collisions};
use super::{
    DEFAULT_LOCK_WAIT, Direction, NoProgress, Planned, PlantedBug, Progress, SyncError, SyncOptions,
    SyncSummary, journal, ops,
};
use crate::id::ObjectId;
use crate::reconcile::{Action, Change, DiffStats, Leaf, Op, Overlay, Reason, diff_trees};
use crate::remote::{Remote, Version};
use crate::repo::Repo;
use crate::store::StoreError;

/// What is known of each side while applying: path → leaf, path → (ETag, content, size).
pub(super) struct Observed {
    pub(super) local: BTreeMap<String, Leaf>,
    pub(super) remote: BTreeMap<String, RemoteSide>,
}

impl Observed {
    fn fold(&mut self, effects: &mut Effects) {
        for (p, l) in effects.local.drain(..) {
            match l {
                Some(l) => self.local.insert(p, l),
                None => self.local.remove(&p),
            };
        }
        for (p, r) in effects.remote.drain(..) {
            match r {
                Some(r) => self.remote.insert(p, r),
                None => self.remote.remove(&p),
            };
        }
    }
}

/// One round's context, shared by the operations running at once.
pub(super) struct Round<'a> {
    pub(super) repo: &'a Repo,
    pub(super) remote: &'a dyn Remote,
    pub(super) planned: &'a Planned,
    pub(super) opts: &'a SyncOptions,
    /// When the round started (UNIX ns): names its temporary files and dates its
    /// multipart uploads for recovery.
    pub(super) started_ns: Version,
    /// Text-sized files this round downloaded (path, content id): kept in the store
    /// after the round, so that a later three-way merge finds their base version.
    pub(super) fetched: Mutex<Vec<(std::path::PathBuf, ObjectId)>>,
    /// Files this round moved away or deleted: their folders are removed once the round
    /// ends, if empty (not while other operations may be filling them).
    pub(super) emptied: Mutex<Vec<std::path::PathBuf>>,
}

impl Round<'_> {
    /// Where this round puts a local file it takes away (see [`super::local::trash_place`]).
    pub(super) fn trash(&self, rel: &str) -> std::path::PathBuf {
        super::local::trash_place(self.repo.root(), self.started_ns, rel)
    }

    /// Puts the files this round downloaded into the store, in one transaction; a file
    /// changed since is left out (the next scan stores what it holds then).
    fn keep_fetched(&self) -> Result<(), SyncError> {
        let fetched = std::mem::take(&mut *self.fetched.lock().expect("never poisoned"));
        if fetched.is_empty() {
            return Ok(());
        }
        let batch = self.repo.store().batch()?;
        for (path, id) in fetched {
            let Ok(bytes) = std::fs::read(&path) else { continue };
            if ObjectId::for_blob(&bytes) == id {
                batch.put(crate::id::ObjectKind::Blob, &bytes)?;
            }
        }
        batch.commit()?;
        Ok(())
    }
}

/// Runs sync rounds until nothing raced (or the round limit), recording a base after each.
pub fn sync(repo: &Repo, remote: &dyn Remote, opts: &SyncOptions) -> Result<SyncSummary, SyncError> {
    sync_with_progress(repo, remote, opts, &NoProgress)
}

/// [`sync`], reporting progress.
pub fn sync_with_progress(
    repo: &Repo,
    remote: &dyn Remote,
    opts: &SyncOptions,
    progress: &dyn Progress,
) -> Result<SyncSummary, SyncError> {
    // One applying run per folder at a time (the guard is a no-op when the caller
    // already holds the lock through `Repo::open_locked`).
    let _lock = repo
        .lock_sync(opts.lock_wait.unwrap_or(DEFAULT_LOCK_WAIT), &mut |pid| progress.waiting_for_lock(pid))?;
    let counted = crate::remote::Counted::new(remote);
    let result = sync_rounds(repo, &counted, opts, progress);
    super::planning::clear_stage(&super::planning::stage_dir(repo));
    progress.finish();
    result.map(|s| SyncSummary { requests: counted.counts(), ..s })
}

pub(super) fn now_ns() -> Version {
    crate::clock::unix_ns()
}

/// Refuses a remote that ignores conditional PUTs (as its capabilities report what its
/// probe found), before anything is written, unless lost updates are accepted: by
/// `accept_lost_updates` (which records the opt-in) or by an opt-in recorded for this
/// remote. Returns the warning to repeat on every sync then. Every sync entry (sync,
/// push, pull, watch) calls this first; [`sync`] does.
pub fn check_guarantees(
    repo: &Repo,
    remote: &dyn Remote,
    accept_lost_updates: bool,
) -> Result<Vec<String>, SyncError> {
    if remote.capabilities().conditional_put {
        return Ok(Vec::new());
    }
    let detail = repo
        .probe_record()?
        .filter(|r| r.remote == remote.url())
        .and_then(|r| r.missing_put())
        .unwrap_or_else(|| {
            format!(
                "{} ignores conditional PUTs: a teammate's concurrent write would be silently overwritten (lost updates)",
                remote.url()
            )
        });
    let stored = repo.remote().is_some() && repo.lost_updates_accepted()?;
    if !(accept_lost_updates || stored) {
        return Err(SyncError::LostUpdates { detail });
    }
    if accept_lost_updates && !stored && repo.remote().is_some() {
        repo.accept_lost_updates()?;
    }
    Ok(vec![format!(
        "{detail}; going on because lost updates were accepted for this remote: sync this folder from one place only"
    )])
}

pub(super) fn sync_rounds(
    repo: &Repo,
    remote: &dyn Remote,
    opts: &SyncOptions,
    progress: &dyn Progress,
) -> Result<SyncSummary, SyncError> {
    let warnings = check_guarantees(repo, remote, opts.accept_lost_updates)?;
    let (recovered, mut transferred) = journal::recover(repo, remote)?;
    let mut summary = SyncSummary { recovered, warnings, ..SyncSummary::default() };
    super::local::prune_trash(repo.root(), TRASH_KEEP);
    for round in 1..=MAX_ROUNDS {
        summary.rounds = round;
        summary.raced.clear();
        summary.skipped.clear();
        // What an interrupted sync transferred counts once, for the first plan.
        let planned =
            super::planning::make_plan_knowing(repo, remote, opts, false, &std::mem::take(&mut transferred))?;
        summary.remote_skipped.clone_from(&planned.view.skipped);
        summary.collisions.clone_from(&planned.collisions);
        summary.local_skipped.clone_from(&planned.local.report.skipped);
        let carried: Vec<&Op> = planned.plan.ops.iter().filter(|o| opts.carries(o)).collect();
        (summary.held_back, summary.held_deletions) = held_back(&planned.plan.ops, opts);
        tracing::info!(target: "bmsync::plan", "round {round}: {} ops planned, {} carried", planned.plan.ops.len(), carried.len());
        if opts.direction != Direction::Both && opts.on_conflict.is_none() {
            let paths: Vec<String> = carried
                .iter()
                .filter(|o| matches!(o.action, Action::Conflict | Action::Merge))
                .map(|o| o.path.clone())
                .collect();
            if !paths.is_empty() {
                return Err(SyncError::Conflicts { paths });
            }
        }
        if carried.iter().all(|o| o.action == Action::Skip) && planned.base.is_some() {
            // Nothing to do, and the base already says so: no write at all.
            summary.skipped = carried.iter().map(|o| format!("{}: {}", o.path, o.reason.words())).collect();
            summary.base = planned.base.as_ref().map(|b| b.commit);
            summary.snapshot = planned.view.version;
            break;
        }
        let mut observed = Observed {
            local: leaves(repo, planned.local.root, &planned.local.unstored_trees)?,
            remote: planned.view.objects.iter().map(|(p, e)| (p.clone(), RemoteSide::listed(e))).collect(),
        };
        let bytes: u64 = carried
            .iter()
            .filter_map(|o| match o.action {
                Action::Download => o.sides.remote.as_ref(),
                Action::Upload | Action::MoveRemote => o.sides.local.as_ref(),
                _ => None,
            })
            .map(|l| l.size)
            .sum();
        progress.start(carried.len() as u64, bytes);
        if opts.planted(PlantedBug::RecordBaseEarly) {
            record_base(repo, remote, &planned, &optimistic(&planned, &observed), false, false)?;
        }
        let r = Round {
            repo,
            remote,
            planned: &planned,
            opts,
            started_ns: now_ns(),
            fetched: Mutex::default(),
            emptied: Mutex::default(),
        };
        let intents =
            journal::Journal::begin(repo, carried.iter().enumerate().map(|(i, o)| r.intent(i, o)).collect())?;
        let mut done = SyncSummary::default();
        let failed = r.run(&carried, &intents, &mut observed, &mut done, progress);
        intents.flush()?;
        r.keep_fetched()?;
        for gone in std::mem::take(&mut *r.emptied.lock().expect("never poisoned")) {
            super::local::remove_empty_folders(repo.root(), &gone);
        }
        super::local::remove_empty_tree(&super::local::trash_round(repo.root(), r.started_ns));
        let wrote = done.uploaded + done.deleted_remote + done.moved_remote > 0;
        let merged = !done.merged.is_empty();
        summary.absorb(done);
        // Even after a failure, record what did succeed: the paths both sides were seen
        // to agree on.
        let (base, snapshot, moved) = record_base(repo, remote, &planned, &observed, wrote, merged)?;
        summary.changed_after_apply.extend(moved);
        summary.base = Some(base);
        summary.snapshot = snapshot;
        if let Some(e) = failed {
            // The journal stays: the next sync learns what this one sent or fetched
            // (an answer lost on the way may hide a write that landed).
            return Err(e);
        }
        intents.finish()?;
        if summary.raced.is_empty() {
            break;
        }
    }
    remember_collisions(repo, &summary.collisions)?;
    let met = summary.conflicts.iter().filter_map(|c| new_record(repo, c)).collect();
    summary.open_conflicts = crate::conflicts::after_sync(repo.store(), repo.root(), met)?;
    summary.remote_skipped.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(summary)
}

/// What a push or pull leaves undone: changes for the other direction, and deletions
/// it carries only with `--delete`.
fn held_back(ops: &[Op], opts: &SyncOptions) -> (u64, u64) {
    let (deletions, others): (Vec<&Op>, Vec<&Op>) =
        ops.iter().filter(|o| !opts.carries(o)).partition(|o| o.is_deletion());
    (others.len() as u64, deletions.len() as u64)
}

/// The record of a conflict this sync met (`kept` and `at` are filled in as it is kept).
fn new_record(repo: &Repo, c: &super::ConflictReport) -> Option<crate::conflicts::ConflictRecord> {
    Some(crate::conflicts::ConflictRecord {
        path: c.path.clone(),
        kind: crate::conflicts::ConflictKind::from_reason(c.reason)?,
        base: c.base,
        local: c.local,
        remote: c.remote,
        copy: c.local_copy.clone(),
        kept: None,
        keys: c.keys.clone(),
        renamed: c.renamed.clone(),
        client: repo.client_id().to_owned(),
        at: String::new(),
    })
}

impl Round<'_> {
    fn intent(&self, i: usize, op: &Op) -> journal::Entry {
        let fetches = matches!(op.action, Action::Download | Action::Conflict | Action::Merge)
            || matches!(op.then, Some(Action::Download | Action::Merge))
            || (op.action == Action::Skip && op.reason == Reason::RemoteKeyCollision);
        let size = op.sides.local.as_ref().map_or(0, |l| l.size);
        journal::Entry {
            op: op.action.name(),
            path: op.path.clone(),
            tmp: fetches.then(|| journal::temp_path(&self.disk_rel(&op.path), i, self.started_ns)),
            multipart: matches!(op.action, Action::Upload | Action::MoveRemote | Action::Conflict)
                && size > ops::IN_MEMORY_UPLOAD,
            started_ns: self.started_ns,
            done: false,
            content: match op.action {
                Action::Upload | Action::MoveRemote => op.sides.local.as_ref().map(|l| l.id),
                Action::Download | Action::MoveLocal => op.sides.remote.as_ref().map(|r| r.id),
                _ => None,
            },
            carried: false,
        }
    }

    /// Runs the operations, several at once unless `jobs` is 1, folding each one's
    /// effects into `observed` as it ends. The first hard error stops new operations from
    /// starting; the ones running finish. Returns that error.
    fn run(
        &self,
        carried: &[&Op],
        intents: &journal::Journal<'_>,
        observed: &mut Observed,
        summary: &mut SyncSummary,
        progress: &dyn Progress,
    ) -> Option<SyncError> {
        let jobs = self.opts.jobs.unwrap_or(DEFAULT_JOBS).clamp(1, carried.len().max(1));
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let shared = Mutex::new((observed, summary, None::<SyncError>));
        let work = || {
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(op) = carried.get(i) else { break };
                let mut effects = Effects::default();
                let result =
                    self.apply(i, op, &mut effects).and_then(|()| intents.done(i).map_err(SyncError::from));
                let moved = effects.summary.bytes_up + effects.summary.bytes_down;
                {
                    let mut g = shared.lock().expect("no operation panics while holding the lock");
                    let (observed, summary, first) = &mut *g;
                    observed.fold(&mut effects);
                    summary.absorb(effects.summary);
                    if let Err(e) = result {
                        stop.store(true, Ordering::Relaxed);
                        first.get_or_insert(e);
                    }
                }
                progress.done(&op.path, moved);
            }
        };
        if jobs == 1 {
            work();
        } else {
            std::thread::scope(|s| {
                for _ in 0..jobs {
                    s.spawn(work);
                }
            });
        }
        shared.into_inner().expect("no operation panics while holding the lock").2
    }
}

/// What the sides would hold if every operation of the plan succeeded (for
/// [`PlantedBug::RecordBaseEarly`] only).
pub(super) fn optimistic(planned: &Planned, observed: &Observed) -> Observed {
    let mut out = Observed { local: observed.local.clone(), remote: observed.remote.clone() };
    for op in &planned.plan.ops {
        let p = op.path.clone();
        match op.action {
            Action::Upload | Action::MoveRemote => {
                if let Some(l) = &op.sides.local {
                    let side = RemoteSide {
                        etag: "\"planned\"".to_owned(),
                        content: l.id,
                        size: l.size,
                        kind: l.kind,
                    };
                    out.remote.insert(p, side);
                }
            }
            Action::Download => {
                if let Some(r) = &op.sides.remote {
                    out.local.insert(p, r.clone());
                }
            }
            Action::DeleteLocal | Action::DeleteRemote => {
                out.local.remove(&p);
                out.remote.remove(&p);
            }
            _ => {}
        }
    }
    out
}

pub(super) fn leaves(
    repo: &Repo,
    root: ObjectId,
    unstored: &std::collections::HashMap<ObjectId, crate::object::Tree>,
) -> Result<BTreeMap<String, Leaf>, SyncError> {
    let reader = repo.store().reader()?;
    let trees = Overlay { mem: unstored, inner: &reader };
    let mut st = DiffStats::default();
    Ok(diff_trees(&trees, None, Some(root), &mut st)
        .map_err(StoreError::from)?
        .into_iter()
        .filter_map(|c| match c {
            Change::Added { path, new } => Some((path, new)),
            _ => None,
        })
        .collect())
}
