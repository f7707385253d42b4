//! The working tree: how a local folder becomes a Merkle tree, fast and conservatively.
//! A missed change is a bug; an extra re-hash is only a cost.

mod ignore;
mod scan;
mod snapshot;
pub(crate) mod stat_cache;

pub use ignore::{
    BASIC_MEMORY_DEFAULTS, BMIGNORE, BUILTIN_RULES, GITIGNORE, IgnoreError, IgnoreMatch, IgnoreRules,
    PathFilter, global_ignore_files,
};
pub use scan::{META_WORKTREE_RULES, META_WORKTREE_STAMP, scan};
pub use snapshot::{
    Collision, CollisionKind, ScanError, ScanOptions, ScanReport, ScanStats, Skipped, Snapshot, find_on_disk,
};
/// Whether a symlink at `path` (relative to the root) with this target stays inside the
/// folder: a relative target that, resolved by name from the link's folder, never climbs
/// above the root and never enters `.bmsync`. Nothing else is ever written as a link,
/// and nothing else is ever sent.
pub fn link_stays_inside(path: &str, target: &[u8]) -> bool {
    let Ok(target) = std::str::from_utf8(target) else { return false };
    if target.is_empty() || target.starts_with('/') || target.contains('\0') {
        return false;
    }
    let mut at: Vec<&str> = path.split('/').collect();
    at.pop();
    let mut descended = false;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            // `..` only before the first name: after one (`up/..`), the name may itself be
            // a link, and climbing out of it is not climbing out of its name.
            ".." if descended => return false,
            ".." => {
                if at.pop().is_none() {
                    return false;
                }
            }
            p => {
                descended = true;
                at.push(p);
            }
        }
    }
    // Any case: on a folder that ignores case, `.BMSYNC` is the state folder too.
    !at.first().is_some_and(|f| f.eq_ignore_ascii_case(crate::layout::STATE_DIR))
}

#[cfg(test)]
mod tests {
    use super::link_stays_inside;

    #[test]
    fn links_that_leave_the_folder_are_told_apart() {
        for (path, target, inside) in [
            ("link.md", "t.md", true),
            ("a/b/up.md", "../t.md", true),
            ("a/b/up.md", "../../t.md", true),
            ("a/b/up.md", "../../../t.md", false),
            ("x.md", "../outside.md", false),
            ("x.md", "/etc/hostname", false),
            ("x.md", "", false),
            ("x.md", "./a/./b", true),
            ("x.md", ".bmsync/store.redb", false),
            ("a/x.md", "../.bmsync", false),
            ("x.md", ".BMSYNC/store.redb", false),
            ("a/x.md", "b/../../c", false),
            ("a/x.md", "b/../../../c", false),
            // Two links: `a/up -> ..` is fine, but `a/up2 -> up/..` would climb out of
            // the root through it.
            ("a/up", "..", true),
            ("a/up2", "up/..", false),
            ("a/b/c", "../../d/e", true),
        ] {
            assert_eq!(link_stays_inside(path, target.as_bytes()), inside, "{path} -> {target}");
        }
        assert!(!link_stays_inside("x.md", b"\xff"), "not UTF-8");
    }
}
