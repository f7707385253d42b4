//! Integration tests: one binary, a module per area.

// Test data is made from counters folded into bytes on purpose.
#![allow(clippy::cast_possible_truncation)]

mod cli;
mod ecosystem;
mod folder_lock;
mod golden;
mod guarantees;
mod history;
mod merge_file;
mod merge_sync;
mod real_folders;
mod remote_contract;
mod renames;
mod sim;
mod spec;
mod store_file;
mod sync;
mod sync_faults;
mod sync_table;
mod tigris_server;
mod tigris_server_tests;
mod watch;
mod words;
mod worktree;
