//! Open conflicts: what a sync could not settle on its own, kept in the store until
//! someone settles it, by `resolve` or by hand.
//!
//! A sync that meets a real collision keeps both versions (one at the path, the other in
//! a sibling copy) and writes a [`ConflictRecord`]. The record stays open while there is
//! something to settle: while its copy exists, or, for a conflict that needed no copy
//! (an edit against a deletion), while the path still holds what the sync left there.
//! Deleting the copy by hand is therefore a resolution too. The records are JSON in the
//! store's `conflicts` meta record; `format-spec/conflicts.md` gives the schema, which
//! agents read through `conflicts --json`.

use std::path::{Path, PathBuf};

use crate::id::{ObjectHasher, ObjectId, ObjectKind};
use crate::reconcile::Reason;
use crate::store::{Store, StoreError};

/// The store's meta key holding the conflict records.
pub const META_CONFLICTS: &str = "conflicts";

/// What collided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// Edited on both sides, and the edits could not be merged.
    EditEdit,
    /// Added on both sides with different contents.
    AddAdd,
    /// Deleted locally, edited on the remote: the remote edit is at the path.
    DeleteEdit,
    /// Edited locally, deleted on the remote: the local edit is at the path.
    EditDelete,
    /// A file on one side, a folder on the other: the folder has the path.
    TypeChange,
    /// A key that was a file and the folder of other keys at once.
    RemoteKeyCollision,
    /// Renamed on both sides to different paths: the file is at the remote's path, and
    /// `renamed` names the path this client had given it.
    RenameRename,
}

impl ConflictKind {
    /// The kind for a plan reason, if the reason is a conflict.
    pub const fn from_reason(reason: Reason) -> Option<Self> {
        Some(match reason {
            Reason::EditEdit => Self::EditEdit,
            Reason::AddAdd => Self::AddAdd,
            Reason::DeleteEdit => Self::DeleteEdit,
            Reason::EditDelete => Self::EditDelete,
            Reason::TypeChange => Self::TypeChange,
            Reason::RemoteKeyCollision => Self::RemoteKeyCollision,
            Reason::RenameRename => Self::RenameRename,
            _ => return None,
        })
    }

    /// The kind's name, as the JSON form writes it (`edit_edit`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Self::EditEdit => "edit_edit",
            Self::AddAdd => "add_add",
            Self::DeleteEdit => "delete_edit",
            Self::EditDelete => "edit_delete",
            Self::TypeChange => "type_change",
            Self::RemoteKeyCollision => "remote_key_collision",
            Self::RenameRename => "rename_rename",
        }
    }

    /// Whether `--keep local` and `--keep remote` mean something: a file and a folder
    /// cannot trade places, so those two kinds settle only by `both` or `merged`.
    pub const fn sides_can_swap(self) -> bool {
        !matches!(self, Self::TypeChange | Self::RemoteKeyCollision)
    }
}

/// One open conflict. Field order is the JSON order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConflictRecord {
    /// The path both versions claimed.
    pub path: String,
    /// What collided.
    pub kind: ConflictKind,
    /// The content id at the last sync, if the path had one.
    pub base: Option<ObjectId>,
    /// This client's content id (absent: deleted here, or a folder).
    pub local: Option<ObjectId>,
    /// The bucket's content id (absent: deleted there, or a folder).
    pub remote: Option<ObjectId>,
    /// Where the other version went: a sibling `NAME.conflict-CLIENT-STAMP.EXT`.
    pub copy: Option<String>,
    /// What the sync left at `path` (absent: nothing, or a folder).
    pub kept: Option<ObjectId>,
    /// The frontmatter keys both sides changed differently, for a note.
    #[serde(default)]
    pub keys: Vec<String>,
    /// For `rename_rename`: the path this client had renamed the file to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed: Option<String>,
    /// The client that met the conflict.
    pub client: String,
    /// When, RFC 3339 in UTC.
    pub at: String,
}

impl ConflictRecord {
    /// Whether there is still something to settle (see the module comment).
    pub fn is_open(&self, root: &Path) -> std::io::Result<bool> {
        match &self.copy {
            Some(copy) => exists(&root.join(copy)),
            None => Ok(content_id(&root.join(&self.path))? == self.kept && self.kept.is_some()),
        }
    }
}

/// Which version `resolve` keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// This client's version (the one in the copy) goes back to the path.
    Local,
    /// The version at the path stays.
    Remote,
    /// Both files stay as they are: the copy becomes a note of its own.
    Both,
    /// The path as the user edited it.
    Merged,
}

/// Why `resolve` did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No open conflict at that path (nor a copy of that name).
    #[error("no open conflict at {path}")]
    NotAConflict {
        /// The path given.
        path: String,
    },
    /// `local`/`remote` asked of a conflict between a file and a folder.
    #[error(
        "{path}: a file and a folder cannot trade places; keep both, or move the files by hand and keep merged"
    )]
    CannotSwap {
        /// The conflict's path.
        path: String,
        /// Its kind.
        kind: ConflictKind,
    },
    /// The path holds something other than what the conflict left there, so keeping a
    /// side would overwrite an edit made since.
    #[error("{path} changed since the conflict; nothing was touched")]
    ChangedSince {
        /// The conflict's path.
        path: String,
    },
    /// The version to restore is not in the store (and no copy holds it).
    #[error("{path}: version {id} is not in the local store")]
    Missing {
        /// The conflict's path.
        path: String,
        /// The content id wanted.
        id: ObjectId,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `resolve` did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Resolved {
    /// The conflict that is settled.
    pub record: ConflictRecord,
    /// Files moved to the trash (a copy, or a version that gave way), relative paths.
    pub trashed: Vec<String>,
    /// Whether the path was rewritten.
    pub rewrote_path: bool,
}

/// Every record in the store, open or not (an unreadable record counts as none).
pub fn load(store: &Store) -> Result<Vec<ConflictRecord>, StoreError> {
    Ok(store.meta(META_CONFLICTS)?.and_then(|v| serde_json::from_slice(&v).ok()).unwrap_or_default())
}

/// Replaces the records, writing only when they change.
pub fn save(store: &Store, records: &[ConflictRecord]) -> Result<(), StoreError> {
    let text = serde_json::to_vec(records).expect("conflict records serialise");
    let old = store.meta(META_CONFLICTS)?;
    if old.as_deref() != Some(text.as_slice()) && !(old.is_none() && records.is_empty()) {
        store.set_meta(META_CONFLICTS, &text)?;
    }
    Ok(())
}

/// The records still open in the folder at `root`, in path order. A record whose files
/// cannot be read counts as open: it is never dropped on a guess.
pub fn open(store: &Store, root: &Path) -> Result<Vec<ConflictRecord>, StoreError> {
    let mut open: Vec<ConflictRecord> =
        load(store)?.into_iter().filter(|r| r.is_open(root).unwrap_or(true)).collect();
    open.sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.at.cmp(&b.at)));
    Ok(open)
}

/// Adds the conflicts a sync met, noting what each left at its path and when, and drops
/// the records that are no longer open.
pub fn after_sync(
    store: &Store,
    root: &Path,
    new: Vec<ConflictRecord>,
) -> Result<Vec<ConflictRecord>, StoreError> {
    let mut all = load(store)?;
    let at = humantime::format_rfc3339_seconds(crate::clock::now()).to_string();
    all.extend(new.into_iter().map(|mut r| {
        r.kept = content_id(&root.join(&r.path)).ok().flatten();
        r.at.clone_from(&at);
        r
    }));
    all.retain(|r| r.is_open(root).unwrap_or(true));
    all.sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.at.cmp(&b.at)));
    save(store, &all)?;
    Ok(all)
}

/// Settles the open conflict at `path` (or whose copy is `path`) as `keep` says. Files
/// that give way go to `trash` (a folder inside the state directory), never deleted; the
/// next sync carries the result to the bucket.
pub fn resolve(
    store: &Store,
    root: &Path,
    trash: &Path,
    path: &str,
    keep: Keep,
) -> Result<Resolved, ResolveError> {
    let mut all = load(store)?;
    let at = all
        .iter()
        .position(|r| (r.path == path || r.copy.as_deref() == Some(path)) && r.is_open(root).unwrap_or(true))
        .ok_or_else(|| ResolveError::NotAConflict { path: path.to_owned() })?;
    let record = all[at].clone();
    if matches!(keep, Keep::Local | Keep::Remote) && !record.kind.sides_can_swap() {
        return Err(ResolveError::CannotSwap { path: record.path, kind: record.kind });
    }
    let abs = root.join(&record.path);
    let now = content_id(&abs).map_err(io_at(&abs))?;
    let mut done = Resolved { record: record.clone(), trashed: Vec::new(), rewrote_path: false };
    if let (ConflictKind::RenameRename, Some(mine)) = (record.kind, &record.renamed) {
        // Local: the file goes to this client's name (the next sync moves it there too);
        // both: a second file under that name; remote, merged: it stays where it is.
        let dest = root.join(mine);
        if matches!(keep, Keep::Local | Keep::Both) {
            if exists(&dest).map_err(io_at(&dest))? {
                return Err(ResolveError::ChangedSince { path: mine.clone() });
            }
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir).map_err(io_at(dir))?;
            }
            if keep == Keep::Local {
                std::fs::rename(&abs, &dest).map_err(io_at(&abs))?;
            } else {
                std::fs::copy(&abs, &dest).map_err(io_at(&abs))?;
            }
            done.rewrote_path = keep == Keep::Local;
        }
        all.remove(at);
        save(store, &all)?;
        return Ok(done);
    }
    // What the path should hold: `None` leaves it as it is.
    let want: Option<Option<ObjectId>> = match keep {
        Keep::Both | Keep::Merged => None,
        Keep::Local => Some(record.local),
        Keep::Remote if record.copy.is_some() => None,
        Keep::Remote => Some(record.remote),
    };
    if let Some(want) = want
        && want != now
    {
        if now != record.kept {
            return Err(ResolveError::ChangedSince { path: record.path });
        }
        let staged = match want {
            Some(id) => Some(stage(store, root, &record, id)?),
            None => None,
        };
        if now.is_some() {
            to_trash(&abs, trash, &record.path)?;
            done.trashed.push(record.path.clone());
        }
        if let Some(tmp) = staged {
            std::fs::rename(&tmp, &abs).map_err(io_at(&abs))?;
        }
        done.rewrote_path = true;
    }
    if keep != Keep::Both
        && let Some(copy) = &record.copy
        && exists(&root.join(copy)).map_err(io_at(&root.join(copy)))?
    {
        to_trash(&root.join(copy), trash, copy)?;
        done.trashed.push(copy.clone());
    }
    all.remove(at);
    save(store, &all)?;
    Ok(done)
}

/// Writes version `id` beside the conflict's path, from the store or, failing that, from
/// a copy that holds exactly it; the file keeps the copy's permissions.
fn stage(store: &Store, root: &Path, record: &ConflictRecord, id: ObjectId) -> Result<PathBuf, ResolveError> {
    let abs = root.join(&record.path);
    let dir = abs.parent().unwrap_or(root);
    let mut tmp = tempfile::Builder::new().prefix(".bmsync-resolve-").tempfile_in(dir).map_err(io_at(dir))?;
    let copy = record.copy.as_ref().map(|c| root.join(c));
    let from_store = store.contains(&id)? && store.read_blob_to(&id, tmp.as_file_mut()).is_ok();
    if !from_store {
        let Some(copy) = copy.as_ref().filter(|c| content_id(c).ok().flatten() == Some(id)) else {
            return Err(ResolveError::Missing { path: record.path.clone(), id });
        };
        let mut f = std::fs::File::open(copy).map_err(io_at(copy))?;
        tmp.as_file_mut().set_len(0).map_err(io_at(dir))?;
        std::io::copy(&mut f, tmp.as_file_mut()).map_err(io_at(copy))?;
    }
    if let Some(meta) = copy.as_ref().and_then(|c| std::fs::metadata(c).ok()) {
        tmp.as_file().set_permissions(meta.permissions()).map_err(io_at(dir))?;
    }
    tmp.as_file().sync_all().map_err(io_at(dir))?;
    let (_, path) = tmp.keep().map_err(|e| ResolveError::Io { path: abs.clone(), source: e.error })?;
    Ok(path)
}

/// Moves `abs` (the folder's `rel`) into the trash, keeping its relative path.
fn to_trash(abs: &Path, trash: &Path, rel: &str) -> Result<(), ResolveError> {
    let to = trash.join(rel);
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io_at(parent))?;
    }
    std::fs::rename(abs, &to).map_err(io_at(abs))
}

fn exists(path: &Path) -> std::io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The content id of the file or link at `path` (`None`: absent, or a folder).
fn content_id(path: &Path) -> std::io::Result<Option<ObjectId>> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        other => other?,
    };
    if meta.is_dir() {
        return Ok(None);
    }
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)?;
        return Ok(Some(ObjectId::for_blob(target.as_os_str().as_encoded_bytes())));
    }
    let mut h = ObjectHasher::new(ObjectKind::Blob);
    std::io::copy(&mut std::fs::File::open(path)?, &mut h)?;
    Ok(Some(h.finalize()))
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> ResolveError + '_ {
    move |source| ResolveError::Io { path: path.to_owned(), source }
}

impl crate::Repo {
    /// The open conflicts of this folder, in path order.
    pub fn open_conflicts(&self) -> Result<Vec<ConflictRecord>, StoreError> {
        open(self.store(), self.root())
    }

    /// Settles the open conflict at `path` (relative to the folder; the copy's path
    /// names it too) as `keep` says. What gives way goes to a trash folder of its own.
    pub fn resolve_conflict(&self, path: &str, keep: Keep) -> Result<Resolved, ResolveError> {
        let path = path.trim_start_matches("./").trim_end_matches('/');
        let stamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let trash =
            self.root().join(crate::repo::STATE_DIR).join(crate::apply::TRASH_DIR).join(stamp.to_string());
        resolve(self.store(), self.root(), &trash, path, keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str, copy: Option<&str>, kept: Option<&[u8]>) -> ConflictRecord {
        ConflictRecord {
            path: path.to_owned(),
            kind: if copy.is_some() { ConflictKind::EditEdit } else { ConflictKind::DeleteEdit },
            base: Some(ObjectId::for_blob(b"base\n")),
            local: copy.map(|_| ObjectId::for_blob(b"mine\n")),
            remote: Some(ObjectId::for_blob(b"theirs\n")),
            copy: copy.map(str::to_owned),
            kept: kept.map(ObjectId::for_blob),
            keys: Vec::new(),
            renamed: None,
            client: "alice".to_owned(),
            at: "2026-12-01T12:00:00Z".to_owned(),
        }
    }

    fn setup() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(d.path().join(".bmsync")).expect("state dir");
        let store = Store::create(&d.path().join(".bmsync/store.redb"), &[]).expect("store");
        (d, store)
    }

    #[test]
    fn records_round_trip_and_an_empty_list_writes_nothing() {
        let (d, store) = setup();
        save(&store, &[]).expect("save");
        assert_eq!(store.meta(META_CONFLICTS).expect("meta"), None);
        let r = record("a.md", Some("a.conflict-alice-1.md"), Some(b"theirs\n"));
        save(&store, std::slice::from_ref(&r)).expect("save");
        assert_eq!(load(&store).expect("load"), vec![r]);
        // The copy does not exist: nothing is open.
        assert!(open(&store, d.path()).expect("open").is_empty());
    }

    #[test]
    fn a_copy_keeps_a_conflict_open_until_it_is_deleted() {
        let (d, store) = setup();
        std::fs::write(d.path().join("a.md"), "theirs\n").expect("write");
        std::fs::write(d.path().join("a.conflict-alice-1.md"), "mine\n").expect("write");
        let r = record("a.md", Some("a.conflict-alice-1.md"), Some(b"theirs\n"));
        let kept = after_sync(&store, d.path(), vec![r]).expect("after sync");
        assert_eq!(kept.len(), 1);
        std::fs::remove_file(d.path().join("a.conflict-alice-1.md")).expect("rm");
        assert!(open(&store, d.path()).expect("open").is_empty());
        assert!(after_sync(&store, d.path(), Vec::new()).expect("after sync").is_empty());
        assert_eq!(load(&store).expect("load"), Vec::new());
    }

    #[test]
    fn a_copyless_conflict_is_open_while_the_path_holds_what_was_kept() {
        let (d, store) = setup();
        std::fs::write(d.path().join("a.md"), "theirs\n").expect("write");
        after_sync(&store, d.path(), vec![record("a.md", None, Some(b"theirs\n"))]).expect("after sync");
        assert_eq!(open(&store, d.path()).expect("open").len(), 1);
        std::fs::write(d.path().join("a.md"), "theirs, edited\n").expect("write");
        assert!(open(&store, d.path()).expect("open").is_empty());
    }

    #[test]
    fn keep_local_puts_the_copy_back_and_trashes_the_rest() {
        let (d, store) = setup();
        std::fs::write(d.path().join("a.md"), "theirs\n").expect("write");
        std::fs::write(d.path().join("a.conflict-alice-1.md"), "mine\n").expect("write");
        after_sync(&store, d.path(), vec![record("a.md", Some("a.conflict-alice-1.md"), Some(b"theirs\n"))])
            .expect("after sync");
        let trash = d.path().join(".bmsync/trash/1");
        let done = resolve(&store, d.path(), &trash, "a.md", Keep::Local).expect("resolve");
        assert!(done.rewrote_path);
        assert_eq!(std::fs::read(d.path().join("a.md")).expect("read"), b"mine\n");
        assert!(!d.path().join("a.conflict-alice-1.md").exists());
        assert_eq!(std::fs::read(trash.join("a.md")).expect("trash"), b"theirs\n");
        assert_eq!(std::fs::read(trash.join("a.conflict-alice-1.md")).expect("trash"), b"mine\n");
        assert!(load(&store).expect("load").is_empty());
        assert!(matches!(
            resolve(&store, d.path(), &trash, "a.md", Keep::Local),
            Err(ResolveError::NotAConflict { .. })
        ));
    }

    #[test]
    fn keep_local_refuses_when_the_path_changed_since() {
        let (d, store) = setup();
        std::fs::write(d.path().join("a.md"), "theirs\n").expect("write");
        std::fs::write(d.path().join("a.conflict-alice-1.md"), "mine\n").expect("write");
        after_sync(&store, d.path(), vec![record("a.md", Some("a.conflict-alice-1.md"), Some(b"theirs\n"))])
            .expect("after sync");
        std::fs::write(d.path().join("a.md"), "theirs, then edited\n").expect("write");
        let trash = d.path().join(".bmsync/trash/1");
        let err =
            resolve(&store, d.path(), &trash, "a.conflict-alice-1.md", Keep::Local).expect_err("refused");
        assert!(matches!(err, ResolveError::ChangedSince { .. }), "{err}");
        assert_eq!(std::fs::read(d.path().join("a.md")).expect("read"), b"theirs, then edited\n");
        assert_eq!(load(&store).expect("load").len(), 1);
    }

    #[test]
    fn keep_both_and_merged_leave_the_path() {
        for keep in [Keep::Both, Keep::Merged, Keep::Remote] {
            let (d, store) = setup();
            std::fs::write(d.path().join("a.md"), "merged by hand\n").expect("write");
            std::fs::write(d.path().join("a.conflict-alice-1.md"), "mine\n").expect("write");
            after_sync(
                &store,
                d.path(),
                vec![record("a.md", Some("a.conflict-alice-1.md"), Some(b"theirs\n"))],
            )
            .expect("after sync");
            let trash = d.path().join(".bmsync/trash/1");
            let done = resolve(&store, d.path(), &trash, "a.md", keep).expect("resolve");
            assert!(!done.rewrote_path);
            assert_eq!(std::fs::read(d.path().join("a.md")).expect("read"), b"merged by hand\n");
            assert_eq!(d.path().join("a.conflict-alice-1.md").exists(), keep == Keep::Both, "{keep:?}");
            assert!(load(&store).expect("load").is_empty());
        }
    }

    #[test]
    fn keep_local_of_a_delete_edit_deletes_again() {
        let (d, store) = setup();
        std::fs::write(d.path().join("a.md"), "theirs\n").expect("write");
        let mut r = record("a.md", None, Some(b"theirs\n"));
        r.local = None;
        after_sync(&store, d.path(), vec![r]).expect("after sync");
        let trash = d.path().join(".bmsync/trash/1");
        resolve(&store, d.path(), &trash, "a.md", Keep::Local).expect("resolve");
        assert!(!d.path().join("a.md").exists());
        assert_eq!(std::fs::read(trash.join("a.md")).expect("trash"), b"theirs\n");
    }
}
