//! The working-tree commands: status, commit, diff, log, show, check-ignore.

use std::path::Path;

use bmsync::inspect::sides;
use bmsync::object::Commit;
use bmsync::reconcile::Change;
use bmsync::repo::{LogOptions, REF_BASE, REF_HEAD, Rev, split_rev_path};
use bmsync::worktree::{IgnoreRules, ScanReport, global_ignore_files};
use bmsync::{ObjectId, Repo};
use serde_json::json;

use crate::output::{Failure, Output};

type Out<'a, 'b> = &'a mut Output<'b>;

fn short(id: &ObjectId) -> String {
    id.short(12)
}

fn letter(c: &Change) -> &'static str {
    match c {
        Change::Added { .. } => "A",
        Change::Deleted { .. } => "D",
        Change::Modified { .. } => "M",
        Change::Renamed { .. } => "R",
    }
}

fn describe(c: &Change) -> String {
    match c {
        Change::Added { path, .. } => format!("added:    {path}"),
        Change::Deleted { path, .. } => format!("deleted:  {path}"),
        Change::Modified { path, old, new } if old.kind != new.kind => {
            format!("modified: {path} ({} -> {})", old.kind.as_str(), new.kind.as_str())
        }
        Change::Modified { path, .. } => format!("modified: {path}"),
        Change::Renamed { from, path, .. } => format!("renamed:  {from} -> {path}"),
    }
}

fn print_warnings(out: Out<'_, '_>, report: &ScanReport) -> Result<(), Failure> {
    for s in &report.skipped {
        writeln!(out, "warning: skipped {}: {}", s.path, s.reason)?;
    }
    report.collisions.iter().try_for_each(|c| writeln!(out, "{}", collision_line(c)))
}

/// One line for a name collision, for `status` and `sync`.
pub(crate) fn collision_line(c: &bmsync::worktree::Collision) -> String {
    let what = match c.kind {
        bmsync::worktree::CollisionKind::Unicode => "differ only by Unicode normalisation (NFC/NFD)",
        bmsync::worktree::CollisionKind::Case => "differ only by case, and this folder ignores case",
    };
    // Quoted as they are: a Debug form would escape the combining marks of an NFD name.
    let quote =
        |ps: &mut dyn Iterator<Item = &String>| ps.map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ");
    let all = quote(&mut c.paths.iter());
    match c.kind {
        // Either twin may be the one the last sync knew: neither syncs until they are one.
        bmsync::worktree::CollisionKind::Unicode => format!(
            "warning: names collide: they {what}: {all}; neither syncs until one is renamed or removed, and both are left as they are"
        ),
        bmsync::worktree::CollisionKind::Case => format!(
            "warning: names collide: they {what}: {all}; only \"{}\" syncs, {} left as it is",
            c.synced,
            quote(&mut c.paths.iter().filter(|p| **p != c.synced))
        ),
    }
}

/// `status`: local changes since the last sync base, and (with `bucket`) how the bucket
/// differs from it.
pub(crate) fn status(out: Out<'_, '_>, repo: &Repo, bucket: bool) -> Result<(), Failure> {
    // The bucket is looked at only when there is one; failing to reach it is a warning.
    let connected = (bucket && repo.remote().is_some()).then(|| repo.connect_remote());
    let remote = match &connected {
        Some(Ok(r)) => Some(r.as_ref()),
        _ => None,
    };
    let (st, drift) = repo.status_and_drift(remote);
    let st = st?;
    let drift = match (connected, drift) {
        (Some(Err(e)), _) => Some(Err(e.to_string())),
        (_, d) => d.map(|d| d.map_err(|e| e.to_string())),
    };
    let conflicts = repo.open_conflicts()?;
    if out.json {
        let v = json!({
            "base": st.base,
            "tree": st.snapshot.root,
            "clean": st.changes.is_empty(),
            "changes": st.changes,
            "skipped": st.snapshot.report.skipped,
            "collisions": st.snapshot.report.collisions,
            "conflicts": conflicts,
            "stats": st.snapshot.stats,
            "remote": drift.as_ref().and_then(|d| d.as_ref().ok()),
            "remote_error": drift.as_ref().and_then(|d| d.as_ref().err()),
        });
        return out.json_line(&v);
    }
    match st.base {
        Some(b) => writeln!(out, "On sync base {}", short(&b))?,
        None => writeln!(out, "No sync yet: every file is new to the remote")?,
    }
    if st.changes.is_empty() {
        writeln!(out, "Nothing changed")?;
    } else {
        writeln!(out, "Local changes:")?;
        for c in &st.changes {
            writeln!(out, "  {}", describe(c))?;
        }
    }
    match &drift {
        Some(Ok(d)) if d.is_empty() => writeln!(out, "The bucket is as the last sync left it")?,
        Some(Ok(d)) => {
            let counts: Vec<String> =
                [(d.added.len(), "added"), (d.changed.len(), "changed"), (d.deleted.len(), "deleted")]
                    .iter()
                    .filter(|(n, _)| *n > 0)
                    .map(|(n, what)| format!("{n} {what}"))
                    .collect();
            writeln!(
                out,
                "The bucket changed since the last sync ({} there; `bmsync sync` brings them):",
                crate::words::and_list(&counts)
            )?;
            for (what, paths) in
                [("added:   ", &d.added), ("changed: ", &d.changed), ("deleted: ", &d.deleted)]
            {
                for p in paths {
                    writeln!(out, "  {what} {p}")?;
                }
            }
        }
        Some(Err(e)) => writeln!(out, "warning: the bucket was not checked: {e}")?,
        None => {}
    }
    if !conflicts.is_empty() {
        writeln!(out, "Open conflicts (settle with `bmsync resolve PATH --keep ...`):")?;
        for line in conflicts.iter().flat_map(crate::conflicts::conflict_lines) {
            writeln!(out, "  {line}")?;
        }
    }
    print_warnings(out, &st.snapshot.report)
}

/// `commit`: records the folder as a local commit.
pub(crate) fn commit(out: Out<'_, '_>, repo: &Repo, message: &str) -> Result<(), Failure> {
    let json = out.json;
    match repo.commit(message)? {
        None if json => writeln!(out, "{}", json!({ "committed": false })),
        None => writeln!(out, "Nothing to commit: the folder matches the last commit"),
        Some((id, c)) if json => {
            writeln!(out, "{}", json!({ "committed": true, "id": id, "tree": c.tree, "parents": c.parents }))
        }
        Some((id, c)) => writeln!(out, "Committed {} (tree {})", short(&id), short(&c.tree)),
    }
}

/// How `diff` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DiffMode {
    Patch,
    Stat,
    NameStatus,
}

/// `diff`: the changes between two revisions, as patches, counts or status letters.
pub(crate) fn diff(
    out: Out<'_, '_>,
    repo: &Repo,
    from: &str,
    to: &str,
    filters: &[String],
    mode: DiffMode,
) -> Result<(), Failure> {
    let d = repo.diff_revs(from, to, filters)?;
    let changes = &d.changes;
    if out.json {
        let rows: Vec<_> = changes
            .iter()
            .map(|c| {
                let mut v = serde_json::to_value(c).expect("changes serialise");
                if mode == DiffMode::Stat {
                    let counts = repo.change_text(c).line_counts();
                    v["insertions"] = json!(counts.map(|n| n.insertions));
                    v["deletions"] = json!(counts.map(|n| n.deletions));
                }
                v
            })
            .collect();
        return out.json_line(&json!({ "from": d.from, "to": d.to, "changes": rows }));
    }
    match mode {
        DiffMode::NameStatus => {
            for c in changes {
                match c {
                    Change::Renamed { from, path, .. } => writeln!(out, "R\t{from}\t{path}")?,
                    _ => writeln!(out, "{}\t{}", letter(c), c.path())?,
                }
            }
        }
        DiffMode::Stat => {
            let (mut ins, mut del) = (0, 0);
            for c in changes {
                let name = match c {
                    Change::Renamed { from, path, .. } => format!("{from} => {path}"),
                    _ => c.path().to_owned(),
                };
                match repo.change_text(c).line_counts() {
                    Some(n) => {
                        ins += n.insertions;
                        del += n.deletions;
                        writeln!(out, " {name} | +{} -{}", n.insertions, n.deletions)?;
                    }
                    None => writeln!(out, " {name} | binary")?,
                }
            }
            writeln!(
                out,
                " {} changed, {}(+), {}(-)",
                crate::words::count(changes.len(), "file"),
                crate::words::count(ins, "insertion"),
                crate::words::count(del, "deletion")
            )?;
        }
        DiffMode::Patch => {
            for c in changes {
                let (o, n) = sides(c);
                let old_name = o.map_or_else(|| "/dev/null".to_owned(), |(p, _)| format!("a/{p}"));
                let new_name = n.map_or_else(|| "/dev/null".to_owned(), |(p, _)| format!("b/{p}"));
                writeln!(out, "diff --bmsync {} {}", o.map_or(c.path(), |x| x.0), c.path())?;
                let text = repo.change_text(c);
                match text.texts() {
                    None => writeln!(out, "Binary files {old_name} and {new_name} differ")?,
                    Some((ot, nt)) => {
                        let d = similar::TextDiff::from_lines(ot, nt);
                        write!(out, "{}", d.unified_diff().context_radius(3).header(&old_name, &new_name))?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn commit_json(id: ObjectId, c: &Commit) -> serde_json::Value {
    json!({ "id": id, "commit": c })
}

/// RFC 3339 of a commit's timestamp (UTC, seconds), or the raw nanoseconds.
fn commit_time(c: &Commit, fraction: bool) -> String {
    u64::try_from(c.timestamp_ns)
        .ok()
        .map(|ns| std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns))
        .map_or_else(
            || format!("{} ns", c.timestamp_ns),
            |t| {
                if fraction {
                    humantime::format_rfc3339_nanos(t).to_string()
                } else {
                    humantime::format_rfc3339_seconds(t).to_string()
                }
            },
        )
}

/// One commit of `log --json`: who, when, parents, the bucket's snapshot, and how many
/// changes it made since its first parent.
fn log_json(repo: &Repo, id: ObjectId, c: &Commit) -> Result<serde_json::Value, Failure> {
    let (_, changes) = repo.commit_changes(&id)?;
    let count = |f: fn(&Change) -> bool| changes.iter().filter(|c| f(c)).count();
    Ok(json!({
        "id": id,
        "time": commit_time(c, true),
        "timestamp_ns": c.timestamp_ns,
        "client": c.client_id,
        "parents": c.parents,
        "snapshot": c.baseline.as_ref().and_then(|b| b.snapshot),
        "remote": c.baseline.as_ref().map(|b| &b.remote),
        "message": c.message,
        "changes": {
            "added": count(|c| matches!(c, Change::Added { .. })),
            "modified": count(|c| matches!(c, Change::Modified { .. })),
            "deleted": count(|c| matches!(c, Change::Deleted { .. })),
            "renamed": count(|c| matches!(c, Change::Renamed { .. })),
        },
        "commit": c,
    }))
}

fn print_commit(out: Out<'_, '_>, id: ObjectId, c: &Commit, marks: &[&str]) -> Result<(), Failure> {
    let marks = if marks.is_empty() { String::new() } else { format!(" ({})", marks.join(", ")) };
    writeln!(out, "commit {id}{marks}")?;
    if c.parents.len() > 1 {
        let names: Vec<_> = c.parents.iter().map(short).collect();
        writeln!(out, "Merge:  {}", names.join(" "))?;
    }
    writeln!(out, "Client: {}", c.client_id)?;
    writeln!(out, "Date:   {}", commit_time(c, false))?;
    if let Some(b) = &c.baseline {
        let snap = b.snapshot.map(|v| format!(" at snapshot {v}")).unwrap_or_default();
        writeln!(out, "Synced: {}{snap}", b.remote)?;
    }
    writeln!(out)?;
    for line in c.message.lines() {
        writeln!(out, "    {line}")?;
    }
    Ok(())
}

/// `log`: commits from `start` (default: head, else base), newest first.
pub(crate) fn log(
    out: Out<'_, '_>,
    repo: &Repo,
    start: Option<&str>,
    limit: usize,
    first_parent: bool,
    paths: &[String],
) -> Result<(), Failure> {
    let start = start.map(|r| repo.resolve(r)).transpose()?;
    let mut opts = LogOptions::default();
    opts.limit = limit;
    opts.first_parent = first_parent;
    opts.paths = paths.iter().map(|p| p.trim_start_matches("./").to_owned()).collect();
    let commits = repo.log_with(start, &opts)?;
    let (base, head) = (repo.base()?, repo.head()?);
    if out.json {
        let v = commits.iter().map(|(id, c)| log_json(repo, *id, c)).collect::<Result<Vec<_>, _>>()?;
        return out.json_line(&serde_json::Value::Array(v));
    }
    if commits.is_empty() {
        return writeln!(out, "No commits yet");
    }
    for (i, (id, c)) in commits.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        let mut marks = Vec::new();
        if head == Some(*id) {
            marks.push(REF_HEAD);
        }
        if base == Some(*id) {
            marks.push(REF_BASE);
        }
        print_commit(out, *id, c, &marks)?;
    }
    Ok(())
}

/// `show`: a commit with its changes, a tree, or a file (`REV` or `REV:PATH`).
pub(crate) fn show(out: Out<'_, '_>, repo: &Repo, spec: &str) -> Result<(), Failure> {
    let (rev, path) = split_rev_path(spec);
    let root = match repo.resolve_rev(rev)? {
        Rev::Remote(at) => return show_remote(out, repo, rev, at, path.unwrap_or("")),
        Rev::Commit(id) if path.is_none() => {
            let (c, changes) = repo.commit_changes(&id)?;
            if out.json {
                let mut v = commit_json(id, &c);
                v["changes"] = json!(changes);
                return out.json_line(&v);
            }
            print_commit(out, id, &c, &[])?;
            writeln!(out)?;
            for ch in &changes {
                writeln!(out, "  {}", describe(ch))?;
            }
            return Ok(());
        }
        _ => repo.resolve_tree(rev)?.unwrap_or_else(|| bmsync::Tree::default().id()),
    };
    let path = path.unwrap_or("");
    let entry = repo.lookup(root, path, rev)?;
    if entry.kind.is_tree() {
        let tree = if entry.id == bmsync::Tree::default().id() {
            bmsync::Tree::default()
        } else {
            repo.store().get_tree(&entry.id)?
        };
        if out.json {
            return out.json_line(&json!({ "id": entry.id, "kind": "tree", "entries": tree.entries() }));
        }
        for e in tree.entries() {
            writeln!(out, "{}{}", e.name, if e.kind.is_tree() { "/" } else { "" })?;
        }
        return Ok(());
    }
    let bytes = repo.read_blob(&entry.id, path.trim_end_matches('/'))?;
    show_bytes(out, entry.id, entry.kind, &bytes)
}

fn show_bytes(out: Out<'_, '_>, id: ObjectId, kind: bmsync::EntryKind, bytes: &[u8]) -> Result<(), Failure> {
    if out.json {
        let text = std::str::from_utf8(bytes).ok();
        return out.json_line(&json!({ "id": id, "kind": kind, "size": bytes.len(), "text": text }));
    }
    out.write_all(bytes)
}

/// `show remote...:PATH`: a file or folder of the bucket, now or at a version.
fn show_remote(
    out: Out<'_, '_>,
    repo: &Repo,
    rev: &str,
    at: Option<bmsync::remote::Version>,
    path: &str,
) -> Result<(), Failure> {
    let remote = repo.connect_remote()?;
    let tree = bmsync::inspect::RemoteTree::read(remote.as_ref(), rev, at)?;
    match tree.lookup(path) {
        bmsync::inspect::RemoteLookup::File(o) => {
            let (id, bytes) = tree.fetch(remote.as_ref(), o)?;
            show_bytes(out, id, o.kind.unwrap_or(bmsync::EntryKind::File), &bytes)
        }
        bmsync::inspect::RemoteLookup::Folder(names) => {
            if out.json {
                return out.json_line(&json!({ "kind": "tree", "version": tree.version, "entries": names }));
            }
            for n in names {
                writeln!(out, "{n}")?;
            }
            Ok(())
        }
        bmsync::inspect::RemoteLookup::Missing => {
            Err(bmsync::RepoError::NoSuchPath { rev: rev.to_owned(), path: path.to_owned() }.into())
        }
    }
}

/// Splits `diff`'s arguments as git does: up to two leading revisions, then paths. An
/// argument that is not a revision is a path if the folder or the base has it.
pub(crate) fn diff_args(
    repo: &Repo,
    args: &[String],
    paths: &[String],
) -> Result<(String, String, Vec<String>), Failure> {
    let mut revs: Vec<&str> = Vec::new();
    let mut rest: Vec<String> = Vec::new();
    for a in args {
        if rest.is_empty() && revs.len() < 2 {
            match repo.resolve_rev(a) {
                Ok(Rev::Remote(_)) => {
                    return Err(Failure::new(
                        format!("diff compares local revisions; {a:?} is the bucket"),
                        Some(
                            "use `bmsync show REV:PATH` to read the bucket, or `restore --from` to bring a version back",
                        ),
                    ));
                }
                Ok(_) => {
                    revs.push(a);
                    continue;
                }
                Err(e) if !is_path(repo, a) => return Err(e.into()),
                Err(_) => {}
            }
        }
        rest.push(a.trim_start_matches("./").to_owned());
    }
    rest.extend(paths.iter().cloned());
    let from = revs.first().copied().unwrap_or(REF_BASE).to_owned();
    let to = revs.get(1).copied().unwrap_or(bmsync::repo::REV_LOCAL).to_owned();
    Ok((from, to, rest))
}

/// Whether `p` names something in the folder or at the base.
fn is_path(repo: &Repo, p: &str) -> bool {
    let rel = p.trim_start_matches("./").trim_end_matches('/');
    std::fs::symlink_metadata(repo.root().join(rel)).is_ok()
        || repo
            .resolve_tree(REF_BASE)
            .ok()
            .flatten()
            .is_some_and(|root| repo.lookup(root, rel, REF_BASE).is_ok())
}

/// `restore`: files or folders back from a revision.
pub(crate) fn restore(
    out: Out<'_, '_>,
    repo: &Repo,
    paths: &[String],
    from: &str,
    force: bool,
) -> Result<(), Failure> {
    let r = repo.restore(paths, from, force).map_err(|e| match e {
        bmsync::restore::RestoreError::Inspect(e) => Failure::from(e),
        e @ bmsync::restore::RestoreError::WouldOverwrite { .. } => Failure::new(
            e.to_string(),
            Some("`bmsync diff` shows what differs; --force keeps the old bytes in the trash"),
        ),
        e => Failure::new(e.to_string(), None),
    })?;
    if out.json {
        return out.json_line(&serde_json::to_value(&r).expect("reports serialise"));
    }
    for p in &r.restored {
        writeln!(out, "restored {p}")?;
    }
    for (p, to) in &r.trashed {
        writeln!(out, "  the old {p} is in {to}")?;
    }
    for p in &r.unchanged {
        writeln!(out, "unchanged {p}")?;
    }
    if !r.restored.is_empty() {
        writeln!(out, "The next sync carries the restored files.")?;
    }
    Ok(())
}

/// `check-ignore`: whether, and by which rule, each path is ignored.
pub(crate) fn check_ignore(out: Out<'_, '_>, root: &Path, paths: &[String]) -> Result<(), Failure> {
    let rules = IgnoreRules::load(root, &global_ignore_files())
        .map_err(|e| Failure::new(e.to_string(), Some("fix the ignore file; nothing was scanned")))?;
    let mut rows = Vec::new();
    for p in paths {
        let rel = p.trim_start_matches("./");
        let is_dir = root.join(rel).is_dir() || rel.ends_with('/');
        let m = rules.matched_with_parents(rel.trim_end_matches('/'), is_dir);
        rows.push((p, m));
    }
    if out.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(p, m)| json!({ "path": p, "ignored": m.is_some(), "source": m.as_ref().map(|m| &m.source), "pattern": m.as_ref().map(|m| &m.pattern) }))
            .collect();
        return out.json_line(&serde_json::Value::Array(v));
    }
    for (p, m) in rows {
        match m {
            Some(m) => writeln!(out, "{p}: ignored by {} rule {:?}", m.source, m.pattern)?,
            None => writeln!(out, "{p}: not ignored")?,
        }
    }
    Ok(())
}
