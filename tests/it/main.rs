//! Integration tests: one binary, a module per area.

// Test data is made from counters folded into bytes on purpose.
#![allow(clippy::cast_possible_truncation)]

mod cli;
mod golden;
mod store_file;
mod worktree;
