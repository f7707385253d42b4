//! Output of the working-tree commands: status, commit, diff, log, show, check-ignore.

use std::io::{self, Write};
use std::path::Path;

use bmsync::object::{Commit, EntryKind};
use bmsync::reconcile::{Change, DiffStats, Leaf, detect_renames, diff_trees};
use bmsync::repo::{REF_BASE, REF_HEAD};
use bmsync::worktree::{IgnoreRules, ScanReport, global_ignore_files};
use bmsync::{ObjectId, ObjectKind, Repo, RepoError, StoreError};
use serde_json::json;

use crate::Failure;

type Out<'a> = &'a mut dyn Write;

fn fail(e: impl Into<Failure>) -> io::Error {
    io::Error::other(e.into())
}

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

fn print_warnings(out: Out, report: &ScanReport) -> io::Result<()> {
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

pub(crate) fn status(out: Out, json: bool, repo: &Repo) -> io::Result<()> {
    let st = repo.status().map_err(fail)?;
    if json {
        let v = json!({
            "base": st.base,
            "tree": st.snapshot.root,
            "clean": st.changes.is_empty(),
            "changes": st.changes,
            "skipped": st.snapshot.report.skipped,
            "collisions": st.snapshot.report.collisions,
            "stats": st.snapshot.stats,
        });
        return writeln!(out, "{v}");
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
    print_warnings(out, &st.snapshot.report)
}

pub(crate) fn commit(out: Out, json: bool, repo: &Repo, message: &str) -> io::Result<()> {
    match repo.commit(message).map_err(fail)? {
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

fn under(path: &str, filters: &[String]) -> bool {
    filters.is_empty()
        || filters.iter().any(|f| {
            let f = f.trim_end_matches('/');
            f.is_empty() || path == f || path.strip_prefix(f).is_some_and(|r| r.starts_with('/'))
        })
}

/// A blob's text, from the store or (for the folder's own side) from the file itself
/// when its bytes still hash to the id. `None` for binary or unavailable content.
fn text_of(repo: &Repo, leaf: &Leaf, path: &str) -> Option<String> {
    let bytes = match repo.store().get_kind(&leaf.id, ObjectKind::Blob) {
        Ok(b) => b,
        Err(StoreError::NotFound { .. }) if leaf.kind != EntryKind::Symlink => {
            let b = std::fs::read(bmsync::worktree::find_on_disk(repo.root(), path)).ok()?;
            (ObjectId::for_blob(&b) == leaf.id).then_some(b)?
        }
        Err(_) => return None,
    };
    String::from_utf8(bytes).ok()
}

/// One side of a change: its path and leaf, if that side exists.
type Side<'a> = Option<(&'a str, &'a Leaf)>;

fn sides(c: &Change) -> (Side<'_>, Side<'_>) {
    match c {
        Change::Added { path, new } => (None, Some((path, new))),
        Change::Deleted { path, old } => (Some((path, old)), None),
        Change::Modified { path, old, new } => (Some((path, old)), Some((path, new))),
        Change::Renamed { from, path, old, new } => (Some((from, old)), Some((path, new))),
    }
}

pub(crate) fn diff(
    out: Out,
    json: bool,
    repo: &Repo,
    from: &str,
    to: &str,
    filters: &[String],
    mode: DiffMode,
) -> io::Result<()> {
    let old_root = repo.resolve_tree(from).map_err(fail)?;
    let new_root = repo.resolve_tree(to).map_err(fail)?;
    let mut stats = DiffStats::default();
    let changes: Vec<Change> = detect_renames(
        &diff_trees(&repo.store().reader().map_err(fail)?, old_root, new_root, &mut stats)
            .map_err(StoreError::from)
            .map_err(fail)?,
    )
    .into_iter()
    .filter(|c| under(c.path(), filters) || matches!(c, Change::Renamed { from, .. } if under(from, filters)))
    .collect();
    let texts = |c: &Change| {
        let (o, n) = sides(c);
        let t = |s: Option<(&str, &Leaf)>| s.map(|(p, l)| text_of(repo, l, p));
        (t(o), t(n))
    };
    let counts = |c: &Change| -> Option<(usize, usize)> {
        let (o, n) = texts(c);
        let (o, n) = (o.unwrap_or(Some(String::new()))?, n.unwrap_or(Some(String::new()))?);
        let d = similar::TextDiff::from_lines(&o, &n);
        let mut plus_minus = (0, 0);
        for op in d.iter_all_changes() {
            match op.tag() {
                similar::ChangeTag::Insert => plus_minus.0 += 1,
                similar::ChangeTag::Delete => plus_minus.1 += 1,
                similar::ChangeTag::Equal => {}
            }
        }
        Some(plus_minus)
    };
    if json {
        let rows: Vec<_> = changes
            .iter()
            .map(|c| {
                let mut v = serde_json::to_value(c).expect("changes serialise");
                if mode == DiffMode::Stat {
                    let (ins, del) = counts(c).map_or((None, None), |(i, d)| (Some(i), Some(d)));
                    v["insertions"] = json!(ins);
                    v["deletions"] = json!(del);
                }
                v
            })
            .collect();
        return writeln!(out, "{}", json!({ "from": old_root, "to": new_root, "changes": rows }));
    }
    match mode {
        DiffMode::NameStatus => {
            for c in &changes {
                match c {
                    Change::Renamed { from, path, .. } => writeln!(out, "R\t{from}\t{path}")?,
                    _ => writeln!(out, "{}\t{}", letter(c), c.path())?,
                }
            }
        }
        DiffMode::Stat => {
            let (mut ins, mut del) = (0, 0);
            for c in &changes {
                let name = match c {
                    Change::Renamed { from, path, .. } => format!("{from} => {path}"),
                    _ => c.path().to_owned(),
                };
                match counts(c) {
                    Some((i, d)) => {
                        ins += i;
                        del += d;
                        writeln!(out, " {name} | +{i} -{d}")?;
                    }
                    None => writeln!(out, " {name} | binary")?,
                }
            }
            writeln!(out, " {} files changed, {ins} insertions(+), {del} deletions(-)", changes.len())?;
        }
        DiffMode::Patch => {
            for c in &changes {
                let (o, n) = sides(c);
                let old_name = o.map_or_else(|| "/dev/null".to_owned(), |(p, _)| format!("a/{p}"));
                let new_name = n.map_or_else(|| "/dev/null".to_owned(), |(p, _)| format!("b/{p}"));
                writeln!(out, "diff --bmsync {} {}", o.map_or(c.path(), |x| x.0), c.path())?;
                match texts(c) {
                    (Some(None), _) | (_, Some(None)) => {
                        writeln!(out, "Binary files {old_name} and {new_name} differ")?;
                    }
                    (ot, nt) => {
                        let (ot, nt) = (ot.flatten().unwrap_or_default(), nt.flatten().unwrap_or_default());
                        let d = similar::TextDiff::from_lines(&ot, &nt);
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

fn print_commit(out: Out, id: ObjectId, c: &Commit, marks: &[&str]) -> io::Result<()> {
    let marks = if marks.is_empty() { String::new() } else { format!(" ({})", marks.join(", ")) };
    writeln!(out, "commit {id}{marks}")?;
    writeln!(out, "Client: {}", c.client_id)?;
    let when = u64::try_from(c.timestamp_ns)
        .ok()
        .map(|ns| std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns))
        .map_or_else(
            || format!("{} ns", c.timestamp_ns),
            |t| humantime::format_rfc3339_seconds(t).to_string(),
        );
    writeln!(out, "Date:   {when}")?;
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

pub(crate) fn log(
    out: Out,
    json: bool,
    repo: &Repo,
    start: Option<ObjectId>,
    limit: usize,
) -> io::Result<()> {
    let commits = repo.log(start, limit).map_err(fail)?;
    let (base, head) = (repo.base().map_err(fail)?, repo.head().map_err(fail)?);
    if json {
        let v: Vec<_> = commits.iter().map(|(id, c)| commit_json(*id, c)).collect();
        return writeln!(out, "{}", serde_json::Value::Array(v));
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

pub(crate) fn show(out: Out, json: bool, repo: &Repo, spec: &str) -> io::Result<()> {
    let (rev, path) = spec.split_once(':').map_or((spec, None), |(r, p)| (r, Some(p)));
    if path.is_none() && rev != bmsync::repo::REV_LOCAL {
        let id = repo.resolve(rev).map_err(fail)?;
        if let Some((ObjectKind::Commit, _)) = repo.store().stat(&id).map_err(fail)? {
            let c = repo.store().get_commit(&id).map_err(fail)?;
            let parent_tree = c
                .parents
                .first()
                .map(|p| repo.store().get_commit(p).map(|pc| pc.tree))
                .transpose()
                .map_err(fail)?;
            let mut stats = DiffStats::default();
            let changes = detect_renames(
                &diff_trees(&repo.store().reader().map_err(fail)?, parent_tree, Some(c.tree), &mut stats)
                    .map_err(StoreError::from)
                    .map_err(fail)?,
            );
            if json {
                let mut v = commit_json(id, &c);
                v["changes"] = json!(changes);
                return writeln!(out, "{v}");
            }
            print_commit(out, id, &c, &[])?;
            writeln!(out)?;
            for ch in &changes {
                writeln!(out, "  {}", describe(ch))?;
            }
            return Ok(());
        }
    }
    let root = repo.resolve_tree(rev).map_err(fail)?.unwrap_or_else(|| bmsync::Tree::default().id());
    let entry = repo.lookup(root, path.unwrap_or(""), rev).map_err(fail)?;
    if entry.kind.is_tree() {
        let tree = if entry.id == bmsync::Tree::default().id() {
            bmsync::Tree::default()
        } else {
            repo.store().get_tree(&entry.id).map_err(fail)?
        };
        if json {
            return writeln!(out, "{}", json!({ "id": entry.id, "kind": "tree", "entries": tree.entries() }));
        }
        for e in tree.entries() {
            writeln!(out, "{}{}", e.name, if e.kind.is_tree() { "/" } else { "" })?;
        }
        return Ok(());
    }
    let p = path.unwrap_or("");
    let bytes = match repo.store().get_kind(&entry.id, ObjectKind::Blob) {
        Ok(b) => b,
        Err(StoreError::NotFound { .. }) => {
            let b = std::fs::read(bmsync::worktree::find_on_disk(repo.root(), p))
                .map_err(|e| fail(RepoError::Io { path: p.into(), source: e }))?;
            if ObjectId::for_blob(&b) != entry.id {
                return Err(fail(Failure {
                    code: 1,
                    message: format!("{p} changed while it was read; try again"),
                    hint: None,
                }));
            }
            b
        }
        Err(e) => return Err(fail(e)),
    };
    if json {
        let text = std::str::from_utf8(&bytes).ok();
        return writeln!(
            out,
            "{}",
            json!({ "id": entry.id, "kind": entry.kind, "size": bytes.len(), "text": text })
        );
    }
    out.write_all(&bytes)
}

pub(crate) fn check_ignore(out: Out, json: bool, root: &Path, paths: &[String]) -> io::Result<()> {
    let rules = IgnoreRules::load(root, &global_ignore_files()).map_err(|e| {
        fail(Failure {
            code: 1,
            message: e.to_string(),
            hint: Some("fix the ignore file; nothing was scanned"),
        })
    })?;
    let mut rows = Vec::new();
    for p in paths {
        let rel = p.trim_start_matches("./");
        let is_dir = root.join(rel).is_dir() || rel.ends_with('/');
        let m = rules.matched_with_parents(rel.trim_end_matches('/'), is_dir);
        rows.push((p, m));
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(p, m)| json!({ "path": p, "ignored": m.is_some(), "source": m.as_ref().map(|m| &m.source), "pattern": m.as_ref().map(|m| &m.pattern) }))
            .collect();
        return writeln!(out, "{}", serde_json::Value::Array(v));
    }
    for (p, m) in rows {
        match m {
            Some(m) => writeln!(out, "{p}: ignored by {} rule {:?}", m.source, m.pattern)?,
            None => writeln!(out, "{p}: not ignored")?,
        }
    }
    Ok(())
}
