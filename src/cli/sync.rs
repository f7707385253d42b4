//! Syncing: sync, push, pull, plan.

use std::fmt::Write as _;

use bmsync::Repo;
use serde_json::json;

use bmsync::apply::Direction;

use crate::output::{Bar, EXIT_CONFLICTS, Failure, LOST_UPDATES_HINT, Output, remote_failure, say};
use crate::words;

/// The hint of a failed sync that has no better one.
const SAFE: &str = "nothing unsafe was done; what succeeded is recorded";

/// What a command in this direction is called, with the flag that lets it delete.
fn command_words(d: Direction) -> (&'static str, &'static str) {
    match d {
        Direction::Both => ("sync", "sync"),
        Direction::Push => ("push", "push --delete"),
        Direction::Pull => ("pull", "pull --delete"),
    }
}

/// What a sync did, in plain words (`3 uploaded`, `1 moved`, `2 conflicts`): only what
/// it did, so nothing for a sync with nothing to do.
pub(crate) fn did(s: &bmsync::apply::SyncSummary) -> Vec<String> {
    let moved = s.moved_local + s.moved_remote;
    let merged = s.merged.len() as u64;
    let conflicts = s.conflicts.len() as u64;
    [
        (s.uploaded, "uploaded"),
        (s.downloaded, "downloaded"),
        (moved, "moved"),
        (s.deleted_local, "deleted here"),
        (s.deleted_remote, "deleted there"),
        (merged, "merged"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .chain((conflicts > 0).then(|| words::count(conflicts, "conflict")))
    .collect()
}

/// The first line of a sync's summary: what it did, in plain words, with the sizes, the
/// time and the snapshot it ended at.
fn headline(remote_url: &str, d: Direction, s: &bmsync::apply::SyncSummary, secs: f64) -> String {
    let parts = did(s);
    let (did, nothing) = match d {
        Direction::Both => ("Synced with", "Already in sync with"),
        Direction::Push => ("Pushed to", "Nothing to push to"),
        Direction::Pull => ("Pulled from", "Nothing to pull from"),
    };
    let mut line = if parts.is_empty() {
        format!("{nothing} {remote_url}")
    } else {
        format!("{did} {remote_url}: {}", words::and_list(&parts))
    };
    let bytes: Vec<String> = [(s.bytes_up, "up"), (s.bytes_down, "down")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, way)| format!("{} {way}", words::size(*n)))
        .collect();
    if !bytes.is_empty() {
        let _ = write!(line, " ({})", bytes.join(", "));
    }
    let _ = write!(line, " in {secs:.2} s");
    if let Some(v) = s.snapshot {
        let _ = write!(line, ", snapshot {}", words::snapshot(v));
    }
    line.push('\n');
    line
}

/// The text summary of a sync: what moved, then every conflict, race and warning.
fn summary_text(
    remote_url: &str,
    opts: &bmsync::apply::SyncOptions,
    s: &bmsync::apply::SyncSummary,
    secs: f64,
    verbose: u8,
) -> String {
    let keep_remote = matches!(opts.on_conflict, Some(bmsync::apply::OnConflict::KeepRemote));
    let mut text = headline(remote_url, opts.direction, s, secs);
    if verbose > 0 {
        let r = &s.requests;
        let _ = writeln!(
            text,
            "requests: {} list, {} head, {} get, {} put, {} copy, {} delete, {} snapshot ({} sent, {} received)",
            r.list,
            r.head,
            r.get,
            r.put,
            r.copy,
            r.delete,
            r.snapshot,
            words::size(r.bytes_sent),
            words::size(r.bytes_received)
        );
    }
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
        let _ = writeln!(
            text,
            "{} still open (`bmsync conflicts` lists them)",
            words::count(earlier, "earlier conflict")
        );
    }
    if let Some(r) = &s.recovered {
        let _ = writeln!(
            text,
            "recovered from an interrupted sync: {} unfinished, {} removed, {} aborted",
            words::count(r.unfinished, "operation"),
            words::count(r.temp_files, "temporary file"),
            words::count(r.uploads_aborted, "upload")
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
    // What a push or pull left: deletions its --delete would carry, and the other
    // direction's changes.
    let pull = opts.direction == Direction::Pull;
    let (_, deleting) = command_words(opts.direction);
    let (side, other) = if pull { ("local", "push") } else { ("remote", "pull") };
    let deletions = if pull { "remote deletion" } else { "local deletion" };
    let carry = if pull { "moves the files here to the trash too" } else { "deletes them in the bucket too" };
    for (n, what, then) in [
        (s.held_deletions, deletions.to_owned(), format!("not carried: `bmsync {deleting}` {carry}")),
        (s.held_back, format!("{side} change"), format!("left for `bmsync {other}` (or `bmsync sync`)")),
    ] {
        if n > 0 {
            let _ = writeln!(text, "{} {then}", words::count(n, &what));
        }
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

/// A failed sync (or plan) as the user sees it: the guard's refusal with the exact flag
/// to pass, conflicts that stopped a push or pull, a remote failure's one line.
fn sync_failure(e: bmsync::apply::SyncError, d: Direction) -> Failure {
    use bmsync::apply::SyncError as E;
    match e {
        E::LostUpdates { .. } => Failure::new(e.to_string(), Some(LOST_UPDATES_HINT)).kind("lost_updates"),
        E::Remote(ref r) => remote_failure(r),
        E::Repo(r) => {
            let f = Failure::from(r);
            if f.hint.is_none() { f.hint(SAFE.to_owned()) } else { f }
        }
        E::Plan(ref p @ bmsync::reconcile::PlanError::TooManyDeletions { deletions, .. }) => {
            let (_, cmd) = command_words(d);
            Failure::new(p.to_string(), None).kind("too_many_deletions").hint(format!(
                "nothing was changed. If these deletions are meant: `bmsync {cmd} --max-delete {deletions}` \
                 (`bmsync plan --max-delete {deletions}` lists them first)"
            ))
        }
        E::Conflicts { ref paths } => {
            let (cmd, _) = command_words(d);
            Failure::new(
                format!(
                    "{} stopped the {cmd}, so nothing was changed: {}",
                    words::count(paths.len(), "conflict"),
                    paths.join(", ")
                ),
                Some(
                    "resolve them with --on-conflict keep-local|keep-remote|keep-both, or run `bmsync sync`",
                ),
            )
            .code(EXIT_CONFLICTS)
            .kind("conflicts")
        }
        e => Failure::new(e.to_string(), Some(SAFE)).kind("sync"),
    }
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
    let s = bmsync::apply::sync_with_progress(repo, remote.as_ref(), opts, &bar)
        .map_err(|e| sync_failure(e, opts.direction))?;
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
        out.write_all(summary_text(&remote.url(), opts, &s, secs, out.verbose).as_bytes())?;
    }
    if !s.raced.is_empty() {
        return Err(Failure::new(
            format!(
                "{} kept changing during {} and {} not synced yet",
                words::count(s.raced.len(), "path"),
                words::count(s.rounds, "round"),
                if s.raced.len() == 1 { "is" } else { "are" }
            ),
            Some("run `bmsync sync` again when they are quiet"),
        )
        .kind("raced"));
    }
    if s.open_conflicts.is_empty() && s.conflicts.is_empty() {
        Ok(())
    } else {
        let n = s.open_conflicts.len().max(s.conflicts.len());
        Err(Failure::told(
            EXIT_CONFLICTS,
            "conflicts",
            format!("{} open: both versions were kept", words::count(n, "conflict")),
            Some("`bmsync conflicts` lists them; `bmsync resolve PATH --keep ...` settles one"),
        ))
    }
}

/// `plan`: what a sync would do, writing nothing anywhere. A plan the mass-delete guard
/// refuses is shown too (so the deletions can be looked at), and exits 1.
pub(crate) fn plan(
    out: &mut Output<'_>,
    repo: &Repo,
    opts: &bmsync::apply::SyncOptions,
) -> Result<(), Failure> {
    let remote = repo.open_remote_read_only()?;
    let p = bmsync::apply::make_plan(repo, remote.as_ref(), opts, true).map_err(|e| match e {
        bmsync::apply::SyncError::Remote(ref r @ bmsync::remote::RemoteError::NeedsRepair { .. }) => {
            remote_failure(r)
        }
        e => {
            let f = sync_failure(e, opts.direction);
            if f.hint.is_none() { Failure { hint: Some("nothing was changed".into()), ..f } } else { f }
        }
    })?;
    let conflicts = p.plan.stats.conflicts;
    if out.json {
        let mut v = serde_json::to_value(&p.plan).expect("plans serialise");
        v["refused"] = json!(p.refused.as_ref().map(ToString::to_string));
        out.json_line(&v)?;
    } else {
        out.write_all(plan_text(&remote.url(), &p.plan).as_bytes())?;
    }
    if let Some(e @ bmsync::reconcile::PlanError::TooManyDeletions { deletions, .. }) = &p.refused {
        return Err(Failure::told(
            crate::output::EXIT_FAILURE,
            "too_many_deletions",
            format!("a sync would refuse this plan: {e}"),
            None,
        )
        .hint(format!("if these deletions are meant, pass --max-delete {deletions} to the sync")));
    }
    if conflicts == 0 {
        return Ok(());
    }
    Err(Failure::told(
        EXIT_CONFLICTS,
        "conflicts",
        format!("the plan holds {}", words::count(conflicts, "conflict")),
        None,
    ))
}

/// A plan in plain words: what kind of sync, the counts by action, then each operation.
fn plan_text(remote_url: &str, plan: &bmsync::reconcile::Plan) -> String {
    let mode = match plan.mode {
        bmsync::reconcile::Mode::ThreeWay => "changes since the last sync",
        bmsync::reconcile::Mode::Union => "first sync with this remote: both sides combined, nothing deleted",
    };
    let mut text =
        format!("Plan against {remote_url} ({mode}): {}\n", words::count(plan.ops.len(), "operation"));
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for op in &plan.ops {
        *counts.entry(op.action.words()).or_default() += 1;
    }
    for (action, n) in &counts {
        let _ = writeln!(text, "  {n:>6}  {action}");
    }
    if !plan.ops.is_empty() {
        let _ = writeln!(text, "\n{:<13} {:<32} path", "action", "why");
    }
    for op in &plan.ops {
        let from = op.from.as_deref().map(|f| format!(" (from {f})")).unwrap_or_default();
        let _ = writeln!(text, "{:<13} {:<32} {}{from}", op.action.words(), op.reason.words(), op.path);
    }
    text
}

/// A conflict's reason in words.
fn conflict_words(reason: bmsync::reconcile::Reason) -> String {
    bmsync::conflicts::ConflictKind::from_reason(reason)
        .map_or_else(|| reason.words().to_owned(), |k| k.name().replace('_', "/"))
}
