//! The deterministic multi-client simulator (see SIMULATION.md).
//!
//! A seed makes a history: a list of steps whose random choices are drawn up front
//! (each step carries its own sub-seed), so a step means the same thing when others are
//! removed around it. That is what lets a failing history shrink.

pub mod remote;
pub mod world;

use std::fmt::Write as _;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bmsync::apply::PlantedBug;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use remote::{Fail, Faults, ListFault, LocalWhen, SimCrash};
pub use world::{Violation, World};

/// Where the bucket lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// In memory, with a logical clock (the default).
    Mem,
    /// The `file://` remote, in a temp folder.
    File,
}

/// What one seed runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The seed: every random choice comes from it.
    pub seed: u64,
    /// Clients, 2 to 5.
    pub clients: usize,
    /// Steps before the quiescent phase.
    pub steps: usize,
    /// A bug planted in the engine.
    pub planted: Option<PlantedBug>,
    /// The bucket.
    pub backend: Backend,
    /// Lets the user's mid-apply edit also land while a download is under way (between
    /// the engine's check of the file and its replacement). On by default; it found a
    /// real engine race, since fixed (SIMULATION.md, "Engine bugs found").
    pub edit_during_download: bool,
    /// Lets users pick the names and kinds real folders have: an NFC/NFD name (written
    /// in NFD by every other client, as macOS tools do), two names that differ only by
    /// case, a backslash, an emoji, executables and symlinks. On by default; the
    /// regression replays of seeds found before it existed turn it off.
    pub odd_names: bool,
    /// Lets users add a line at the top of a note as well as at the end, so that two
    /// edits of one note merge cleanly (one each end); the invariants then admit a
    /// merged content in place of both. On by default; the regression replays of seeds
    /// found before merges existed turn it off.
    pub merges: bool,
}

impl Config {
    /// The CI configuration of a seed: 2 to 5 clients (from the seed unless given).
    pub fn new(seed: u64, clients: Option<usize>) -> Self {
        let clients = clients.unwrap_or(2 + usize::try_from(seed % 4).expect("small"));
        Self {
            seed,
            clients,
            steps: 32,
            planted: None,
            backend: Backend::Mem,
            edit_during_download: true,
            odd_names: true,
            merges: true,
        }
    }

    /// The command that replays this run (`keep`: the shrunk history's step indices).
    pub fn replay_command(&self, keep: Option<&[usize]>) -> String {
        let mut cmd = format!("BMSYNC_SIM_SEED={} BMSYNC_SIM_CLIENTS={}", self.seed, self.clients);
        if self.steps != Self::new(0, None).steps {
            write!(cmd, " BMSYNC_SIM_STEPS={}", self.steps).expect("writing to a String");
        }
        if let Some(p) = self.planted {
            write!(cmd, " BMSYNC_SIM_PLANTED={}", planted_name(p)).expect("writing to a String");
        }
        if self.backend == Backend::File {
            cmd.push_str(" BMSYNC_SIM_BACKEND=file");
        }
        if !self.edit_during_download {
            cmd.push_str(" BMSYNC_SIM_DOWNLOAD_RACE=0");
        }
        if !self.odd_names {
            cmd.push_str(" BMSYNC_SIM_ODD_NAMES=0");
        }
        if !self.merges {
            cmd.push_str(" BMSYNC_SIM_MERGES=0");
        }
        if let Some(k) = keep {
            let k: Vec<String> = k.iter().map(ToString::to_string).collect();
            write!(cmd, " BMSYNC_SIM_KEEP={}", k.join(",")).expect("writing to a String");
        }
        cmd + " cargo test --test it sim::replay -- --nocapture"
    }
}

/// The name of a planted bug on the command line.
pub fn planted_name(p: PlantedBug) -> &'static str {
    match p {
        PlantedBug::SkipIfMatch => "skip-if-match",
        PlantedBug::RecordBaseEarly => "record-base-early",
        PlantedBug::EmptyListingAsDeletions => "empty-listing-as-deletions",
        PlantedBug::MoveKeepsSource => "move-keeps-source",
    }
}

/// A planted bug by name.
pub fn planted_by_name(s: &str) -> Option<PlantedBug> {
    [
        PlantedBug::SkipIfMatch,
        PlantedBug::RecordBaseEarly,
        PlantedBug::EmptyListingAsDeletions,
        PlantedBug::MoveKeepsSource,
    ]
    .into_iter()
    .find(|p| planted_name(*p) == s)
}

/// A user's operation on a folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserOp {
    /// Write a new note (or overwrite one at that path).
    Create,
    /// Rewrite a note.
    Edit,
    /// Add a line to a note.
    Append,
    /// Delete a note.
    Delete,
    /// Rename or move a note.
    Rename,
    /// Create an (empty) folder.
    MkDir,
    /// Delete a folder and its notes.
    RmDir,
    /// Write a file the ignore rules cover.
    Ignored,
}

/// One step of a history. Client numbers are taken modulo the client count.
#[derive(Clone, Debug)]
pub enum Step {
    /// A user operation on one client.
    User {
        /// The client.
        client: u8,
        /// The operation.
        op: UserOp,
        /// Its random choices.
        sel: u64,
    },
    /// The same edit on two clients.
    Identical {
        /// One client.
        a: u8,
        /// The other.
        b: u8,
        /// Its random choices.
        sel: u64,
    },
    /// A teammate writes or deletes in the bucket directly.
    Teammate {
        /// Its random choices.
        sel: u64,
    },
    /// A client syncs, with faults.
    Sync {
        /// The client.
        client: u8,
        /// The faults armed.
        faults: Faults,
        /// Random choices inside the sync (the teammate's, the user's).
        sel: u64,
    },
    /// A client loses `.bmsync/` and re-initialises.
    LoseState {
        /// The client.
        client: u8,
    },
}

fn faults(rng: &mut StdRng) -> Faults {
    let mut f = Faults::default();
    if rng.random_bool(0.15) {
        f.crash_at = Some(rng.random_range(0..16));
        f.crash_after = rng.random_bool(0.35);
    }
    if rng.random_bool(0.12) {
        let kind = match rng.random_range(0..3) {
            0 => Fail::Transient,
            1 => Fail::Permanent,
            _ => Fail::LostAck,
        };
        f.fail_at = Some((rng.random_range(0..16), kind));
    }
    if rng.random_bool(0.1) {
        f.list = Some(match rng.random_range(0..3) {
            0 => ListFault::Fail,
            1 => ListFault::Truncated,
            _ => ListFault::Empty,
        });
    }
    if rng.random_bool(0.2) {
        f.teammate_at = Some(rng.random_range(1..16));
    }
    if rng.random_bool(0.12) {
        f.local_change = Some(if rng.random_bool(0.6) { LocalWhen::AfterScan } else { LocalWhen::MidApply });
    }
    f
}

/// The history of a seed.
pub fn generate(cfg: &Config) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let n = u8::try_from(cfg.clients).expect("at most 5 clients");
    (0..cfg.steps)
        .map(|_| {
            let client = rng.random_range(0..n);
            let sel = rng.random();
            match rng.random_range(0..100) {
                0..32 => Step::Sync { client, faults: faults(&mut rng), sel },
                32..84 => {
                    let op = match rng.random_range(0..100) {
                        0..24 => UserOp::Create,
                        24..44 => UserOp::Edit,
                        44..56 => UserOp::Append,
                        56..68 => UserOp::Delete,
                        68..82 => UserOp::Rename,
                        82..86 => UserOp::MkDir,
                        86..91 => UserOp::RmDir,
                        _ => UserOp::Ignored,
                    };
                    Step::User { client, op, sel }
                }
                84..90 => Step::Identical { a: client, b: rng.random_range(0..n), sel },
                90..98 => Step::Teammate { sel },
                _ => Step::LoseState { client },
            }
        })
        .collect()
}

/// What running a history gave.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The normalised trace.
    pub trace: Vec<String>,
    /// The first broken invariant.
    pub violation: Option<Violation>,
}

/// Silences the panic message of simulated crashes (they are caught), keeping every
/// other panic's.
fn quiet_crashes() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // The scan walks folders on rayon's global pool. The sim's folders are tiny, and
        // on a shared 2-core machine idle workers spinning cost more than they save;
        // seeds run side by side instead. (Fails harmlessly if the pool already exists.)
        let _ = rayon::ThreadPoolBuilder::new().num_threads(1).build_global();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<SimCrash>() {
                previous(info);
            }
        }));
    });
}

/// Runs the steps of `history` whose indices are in `keep` (all when `None`), then the
/// quiescent phase, stopping at the first violation.
pub fn run(cfg: &Config, history: &[Step], keep: Option<&[usize]>) -> Outcome {
    quiet_crashes();

    let result = std::panic::catch_unwind(|| {
        let mut w = World::new(cfg);
        for (i, s) in history.iter().enumerate() {
            if w.violation().is_some() {
                break;
            }
            if keep.is_some_and(|k| !k.contains(&i)) {
                continue;
            }
            w.step(i, s);
        }
        if w.violation().is_none() {
            w.finish();
        }
        Outcome { trace: w.trace(), violation: w.violation() }
    });
    result.unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic".to_owned());
        Outcome {
            trace: Vec::new(),
            violation: Some(Violation { invariant: 0, what: format!("panic: {what}") }),
        }
    })
}

/// A failing seed, shrunk.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The configuration.
    pub cfg: Config,
    /// The violation of the full history.
    pub violation: Violation,
    /// The steps of the smallest history found that still breaks the same invariant.
    pub keep: Vec<usize>,
    /// How that smallest history breaks it.
    pub minimal: Option<Violation>,
    /// Its trace.
    pub trace: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "SIMULATION FAILED: seed {} ({} clients)", self.cfg.seed, self.cfg.clients)?;
        writeln!(f, "invariant {} broken: {}", self.violation.invariant, self.violation.what)?;
        if let Some(m) = self.minimal.as_ref().filter(|m| **m != self.violation) {
            writeln!(f, "the minimal history breaks it so: {}", m.what)?;
        }
        writeln!(f, "minimal trace ({} of {} steps):", self.keep.len(), self.cfg.steps)?;
        for l in &self.trace {
            writeln!(f, "  {l}")?;
        }
        writeln!(f, "replay the full history:  {}", self.cfg.replay_command(None))?;
        write!(f, "replay the minimal one:   {}", self.cfg.replay_command(Some(&self.keep)))
    }
}

/// Removes steps while the same invariant still breaks (delta debugging, bounded).
pub fn shrink(cfg: &Config, history: &[Step], violation: &Violation, budget: usize) -> (Vec<usize>, Outcome) {
    let mut keep: Vec<usize> = (0..history.len()).collect();
    let mut best = run(cfg, history, Some(&keep));
    let mut runs = 0;
    let mut chunk = keep.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        while i < keep.len() && runs < budget {
            let trial: Vec<usize> =
                keep.iter().enumerate().filter(|(j, _)| *j < i || *j >= i + chunk).map(|(_, s)| *s).collect();
            runs += 1;
            let o = run(cfg, history, Some(&trial));
            if o.violation.as_ref().is_some_and(|v| v.invariant == violation.invariant) {
                keep = trial;
                best = o;
            } else {
                i += chunk;
            }
        }
        if chunk == 1 || runs >= budget {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    (keep, best)
}

/// Runs one seed: `Err` with the shrunk failure if an invariant broke. With
/// `determinism`, runs it twice and compares the traces (invariant 8).
pub fn check(cfg: &Config, determinism: bool, shrink_budget: usize) -> Result<Outcome, Box<Failure>> {
    let history = generate(cfg);
    let mut o = run(cfg, &history, None);
    if o.violation.is_none() && determinism {
        let again = run(cfg, &history, None);
        if again.trace != o.trace {
            let at = o
                .trace
                .iter()
                .zip(&again.trace)
                .position(|(a, b)| a != b)
                .unwrap_or(o.trace.len().min(again.trace.len()));
            let line = |t: &[String]| t.get(at).cloned().unwrap_or_else(|| "(end)".to_owned());
            o.violation = Some(Violation {
                invariant: 8,
                what: format!(
                    "two runs differ at trace line {at}: {:?} vs {:?}",
                    line(&o.trace),
                    line(&again.trace)
                ),
            });
            let keep = (0..history.len()).collect();
            return Err(Box::new(Failure {
                cfg: cfg.clone(),
                violation: o.violation.clone().expect("set above"),
                keep,
                minimal: None,
                trace: o.trace,
            }));
        }
    }
    match o.violation.clone() {
        None => Ok(o),
        Some(v) => {
            let (keep, best) = shrink(cfg, &history, &v, shrink_budget);
            Err(Box::new(Failure {
                cfg: cfg.clone(),
                violation: v,
                keep,
                minimal: best.violation,
                trace: best.trace,
            }))
        }
    }
}

/// Runs seeds `start..start+count` on `threads` threads; stops early at the first
/// failure when `stop` (returning the lowest failing seed found). `make` turns a seed
/// into its configuration.
pub fn run_seeds(
    start: u64,
    count: u64,
    threads: usize,
    stop: bool,
    make: &(dyn Fn(u64) -> Config + Sync),
    determinism_every: u64,
    shrink_budget: usize,
) -> Vec<Failure> {
    let next = AtomicU64::new(start);
    let failed = AtomicBool::new(false);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    if seed >= start + count || (stop && failed.load(Ordering::SeqCst)) {
                        break;
                    }
                    let cfg = make(seed);
                    let det = determinism_every > 0 && seed.is_multiple_of(determinism_every);
                    if let Err(f) = check(&cfg, det, shrink_budget) {
                        failed.store(true, Ordering::SeqCst);
                        failures.lock().expect("unpoisoned").push(*f);
                    }
                }
            });
        }
    });
    let mut v = failures.into_inner().expect("unpoisoned");
    v.sort_by_key(|f| f.cfg.seed);
    v
}

/// Reads a replay request from the environment (`BMSYNC_SIM_SEED` and friends).
pub fn from_env() -> Option<(Config, Option<Vec<usize>>)> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let seed: u64 = var("BMSYNC_SIM_SEED")?.parse().expect("BMSYNC_SIM_SEED is a number");
    let clients = var("BMSYNC_SIM_CLIENTS").map(|c| c.parse().expect("BMSYNC_SIM_CLIENTS is a number"));
    let mut cfg = Config::new(seed, clients);
    if let Some(s) = var("BMSYNC_SIM_STEPS") {
        cfg.steps = s.parse().expect("BMSYNC_SIM_STEPS is a number");
    }
    if let Some(p) = var("BMSYNC_SIM_PLANTED") {
        cfg.planted = Some(planted_by_name(&p).expect("a planted bug's name"));
    }
    if var("BMSYNC_SIM_DOWNLOAD_RACE").as_deref() == Some("0") {
        cfg.edit_during_download = false;
    }
    if var("BMSYNC_SIM_ODD_NAMES").as_deref() == Some("0") {
        cfg.odd_names = false;
    }
    if var("BMSYNC_SIM_MERGES").as_deref() == Some("0") {
        cfg.merges = false;
    }
    if var("BMSYNC_SIM_BACKEND").as_deref() == Some("file") {
        cfg.backend = Backend::File;
    }
    // Present but empty keeps no step at all.
    let keep = std::env::var("BMSYNC_SIM_KEEP").ok().map(|k| {
        k.split(',')
            .filter(|i| !i.trim().is_empty())
            .map(|i| i.trim().parse().expect("BMSYNC_SIM_KEEP lists step numbers"))
            .collect()
    });
    Some((cfg, keep))
}
