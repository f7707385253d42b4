//! Names and paths: what a tree entry or manifest path may be, and the one entry order.

use std::cmp::Ordering;

use unicode_normalization::{IsNormalized, is_nfc_quick};

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
    let nfc = match is_nfc_quick(name.chars()) {
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
    let ka = a.bytes().chain(a_is_tree.then_some(b'/'));
    let kb = b.bytes().chain(b_is_tree.then_some(b'/'));
    ka.cmp(kb)
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
    fn trees_sort_as_if_slash_terminated() {
        // "a.md" < "a/" because '.' (0x2e) < '/' (0x2f); "a0" > "a/".
        assert_eq!(entry_order("a", true, "a.md", false), Ordering::Greater);
        assert_eq!(entry_order("a", true, "a0", false), Ordering::Less);
        assert_eq!(entry_order("a", false, "a", true), Ordering::Less);
        assert_eq!(path_order("a.md", "a/x"), Ordering::Less);
    }
}
