//! Three-way merges of a text file both sides edited (`merge` operations): the base
//! version comes from the store, this client's from the folder, the teammate's from the
//! bucket at the plan's snapshot. A clean merge is written locally with the checked,
//! atomic replace a download uses (only over the version merged), then uploaded under
//! `If-Match` on the remote version merged; a lost race on either side leaves the path
//! for the next round, which plans it afresh. Edits that overlap, and files that turn
//! out not to be text, become an `edit_edit` conflict, handled as any other.

use super::local::{TempGuard, make_kind};
use super::ops::{Effects, RemoteSide};
use super::options::io_err;
use super::rounds::Round;
use super::{ConflictReport, ConflictStyle, Direction, MergeReport, SyncError};
use crate::id::{ObjectId, ObjectKind};
use crate::merge::{MergeLabels, MergeOptions, NoteMerge, TextMerge, merge_note, merge_text};
use crate::reconcile::{Action, Leaf, LocalCond, Op, Reason};
use crate::remote::{Condition, RemoteError};

/// What the three versions merge to.
enum Outcome {
    /// Every edit merged.
    Clean(Vec<u8>),
    /// Some overlap: the frontmatter keys both changed, and the file with markers (when
    /// markers were asked for).
    Overlap { keys: Vec<String>, markers: Option<Vec<u8>> },
    /// Not text, or too large: never merged.
    NotText,
}

impl Round<'_> {
    /// A `merge` operation (see the module comment).
    pub(super) fn merge(&self, i: usize, op: &Op, effects: &mut Effects) -> Result<(), SyncError> {
        let path = op.path.as_str();
        let (Some(base), Some(local), Some(remote)) = (&op.sides.base, &op.sides.local, &op.sides.remote)
        else {
            return self.conflict(i, op, effects);
        };
        // Push and pull change one side only: there is nothing to merge into.
        if self.opts.direction != Direction::Both {
            return self.conflict(i, op, effects);
        }
        // Following a local rename, theirs is still at the old key.
        let moved = op.action == Action::MoveRemote;
        let src = if moved { op.from.as_deref().unwrap_or(path) } else { path };
        let Some(obj) = self.planned.view.objects.get(src) else {
            effects.raced(path);
            return Ok(());
        };
        let store = self.repo.store();
        if !store.contains(&base.id)? {
            // No base version to merge from (a store made before it kept blobs).
            return self.conflict(i, op, effects);
        }
        let base_bytes = store.get_kind(&base.id, ObjectKind::Blob)?;
        let abs = self.abs(path);
        let local_bytes = match std::fs::read(&abs) {
            Ok(b) if ObjectId::for_blob(&b) == local.id => b,
            Ok(_) => {
                effects.raced(path);
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                effects.raced(path);
                return Ok(());
            }
            Err(e) => return Err(io_err(&abs)(e)),
        };
        let mut remote_bytes = Vec::new();
        match self.remote.get(&obj.key, self.planned.view.version, &mut remote_bytes) {
            Ok(info) if info.etag == obj.etag && ObjectId::for_blob(&remote_bytes) == remote.id => {}
            Ok(_) | Err(RemoteError::NotFound { .. } | RemoteError::PreconditionFailed { .. }) => {
                effects.raced(path);
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        effects.summary.bytes_down += remote_bytes.len() as u64;
        // Kept, so that `resolve` and the next merge find every version in the store.
        store.put(ObjectKind::Blob, &remote_bytes)?;
        let outcome = self.outcome(path, &base_bytes, &local_bytes, &remote_bytes);
        if moved && !matches!(outcome, Outcome::Clean(_)) {
            // Edits that do not merge across a rename: ours goes up at the new path, and
            // theirs stays at the old one, which the next round restores here (a
            // `delete_edit` conflict). Both versions are kept.
            if self.upload(path, local, &Condition::IfAbsent, effects)? {
                effects.raced(src);
            } else {
                effects.raced(path);
            }
            return Ok(());
        }
        match outcome {
            Outcome::Clean(merged) => {
                let merged_leaf =
                    Leaf { kind: local.kind, id: ObjectId::for_blob(&merged), size: merged.len() as u64 };
                if !self.put_merged(i, op, &merged, &merged_leaf, obj, effects)? {
                    return Ok(());
                }
                effects.summary.merged.push(MergeReport {
                    path: path.to_owned(),
                    base: base.id,
                    local: local.id,
                    remote: remote.id,
                    merged: merged_leaf.id,
                });
                Ok(())
            }
            Outcome::Overlap { keys, markers: Some(marked) } => {
                let leaf =
                    Leaf { kind: local.kind, id: ObjectId::for_blob(&marked), size: marked.len() as u64 };
                if self.put_merged(i, op, &marked, &leaf, obj, effects)? {
                    effects
                        .summary
                        .conflicts
                        .push(ConflictReport { keys, ..ConflictReport::of(op, Reason::EditEdit) });
                }
                Ok(())
            }
            Outcome::Overlap { keys, markers: None } => self.conflict_with(i, op, keys, effects),
            Outcome::NotText => self.conflict(i, op, effects),
        }
    }

    /// Merges the three versions: a note (`.md`) with its frontmatter key by key, any
    /// other file line by line.
    fn outcome(&self, path: &str, base: &[u8], local: &[u8], remote: &[u8]) -> Outcome {
        let markers = self.opts.conflict_style == ConflictStyle::Markers;
        let opts = MergeOptions {
            labels: MergeLabels {
                current: format!("{path} (local)"),
                base: format!("{path} (base)"),
                other: format!("{path} (remote)"),
            },
            markers,
        };
        if crate::merge::is_note(path) {
            match merge_note(base, local, remote, &opts) {
                Ok(NoteMerge::Clean(m)) => Outcome::Clean(m),
                Ok(NoteMerge::Conflicted(c)) => Outcome::Overlap { keys: c.keys, markers: c.with_markers },
                Err(_) => Outcome::NotText,
            }
        } else {
            match merge_text(base, local, remote, &opts) {
                Ok(TextMerge::Clean(m)) => Outcome::Clean(m),
                Ok(TextMerge::Conflicted { with_markers, .. }) => {
                    Outcome::Overlap { keys: Vec::new(), markers: markers.then_some(with_markers) }
                }
                Err(_) => Outcome::NotText,
            }
        }
    }

    /// Puts `bytes` (the merge) at the path on both sides: locally over the version
    /// merged only, then remotely under `If-Match` on the version merged. `false`: a
    /// side changed meanwhile, and the path is left for the next round.
    fn put_merged(
        &self,
        i: usize,
        op: &Op,
        bytes: &[u8],
        leaf: &Leaf,
        obj: &crate::remote::RemoteEntry,
        effects: &mut Effects,
    ) -> Result<bool, SyncError> {
        let path = op.path.as_str();
        let local = op.sides.local.as_ref().expect("a merge has a local side");
        self.repo.store().put(ObjectKind::Blob, bytes)?;
        if leaf.id != local.id {
            let dest = self.abs(path);
            let tmp = self.temp_file(i, path);
            let _guard = TempGuard(&tmp);
            write_synced(&tmp, bytes)?;
            if make_kind(&tmp, path, leaf.kind)?.is_some()
                || !self.replace(&tmp, &dest, path, Some(LocalCond::Content(local.id)))?
            {
                effects.raced(path);
                return Ok(false);
            }
            effects.local.push((path.to_owned(), Some(leaf.clone())));
        }
        let same_as_remote = op.sides.remote.as_ref().filter(|r| r.id == leaf.id && r.kind == leaf.kind);
        if op.action == Action::MoveRemote {
            // The merge goes to the new key (nothing may be there), and the old key goes.
            let from = op.from.as_deref().expect("a move has a source");
            let sent = match same_as_remote {
                Some(r) => self.copy_remote(from, &obj.etag, r, path, effects)?,
                None => self.upload(path, leaf, &Condition::IfAbsent, effects)?,
            };
            if !sent {
                effects.raced(path);
                return Ok(false);
            }
            effects.summary.moved_remote += 1;
            self.remove_remote(from, &obj.etag, effects)?;
            return Ok(true);
        }
        if same_as_remote.is_some() {
            // The merge is the remote version: the bucket has it already.
            effects.remote.push((path.to_owned(), Some(RemoteSide::listed(obj))));
            return Ok(true);
        }
        if !self.upload(path, leaf, &Condition::IfMatch(obj.etag.clone()), effects)? {
            effects.raced(path);
            return Ok(false);
        }
        Ok(true)
    }
}

/// Writes `bytes` to the new file `path` and fsyncs it.
fn write_synced(path: &std::path::Path, bytes: &[u8]) -> Result<(), SyncError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io_err(path))
}

/// Replaces a file this sync just made (a conflict copy) with `bytes`, atomically, by
/// way of the operation's journaled temporary file `tmp`, keeping its permissions.
pub(super) fn rewrite_own_file(
    path: &std::path::Path,
    tmp: &std::path::Path,
    bytes: &[u8],
) -> Result<(), SyncError> {
    let _guard = TempGuard(tmp);
    write_synced(tmp, bytes)?;
    let perms = std::fs::metadata(path).map_err(io_err(path))?.permissions();
    std::fs::set_permissions(tmp, perms).map_err(io_err(tmp))?;
    std::fs::rename(tmp, path).map_err(io_err(path))
}
