//! Listing a large bucket over a slow link.
//!
//! `cargo bench --bench listing -- [--files N] [--latency-ms L] [--runs R]` (defaults:
//! 100,000 files, 20 ms, 5 runs after a warm-up). A generated vault is synced once to the
//! in-process Tigris-compatible server; then every request waits `L` ms before it is
//! answered, as one to a far-away endpoint does, and each run times, side by side:
//!
//! - a no-change `bmsync sync` (a process; its peak RSS too), whose listing is cut into key ranges listed at
//!   once, and the requests it made;
//! - one listing of the prefix page after page (`S3Remote::list`), the anchor a no-change
//!   sync should cost no more than;
//! - the same listing in key ranges (`S3Remote::list_ranges`), cut where a sync cuts it.
//!
//! Prints `BENCH <name> <median> <min> <max>` lines (seconds) for `scripts/bench`, and
//! `BENCH listing-requests <requests of a no-change sync> <objects> <ranges>` and
//! `BENCH listing-rss <peak MiB of a no-change sync> <of the first sync> <its seconds>`.

// A benchmark prints ratios of measured floats; the vault generator sizes notes in floats.
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
// The test server, as the integration tests run it; the benchmark uses a part of it.
#[allow(dead_code)]
#[path = "../tests/it/tigris_server.rs"]
mod tigris_server;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use args::arg;
use bmsync::remote::{Remote, S3Options, S3Remote, list_all, split_bounds};
use tigris_server::{ACCESS_KEY, SECRET_KEY, TigrisServer, create_bucket};

/// Runs bmsync in `dir`; returns what it printed and its peak RSS in MiB.
fn bmsync(dir: &Path, endpoint: &str, args: &[&str]) -> (String, u64) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bmsync"));
    c.arg("-C").arg(dir).args(args);
    for k in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"] {
        c.env_remove(k);
    }
    c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_S3", endpoint)
        .env("BMSYNC_REPORT_PEAK_RSS", "1");
    let out = c.output().expect("run bmsync");
    assert!(out.status.success(), "bmsync {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let rss = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("peak_rss_kib: ").and_then(|v| v.trim().parse::<u64>().ok()))
        .map_or(0, |k| k / 1024);
    (String::from_utf8_lossy(&out.stdout).into_owned(), rss)
}

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let v = f();
    (t.elapsed(), v)
}

/// Median, least and most, in seconds.
fn spread(v: &[Duration]) -> (f64, f64, f64) {
    let mut s: Vec<f64> = v.iter().map(Duration::as_secs_f64).collect();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

fn main() {
    let n = arg("--files", 100_000);
    let latency = Duration::from_millis(arg("--latency-ms", 20) as u64);
    let runs = arg("--runs", 5).max(1);
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = TigrisServer::start();
    let ep = server.endpoint();
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "vault", true);
    let dir = tmp.path().join("vault");
    genvault::generate(&dir, n, 1).expect("generate vault");
    bmsync(&dir, &ep, &["init", "--remote", "s3://vault", "--client-id", "bench"]);
    let (first, (_, first_rss)) = timed(|| bmsync(&dir, &ep, &["sync"]));
    println!(
        "# listing benchmark: {n} files, first sync (no latency) {:.1} s, {first_rss} MiB",
        first.as_secs_f64()
    );

    let opts = S3Options {
        endpoint: Some(ep.clone()),
        credentials: Some((ACCESS_KEY.to_owned(), SECRET_KEY.to_owned())),
        ..S3Options::default()
    };
    let remote = S3Remote::connect("vault", "", &opts).expect("connect");
    let (keys, bad) = list_all(&remote, None).expect("list");
    assert!(bad.is_empty());
    let bounds = split_bounds(keys.iter().map(|o| o.key.as_str()));
    let objects = keys.len();
    println!("# {objects} objects, {} key ranges; every request now waits {latency:?}", bounds.len() + 1);

    server.set_latency(latency);
    let (mut sync, mut serial, mut ranges, mut requests, mut rss) =
        (Vec::new(), Vec::new(), Vec::new(), 0, 0);
    for r in 0..=runs {
        let before = server.requests();
        let (t_sync, (out, peak)) = timed(|| bmsync(&dir, &ep, &["sync", "--json"]));
        let made = server.requests() - before;
        let summary: serde_json::Value = serde_json::from_str(out.trim()).expect("sync --json prints JSON");
        assert_eq!(
            (&summary["uploaded"], &summary["downloaded"]),
            (&0.into(), &0.into()),
            "nothing to do: {out}"
        );
        let (t_serial, a) = timed(|| {
            let mut c = 0usize;
            remote.list(None, &mut |_| c += 1).expect("list");
            c
        });
        let (t_ranges, b) = timed(|| {
            let mut c = 0usize;
            remote.list_ranges(None, &bounds, &mut |_| c += 1).expect("list");
            c
        });
        assert_eq!((a, b), (objects, objects), "every listing sees every object");
        println!(
            "# run {r}{}: sync {:.2} s ({made} requests, {peak} MiB), listing {:.2} s, in ranges {:.2} s",
            if r == 0 { " (warm-up, discarded)" } else { "" },
            t_sync.as_secs_f64(),
            t_serial.as_secs_f64(),
            t_ranges.as_secs_f64()
        );
        if r > 0 {
            sync.push(t_sync);
            serial.push(t_serial);
            ranges.push(t_ranges);
            requests = made;
            rss = rss.max(peak);
        }
    }
    for (name, v) in [("listing-sync", &sync), ("listing-serial", &serial), ("listing-ranges", &ranges)] {
        let (m, lo, hi) = spread(v);
        println!("BENCH {name} {m:.3} {lo:.3} {hi:.3}");
    }
    println!("BENCH listing-requests {requests} {objects} {}", bounds.len() + 1);
    println!("BENCH listing-rss {rss} {first_rss} {:.1}", first.as_secs_f64());
}
