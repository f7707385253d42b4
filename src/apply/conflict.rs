//! Conflicts, resolved as the options say (both versions kept by default), and the two
//! cases where a file and a folder claim one name: nothing is ever deleted without a copy
//! unless it is exactly what the last sync saw.

use super::local::{local_content, take_aside};
use super::ops::Effects;
use super::rounds::Round;
use super::{ConflictReport, Direction, OnConflict, SyncError, conflict_name};
use crate::object::EntryKind;
use crate::reconcile::{Leaf, LocalCond, Op, Reason};
use crate::remote::Condition;

impl Round<'_> {
    /// A conflict, resolved as the options say: by default both versions are kept (the
    /// remote one at the path on both sides, the local one beside it under a `conflict`
    /// name on both sides). Nothing is ever deleted without a copy.
    pub(super) fn conflict(&self, i: usize, op: &Op, effects: &mut Effects) -> Result<(), SyncError> {
        self.conflict_with(i, op, Vec::new(), effects)
    }

    /// [`Self::conflict`], reporting the frontmatter keys both sides changed.
    pub(super) fn conflict_with(
        &self,
        i: usize,
        op: &Op,
        keys: Vec<String>,
        effects: &mut Effects,
    ) -> Result<(), SyncError> {
        let local = op.sides.local.as_ref().filter(|l| l.kind != EntryKind::Tree);
        let remote = op.sides.remote.as_ref().filter(|l| l.kind != EntryKind::Tree);
        // A merge that did not go through is an edit/edit conflict.
        let reason = if op.action == crate::reconcile::Action::Merge { Reason::EditEdit } else { op.reason };
        let report = ConflictReport { keys, ..ConflictReport::of(op, reason) };
        if op.reason == crate::reconcile::Reason::TypeChange && self.opts.direction == Direction::Both {
            return self.type_change(i, op, report, effects);
        }
        if op.reason == crate::reconcile::Reason::TypeChange || (local.is_none() && remote.is_none()) {
            effects.summary.conflicts.push(report);
            return Ok(());
        }
        match self.opts.on_conflict.unwrap_or(OnConflict::KeepBoth) {
            OnConflict::KeepBoth => self.keep_both(i, op, local, remote, report, effects),
            OnConflict::KeepLocal => self.keep_local(op, local, effects),
            OnConflict::KeepRemote => self.keep_remote(i, op, local, remote, effects),
        }
    }

    /// A file on one side where the other has a folder: the folder keeps the path. The
    /// file moves aside to a `conflict` copy on both sides, or, when it is what the base
    /// held (the other side replaced it on purpose), goes as a deletion would: locally to
    /// the trash, remotely under If-Match. The path is then left for the next round,
    /// which plans the folder's files like any others.
    fn type_change(
        &self,
        i: usize,
        op: &Op,
        mut report: ConflictReport,
        effects: &mut Effects,
    ) -> Result<(), SyncError> {
        let path = op.path.as_str();
        let file = |l: &Option<Leaf>| l.clone().filter(|l| !l.kind.is_tree());
        let tree = |l: &Option<Leaf>| l.as_ref().is_some_and(|l| l.kind.is_tree());
        let remote_tree = op.sides.remote.as_ref().is_some_and(|l| l.kind.is_tree());
        if remote_tree && self.planned.view.objects.contains_key(path) {
            // The bucket holds a file at the path besides the folder: that file moves
            // aside first; the rest waits for the next round.
            self.move_hidden_file(i, op, effects)?;
            effects.raced(path);
            return Ok(());
        }
        let base = file(&op.sides.base);
        // A replaced file that was the base's is no conflict: the other side's choice.
        let mut replaced = false;
        if let (Some(l), true) = (file(&op.sides.local), tree(&op.sides.remote)) {
            let abs = self.abs(path);
            if base.as_ref() == Some(&l) {
                replaced = true;
                if take_aside(&abs, &self.trash(path), l.id)? {
                    effects.summary.deleted_local += 1;
                    effects.local.push((path.to_owned(), None));
                }
            } else {
                let copy = self.free_conflict_name(path)?;
                if take_aside(&abs, &self.abs(&copy), l.id)? {
                    effects.local.push((path.to_owned(), None));
                    effects.local.push((copy.clone(), Some(l.clone())));
                    self.upload(&copy, &l, &Condition::IfAbsent, effects)?;
                    report.local_copy = Some(copy);
                }
            }
        } else if let (true, Some(r)) = (tree(&op.sides.local), file(&op.sides.remote)) {
            let Some(etag) = self.planned.view.objects.get(path).map(|o| o.etag.clone()) else {
                return Ok(());
            };
            if base.as_ref() == Some(&r) {
                replaced = true;
                self.delete_remote(path, &etag, effects)?;
            } else {
                let copy = self.free_conflict_name(path)?;
                if let Some(got) = self.fetch_into(i, path, &copy, path, Some(LocalCond::Absent), effects)?
                    && self.upload(&copy, &got, &Condition::IfAbsent, effects)?
                {
                    self.delete_remote(path, &etag, effects)?;
                    report.local_copy = Some(copy);
                }
            }
        }
        if !replaced {
            effects.summary.conflicts.push(report);
        }
        // What the path holds now is planned in the next round.
        effects.raced(path);
        Ok(())
    }

    /// A key that is a file in the bucket and also the folder of other keys (two clients
    /// wrote both at once): no folder can hold both, so the file moves aside to a
    /// `conflict` copy (downloaded, uploaded under `If-None-Match: *`, then the key
    /// deleted under `If-Match`), and the folder keeps the path. Reported with reason
    /// `remote_key_collision`: two names met, not two edits.
    pub(super) fn move_hidden_file(&self, i: usize, op: &Op, effects: &mut Effects) -> Result<(), SyncError> {
        let path = op.path.as_str();
        // Always a copy, even of the base's version: no one deleted that key, so no one
        // chose the folder over it.
        let Some(etag) = self.planned.view.objects.get(path).map(|o| o.etag.clone()) else { return Ok(()) };
        let copy = self.free_conflict_name(path)?;
        if let Some(got) = self.fetch_into(i, path, &copy, path, Some(LocalCond::Absent), effects)?
            && self.upload(&copy, &got, &Condition::IfAbsent, effects)?
        {
            self.delete_remote(path, &etag, effects)?;
            effects.summary.conflicts.push(ConflictReport {
                local_copy: Some(copy),
                ..ConflictReport::of(op, Reason::RemoteKeyCollision)
            });
        }
        Ok(())
    }

    fn keep_both(
        &self,
        i: usize,
        op: &Op,
        local: Option<&Leaf>,
        remote: Option<&Leaf>,
        mut report: ConflictReport,
        effects: &mut Effects,
    ) -> Result<(), SyncError> {
        let path = op.path.as_str();
        let abs = self.abs(path);
        if let Some(l) = local {
            if remote.is_some() {
                // The local version moves aside, under a name that says `conflict`.
                let copy = self.free_conflict_name(path)?;
                let copy_abs = self.abs(&copy);
                if !take_aside(&abs, &copy_abs, l.id)? {
                    effects.raced(path);
                    return Ok(());
                }
                effects.local.push((path.to_owned(), None));
                let l = self.mark_copy(i, &copy, path, op.reason, l)?;
                effects.local.push((copy.clone(), Some(l.clone())));
                if !self.upload(&copy, &l, &Condition::IfAbsent, effects)? {
                    effects.raced(&copy);
                }
                report.local_copy = Some(copy);
            } else if local_content(&abs)? != Some(l.id)
                || !self.upload(path, l, &Condition::IfAbsent, effects)?
            {
                // Edited here, deleted there: the local edit is kept, and sent back.
                effects.raced(path);
            }
        }
        // The remote version takes the path locally (the teammate's edit is kept).
        if remote.is_some() {
            self.fetch(i, path, Some(LocalCond::Absent), effects)?;
        }
        effects.summary.conflicts.push(report);
        Ok(())
    }

    /// `--on-conflict keep-local`: the local version wins on the remote, still under
    /// If-Match, so a newer teammate write is never overwritten unseen.
    fn keep_local(&self, op: &Op, local: Option<&Leaf>, effects: &mut Effects) -> Result<(), SyncError> {
        let path = op.path.as_str();
        if self.opts.direction == Direction::Pull {
            effects.summary.skipped.push(format!("{path}: conflict, kept local"));
            return Ok(());
        }
        let etag = self.planned.view.objects.get(path).map(|o| o.etag.clone());
        match (local, etag) {
            (Some(l), etag) => {
                let abs = self.abs(path);
                let cond = etag.map_or(Condition::IfAbsent, Condition::IfMatch);
                if local_content(&abs)? != Some(l.id) || !self.upload(path, l, &cond, effects)? {
                    effects.raced(path);
                    return Ok(());
                }
            }
            (None, Some(etag)) if self.opts.deletes_remote() => self.delete_remote(path, &etag, effects)?,
            (None, _) => {
                effects
                    .summary
                    .skipped
                    .push(format!("{path}: conflict, kept local (deletions were not asked for)"));
                return Ok(());
            }
        }
        effects.summary.resolved.push(path.to_owned());
        Ok(())
    }

    /// `--on-conflict keep-remote`: the remote version wins locally; the local one goes
    /// to the trash first, recoverable.
    fn keep_remote(
        &self,
        i: usize,
        op: &Op,
        local: Option<&Leaf>,
        remote: Option<&Leaf>,
        effects: &mut Effects,
    ) -> Result<(), SyncError> {
        let path = op.path.as_str();
        if self.opts.direction == Direction::Push {
            effects.summary.skipped.push(format!("{path}: conflict, kept remote"));
            return Ok(());
        }
        if remote.is_none() && !self.opts.deletes_local() {
            effects
                .summary
                .skipped
                .push(format!("{path}: conflict, kept remote (deletions were not asked for)"));
            return Ok(());
        }
        let abs = self.abs(path);
        if let Some(l) = local {
            if !take_aside(&abs, &self.trash(path), l.id)? {
                effects.raced(path);
                return Ok(());
            }
            effects.summary.deleted_local += 1;
            effects.local.push((path.to_owned(), None));
        }
        if remote.is_some() {
            self.fetch(i, path, Some(LocalCond::Absent), effects)?;
        }
        effects.summary.resolved.push(path.to_owned());
        Ok(())
    }

    /// A note moved aside to `copy` must not claim the note's identity: when it has
    /// frontmatter, the copy gets a permalink of its own and says what it is a copy of
    /// (`format-spec/merge.md`). Our own new file, so it is rewritten in place. Returns
    /// what the copy holds now.
    fn mark_copy(
        &self,
        i: usize,
        copy: &str,
        original: &str,
        reason: Reason,
        leaf: &Leaf,
    ) -> Result<Leaf, SyncError> {
        if leaf.kind == EntryKind::Symlink
            || !crate::merge::is_note(copy)
            || leaf.size > crate::merge::MAX_MERGE_BYTES as u64
        {
            return Ok(leaf.clone());
        }
        let abs = self.abs(copy);
        let bytes = std::fs::read(&abs).map_err(super::options::io_err(&abs))?;
        if crate::id::ObjectId::for_blob(&bytes) != leaf.id || !crate::merge::has_frontmatter(&bytes) {
            return Ok(leaf.clone());
        }
        let kind = crate::conflicts::ConflictKind::from_reason(reason).map_or("edit_edit", |k| k.name());
        let marked = crate::merge::conflict_copy_note(&bytes, copy, original, kind);
        super::merge::rewrite_own_file(&abs, &self.temp_file(i, original), &marked)?;
        self.repo.store().put(crate::id::ObjectKind::Blob, &marked)?;
        Ok(Leaf { kind: leaf.kind, id: crate::id::ObjectId::for_blob(&marked), size: marked.len() as u64 })
    }

    /// A conflict-copy name for `path` that no file has yet.
    fn free_conflict_name(&self, path: &str) -> Result<String, SyncError> {
        let when = self.opts.conflict_stamp().unwrap_or_else(|| {
            humantime::format_rfc3339_seconds(crate::clock::now())
                .to_string()
                .replace([':', '-'], "")
                .trim_end_matches('Z')
                .to_owned()
        });
        let client = self.repo.client_id();
        for n in 0u32.. {
            let stamp = if n == 0 { when.clone() } else { format!("{when}-{n}") };
            let copy = conflict_name(path, client, &stamp);
            if local_content(&self.abs(&copy))?.is_none() && !self.planned.view.objects.contains_key(&copy) {
                return Ok(copy);
            }
        }
        unreachable!("some counter gives a free name")
    }
}
