//! `restore`: brings files or folders back from a revision, the local store's or the
//! bucket's past. Restored files are ordinary local changes, which the next sync carries.
//!
//! It writes only the paths named (and the files under a named folder), never deletes,
//! and overwrites a file with other content only when forced, moving its old bytes to the
//! trash first. Every check is made before the first write: a refusal writes nothing.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::inspect::{InspectError, RemoteTree};
use crate::layout::{STATE_DIR, TRASH_DIR};
use crate::object::EntryKind;
use crate::remote::{ObjectInfo, Remote};
use crate::repo::Rev;
use crate::{ObjectHasher, ObjectId, ObjectKind, Repo, RepoError};

/// Why `restore` wrote nothing (besides the store's and the bucket's errors).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Reading the revision, the store or the bucket failed.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// Files that exist with other content; `force` overwrites them.
    #[error("{} exist{} with other content: nothing was restored; --force overwrites {} (the old bytes go to .bmsync/trash/)", list(paths), if paths.len() == 1 { "s" } else { "" }, if paths.len() == 1 { "it" } else { "them" })]
    WouldOverwrite {
        /// The paths.
        paths: Vec<String>,
    },
    /// A file and a folder in each other's way: never replaced, not even by force.
    #[error("{path}: {what}; nothing was restored")]
    InTheWay {
        /// The path.
        path: String,
        /// What is in the way.
        what: &'static str,
    },
    /// The store does not hold a file's bytes (a file hashed but never synced or
    /// committed).
    #[error(
        "{path}: its content {id} is not in the local store; nothing was restored (try --from remote@{{TIME}})"
    )]
    NotStored {
        /// The path.
        path: String,
        /// The content id.
        id: ObjectId,
    },
    /// `--from trash`: nothing in the trash at or under a path.
    #[error("{path} is not in the trash{}; `bmsync trash` lists what is", at.as_ref().map(|t| format!(" at or before {t}")).unwrap_or_default())]
    NotInTrash {
        /// The path.
        path: String,
        /// The `TIME` of `trash@{TIME}`.
        at: Option<String>,
    },
    /// `--from local`: the folder is already what it names.
    #[error(
        "restoring from local changes nothing: give a commit, @{{TIME}}, remote@{{TIME}} or snapshot:VERSION"
    )]
    FromLocal,
    /// A symlink whose target leaves the folder: never written.
    #[error("{path}: a symlink pointing outside the folder is not restored")]
    UnsafeLink {
        /// The path.
        path: String,
    },
    /// Writing the folder failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

fn list(paths: &[String]) -> String {
    let shown: Vec<&str> = paths.iter().take(5).map(String::as_str).collect();
    let more = if paths.len() > 5 { format!(" and {} more", paths.len() - 5) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

impl From<RepoError> for RestoreError {
    fn from(e: RepoError) -> Self {
        Self::Inspect(e.into())
    }
}

impl From<crate::remote::RemoteError> for RestoreError {
    fn from(e: crate::remote::RemoteError) -> Self {
        Self::Inspect(e.into())
    }
}

/// What `restore` did, by path.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RestoreReport {
    /// Files written (new, or overwritten with `force`).
    pub restored: Vec<String>,
    /// Files that already held the revision's content: left alone.
    pub unchanged: Vec<String>,
    /// Files overwritten, and where their old bytes went (relative to the folder).
    pub trashed: Vec<(String, String)>,
    /// Bytes downloaded from the bucket.
    pub downloaded_bytes: u64,
}

/// Where one file's bytes come from.
enum Source<'a> {
    Store(ObjectId),
    Bucket(&'a ObjectInfo),
    /// A file in the trash, with its content id.
    Trash(PathBuf, ObjectId),
}

impl Source<'_> {
    /// The content id, when known before downloading.
    fn known_id(&self) -> Option<ObjectId> {
        match self {
            Self::Store(id) | Self::Trash(_, id) => Some(*id),
            Self::Bucket(_) => None,
        }
    }
}

/// One round of the trash: a folder of `.bmsync/trash/` named by its UNIX-ns stamp.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TrashRound {
    /// The stamp (UNIX nanoseconds): when the files were moved there.
    pub stamp: u64,
    /// The files in it, relative to the folder they came from, sorted.
    pub files: Vec<String>,
}

/// The trash's rounds, newest first. Folders not named by a stamp are left out.
pub fn trash_rounds(root: &Path) -> Vec<TrashRound> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                walk(base, &p, out);
            } else if let Some(rel) = p.strip_prefix(base).ok().and_then(|r| r.to_str()) {
                out.push(rel.to_owned());
            }
        }
    }
    let trash = root.join(STATE_DIR).join(TRASH_DIR);
    let mut rounds: Vec<TrashRound> = std::fs::read_dir(&trash)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let stamp = e.file_name().to_str()?.parse::<u64>().ok()?;
            let mut files = Vec::new();
            walk(&e.path(), &e.path(), &mut files);
            files.sort();
            Some(TrashRound { stamp, files })
        })
        .collect();
    rounds.sort_by_key(|r| std::cmp::Reverse(r.stamp));
    rounds
}

/// The content id of a file or symlink's target.
fn content_of(abs: &Path) -> Result<(ObjectId, EntryKind), RestoreError> {
    on_disk(abs, "")?
        .ok_or_else(|| RestoreError::Io { path: abs.to_owned(), source: std::io::ErrorKind::NotFound.into() })
}

struct Target<'a> {
    path: String,
    kind: EntryKind,
    source: Source<'a>,
    /// What is there now: `None` absent, else its content id and kind.
    now: Option<(ObjectId, EntryKind)>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io { path: path.to_owned(), source }
}

/// The content id and kind of what is at `abs` (a file or a symlink), `None` if nothing.
fn on_disk(abs: &Path, rel: &str) -> Result<Option<(ObjectId, EntryKind)>, RestoreError> {
    use std::os::unix::fs::PermissionsExt;
    let m = match std::fs::symlink_metadata(abs) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(abs)(e)),
        Ok(m) => m,
    };
    if m.is_dir() {
        return Err(RestoreError::InTheWay {
            path: rel.to_owned(),
            what: "a folder is where the revision has a file",
        });
    }
    if m.file_type().is_symlink() {
        let t = std::fs::read_link(abs).map_err(io(abs))?;
        return Ok(Some((ObjectId::for_blob(t.as_os_str().as_encoded_bytes()), EntryKind::Symlink)));
    }
    let mut h = ObjectHasher::new(ObjectKind::Blob);
    std::io::copy(&mut std::fs::File::open(abs).map_err(io(abs))?, &mut h).map_err(io(abs))?;
    let kind = if m.permissions().mode() & 0o111 != 0 { EntryKind::Executable } else { EntryKind::File };
    Ok(Some((h.finalize(), kind)))
}

/// Every ancestor folder of `rel` is a real folder or absent (never a file, never a
/// symlink that would carry the write elsewhere).
fn check_parents(root: &Path, rel: &str) -> Result<(), RestoreError> {
    let mut p = root.to_owned();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        p.push(part);
        match std::fs::symlink_metadata(&p) {
            Err(_) => return Ok(()),
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(RestoreError::InTheWay {
                    path: rel.to_owned(),
                    what: "a file or symlink is where the revision has a folder",
                });
            }
        }
    }
    Ok(())
}

/// The bucket's listing carries no content ids: one HEAD for each file whose local copy
/// has the same size tells whether that copy already holds the version (then nothing is
/// downloaded for it).
fn settle_from_heads(
    root: &Path,
    r: &dyn Remote,
    at: Option<crate::remote::Version>,
    targets: &mut [Target<'_>],
) {
    for t in targets {
        if let (Source::Bucket(o), Some((local_id, _))) = (&t.source, t.now)
            && root.join(&t.path).symlink_metadata().is_ok_and(|m| m.len() == o.size)
            && let Ok(h) = r.head(&o.key, at)
            && h.content == Some(local_id)
        {
            t.source = Source::Store(local_id);
            t.kind = h.kind.unwrap_or(EntryKind::File);
        }
    }
}

/// The bucket's files at or under each of `paths`.
fn bucket_targets<'a>(
    tree: &'a RemoteTree,
    paths: &[String],
    from: &str,
    out: &mut Vec<Target<'a>>,
) -> Result<(), RestoreError> {
    for p in paths {
        let files = tree.files_under(p);
        if files.is_empty() {
            return Err(RepoError::NoSuchPath { rev: from.to_owned(), path: p.clone() }.into());
        }
        for o in files {
            let kind = o.kind.unwrap_or(EntryKind::File);
            out.push(Target { path: o.key.clone(), kind, source: Source::Bucket(o), now: None });
        }
    }
    Ok(())
}

impl Repo {
    /// Restores `paths` (files or folders, relative to the folder) as revision `from`
    /// has them: a local revision from the store, a bucket revision (`remote@{TIME}`,
    /// `snapshot:VERSION`, `remote`) by downloading only the files that differ, each
    /// checked against its content id when the bucket has one. See the module comment.
    pub fn restore(&self, paths: &[String], from: &str, force: bool) -> Result<RestoreReport, RestoreError> {
        let remote: Option<Box<dyn Remote>>;
        let tree: Option<RemoteTree>;
        let mut targets = Vec::new();
        let rev =
            if from == "trash" || from.starts_with("trash@{") { None } else { Some(self.resolve_rev(from)?) };
        match rev {
            None => {
                (remote, tree) = (None, None);
                self.trash_targets(paths, from, &mut targets)?;
            }
            Some(rev) => match rev {
                Rev::Local => return Err(RestoreError::FromLocal),
                Rev::Remote(at) => {
                    let r = self.connect_remote()?;
                    tree = Some(RemoteTree::read(r.as_ref(), from, at)?);
                    remote = Some(r);
                    bucket_targets(tree.as_ref().expect("just set"), paths, from, &mut targets)?;
                }
                _ => {
                    (remote, tree) = (None, None);
                    let root = self.resolve_tree(from)?.unwrap_or_else(|| crate::Tree::default().id());
                    for p in paths {
                        let p = p.trim_start_matches("./").trim_end_matches('/');
                        let entry = self.lookup(root, p, from)?;
                        self.files_of(p, &entry, &mut targets)?;
                    }
                }
            },
        }
        targets.sort_by(|a, b| a.path.cmp(&b.path));
        targets.dedup_by(|a, b| a.path == b.path);
        let mut report = RestoreReport::default();
        // Every check first: what is there now, what is in the way, what is missing.
        for t in &mut targets {
            check_parents(self.root(), &t.path)?;
            t.now = on_disk(&self.root().join(&t.path), &t.path)?;
            if let Source::Store(id) = t.source
                && t.now.map(|(i, _)| i) != Some(id)
                && !self.store().contains(&id).map_err(RepoError::from)?
            {
                return Err(RestoreError::NotStored { path: t.path.clone(), id });
            }
        }
        if let Some(r) = &remote {
            settle_from_heads(self.root(), r.as_ref(), tree.as_ref().and_then(|t| t.version), &mut targets);
        }
        let overwrite: Vec<String> = targets
            .iter()
            .filter(|t| {
                let same = matches!((t.source.known_id(), t.now), (Some(id), Some((now, kind))) if id == now && kind == t.kind);
                t.now.is_some() && !same
            })
            .map(|t| t.path.clone())
            .collect();
        if !overwrite.is_empty() && !force {
            return Err(RestoreError::WouldOverwrite { paths: overwrite });
        }
        let stamp = crate::clock::unix_ns();
        for t in &targets {
            let bytes = match &t.source {
                source
                    if source
                        .known_id()
                        .is_some_and(|id| t.now.is_some_and(|(now, kind)| now == id && kind == t.kind)) =>
                {
                    report.unchanged.push(t.path.clone());
                    continue;
                }
                Source::Trash(abs, _) if t.kind == EntryKind::Symlink => {
                    std::fs::read_link(abs).map_err(io(abs))?.into_os_string().into_encoded_bytes()
                }
                Source::Trash(abs, _) => std::fs::read(abs).map_err(io(abs))?,
                Source::Store(id) => self.store().get_kind(id, ObjectKind::Blob).map_err(RepoError::from)?,
                Source::Bucket(o) => {
                    let (r, tree) =
                        (remote.as_deref().expect("a bucket source"), tree.as_ref().expect("a tree"));
                    let (id, bytes) = tree.fetch(r, o)?;
                    report.downloaded_bytes += bytes.len() as u64;
                    if t.now.is_some_and(|(now, kind)| now == id && kind == t.kind) {
                        report.unchanged.push(t.path.clone());
                        continue;
                    }
                    bytes
                }
            };
            if t.kind == EntryKind::Symlink && !crate::worktree::link_stays_inside(&t.path, &bytes) {
                return Err(RestoreError::UnsafeLink { path: t.path.clone() });
            }
            let trashed = self.write_restored(&t.path, t.kind, &bytes, t.now.is_some(), stamp)?;
            if let Some(to) = trashed {
                report.trashed.push((t.path.clone(), to));
            }
            report.restored.push(t.path.clone());
        }
        Ok(report)
    }

    /// The newest trashed copy of each file at or under `paths`, from rounds at or
    /// before the TIME of `trash@{TIME}`.
    fn trash_targets(
        &self,
        paths: &[String],
        from: &str,
        out: &mut Vec<Target<'_>>,
    ) -> Result<(), RestoreError> {
        let at = from.strip_prefix("trash@{").and_then(|t| t.strip_suffix('}'));
        let limit = match at {
            Some(t) => Some(crate::repo::parse_time(t).ok_or_else(|| RepoError::BadRevision {
                rev: from.to_owned(),
                reason: format!("{t:?} is not an RFC 3339 time"),
            })?),
            None => None,
        };
        let rounds: Vec<TrashRound> = trash_rounds(self.root())
            .into_iter()
            .filter(|r| limit.is_none_or(|l| i128::from(r.stamp) <= l))
            .collect();
        for p in paths {
            let p = p.trim_start_matches("./").trim_end_matches('/');
            let mut found = 0;
            let mut seen = std::collections::HashSet::new();
            for r in &rounds {
                for f in &r.files {
                    let under =
                        p.is_empty() || f == p || f.strip_prefix(p).is_some_and(|rest| rest.starts_with('/'));
                    if under && seen.insert(f.clone()) {
                        let abs =
                            self.root().join(STATE_DIR).join(TRASH_DIR).join(r.stamp.to_string()).join(f);
                        let (id, kind) = content_of(&abs)?;
                        out.push(Target { path: f.clone(), kind, source: Source::Trash(abs, id), now: None });
                        found += 1;
                    }
                }
            }
            if found == 0 {
                return Err(RestoreError::NotInTrash { path: p.to_owned(), at: at.map(str::to_owned) });
            }
        }
        Ok(())
    }

    /// The files at or under `entry` (at `path`), with their blobs.
    fn files_of(
        &self,
        path: &str,
        entry: &crate::TreeEntry,
        out: &mut Vec<Target<'_>>,
    ) -> Result<(), RestoreError> {
        if !entry.kind.is_tree() {
            out.push(Target {
                path: path.to_owned(),
                kind: entry.kind,
                source: Source::Store(entry.id),
                now: None,
            });
            return Ok(());
        }
        if entry.id == crate::Tree::default().id() {
            return Ok(());
        }
        let tree = self.store().get_tree(&entry.id).map_err(RepoError::from)?;
        for e in tree.entries() {
            let p = if path.is_empty() { e.name.clone() } else { format!("{path}/{}", e.name) };
            self.files_of(&p, e, out)?;
        }
        Ok(())
    }

    /// Writes one restored file through a temporary beside it. An existing file (only
    /// with `force`) goes to the trash first; returns where, relative to the folder.
    fn write_restored(
        &self,
        rel: &str,
        kind: EntryKind,
        bytes: &[u8],
        exists: bool,
        stamp: u64,
    ) -> Result<Option<String>, RestoreError> {
        use std::os::unix::fs::PermissionsExt;
        let abs = self.root().join(rel);
        let parent = abs.parent().expect("a file in the folder has a parent");
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let tmp = parent.join(format!(".bmsync-restore-{stamp}-{}", std::process::id()));
        if kind == EntryKind::Symlink {
            let target = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes);
            std::os::unix::fs::symlink(target, &tmp).map_err(io(&tmp))?;
        } else {
            let mut f = std::fs::File::create_new(&tmp).map_err(io(&tmp))?;
            let written = f.write_all(bytes).and_then(|()| f.sync_all()).and_then(|()| {
                let mode = if kind == EntryKind::Executable { 0o755 } else { 0o644 };
                f.set_permissions(std::fs::Permissions::from_mode(mode))
            });
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                return Err(io(&tmp)(e));
            }
        }
        let mut trashed = None;
        if exists {
            let rel_trash = format!("{STATE_DIR}/{TRASH_DIR}/{stamp}/{rel}");
            let to = self.root().join(&rel_trash);
            let moved = std::fs::create_dir_all(to.parent().expect("trash paths have a parent"))
                .and_then(|()| std::fs::rename(&abs, &to));
            if let Err(e) = moved {
                let _ = std::fs::remove_file(&tmp);
                return Err(io(&abs)(e));
            }
            trashed = Some(rel_trash);
        }
        // Never over a file that appeared meanwhile: a hard link fails if one did.
        let placed = if kind == EntryKind::Symlink {
            match std::fs::symlink_metadata(&abs) {
                Ok(_) => Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists)),
                Err(_) => std::fs::rename(&tmp, &abs),
            }
        } else {
            std::fs::hard_link(&tmp, &abs).and_then(|()| std::fs::remove_file(&tmp))
        };
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&abs)(e));
        }
        Ok(trashed)
    }
}
