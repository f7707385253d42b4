//! The conflict commands: conflicts, resolve.

use std::path::PathBuf;

use bmsync::Repo;
use bmsync::conflicts::{ConflictKind, ConflictRecord, Keep, ResolveError};
use serde_json::json;

use crate::output::{Failure, Output};

type Out<'a, 'b> = &'a mut Output<'b>;

/// The version of the `conflicts --json` form (format-spec/conflicts.md).
const CONFLICTS_JSON_VERSION: u32 = 1;

/// What collided, in words.
fn kind_words(kind: ConflictKind) -> &'static str {
    match kind {
        ConflictKind::EditEdit => "edited on both sides",
        ConflictKind::AddAdd => "added on both sides",
        ConflictKind::DeleteEdit => "deleted here, edited on the remote (the remote edit is kept)",
        ConflictKind::EditDelete => "edited here, deleted on the remote (your edit is kept)",
        ConflictKind::TypeChange => "a file on one side, a folder on the other (the folder is kept)",
        ConflictKind::RemoteKeyCollision => {
            "a file and a folder of one name in the bucket (the folder is kept)"
        }
        ConflictKind::RenameRename => "renamed on both sides to different names (the remote's name is kept)",
    }
}

/// One line (and a second for the copy) for an open conflict, for `conflicts` and `status`.
pub(crate) fn conflict_lines(r: &ConflictRecord) -> Vec<String> {
    let keys =
        if r.keys.is_empty() { String::new() } else { format!("; both changed {}", r.keys.join(", ")) };
    let mut lines = vec![format!("{}: {}{keys} ({}, {})", r.path, kind_words(r.kind), r.client, r.at)];
    if let Some(copy) = &r.copy {
        lines.push(format!("    the other version is in {copy}"));
    }
    if let Some(mine) = &r.renamed {
        lines.push(format!("    you had renamed it to {mine} (`resolve --keep local` moves it there)"));
    }
    lines
}

/// `conflicts`: the open conflicts.
pub(crate) fn list(out: Out<'_, '_>, repo: &Repo) -> Result<(), Failure> {
    let open = repo.open_conflicts()?;
    if out.json {
        return out.json_line(&json!({ "version": CONFLICTS_JSON_VERSION, "conflicts": open }));
    }
    if open.is_empty() {
        return writeln!(out, "No open conflicts");
    }
    for r in &open {
        for line in conflict_lines(r) {
            writeln!(out, "{line}")?;
        }
    }
    writeln!(out, "settle one with `bmsync resolve PATH --keep local|remote|both|merged`, or delete its copy")
}

/// `resolve PATH --keep WHICH`.
pub(crate) fn resolve(out: Out<'_, '_>, repo: &Repo, path: &str, keep: Keep) -> Result<(), Failure> {
    let done = repo.resolve_conflict(path, keep).map_err(resolve_failure)?;
    if out.json {
        return out.json_line(&json!({ "resolved": done }));
    }
    let what = match keep {
        Keep::Local => "kept your version",
        Keep::Remote => "kept the remote version",
        Keep::Both => "kept both files",
        Keep::Merged => "kept the file as you merged it",
    };
    writeln!(out, "Resolved {}: {what}", done.record.path)?;
    if !done.trashed.is_empty() {
        writeln!(out, "  moved to the trash: {}", done.trashed.join(", "))?;
    }
    writeln!(out, "the next sync carries it to the remote")
}

fn resolve_failure(e: ResolveError) -> Failure {
    let hint = match &e {
        ResolveError::NotAConflict { .. } => Some("`bmsync conflicts` lists the open conflicts"),
        ResolveError::ChangedSince { .. } => {
            Some("keep the file as it is now with --keep merged, or undo the edit and try again")
        }
        ResolveError::CannotSwap { .. } => Some("use --keep both or --keep merged"),
        _ => None,
    };
    match e {
        ResolveError::Store(e) => e.into(),
        e => Failure::new(e.to_string(), hint).kind("resolve"),
    }
}

/// `merge-file [-p] [-L LABEL]... CURRENT BASE OTHER`, with git's exit codes.
pub(crate) fn merge_file(
    out: Out<'_, '_>,
    files: [&PathBuf; 3],
    labels: &[String],
    stdout: bool,
    quiet: bool,
) -> Result<(), Failure> {
    let read =
        |p: &PathBuf| std::fs::read(p).map_err(|e| Failure::new(format!("{}: {e}", p.display()), None));
    let [current, base, other] = [read(files[0])?, read(files[1])?, read(files[2])?];
    let label = |i: usize| labels.get(i).cloned().unwrap_or_else(|| files[i].display().to_string());
    let opts = bmsync::merge::MergeOptions {
        labels: bmsync::merge::MergeLabels { current: label(0), base: label(1), other: label(2) },
        markers: true,
    };
    let merged = bmsync::merge::merge_text(&base, &current, &other, &opts).map_err(|e| {
        Failure::new(format!("cannot merge {}: {e}", files[0].display()), None).code(255).kind("not_text")
    })?;
    if out.json {
        let text = stdout.then(|| String::from_utf8_lossy(merged.bytes()).into_owned());
        out.json_line(&serde_json::json!({ "path": files[0], "conflicts": merged.conflicts(), "written": !stdout, "text": text }))?;
    }
    if stdout {
        if !out.json {
            out.write_all(merged.bytes())?;
        }
    } else {
        std::fs::write(files[0], merged.bytes())
            .map_err(|e| Failure::new(format!("{}: {e}", files[0].display()), None))?;
    }
    let code = bmsync::merge::merge_file_exit(&merged);
    if code == 0 {
        return Ok(());
    }
    if !quiet {
        crate::output::say(&format!(
            "warning: {} in {}",
            crate::words::count(merged.conflicts(), "conflict"),
            files[0].display()
        ));
    }
    Err(Failure::quiet(code))
}
