//! Long soaks of the deterministic simulator (see SIMULATION.md).
//!
//! `cargo run --release --example bmsync-sim -- --seeds N [--clients K] [--start S]
//! [--steps N] [--threads T] [--planted NAME] [--backend file] [--determinism-every N]
//! [--no-edit-during-download] [--keep-going]`
//!
//! Prints every failing seed (shrunk, with the command that replays it) and exits 1 if
//! any failed.

#[path = "../tests/sim/mod.rs"]
#[allow(dead_code, reason = "shared with tests/it/sim.rs, which uses other parts")]
mod sim;

use std::time::Instant;

use sim::{Backend, Config};

fn usage() -> ! {
    eprintln!(
        "usage: bmsync-sim --seeds N [--clients K] [--start S] [--steps N] [--threads T] \
         [--planted skip-if-match|record-base-early|empty-listing-as-deletions] [--backend mem|file] \
         [--determinism-every N] [--no-edit-during-download] [--keep-going]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut seeds = 1000u64;
    let mut start = 0u64;
    let mut clients = None;
    let mut steps = None;
    let mut threads = std::thread::available_parallelism().map_or(2, usize::from);
    let mut planted = None;
    let mut backend = Backend::Mem;
    let mut determinism_every = 100u64;
    let mut download_race = true;
    let mut keep_going = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_else(|| usage());
        let num = |s: String| s.parse::<u64>().unwrap_or_else(|_| usage());
        match a.as_str() {
            "--seeds" => seeds = num(val()),
            "--start" => start = num(val()),
            "--clients" => clients = Some(usize::try_from(num(val())).unwrap_or_else(|_| usage())),
            "--steps" => steps = Some(usize::try_from(num(val())).unwrap_or_else(|_| usage())),
            "--threads" => threads = usize::try_from(num(val())).unwrap_or_else(|_| usage()),
            "--planted" => planted = Some(sim::planted_by_name(&val()).unwrap_or_else(|| usage())),
            "--backend" => {
                backend = match val().as_str() {
                    "mem" => Backend::Mem,
                    "file" => Backend::File,
                    _ => usage(),
                }
            }
            "--determinism-every" => determinism_every = num(val()),
            "--no-edit-during-download" => download_race = false,
            "--keep-going" => keep_going = true,
            _ => usage(),
        }
    }
    if clients.is_some_and(|c| !(2..=5).contains(&c)) {
        usage();
    }
    let make = |seed| {
        let mut c = Config::new(seed, clients);
        c.planted = planted;
        c.backend = backend;
        c.edit_during_download = download_race;
        if let Some(s) = steps {
            c.steps = s;
        }
        c
    };
    let t = Instant::now();
    // In batches, to show progress on long soaks.
    let batch = 1000.min(seeds.max(1));
    let mut failures = Vec::new();
    let mut done = 0;
    while done < seeds {
        let n = batch.min(seeds - done);
        let f = sim::run_seeds(start + done, n, threads, !keep_going, &make, determinism_every, 300);
        done += n;
        eprintln!("{done}/{seeds} seeds, {} failed, {:.1?}", failures.len() + f.len(), t.elapsed());
        // As they come: a long soak's failures should not wait for its end.
        for x in &f {
            println!("{x}\n");
        }
        let stop = !f.is_empty() && !keep_going;
        failures.extend(f);
        if stop {
            break;
        }
    }
    println!(
        "{done} seeds ({} clients, {:?} bucket, planted {:?}) in {:.1?}: {} failed",
        clients.map_or_else(|| "2-5".to_owned(), |c| c.to_string()),
        backend,
        planted,
        t.elapsed(),
        failures.len()
    );
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
