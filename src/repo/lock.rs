//! The folder's sync lock: one applying run per folder at a time.

use std::path::Path;

use super::{Result, STATE_DIR, STORE_FILE, SYNC_LOCK_FILE};
use crate::{Repo, RepoError};

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
}
