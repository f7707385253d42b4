//! The in-process Tigris server, exercised through aws-sdk-s3 as bmsync uses it.

use std::fmt::Write as _;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use s3s::crypto::{Checksum as _, Md5};

use super::tigris_server::{ACCESS_KEY, SECRET_KEY, TigrisServer};

fn client(endpoint: &str, secret: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(ACCESS_KEY, secret, None, None, "tigris-test"))
        .force_path_style(true)
        .build();
    Client::from_conf(config)
}

/// Copies one response header out of the raw HTTP response.
#[derive(Debug, Clone)]
struct CaptureHeader {
    name: &'static str,
    value: Arc<Mutex<Option<String>>>,
}

impl CaptureHeader {
    fn new(name: &'static str) -> Self {
        Self { name, value: Arc::default() }
    }

    fn get(&self) -> Option<String> {
        self.value.lock().expect("capture lock is never poisoned").clone()
    }
}

impl Intercept for CaptureHeader {
    fn name(&self) -> &'static str {
        "CaptureHeader"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let value = context.response().headers().get(self.name).map(str::to_owned);
        *self.value.lock().expect("capture lock is never poisoned") = value;
        Ok(())
    }
}

fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

fn now_ns() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    u64::try_from(since.as_nanos()).expect("fits until 2554")
}

fn quoted_md5(data: &[u8]) -> String {
    format!("\"{}\"", hex(&Md5::checksum(data)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        write!(s, "{b:02x}").expect("writing to a String cannot fail");
        s
    })
}

async fn create_bucket(c: &Client, name: &str, snapshots: bool) {
    let op = c.create_bucket().bucket(name);
    let result = if snapshots {
        op.customize()
            .mutate_request(|r| {
                r.headers_mut().insert("X-Tigris-Enable-Snapshot", "true");
            })
            .send()
            .await
    } else {
        op.send().await
    };
    result.expect("create bucket");
}

async fn take_snapshot(
    c: &Client,
    bucket: &str,
    name: Option<&str>,
) -> Result<String, SdkError<aws_sdk_s3::operation::create_bucket::CreateBucketError, HttpResponse>> {
    let value = name.map_or_else(|| "true".to_owned(), |n| format!("true; name={n}"));
    let capture = CaptureHeader::new("x-tigris-snapshot-version");
    c.create_bucket()
        .bucket(bucket)
        .customize()
        .mutate_request(move |r| {
            r.headers_mut().insert("X-Tigris-Snapshot", value.clone());
        })
        .interceptor(capture.clone())
        .send()
        .await?;
    Ok(capture.get().expect("snapshot response carries X-Tigris-Snapshot-Version"))
}

async fn put(c: &Client, bucket: &str, key: &str, body: &str) -> String {
    let out = c
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await
        .expect("put object");
    out.e_tag.expect("put returns an ETag")
}

/// GET, optionally as of a snapshot version; `None` when the key did not exist then.
async fn get_at(c: &Client, bucket: &str, key: &str, version: Option<&str>) -> Option<String> {
    let version = version.map(str::to_owned);
    let result = c
        .get_object()
        .bucket(bucket)
        .key(key)
        .customize()
        .mutate_request(move |r| {
            r.headers_mut().insert("X-Tigris-Consistent", "true");
            if let Some(v) = &version {
                r.headers_mut().insert("X-Tigris-Snapshot-Version", v.clone());
            }
        })
        .send()
        .await;
    match result {
        Ok(out) => {
            let bytes = out.body.collect().await.expect("read body").into_bytes();
            Some(String::from_utf8(bytes.to_vec()).expect("utf-8 test body"))
        }
        Err(SdkError::ServiceError(e)) if matches!(e.err(), GetObjectError::NoSuchKey(_)) => None,
        Err(e) => panic!("get {key}: {e:?}"),
    }
}

async fn head_etag_at(c: &Client, bucket: &str, key: &str, version: &str) -> Option<String> {
    let version = version.to_owned();
    let result = c
        .head_object()
        .bucket(bucket)
        .key(key)
        .customize()
        .mutate_request(move |r| {
            r.headers_mut().insert("X-Tigris-Snapshot-Version", version.clone());
        })
        .send()
        .await;
    match result {
        Ok(out) => out.e_tag,
        Err(e) if status(&e) == Some(404) => None,
        Err(e) => panic!("head {key}: {e:?}"),
    }
}

async fn list_at(c: &Client, bucket: &str, version: Option<&str>) -> Vec<String> {
    let version = version.map(str::to_owned);
    let out = c
        .list_objects_v2()
        .bucket(bucket)
        .customize()
        .mutate_request(move |r| {
            if let Some(v) = &version {
                r.headers_mut().insert("X-Tigris-Snapshot-Version", v.clone());
            }
        })
        .send()
        .await
        .expect("list objects");
    out.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect()
}

#[tokio::test]
async fn head_bucket_reports_snapshot_support() {
    let server = TigrisServer::start();
    let c = client(&server.endpoint(), SECRET_KEY);
    create_bucket(&c, "with-snapshots", true).await;
    create_bucket(&c, "plain", false).await;

    for (bucket, expected) in [("with-snapshots", true), ("plain", false)] {
        let capture = CaptureHeader::new("x-tigris-enable-snapshot");
        c.head_bucket().bucket(bucket).customize().interceptor(capture.clone()).send().await.expect("head");
        assert_eq!(capture.get().as_deref() == Some("true"), expected, "{bucket}");
    }

    let versioning = c.get_bucket_versioning().bucket("plain").send().await.expect("get versioning");
    assert_eq!(versioning.status(), None);

    // Snapshots cannot be turned on by re-creating an existing bucket.
    let again = c
        .create_bucket()
        .bucket("plain")
        .customize()
        .mutate_request(|r| {
            r.headers_mut().insert("X-Tigris-Enable-Snapshot", "true");
        })
        .send()
        .await;
    assert_eq!(again.as_ref().err().and_then(status), Some(409));
}

#[tokio::test]
async fn snapshots_return_versions_and_are_listed() {
    let server = TigrisServer::start();
    let c = client(&server.endpoint(), SECRET_KEY);
    create_bucket(&c, "notes", true).await;

    let before = now_ns();
    let named = take_snapshot(&c, "notes", Some("before sync")).await.expect("named snapshot");
    let unnamed = take_snapshot(&c, "notes", None).await.expect("unnamed snapshot");
    let (named_v, unnamed_v): (u64, u64) =
        (named.parse().expect("decimal version"), unnamed.parse().expect("decimal version"));
    assert!(before <= named_v && named_v < unnamed_v && unnamed_v <= now_ns());

    let listed = c
        .list_buckets()
        .customize()
        .mutate_request(|r| {
            r.headers_mut().insert("X-Tigris-Snapshot", "notes");
        })
        .send()
        .await
        .expect("list snapshots");
    let names: Vec<&str> = listed.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, [unnamed.clone(), format!("{named}; name=before sync")]);
    assert!(listed.buckets().iter().all(|b| b.creation_date().is_some()));

    // Without the header, ListBuckets lists buckets.
    let plain = c.list_buckets().send().await.expect("list buckets");
    let names: Vec<&str> = plain.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["notes"]);
}

#[tokio::test]
async fn snapshot_reads_ignore_later_writes_and_deletes() {
    let server = TigrisServer::start();
    let c = client(&server.endpoint(), SECRET_KEY);
    create_bucket(&c, "notes", true).await;
    let etag_a = put(&c, "notes", "a.md", "a1").await;
    put(&c, "notes", "b.md", "b1").await;
    let v = take_snapshot(&c, "notes", Some("s1")).await.expect("snapshot");

    put(&c, "notes", "a.md", "a2").await;
    c.delete_object().bucket("notes").key("b.md").send().await.expect("delete b");
    put(&c, "notes", "c.md", "c1").await;

    assert_eq!(get_at(&c, "notes", "a.md", Some(&v)).await.as_deref(), Some("a1"));
    assert_eq!(get_at(&c, "notes", "b.md", Some(&v)).await.as_deref(), Some("b1"));
    assert_eq!(get_at(&c, "notes", "c.md", Some(&v)).await, None);
    assert_eq!(head_etag_at(&c, "notes", "a.md", &v).await, Some(etag_a));
    assert_eq!(head_etag_at(&c, "notes", "c.md", &v).await, None);
    assert_eq!(list_at(&c, "notes", Some(&v)).await, ["a.md", "b.md"]);

    assert_eq!(get_at(&c, "notes", "a.md", None).await.as_deref(), Some("a2"));
    assert_eq!(get_at(&c, "notes", "b.md", None).await, None);
    assert_eq!(list_at(&c, "notes", None).await, ["a.md", "c.md"]);

    // ListObjects v1 honours the version too.
    let v1 = v.clone();
    let old = c
        .list_objects()
        .bucket("notes")
        .customize()
        .mutate_request(move |r| {
            r.headers_mut().insert("X-Tigris-Snapshot-Version", v1.clone());
        })
        .send()
        .await
        .expect("list v1");
    let keys: Vec<&str> = old.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["a.md", "b.md"]);
}

#[tokio::test]
async fn any_timestamp_reads_the_bucket_as_of_then() {
    let server = TigrisServer::start();
    let c = client(&server.endpoint(), SECRET_KEY);
    create_bucket(&c, "notes", true).await;
    put(&c, "notes", "a.md", "first").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let between = now_ns().to_string();
    tokio::time::sleep(Duration::from_millis(5)).await;
    put(&c, "notes", "a.md", "second").await;
    put(&c, "notes", "b.md", "new").await;

    assert_eq!(get_at(&c, "notes", "a.md", Some(&between)).await.as_deref(), Some("first"));
    assert_eq!(get_at(&c, "notes", "b.md", Some(&between)).await, None);
    assert_eq!(list_at(&c, "notes", Some(&between)).await, ["a.md"]);
    assert_eq!(list_at(&c, "notes", Some("1")).await, Vec::<String>::new());
}

#[tokio::test]
async fn snapshots_need_a_snapshot_enabled_bucket() {
    let server = TigrisServer::start();
    let c = client(&server.endpoint(), SECRET_KEY);
    create_bucket(&c, "plain", false).await;
    put(&c, "plain", "a.md", "x").await;

    let err = take_snapshot(&c, "plain", None).await.expect_err("no snapshots on a plain bucket");
    assert_eq!(status(&err), Some(400));
    let err = take_snapshot(&c, "missing", None).await.expect_err("no such bucket");
    assert_eq!(status(&err), Some(404));

    let v = now_ns().to_string();
    let read = c
        .get_object()
        .bucket("plain")
        .key("a.md")
        .customize()
        .mutate_request(move |r| {
            r.headers_mut().insert("X-Tigris-Snapshot-Version", v.clone());
        })
        .send()
        .await;
    assert_eq!(read.as_ref().err().and_then(status), Some(400));
}

#[tokio::test]
async fn conditional_writes_fail_with_412() {
    let server = TigrisServer::start();
    let c = client(&server.endpoint(), SECRET_KEY);
    create_bucket(&c, "notes", false).await;
    let put_if = |none_match: Option<&str>, if_match: Option<&str>, body: &str| {
        c.put_object()
            .bucket("notes")
            .key("k")
            .set_if_none_match(none_match.map(str::to_owned))
            .set_if_match(if_match.map(str::to_owned))
            .body(ByteStream::from(body.as_bytes().to_vec()))
            .send()
    };

    let missing = put_if(None, Some("\"0123456789abcdef0123456789abcdef\""), "x").await;
    assert_eq!(missing.as_ref().err().and_then(status), Some(412), "If-Match on a missing key");
    let first = put_if(Some("*"), None, "one").await.expect("create-only put of a new key");
    let etag = first.e_tag.expect("etag");
    assert_eq!(etag, quoted_md5(b"one"));
    let again = put_if(Some("*"), None, "two").await;
    assert_eq!(again.as_ref().err().and_then(status), Some(412), "If-None-Match on an existing key");
    let stale = put_if(None, Some("\"0123456789abcdef0123456789abcdef\""), "two").await;
    assert_eq!(stale.as_ref().err().and_then(status), Some(412), "If-Match with a stale ETag");
    let swapped = put_if(None, Some(&etag), "two").await.expect("compare-and-swap");
    let etag2 = swapped.e_tag.expect("etag");

    let delete_if = |if_match: &str| c.delete_object().bucket("notes").key("k").if_match(if_match).send();
    let stale = delete_if(&etag).await;
    assert_eq!(stale.as_ref().err().and_then(status), Some(412), "delete with a stale ETag");
    delete_if(&etag2).await.expect("delete with the current ETag");
    let gone = delete_if(&etag2).await;
    assert_eq!(gone.as_ref().err().and_then(status), Some(412), "delete If-Match on a missing key");
    assert_eq!(get_at(&c, "notes", "k", None).await, None);
}

#[test]
fn racing_create_only_puts_have_one_winner() {
    const WRITERS: usize = 16;
    let server = TigrisServer::start();
    let endpoint = server.endpoint();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(create_bucket(&client(&endpoint, SECRET_KEY), "race", true));

    let barrier = Arc::new(Barrier::new(WRITERS));
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let (endpoint, barrier) = (endpoint.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let runtime =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                let c = client(&endpoint, SECRET_KEY);
                barrier.wait();
                let result = runtime.block_on(
                    c.put_object()
                        .bucket("race")
                        .key("lock")
                        .if_none_match("*")
                        .body(ByteStream::from(format!("writer {i}").into_bytes()))
                        .send(),
                );
                match result {
                    Ok(_) => Some(i),
                    Err(e) if status(&e) == Some(412) => None,
                    Err(e) => panic!("writer {i}: {e:?}"),
                }
            })
        })
        .collect();
    let winners: Vec<usize> = writers.into_iter().filter_map(|w| w.join().expect("writer thread")).collect();
    assert_eq!(winners.len(), 1, "winners: {winners:?}");

    let c = client(&endpoint, SECRET_KEY);
    let body = runtime.block_on(get_at(&c, "race", "lock", None));
    assert_eq!(body, Some(format!("writer {}", winners[0])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_paginates_past_1000_keys() {
    const KEYS: usize = 1050;
    let server = TigrisServer::start();
    let c = client(&server.endpoint(), SECRET_KEY);
    create_bucket(&c, "many", false).await;
    let mut puts = tokio::task::JoinSet::new();
    for worker in 0..10 {
        let c = c.clone();
        puts.spawn(async move {
            for i in (worker..KEYS).step_by(10) {
                put(&c, "many", &format!("dir{}/note{i:04}.md", i % 3), "x").await;
            }
        });
    }
    puts.join_all().await;

    let mut keys = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let out = c
            .list_objects_v2()
            .bucket("many")
            .max_keys(5000)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list page");
        pages += 1;
        assert!(out.contents().len() <= 1000, "max-keys is capped at 1000");
        keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        token = out.next_continuation_token().map(str::to_owned);
        if !out.is_truncated().unwrap_or(false) {
            break;
        }
    }
    assert_eq!(pages, 2);
    let mut expected: Vec<String> = (0..KEYS).map(|i| format!("dir{}/note{i:04}.md", i % 3)).collect();
    expected.sort();
    assert_eq!(keys, expected);

    // Delimiter listings page over common prefixes too.
    let mut prefixes = Vec::new();
    let mut token = None;
    loop {
        let out = c
            .list_objects_v2()
            .bucket("many")
            .delimiter("/")
            .max_keys(2)
            .set_continuation_token(token)
            .send()
            .await
            .expect("delimited page");
        assert!(out.contents().is_empty());
        prefixes.extend(out.common_prefixes().iter().filter_map(|p| p.prefix().map(str::to_owned)));
        token = out.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(prefixes, ["dir0/", "dir1/", "dir2/"]);

    let dir1 = c.list_objects_v2().bucket("many").prefix("dir1/").send().await.expect("prefix list");
    assert_eq!(dir1.key_count(), Some(350));
}

#[tokio::test]
async fn multipart_upload_honours_if_none_match() {
    let server = TigrisServer::start();
    let c = client(&server.endpoint(), SECRET_KEY);
    create_bucket(&c, "big", false).await;
    let parts: [Vec<u8>; 2] = [vec![b'a'; 5 * 1024 * 1024], b"tail".to_vec()];

    let upload = |key: &'static str| {
        let (c, parts) = (c.clone(), parts.clone());
        async move {
            let created =
                c.create_multipart_upload().bucket("big").key(key).send().await.expect("create mpu");
            let id = created.upload_id.expect("upload id");
            let mut completed = Vec::new();
            for (n, data) in (1..).zip(parts) {
                let out = c
                    .upload_part()
                    .bucket("big")
                    .key(key)
                    .upload_id(&id)
                    .part_number(n)
                    .body(ByteStream::from(data))
                    .send()
                    .await
                    .expect("upload part");
                completed.push(CompletedPart::builder().part_number(n).set_e_tag(out.e_tag).build());
            }
            (id, CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
        }
    };
    let complete = |id: String, parts: CompletedMultipartUpload| {
        c.complete_multipart_upload()
            .bucket("big")
            .key("file.bin")
            .upload_id(id)
            .multipart_upload(parts)
            .if_none_match("*")
            .send()
    };

    let (id, done) = upload("file.bin").await;
    let out = complete(id, done).await.expect("complete new key");
    let mut digests = Md5::checksum(&parts[0]).to_vec();
    digests.extend_from_slice(&Md5::checksum(&parts[1]));
    assert_eq!(out.e_tag(), Some(format!("\"{}-2\"", hex(&Md5::checksum(&digests))).as_str()));
    let got = c.get_object().bucket("big").key("file.bin").send().await.expect("get");
    assert_eq!(got.content_length(), Some(5 * 1024 * 1024 + 4));
    let body = got.body.collect().await.expect("body").into_bytes();
    assert_eq!(body, [parts[0].as_slice(), parts[1].as_slice()].concat());

    // A second create-only completion loses and leaves a dangling upload to clean up.
    let (id, done) = upload("file.bin").await;
    let lost = complete(id.clone(), done).await;
    assert_eq!(lost.as_ref().err().and_then(status), Some(412));
    let listed = c.list_multipart_uploads().bucket("big").send().await.expect("list uploads");
    let ids: Vec<&str> = listed.uploads().iter().filter_map(|u| u.upload_id()).collect();
    assert_eq!(ids, [id.as_str()]);
    c.abort_multipart_upload().bucket("big").key("file.bin").upload_id(&id).send().await.expect("abort");
    let listed = c.list_multipart_uploads().bucket("big").send().await.expect("list uploads");
    assert!(listed.uploads().is_empty());
}

#[tokio::test]
async fn metadata_round_trips() {
    let server = TigrisServer::start();
    let c = client(&server.endpoint(), SECRET_KEY);
    create_bucket(&c, "meta", false).await;
    let body = b"# hello\n".to_vec();
    c.put_object()
        .bucket("meta")
        .key("n.md")
        .content_type("text/markdown")
        .metadata("bmsync-hash", "abc123")
        .metadata("bmsync-mode", "644")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .expect("put");

    let head = c.head_object().bucket("meta").key("n.md").send().await.expect("head");
    let meta = head.metadata().expect("metadata");
    assert_eq!(meta.get("bmsync-hash").map(String::as_str), Some("abc123"));
    assert_eq!(meta.get("bmsync-mode").map(String::as_str), Some("644"));
    assert_eq!(head.e_tag(), Some(quoted_md5(&body).as_str()));
    assert_eq!(head.content_length(), Some(8));
    assert_eq!(head.content_type(), Some("text/markdown"));
    assert!(head.last_modified().is_some());

    let got = c.get_object().bucket("meta").key("n.md").send().await.expect("get");
    assert_eq!(got.metadata().and_then(|m| m.get("bmsync-hash")).map(String::as_str), Some("abc123"));
    assert_eq!(got.e_tag(), Some(quoted_md5(&body).as_str()));
    assert_eq!(got.body.collect().await.expect("body").into_bytes(), body);
}

#[tokio::test]
async fn wrong_secret_is_denied() {
    let server = TigrisServer::start();
    let c = client(&server.endpoint(), "not-the-secret");
    let err = c.list_buckets().send().await.expect_err("bad signature");
    assert_eq!(status(&err), Some(403));
}

#[test]
fn a_set_latency_holds_every_request_back_and_requests_in_flight_wait_side_by_side() {
    let server = TigrisServer::start();
    let ep = server.endpoint();
    crate::remote_contract::create_bucket(&ep, ACCESS_KEY, SECRET_KEY, "far", false);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let c = client(&ep, SECRET_KEY);
    server.set_latency(Duration::from_millis(300));
    let started = std::time::Instant::now();
    rt.block_on(async {
        let lists: Vec<_> = (0..8).map(|_| tokio::spawn(c.list_objects_v2().bucket("far").send())).collect();
        for l in lists {
            l.await.expect("task").expect("list");
        }
    });
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "each request waits: {waited:?}");
    // Eight at once wait about once (the bound is loose: this is no timing test).
    assert!(waited < Duration::from_millis(8 * 300), "they wait side by side: {waited:?}");
    server.set_latency(Duration::ZERO);
}
