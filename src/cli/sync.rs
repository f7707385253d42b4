//! Syncing: sync, push, pull, plan.

use std::fmt::Write as _;

use bmsync::Repo;
use serde_json::json;

use crate::output::{Bar, EXIT_CONFLICTS, Failure, LOST_UPDATES_HINT, Output, remote_hint, say};

/// The text summary of a sync: what moved, then every conflict, race and warning.
fn summary_text(remote_url: &str, s: &bmsync::apply::SyncSummary, secs: f64, keep_remote: bool) -> String {
    let snap = s.snapshot.map(|v| format!(" at snapshot {v}")).unwrap_or_default();
    let moves = s.moved_local + s.moved_remote;
    let moved = if moves > 0 { format!("{moves} moved, ") } else { String::new() };
    let mut text = format!(
        "Synced with {}{snap}: {moved}{} uploaded, {} downloaded, {} deleted here, {} deleted there, {} conflicts ({} bytes up, {} down, {secs:.2} s)\n",
        remote_url,
        s.uploaded,
        s.downloaded,
        s.deleted_local,
        s.deleted_remote,
        s.conflicts.len(),
        s.bytes_up,
        s.bytes_down
    );
    for (path, from) in &s.renames_kept {
        let _ = writeln!(text, "kept: {path} (renamed from {from} on one side, deleted on the other)");
    }
    for m in &s.merged {
        let _ = writeln!(text, "merged: {} (edited on both sides; the edits merged)", m.path);
    }
    for c in &s.conflicts {
        let copy = c.local_copy.as_deref().map(|p| format!("; your version is in {p}")).unwrap_or_default();
        let keys =
            if c.keys.is_empty() { String::new() } else { format!("; both changed {}", c.keys.join(", ")) };
        let _ = writeln!(text, "conflict: {} ({}){keys}{copy}", c.path, conflict_words(c.reason));
    }
    let earlier = s.open_conflicts.len().saturating_sub(s.conflicts.len());
    if earlier > 0 {
        let _ = writeln!(text, "{earlier} earlier conflicts are still open (`bmsync conflicts` lists them)");
    }
    if let Some(r) = &s.recovered {
        let _ = writeln!(
            text,
            "recovered from an interrupted sync: {} operations unfinished, {} temporary files removed, {} uploads aborted",
            r.unfinished, r.temp_files, r.uploads_aborted
        );
    }
    for p in &s.resolved {
        // keep-remote moved this client's version to the trash: say where, and how back.
        let yours = if keep_remote {
            format!("; your version is in the trash (`bmsync restore {p} --from trash` brings it back)")
        } else {
            String::new()
        };
        let _ = writeln!(text, "conflict resolved as asked: {p}{yours}");
    }
    if s.deleted_local > 0 {
        let _ = writeln!(text, "files deleted here are in .bmsync/trash/: `bmsync trash` lists them");
    }
    if s.held_back > 0 {
        let _ = writeln!(text, "{} changes left for the other direction", s.held_back);
    }
    for p in &s.changed_after_apply {
        let _ = writeln!(text, "changed by a teammate right after this sync, left for next time: {p}");
    }
    for p in &s.raced {
        let _ = writeln!(text, "changed during the sync, left for next time: {p}");
    }
    for k in &s.local_skipped {
        let _ = writeln!(text, "warning: skipped {}: {}", k.path, k.reason);
    }
    for c in &s.collisions {
        let _ = writeln!(text, "{}", crate::inspect::collision_line(c));
    }
    for k in &s.remote_skipped {
        let _ = writeln!(text, "warning: remote key {:?} skipped: {}", k.key, k.reason);
    }
    text
}

/// `sync`, `push` and `pull`: one sync as `opts` say, its summary on stdout.
pub(crate) fn sync(
    out: &mut Output<'_>,
    repo: &Repo,
    opts: &bmsync::apply::SyncOptions,
) -> Result<(), Failure> {
    let started = std::time::Instant::now();
    let remote = repo.open_remote()?;
    let bar = Bar::new(!out.json && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let s = bmsync::apply::sync_with_progress(repo, remote.as_ref(), opts, &bar).map_err(|e| match e {
        bmsync::apply::SyncError::LostUpdates { .. } => Failure::new(e.to_string(), Some(LOST_UPDATES_HINT)),
        bmsync::apply::SyncError::Remote(ref r) if remote_hint(r).is_some() => {
            Failure::new(e.to_string(), remote_hint(r))
        }
        bmsync::apply::SyncError::Conflicts { .. } => Failure {
            code: EXIT_CONFLICTS,
            message: e.to_string(),
            hint: Some(
                "resolve them with --on-conflict keep-local|keep-remote|keep-both, or run `bmsync sync`",
            ),
        },
        e => Failure::new(e.to_string(), Some("nothing unsafe was done; what succeeded is recorded")),
    })?;
    for w in &s.warnings {
        say(&format!("warning: {w}"));
    }
    let secs = started.elapsed().as_secs_f64();
    if out.json {
        let mut v = serde_json::to_value(&s).expect("summaries serialise");
        v["seconds"] = json!(secs);
        v["remote"] = json!(remote.url());
        out.json_line(&v)?;
    } else {
        let keep_remote = matches!(opts.on_conflict, Some(bmsync::apply::OnConflict::KeepRemote));
        out.write_all(summary_text(&remote.url(), &s, secs, keep_remote).as_bytes())?;
    }
    if !s.raced.is_empty() {
        return Err(Failure::new(
            format!(
                "{} paths kept changing during {} rounds and are not synced yet",
                s.raced.len(),
                s.rounds
            ),
            Some("run `bmsync sync` again when they are quiet"),
        ));
    }
    if s.open_conflicts.is_empty() && s.conflicts.is_empty() {
        Ok(())
    } else {
        Err(Failure {
            code: EXIT_CONFLICTS,
            message: format!(
                "{} open conflicts: both versions were kept",
                s.open_conflicts.len().max(s.conflicts.len())
            ),
            hint: Some("`bmsync conflicts` lists them; `bmsync resolve PATH --keep ...` settles one"),
        })
    }
}

/// `plan`: what a sync would do, writing nothing anywhere.
pub(crate) fn plan(
    out: &mut Output<'_>,
    repo: &Repo,
    opts: &bmsync::apply::SyncOptions,
) -> Result<(), Failure> {
    let remote = repo.open_remote_read_only()?;
    let p = bmsync::apply::make_plan(repo, remote.as_ref(), opts, true).map_err(|e| {
        let hint = match &e {
            bmsync::apply::SyncError::Remote(r @ bmsync::remote::RemoteError::NeedsRepair { .. }) => {
                remote_hint(r)
            }
            _ => Some("nothing was changed"),
        };
        Failure::new(e.to_string(), hint)
    })?;
    let conflicts = p.plan.stats.conflicts;
    if out.json {
        writeln!(out, "{}", serde_json::to_string(&p.plan).expect("plans serialise"))?;
    } else {
        let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
        for op in &p.plan.ops {
            *counts.entry(format!("{:?}", op.action)).or_default() += 1;
        }
        let mut text = format!(
            "Plan against {} ({:?} mode): {} operations\n",
            remote.url(),
            p.plan.mode,
            p.plan.ops.len()
        );
        for (action, n) in &counts {
            let _ = writeln!(text, "  {n:>6}  {action}");
        }
        if !p.plan.ops.is_empty() {
            let _ = writeln!(text, "\n{:<14} {:<20} path", "action", "reason");
        }
        for op in &p.plan.ops {
            let from = op.from.as_deref().map(|f| format!(" (from {f})")).unwrap_or_default();
            let _ = writeln!(
                text,
                "{:<14} {:<20} {}{from}",
                format!("{:?}", op.action),
                format!("{:?}", op.reason),
                op.path
            );
        }
        out.write_all(text.as_bytes())?;
    }
    if conflicts == 0 {
        return Ok(());
    }
    Err(Failure {
        code: EXIT_CONFLICTS,
        message: format!("the plan holds {conflicts} conflicts"),
        hint: None,
    })
}

/// A conflict's reason in words.
fn conflict_words(reason: bmsync::reconcile::Reason) -> String {
    bmsync::conflicts::ConflictKind::from_reason(reason)
        .map_or_else(|| format!("{reason:?}"), |k| k.name().replace('_', "/"))
}
