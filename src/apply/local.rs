//! Local file primitives every operation is built from: what a file holds now, checked
//! moves that never clobber (into place, aside, into the trash), making a download the
//! kind it should be, and the trash's upkeep.

use std::path::{Path, PathBuf};

use super::SyncError;
use super::options::io_err;
use crate::id::{ObjectHasher, ObjectId, ObjectKind};
use crate::layout::{STATE_DIR, TRASH_DIR};
use crate::object::EntryKind;
use crate::reconcile::LocalCond;

/// The content id of a local file now (`None` if absent).
pub(super) fn local_content(path: &Path) -> Result<Option<ObjectId>, SyncError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
        Ok(m) if m.file_type().is_symlink() => {
            let t = std::fs::read_link(path).map_err(io_err(path))?;
            return Ok(Some(ObjectId::for_blob(t.as_os_str().as_encoded_bytes())));
        }
        Ok(m) if m.is_dir() => return Ok(Some(ObjectId::for_blob(b"\0directory"))),
        Ok(_) => {}
    }
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = ObjectHasher::new(ObjectKind::Blob);
    std::io::copy(&mut f, &mut h).map_err(io_err(path))?;
    Ok(Some(h.finalize()))
}

pub(super) fn local_ok(path: &Path, cond: Option<LocalCond>) -> Result<bool, SyncError> {
    Ok(match cond {
        None => true,
        Some(LocalCond::Absent) => local_content(path)?.is_none(),
        Some(LocalCond::Content(id)) => local_content(path)? == Some(id),
    })
}

/// The longest symlink target bmsync writes (the usual `PATH_MAX`).
const MAX_LINK_TARGET: u64 = 4096;

/// Turns the downloaded file `tmp` into what `kind` says: an executable gets the
/// execute bits where it has read bits; a symlink's bytes become the link's target
/// (refused, with the reason, when the link would leave the folder).
/// `Ok(Some(reason))`: the object is refused (a symlink out of the folder), and nothing
/// is placed; a local failure is an error.
pub(super) fn make_kind(tmp: &Path, path: &str, kind: EntryKind) -> Result<Option<String>, SyncError> {
    use std::os::unix::fs::PermissionsExt;
    match kind {
        EntryKind::File | EntryKind::Tree => Ok(None),
        EntryKind::Executable => {
            let mode = std::fs::metadata(tmp).map_err(io_err(tmp))?.permissions().mode();
            std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(mode | (mode & 0o444) >> 2))
                .map_err(io_err(tmp))?;
            Ok(None)
        }
        EntryKind::Symlink => {
            if std::fs::metadata(tmp).map_err(io_err(tmp))?.len() > MAX_LINK_TARGET {
                return Ok(Some(
                    "a symlink whose target is too long; it is never written locally".to_owned(),
                ));
            }
            let target = std::fs::read(tmp).map_err(io_err(tmp))?;
            if !crate::worktree::link_stays_inside(path, &target) {
                return Ok(Some(
                    "a symlink that points outside the folder (or into .bmsync); it is never written locally"
                        .to_owned(),
                ));
            }
            std::fs::remove_file(tmp).map_err(io_err(tmp))?;
            let target = std::str::from_utf8(&target).expect("checked by link_stays_inside");
            std::os::unix::fs::symlink(target, tmp).map_err(io_err(tmp))?;
            Ok(None)
        }
    }
}

/// The first folder between `root` and `dest` (exclusive) that exists but is not a real
/// folder (a symlink, or a file), if any. Downloads are never written through one.
pub(super) fn link_on_the_way(root: &Path, dest: &Path) -> Option<PathBuf> {
    let rel = dest.strip_prefix(root).ok()?;
    let mut p = root.to_owned();
    let parts: Vec<_> = rel.components().collect();
    for c in parts.iter().take(parts.len().saturating_sub(1)) {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Some(p),
            Err(_) => return None,
        }
    }
    None
}

/// Whether nothing but an empty folder (if anything) is at `dest`, which then gives way:
/// it holds nothing (empty folders are not synced; `remove_dir` removes only an empty
/// one). `false`: a folder holding only what bmsync does not sync (ignored files...).
pub(super) fn folder_gives_way(dest: &Path) -> bool {
    !std::fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) || std::fs::remove_dir(dest).is_ok()
}

pub(super) fn folder_in_the_way(dest: &Path) -> String {
    format!(
        "the folder {} is in the way, holding only files that are not synced; it is left as it is",
        dest.display()
    )
}

/// Removes a temporary file when dropped, if it is still there.
pub(super) struct TempGuard<'a>(pub(super) &'a Path);

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// Removes the folders above `abs` (a file just moved or deleted) that are empty now, up
/// to the folder's root: a sync that empties a folder leaves no empty folder behind.
/// A folder that holds anything (an ignored file, say) stays; `remove_dir` removes only
/// empty ones.
pub(super) fn remove_empty_folders(root: &Path, abs: &Path) {
    let mut dir = abs.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// The trash folder of the round that started at `stamp` (UNIX ns): one folder per sync
/// round, each file at its path inside it.
pub(super) fn trash_round(root: &Path, stamp: u64) -> PathBuf {
    root.join(STATE_DIR).join(TRASH_DIR).join(stamp.to_string())
}

/// A free place in the trash for the local file `rel`: in the round's folder, or, if that
/// round already trashed a file at `rel`, in a folder named by the time now.
pub(super) fn trash_place(root: &Path, stamp: u64, rel: &str) -> PathBuf {
    let first = trash_round(root, stamp).join(rel);
    if std::fs::symlink_metadata(&first).is_err() {
        return first;
    }
    let mut now = crate::clock::unix_ns().max(stamp + 1);
    loop {
        let p = trash_round(root, now).join(rel);
        if std::fs::symlink_metadata(&p).is_err() {
            return p;
        }
        now += 1;
    }
}

/// Removes the empty folders under `dir` (and `dir` itself if it ends up empty): a file
/// staged in the trash and moved out again leaves no folder behind.
pub(super) fn remove_empty_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_tree(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Puts the file `from` at `to` only if nothing is there (a hard link, then `from` is
/// removed), so a file someone created at `to` a moment ago is never clobbered. `false`:
/// something is at `to`, and `from` stays where it is.
pub(super) fn place_new(from: &Path, to: &Path) -> Result<bool, SyncError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    match std::fs::hard_link(from, to) {
        Ok(()) => {
            std::fs::remove_file(from).map_err(io_err(from))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(_) => {
            // No hard links on this file system: a checked rename is the best left.
            if std::fs::symlink_metadata(to).is_ok() {
                return Ok(false);
            }
            std::fs::rename(from, to).map_err(io_err(from))?;
            Ok(true)
        }
    }
}

/// Moves the local file `abs` to `aside` if it holds `expected`. The move comes first and
/// the check after, on the moved file, so an edit that lands between a check and a move
/// cannot be lost: if the file holds anything else, it is put back (never over a newer
/// file; if one appeared, it stays at `aside`, in the trash). `false`: it did not hold
/// `expected`, or is gone.
pub(super) fn take_aside(abs: &Path, aside: &Path, expected: ObjectId) -> Result<bool, SyncError> {
    if let Some(parent) = aside.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    match std::fs::rename(abs, aside) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(abs)(e)),
    }
    if local_content(aside)? == Some(expected) {
        return Ok(true);
    }
    place_new(aside, abs)?;
    Ok(false)
}

/// Removes trash older than `keep`. Best effort: a folder that cannot be removed now is
/// tried again next time.
pub(super) fn prune_trash(root: &Path, keep: std::time::Duration) {
    let Ok(dir) = std::fs::read_dir(root.join(STATE_DIR).join(TRASH_DIR)) else { return };
    let now = u128::from(crate::clock::unix_ns());
    for e in dir.flatten() {
        let Some(ns) = e.file_name().to_str().and_then(|n| n.parse::<u128>().ok()) else { continue };
        if now.saturating_sub(ns) > keep.as_nanos() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_trash_is_pruned_and_recent_trash_kept() {
        let d = tempfile::tempdir().expect("tmp");
        let trash_dir = d.path().join(STATE_DIR).join(TRASH_DIR);
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
        let old = trash_dir.join((now - 40 * 24 * 3600 * 1_000_000_000).to_string());
        let recent = trash_dir.join((now - 1_000_000_000).to_string());
        let foreign = trash_dir.join("not-a-stamp");
        for dir in [&old, &recent, &foreign] {
            std::fs::create_dir_all(dir.join("notes")).expect("mkdir");
            std::fs::write(dir.join("notes/a.md"), "x").expect("write");
        }
        prune_trash(d.path(), std::time::Duration::from_secs(30 * 24 * 3600));
        assert!(!old.exists(), "older than the limit: pruned");
        assert!(recent.join("notes/a.md").exists(), "recent: kept");
        assert!(foreign.exists(), "not ours to judge: kept");
    }

    #[test]
    fn downloads_never_go_through_a_link_on_the_way() {
        let d = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("outside");
        std::fs::create_dir_all(d.path().join("real/sub")).expect("mkdir");
        std::os::unix::fs::symlink(outside.path(), d.path().join("out")).expect("symlink");
        std::fs::write(d.path().join("file"), "x").expect("write");
        let on_way = |rel: &str| link_on_the_way(d.path(), &d.path().join(rel));
        assert_eq!(on_way("real/sub/x.md"), None);
        assert_eq!(on_way("new/folder/x.md"), None, "folders not there yet are made real");
        assert_eq!(on_way("x.md"), None);
        assert_eq!(on_way("out/x.md"), Some(d.path().join("out")));
        assert_eq!(on_way("out/a/b.md"), Some(d.path().join("out")));
        assert_eq!(on_way("file/x.md"), Some(d.path().join("file")));
    }

    #[test]
    fn placing_never_clobbers_and_taking_aside_checks_after_the_move() {
        let d = tempfile::tempdir().expect("tmp");
        let p = |n: &str| d.path().join(n);
        std::fs::write(p("new"), "ours").expect("write");
        std::fs::write(p("dest"), "someone's").expect("write");
        assert!(!place_new(&p("new"), &p("dest")).expect("place"), "an existing file is never replaced");
        assert_eq!(std::fs::read_to_string(p("dest")).expect("read"), "someone's");
        assert!(place_new(&p("new"), &p("sub/fresh")).expect("place"));
        assert!(!p("new").exists());
        assert_eq!(std::fs::read_to_string(p("sub/fresh")).expect("read"), "ours");

        let expected = ObjectId::for_blob(b"someone's");
        assert!(take_aside(&p("dest"), &p("aside/dest"), expected).expect("aside"));
        assert!(!p("dest").exists() && p("aside/dest").exists());
        std::fs::write(p("edited"), "edited meanwhile").expect("write");
        assert!(!take_aside(&p("edited"), &p("aside/edited"), expected).expect("aside"));
        assert_eq!(std::fs::read_to_string(p("edited")).expect("read"), "edited meanwhile", "put back");
        assert!(!take_aside(&p("missing"), &p("aside/missing"), expected).expect("aside"));
    }
}
