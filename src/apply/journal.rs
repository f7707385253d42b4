//! The intent journal: every operation of a sync round is written to the store before the
//! round starts, and marked done as it finishes. A sync that finds entries left over was
//! interrupted (killed, crashed, powered off): it removes the temporary files and aborts
//! the multipart uploads those entries name, then plans afresh. Re-planning is what makes
//! the outcome right (an operation that did land shows as "both sides agree"); the journal
//! makes sure nothing half-done is left behind.
//!
//! Entries are JSON in the store's `journal` table (see `format-spec/store.md`).

use std::path::Path;
use std::sync::Mutex;

use crate::remote::{Remote, RemoteError, Version};
use crate::repo::Repo;
use crate::store::StoreError;

/// Done marks are written in batches of this many (each batch is one durable commit).
const DONE_BATCH: usize = 64;

/// One journal entry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// The operation, named as in the plan's JSON (`upload`, `delete_remote`, ...).
    /// Journals written by earlier versions spell it without underscores (`deleteremote`);
    /// recovery never reads it, so either spelling recovers alike.
    pub op: String,
    /// The path it acts on.
    pub path: String,
    /// A temporary file it may leave behind, relative to the folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmp: Option<String>,
    /// Whether it may start a multipart upload of `path`.
    #[serde(default)]
    pub multipart: bool,
    /// When the round started, UNIX nanoseconds.
    pub started_ns: Version,
    /// Whether it finished.
    #[serde(default)]
    pub done: bool,
    /// For an upload, a download or a move, the content it puts at `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<crate::id::ObjectId>,
    /// Kept by a recovery for the next plans, its clean-up done: never cleaned up or
    /// counted again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub carried: bool,
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("journal entries serialise")
    }
}

/// The journal of one round: intents written up front, done marks in batches.
pub struct Journal<'r> {
    repo: &'r Repo,
    entries: Vec<Entry>,
    /// The key of entry 0.
    offset: u64,
    pending: Mutex<Vec<u64>>,
}

impl<'r> Journal<'r> {
    /// Writes every intent of the round in one durable transaction.
    pub fn begin(repo: &'r Repo, entries: Vec<Entry>) -> Result<Self, StoreError> {
        // After rows a recovery carried (which stay until a base is recorded).
        let offset = repo.store().journal()?.last().map_or(0, |(k, _)| k + 1);
        let put: Vec<(u64, Vec<u8>)> =
            entries.iter().enumerate().map(|(i, e)| (offset + i as u64, e.encode())).collect();
        repo.store().write_journal(&put, &[])?;
        Ok(Self { repo, entries, offset, pending: Mutex::new(Vec::new()) })
    }

    /// Marks entry `i` done (durable once its batch is flushed).
    pub fn done(&self, i: usize) -> Result<(), StoreError> {
        let batch = {
            let mut p = self.pending.lock().expect("the journal lock is never poisoned");
            p.push(i as u64);
            if p.len() < DONE_BATCH {
                return Ok(());
            }
            std::mem::take(&mut *p)
        };
        self.write_done(&batch)
    }

    fn write_done(&self, batch: &[u64]) -> Result<(), StoreError> {
        let put: Vec<(u64, Vec<u8>)> = batch
            .iter()
            .filter_map(|&i| {
                let e = self.entries.get(usize::try_from(i).ok()?)?;
                Some((self.offset + i, Entry { done: true, ..e.clone() }.encode()))
            })
            .collect();
        self.repo.store().write_journal(&put, &[])
    }

    /// Makes every done mark so far durable (before the round's base is recorded, so a
    /// crash while recording still knows what landed).
    pub fn flush(&self) -> Result<(), StoreError> {
        let batch = std::mem::take(&mut *self.pending.lock().expect("the journal lock is never poisoned"));
        if batch.is_empty() { Ok(()) } else { self.write_done(&batch) }
    }

    /// The round is over and recorded: the journal is emptied.
    pub fn finish(self) -> Result<(), StoreError> {
        self.repo.store().journal_clear()
    }
}

/// What recovery found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Recovery {
    /// Operations the interrupted sync had started but not finished.
    pub unfinished: usize,
    /// Temporary files removed.
    pub temp_files: usize,
    /// Multipart uploads aborted.
    pub uploads_aborted: usize,
}

/// An upload or download an interrupted sync started and never recorded in a base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// The path.
    pub path: String,
    /// The content it sent or fetched.
    pub content: crate::id::ObjectId,
    /// An upload or a remote move (else a download or a local move).
    pub upload: bool,
}

/// Cleans up after an interrupted sync, if the journal says there was one, then empties
/// the journal but for the transfers it names, which stay (as `carried` rows) until a
/// base is recorded. Entries that cannot be read are reported as unfinished and skipped:
/// re-planning still gives the right outcome. Returns what was cleaned up (`None`: there
/// was no interrupted sync, or only rows an earlier recovery carried) and the transfers.
pub fn recover(repo: &Repo, remote: &dyn Remote) -> Result<(Option<Recovery>, Vec<Transfer>), RecoverError> {
    let raw = repo.store().journal()?;
    if raw.is_empty() {
        return Ok((None, Vec::new()));
    }
    let mut r = Recovery::default();
    let (mut transfers, mut carried) = (Vec::new(), Vec::new());
    let mut fresh = false;
    for (_, bytes) in raw {
        let Ok(e) = serde_json::from_slice::<Entry>(&bytes) else {
            r.unfinished += 1;
            fresh = true;
            continue;
        };
        fresh |= !e.carried;
        if let Some(c) = e.content {
            // Landed or not: the plan checks both sides for it. It stays in the journal
            // until a base is recorded, should this sync be interrupted too.
            transfers.push(Transfer {
                path: e.path.clone(),
                content: c,
                upload: matches!(e.op.as_str(), "upload" | "move_remote"),
            });
            carried.push(Entry { tmp: None, multipart: false, carried: true, ..e.clone() });
        }
        if e.done || e.carried {
            continue;
        }
        r.unfinished += 1;
        if let Some(tmp) = &e.tmp
            && remove_temp(repo.root(), tmp)?
        {
            r.temp_files += 1;
        }
        if e.multipart {
            r.uploads_aborted += remote.abort_uploads(&e.path, e.started_ns)?;
        }
    }
    if !fresh {
        // Only what an earlier recovery kept: nothing to clean up, write or say.
        return Ok((None, transfers));
    }
    repo.store().journal_clear()?;
    if !carried.is_empty() {
        let put: Vec<(u64, Vec<u8>)> =
            carried.iter().enumerate().map(|(i, e)| (i as u64, e.encode())).collect();
        repo.store().write_journal(&put, &[])?;
    }
    Ok((Some(r), transfers))
}

fn remove_temp(root: &Path, rel: &str) -> Result<bool, RecoverError> {
    // Temporary names are ours (`.bmsync-dl-…`); anything else is never removed.
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if !name.starts_with(TEMP_PREFIX) || crate::remote::check_key(rel).is_err() {
        return Ok(false);
    }
    let path = root.join(rel);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(RecoverError::Io { path: path.clone(), source }),
    }
}

/// The prefix of every temporary file a sync writes in the folder (a dotfile, so never
/// scanned or synced).
pub const TEMP_PREFIX: &str = ".bmsync-dl-";

/// Where a download of `path` is staged: beside it, under a name unique to the round's
/// operation.
pub fn temp_path(path: &str, op: usize, started_ns: Version) -> String {
    let name = format!("{TEMP_PREFIX}{started_ns}-{op}");
    match path.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{name}"),
        None => name,
    }
}

/// Why recovery failed.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The remote, while aborting uploads.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// Removing a temporary file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_paths_sit_beside_the_target() {
        assert_eq!(temp_path("a/b/c.md", 3, 7), "a/b/.bmsync-dl-7-3");
        assert_eq!(temp_path("c.md", 0, 7), ".bmsync-dl-7-0");
    }

    #[test]
    fn entries_round_trip_and_old_readers_tolerate_missing_fields() {
        let e = Entry {
            op: "download".into(),
            path: "a.md".into(),
            tmp: Some(".bmsync-dl-1-0".into()),
            multipart: false,
            started_ns: 1,
            done: false,
            content: Some(crate::id::ObjectId::for_blob(b"x")),
            carried: false,
        };
        assert_eq!(serde_json::from_slice::<Entry>(&e.encode()).expect("decodes"), e);
        let min: Entry =
            serde_json::from_str(r#"{"op":"upload","path":"b","started_ns":2}"#).expect("decodes");
        assert!(!min.done && !min.multipart && min.tmp.is_none());
    }

    #[test]
    fn ops_are_named_as_in_the_plan_json() {
        assert_eq!(crate::reconcile::Action::DeleteRemote.name(), "delete_remote");
        assert_eq!(crate::reconcile::Action::MoveLocal.name(), "move_local");
        assert_eq!(crate::reconcile::Action::Upload.name(), "upload");
    }

    /// A journal left by the previous version (ops spelled `deleteremote`) still
    /// recovers: its temporary file is removed and the journal emptied.
    #[test]
    fn a_journal_from_the_previous_version_recovers() {
        let d = tempfile::tempdir().expect("temp dir");
        let remote_dir = tempfile::tempdir().expect("temp dir");
        let repo = Repo::init(d.path(), &crate::repo::InitOptions::default()).expect("init");
        let remote = crate::remote::FileRemote::create(remote_dir.path()).expect("remote");
        std::fs::write(d.path().join(".bmsync-dl-7-0"), b"half").expect("temp file");
        let rows = [
            r#"{"op":"deleteremote","path":"gone.md","started_ns":7}"#,
            r#"{"op":"download","path":"a.md","tmp":".bmsync-dl-7-0","started_ns":7}"#,
            r#"{"op":"movelocal","path":"b.md","started_ns":7,"done":true}"#,
        ];
        let put: Vec<(u64, Vec<u8>)> =
            rows.iter().zip(0..).map(|(r, i)| (i, r.as_bytes().to_vec())).collect();
        repo.store().write_journal(&put, &[]).expect("journal");
        let r = recover(&repo, &remote).expect("recovers").0.expect("there was a journal");
        assert_eq!((r.unfinished, r.temp_files), (2, 1));
        assert!(!d.path().join(".bmsync-dl-7-0").exists());
        assert!(repo.store().journal().expect("journal").is_empty());
    }
}
