//! Three-way merge of UTF-8 text, line by line, with `git merge-file`'s results.
//!
//! The merge itself is gitoxide's built-in text driver (`gix-merge`), which aims for the
//! same output as git's xdiff merge. What this module adds is the rule for what may be
//! merged at all ([`check_text`]), a count of the conflicts, and the exit status that
//! `git merge-file` would give.
//!
//! * A clean merge's bytes are those of `git merge-file -p CURRENT BASE OTHER`. The
//!   comparison test (`tests/it/merge_file.rs`) checks this on generated inputs.
//! * A conflicted merge is written with diff3-style markers, as `git merge-file --diff3`
//!   writes them (`<<<<<<< current`, `||||||| base`, `=======`, `>>>>>>> other`), and
//!   [`TextMerge::Conflicted`] counts the marked blocks.

use std::num::NonZeroU8;

use gix_merge::blob::Resolution;
use gix_merge::blob::builtin_driver::text::{Conflict, ConflictStyle, Labels, Merge};

use super::{MergeError, MergeOptions, NotTextReason, Side};

/// The largest input, in bytes, that is merged: 8 MiB. Larger files are notes no person
/// edits by hand, and the diff's cost grows with the product of the sides' lengths.
pub const MAX_MERGE_BYTES: usize = 8 * 1024 * 1024;

/// The width of conflict markers, as git draws them (`<<<<<<<`).
const MARKER_SIZE: u8 = 7;

/// The result of a three-way text merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextMerge {
    /// Every change merged; the merged bytes.
    Clean(Vec<u8>),
    /// Some changes overlap.
    Conflicted {
        /// How many conflict blocks `with_markers` has (at least 1).
        conflicts: usize,
        /// The merge with each conflict written between diff3-style markers.
        with_markers: Vec<u8>,
    },
}

impl TextMerge {
    /// Whether every change merged.
    pub fn is_clean(&self) -> bool {
        matches!(self, Self::Clean(_))
    }

    /// How many conflicts there are (0 when clean).
    pub fn conflicts(&self) -> usize {
        match self {
            Self::Clean(_) => 0,
            Self::Conflicted { conflicts, .. } => *conflicts,
        }
    }

    /// The merged bytes: the clean result, or the result with conflict markers.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Clean(bytes) | Self::Conflicted { with_markers: bytes, .. } => bytes,
        }
    }
}

/// Checks that `bytes` may be merged as text: at most [`MAX_MERGE_BYTES`], valid UTF-8,
/// and no NUL byte (git's own test for binary content). `side` names the input in the
/// error.
pub fn check_text(side: Side, bytes: &[u8]) -> Result<(), MergeError> {
    if bytes.len() > MAX_MERGE_BYTES {
        return Err(MergeError::TooLarge { side, len: bytes.len(), limit: MAX_MERGE_BYTES });
    }
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err(MergeError::NotText { side, reason: NotTextReason::Nul { offset } });
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(MergeError::NotText {
            side,
            reason: NotTextReason::InvalidUtf8 { offset: e.valid_up_to() },
        });
    }
    Ok(())
}

/// Merges the changes from `base` to `current` and from `base` to `other`, line by line.
///
/// Every input must pass [`check_text`]; one that does not is never merged. The result
/// is [`TextMerge::Clean`] when the changes do not overlap (or overlap identically), and
/// [`TextMerge::Conflicted`] otherwise, with markers labelled by `opts.labels`.
///
/// Empty `base` (both sides added the file): equal additions merge to that content,
/// different ones are one conflict over the whole file.
pub fn merge_text(
    base: &[u8],
    current: &[u8],
    other: &[u8],
    opts: &MergeOptions,
) -> Result<TextMerge, MergeError> {
    check_text(Side::Base, base)?;
    check_text(Side::Current, current)?;
    check_text(Side::Other, other)?;
    Ok(merge_checked(base, current, other, opts))
}

/// The exit status of `git merge-file` for a merge: 0 when clean, else the number of
/// conflicts, capped at 127 as git caps it. (git exits with 255 when it cannot merge;
/// for a [`MergeError`] the caller picks the status.)
pub fn merge_file_exit(merge: &TextMerge) -> u8 {
    u8::try_from(merge.conflicts().min(127)).expect("capped at 127")
}

/// [`merge_text`] on inputs that passed [`check_text`].
pub(crate) fn merge_checked(base: &[u8], current: &[u8], other: &[u8], opts: &MergeOptions) -> TextMerge {
    let mut input = imara_diff::InternedInput::default();
    let merge = Merge::new(&mut input, current, base, other, imara_diff::Algorithm::Myers);
    let style = Conflict::Keep {
        style: ConflictStyle::Diff3,
        marker_size: NonZeroU8::new(MARKER_SIZE).expect("not zero"),
    };
    let mut out = Vec::new();

    // First pass with a label no input contains: every line that starts with
    // `<<<<<<< LABEL` is then one of the merge's markers, never the user's text.
    let probe = unused_label([base, current, other]);
    let probe_labels = Labels {
        ancestor: Some(probe.as_bytes().into()),
        current: Some(probe.as_bytes().into()),
        other: Some(probe.as_bytes().into()),
    };
    if merge.run(&mut out, probe_labels, style) != Resolution::Conflict {
        return TextMerge::Clean(out);
    }
    let mut opening = vec![b'<'; usize::from(MARKER_SIZE)];
    opening.push(b' ');
    opening.extend_from_slice(probe.as_bytes());
    let conflicts = out.split(|&b| b == b'\n').filter(|line| line.starts_with(&opening)).count();

    let labels = &opts.labels;
    let user_labels = Labels {
        ancestor: (!labels.base.is_empty()).then(|| labels.base.as_bytes().into()),
        current: (!labels.current.is_empty()).then(|| labels.current.as_bytes().into()),
        other: (!labels.other.is_empty()).then(|| labels.other.as_bytes().into()),
    };
    merge.run(&mut out, user_labels, style);
    TextMerge::Conflicted { conflicts: conflicts.max(1), with_markers: out }
}

/// A label that occurs in none of `inputs`.
fn unused_label(inputs: [&[u8]; 3]) -> String {
    let mut n = 0u64;
    loop {
        let label = format!("bmsync-conflict-{n}");
        let needle = label.as_bytes();
        if !inputs.iter().any(|input| input.windows(needle.len()).any(|w| w == needle)) {
            return label;
        }
        n += 1;
    }
}
