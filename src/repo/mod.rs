//! A folder tied to its store: `.bmsync/` inside the folder holds the store and the
//! client's identity.

pub(crate) mod connect;
mod error;
mod history;
mod lock;
mod maintain;
mod rev;

pub use crate::layout::{STATE_DIR, STORE_FILE, SYNC_LOCK_FILE};
pub use error::RepoError;
pub use history::{LogOptions, RemoteDrift, Status, Walk};
pub use lock::{SyncGuard, SyncLock};
pub use maintain::{GC_BATCH, GcOptions, GcReport};
pub use rev::{REVISION_FORMS, Rev, parse_time, split_rev_path};

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

use connect::plainly_wrong;

use crate::id::ObjectId;
use crate::object::check_client_id;
use crate::remote::{ProbeRecord, RemoteError, RemoteUrl};
use crate::store::{Store, StoreError};
/// Meta key for the client id (UTF-8).
pub const META_CLIENT_ID: &str = "client-id";
/// The ref naming the last sync commit.
pub const REF_BASE: &str = "base";
/// The ref naming the last local commit.
pub const REF_HEAD: &str = "head";
/// The revision that names the folder as it is now.
pub const REV_LOCAL: &str = "local";
/// Meta key for the remote URL (UTF-8).
pub const META_REMOTE: &str = "remote";
/// Meta key for the S3 endpoint URL (UTF-8), when one was given to `init`.
pub const META_ENDPOINT: &str = "endpoint";
/// Meta key: `1` if the folder's file system ignores case (detected at `init`), `0` if
/// not. Absent in stores made before it existed: then detected on open.
pub const META_CASE_INSENSITIVE: &str = "case-insensitive";
/// Meta key: the name collisions the last sync reported (JSON), for `status`.
pub const META_COLLISIONS: &str = "collisions";
/// Meta key: the base manifest's id and the id of the tree of its entries, which the
/// planner patches with the listing's changes (a hint; see `format-spec/store.md`).
pub const META_MANIFEST_TREE: &str = "manifest-tree";

/// The `manifest-tree` record: the manifest's id, then its tree's (64 bytes).
pub(crate) fn manifest_tree_record(manifest: &ObjectId, tree: &ObjectId) -> Vec<u8> {
    [manifest.as_bytes().as_slice(), tree.as_bytes()].concat()
}

/// A `manifest-tree` record read back as (manifest id, tree id); `None` if malformed.
pub(crate) fn parse_manifest_tree(record: &[u8]) -> Option<(ObjectId, ObjectId)> {
    let (m, t) = record.split_at_checked(32)?;
    let (m, t) = (<[u8; 32]>::try_from(m).ok()?, <[u8; 32]>::try_from(t).ok()?);
    Some((ObjectId::from_bytes(m), ObjectId::from_bytes(t)))
}
/// Meta key for what the last probe of the remote found (JSON, see [`ProbeRecord`]).
pub const META_PROBE: &str = "remote-probe";
/// Meta key for the opt-in to lost updates on a remote that ignores conditional PUTs
/// (JSON: the remote and endpoint it was given for).
pub const META_ACCEPT_LOST_UPDATES: &str = "accept-lost-updates";

/// Options for [`Repo::init`]: start from `InitOptions::default()` and set the fields
/// wanted.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct InitOptions {
    /// Remote URL to record.
    pub remote: Option<String>,
    /// Client id to use instead of a generated one.
    pub client_id: Option<String>,
    /// S3 endpoint to record (Tigris, moto, `MinIO`...); default from the environment.
    pub endpoint: Option<String>,
    /// Create a missing `file://` remote folder (otherwise it must exist).
    pub create: bool,
    /// Go on with a remote that ignores conditional PUTs (a folder only one person syncs).
    pub accept_lost_updates: bool,
}

/// What `init` learnt of the remote.
#[derive(Debug, Default)]
pub struct InitReport {
    /// What the probe found, when the remote could be reached.
    pub probe: Option<ProbeRecord>,
    /// Why the remote could not be reached (or probed) yet; the remote is kept, and the
    /// first sync probes it.
    pub remote_error: Option<RemoteError>,
}

/// What `remote set-url` did.
#[derive(Debug, Default)]
pub struct SetRemoteReport {
    /// Whether the remote URL changed (the sync base was then reset: the next sync
    /// deletes and overwrites nothing, as a first sync).
    pub base_reset: bool,
    /// What the probe found, when the remote could be reached.
    pub probe: Option<ProbeRecord>,
    /// Why the remote could not be reached (or probed).
    pub remote_error: Option<RemoteError>,
}

type Result<T, E = RepoError> = std::result::Result<T, E>;

/// A bmsync folder and its open store.
#[derive(Debug)]
pub struct Repo {
    root: PathBuf,
    store: Store,
    client_id: String,
    remote: Option<RemoteUrl>,
    endpoint: Option<String>,
    case_insensitive: bool,
    /// The folder's sync lock while this process holds it; the mutex also keeps two
    /// threads of one process from syncing at once.
    sync_lock: std::sync::Mutex<Option<SyncLock>>,
}

/// Whether the file system holding `dir` ignores case: `dir`'s name in upper case names
/// the same folder.
fn ignores_case(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else { return false };
    let upper = dir.with_file_name(name.to_uppercase());
    if upper == dir {
        return false;
    }
    match (std::fs::symlink_metadata(dir), std::fs::symlink_metadata(&upper)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

impl Repo {
    /// Makes `root` a bmsync folder: creates `.bmsync/`, the store, and a stable client id.
    /// With a remote, see [`Repo::init_with_report`].
    pub fn init(root: &Path, opts: &InitOptions) -> Result<Self> {
        Self::init_with_report(root, opts).map(|(r, _)| r)
    }

    /// [`Repo::init`], reporting what it learnt of the remote. A remote that is plainly
    /// wrong (a missing `file://` folder without `create`, a file, a bucket that does not
    /// exist) or that ignores conditional PUTs (without `accept_lost_updates`) fails, and
    /// leaves no `.bmsync/` behind. One that cannot be reached yet is kept, unprobed.
    pub fn init_with_report(root: &Path, opts: &InitOptions) -> Result<(Self, InitReport)> {
        if !root.is_dir() {
            return Err(RepoError::NotADirectory(root.to_owned()));
        }
        if let Some(outer) = enclosing_folder(root) {
            return Err(RepoError::Nested { inner: root.to_owned(), outer });
        }
        let remote = opts.remote.as_deref().map(RemoteUrl::parse).transpose()?;
        if let Some(RemoteUrl::File { path }) = &remote
            && !opts.create
        {
            // Checked before anything is made: no `.bmsync/` for a wrong remote.
            crate::remote::FileRemote::check_folder(path)?;
        }
        let client_id = match &opts.client_id {
            Some(c) => {
                check_client_id(c)?;
                c.clone()
            }
            None => generate_client_id(root),
        };
        let dir = root.join(STATE_DIR);
        let made_dir = !dir.exists();
        std::fs::create_dir_all(&dir).map_err(|source| RepoError::Io { path: dir.clone(), source })?;
        let remote_text = remote.as_ref().map(ToString::to_string);
        let case_insensitive = ignores_case(&dir);
        let mut meta: Vec<(&str, &[u8])> = vec![
            (META_CLIENT_ID, client_id.as_bytes()),
            (META_CASE_INSENSITIVE, if case_insensitive { b"1" } else { b"0" }),
        ];
        if let Some(r) = &remote_text {
            meta.push((META_REMOTE, r.as_bytes()));
        }
        if let Some(e) = &opts.endpoint {
            meta.push((META_ENDPOINT, e.as_bytes()));
        }
        let store = Store::create(&dir.join(STORE_FILE), &meta).map_err(|e| {
            if made_dir {
                // Leave no half-made state behind; the folder's own files are untouched.
                let _ = std::fs::remove_dir_all(&dir);
            }
            match e {
                StoreError::Exists { .. } => RepoError::AlreadyInitialized(root.to_owned()),
                e => e.into(),
            }
        })?;
        let repo = Self {
            root: root.to_owned(),
            store,
            client_id,
            remote,
            endpoint: opts.endpoint.clone(),
            case_insensitive,
            sync_lock: std::sync::Mutex::default(),
        };
        let undo = |repo: Self, e: RepoError| {
            drop(repo);
            if made_dir {
                let _ = std::fs::remove_dir_all(&dir);
            }
            Err(e)
        };
        let mut report = InitReport::default();
        if let Some(url) = repo.remote.clone() {
            let probed = repo.connect_with(&url, opts.create).and_then(|r| {
                let endpoint = crate::remote::effective_endpoint(&url, repo.endpoint());
                crate::remote::probe(r.as_ref(), &repo.client_id, endpoint.as_deref()).map_err(Into::into)
            });
            match probed {
                Ok(record) => {
                    if let Err(e) = repo.set_probe_record(&record) {
                        return undo(repo, e);
                    }
                    if let Some(detail) = record.missing_put() {
                        if !opts.accept_lost_updates {
                            return undo(repo, RepoError::LostUpdates { detail });
                        }
                        if let Err(e) = repo.accept_lost_updates() {
                            return undo(repo, e);
                        }
                    }
                    report.probe = Some(record);
                }
                Err(RepoError::RemoteFailed(e)) if plainly_wrong(&e) => {
                    return undo(repo, RepoError::RemoteFailed(e));
                }
                Err(RepoError::RemoteFailed(e)) => report.remote_error = Some(e),
                Err(e) => return undo(repo, e),
            }
        }
        Ok((repo, report))
    }

    /// Opens the bmsync folder at `root`.
    pub fn open(root: &Path) -> Result<Self> {
        Self::with_store(root, Store::open(&root.join(STATE_DIR).join(STORE_FILE)))
    }

    /// Opens the bmsync folder at `root` for reading only (for `plan`): its store is
    /// opened read-only, so no byte of it changes, and every write fails.
    pub fn open_read_only(root: &Path) -> Result<Self> {
        Self::with_store(root, Store::open_read_only(&root.join(STATE_DIR).join(STORE_FILE)))
    }

    fn with_store(root: &Path, store: Result<Store, StoreError>) -> Result<Self> {
        let store = store.map_err(|e| match e {
            StoreError::Missing { .. } => RepoError::NotInitialized(root.to_owned()),
            e => e.into(),
        })?;
        let text = |key: &'static str| -> Result<Option<String>> {
            store.meta(key)?.map(|v| String::from_utf8(v).map_err(|_| RepoError::BadMeta { key })).transpose()
        };
        let client_id = text(META_CLIENT_ID)?.ok_or(RepoError::MissingMeta { key: META_CLIENT_ID })?;
        check_client_id(&client_id)?;
        let remote = text(META_REMOTE)?.as_deref().map(RemoteUrl::parse).transpose()?;
        // An empty endpoint is one `remote set-url --endpoint ''` cleared.
        let endpoint = text(META_ENDPOINT)?.filter(|e| !e.is_empty());
        let case_insensitive = match text(META_CASE_INSENSITIVE)?.as_deref() {
            Some(v) => v == "1",
            None => ignores_case(&root.join(STATE_DIR)),
        };
        Ok(Self {
            root: root.to_owned(),
            store,
            client_id,
            remote,
            endpoint,
            case_insensitive,
            sync_lock: std::sync::Mutex::default(),
        })
    }

    /// Whether the folder's file system ignores case (so `Notes.md` and `notes.md` are
    /// one file there).
    pub fn case_insensitive(&self) -> bool {
        self.case_insensitive
    }

    /// Records whether the folder's file system ignores case, overriding what `init`
    /// detected (for a folder moved to another file system, and for tests).
    pub fn set_case_insensitive(&mut self, yes: bool) -> Result<()> {
        self.store.set_meta(META_CASE_INSENSITIVE, if yes { b"1" } else { b"0" })?;
        self.case_insensitive = yes;
        Ok(())
    }

    /// The synced folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The object store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This client's stable id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The configured remote, if any.
    pub fn remote(&self) -> Option<&RemoteUrl> {
        self.remote.as_ref()
    }

    /// The configured S3 endpoint, if one was given to `init`.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }
}

/// The bmsync folder `start` is in, as git finds its repository: `start` itself or the
/// nearest folder above it holding `.bmsync/store.redb`. Gives the folder and the path
/// of `start` inside it (empty for the folder itself).
pub fn discover(start: &Path) -> Option<(PathBuf, PathBuf)> {
    start.ancestors().find(|dir| dir.join(STATE_DIR).join(STORE_FILE).exists()).map(|root| {
        let inside = start.strip_prefix(root).map(Path::to_owned).unwrap_or_default();
        (root.to_owned(), inside)
    })
}

/// The nearest strict ancestor of `root` that is a bmsync folder (holds
/// `.bmsync/store.redb`), if any. Symlinks are resolved first, so a folder reached through
/// a link is still found inside its real parent.
fn enclosing_folder(root: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(root).ok()?;
    real.ancestors().skip(1).find(|dir| dir.join(STATE_DIR).join(STORE_FILE).exists()).map(Path::to_owned)
}

/// A fresh client id: `c-` and 12 hex digits from the clock, the process and a random
/// seed, so two clients initialised at once still differ.
fn generate_client_id(root: &Path) -> String {
    let mut seed = std::collections::hash_map::RandomState::new().build_hasher();
    seed.write_u32(std::process::id());
    let mut h = blake3::Hasher::new();
    h.update(&seed.finish().to_le_bytes());
    h.update(&u128::from(crate::clock::unix_ns()).to_le_bytes());
    h.update(root.as_os_str().as_encoded_bytes());
    format!("c-{}", &h.finalize().to_hex()[..12])
}
