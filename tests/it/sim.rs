//! The deterministic multi-client simulation in CI: thousands of seeds, every
//! invariant, and proof that each planted bug is caught. See SIMULATION.md.

#[path = "../sim/mod.rs"]
#[allow(dead_code, reason = "shared with examples/bmsync-sim.rs, which uses other parts")]
mod simlib;

use bmsync::apply::PlantedBug;
use simlib::{Backend, Config, Failure, run_seeds};

/// Seeds every CI run checks (`BMSYNC_SIM_CI_SEEDS` overrides).
const CI_SEEDS: u64 = 1200;

fn ci_seeds() -> u64 {
    std::env::var("BMSYNC_SIM_CI_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(CI_SEEDS)
}
/// Every how many seeds a run is repeated to compare traces (invariant 8).
const DETERMINISM_EVERY: u64 = 20;
/// Re-runs allowed to shrink a failing history.
const SHRINK_BUDGET: usize = 300;

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from).min(4)
}

fn report(failures: &[Failure]) -> String {
    failures.iter().take(3).map(ToString::to_string).collect::<Vec<_>>().join("\n\n")
}

#[test]
fn simulation_ci_seeds() {
    let start = std::time::Instant::now();
    let n = ci_seeds();
    let failures =
        run_seeds(0, n, threads(), false, &|s| Config::new(s, None), DETERMINISM_EVERY, SHRINK_BUDGET);
    eprintln!("simulated {n} seeds in {:.1?}", start.elapsed());
    assert!(failures.is_empty(), "{} failing seeds; first ones:\n{}", failures.len(), report(&failures));
}

#[test]
fn simulation_over_the_file_remote() {
    let make = |s| Config { backend: Backend::File, ..Config::new(s, None) };
    let failures = run_seeds(1_000_000, 100, threads(), false, &make, 0, SHRINK_BUDGET);
    assert!(failures.is_empty(), "{}", report(&failures));
}

/// Replays one seed from the environment (`BMSYNC_SIM_SEED=...`); does nothing without.
#[test]
fn replay() {
    let Some((cfg, keep)) = simlib::from_env() else { return };
    let history = simlib::generate(&cfg);
    let o = simlib::run(&cfg, &history, keep.as_deref());
    for l in &o.trace {
        println!("{l}");
    }
    if let Some(v) = &o.violation {
        panic!("invariant {} broken: {}", v.invariant, v.what);
    }
    println!("seed {} passes", cfg.seed);
}

/// The first seed (of the CI budget) at which the simulator catches `bug`.
fn caught(bug: PlantedBug) -> Failure {
    let make = |s| Config { planted: Some(bug), ..Config::new(s, None) };
    let failures = run_seeds(0, CI_SEEDS, threads(), true, &make, 0, SHRINK_BUDGET);
    let first = failures.into_iter().next();
    let f = first.unwrap_or_else(|| panic!("{bug:?} was not caught in {CI_SEEDS} seeds"));
    eprintln!("{bug:?} caught:\n{f}");
    f
}

#[test]
fn planted_skip_if_match_is_caught() {
    let f = caught(PlantedBug::SkipIfMatch);
    assert_eq!(f.violation.invariant, 1, "a lost update: {}", f.violation.what);
}

#[test]
fn planted_record_base_early_is_caught() {
    let f = caught(PlantedBug::RecordBaseEarly);
    assert_eq!(f.violation.invariant, 5, "the base claims too much: {}", f.violation.what);
}

#[test]
fn planted_move_keeps_source_is_caught() {
    let f = caught(PlantedBug::MoveKeepsSource);
    assert_eq!(f.violation.invariant, 9, "a rename became a copy: {}", f.violation.what);
}

#[test]
fn planted_empty_listing_as_deletions_is_caught() {
    let f = caught(PlantedBug::EmptyListingAsDeletions);
    assert_eq!(f.violation.invariant, 1, "a lost update: {}", f.violation.what);
}

#[test]
fn traces_drop_the_wall_clock_from_conflict_names() {
    let n = simlib::world::normalise;
    assert_eq!(n("  b/n4.conflict-c0-20261126T025450.md [x]"), "  b/n4.conflict-c0.md [x]");
    assert_eq!(n("  b/n4.conflict-c0-20261126T025450-1.md [x]"), "  b/n4.conflict-c0.md [x]");
    assert_eq!(n("  README.conflict-c1-20261126T025450-12"), "  README.conflict-c1");
    assert_eq!(n("  notes/-20261126T025450.md"), "  notes/-20261126T025450.md", "not a conflict copy");
}

/// Runs a seed's shrunk history and asserts that no invariant breaks. (These histories
/// were found before users picked odd names, so they replay with `odd_names` off.)
fn replays_clean(cfg: &Config, keep: &[usize]) {
    let history = simlib::generate(cfg);
    let o = simlib::run(cfg, &history, Some(keep));
    assert!(o.violation.is_none(), "{}\n{:?}", o.trace.join("\n"), o.violation);
}

/// Regression: a real engine bug the simulator found (SIMULATION.md, "Engine bugs
/// found"). Conflict copies were named to the second and moved with a rename that
/// replaces, so a second conflict on the same path by the same client within one second
/// overwrote the first copy, and that version was lost. Copies now take a name no file
/// has, locally or in the bucket. Seed 184's shrunk history.
#[test]
fn conflict_copies_in_the_same_second_keep_both_versions() {
    let cfg = Config { odd_names: false, merges: false, ..Config::new(184, Some(2)) };
    replays_clean(&cfg, &[1, 2, 3, 6, 7, 12, 13, 16, 17, 21, 23, 24, 28]);
}

/// Regression: a real engine race the simulator found (SIMULATION.md, "Engine bugs
/// found"). A download checked the local file before it started and renamed over it when
/// it ended, so a user's edit in between was lost. The old file is now moved aside first
/// and checked after, and the new one placed without clobbering. Seed 224's shrunk
/// history, with edits during downloads.
#[test]
fn an_edit_during_a_download_is_kept() {
    let cfg =
        Config { edit_during_download: true, odd_names: false, merges: false, ..Config::new(224, Some(2)) };
    replays_clean(&cfg, &[10, 16, 17, 18, 19, 20]);
}

/// Regression: a real engine bug the 100,000-seed soak found (SIMULATION.md, "Engine
/// bugs found"). A crash between a round's remote delete and its base record left a
/// base holding one content at two paths; the user then moved one onto the other while
/// the bucket held only the other. Each side's deletion, right path by path, was carried
/// to the other side, and the content was gone everywhere. The planner now keeps the last
/// copy of a content that crossed deletions would remove (`last_copy`). Seed 33269.
#[test]
fn crossed_deletions_after_a_crash_keep_the_last_copy() {
    let cfg = Config { odd_names: false, merges: false, ..Config::new(33269, Some(3)) };
    replays_clean(&cfg, &[0, 1, 2, 3, 4, 5, 7, 13, 14, 19, 20, 22, 26]);
}

/// Regression: found when users gained NFD names (SIMULATION.md, "Engine bugs found").
/// A user created `résumé/note.md` in NFD between the scan and a download of the same
/// note; the download, going by the scan, made an NFC `résumé/` beside it, so the folder
/// held both forms. Writes to a non-ASCII path the scan did not see now look the names up
/// afresh. Seed 801's shrunk history.
#[test]
fn a_download_never_makes_a_twin_of_a_name_made_after_the_scan() {
    let cfg = Config { merges: false, ..Config::new(801, Some(3)) };
    replays_clean(&cfg, &[2, 7, 23]);
}

/// Regression: found when users gained a file where others have a folder (SIMULATION.md,
/// "Engine bugs found"). A listing that came back empty let a client upload the file
/// `a/c` while the bucket held `a/c/n4.md`; S3 takes both, and no folder can hold both,
/// so the clients never converged. The file now moves aside to a conflict copy. Seed
/// 855's shrunk history.
#[test]
fn a_bucket_holding_a_file_and_a_folder_of_one_name_converges() {
    let cfg = Config { merges: false, ..Config::new(855, Some(5)) };
    replays_clean(&cfg, &[2, 20, 23, 25]);
}

/// Regression: found by a 15,000-seed soak after users gained symlinks and type changes
/// (SIMULATION.md, "Engine bugs found"). A symlink `a/c` uploaded under an empty listing
/// sat in the bucket beside a teammate's folder `a/c/`; moving it aside was reported as
/// an edit conflict against its own base version. It is reported as a key collision
/// now. Seed 14530's shrunk history.
#[test]
fn a_file_moved_aside_from_beside_a_folder_is_no_edit_conflict() {
    let cfg = Config { merges: false, ..Config::new(14530, Some(3)) };
    replays_clean(&cfg, &[15, 17, 21, 22, 23, 25, 28]);
}

/// Regression: found by a soak after users gained type changes (SIMULATION.md, "Engine
/// bugs found"). A teammate's move of a note onto `a/c` reached a client holding an empty
/// folder `a/c`; the local move found the folder in the way and raced on every sync.
/// An empty folder now gives way to a move as to a download. Seed 15128's shrunk history.
#[test]
fn an_empty_folder_gives_way_to_a_moved_note() {
    let cfg = Config { merges: false, ..Config::new(15128, Some(3)) };
    replays_clean(&cfg, &[7, 24, 26, 27, 28, 29]);
}

/// Regression of the simulation's own merge oracle: an edit appended to a version
/// without a final newline (a symlink turned note) joins that last line to the new one,
/// so the merge of two such edits holds no line equal to it. Such a version still takes
/// part in the search for what a content merged. Seed 557's shrunk history.
#[test]
fn a_merge_of_versions_without_a_final_newline_is_admitted() {
    replays_clean(&Config::new(557, Some(3)), &[1, 3, 4, 8, 24, 25, 28]);
}

/// Regression: found by invariant 9 (SIMULATION.md). A sync crashed after uploading a
/// new note and before recording its base; the user then moved the note, and the next
/// syncs kept it at both names. The journal now says what landed, and the first plan
/// after recovery takes it as synced, so the move is a move. Seed 280's shrunk history.
#[test]
fn a_note_moved_after_a_crashed_upload_stays_one_note() {
    replays_clean(&Config::new(280, Some(2)), &[14, 20, 24, 25, 30]);
}

/// Regression: the same after a crashed download of a teammate's note. Seed 114's
/// shrunk history.
#[test]
fn a_note_moved_after_a_crashed_download_stays_one_note() {
    replays_clean(&Config::new(114, Some(4)), &[18, 24, 25, 26]);
}

/// Regression: as above, when the crash came mid-round, before the download's done mark
/// was durable. Seed 98's shrunk history.
#[test]
fn a_note_moved_after_an_unmarked_download_stays_one_note() {
    replays_clean(&Config::new(98, Some(4)), &[2, 8, 9, 10, 24, 31]);
}

/// Regression: a teammate's note this client had downloaded in a first sync that
/// crashed, then moved by another client: the union after the crash put it back at its
/// old name. Seed 296's shrunk history.
#[test]
fn a_note_moved_by_a_teammate_after_a_crashed_first_sync_stays_one_note() {
    replays_clean(&Config::new(296, Some(2)), &[2, 3, 4, 6, 8, 11]);
}

/// Regression: two crashed syncs in a row; what the first transferred is kept until a
/// base is recorded. Seed 390's shrunk history.
#[test]
fn what_a_crashed_sync_transferred_survives_a_second_crash() {
    replays_clean(&Config::new(390, Some(4)), &[16, 17, 20, 26, 27, 30, 31]);
}

/// Regression: an upload whose answer was lost (the sync failed, the write landed), then
/// a move. Seed 540's shrunk history.
#[test]
fn a_note_moved_after_a_lost_answer_stays_one_note() {
    replays_clean(&Config::new(540, Some(2)), &[0, 1, 2, 3, 23, 24, 29]);
}

/// Regression of the above: an upload that lost its race is "done" too, and a download
/// that never landed may find its content at another known path; neither may be taken
/// for synced (each lost a version). Seeds 1099 and 557's shrunk histories.
#[test]
fn a_transfer_that_did_not_land_is_never_taken_for_synced() {
    replays_clean(&Config::new(1099, Some(5)), &[4, 5, 8]);
    replays_clean(&Config::new(557, Some(3)), &[1, 3, 5, 8, 12, 13, 14, 15, 17, 18, 19, 20, 21, 24, 29, 30]);
}
