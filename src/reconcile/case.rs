//! Names on a folder whose file system ignores case: two paths that differ only by case
//! (in the file's name or in any folder above it) are one file there. Pure.

use std::collections::{BTreeSet, HashMap};

/// A remote path that would alias a path already spelled otherwise on a folder that
/// ignores case: it is never written there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseCollision {
    /// The remote path that is refused.
    pub refused: String,
    /// The path (or folder) that already holds the name.
    pub holder: String,
}

/// The remote paths that must not be written to a case-insensitive folder: those whose
/// path, or a folder above it, folds to the same name as a different spelling that is
/// already local, or that an earlier remote path (in byte order) claimed.
pub fn case_collisions<'a>(
    local: impl IntoIterator<Item = &'a str>,
    remote: impl IntoIterator<Item = &'a str>,
) -> Vec<CaseCollision> {
    let mut spelled: HashMap<String, &'a str> = HashMap::new();
    let claim = |path: &'a str, spelled: &mut HashMap<String, &'a str>| {
        for end in path.match_indices('/').map(|(i, _)| i).chain([path.len()]) {
            spelled.entry(path[..end].to_lowercase()).or_insert(&path[..end]);
        }
    };
    let local: BTreeSet<&str> = local.into_iter().collect();
    for p in &local {
        claim(p, &mut spelled);
    }
    let mut remote: Vec<&str> = remote.into_iter().filter(|p| !local.contains(p)).collect();
    remote.sort_unstable();
    let mut out = Vec::new();
    for p in remote {
        let clash = p
            .match_indices('/')
            .map(|(i, _)| i)
            .chain([p.len()])
            .find_map(|end| spelled.get(&p[..end].to_lowercase()).filter(|s| **s != &p[..end]).copied());
        match clash {
            Some(holder) => out.push(CaseCollision { refused: p.to_owned(), holder: holder.to_owned() }),
            None => claim(p, &mut spelled),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(local: &[&str], remote: &[&str]) -> Vec<(String, String)> {
        case_collisions(local.iter().copied(), remote.iter().copied())
            .into_iter()
            .map(|c| (c.refused, c.holder))
            .collect()
    }

    #[test]
    fn the_spelling_already_there_wins() {
        let r = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(refused(&["Notes.md"], &["Notes.md", "notes.md"]), [r("notes.md", "Notes.md")]);
        // Two remote spellings, nothing local: the first in byte order ("N" < "n").
        assert_eq!(refused(&[], &["notes.md", "Notes.md"]), [r("notes.md", "Notes.md")]);
        // A folder spelled otherwise is the same folder.
        assert_eq!(refused(&["docs/a.md"], &["Docs/b.md", "docs/c.md"]), [r("Docs/b.md", "docs")]);
        // Distinct names are fine, and so is the same spelling on both sides.
        assert!(refused(&["a.md", "B/c.md"], &["a.md", "b.md", "B/d.md"]).is_empty());
        // Non-ASCII letters fold too.
        assert_eq!(
            refused(&["\u{c9}t\u{e9}.md"], &["\u{e9}t\u{e9}.md"]),
            [r("\u{e9}t\u{e9}.md", "\u{c9}t\u{e9}.md")]
        );
    }
}
