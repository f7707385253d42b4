//! Continuous sync: the folder and the bucket kept in sync while people work. Local
//! changes come from the OS's file events (writes only, debounced); the bucket is probed every
//! interval with one HEAD of a small marker object that every watcher's writing sync
//! updates, plus a full sync every few probes for writes by anything else. Every sync is
//! [`crate::apply::sync`] itself: same plan, preconditions, conflicts and journal. The
//! marker and the events are specified in `format-spec/watch.md`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::apply::{SyncError, SyncOptions, SyncSummary};
use crate::id::ObjectId;
use crate::object::EntryKind;
use crate::remote::{Body, Condition, Remote, RemoteError};
use crate::repo::Repo;

/// The marker's key, under the remote's prefix (private: never synced as a note).
pub const MARKER_KEY: &str = ".bmsync/marker";

/// How a watch runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WatchOptions {
    /// How often the bucket is probed.
    pub interval: Duration,
    /// How long the folder must be quiet after a change before it syncs.
    pub debounce: Duration,
    /// Every this many probes, sync whatever the marker says (writes by other tools do
    /// not touch it).
    pub full_every: u32,
    /// The longest wait between retries after a failed sync.
    pub max_backoff: Duration,
    /// The syncs' options.
    pub sync: SyncOptions,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            debounce: Duration::from_secs(1),
            full_every: 10,
            max_backoff: Duration::from_secs(60),
            sync: SyncOptions::default(),
        }
    }
}

/// Why a sync ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The watch started.
    Start,
    /// The folder changed.
    Local,
    /// The marker changed: a teammate's watcher wrote.
    Remote,
    /// The periodic full sync.
    Periodic,
    /// A retry after a failure.
    Retry,
}

/// What a watch reports, one event at a time (`format-spec/watch.md`).
#[derive(Debug, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WatchEvent<'a> {
    /// The watch runs.
    Started {
        /// The remote.
        remote: String,
        /// Probe interval, seconds.
        interval_secs: f64,
    },
    /// A sync ended well.
    Synced {
        /// Why it ran.
        trigger: Trigger,
        /// What it did.
        summary: &'a SyncSummary,
    },
    /// A sync failed; the watch waits and retries.
    Error {
        /// Why it ran.
        trigger: Trigger,
        /// What went wrong.
        message: String,
        /// Seconds until the retry.
        retry_in_secs: f64,
    },
    /// A probe of the bucket found nothing new.
    Probed {
        /// Requests the probe made.
        requests: u64,
    },
    /// The watch stopped (asked to).
    Stopped,
}

/// Receives a watch's events.
pub trait WatchSink {
    /// One event.
    fn event(&self, event: &WatchEvent<'_>);
}

/// Why a watch could not run.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The folder's file events could not be watched.
    #[error("cannot watch the folder for changes: {0}")]
    Notify(#[from] notify::Error),
    /// A failure no retry can fix (the folder's state, the guarantees refused).
    #[error(transparent)]
    Sync(#[from] SyncError),
}

/// Whether an event path is one of bmsync's own (its state, its temporary files), or the
/// folder itself (whose own entry changes with anything in it, `.bmsync/` included).
fn ours(root: &std::path::Path, p: &std::path::Path) -> bool {
    if p == root {
        return true;
    }
    let rel = p.strip_prefix(root).unwrap_or(p);
    rel.components().any(|c| {
        let s = c.as_os_str().to_string_lossy();
        s == crate::layout::STATE_DIR || s.starts_with(".bmsync-")
    })
}

/// Errors a retry may fix: the remote, a lost race with a sync beside us.
fn retryable(e: &SyncError) -> bool {
    !matches!(e, SyncError::LostUpdates { .. })
}

/// Runs until `stop` is set, syncing `repo` with `remote` whenever either side changed.
/// Failed syncs are reported and retried with backoff; only a failure no retry can fix
/// (refused guarantees, the file watcher) ends it with an error.
pub fn watch(
    repo: &Repo,
    remote: &dyn Remote,
    opts: &WatchOptions,
    stop: &AtomicBool,
    sink: &dyn WatchSink,
) -> Result<(), WatchError> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let (tx, rx) = mpsc::channel();
    let root = repo.root().to_owned();
    let filter_root = root.clone();
    // Opening and reading (what every scan does) are no change: only writes count.
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(e) = res
            && !matches!(e.kind, EventKind::Access(_))
            && e.paths.iter().any(|p| !ours(&filter_root, p))
        {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&root, RecursiveMode::Recursive)?;
    sink.event(&WatchEvent::Started { remote: remote.url(), interval_secs: opts.interval.as_secs_f64() });

    // The marker as it is now: a change of it means a teammate's watcher wrote.
    let mut marker: Option<String> = remote.head(MARKER_KEY, None).ok().map(|i| i.etag);
    let mut probes = 0u32;
    let mut next_probe = Instant::now() + opts.interval;
    let mut backoff = Duration::from_secs(1);
    let mut pending = Some(Trigger::Start);
    while !stop.load(Ordering::Relaxed) {
        if let Some(trigger) = pending.take() {
            match crate::apply::sync(repo, remote, &opts.sync) {
                Ok(s) => {
                    backoff = Duration::from_secs(1);
                    if s.uploaded + s.deleted_remote + s.moved_remote > 0 {
                        marker = mark(repo, remote, &s).or(marker);
                    }
                    if trigger != Trigger::Periodic || !quiet(&s) {
                        sink.event(&WatchEvent::Synced { trigger, summary: &s });
                    }
                    // Our own writes to the folder raise events too: they are dropped.
                    if drain_own(&rx, opts.debounce, repo) {
                        pending = Some(Trigger::Local);
                    }
                }
                Err(e) if retryable(&e) => {
                    let retry = backoff;
                    sink.event(&WatchEvent::Error {
                        trigger,
                        message: e.to_string(),
                        retry_in_secs: retry.as_secs_f64(),
                    });
                    backoff = (backoff * 2).min(opts.max_backoff);
                    if !sleep_unless(stop, retry) {
                        break;
                    }
                    pending = Some(Trigger::Retry);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let wait = next_probe.saturating_duration_since(Instant::now()).min(Duration::from_millis(200));
        match rx.recv_timeout(wait) {
            Ok(()) => {
                // Debounced: once the folder has been quiet for `debounce`.
                while rx.recv_timeout(opts.debounce).is_ok() {}
                pending = Some(Trigger::Local);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(WatchError::Notify(notify::Error::generic("the file watcher stopped")));
            }
        }
        if Instant::now() < next_probe {
            continue;
        }
        next_probe = Instant::now() + opts.interval;
        probes += 1;
        if probes.is_multiple_of(opts.full_every.max(1)) {
            pending = Some(Trigger::Periodic);
            continue;
        }
        match remote.head(MARKER_KEY, None) {
            Ok(info) if marker.as_deref() != Some(info.etag.as_str()) => {
                marker = Some(info.etag);
                pending = Some(Trigger::Remote);
            }
            Ok(_) | Err(RemoteError::NotFound { .. }) => sink.event(&WatchEvent::Probed { requests: 1 }),
            Err(_) => pending = Some(Trigger::Retry),
        }
    }
    sink.event(&WatchEvent::Stopped);
    Ok(())
}

/// Whether a sync did nothing worth a line.
fn quiet(s: &SyncSummary) -> bool {
    s.uploaded + s.downloaded + s.deleted_local + s.deleted_remote + s.moved_local + s.moved_remote == 0
        && s.conflicts.is_empty()
        && s.merged.is_empty()
}

/// Writes the marker after a sync of ours that wrote to the bucket: which client, which
/// commit. Returns its ETag (`None` if the write failed: the periodic sync covers it).
fn mark(repo: &Repo, remote: &dyn Remote, s: &SyncSummary) -> Option<String> {
    let body = serde_json::json!({
        "version": 1,
        "client": repo.client_id(),
        "commit": s.base,
        "at_ns": crate::clock::unix_ns(),
    })
    .to_string();
    let bytes = body.as_bytes();
    let id = ObjectId::for_blob(bytes);
    let cond = match remote.head(MARKER_KEY, None) {
        Ok(info) => Condition::IfMatch(info.etag),
        Err(_) => Condition::IfAbsent,
    };
    remote.put(MARKER_KEY, Body::Bytes(bytes), id, EntryKind::File, &cond).ok().map(|w| w.etag)
}

/// Drops folder events that our own sync caused (those of the debounce window after it).
/// Returns whether the folder changed meanwhile all the same (a user's edit that came in
/// that window): it differs from the base.
fn drain_own(rx: &mpsc::Receiver<()>, debounce: Duration, repo: &Repo) -> bool {
    let mut any = false;
    while let Ok(()) = rx.try_recv() {
        any = true;
    }
    let until = Instant::now() + debounce.min(Duration::from_millis(300));
    while let Ok(()) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        any = true;
    }
    any && repo.status().is_ok_and(|st| !st.changes.is_empty())
}

/// Sleeps `d` unless `stop` is set meanwhile. `false`: stopped.
fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100).min(end.saturating_duration_since(Instant::now())));
    }
    !stop.load(Ordering::Relaxed)
}
