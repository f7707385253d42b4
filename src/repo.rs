//! A folder tied to its store: `.bmsync/` inside the folder holds the store and the
//! client's identity.

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

use crate::id::{ID_LEN, IdPrefix, ObjectId, ObjectKind};
use crate::object::{ClientIdError, Commit, EntryKind, TreeEntry, check_client_id};
use crate::reconcile::Change;
use crate::remote::{ProbeRecord, Remote, RemoteError, RemoteUrl, RemoteUrlError};
use crate::store::{Store, StoreError};
use crate::worktree::{ScanError, ScanOptions, Snapshot};

pub use crate::layout::{STATE_DIR, STORE_FILE, SYNC_LOCK_FILE};
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
/// Meta key for what the last probe of the remote found (JSON, see [`ProbeRecord`]).
pub const META_PROBE: &str = "remote-probe";
/// Meta key for the opt-in to lost updates on a remote that ignores conditional PUTs
/// (JSON: the remote and endpoint it was given for).
pub const META_ACCEPT_LOST_UPDATES: &str = "accept-lost-updates";

/// Options for [`Repo::init`].
#[derive(Clone, Debug, Default)]
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

/// Whether a remote failure means the remote is plainly wrong (not merely unreachable).
fn plainly_wrong(e: &RemoteError) -> bool {
    match e {
        RemoteError::NoSuchBucket { .. }
        | RemoteError::MissingFolder { .. }
        | RemoteError::NotARemote { .. } => true,
        // A local folder that cannot be made or opened is no network hiccup.
        RemoteError::Unreachable { endpoint, .. } => endpoint.starts_with("file://"),
        _ => false,
    }
}

#[derive(serde::Serialize, serde::Deserialize, PartialEq, Eq)]
struct Accepted {
    remote: String,
    endpoint: Option<String>,
}

/// Errors tying a folder to its store.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The folder does not exist or is not a directory.
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    /// `init` on a folder that already has a store.
    #[error("{0} is already a bmsync folder")]
    AlreadyInitialized(PathBuf),
    /// `init` inside a folder that is already under bmsync: two stores would then sync
    /// the same files.
    #[error(
        "{inner} is inside the bmsync folder {outer}, which already syncs it; run bmsync there, or init a folder outside it"
    )]
    Nested {
        /// The folder `init` was asked for.
        inner: PathBuf,
        /// The bmsync folder it is in.
        outer: PathBuf,
    },
    /// Another sync kept the folder's sync lock for longer than the wait allowed.
    #[error("another bmsync sync is running on {root}{}; try again when it has finished", holder(*pid))]
    Busy {
        /// The folder.
        root: PathBuf,
        /// The process holding the lock, as it recorded itself.
        pid: Option<u32>,
    },
    /// No `.bmsync/` store.
    #[error("{0} is not a bmsync folder: run `bmsync init` there first")]
    NotInitialized(PathBuf),
    /// A bad client id.
    #[error(transparent)]
    ClientId(#[from] ClientIdError),
    /// A bad remote URL.
    #[error(transparent)]
    Remote(#[from] RemoteUrlError),
    /// A revision that names nothing.
    #[error("unknown revision {0:?}: give an object id (at least 4 hex characters) or a ref name")]
    UnknownRevision(String),
    /// A meta record that is not what this build wrote.
    #[error("store record {key:?} is not valid UTF-8")]
    BadMeta {
        /// The meta key.
        key: &'static str,
    },
    /// No remote is configured.
    #[error("no remote is configured: run `bmsync init --remote URL` (in a new folder) to set one")]
    NoRemote,
    /// The remote failed.
    #[error(transparent)]
    RemoteFailed(#[from] crate::remote::RemoteError),
    /// The remote ignores conditional PUTs, and lost updates were not accepted.
    #[error("{detail}; nothing was written")]
    LostUpdates {
        /// Which guarantee is missing and what it would cost.
        detail: String,
    },
    /// A meta record that should be there is not.
    #[error("store record {key:?} is missing: the store was not made by `bmsync init`")]
    MissingMeta {
        /// The meta key.
        key: &'static str,
    },
    /// A scan of the folder failed.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// A path that is not in the tree.
    #[error("{path:?} is not in {rev}")]
    NoSuchPath {
        /// The revision.
        rev: String,
        /// The path.
        path: String,
    },
    /// A revision that names an object of the wrong kind.
    #[error("{rev} is a {kind}, not a commit or tree")]
    NotATree {
        /// The revision.
        rev: String,
        /// What it is.
        kind: ObjectKind,
    },
    /// Filesystem trouble.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T, E = RepoError> = std::result::Result<T, E>;

fn holder(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

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

/// The folder's sync lock: an exclusive OS lock (`flock`) on `.bmsync/sync.lock`. Only
/// one sync, push or pull applies to a folder at a time. The OS drops the lock when its
/// process ends, however it ends, so a killed run never blocks the next one and there is
/// no lock file to clean up (the file stays, holding the last holder's pid, for messages).
#[derive(Debug)]
pub struct SyncLock {
    _file: std::fs::File,
}

/// How often a waiting sync tries the lock again.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(50);

impl SyncLock {
    /// Takes the sync lock of the folder at `root`, waiting up to `wait` while another run
    /// holds it. `waiting` is called once, with the holder's pid when known, before the
    /// wait starts. After the wait: [`RepoError::Busy`].
    pub fn acquire(
        root: &Path,
        wait: std::time::Duration,
        waiting: &mut dyn FnMut(Option<u32>),
    ) -> Result<Self> {
        use std::io::{Read as _, Seek as _, Write as _};
        let dir = root.join(STATE_DIR);
        if !dir.join(STORE_FILE).exists() {
            return Err(RepoError::NotInitialized(root.to_owned()));
        }
        let path = dir.join(SYNC_LOCK_FILE);
        let io = |source| RepoError::Io { path: path.clone(), source };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let deadline = std::time::Instant::now() + wait;
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let pid = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
                    let _ = file.rewind();
                    if !told {
                        waiting(pid);
                        told = true;
                    }
                    if std::time::Instant::now() >= deadline {
                        return Err(RepoError::Busy { root: root.to_owned(), pid });
                    }
                    std::thread::sleep(LOCK_POLL);
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        // The pid is only for the message a waiting run prints.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

/// Proof that this process holds the folder's sync lock (see [`Repo::lock_sync`]).
#[derive(Debug)]
pub struct SyncGuard<'a> {
    slot: std::sync::MutexGuard<'a, Option<SyncLock>>,
    /// Whether dropping the guard releases the OS lock (it was taken for this guard,
    /// not by [`Repo::open_locked`]).
    release: bool,
}

impl Drop for SyncGuard<'_> {
    fn drop(&mut self) {
        if self.release {
            self.slot.take();
        }
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

    /// Connects to `url` with this folder's endpoint; a `file://` folder must exist, unless
    /// `create` (then it is made, with missing parents).
    fn connect_with(&self, url: &RemoteUrl, create: bool) -> Result<Box<dyn Remote>> {
        let opts = crate::remote::S3Options { endpoint: self.endpoint.clone(), ..Default::default() };
        match url {
            RemoteUrl::File { path } if create => Ok(Box::new(crate::remote::FileRemote::create(path)?)),
            url => Ok(crate::remote::open(url, &opts)?),
        }
    }

    /// What the last probe of the remote found, whichever remote it was for.
    pub fn probe_record(&self) -> Result<Option<ProbeRecord>> {
        // A record this build cannot read is as good as none: the remote is probed again.
        Ok(self.store.meta(META_PROBE)?.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    fn set_probe_record(&self, record: &ProbeRecord) -> Result<()> {
        let json = serde_json::to_vec(record).expect("probe records serialise");
        Ok(self.store.set_meta(META_PROBE, &json)?)
    }

    /// The configured remote URL and its effective endpoint, as probe records name them.
    fn remote_identity(&self) -> Result<(String, Option<String>)> {
        let url = self.remote.as_ref().ok_or(RepoError::NoRemote)?;
        Ok((url.to_string(), crate::remote::effective_endpoint(url, self.endpoint())))
    }

    /// The last probe's record, if it is about the remote configured now.
    pub fn fresh_probe_record(&self) -> Result<Option<ProbeRecord>> {
        let (url, endpoint) = self.remote_identity()?;
        Ok(self.probe_record()?.filter(|r| r.is_for(&url, endpoint.as_deref())))
    }

    /// Probes the configured remote now and records what it found.
    pub fn reprobe(&self) -> Result<ProbeRecord> {
        let url = self.remote.as_ref().ok_or(RepoError::NoRemote)?;
        let remote = self.connect_with(url, false)?;
        self.probe_remote(remote.as_ref())
    }

    fn probe_remote(&self, remote: &dyn Remote) -> Result<ProbeRecord> {
        let (_, endpoint) = self.remote_identity()?;
        let record = crate::remote::probe(remote, &self.client_id, endpoint.as_deref())?;
        self.set_probe_record(&record)?;
        Ok(record)
    }

    /// Whether lost updates were accepted for the remote configured now.
    pub fn lost_updates_accepted(&self) -> Result<bool> {
        let (remote, endpoint) = self.remote_identity()?;
        let stored: Option<Accepted> =
            self.store.meta(META_ACCEPT_LOST_UPDATES)?.and_then(|v| serde_json::from_slice(&v).ok());
        Ok(stored == Some(Accepted { remote, endpoint }))
    }

    /// Records the opt-in to lost updates, for the remote configured now only.
    pub fn accept_lost_updates(&self) -> Result<()> {
        let (remote, endpoint) = self.remote_identity()?;
        let json = serde_json::to_vec(&Accepted { remote, endpoint }).expect("serialises");
        Ok(self.store.set_meta(META_ACCEPT_LOST_UPDATES, &json)?)
    }

    /// Points the folder at another remote (or endpoint) and probes it. A new URL resets
    /// the sync base, so the next sync is a first sync: it deletes and overwrites nothing.
    /// `endpoint`: `None` keeps the current one, `Some("")` clears it.
    pub fn set_remote(&mut self, url: &str, endpoint: Option<&str>, create: bool) -> Result<SetRemoteReport> {
        let parsed = RemoteUrl::parse(url)?;
        if let RemoteUrl::File { path } = &parsed
            && !create
        {
            crate::remote::FileRemote::check_folder(path)?;
        }
        let new_endpoint = match endpoint {
            None => self.endpoint.clone(),
            Some("") => None,
            Some(e) => Some(e.to_owned()),
        };
        let mut report =
            SetRemoteReport { base_reset: self.remote.as_ref() != Some(&parsed), ..Default::default() };
        let text = parsed.to_string();
        let batch = self.store.batch()?;
        batch.set_meta(META_REMOTE, text.as_bytes())?;
        batch.set_meta(META_ENDPOINT, new_endpoint.as_deref().unwrap_or("").as_bytes())?;
        batch.commit()?;
        if report.base_reset
            && let Some(base) = self.base()?
        {
            self.store.update_ref(REF_BASE, Some(base), None)?;
        }
        self.remote = Some(parsed.clone());
        self.endpoint = new_endpoint;
        match self.connect_with(&parsed, create).and_then(|r| self.probe_remote(r.as_ref())) {
            Ok(record) => report.probe = Some(record),
            Err(RepoError::RemoteFailed(e)) => report.remote_error = Some(e),
            Err(e) => return Err(e),
        }
        Ok(report)
    }

    /// Takes the folder's sync lock (waiting up to `wait`, see [`SyncLock::acquire`]),
    /// then opens it. The lock is held until the `Repo` is dropped, so a second process
    /// waits for this one instead of finding the store in use.
    pub fn open_locked(
        root: &Path,
        wait: std::time::Duration,
        waiting: &mut dyn FnMut(Option<u32>),
    ) -> Result<Self> {
        let lock = SyncLock::acquire(root, wait, waiting)?;
        let repo = Self::open(root)?;
        *repo.sync_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(lock);
        Ok(repo)
    }

    /// Makes sure this process, and in it only the caller, holds the folder's sync lock
    /// until the guard drops: every applying run (sync, push, pull) takes it. Waits up to
    /// `wait` for another thread or process; `waiting` is told once if it has to (with the
    /// holder's pid when known).
    pub fn lock_sync(
        &self,
        wait: std::time::Duration,
        waiting: &mut dyn FnMut(Option<u32>),
    ) -> Result<SyncGuard<'_>> {
        let deadline = std::time::Instant::now() + wait;
        let mut told = false;
        let mut slot = loop {
            match self.sync_lock.try_lock() {
                Ok(g) => break g,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    let me = Some(std::process::id());
                    if !told {
                        waiting(me);
                        told = true;
                    }
                    if std::time::Instant::now() >= deadline {
                        return Err(RepoError::Busy { root: self.root.clone(), pid: me });
                    }
                    std::thread::sleep(LOCK_POLL);
                }
            }
        };
        let release = slot.is_none();
        if release {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            *slot = Some(SyncLock::acquire(&self.root, left, waiting)?);
        }
        Ok(SyncGuard { slot, release })
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

    /// Connects to the configured remote (credentials and region from the standard AWS
    /// environment), with the guarantees its probe found. When no probe is recorded for
    /// this remote and endpoint (they changed, or `init` could not reach it), it is
    /// probed now. A `file://` folder must exist and be a bmsync remote: one that vanished
    /// is never made again.
    pub fn open_remote(&self) -> Result<Box<dyn Remote>> {
        self.open_remote_probing(true)
    }

    /// [`Repo::open_remote`] without probing (for reads: `plan`, `remote show`): a remote
    /// without a fresh probe reports its conditional writes as assumed.
    pub fn connect_remote(&self) -> Result<Box<dyn Remote>> {
        self.open_remote_probing(false)
    }

    fn open_remote_probing(&self, probe: bool) -> Result<Box<dyn Remote>> {
        let url = self.remote.as_ref().ok_or(RepoError::NoRemote)?;
        let remote: Box<dyn Remote> = match url {
            RemoteUrl::File { path } => Box::new(crate::remote::FileRemote::open_existing(path)?),
            url @ RemoteUrl::S3 { .. } => self.connect_with(url, false)?,
        };
        let record = match self.fresh_probe_record()? {
            Some(r) => r,
            None if probe => self.probe_remote(remote.as_ref())?,
            None => return Ok(remote),
        };
        Ok(Box::new(crate::remote::Probed::new(remote, record)))
    }

    /// Connects to the configured remote for reading only (for `plan`): a `file://`
    /// remote's index is opened read-only, so nothing in its folder changes.
    pub fn open_remote_read_only(&self) -> Result<Box<dyn crate::remote::Remote>> {
        let url = self.remote.as_ref().ok_or(RepoError::NoRemote)?;
        let opts = crate::remote::S3Options { endpoint: self.endpoint.clone(), ..Default::default() };
        Ok(crate::remote::open_read_only(url, &opts)?)
    }

    /// Resolves a revision: a ref name (`base`, `head`), a full id, or an abbreviated id.
    pub fn resolve(&self, rev: &str) -> Result<ObjectId> {
        if let Ok(Some(id)) = self.store.get_ref(rev) {
            return Ok(id);
        }
        if rev.len() == ID_LEN * 2
            && let Ok(id) = rev.parse::<ObjectId>()
        {
            if self.store.contains(&id)? {
                return Ok(id);
            }
            return Err(StoreError::NotFound { id }.into());
        }
        let prefix = IdPrefix::parse(rev).map_err(|_| RepoError::UnknownRevision(rev.to_owned()))?;
        Ok(self.store.resolve_prefix(&prefix)?)
    }

    /// The last sync commit, if any.
    pub fn base(&self) -> Result<Option<ObjectId>> {
        Ok(self.store.get_ref(REF_BASE)?)
    }

    /// The last local commit, if any.
    pub fn head(&self) -> Result<Option<ObjectId>> {
        Ok(self.store.get_ref(REF_HEAD)?)
    }

    /// The root tree a revision names: `local` (a fresh scan), `base`, `head`, a commit,
    /// or a tree. `Ok(None)` is the empty tree of a ref not set yet.
    pub fn resolve_tree(&self, rev: &str) -> Result<Option<ObjectId>> {
        if rev == REV_LOCAL {
            return Ok(Some(self.scan(false)?.root));
        }
        if (rev == REF_BASE || rev == REF_HEAD) && self.store.get_ref(rev)?.is_none() {
            return Ok(None);
        }
        let id = self.resolve(rev)?;
        match self.store.stat(&id)?.map(|(k, _)| k) {
            Some(ObjectKind::Commit) => Ok(Some(self.store.get_commit(&id)?.tree)),
            Some(ObjectKind::Tree) => Ok(Some(id)),
            Some(kind) => Err(RepoError::NotATree { rev: rev.to_owned(), kind }),
            None => Err(StoreError::NotFound { id }.into()),
        }
    }

    /// The entry at `path` inside tree `root`, or the root itself for an empty path.
    pub fn lookup(&self, root: ObjectId, path: &str, rev: &str) -> Result<TreeEntry> {
        let mut entry = TreeEntry { name: String::new(), kind: EntryKind::Tree, id: root, size: 0 };
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let missing = || RepoError::NoSuchPath { rev: rev.to_owned(), path: path.to_owned() };
            if !entry.kind.is_tree() {
                return Err(missing());
            }
            let tree = self.store.get_tree(&entry.id)?;
            entry = tree.entries().iter().find(|e| e.name == part).cloned().ok_or_else(missing)?;
        }
        Ok(entry)
    }

    /// Scans the folder (see [`crate::worktree::scan`]).
    pub fn scan(&self, store_blobs: bool) -> Result<Snapshot> {
        self.scan_with(&ScanOptions { store_blobs, ..ScanOptions::default() })
    }

    /// Scans the folder with explicit options.
    pub fn scan_with(&self, opts: &ScanOptions) -> Result<Snapshot> {
        Ok(crate::worktree::scan(&self.root, &self.store, opts)?)
    }

    /// Local changes since the last sync base (or since nothing, before the first sync).
    pub fn status(&self) -> Result<Status> {
        let mut snapshot = self.scan(false)?;
        // The remote names the last sync refused to write on a folder that ignores case.
        if let Some(v) = self.store.meta(META_COLLISIONS)?
            && let Ok(known) = serde_json::from_slice::<Vec<crate::worktree::Collision>>(&v)
        {
            snapshot.report.collisions.extend(known);
        }
        let base = self.base()?;
        let base_tree = base.map(|b| self.store.get_commit(&b)).transpose()?.map(|c| c.tree);
        let changes = self.store.diff_with_renames(base_tree, Some(snapshot.root))?;
        Ok(Status { base, snapshot, changes })
    }

    /// Records the folder as a local commit on top of `head` (or `base`). Returns `None`
    /// when the folder is unchanged since that commit.
    pub fn commit(&self, message: &str) -> Result<Option<(ObjectId, Commit)>> {
        let snapshot = self.scan(true)?;
        let head = self.head()?;
        let parent = match head {
            Some(h) => Some(h),
            None => self.base()?,
        };
        if let Some(p) = parent
            && self.store.get_commit(&p)?.tree == snapshot.root
        {
            return Ok(None);
        }
        let commit = Commit {
            tree: snapshot.root,
            parents: parent.into_iter().collect(),
            client_id: self.client_id.clone(),
            timestamp_ns: now_ns(),
            message: message.to_owned(),
            baseline: None,
        };
        let id = self.store.put_commit(&commit)?;
        self.store.update_ref(REF_HEAD, head, Some(id))?;
        Ok(Some((id, commit)))
    }

    /// Commits along first parents from `start` (default: `head`, else `base`), newest
    /// first, at most `limit`.
    pub fn log(&self, start: Option<ObjectId>, limit: usize) -> Result<Vec<(ObjectId, Commit)>> {
        let mut next = match start {
            Some(s) => Some(s),
            None => match self.head()? {
                Some(h) => Some(h),
                None => self.base()?,
            },
        };
        let mut out = Vec::new();
        while let Some(id) = next {
            if out.len() >= limit {
                break;
            }
            let c = self.store.get_commit(&id)?;
            next = c.parents.first().copied();
            out.push((id, c));
        }
        Ok(out)
    }
}

/// What `status` found.
#[derive(Clone, Debug)]
pub struct Status {
    /// The sync base compared against.
    pub base: Option<ObjectId>,
    /// The scan of the folder.
    pub snapshot: Snapshot,
    /// Changes from the base tree to the folder, renames paired.
    pub changes: Vec<Change>,
}

/// The nearest strict ancestor of `root` that is a bmsync folder (holds
/// `.bmsync/store.redb`), if any. Symlinks are resolved first, so a folder reached through
/// a link is still found inside its real parent.
fn enclosing_folder(root: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(root).ok()?;
    real.ancestors().skip(1).find(|dir| dir.join(STATE_DIR).join(STORE_FILE).exists()).map(Path::to_owned)
}

/// Now, in UNIX nanoseconds (for commit timestamps, which are only ever displayed).
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A fresh client id: `c-` and 12 hex digits from the clock, the process and a random
/// seed, so two clients initialised at once still differ.
fn generate_client_id(root: &Path) -> String {
    let mut seed = std::collections::hash_map::RandomState::new().build_hasher();
    seed.write_u32(std::process::id());
    let mut h = blake3::Hasher::new();
    h.update(&seed.finish().to_le_bytes());
    h.update(
        &std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .to_le_bytes(),
    );
    h.update(root.as_os_str().as_encoded_bytes());
    format!("c-{}", &h.finalize().to_hex()[..12])
}
