//! One operation at a time: each checks its preconditions just before acting, acts
//! atomically, and reports what it changed as [`Effects`], which the round folds into
//! what it knows of each side. Operations on different paths are independent, so a
//! round runs several at once.

use std::path::{Path, PathBuf};

use super::local::{
    TempGuard, folder_gives_way, folder_in_the_way, link_on_the_way, local_ok, make_kind, place_new,
    take_aside,
};
use super::options::io_err;
use super::rounds::Round;
use super::{ConflictReport, Direction, PlantedBug, SyncError, SyncSummary};
use crate::id::{HashingWriter, ObjectId, ObjectKind};
use crate::object::EntryKind;
use crate::reconcile::{Action, Leaf, LocalCond, Op, Reason, RemoteCond};
use crate::remote::{Body, Condition, RemoteError};

/// Files up to this size are read into memory, hashed and sent from that one read.
pub(super) const IN_MEMORY_UPLOAD: u64 = 16 << 20;

/// A remote object as the round knows it.
#[derive(Clone, Debug)]
pub(super) struct RemoteSide {
    pub etag: String,
    pub content: ObjectId,
    pub size: u64,
    /// File, executable or symlink.
    pub kind: EntryKind,
}

impl RemoteSide {
    /// An object as the remote view listed it.
    pub(super) fn listed(e: &crate::remote::RemoteEntry) -> Self {
        let content = crate::remote::RemoteView::content_of(e);
        Self { etag: e.etag.clone(), content, size: e.size, kind: e.kind }
    }
}

/// What one operation changed, folded into the round's view of both sides when it ends.
#[derive(Default)]
pub(super) struct Effects {
    pub local: Vec<(String, Option<Leaf>)>,
    pub remote: Vec<(String, Option<RemoteSide>)>,
    pub summary: SyncSummary,
}

impl Effects {
    pub(super) fn raced(&mut self, path: &str) {
        self.summary.raced.push(path.to_owned());
    }
}

impl Round<'_> {
    /// Runs operation `i` of the plan.
    pub(super) fn apply(&self, i: usize, op: &Op, effects: &mut Effects) -> Result<(), SyncError> {
        let path = op.path.as_str();
        let abs = self.abs(path);
        let pre = &op.precondition;
        let from = op.from.as_deref().map(|f| format!(" from {f}")).unwrap_or_default();
        tracing::info!(target: "bmsync::apply", "{} {path}{from} ({})", op.action.words(), op.reason.words());
        match op.action {
            Action::Upload => {
                let Some(leaf) = &op.sides.local else { return Ok(()) };
                // No separate check of the local file: `upload` sends only bytes that hash
                // to the planned content (the local precondition), from one read.
                if !self.upload(path, leaf, &self.cond(path, pre.remote.as_ref()), effects)? {
                    effects.raced(path);
                } else if let (Reason::RenameDelete, Some(from)) = (op.reason, &op.from) {
                    effects.summary.renames_kept.push((path.to_owned(), from.clone()));
                } else if op.reason == Reason::EditDelete {
                    effects.summary.conflicts.push(ConflictReport::of(op, op.reason));
                }
            }
            Action::Download => {
                if op.sides.remote.is_none() {
                    return Ok(());
                }
                let before = effects.summary.downloaded;
                self.fetch(i, path, pre.local, effects)?;
                if op.reason == Reason::DeleteEdit && effects.summary.downloaded > before {
                    effects.summary.conflicts.push(ConflictReport::of(op, op.reason));
                }
                if let (Reason::RenameDelete, Some(from)) = (op.reason, &op.from)
                    && effects.summary.downloaded > before
                {
                    effects.summary.renames_kept.push((path.to_owned(), from.clone()));
                }
            }
            Action::DeleteRemote => {
                let Some(RemoteCond::IfMatch(etag)) = &pre.remote else { return Ok(()) };
                self.delete_remote(path, etag, effects)?;
            }
            Action::DeleteLocal => {
                let Some(LocalCond::Content(expected)) = pre.local else { return Ok(()) };
                if !take_aside(&abs, &self.trash(path), expected)? {
                    effects.raced(path);
                    return Ok(());
                }
                self.emptied.lock().expect("never poisoned").push(abs.clone());
                effects.summary.deleted_local += 1;
                effects.local.push((path.to_owned(), None));
            }
            Action::MoveLocal => self.move_local(i, op, effects)?,
            Action::MoveRemote => self.move_remote(i, op, effects)?,
            Action::Record => effects.summary.recorded += 1,
            Action::Conflict => self.conflict(i, op, effects)?,
            Action::Merge => self.merge(i, op, effects)?,
            Action::Skip
                if op.reason == crate::reconcile::Reason::RemoteKeyCollision
                    && self.opts.direction == Direction::Both =>
            {
                self.move_hidden_file(i, op, effects)?;
            }
            Action::Skip => effects.summary.skipped.push(format!("{path}: {}", op.reason.words())),
        }
        Ok(())
    }

    /// The local side follows a rename made on the remote: the file at `from` moves to
    /// `path`, and then gets what the plan's `then` says.
    fn move_local(&self, i: usize, op: &Op, effects: &mut Effects) -> Result<(), SyncError> {
        let path = op.path.as_str();
        let abs = self.abs(path);
        let pre = &op.precondition;
        let (Some(from), Some(leaf)) = (&op.from, &op.sides.local) else { return Ok(()) };
        let src = self.abs(from);
        let Some(LocalCond::Content(expected)) = pre.from_local else { return Ok(()) };
        // By way of the trash: the source is checked after it moved, and the
        // destination is never clobbered. (A crash in between leaves the file in the
        // trash, never lost; the bucket holds its content at `path` anyway.)
        if !folder_gives_way(&abs) {
            let reason = folder_in_the_way(&abs);
            effects.summary.remote_skipped.push(crate::remote::SkippedKey { key: path.to_owned(), reason });
            return Ok(());
        }
        let aside = self.trash(from);
        if !take_aside(&src, &aside, expected)? {
            effects.raced(path);
            return Ok(());
        }
        if !place_new(&aside, &abs)? {
            place_new(&aside, &src)?;
            effects.raced(path);
            return Ok(());
        }
        self.emptied.lock().expect("never poisoned").push(src.clone());
        effects.summary.moved_local += 1;
        effects.local.push((from.clone(), None));
        effects.local.push((path.to_owned(), Some(leaf.clone())));
        if op.reason == Reason::RenameRename {
            effects.summary.conflicts.push(ConflictReport::of(op, op.reason));
        }
        // The file is at `path` now: what follows is an ordinary operation there.
        let Some(then) = op.then else { return Ok(()) };
        let at_path = Op {
            action: then,
            from: None,
            then: None,
            precondition: crate::reconcile::Precondition {
                remote: pre.remote.clone(),
                local: Some(LocalCond::Content(leaf.id)),
                ..Default::default()
            },
            ..op.clone()
        };
        match then {
            Action::Upload
                if !self.upload(
                    path,
                    leaf,
                    &self.cond(path, at_path.precondition.remote.as_ref()),
                    effects,
                )? =>
            {
                effects.raced(path);
            }
            Action::Download => self.fetch(i, path, at_path.precondition.local, effects)?,
            Action::Merge => self.merge(i, &at_path, effects)?,
            _ => {}
        }
        Ok(())
    }

    /// The remote follows a local rename: the object at `from` ends at `path` (copied
    /// within the bucket, or sent again where this side also edited it), and `from` is
    /// deleted only if it still holds what the plan saw.
    fn move_remote(&self, i: usize, op: &Op, effects: &mut Effects) -> Result<(), SyncError> {
        let path = op.path.as_str();
        let pre = &op.precondition;
        let Some(from) = &op.from else { return Ok(()) };
        let Some(RemoteCond::IfMatch(from_etag)) = &pre.from_remote else { return Ok(()) };
        let (here, there) = (op.sides.local.as_ref(), op.sides.remote.as_ref());
        match op.then {
            Some(Action::Merge) => return self.merge(i, op, effects),
            Some(Action::Download) => {
                // Theirs comes here first (read from `from` as the plan saw it), then
                // the bucket's copy moves.
                let before = effects.summary.downloaded;
                self.fetch_into(i, from, path, path, pre.local, effects)?;
                if effects.summary.downloaded == before {
                    effects.raced(path);
                    return Ok(());
                }
                let Some(r) = there else { return Ok(()) };
                if !self.copy_remote(from, from_etag, r, path, effects)? {
                    return Ok(());
                }
            }
            _ => match (here, there) {
                (Some(l), Some(r)) if r.id == l.id && r.kind == l.kind => {
                    if !self.copy_remote(from, from_etag, r, path, effects)? {
                        return Ok(());
                    }
                }
                (Some(leaf), _) => {
                    // Edited here as well: the new bytes go up; the old key goes.
                    if !self.upload(path, leaf, &self.cond(path, pre.remote.as_ref()), effects)? {
                        effects.raced(path);
                        return Ok(());
                    }
                }
                (None, _) => return Ok(()),
            },
        }
        effects.summary.moved_remote += 1;
        if !self.opts.planted(PlantedBug::MoveKeepsSource) {
            self.remove_remote(from, from_etag, effects)?;
        }
        Ok(())
    }

    /// Copies `from` to `path` within the bucket, if `from` still has `etag` (and holds
    /// `leaf`) and nothing is at `path`. `false`: a lost race, left for the next round.
    pub(super) fn copy_remote(
        &self,
        from: &str,
        etag: &str,
        leaf: &Leaf,
        path: &str,
        effects: &mut Effects,
    ) -> Result<bool, SyncError> {
        match self.remote.copy(from, etag, leaf.id, path) {
            Ok(w) => {
                let side = RemoteSide { etag: w.etag, content: leaf.id, size: leaf.size, kind: leaf.kind };
                effects.remote.push((path.to_owned(), Some(side)));
                Ok(true)
            }
            Err(e) if e.is_race() || matches!(e, RemoteError::NotFound { .. }) => {
                effects.raced(path);
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The condition a write is sent under.
    fn cond(&self, path: &str, c: Option<&RemoteCond>) -> Condition {
        match c {
            Some(RemoteCond::IfMatch(e)) => {
                if self.opts.planted(PlantedBug::SkipIfMatch)
                    && let Ok(now) = self.remote.head(path, None)
                {
                    // The planted bug: whatever is there now gets overwritten.
                    return Condition::IfMatch(now.etag);
                }
                Condition::IfMatch(e.clone())
            }
            Some(RemoteCond::IfAbsent) | None => Condition::IfAbsent,
        }
    }

    pub(super) fn delete_remote(
        &self,
        path: &str,
        etag: &str,
        effects: &mut Effects,
    ) -> Result<(), SyncError> {
        if self.remove_remote(path, etag, effects)? {
            effects.summary.deleted_remote += 1;
        }
        Ok(())
    }

    /// Deletes the remote object at `path` if it still has `etag` (the second half of a
    /// move, or a deletion). `false`: a lost race, left for the next round.
    pub(super) fn remove_remote(
        &self,
        path: &str,
        etag: &str,
        effects: &mut Effects,
    ) -> Result<bool, SyncError> {
        let deleted = if self.remote.capabilities().conditional_delete {
            self.remote.delete(path, etag)
        } else {
            self.delete_via_tombstone(path, etag)
        };
        match deleted {
            Ok(()) => {
                effects.remote.push((path.to_owned(), None));
                Ok(true)
            }
            Err(RemoteError::PreconditionFailed { .. } | RemoteError::NotFound { .. }) => {
                effects.raced(path);
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A delete on a bucket that ignores `If-Match` on DELETE (but honours it on PUT):
    /// first replace the version we saw by a tombstone, under `If-Match` on its ETag, so a
    /// version we did not see is never touched; check the tombstone is still there; then
    /// delete it. The only object the unconditional DELETE can then remove is our own
    /// tombstone, or a write made over it by someone who saw it, which bmsync never does
    /// (views read tombstones as absent). See `format-spec/remote-guarantees.md`.
    fn delete_via_tombstone(&self, path: &str, etag: &str) -> Result<(), RemoteError> {
        let body = crate::remote::TOMBSTONE;
        let tomb = self.remote.put(
            path,
            Body::Bytes(body),
            ObjectId::for_blob(body),
            EntryKind::File,
            &Condition::IfMatch(etag.to_owned()),
        )?;
        if self.remote.head(path, None)?.etag != tomb.etag {
            return Err(RemoteError::PreconditionFailed { key: path.to_owned() });
        }
        self.remote.delete(path, &tomb.etag)
    }

    /// The file a relative path names on disk: the path itself, or the name the scan
    /// found it under (an NFD name, say) when that differs.
    pub(super) fn abs(&self, rel: &str) -> PathBuf {
        self.planned.local.disk_path(self.repo.root(), rel)
    }

    /// Sends a local file (a symlink as its target text) under `cond`, with its kind in
    /// the object's metadata. `false`: a lost race, or the file changed since it was
    /// scanned; either way, left for next round.
    pub(super) fn upload(
        &self,
        path: &str,
        leaf: &Leaf,
        cond: &Condition,
        effects: &mut Effects,
    ) -> Result<bool, SyncError> {
        let content = leaf.id;
        let file = self.abs(path);
        let meta = match std::fs::symlink_metadata(&file) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(&file)(e)),
        };
        // A symlink goes up as its target path, never as what it points at. A file up to
        // `IN_MEMORY_UPLOAD` is read once, and the bytes sent are the bytes hashed, so a
        // file that changes meanwhile is never recorded under the old content id; larger
        // files are checked part by part by the remote.
        let bytes = if meta.file_type().is_symlink() {
            Some(std::fs::read_link(&file).map_err(io_err(&file))?.into_os_string().into_encoded_bytes())
        } else if meta.len() <= IN_MEMORY_UPLOAD {
            Some(std::fs::read(&file).map_err(io_err(&file))?)
        } else {
            None
        };
        if bytes.as_deref().is_some_and(|b| ObjectId::for_blob(b) != content) {
            return Ok(false);
        }
        let size = bytes.as_ref().map_or(meta.len(), |t| t.len() as u64);
        let body = bytes.as_deref().map_or(Body::File(&file), Body::Bytes);
        match self.remote.put(path, body, content, leaf.kind, cond) {
            Ok(w) => {
                effects.summary.uploaded += 1;
                effects.summary.bytes_up += size;
                let side = RemoteSide { etag: w.etag, content, size, kind: leaf.kind };
                effects.remote.push((path.to_owned(), Some(side)));
                Ok(true)
            }
            // A race, or the file changed while it was read: re-plan it next round. Any
            // other failure (a full disk, refused credentials...) stops the sync.
            Err(e) if e.is_race() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Downloads the object at `path` (as of the view) into the file atomically: a
    /// temporary file beside it, fsync, rename. A lost race is left for next round.
    ///
    /// `local` is what the file must hold until it is replaced: checked before the
    /// download, and again after it, on the old file moved aside (see [`take_aside`]), so
    /// an edit made during the download is never overwritten.
    pub(super) fn fetch(
        &self,
        i: usize,
        path: &str,
        local: Option<LocalCond>,
        effects: &mut Effects,
    ) -> Result<(), SyncError> {
        self.fetch_into(i, path, path, path, local, effects).map(|_| ())
    }

    /// [`Self::fetch`] of the object at `path` into the local file `into`, by way of the
    /// temporary file the journal names for `journaled` (the operation's path). Returns
    /// what was placed.
    pub(super) fn fetch_into(
        &self,
        i: usize,
        path: &str,
        into: &str,
        journaled: &str,
        local: Option<LocalCond>,
        effects: &mut Effects,
    ) -> Result<Option<Leaf>, SyncError> {
        let Some(obj) = self.planned.view.objects.get(path) else { return Ok(None) };
        let root = self.repo.root();
        let dest = self.abs(into);
        if let Some(link) = link_on_the_way(root, &dest) {
            // Creating folders or files through it would write where it points.
            let reason =
                format!("{} on the way is not a real folder; nothing is written through it", link.display());
            effects.summary.remote_skipped.push(crate::remote::SkippedKey { key: obj.key.clone(), reason });
            return Ok(None);
        }
        if local == Some(LocalCond::Absent) && !folder_gives_way(&dest) {
            let reason = folder_in_the_way(&dest);
            effects.summary.remote_skipped.push(crate::remote::SkippedKey { key: obj.key.clone(), reason });
            return Ok(None);
        }
        if !local_ok(&dest, local)? {
            effects.raced(path);
            return Ok(None);
        }
        let dir = dest.parent().unwrap_or(root);
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let tmp_path = self.temp_file(i, journaled);
        // Removed however this ends short of placing it (an error, a panic); after a
        // kill -9 the journal names it for the next run to remove.
        let _guard = TempGuard(&tmp_path);
        let got = if let Some(got) = self.take_staged(path, &tmp_path) {
            got
        } else if let Some(got) = self.download_to(&tmp_path, &obj.key)? {
            got
        } else {
            effects.raced(path);
            return Ok(None);
        };
        if let Some(reason) = make_kind(&tmp_path, into, got.kind)? {
            effects.summary.remote_skipped.push(crate::remote::SkippedKey { key: obj.key.clone(), reason });
            return Ok(None);
        }
        if !self.replace(&tmp_path, &dest, into, local)? {
            effects.raced(path);
            return Ok(None);
        }
        effects.summary.downloaded += 1;
        effects.summary.bytes_down += got.size;
        let leaf = Leaf { kind: got.kind, id: got.content, size: got.size };
        if got.kind != EntryKind::Symlink && got.size <= crate::merge::MAX_MERGE_BYTES as u64 {
            self.fetched.lock().expect("never poisoned").push((dest.clone(), got.content));
        }
        effects.local.push((into.to_owned(), Some(leaf.clone())));
        if into == path {
            effects.remote.push((path.to_owned(), Some(got)));
        }
        Ok(Some(leaf))
    }

    /// Operation `i`'s temporary file beside `path`, the one its journal entry names.
    pub(super) fn temp_file(&self, i: usize, path: &str) -> PathBuf {
        self.repo.root().join(super::journal::temp_path(&self.disk_rel(path), i, self.started_ns))
    }

    /// `rel` as it is on disk, relative to the root (see [`Self::abs`]).
    pub(super) fn disk_rel(&self, rel: &str) -> String {
        let abs = self.abs(rel);
        abs.strip_prefix(self.repo.root())
            .ok()
            .and_then(Path::to_str)
            .map_or_else(|| rel.to_owned(), str::to_owned)
    }

    /// Puts the downloaded `tmp` at `dest`, if `dest` still holds what `local` says.
    pub(super) fn replace(
        &self,
        tmp: &Path,
        dest: &Path,
        path: &str,
        local: Option<LocalCond>,
    ) -> Result<bool, SyncError> {
        match local {
            Some(LocalCond::Content(expected)) => {
                let old = self.trash(path);
                if !take_aside(dest, &old, expected)? {
                    return Ok(false);
                }
                if !place_new(tmp, dest)? {
                    // A new file appeared at the path meanwhile: it stays; the old version
                    // stays in the trash.
                    return Ok(false);
                }
                // The replaced version was the synced one: no need to keep it.
                let _ = std::fs::remove_file(&old);
                Ok(true)
            }
            Some(LocalCond::Absent) | None => place_new(tmp, dest),
        }
    }

    /// The object the remote view already read whole for `path`, moved to `tmp`: the
    /// bytes of the view's instant, as a GET at the view's snapshot would read them, under
    /// the ETag that came with them. `None` when there is none (or it cannot be moved:
    /// another file system, already taken): then it is downloaded.
    fn take_staged(&self, path: &str, tmp: &Path) -> Option<RemoteSide> {
        let s = self.planned.view.staged.get(path)?;
        std::fs::rename(&s.file, tmp).ok()?;
        // Hashed again (at most 1 MiB): only the bytes the view read are placed as them.
        let bytes = std::fs::read(tmp).ok()?;
        (ObjectId::for_blob(&bytes) == s.content && bytes.len() as u64 == s.size).then(|| RemoteSide {
            etag: s.etag.clone(),
            content: s.content,
            size: s.size,
            kind: s.kind,
        })
    }

    /// Writes the object into `tmp` and fsyncs it. Returns its size, its content id as
    /// hashed from the bytes, the ETag the read returned and the kind its metadata
    /// names, or `None` if it is gone.
    ///
    /// Every fetch takes "the remote version, whatever it is" (the local precondition was
    /// checked first), so bytes that differ from what the plan expected (a metadata hint
    /// that lied, or an object replaced after a listing without snapshots) are still
    /// right to keep; what is recorded is what was read, under the ETag that came with
    /// it, never the plan's expectation.
    fn download_to(&self, tmp: &Path, key: &str) -> Result<Option<RemoteSide>, SyncError> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(tmp)
            .map_err(io_err(tmp))?;
        let mut tee = HashingWriter::new(ObjectKind::Blob, &mut file);
        let info = match self.remote.get(key, self.planned.view.version, &mut tee) {
            Ok(info) => info,
            Err(RemoteError::NotFound { .. } | RemoteError::PreconditionFailed { .. }) => {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let (content, size) = tee.finish();
        file.sync_all().map_err(io_err(tmp))?;
        let kind = info.kind.filter(|k| !k.is_tree()).unwrap_or(EntryKind::File);
        Ok(Some(RemoteSide { etag: info.etag, content, size, kind }))
    }
}
