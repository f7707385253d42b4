//! Recording a converged state as the new sync base.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::planning::BaseState;
use super::rounds::{Observed, leaves, now_ns};
use super::{Planned, SyncError};
use crate::id::{ObjectId, ObjectKind};
use crate::object::{Commit, Manifest, ManifestEntry, RemoteBaseline};
use crate::reconcile::{Leaf, PlanError, build_tree};
use crate::remote::{Listed, Remote, RemoteError, Version};
use crate::repo::{REF_BASE, REF_HEAD, Repo};
use crate::worktree::{Collision, CollisionKind};

/// Keeps the case collisions of this sync for `status` (which reads no remote). Written
/// only when they changed.
pub(super) fn remember_collisions(repo: &Repo, collisions: &[Collision]) -> Result<(), SyncError> {
    let case: Vec<&Collision> = collisions.iter().filter(|c| c.kind == CollisionKind::Case).collect();
    let text = serde_json::to_vec(&case).expect("collisions serialise");
    let old = repo.store().meta(crate::repo::META_COLLISIONS)?;
    if old.as_deref().unwrap_or(b"[]") != text.as_slice() {
        repo.store().set_meta(crate::repo::META_COLLISIONS, &text)?;
    }
    Ok(())
}

/// The name of a conflict copy: `notes/idea.md` → `notes/idea.conflict-CLIENT-TIME.md`.
pub fn conflict_name(path: &str, client: &str, when: &str) -> String {
    let (dir, file) = path.rsplit_once('/').map_or(("", path), |(d, f)| (d, f));
    let (stem, ext) = match file.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (file, String::new()),
    };
    let name = format!("{stem}.conflict-{client}-{when}{ext}");
    if dir.is_empty() { name } else { format!("{dir}/{name}") }
}

/// Takes the snapshot a new base is paired with and, after our own writes, lists the
/// remote at it: key → ETag. The keys the old base `known` cut a large listing into
/// ranges listed side by side.
pub(super) fn verified_snapshot(
    repo: &Repo,
    remote: &dyn Remote,
    wrote: bool,
    known: Option<&Manifest>,
) -> Result<(Version, Option<BTreeMap<String, String>>), RemoteError> {
    // Unique names: a bucket may refuse a snapshot name it already has.
    let v = remote.snapshot(Some(&format!("bmsync-{}-{}", repo.client_id(), now_ns())))?;
    if !wrote {
        return Ok((v, None));
    }
    let mut seen = BTreeMap::new();
    let bounds =
        crate::remote::split_bounds(known.map_or(&[][..], Manifest::entries).iter().map(|e| e.key.as_str()));
    remote.list_ranges(Some(v), &bounds, &mut |l| {
        if let Listed::Object(o) = l {
            seen.insert(o.key, o.etag);
        }
    })?;
    Ok((v, Some(seen)))
}

/// Records the new base: every path where both sides were seen to hold the same
/// content; elsewhere the old base's entry stays, so the next sync sees the change.
///
/// On a snapshot-enabled remote the base is paired with a new snapshot taken after
/// applying. After remote writes (`wrote`), the remote is listed at that snapshot, and a
/// path enters the base only if the snapshot shows it as we left it: a teammate's write
/// that landed between our apply and the snapshot stays unsynced, so the next sync
/// treats it as a remote change. Returns those paths too.
///
/// After three-way merges (`merged`), the commit has a second parent, as a git merge
/// does: a commit of the remote state the merges took the teammates' edits from.
pub(super) fn record_base(
    repo: &Repo,
    remote: &dyn Remote,
    planned: &Planned,
    observed: &Observed,
    wrote: bool,
    merged: bool,
) -> Result<(ObjectId, Option<Version>, Vec<String>), SyncError> {
    let (snapshot, seen) = if remote.capabilities().snapshots {
        // If the remote fails now (the outage that stopped the apply, say), the base is
        // still recorded, unpaired: its manifest holds only ETags we wrote or listed,
        // which stays true whatever landed after them.
        let known = planned.base.as_ref().map(|b| &b.manifest);
        verified_snapshot(repo, remote, wrote, known).map_or((None, None), |(v, seen)| (Some(v), seen))
    } else {
        (None, None)
    };
    let old_leaves = match &planned.base {
        Some(BaseState { tree: Some(tree), .. }) => leaves(repo, *tree, &std::collections::HashMap::new())?,
        _ => BTreeMap::new(),
    };
    let old_manifest = planned.base.as_ref().map(|b| &b.manifest);
    let mut converged: BTreeMap<String, (Leaf, ManifestEntry)> = BTreeMap::new();
    let mut moved = Vec::new();
    let paths: BTreeSet<&String> =
        observed.local.keys().chain(observed.remote.keys()).chain(old_leaves.keys()).collect();
    for p in paths {
        let agreed = match (observed.local.get(p), observed.remote.get(p)) {
            (Some(l), Some(r)) if l.id == r.content && l.kind == r.kind => {
                if seen.as_ref().is_some_and(|s| s.get(p.as_str()) != Some(&r.etag)) {
                    moved.push(p.clone());
                    None
                } else {
                    Some((l, r))
                }
            }
            _ => None,
        };
        if let Some((l, r)) = agreed {
            let entry = ManifestEntry {
                path: p.clone(),
                key: p.clone(),
                etag: r.etag.clone(),
                size: r.size,
                content: Some(r.content),
                kind: r.kind,
            };
            converged.insert(p.clone(), (l.clone(), entry));
        } else if (observed.local.contains_key(p) || observed.remote.contains_key(p))
            && let (Some(l), Some(e)) = (old_leaves.get(p), old_manifest.and_then(|m| m.get(p)))
        {
            converged.insert(p.clone(), (l.clone(), (*e).clone()));
        }
    }
    let leaves: Vec<(String, Leaf)> = converged.iter().map(|(p, (l, _))| (p.clone(), l.clone())).collect();
    let (root, manifest_id) =
        put_state(repo, leaves, converged.into_values().map(|(_, e)| e).collect(), true)?;
    let old_base = planned.base.as_ref().map(|b| b.commit);
    let head = repo.head()?;
    let theirs = if merged { Some(remote_commit(repo, remote, planned, old_base)?) } else { None };
    let parents: Vec<ObjectId> =
        old_base.into_iter().chain(theirs).chain(head.filter(|h| Some(*h) != old_base)).collect();
    let commit = Commit {
        tree: root,
        parents,
        client_id: repo.client_id().to_owned(),
        timestamp_ns: i64::try_from(now_ns()).unwrap_or(i64::MAX),
        message: "sync".to_owned(),
        baseline: Some(RemoteBaseline { remote: remote.url(), snapshot, manifest: manifest_id }),
    };
    let id = repo.store().put_commit(&commit)?;
    repo.store().update_ref(REF_BASE, old_base, Some(id))?;
    repo.store().update_ref(REF_HEAD, head, Some(id))?;
    Ok((id, snapshot, moved))
}

/// Stores the tree of `leaves` and the manifest of `entries` in one batch. Returns the
/// root tree's id (the empty tree's when there are no leaves) and the manifest's. For a
/// `base`, also the tree of the manifest's own entries and the `manifest-tree` record
/// naming it, so the next plan patches that tree instead of building the remote one
/// from the whole listing. (It is the root tree itself, unless a path's local and remote
/// leaves differ in size.)
fn put_state(
    repo: &Repo,
    leaves: Vec<(String, Leaf)>,
    entries: Vec<ManifestEntry>,
    base: bool,
) -> Result<(ObjectId, ObjectId), SyncError> {
    let tree_error = |e| SyncError::Plan(PlanError::RemoteTree(e));
    let of_entries = |m: &Manifest| -> Vec<(String, Leaf)> {
        m.entries()
            .iter()
            .filter_map(|e| e.content.map(|id| (e.path.clone(), Leaf { kind: e.kind, id, size: e.size })))
            .collect()
    };
    let manifest = Manifest::new(entries)
        .map_err(|e| SyncError::Io { path: PathBuf::from("manifest"), source: std::io::Error::other(e) })?;
    let manifest_leaves = base.then(|| of_entries(&manifest)).filter(|m| *m != leaves);
    let (root, mut trees) = build_tree(leaves).map_err(tree_error)?;
    let mut manifest_root = root;
    if let Some(m) = manifest_leaves {
        let (r, t) = build_tree(m).map_err(tree_error)?;
        manifest_root = r;
        trees.extend(t);
    }
    let batch = repo.store().batch()?;
    for t in trees.values() {
        batch.put(ObjectKind::Tree, &t.encode())?;
    }
    let empty = || batch.put(ObjectKind::Tree, &crate::object::Tree::default().encode()).map(|(id, _)| id);
    let root = match root {
        Some(r) => r,
        None => empty()?,
    };
    let (manifest_id, _) = batch.put(ObjectKind::Manifest, &manifest.encode())?;
    if base && let Some(t) = manifest_root {
        batch.set_meta(
            crate::repo::META_MANIFEST_TREE,
            &crate::repo::manifest_tree_record(&manifest_id, &t),
        )?;
    }
    batch.commit()?;
    Ok((root, manifest_id))
}

/// A commit of the remote as the plan saw it (its tree and manifest, at the plan's
/// snapshot), whose parent is the old base: the "theirs" side of a merge.
fn remote_commit(
    repo: &Repo,
    remote: &dyn Remote,
    planned: &Planned,
    parent: Option<ObjectId>,
) -> Result<ObjectId, SyncError> {
    let objects = &planned.view.objects;
    let leaves = objects.iter().map(|(p, o)| {
        (p.clone(), Leaf { kind: o.kind, id: crate::remote::RemoteView::content_of(o), size: o.size })
    });
    let entries = objects
        .iter()
        .map(|(p, o)| ManifestEntry {
            path: p.clone(),
            key: o.key.clone(),
            etag: o.etag.clone(),
            size: o.size,
            content: o.content,
            kind: o.kind,
        })
        .collect();
    let (root, manifest_id) = put_state(repo, leaves.collect(), entries, false)?;
    let commit = Commit {
        tree: root,
        parents: parent.into_iter().collect(),
        client_id: repo.client_id().to_owned(),
        timestamp_ns: i64::try_from(now_ns()).unwrap_or(i64::MAX),
        message: "remote".to_owned(),
        baseline: Some(RemoteBaseline {
            remote: remote.url(),
            snapshot: planned.view.version,
            manifest: manifest_id,
        }),
    };
    Ok(repo.store().put_commit(&commit)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_names_say_conflict_and_keep_the_extension() {
        assert_eq!(
            conflict_name("notes/idea.md", "alice", "20261125T2330"),
            "notes/idea.conflict-alice-20261125T2330.md"
        );
        assert_eq!(conflict_name("README", "b", "t"), "README.conflict-b-t");
        assert_eq!(conflict_name("a/.hidden", "b", "t"), "a/.hidden.conflict-b-t");
    }
}
