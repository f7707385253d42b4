//! An idle watcher: its CPU and memory over a large folder, and what one idle probe costs.
//!
//! `cargo bench --bench watch -- [--files N] [--idle SECS] [--interval SECS]` (defaults:
//! 100,000 files, 60 s idle, a probe every 5 s). A `file://` bucket in a temporary folder;
//! the watcher's CPU time and resident memory are read from `/proc` every few seconds of
//! idling, and its JSON events give each probe's requests and each periodic full sync's.
//! Prints the samples' median and spread.

#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

#[path = "support/args.rs"]
mod args;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bmsync(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_bmsync"))
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("run bmsync");
    assert!(out.status.success(), "bmsync {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// (CPU seconds so far, resident KiB) of a process.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (ticks as f64 / 100.0, rss)
}

fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[0], s[s.len() / 2], s[s.len() - 1])
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("watch benchmark: run it with `cargo bench --bench watch`");
        return;
    }
    let files = args::arg("--files", 100_000);
    let idle = Duration::from_secs(args::arg("--idle", 60) as u64);
    let interval = args::arg("--interval", 5) as u64;
    let tmp = tempfile::tempdir().expect("tmp");
    let (folder, bucket) = (tmp.path().join("vault"), tmp.path().join("bucket"));
    std::fs::create_dir_all(&bucket).expect("bucket");
    for i in 0..files {
        let dir = folder.join(format!("d{:03}", i % 500));
        if i < 500 {
            std::fs::create_dir_all(&dir).expect("mkdir");
        }
        std::fs::write(dir.join(format!("note-{i}.md")), format!("# Note {i}\n\nbody {i}\n")).expect("write");
    }
    bmsync(&folder, &["init", "--remote", &format!("file://{}", bucket.display())]);
    let t = Instant::now();
    bmsync(&folder, &["sync"]);
    println!("folder: {files} files; first sync {:.1} s", t.elapsed().as_secs_f64());

    let mut child = Command::new(env!("CARGO_BIN_EXE_bmsync"))
        .arg("-C")
        .arg(&folder)
        .args(["--json", "watch", "--interval", &interval.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the watcher");
    let pid = child.id();
    let stdout = child.stdout.take().expect("piped");
    let events = std::thread::spawn(move || {
        let (mut probes, mut fulls) = (Vec::new(), Vec::new());
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            match v["event"].as_str() {
                Some("probed") => probes.push(v["requests"].as_u64().unwrap_or(0)),
                Some("synced") if v["trigger"] == "periodic" || v["trigger"] == "start" => {
                    let r = &v["summary"]["requests"];
                    let n: u64 = ["list", "head", "get", "put", "copy", "delete", "snapshot"]
                        .iter()
                        .map(|k| r[*k].as_u64().unwrap_or(0))
                        .sum();
                    fulls.push(n);
                }
                _ => {}
            }
        }
        (probes, fulls)
    });
    // Settle: the start sync and its own events.
    std::thread::sleep(Duration::from_secs(interval.max(3)));
    let (mut cpu_rates, mut rss) = (Vec::new(), Vec::new());
    let start = Instant::now();
    let (mut last_cpu, mut last_t) = (usage(pid).0, Instant::now());
    while start.elapsed() < idle {
        std::thread::sleep(Duration::from_secs(5));
        let (cpu, kib) = usage(pid);
        let dt = last_t.elapsed().as_secs_f64();
        cpu_rates.push(100.0 * (cpu - last_cpu) / dt);
        rss.push(kib as f64 / 1024.0);
        (last_cpu, last_t) = (cpu, Instant::now());
    }
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let status = child.wait().expect("the watcher exits");
    let (probes, fulls) = events.join().expect("events");
    let (c0, c1, c2) = spread(&cpu_rates);
    let (m0, m1, m2) = spread(&rss);
    println!("idle {} s, {} samples of 5 s:", idle.as_secs(), cpu_rates.len());
    println!("  CPU while idle: median {c1:.2}% of one core (min {c0:.2}%, max {c2:.2}%)");
    println!(
        "  resident memory: median {m1:.1} MiB (min {m0:.1}, max {m2:.1}; growth {:.1} MiB)",
        rss.last().unwrap_or(&0.0) - rss.first().unwrap_or(&0.0)
    );
    println!(
        "  idle probes: {} at {} request(s) each; full syncs (start, every 10th probe): {:?} requests",
        probes.len(),
        probes.first().copied().unwrap_or(0),
        fulls
    );
    println!("  exit on SIGTERM: {:?}", status.code());
}
