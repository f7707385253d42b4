//! Pure three-way merges of notes: text ([`merge_text`]), Markdown notes with
//! frontmatter merged key by key ([`merge_note`]), and the frontmatter of a conflict
//! copy ([`conflict_copy_note`]).
//!
//! Nothing here reads files or the clock; callers pass bytes and get bytes back. The
//! rules are specified in `format-spec/merge.md`.

mod copy;
mod frontmatter;
mod text;

#[cfg(test)]
mod tests;

pub use copy::{conflict_copy_note, permalink_for_path};
pub use frontmatter::{NoteConflict, NoteMerge, merge_note};
pub use text::{MAX_MERGE_BYTES, TextMerge, check_text, merge_file_exit, merge_text};

/// Whether `path` names a Markdown note (`.md`, in any case): the files merged with
/// their frontmatter key by key, and whose conflict copies get a permalink of their own.
pub fn is_note(path: &str) -> bool {
    path.rsplit_once('.').is_some_and(|(_, ext)| ext.eq_ignore_ascii_case("md"))
}

/// Whether a note starts with a frontmatter block (`---` lines around it).
pub fn has_frontmatter(note: &[u8]) -> bool {
    frontmatter::locate(note).is_some()
}

/// Which input of a three-way merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The common ancestor.
    Base,
    /// Ours: the side the result replaces.
    Current,
    /// Theirs: the side merged in.
    Other,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Base => "base",
            Self::Current => "current",
            Self::Other => "other",
        })
    }
}

/// Why an input is not text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotTextReason {
    /// Not valid UTF-8 from this byte offset on.
    InvalidUtf8 {
        /// Offset of the first byte that is not part of valid UTF-8.
        offset: usize,
    },
    /// A NUL byte at this offset.
    Nul {
        /// Offset of the first NUL byte.
        offset: usize,
    },
}

impl std::fmt::Display for NotTextReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidUtf8 { offset } => write!(f, "is not valid UTF-8 at byte {offset}"),
            Self::Nul { offset } => write!(f, "has a NUL byte at byte {offset}"),
        }
    }
}

/// Why inputs were not merged. Such inputs are never merged; the caller keeps both sides.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// An input is not UTF-8 text.
    #[error("cannot merge: the {side} version {reason}")]
    NotText {
        /// Which input.
        side: Side,
        /// What is wrong with it.
        reason: NotTextReason,
    },
    /// An input is larger than [`MAX_MERGE_BYTES`].
    #[error("cannot merge: the {side} version has {len} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Which input.
        side: Side,
        /// Its size in bytes.
        len: usize,
        /// The limit, [`MAX_MERGE_BYTES`].
        limit: usize,
    },
}

/// The names written after conflict markers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeLabels {
    /// After `<<<<<<<`. Empty: no label.
    pub current: String,
    /// After `|||||||`. Empty: no label.
    pub base: String,
    /// After `>>>>>>>`. Empty: no label.
    pub other: String,
}

impl Default for MergeLabels {
    fn default() -> Self {
        Self { current: "current".into(), base: "base".into(), other: "other".into() }
    }
}

/// Options of a merge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeOptions {
    /// Labels of the conflict markers.
    pub labels: MergeLabels,
    /// [`merge_note`] only: also write the conflicted result with markers
    /// ([`NoteConflict::with_markers`]). [`merge_text`] always writes them.
    pub markers: bool,
}
