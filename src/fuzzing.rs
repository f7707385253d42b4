//! Decoders of stored and remote bytes that are private to their modules, re-exported
//! for the fuzz targets under `fuzz/` (cargo feature `fuzzing`). Not an API: nothing
//! here is stable, and release builds leave it out.

pub use crate::apply::journal::Entry as JournalEntry;
pub use crate::remote::file::index::{parse as parse_index_record, record as encode_index_record};
pub use crate::repo::connect::Accepted as AcceptedLostUpdates;
pub use crate::store::rows::{LAYOUT_CHUNKED, RowBody, decode_row, header as row_header, inline_row};
pub use crate::worktree::stat_cache::{Child, DirRecord, Stat};
