//! Names and paths: what a tree entry or manifest path may be, and the one entry order.

use std::cmp::Ordering;

use unicode_normalization::{IsNormalized, is_nfc_quick};

/// `prefix/name`, or `name` alone at the root (`prefix` empty).
pub fn join_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_owned() } else { format!("{prefix}/{name}") }
}

/// Longest entry name, in bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// Longest relative path, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// Why a name or path is not allowed in an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Zero bytes.
    #[error("empty name")]
    Empty,
    /// Over the length limit.
    #[error("longer than {0} bytes")]
    TooLong(usize),
    /// `.` or `..`.
    #[error("`.` and `..` are not names")]
    Dot,
    /// Contains `/` (in a name) or NUL.
    #[error("contains a forbidden byte {0:#04x}")]
    ForbiddenByte(u8),
    /// Not in Unicode Normalization Form C.
    #[error("not NFC-normalised")]
    NotNfc,
}

/// Checks one path segment: non-empty, at most [`MAX_NAME_LEN`] bytes, not `.` or `..`,
/// no `/` or NUL, and NFC-normalised.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(MAX_NAME_LEN));
    }
    if name == "." || name == ".." {
        return Err(NameError::Dot);
    }
    if let Some(b) = name.bytes().find(|&b| b == b'/' || b == 0) {
        return Err(NameError::ForbiddenByte(b));
    }
    let nfc = name.is_ascii()
        || match is_nfc_quick(name.chars()) {
            IsNormalized::Yes => true,
            IsNormalized::No => false,
            IsNormalized::Maybe => unicode_normalization::is_nfc(name),
        };
    if nfc { Ok(()) } else { Err(NameError::NotNfc) }
}

/// Checks a relative path: `/`-separated segments that each pass [`check_name`], at most
/// [`MAX_PATH_LEN`] bytes in all.
pub fn check_path(path: &str) -> Result<(), NameError> {
    if path.len() > MAX_PATH_LEN {
        return Err(NameError::TooLong(MAX_PATH_LEN));
    }
    path.split('/').try_for_each(check_name)
}

/// The one order of tree entries: by name bytes, with a tree's name compared as if it
/// ended in `/`. A depth-first walk of trees then visits full paths in plain byte
/// order, the order of manifest entries, so trees and manifests can be merged in step.
pub fn entry_order(a: &str, a_is_tree: bool, b: &str, b_is_tree: bool) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len().min(b.len());
    a[..n].cmp(&b[..n]).then_with(|| {
        // One name is a prefix of the other: compare what follows, a tree's name being
        // followed by '/' and nothing following being least. Names hold no '/', so two
        // equal next bytes mean both are trees of one name.
        let next = |s: &[u8], tree: bool| s.get(n).copied().or(tree.then_some(b'/'));
        next(a, a_is_tree).cmp(&next(b, b_is_tree))
    })
}

/// The order of manifest paths: plain byte order (consistent with [`entry_order`]).
pub fn path_order(a: &str, b: &str) -> Ordering {
    a.as_bytes().cmp(b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(check_name("note.md"), Ok(()));
        assert_eq!(check_name("caf\u{e9}"), Ok(()));
        assert_eq!(check_name("cafe\u{301}"), Err(NameError::NotNfc));
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_name("."), Err(NameError::Dot));
        assert_eq!(check_name(".."), Err(NameError::Dot));
        assert_eq!(check_name("..."), Ok(()));
        assert_eq!(check_name("a/b"), Err(NameError::ForbiddenByte(b'/')));
        assert_eq!(check_name("a\0b"), Err(NameError::ForbiddenByte(0)));
        assert_eq!(check_name(&"x".repeat(1025)), Err(NameError::TooLong(1024)));
        assert_eq!(check_path("a/b/c.md"), Ok(()));
        assert_eq!(check_path("a//b"), Err(NameError::Empty));
        assert_eq!(check_path("/a"), Err(NameError::Empty));
        assert_eq!(check_path("a/../b"), Err(NameError::Dot));
    }

    #[test]
    fn entry_order_matches_its_definition() {
        let names = ["", "a", "a.md", "a0", "a/", "ab", "b", "a-", "\u{e9}"];
        for a in names.iter().filter(|n| !n.is_empty() && !n.contains('/')) {
            for b in names.iter().filter(|n| !n.is_empty() && !n.contains('/')) {
                for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                    let ka: Vec<u8> = a.bytes().chain(ta.then_some(b'/')).collect();
                    let kb: Vec<u8> = b.bytes().chain(tb.then_some(b'/')).collect();
                    assert_eq!(entry_order(a, ta, b, tb), ka.cmp(&kb), "{a} {ta} {b} {tb}");
                }
            }
        }
    }

    #[test]
    fn trees_sort_as_if_slash_terminated() {
        // "a.md" < "a/" because '.' (0x2e) < '/' (0x2f); "a0" > "a/".
        assert_eq!(entry_order("a", true, "a.md", false), Ordering::Greater);
        assert_eq!(entry_order("a", true, "a0", false), Ordering::Less);
        assert_eq!(entry_order("a", false, "a", true), Ordering::Less);
        assert_eq!(path_order("a.md", "a/x"), Ordering::Less);
    }
}
