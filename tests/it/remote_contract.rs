//! One contract, every backend: `file://`, the Tigris-compatible server, and moto.
//!
//! moto runs as a separate process that `scripts/test-all` installs and starts; it passes
//! its endpoint in `BMSYNC_TEST_MOTO_ENDPOINT`. Without it these tests fail under
//! `CI=true`, and elsewhere say loudly that they did not run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bmsync::ObjectId;
use bmsync::remote::{
    Body, Condition, FileRemote, Listed, Remote, RemoteError, S3Options, S3Remote, list_all,
};

use crate::tigris_server::{ACCESS_KEY, SECRET_KEY, TigrisServer};

pub(crate) use crate::tigris_server::{create_bucket, raw_client};

fn put_raw(endpoint: &str, key: &str, secret: &str, bucket: &str, object_key: &str) {
    let (rt, c) = raw_client(endpoint, key, secret);
    rt.block_on(c.put_object().bucket(bucket).key(object_key).body(b"x".to_vec().into()).send())
        .expect("raw put");
}

pub(crate) fn s3_opts(endpoint: &str, key: &str, secret: &str) -> S3Options {
    S3Options {
        endpoint: Some(endpoint.to_owned()),
        timeout: Duration::from_secs(10),
        max_attempts: 2,
        credentials: Some((key.to_owned(), secret.to_owned())),
    }
}

fn put(r: &dyn Remote, key: &str, bytes: &[u8], cond: &Condition) -> Result<String, RemoteError> {
    r.put(key, Body::Bytes(bytes), ObjectId::for_blob(bytes), bmsync::EntryKind::File, cond).map(|w| w.etag)
}

fn fetch(r: &dyn Remote, key: &str, at: Option<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    r.get(key, at, &mut out).expect("get");
    out
}

/// Every listed key and ETag in the order listed, unsafe keys marked, listed in the
/// ranges `bounds` cut.
fn in_order(r: &dyn Remote, at: Option<u64>, bounds: &[&str]) -> Vec<(String, String)> {
    let bounds: Vec<String> = bounds.iter().map(|b| (*b).to_owned()).collect();
    let mut out = Vec::new();
    r.list_ranges(at, &bounds, &mut |l| match l {
        Listed::Object(o) => out.push((o.key, o.etag)),
        Listed::Unsafe { key, reason } => out.push((key, format!("unsafe: {reason}"))),
    })
    .expect("list");
    out
}

/// Cuts that split a listing past page ends, on keys, between keys, before and after
/// all of them.
const CUTS: &[&[&str]] = &[
    &["many/00500.md"],
    &["a", "many/", "many/00999.md", "many/01000.md", "many/01049.md", "many/sub/", "notes/a.md", "zzz"],
    &["many.md", "many/00000.md", "many/00001.md"],
];

/// A listing in key ranges is the same listing: the same objects, in the same order.
fn ranges_agree(r: &dyn Remote, at: Option<u64>) {
    let whole = in_order(r, at, &[]);
    let mut sorted = whole.clone();
    sorted.sort();
    assert_eq!(whole, sorted, "a listing comes in key order");
    for bounds in CUTS {
        assert_eq!(in_order(r, at, bounds), whole, "cut at {bounds:?}");
    }
}

fn listing(r: &dyn Remote, at: Option<u64>) -> BTreeMap<String, String> {
    let (objs, bad) = list_all(r, at).expect("list");
    assert!(bad.is_empty(), "{bad:?}");
    objs.into_iter().map(|o| (o.key, o.etag)).collect()
}

/// The behaviour every backend must have.
fn contract(r: &Arc<dyn Remote>) {
    let r: &dyn Remote = r.as_ref();
    // Create, read back, metadata.
    let e1 = put(r, "notes/a.md", b"alpha", &Condition::IfAbsent).expect("create");
    let head = r.head("notes/a.md", None).expect("head");
    assert_eq!((head.etag.as_str(), head.size), (e1.as_str(), 5));
    assert_eq!(head.content, Some(ObjectId::for_blob(b"alpha")), "content id metadata round-trips");
    assert_eq!(fetch(r, "notes/a.md", None), b"alpha");
    assert!(matches!(r.head("notes/missing.md", None), Err(RemoteError::NotFound { .. })));

    // Conditional writes lose cleanly.
    assert!(matches!(
        put(r, "notes/a.md", b"other", &Condition::IfAbsent),
        Err(RemoteError::PreconditionFailed { .. })
    ));
    let stale = Condition::IfMatch("\"0000\"".into());
    assert!(matches!(put(r, "notes/a.md", b"other", &stale), Err(RemoteError::PreconditionFailed { .. })));
    assert!(matches!(
        put(r, "notes/new.md", b"x", &stale),
        Err(RemoteError::PreconditionFailed { .. } | RemoteError::NotFound { .. })
    ));
    let e2 = put(r, "notes/a.md", b"alpha v2", &Condition::IfMatch(e1.clone())).expect("update");
    assert_ne!(e1, e2);
    assert!(matches!(r.delete("notes/a.md", &e1), Err(RemoteError::PreconditionFailed { .. })));
    assert_eq!(fetch(r, "notes/a.md", None), b"alpha v2", "a failed delete deletes nothing");

    // Unsafe keys are refused before anything is sent.
    for bad in ["../x", "/abs", "a//b", "a\0b"] {
        assert!(
            matches!(put(r, bad, b"x", &Condition::IfAbsent), Err(RemoteError::UnsafeKey { .. })),
            "{bad:?}"
        );
    }
    // A backslash is an ordinary character of a key (and of a file name here).
    put(r, "back\\slash.md", b"x", &Condition::IfAbsent).expect("a backslash key");
    assert_eq!(fetch(r, "back\\slash.md", None), b"x");
    let e = r.head("back\\slash.md", None).expect("head").etag;
    r.delete("back\\slash.md", &e).expect("delete");

    // Races: 16 writers, one key, exactly one winner each time.
    let winners = race(r, |i| put(r, "race/new.md", format!("writer {i}").as_bytes(), &Condition::IfAbsent));
    assert_eq!(winners, 1, "If-None-Match: exactly one of 16 creates wins");
    let base = r.head("race/new.md", None).expect("head").etag;
    let winners = race(r, |i| {
        put(r, "race/new.md", format!("update {i}").as_bytes(), &Condition::IfMatch(base.clone()))
    });
    assert_eq!(winners, 1, "If-Match: exactly one of 16 updates wins");
    let current = r.head("race/new.md", None).expect("head").etag;
    let winners = race(r, |_| r.delete("race/new.md", &current));
    assert_eq!(winners, 1, "conditional delete: exactly one of 16 wins");

    // Snapshots: a listing at a version is unchanged by later writes and deletes.
    if r.capabilities().snapshots {
        put(r, "snap/b.md", b"bravo", &Condition::IfAbsent).expect("put");
        let before = listing(r, None);
        let v = r.snapshot(Some("contract")).expect("snapshot");
        let eb = r.head("snap/b.md", None).expect("head").etag;
        r.delete("snap/b.md", &eb).expect("delete");
        put(r, "notes/a.md", b"alpha v3", &Condition::IfMatch(e2.clone())).expect("update");
        put(r, "snap/c.md", b"charlie", &Condition::IfAbsent).expect("put");
        assert_eq!(listing(r, Some(v)), before, "listing at the snapshot is frozen");
        assert_eq!(fetch(r, "notes/a.md", Some(v)), b"alpha v2");
        assert_eq!(fetch(r, "snap/b.md", Some(v)), b"bravo");
        assert!(matches!(r.head("snap/c.md", Some(v)), Err(RemoteError::NotFound { .. })));
        assert!(r.snapshots().expect("snapshots").iter().any(|s| s.version == v), "the snapshot is listed");
        let later = r.snapshot(None).expect("snapshot");
        assert!(later > v, "versions increase");
    } else {
        assert!(matches!(r.snapshot(None), Err(RemoteError::NoSnapshots { .. })));
        assert!(matches!(r.list(Some(1), &mut |_| {}), Err(RemoteError::NoSnapshots { .. })));
    }

    // Pagination past 1,000 keys.
    for i in 0..1_050 {
        put(r, &format!("many/{i:05}.md"), format!("{i}").as_bytes(), &Condition::IfAbsent).expect("put");
    }
    let all = listing(r, None);
    assert_eq!(all.keys().filter(|k| k.starts_with("many/")).count(), 1_050);
    listing_in_ranges(r, &all);

    // Multipart: a large file goes up in parts, under a precondition.
    let dir = tempfile::tempdir().expect("tmp");
    let big_path = dir.path().join("big.bin");
    let big: Vec<u8> = (0..(17u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&big_path, &big).expect("write");
    let id = ObjectId::for_blob(&big);
    r.put("att/big.bin", Body::File(&big_path), id, bmsync::EntryKind::File, &Condition::IfAbsent)
        .expect("multipart put");
    assert!(fetch(r, "att/big.bin", None) == big);
    assert_eq!(r.head("att/big.bin", None).expect("head").content, Some(id));
    assert!(matches!(
        r.put("att/big.bin", Body::File(&big_path), id, bmsync::EntryKind::File, &Condition::IfAbsent),
        Err(RemoteError::PreconditionFailed { .. })
    ));

    // The probe finds every guarantee, and leaves nothing behind.
    let before = listing(r, None);
    let rec = bmsync::remote::probe(r, "contract", None).expect("probe");
    assert!((rec.if_none_match, rec.if_match, rec.conditional_delete) == (true, true, true), "{rec:?}");
    assert_eq!((rec.snapshots, rec.remote.as_str()), (r.capabilities().snapshots, r.url().as_str()));
    assert_eq!(listing(r, None), before, "the probe object is gone");
}

/// A listing cut into key ranges is the same listing, live and at a snapshot; `all` is
/// the live listing so far.
fn listing_in_ranges(r: &dyn Remote, all: &BTreeMap<String, String>) {
    for key in ["many.md", "many/sub/deep.md", "many/sub\u{e9}/x.md", "zz-last.md"] {
        put(r, key, key.as_bytes(), &Condition::IfAbsent).expect("put");
    }
    ranges_agree(r, None);
    if r.capabilities().snapshots {
        let v = r.snapshot(None).expect("snapshot");
        put(r, "many/00001.md", b"changed", &Condition::IfMatch(all["many/00001.md"].clone()))
            .expect("update");
        put(r, "many/00500-new.md", b"new", &Condition::IfAbsent).expect("put");
        put(r, "zz-after-snapshot.md", b"later", &Condition::IfAbsent).expect("put");
        ranges_agree(r, Some(v));
        for cut in [&[][..], CUTS[2]] {
            // On a later page of the listing (or of its last range): each page is at `v`.
            assert!(!in_order(r, Some(v), cut).iter().any(|(k, _)| k.starts_with("zz-after")), "{cut:?}");
        }
        assert_eq!(
            in_order(r, Some(v), CUTS[1]).iter().find(|(k, _)| k == "many/00001.md").map(|(_, e)| e),
            Some(&all["many/00001.md"]),
            "a split listing at a snapshot sees the snapshot"
        );
        ranges_agree(r, None);
    }
}

/// Runs `f` on 16 threads at once; returns how many succeeded. Failures must be lost races.
fn race<T: Send>(_r: &dyn Remote, f: impl Fn(usize) -> Result<T, RemoteError> + Sync) -> usize {
    let barrier = std::sync::Barrier::new(16);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("racer"))
            .filter(|r| match r {
                Ok(_) => true,
                Err(RemoteError::PreconditionFailed { .. } | RemoteError::NotFound { .. }) => false,
                Err(e) => panic!("a lost race must be a precondition failure, got {e}"),
            })
            .count()
    })
}

#[test]
fn contract_file_remote() {
    let dir = tempfile::tempdir().expect("tmp");
    let r: Arc<dyn Remote> = Arc::new(FileRemote::open(dir.path()).expect("open"));
    contract(&r);
    // A second handle on the same folder (another process, in effect) sees the same state.
    let other = FileRemote::open(dir.path()).expect("open again");
    assert_eq!(fetch(&other, "notes/a.md", None), b"alpha v3");
    // A missing folder is never created by opening it; one that cannot be created is a
    // clear error.
    let err = FileRemote::open(std::path::Path::new("/proc/bmsync-cannot-exist")).expect_err("missing");
    assert!(matches!(err, RemoteError::MissingFolder { .. }), "{err}");
    assert!(!std::path::Path::new("/proc/bmsync-cannot-exist").exists());
    let err = FileRemote::create(std::path::Path::new("/proc/bmsync-cannot-exist")).expect_err("unreachable");
    assert!(matches!(err, RemoteError::Unreachable { .. }), "{err}");
}

#[test]
fn contract_tigris_compatible_server() {
    let server = TigrisServer::start();
    let ep = server.endpoint();
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", true);
    let r: Arc<dyn Remote> =
        Arc::new(S3Remote::connect("team", "vault", &s3_opts(&ep, ACCESS_KEY, SECRET_KEY)).expect("connect"));
    assert!(r.capabilities().snapshots, "HeadBucket reports snapshots");
    assert_eq!(r.url(), "s3://team/vault");
    contract(&r);
    unsafe_listing_keys_are_reported(&ep, ACCESS_KEY, SECRET_KEY, "team", r.as_ref());
    // Wrong credentials: a clear credentials error, not a mere "forbidden".
    let err =
        S3Remote::connect("team", "vault", &s3_opts(&ep, ACCESS_KEY, "wrong-secret")).expect_err("denied");
    assert!(matches!(err, RemoteError::Credentials { .. }), "{err}");
    let err =
        S3Remote::connect("team", "vault", &s3_opts(&ep, "unknown-key", SECRET_KEY)).expect_err("denied");
    assert!(matches!(err, RemoteError::Credentials { .. }), "{err}");
    // A bucket that does not exist says so.
    let err =
        S3Remote::connect("no-such-bucket", "", &s3_opts(&ep, ACCESS_KEY, SECRET_KEY)).expect_err("missing");
    assert!(matches!(&err, RemoteError::NoSuchBucket { bucket, .. } if bucket == "no-such-bucket"), "{err}");
    // A bucket without snapshots says so.
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "plain", false);
    let plain = S3Remote::connect("plain", "", &s3_opts(&ep, ACCESS_KEY, SECRET_KEY)).expect("connect");
    assert!(!plain.capabilities().snapshots);
    assert!(matches!(plain.snapshot(None), Err(RemoteError::NoSnapshots { .. })));
    // Without a prefix, ranges cut the whole bucket.
    for key in ["a.md", "many.md", "many/00000.md", "many/00500.md", "many/00999.md", "notes/a.md", "zzzz.md"]
    {
        put(&plain, key, key.as_bytes(), &Condition::IfAbsent).expect("put");
    }
    ranges_agree(&plain, None);
}

/// A bucket without a prefix on a test server bending the rules as `quirks` say, holding
/// `keys`.
fn bucket_of(quirks: crate::tigris_server::Quirks, keys: &[&str]) -> (TigrisServer, S3Remote) {
    let server = TigrisServer::start_with(quirks);
    let ep = server.endpoint();
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", false);
    let r = S3Remote::connect("team", "", &s3_opts(&ep, ACCESS_KEY, SECRET_KEY)).expect("connect");
    for key in keys {
        put(&r, key, b"x", &Condition::IfAbsent).expect("put");
    }
    (server, r)
}

#[test]
fn a_range_that_fails_fails_the_whole_listing() {
    let (_server, r) = bucket_of(
        crate::tigris_server::Quirks { fail_start_after: true, ..Default::default() },
        &["a.md", "m.md", "z.md"],
    );
    let mut seen = Vec::new();
    assert_eq!(in_order(&r, None, &[]).len(), 3, "a listing without cuts needs no start-after");
    let err = r
        .list_ranges(None, &["m.md".to_owned()], &mut |l| {
            if let Listed::Object(o) = l {
                seen.push(o.key);
            }
        })
        .expect_err("the second range fails");
    assert!(!matches!(err, RemoteError::NotFound { .. }), "{err}");
    assert_eq!(seen, ["a.md", "m.md"], "what came before the failure, in order, and no more");
}

#[test]
fn the_ranges_of_a_listing_are_in_flight_together() {
    let (server, r) = bucket_of(crate::tigris_server::Quirks::default(), &["a.md", "m.md", "t.md", "z.md"]);
    // Long enough that ranges started together surely overlap (a count, not a timing).
    server.set_latency(Duration::from_millis(200));
    let listed = in_order(&r, None, &["f", "p", "u"]);
    assert_eq!(listed.len(), 4);
    assert!(server.most_in_flight() >= 2, "ranges listed one after another");
    assert_eq!(
        in_order(&r, None, &[]).len(),
        4,
        "a listing without cuts is one request at a time (the count stays)"
    );
}

#[test]
fn a_server_that_ignores_start_after_still_lists_each_key_once() {
    let (_server, r) = bucket_of(
        crate::tigris_server::Quirks { ignore_start_after: true, ..Default::default() },
        &["a.md", "many.md", "many/00000.md", "many/00500.md", "many/01000.md", "notes/a.md", "zzz"],
    );
    assert_eq!(in_order(&r, None, &[]).len(), 7);
    ranges_agree(&r, None);
}

fn unsafe_listing_keys_are_reported(ep: &str, key: &str, secret: &str, bucket: &str, r: &dyn Remote) {
    put_raw(ep, key, secret, bucket, "vault/evil/../../escape.md");
    put_raw(ep, key, secret, bucket, "vault/ok-after-evil.md");
    let (objs, bad) = list_all(r, None).expect("list");
    assert!(bad.iter().any(|(k, _)| k == "evil/../../escape.md"), "{bad:?}");
    assert!(objs.iter().any(|o| o.key == "ok-after-evil.md"), "the rest still lists");
    assert!(!objs.iter().any(|o| o.key.contains("..")));
    let split = in_order(r, None, &["evil/", "ok"]);
    assert!(
        split.iter().any(|(k, why)| k == "evil/../../escape.md" && why.starts_with("unsafe")),
        "{split:?}"
    );
    assert_eq!(split, in_order(r, None, &[]), "a split listing reports the same unsafe keys");
}

/// moto's endpoint; without one, fails under `CI=true` and says loudly that `test` did not
/// run elsewhere.
pub(crate) fn moto_endpoint(test: &str) -> Option<String> {
    let ep = std::env::var("BMSYNC_TEST_MOTO_ENDPOINT").ok().filter(|v| !v.is_empty());
    if ep.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but BMSYNC_TEST_MOTO_ENDPOINT is not set: run the tests through scripts/test-all"
        );
        eprintln!(
            "\n*** {test} DID NOT RUN: no moto server (run scripts/test-all to install and start one) ***\n"
        );
    }
    ep
}

#[test]
fn contract_moto() {
    let Some(ep) = moto_endpoint("contract_moto") else { return };
    let bucket = format!("contract-{}", std::process::id());
    create_bucket(&ep, "test", "test", &bucket, false);
    let r: Arc<dyn Remote> =
        Arc::new(S3Remote::connect(&bucket, "vault", &s3_opts(&ep, "test", "test")).expect("connect"));
    contract(&r);
    unsafe_listing_keys_are_reported(&ep, "test", "test", &bucket, r.as_ref());
    // moto does not check signatures, so wrong credentials cannot be shown against it;
    // the Tigris-compatible server (on s3s) covers that.
}

#[test]
fn a_dead_endpoint_fails_clearly_within_the_timeout() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let opts = S3Options {
        timeout: Duration::from_secs(2),
        ..s3_opts(&format!("http://127.0.0.1:{port}"), "k", "s")
    };
    let t = Instant::now();
    let err = S3Remote::connect("team", "", &opts).expect_err("dead endpoint");
    assert!(t.elapsed() < Duration::from_secs(15), "took {:?}", t.elapsed());
    assert!(matches!(err, RemoteError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn listing_callback_sees_objects_in_key_order_on_file_remote() {
    let dir = tempfile::tempdir().expect("tmp");
    let r = FileRemote::open(dir.path()).expect("open");
    for k in ["b", "a/z", "a.md"] {
        put(&r, k, k.as_bytes(), &Condition::IfAbsent).expect("put");
    }
    let mut keys = Vec::new();
    r.list(None, &mut |l| {
        if let Listed::Object(o) = l {
            keys.push(o.key);
        }
    })
    .expect("list");
    assert_eq!(keys, ["a.md", "a/z", "b"]);
}

fn bmsync_env(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_bmsync"))
        .env("HOME", dir)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("run bmsync")
}

#[test]
fn remote_show_and_init_report_capabilities() {
    let server = TigrisServer::start();
    let ep = server.endpoint();
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "team", true);
    create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "plain", false);
    let snap = S3Remote::connect("team", "vault", &s3_opts(&ep, ACCESS_KEY, SECRET_KEY))
        .expect("connect")
        .snapshot(Some("before"))
        .expect("snapshot");

    let a = tempfile::tempdir().expect("tmp");
    let o = bmsync_env(a.path(), &["init", "--remote", "s3://team/vault", "--endpoint", &ep]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("no snapshots"));
    let o = bmsync_env(a.path(), &["--json", "remote", "show"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["remote"], "s3://team/vault");
    assert_eq!(v["capabilities"]["snapshots"], true);
    assert_eq!(v["latest_snapshot"]["version"], snap);
    let text = String::from_utf8(bmsync_env(a.path(), &["remote", "show"]).stdout).expect("utf-8");
    assert!(
        text.contains("snapshots:          yes") && text.contains(&format!("latest snapshot:    {snap}")),
        "{text}"
    );

    let b = tempfile::tempdir().expect("tmp");
    let o = bmsync_env(b.path(), &["init", "--remote", "s3://plain", "--endpoint", &ep]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no snapshots") && err.contains("What you give up"), "{err}");
    let v: serde_json::Value =
        serde_json::from_slice(&bmsync_env(b.path(), &["--json", "remote", "show"]).stdout).expect("json");
    assert_eq!(v["capabilities"]["snapshots"], false);
    assert_eq!(v["latest_snapshot"], serde_json::Value::Null);
}
