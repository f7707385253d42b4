//! Integration tests: one binary, a module per area.

mod cli;
mod golden;
mod store_file;
