//! Looking at a folder's content and history: the changes between two revisions, one
//! side of a change as text, a blob's bytes, hashing files, and moving refs.
//!
//! These are what the working-tree and plumbing commands show; the caller only prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::object::{Commit, EntryKind};
use crate::reconcile::{Change, Leaf};
use crate::remote::{Listed, ObjectInfo, PRIVATE_PREFIX, Remote, Version};
use crate::{ObjectHasher, ObjectId, ObjectKind, Repo, RepoError, StoreError};

/// Errors from reading content for display.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The repository or its store failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The bucket could not be read.
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    /// A past instant of a bucket that keeps no history.
    #[error(
        "{remote} has no snapshots, so {rev} cannot read it as it was then; @{{TIME}} reads this folder's own history at that time"
    )]
    NoPointInTime {
        /// The remote.
        remote: String,
        /// The revision asked for.
        rev: String,
    },
    /// Bytes read from the bucket do not hash to the content id bmsync recorded for them.
    #[error(
        "{path}: the bucket's bytes hash to {actual}, not to the recorded {expected}; nothing was written"
    )]
    ContentMismatch {
        /// The path.
        path: String,
        /// The content id recorded.
        expected: ObjectId,
        /// The id of the bytes read.
        actual: ObjectId,
    },
    /// A folder file no longer hashes to the id its scan found.
    #[error("{path} changed while it was read; try again")]
    Changed {
        /// Relative path in the folder.
        path: String,
    },
}

impl From<StoreError> for InspectError {
    fn from(e: StoreError) -> Self {
        Self::Repo(e.into())
    }
}

/// The bucket's files at one instant (`remote`, `remote@{TIME}`, `snapshot:VERSION`),
/// from one listing; bytes are fetched only when asked for.
#[derive(Clone, Debug)]
pub struct RemoteTree {
    /// The version read at (`None`: the live state).
    pub version: Option<Version>,
    /// Objects by key (which is the path), bmsync's private keys left out.
    pub objects: BTreeMap<String, ObjectInfo>,
}

/// What a path names in a [`RemoteTree`].
#[derive(Clone, Debug)]
pub enum RemoteLookup<'a> {
    /// A file.
    File(&'a ObjectInfo),
    /// A folder: its entries' names, a subfolder's with a trailing `/`.
    Folder(Vec<String>),
    /// Nothing.
    Missing,
}

impl RemoteTree {
    /// Lists the bucket at `at` (`None`: now). A past instant of a bucket without
    /// snapshots is [`InspectError::NoPointInTime`].
    pub fn read(remote: &dyn Remote, rev: &str, at: Option<Version>) -> Result<Self, InspectError> {
        if at.is_some() && !remote.capabilities().snapshots {
            return Err(InspectError::NoPointInTime { remote: remote.url(), rev: rev.to_owned() });
        }
        let mut objects = BTreeMap::new();
        remote.list(at, &mut |l| {
            // As a sync's view: bmsync's own keys and keys that are no syncable path are left out.
            if let Listed::Object(o) = l
                && !o.key.starts_with(PRIVATE_PREFIX)
                && crate::object::check_path(&o.key).is_ok()
            {
                objects.insert(o.key.clone(), o);
            }
        })?;
        Ok(Self { version: at, objects })
    }

    /// The file or folder at `path` (`""`: the top; a trailing slash allowed).
    pub fn lookup(&self, path: &str) -> RemoteLookup<'_> {
        let p = path.trim_matches('/');
        if !p.is_empty()
            && let Some(o) = self.objects.get(p)
        {
            return RemoteLookup::File(o);
        }
        let prefix = if p.is_empty() { String::new() } else { format!("{p}/") };
        let mut names: Vec<String> = Vec::new();
        for key in self.objects.range(prefix.clone()..).map(|(k, _)| k).take_while(|k| k.starts_with(&prefix))
        {
            let rest = &key[prefix.len()..];
            let name = match rest.split_once('/') {
                Some((dir, _)) => format!("{dir}/"),
                None => rest.to_owned(),
            };
            if names.last() != Some(&name) {
                names.push(name);
            }
        }
        if names.is_empty() && !p.is_empty() { RemoteLookup::Missing } else { RemoteLookup::Folder(names) }
    }

    /// Every file at or under `path`.
    pub fn files_under(&self, path: &str) -> Vec<&ObjectInfo> {
        let p = path.trim_start_matches("./").trim_matches('/');
        self.objects
            .values()
            .filter(|o| {
                p.is_empty() || o.key == p || o.key.strip_prefix(p).is_some_and(|r| r.starts_with('/'))
            })
            .collect()
    }

    /// Downloads one file as it was at this tree's version, checked against the content
    /// id bmsync recorded on it, when it has one. Returns its blob id and bytes.
    pub fn fetch(&self, remote: &dyn Remote, o: &ObjectInfo) -> Result<(ObjectId, Vec<u8>), InspectError> {
        let mut bytes = Vec::new();
        let info = remote.get(&o.key, self.version, &mut bytes)?;
        let actual = ObjectId::for_blob(&bytes);
        if let Some(expected) = info.content.or(o.content)
            && expected != actual
        {
            return Err(InspectError::ContentMismatch { path: o.key.clone(), expected, actual });
        }
        Ok((actual, bytes))
    }
}

/// The changes between two revisions.
#[derive(Clone, Debug)]
pub struct RevDiff {
    /// The old side's root tree (`None`: empty).
    pub from: Option<ObjectId>,
    /// The new side's root tree (`None`: empty).
    pub to: Option<ObjectId>,
    /// The changes, renames detected, in path order.
    pub changes: Vec<Change>,
}

/// One side of a change: its path and leaf, if that side exists.
pub type Side<'a> = Option<(&'a str, &'a Leaf)>;

/// The old and new sides of a change.
pub fn sides(c: &Change) -> (Side<'_>, Side<'_>) {
    match c {
        Change::Added { path, new } => (None, Some((path, new))),
        Change::Deleted { path, old } => (Some((path, old)), None),
        Change::Modified { path, old, new } => (Some((path, old)), Some((path, new))),
        Change::Renamed { from, path, old, new } => (Some((from, old)), Some((path, new))),
    }
}

/// One side of a change as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SideText {
    /// That side does not exist (an addition's old side, a deletion's new side).
    Absent,
    /// The content, valid UTF-8.
    Text(String),
    /// Binary content, or content that is no longer available.
    NotText,
}

impl SideText {
    /// The text, empty for an absent side; `None` when not text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Absent => Some(""),
            Self::Text(t) => Some(t),
            Self::NotText => None,
        }
    }
}

/// Both sides of a change as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeText {
    /// The old side.
    pub old: SideText,
    /// The new side.
    pub new: SideText,
}

impl ChangeText {
    /// Whether either side is not text (a diff of it would be meaningless).
    pub fn is_binary(&self) -> bool {
        self.old == SideText::NotText || self.new == SideText::NotText
    }

    /// Both sides' text, an absent side as empty; `None` when either is not text.
    pub fn texts(&self) -> Option<(&str, &str)> {
        Some((self.old.as_text()?, self.new.as_text()?))
    }

    /// Lines added and removed, or `None` when either side is not text.
    pub fn line_counts(&self) -> Option<LineCounts> {
        let (o, n) = self.texts()?;
        let mut counts = LineCounts::default();
        for op in similar::TextDiff::from_lines(o, n).iter_all_changes() {
            match op.tag() {
                similar::ChangeTag::Insert => counts.insertions += 1,
                similar::ChangeTag::Delete => counts.deletions += 1,
                similar::ChangeTag::Equal => {}
            }
        }
        Some(counts)
    }
}

/// Lines added and removed by a change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineCounts {
    /// Lines added.
    pub insertions: usize,
    /// Lines removed.
    pub deletions: usize,
}

/// What a ref must point at for an update to go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefExpect {
    /// Whatever it points at now (read, then swapped only if still so).
    Current,
    /// Exactly this (`None`: the ref must not exist).
    Is(Option<ObjectId>),
}

/// A ref update that happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefUpdate {
    /// What it pointed at before (`None`: it did not exist).
    pub old: Option<ObjectId>,
    /// What it points at now (`None`: deleted).
    pub new: Option<ObjectId>,
}

/// Whether `path` is one of `filters` or under one (no filters: every path).
fn under(path: &str, filters: &[String]) -> bool {
    filters.is_empty()
        || filters.iter().any(|f| {
            let f = f.trim_end_matches('/');
            f.is_empty() || path == f || path.strip_prefix(f).is_some_and(|r| r.starts_with('/'))
        })
}

/// The blob id and size of a file's bytes, read in a stream.
pub fn hash_file(path: &Path) -> Result<(ObjectId, u64), InspectError> {
    let io = |source| InspectError::Io { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut h = ObjectHasher::new(ObjectKind::Blob);
    let size = std::io::copy(&mut std::io::BufReader::with_capacity(1 << 16, file), &mut h).map_err(io)?;
    Ok((h.finalize(), size))
}

impl Repo {
    /// The changes from revision `from` to revision `to` (see [`Repo::resolve_tree`]),
    /// only those at or under `paths` (a rename counts if either end is).
    pub fn diff_revs(&self, from: &str, to: &str, paths: &[String]) -> Result<RevDiff, RepoError> {
        let old = self.resolve_tree(from)?;
        let new = self.resolve_tree(to)?;
        let changes = self
            .store()
            .diff_with_renames(old, new)?
            .into_iter()
            .filter(|c| {
                under(c.path(), paths) || matches!(c, Change::Renamed { from, .. } if under(from, paths))
            })
            .collect();
        Ok(RevDiff { from: old, to: new, changes })
    }

    /// A commit and what it changed since its first parent (or since nothing).
    pub fn commit_changes(&self, id: &ObjectId) -> Result<(Commit, Vec<Change>), RepoError> {
        let c = self.store().get_commit(id)?;
        let parent_tree =
            c.parents.first().map(|p| self.store().get_commit(p).map(|pc| pc.tree)).transpose()?;
        let changes = self.store().diff_with_renames(parent_tree, Some(c.tree))?;
        Ok((c, changes))
    }

    /// A blob's bytes: from the store or, for content only the folder has (a scan that
    /// stored nothing), from the file at `path` when it still hashes to `id`.
    pub fn read_blob(&self, id: &ObjectId, path: &str) -> Result<Vec<u8>, InspectError> {
        match self.store().get_kind(id, ObjectKind::Blob) {
            Ok(b) => Ok(b),
            Err(StoreError::NotFound { .. }) => {
                let b = std::fs::read(crate::worktree::find_on_disk(self.root(), path))
                    .map_err(|source| InspectError::Io { path: path.into(), source })?;
                if ObjectId::for_blob(&b) == *id {
                    Ok(b)
                } else {
                    Err(InspectError::Changed { path: path.into() })
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A leaf's text: `None` for binary or unavailable content. A symlink's target is
    /// read only from the store (the folder's file would be what it points at).
    pub fn blob_text(&self, leaf: &Leaf, path: &str) -> Option<String> {
        let bytes = if leaf.kind == EntryKind::Symlink {
            self.store().get_kind(&leaf.id, ObjectKind::Blob).ok()?
        } else {
            self.read_blob(&leaf.id, path).ok()?
        };
        String::from_utf8(bytes).ok()
    }

    /// Both sides of a change as text.
    pub fn change_text(&self, c: &Change) -> ChangeText {
        let side = |s: Side<'_>| match s {
            None => SideText::Absent,
            Some((p, l)) => self.blob_text(l, p).map_or(SideText::NotText, SideText::Text),
        };
        let (o, n) = sides(c);
        ChangeText { old: side(o), new: side(n) }
    }

    /// Hashes a file and writes its blob into the store.
    pub fn store_file(&self, path: &Path) -> Result<(ObjectId, u64), InspectError> {
        let (id, size) = hash_file(path)?;
        let mut file =
            std::fs::File::open(path).map_err(|source| InspectError::Io { path: path.to_owned(), source })?;
        let batch = self.store().batch()?;
        batch.put_blob_from_reader(id, &mut file)?;
        batch.commit()?;
        Ok((id, size))
    }

    /// Points ref `name` at `new` (`None`: deletes it) if it still points at what
    /// `expected` says, in one store transaction.
    pub fn update_ref(
        &self,
        name: &str,
        new: Option<ObjectId>,
        expected: RefExpect,
    ) -> Result<RefUpdate, RepoError> {
        let old = match expected {
            RefExpect::Is(old) => old,
            RefExpect::Current => self.store().get_ref(name)?,
        };
        self.store().update_ref(name, old, new)?;
        Ok(RefUpdate { old, new })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_a_path_or_a_folder_above_it() {
        let f = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert!(under("a/b.md", &[]));
        assert!(under("a/b.md", &f(&["a"])));
        assert!(under("a/b.md", &f(&["a/"])));
        assert!(under("a/b.md", &f(&["a/b.md"])));
        assert!(!under("ab/c.md", &f(&["a"])));
        assert!(!under("a.md", &f(&["a"])));
    }

    #[test]
    fn line_counts_need_text_on_both_sides() {
        let t = |old, new| ChangeText { old, new };
        let text = |s: &str| SideText::Text(s.to_owned());
        let c = t(text("a\nb\n"), text("a\nc\nd\n")).line_counts();
        assert_eq!(c, Some(LineCounts { insertions: 2, deletions: 1 }));
        assert_eq!(
            t(SideText::Absent, text("x\n")).line_counts(),
            Some(LineCounts { insertions: 1, deletions: 0 })
        );
        assert_eq!(t(SideText::NotText, text("x\n")).line_counts(), None);
        assert!(t(text(""), SideText::NotText).is_binary());
    }
}
