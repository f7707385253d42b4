//! `watch`: sync continuously until Ctrl-C or SIGTERM, one line (or one JSON event) per
//! round that did something.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bmsync::Repo;
use bmsync::watch::{WatchEvent, WatchOptions, WatchSink};

use crate::output::{Failure, Output, say};

/// Prints events as they come: JSON lines, or short lines for people.
struct Printer<'a, 'b> {
    out: RefCell<&'a mut Output<'b>>,
}

impl WatchSink for Printer<'_, '_> {
    fn event(&self, event: &WatchEvent<'_>) {
        let mut out = self.out.borrow_mut();
        if out.json {
            let v = serde_json::to_value(event).expect("events serialise");
            let _ = out.json_line(&v);
            return;
        }
        match event {
            WatchEvent::Started { remote, interval_secs } => {
                say(&format!("watching with {remote} (the bucket every {interval_secs} s); Ctrl-C stops"));
            }
            WatchEvent::Synced { trigger, summary: s } => {
                let did = crate::sync::did(s);
                if did.is_empty() {
                    // A line only for a round that changed something.
                    return;
                }
                let trigger = serde_json::to_value(trigger)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let _ = writeln!(out, "synced ({trigger}): {}", crate::words::and_list(&did));
                for c in &s.conflicts {
                    let copy = c
                        .local_copy
                        .as_deref()
                        .map(|p| format!("; your version is in {p}"))
                        .unwrap_or_default();
                    let _ = writeln!(out, "conflict: {}{copy}", c.path);
                }
            }
            WatchEvent::Error { message, retry_in_secs, .. } => {
                say(&format!("sync failed: {message}; retrying in {retry_in_secs} s"));
            }
            WatchEvent::Probed { .. } => {}
            WatchEvent::Stopped => say("stopped"),
        }
    }
}

/// `watch`.
pub(crate) fn watch(out: &mut Output<'_>, dir: &Path, opts: &WatchOptions) -> Result<(), Failure> {
    // Not opened locked: each round takes the folder's sync lock, so a manual sync
    // beside the watcher waits for the round, never applies at the same time.
    let repo = Repo::open(dir)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .map_err(|e| Failure::new(format!("cannot catch Ctrl-C and SIGTERM: {e}"), None))?;
    // A remote that cannot be reached yet is waited for, as a failed round would be.
    let mut wait = std::time::Duration::from_secs(1);
    let remote = loop {
        match repo.open_remote() {
            Ok(r) => break r,
            Err(bmsync::RepoError::RemoteFailed(e)) if e.is_transient() && !stop.load(Ordering::Relaxed) => {
                say(&format!("cannot reach the remote yet ({e}); retrying in {} s", wait.as_secs()));
                std::thread::sleep(wait);
                wait = (wait * 2).min(opts.max_backoff);
            }
            Err(e) => return Err(e.into()),
        }
    };
    let printer = Printer { out: RefCell::new(out) };
    bmsync::watch::watch(&repo, remote.as_ref(), opts, &stop, &printer).map_err(|e| {
        Failure::new(e.to_string(), Some("the folder and the bucket are as the last round left them"))
    })
}

/// The watcher's options from its flags (intervals bounded below, so a typo cannot spin).
pub(crate) fn options(
    args: &crate::args::SyncArgs,
    interval: f64,
    debounce: f64,
    full_every: u32,
) -> bmsync::watch::WatchOptions {
    let mut o = bmsync::watch::WatchOptions::default();
    o.interval = std::time::Duration::from_secs_f64(interval.max(0.1));
    o.debounce = std::time::Duration::from_secs_f64(debounce.max(0.05));
    o.full_every = full_every;
    o.sync = args.options();
    o
}
