//! Fitting the tools people use: Basic Memory projects and ignore rules, completions and
//! the manual, remote failures in one line, logs without secrets, `--json` everywhere,
//! and commands run from a subfolder.

use std::path::Path;
use std::process::{Command, Output};

use crate::remote_contract::create_bucket;
use crate::tigris_server::{ACCESS_KEY, SECRET_KEY, TigrisServer};

/// `bmsync ARGS` in `dir` (no -C: the command finds its folder itself), with HOME and
/// Basic Memory's config folder as given.
fn bm(dir: &Path, home: &Path, config: Option<&Path>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bmsync"));
    c.current_dir(dir)
        .env("HOME", home)
        .env_remove("BASIC_MEMORY_CONFIG_DIR")
        .env_remove("BMSYNC_LOG")
        .env_remove("AWS_PROFILE")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(args);
    if let Some(cfg) = config {
        c.env("BASIC_MEMORY_CONFIG_DIR", cfg);
    }
    c.output().expect("run bmsync")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

#[test]
fn init_project_finds_each_basic_memory_project_and_applies_its_ignore_rules() {
    let home = tempfile::tempdir().expect("tmp");
    let cfg = home.path().join("bm-config");
    let main = home.path().join("notes/main");
    let team = home.path().join("notes/team");
    for d in [&cfg, &main, &team] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    // One project in the newer object form, one in the older string form; an API key
    // that must never be read out.
    std::fs::write(
        cfg.join("config.json"),
        format!(
            r#"{{"projects": {{"main": {{"path": "{}", "mode": "local"}}, "team": "{}"}},
                "default_project": "main", "cloud_api_key": "bmc_do_not_leak"}}"#,
            main.display(),
            team.display()
        ),
    )
    .expect("config");
    std::fs::write(cfg.join(".bmignore"), "private/\n*.secret\n").expect("bmignore");
    std::fs::write(main.join(".gitignore"), "drafts/\n").expect("gitignore");
    for (p, body) in
        [("a.md", "a"), ("private/p.md", "p"), ("k.secret", "k"), ("drafts/d.md", "d"), ("keep/b.md", "b")]
    {
        let f = main.join(p);
        std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        std::fs::write(f, body).expect("write");
    }
    let bucket = tempfile::tempdir().expect("tmp");
    let remote = format!("file://{}/team", bucket.path().display());
    let elsewhere = home.path();
    for (name, dir) in [("main", &main), ("team", &team)] {
        let o = bm(
            elsewhere,
            home.path(),
            Some(&cfg),
            &["--json", "init", "--project", name, "--remote", &remote, "--create"],
        );
        let v: serde_json::Value = serde_json::from_str(&ok(&o)).expect("json");
        assert_eq!(v["root"].as_str().map(Path::new), Some(dir.as_path()), "{name}: {v}");
        assert!(dir.join(".bmsync/store.redb").is_file(), "{name}");
    }
    ok(&bm(elsewhere, home.path(), Some(&cfg), &["sync", "--project", "main"]));
    let mut keys: Vec<String> = bmsync::remote::list_all(
        &bmsync::remote::FileRemote::open(&bucket.path().join("team")).expect("open"),
        None,
    )
    .expect("list")
    .0
    .into_iter()
    .map(|o| o.key)
    .collect();
    keys.sort();
    assert_eq!(keys, ["a.md", "keep/b.md"], "the global .bmignore and the project's .gitignore apply");

    // check-ignore names the file each rule came from (relative to where it runs).
    let o = bm(
        &main.join("keep"),
        home.path(),
        Some(&cfg),
        &["check-ignore", "../private/p.md", "../k.secret", "../drafts/d.md", "b.md"],
    );
    let said = ok(&o);
    let bmignore = cfg.join(".bmignore").display().to_string();
    let gitignore = main.join(".gitignore").display().to_string();
    assert_eq!(
        said,
        format!(
            "private/p.md: ignored by {bmignore} rule \"private/\"\nk.secret: ignored by {bmignore} rule \"*.secret\"\n\
             drafts/d.md: ignored by {gitignore} rule \"drafts/\"\nkeep/b.md: not ignored\n"
        )
    );
    // Without a global .bmignore, Basic Memory's own defaults apply (config.json...).
    std::fs::remove_file(cfg.join(".bmignore")).expect("rm");
    let said = ok(&bm(&main, home.path(), Some(&cfg), &["check-ignore", "config.json", "build/x.md"]));
    assert!(said.starts_with("config.json: ignored by Basic Memory's defaults ("), "{said}");
    assert!(said.contains("build/x.md: ignored by Basic Memory's defaults ("), "{said}");
    for f in walk_bytes(&main.join(".bmsync")).into_iter().chain(walk_bytes(&team.join(".bmsync"))) {
        assert!(!contains(&f, b"bmc_do_not_leak"), "the API key never reaches the state");
    }
}

#[test]
fn a_missing_or_broken_basic_memory_config_is_a_clear_error_naming_the_file() {
    let home = tempfile::tempdir().expect("tmp");
    let cfg = home.path().join("cfg");
    std::fs::create_dir(&cfg).expect("mkdir");
    let file = cfg.join("config.json").display().to_string();
    let o = bm(home.path(), home.path(), Some(&cfg), &["init", "--project", "main"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).starts_with(&format!("error: {file}: no Basic Memory config here")),
        "{}",
        text(&o.stderr)
    );
    std::fs::write(cfg.join("config.json"), "{\"projects\": ").expect("write");
    let o = bm(home.path(), home.path(), Some(&cfg), &["--json", "init", "--project", "main"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json error");
    assert_eq!(v["error"]["kind"], "basic_memory_config");
    assert!(
        v["error"]["message"].as_str().is_some_and(|m| m.starts_with(&format!("{file}: not a valid"))),
        "{v}"
    );
    std::fs::write(cfg.join("config.json"), r#"{"projects": {"a": "/x", "b": "/y"}}"#).expect("write");
    let o = bm(home.path(), home.path(), Some(&cfg), &["init", "--project", "main"]);
    assert!(text(&o.stderr).contains("no project named \"main\" (projects: a, b)"), "{}", text(&o.stderr));
    assert!(!home.path().join(".bmsync").exists(), "nothing was made");
}

#[test]
fn completions_for_every_shell_and_a_manual_page() {
    let tmp = tempfile::tempdir().expect("tmp");
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = ok(&bm(tmp.path(), tmp.path(), None, &["completions", shell]));
        assert!(
            script.len() > 1000 && script.contains("merge-file") && script.contains("max-delete"),
            "{shell}"
        );
    }
    let man = ok(&bm(tmp.path(), tmp.path(), None, &["manual"]));
    assert!(man.contains(".TH bmsync 1") && man.contains("sync"), "{man}");
    let help = ok(&bm(tmp.path(), tmp.path(), None, &["--help"]));
    for part in ["Everyday:", "History:", "Maintenance and plumbing:", "Examples:"] {
        assert!(help.contains(part), "{part}: {help}");
    }
    let sync_help = ok(&bm(tmp.path(), tmp.path(), None, &["sync", "--help"]));
    assert!(sync_help.contains("Exit codes:") && sync_help.contains("3  conflicts"), "{sync_help}");
    assert!(!sync_help.contains("--version"), "-V only at the top");
}

#[test]
fn commands_work_from_a_subfolder_with_paths_relative_to_it() {
    let home = tempfile::tempdir().expect("tmp");
    let root = home.path().join("vault");
    std::fs::create_dir_all(root.join("notes/deep")).expect("mkdir");
    let bucket = tempfile::tempdir().expect("tmp");
    let remote = format!("file://{}", bucket.path().display());
    ok(&bm(&root, home.path(), None, &["init", "--remote", &remote]));
    std::fs::write(root.join("notes/idea.md"), "v1\n").expect("write");
    let sub = root.join("notes/deep");
    ok(&bm(&sub, home.path(), None, &["sync"]));
    std::fs::write(root.join("notes/idea.md"), "v2\n").expect("write");
    let st = ok(&bm(&sub, home.path(), None, &["status", "--offline"]));
    assert!(st.contains("notes/idea.md"), "{st}");
    ok(&bm(&sub, home.path(), None, &["restore", "../idea.md", "--from", "base", "--force"]));
    assert_eq!(std::fs::read_to_string(root.join("notes/idea.md")).expect("read"), "v1\n");
    // Outside any bmsync folder: a clear error, and init is what it suggests.
    let o = bm(home.path(), home.path(), None, &["status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("is not in a bmsync folder") && text(&o.stderr).contains("bmsync init"));
    // init in a subfolder is still refused (a folder inside a folder).
    let o = bm(&sub, home.path(), None, &["init"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
}

/// A server on 127.0.0.1 that answers every request with `status` and an S3 error `code`.
fn refusing_server(status: &'static str, code: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                use std::io::{BufRead, Read, Write};
                let mut r = std::io::BufReader::new(s.try_clone().expect("clone"));
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    let mut any = false;
                    while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                        any = true;
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        line.clear();
                    }
                    if !any {
                        return;
                    }
                    let mut body = vec![0; len];
                    let _ = r.read_exact(&mut body);
                    let xml = format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>Refused</Message></Error>"
                    );
                    let answer = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{xml}",
                        xml.len()
                    );
                    if s.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

#[test]
fn each_remote_failure_is_one_line_with_a_hint_and_a_json_kind() {
    let server = TigrisServer::start();
    let ep = server.endpoint();
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "present", true);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let forbidden = refusing_server("403 Forbidden", "AccessDenied");
    let throttled = refusing_server("503 Slow Down", "SlowDown");
    let elsewhere = refusing_server("301 Moved Permanently", "PermanentRedirect");
    let cases: [(&str, &str, &str, &str); 5] = [
        (
            "s3://team/vault",
            &elsewhere,
            "wrong_region",
            "bucket \"team\" is in another region: set AWS_REGION",
        ),
        ("s3://team/vault", &closed, "unreachable", "connection refused"),
        (
            "s3://team/vault",
            &forbidden,
            "permission_denied",
            "permission denied: Refused (AccessDenied, HTTP 403)",
        ),
        ("s3://team/vault", &throttled, "temporary_failure", "throttling requests, even after retries"),
        ("s3://missing/vault", &ep, "no_such_bucket", "bucket \"missing\" does not exist"),
    ];
    for (url, endpoint, kind, words) in cases {
        let dir = tempfile::tempdir().expect("tmp");
        // init keeps a remote it cannot reach yet, with a warning; one that is plainly
        // wrong (no such bucket) it refuses, with the same one line.
        let mut args = vec!["init", "--remote", url, "--endpoint", endpoint];
        let mut o = bm(dir.path(), dir.path(), None, &args);
        if o.status.success() {
            std::fs::write(dir.path().join("a.md"), "a\n").expect("write");
            args = vec!["sync"];
            o = bm(dir.path(), dir.path(), None, &args);
        }
        assert_eq!(o.status.code(), Some(1), "{kind}");
        let err = text(&o.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{kind}: one line and a hint: {err}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(words) && lines[0].len() < 200,
            "{kind}: {err}"
        );
        assert!(lines[1].starts_with("hint: "), "{kind}: {err}");
        for debug in ["DispatchFailure", "ConnectorError", "SdkBody", "{"] {
            assert!(!err.contains(debug), "{kind}: debug detail {debug:?} reached the user: {err}");
        }
        let o = bm(dir.path(), dir.path(), None, &[&["--json"], &args[..]].concat());
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("a JSON error");
        assert_eq!(
            (v["error"]["kind"].as_str(), v["error"]["exit_code"].as_u64()),
            (Some(kind), Some(1)),
            "{v}"
        );
        assert!(v["error"]["hint"].is_string(), "{v}");
        // The whole chain is in the log, for whoever asks.
        let o = bm(dir.path(), dir.path(), None, &[&["-vv"], &args[..]].concat());
        assert!(text(&o.stderr).lines().count() > 2, "{kind}: -vv logs more: {}", text(&o.stderr));
        if kind == "temporary_failure" {
            assert!(
                text(&o.stderr).contains("retrying HEAD") && text(&o.stderr).contains("(attempt 2)"),
                "each retry is logged: {}",
                text(&o.stderr)
            );
        }
    }
    // No credentials at all.
    let dir = tempfile::tempdir().expect("tmp");
    ok(&bm(dir.path(), dir.path(), None, &["init", "--remote", "s3://present/v", "--endpoint", &ep]));
    let o = Command::new(env!("CARGO_BIN_EXE_bmsync"))
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .args(["--json", "sync"])
        .output()
        .expect("run");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("a JSON error");
    assert_eq!(v["error"]["kind"], "no_credentials", "{v}");
}

fn walk_bytes(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_bytes(&p));
        } else if let Ok(b) = std::fs::read(&p) {
            out.push(b);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_secret_never_reaches_logs_or_state() {
    let (server, ep) = TigrisServer::with_bucket("team");
    let dir = tempfile::tempdir().expect("tmp");
    ok(&bm(dir.path(), dir.path(), None, &["init", "--remote", "s3://team/vault", "--endpoint", &ep]));
    std::fs::write(dir.path().join("a.md"), "a\n").expect("write");
    let mut said = Vec::new();
    for args in [
        &["-vv", "sync"][..],
        &["-vv", "status"],
        &["-vv", "push"],
        &["-vv", "--json", "pull"],
        &["-vv", "remote", "show", "--probe"],
    ] {
        let o = bm(dir.path(), dir.path(), None, args);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        if args.contains(&"--json") {
            // The log never reaches stdout: it is the command's JSON, and only that.
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON unchanged by -vv");
            assert!(v["requests"]["list"].as_u64() >= Some(1), "{v}");
        }
        said.extend(o.stdout);
        said.extend(o.stderr);
    }
    let log = text(&said);
    assert!(
        log.contains("PUT \"vault/a.md\"") || log.contains("PUT \"a.md\""),
        "-vv logs each request: {log}"
    );
    assert!(log.contains("listed "), "-vv logs the listing: {log}");
    assert!(!contains(&said, SECRET_KEY.as_bytes()), "the secret is in the output");
    for f in walk_bytes(&dir.path().join(".bmsync")) {
        assert!(!contains(&f, SECRET_KEY.as_bytes()), "the secret is in a state file");
    }
    drop(server);
}

#[test]
fn every_command_speaks_json() {
    let home = tempfile::tempdir().expect("tmp");
    let root = home.path().join("v");
    std::fs::create_dir(&root).expect("mkdir");
    let bucket = tempfile::tempdir().expect("tmp");
    let remote = format!("file://{}", bucket.path().display());
    let run = |args: &[&str]| bm(&root, home.path(), None, args);
    let json = |args: &[&str]| {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let o = run(&all);
        let out = text(&o.stdout);
        assert!(
            !out.trim().is_empty(),
            "{args:?} printed nothing (exit {:?}): {}",
            o.status.code(),
            text(&o.stderr)
        );
        for line in out.lines() {
            let v: Result<serde_json::Value, _> = serde_json::from_str(line);
            assert!(v.is_ok(), "{args:?}: not JSON: {line}");
        }
        (o.status.code(), out)
    };
    json(&["init", "--remote", &remote]);
    std::fs::write(root.join("a.md"), "a\n").expect("write");
    std::fs::write(root.join("base.txt"), "x\n").expect("write");
    std::fs::write(root.join("other.txt"), "y\n").expect("write");
    for args in [
        &["status"][..],
        &["plan"],
        &["sync"],
        &["push"],
        &["pull"],
        &["commit", "-m", "m"],
        &["log"],
        &["show", "head"],
        &["diff", "base", "head"],
        &["restore", "a.md", "--from", "head"],
        &["trash"],
        &["conflicts"],
        &["resolve", "a.md", "--keep", "local"],
        &["remote", "show"],
        &["remote", "set-url", &remote],
        &["fsck"],
        &["gc"],
        &["check-ignore", "a.md", ".git/x"],
        &["hash-object", "a.md"],
        &["cat-object", "head"],
        &["update-ref", "head", "head"],
        &["merge-file", "-p", "a.md", "base.txt", "other.txt"],
        &["completions", "bash"],
        &["manual"],
        &["no-such-command"],
        &["sync", "--max-delete", "many"],
    ] {
        json(args);
    }
    // watch: one event a line, until SIGTERM.
    let mut child = Command::new(env!("CARGO_BIN_EXE_bmsync"))
        .current_dir(&root)
        .env("HOME", home.path())
        .args(["--json", "watch", "--interval", "0.2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().expect("wait");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out).expect("read");
    assert_eq!(status.code(), Some(0));
    assert!(
        !out.is_empty() && out.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "{out}"
    );
}

#[test]
fn a_changed_gitignore_or_basic_memory_default_is_seen_by_the_next_scan() {
    let home = tempfile::tempdir().expect("tmp");
    let cfg = home.path().join("bm");
    let root = home.path().join("vault");
    for d in [cfg.as_path(), &root.join("drafts"), &root.join("build")] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(root.join(".gitignore"), "drafts/\n").expect("write");
    std::fs::write(root.join("drafts/d.md"), "d\n").expect("write");
    std::fs::write(root.join("build/b.md"), "b\n").expect("write");
    std::fs::write(root.join("a.md"), "a\n").expect("write");
    let run = |args: &[&str]| bm(&root, home.path(), Some(&cfg), args);
    ok(&run(&["init"]));
    let paths = |o: &Output| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        let mut p: Vec<String> = v["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .filter_map(|c| c["path"].as_str().map(str::to_owned))
            .collect();
        p.sort();
        p
    };
    // Twice: the second scan trusts the cached listings.
    for _ in 0..2 {
        assert_eq!(paths(&run(&["--json", "status", "--offline"])), ["a.md"]);
    }
    // The project's .gitignore goes: drafts/ is no longer ignored.
    std::fs::remove_file(root.join(".gitignore")).expect("rm");
    assert_eq!(paths(&run(&["--json", "status", "--offline"])), ["a.md", "drafts/d.md"]);
    // A global .bmignore appears: Basic Memory's defaults (which ignore build/) no longer apply.
    std::fs::write(cfg.join(".bmignore"), "# mine\n").expect("write");
    assert_eq!(paths(&run(&["--json", "status", "--offline"])), ["a.md", "build/b.md", "drafts/d.md"]);
}
