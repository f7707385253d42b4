//! A folder tied to its store: `.bmsync/` inside the folder holds the store and the
//! client's identity.

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

use crate::id::{ID_LEN, IdPrefix, ObjectId};
use crate::object::{ClientIdError, check_client_id};
use crate::remote::{RemoteUrl, RemoteUrlError};
use crate::store::{Store, StoreError};

/// The folder inside a synced folder that holds bmsync's state.
pub const STATE_DIR: &str = ".bmsync";
/// The store file inside [`STATE_DIR`].
pub const STORE_FILE: &str = "store.redb";
/// Meta key for the client id (UTF-8).
pub const META_CLIENT_ID: &str = "client-id";
/// Meta key for the remote URL (UTF-8).
pub const META_REMOTE: &str = "remote";

/// Options for [`Repo::init`].
#[derive(Clone, Debug, Default)]
pub struct InitOptions {
    /// Remote URL to record.
    pub remote: Option<String>,
    /// Client id to use instead of a generated one.
    pub client_id: Option<String>,
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

/// A bmsync folder and its open store.
#[derive(Debug)]
pub struct Repo {
    root: PathBuf,
    store: Store,
    client_id: String,
    remote: Option<RemoteUrl>,
}

impl Repo {
    /// Makes `root` a bmsync folder: creates `.bmsync/`, the store, and a stable client id.
    pub fn init(root: &Path, opts: &InitOptions) -> Result<Self> {
        if !root.is_dir() {
            return Err(RepoError::NotADirectory(root.to_owned()));
        }
        let remote = opts.remote.as_deref().map(RemoteUrl::parse).transpose()?;
        let client_id = match &opts.client_id {
            Some(c) => {
                check_client_id(c)?;
                c.clone()
            }
            None => generate_client_id(root),
        };
        let dir = root.join(STATE_DIR);
        std::fs::create_dir_all(&dir).map_err(|source| RepoError::Io { path: dir.clone(), source })?;
        let store = Store::create(&dir.join(STORE_FILE)).map_err(|e| match e {
            StoreError::Exists { .. } => RepoError::AlreadyInitialized(root.to_owned()),
            e => e.into(),
        })?;
        store.set_meta(META_CLIENT_ID, client_id.as_bytes())?;
        if let Some(r) = &remote {
            store.set_meta(META_REMOTE, r.to_string().as_bytes())?;
        }
        Ok(Self { root: root.to_owned(), store, client_id, remote })
    }

    /// Opens the bmsync folder at `root`.
    pub fn open(root: &Path) -> Result<Self> {
        let path = root.join(STATE_DIR).join(STORE_FILE);
        let store = Store::open(&path).map_err(|e| match e {
            StoreError::Missing { .. } => RepoError::NotInitialized(root.to_owned()),
            e => e.into(),
        })?;
        let text = |key: &'static str| -> Result<Option<String>> {
            store.meta(key)?.map(|v| String::from_utf8(v).map_err(|_| RepoError::BadMeta { key })).transpose()
        };
        let client_id = text(META_CLIENT_ID)?.ok_or(RepoError::BadMeta { key: META_CLIENT_ID })?;
        let remote = text(META_REMOTE)?.as_deref().map(RemoteUrl::parse).transpose()?;
        Ok(Self { root: root.to_owned(), store, client_id, remote })
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

    /// Resolves a revision: a ref name, a full id, or an abbreviated id.
    pub fn resolve(&self, rev: &str) -> Result<ObjectId> {
        if let Ok(Some(id)) = self.store.get_ref(rev) {
            return Ok(id);
        }
        if rev.len() == ID_LEN * 2 {
            if let Ok(id) = rev.parse::<ObjectId>() {
                return Ok(id);
            }
        }
        let prefix = IdPrefix::parse(rev).map_err(|_| RepoError::UnknownRevision(rev.to_owned()))?;
        Ok(self.store.resolve_prefix(&prefix)?)
    }
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
