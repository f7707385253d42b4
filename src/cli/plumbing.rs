//! Plumbing: cat-object, hash-object, update-ref.

use std::path::PathBuf;

use bmsync::inspect::RefExpect;
use bmsync::object::{Commit, CommitRef, ManifestRef, TreeRef};
use bmsync::{ObjectId, ObjectKind, Repo, StoreError};
use serde_json::json;

use crate::output::{Failure, Output};

/// `hash-object`: each file's blob id (and, with `write`, the blob into the store).
pub(crate) fn hash_object(
    out: &mut Output<'_>,
    repo: Option<&Repo>,
    files: &[PathBuf],
) -> Result<(), Failure> {
    let mut rows = Vec::new();
    for f in files {
        let (id, size) = match repo {
            Some(repo) => repo.store_file(f)?,
            None => bmsync::inspect::hash_file(f)?,
        };
        rows.push((f, id, size));
    }
    if out.json {
        let v: Vec<_> =
            rows.iter().map(|(f, id, size)| json!({ "path": f, "id": id, "size": size })).collect();
        out.json_line(&serde_json::Value::Array(v))
    } else {
        rows.iter().try_for_each(|(_, id, _)| writeln!(out, "{id}"))
    }
}

/// `update-ref`: moves ref `name` to `new`, only if it still points at `old` when given.
/// A target of `none` is no target (a deleted ref, or one that must not exist).
pub(crate) fn update_ref(
    out: &mut Output<'_>,
    repo: &Repo,
    name: &str,
    new: &str,
    old: Option<&str>,
) -> Result<(), Failure> {
    let target = |r: &str| if r == "none" { Ok(None) } else { repo.resolve(r).map(Some) };
    let new = target(new)?;
    let expected = match old {
        Some(o) => RefExpect::Is(target(o)?),
        None => RefExpect::Current,
    };
    let done = repo.update_ref(name, new, expected)?;
    if out.json { out.json_line(&json!({ "ref": name, "old": done.old, "new": done.new })) } else { Ok(()) }
}

/// `cat-object`: an object verified against its id, or only its kind or size.
pub(crate) fn cat_object(
    out: &mut Output<'_>,
    repo: &Repo,
    rev: &str,
    kind: bool,
    size: bool,
) -> Result<(), Failure> {
    let id = repo.resolve(rev)?;
    if kind || size {
        let (k, n) = repo.store().stat(&id)?.ok_or(StoreError::NotFound { id })?;
        if out.json {
            out.json_line(&json!({ "id": id, "kind": k, "size": n }))
        } else if kind {
            writeln!(out, "{k}")
        } else {
            writeln!(out, "{n}")
        }
    } else {
        let (k, bytes) = repo.store().get(&id)?;
        print_object(out, id, k, &bytes)
    }
}

fn print_object(out: &mut Output<'_>, id: ObjectId, kind: ObjectKind, bytes: &[u8]) -> Result<(), Failure> {
    // The store verified and decoded-checked these bytes on the way in and out.
    let corrupt = |e: bmsync::object::DecodeError| Failure::new(format!("object {id}: {e}"), None);
    let json = out.json;
    match kind {
        ObjectKind::Blob if !json => out.write_all(bytes),
        ObjectKind::Blob => {
            let text = std::str::from_utf8(bytes).ok();
            writeln!(out, "{}", json!({ "id": id, "kind": kind, "size": bytes.len(), "text": text }))
        }
        ObjectKind::Tree => {
            let tree = TreeRef::decode(bytes).map_err(corrupt)?.to_owned();
            if json {
                writeln!(out, "{}", json!({ "id": id, "kind": kind, "entries": tree.entries() }))
            } else {
                tree.entries().iter().try_for_each(|e| {
                    writeln!(out, "{:<10} {} {:>10}\t{}", e.kind.as_str(), e.id, e.size, e.name)
                })
            }
        }
        ObjectKind::Commit => {
            let c: Commit = CommitRef::decode(bytes).map_err(corrupt)?.to_owned();
            if json {
                writeln!(out, "{}", json!({ "id": id, "kind": kind, "commit": c }))
            } else {
                writeln!(out, "tree {}", c.tree)?;
                c.parents.iter().try_for_each(|p| writeln!(out, "parent {p}"))?;
                writeln!(out, "client {}", c.client_id)?;
                writeln!(out, "timestamp {}", c.timestamp_ns)?;
                if let Some(b) = &c.baseline {
                    writeln!(out, "remote {}", b.remote)?;
                    if let Some(v) = b.snapshot {
                        writeln!(out, "snapshot {v}")?;
                    }
                    writeln!(out, "manifest {}", b.manifest)?;
                }
                writeln!(out)?;
                writeln!(out, "{}", c.message)
            }
        }
        ObjectKind::Manifest => {
            let m = ManifestRef::decode(bytes).map_err(corrupt)?.to_owned();
            if json {
                writeln!(out, "{}", json!({ "id": id, "kind": kind, "entries": m.entries() }))
            } else {
                m.entries().iter().try_for_each(|e| {
                    let content = e.content.map_or_else(|| "-".to_owned(), |c| c.to_hex());
                    writeln!(out, "{content} {} {:>10} {}\t{}", e.etag, e.size, e.key, e.path)
                })
            }
        }
    }
}

/// `completions SHELL`: the shell's completion script, from the command line's own
/// definition.
pub(crate) fn completions(out: &mut Output<'_>, shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut crate::args::command(), "bmsync", &mut buf);
    if out.json {
        return out
            .json_line(&json!({ "shell": shell.to_string(), "script": String::from_utf8_lossy(&buf) }));
    }
    out.write_all(&buf)
}

/// `manual`: the manual page (roff), from the same definition.
pub(crate) fn manual(out: &mut Output<'_>) -> Result<(), Failure> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(crate::args::command())
        .render(&mut buf)
        .map_err(|e| Failure::new(format!("writing the manual: {e}"), None))?;
    if out.json {
        return out.json_line(&json!({ "manual": String::from_utf8_lossy(&buf) }));
    }
    out.write_all(&buf)
}
