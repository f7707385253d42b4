//! In-process Tigris-compatible S3 server for integration tests.
//!
//! One file on purpose: it is one `s3s` service, and every handler shares the bucket
//! model and the snapshot rules, which read best together (its tests are in
//! `tigris_server_tests.rs`).
//!
//! Models the parts of Tigris that bmsync relies on: snapshot-enabled buckets
//! (`X-Tigris-*` headers), point-in-time reads at any nanosecond timestamp,
//! conditional writes, paginated listings, user metadata and multipart uploads.
//! Everything lives in memory behind one mutex, which makes every conditional
//! check-and-write atomic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::crypto::{Checksum as _, Md5};
use s3s::dto;
use s3s::dto::{ETag, ETagCondition};
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

/// Access key the server accepts.
pub const ACCESS_KEY: &str = "tigris-test-access-key";
/// Secret key the server accepts.
pub const SECRET_KEY: &str = "tigris-test-secret-key";

const ENABLE_SNAPSHOT: &str = "x-tigris-enable-snapshot";
const SNAPSHOT: &str = "x-tigris-snapshot";
const SNAPSHOT_VERSION: &str = "x-tigris-snapshot-version";
/// S3 never returns more than this many keys per listing page.
const MAX_KEYS: usize = 1000;
/// S3's lower bound for every part except the last.
const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// How the server bends S3's rules, to stand in for servers that accept conditional
/// headers and ignore them.
// Independent switches, each set by the tests of one failure.
#[allow(clippy::struct_excessive_bools)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Quirks {
    /// Ignore If-Match / If-None-Match on every write, DELETE included (as Garage and
    /// s3rver do).
    pub ignore_conditions: bool,
    /// Ignore If-Match on DELETE only (as s3s-fs does).
    pub ignore_conditional_delete: bool,
    /// Refuse every object write with `AccessDenied` (read-only credentials).
    pub deny_writes: bool,
    /// Fail every listing that starts after a key (one range of a listing cut in ranges).
    pub fail_start_after: bool,
    /// List from the start whatever `start-after` says.
    pub ignore_start_after: bool,
}

/// A running server; dropping it stops the server.
pub struct TigrisServer {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    /// Microseconds each request waits before it is answered.
    latency: Arc<AtomicU64>,
    /// Requests waiting out the latency now, and the most there have been at once.
    waiting: Arc<(AtomicU64, AtomicU64)>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Checks signatures with one key pair, counting the signed requests it sees, each
/// after the set latency.
struct CountingAuth {
    inner: SimpleAuth,
    requests: Arc<AtomicU64>,
    latency: Arc<AtomicU64>,
    waiting: Arc<(AtomicU64, AtomicU64)>,
}

#[async_trait::async_trait]
impl s3s::auth::S3Auth for CountingAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<s3s::auth::SecretKey> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let latency = self.latency.load(Ordering::SeqCst);
        if latency > 0 {
            let (now, most) = &*self.waiting;
            most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_micros(latency)).await;
            now.fetch_sub(1, Ordering::SeqCst);
        }
        self.inner.get_secret_key(access_key).await
    }
}

impl TigrisServer {
    /// Starts on 127.0.0.1:<random port> on its own thread with its own tokio runtime.
    pub fn start() -> Self {
        Self::start_with(Quirks::default())
    }

    /// Signed requests served so far (every request the SDK sends is signed).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Makes every signed request (all the SDK sends) from now on wait `latency` before
    /// it is answered, as one to a far-away endpoint does; requests in flight together
    /// wait side by side. A new connection costs nothing extra here (far away, its handshake
    /// would cost a round trip more).
    pub fn set_latency(&self, latency: Duration) {
        self.latency.store(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// The most requests that have waited out the latency at once.
    pub fn most_in_flight(&self) -> u64 {
        self.waiting.1.load(Ordering::SeqCst)
    }

    /// [`TigrisServer::start`], bending the rules as `quirks` say.
    pub fn start_with(quirks: Quirks) -> Self {
        // Bind before returning so the endpoint is connectable at once.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free local port");
        listener.set_nonblocking(true).expect("make the listener non-blocking for tokio");
        let addr = listener.local_addr().expect("listener has a local address");
        let (shutdown, stop) = tokio::sync::oneshot::channel();
        let requests = Arc::new(AtomicU64::new(0));
        let latency = Arc::new(AtomicU64::new(0));
        let waiting = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let auth = CountingAuth {
            inner: SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY),
            requests: Arc::clone(&requests),
            latency: Arc::clone(&latency),
            waiting: Arc::clone(&waiting),
        };
        let thread = std::thread::Builder::new()
            .name(format!("tigris-server-{}", addr.port()))
            .spawn(move || serve(listener, stop, quirks, auth))
            .expect("spawn the server thread");
        Self { addr, requests, latency, waiting, shutdown: Some(shutdown), thread: Some(thread) }
    }

    /// A server holding one snapshot-enabled bucket `bucket`, and its endpoint.
    pub fn with_bucket(bucket: &str) -> (Self, String) {
        let server = Self::start();
        let ep = server.endpoint();
        create_bucket(&ep, ACCESS_KEY, SECRET_KEY, bucket, true);
        (server, ep)
    }

    /// e.g. "http://127.0.0.1:PORT"
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A raw SDK client, for test setup only (creating buckets, planting odd keys).
pub fn raw_client(endpoint: &str, key: &str, secret: &str) -> (tokio::runtime::Runtime, aws_sdk_s3::Client) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(key, secret, None, None, "test"))
        .build();
    (rt, aws_sdk_s3::Client::from_conf(conf))
}

pub fn create_bucket(endpoint: &str, key: &str, secret: &str, bucket: &str, snapshots: bool) {
    let (rt, c) = raw_client(endpoint, key, secret);
    rt.block_on(
        c.create_bucket()
            .bucket(bucket)
            .customize()
            .mutate_request(move |r| {
                if snapshots {
                    r.headers_mut().insert("X-Tigris-Enable-Snapshot", "true");
                }
            })
            .send(),
    )
    .expect("create bucket");
}

impl Drop for TigrisServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The server may already be gone; nothing to stop then.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic on the server thread already failed the requests that hit it.
            let _ = thread.join();
        }
    }
}

fn serve(
    listener: std::net::TcpListener,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    quirks: Quirks,
    auth: CountingAuth,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the server runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("register the listener with tokio");
        let service = {
            let mut builder = S3ServiceBuilder::new(Tigris { quirks, ..Tigris::default() });
            builder.set_auth(auth);
            builder.build()
        };
        let http = ConnBuilder::new(TokioExecutor::new());
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    // A failed accept only loses that one connection.
                    let Ok((stream, _)) = accepted else { continue };
                    let (http, service) = (http.clone(), service.clone());
                    tokio::spawn(async move {
                        // Clients hanging up mid-request is not a server failure.
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    });
                }
                _ = &mut stop => break,
            }
        }
    });
    // Open keep-alive connections would otherwise hold the runtime up.
    runtime.shutdown_background();
}

/// Strictly increasing UNIX-nanosecond clock, so every write and snapshot has its own instant.
#[derive(Default)]
struct Clock(u64);

impl Clock {
    fn tick(&mut self) -> u64 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("system clock is after 1970");
        let now = u64::try_from(now.as_nanos()).expect("nanoseconds since 1970 fit in u64 until 2554");
        self.0 = now.max(self.0 + 1);
        self.0
    }
}

struct Object {
    data: dto::Body,
    /// MD5 hex (with "-N" for multipart), without quotes.
    etag: String,
    metadata: Option<dto::Metadata>,
    content_type: Option<String>,
    modified_ns: u64,
}

/// One point in a key's history; `None` is a deletion.
struct Revision {
    at: u64,
    object: Option<Arc<Object>>,
}

struct Snapshot {
    version: u64,
    name: Option<String>,
}

struct Bucket {
    created_ns: u64,
    snapshots_enabled: bool,
    snapshots: Vec<Snapshot>,
    /// Per-key history, oldest first. Buckets without snapshots keep only the latest revision.
    keys: BTreeMap<String, Vec<Revision>>,
}

impl Bucket {
    /// The object visible at instant `at` (or now).
    fn get(&self, key: &str, at: Option<u64>) -> Option<&Arc<Object>> {
        visible(self.keys.get(key)?, at)
    }

    fn write(&mut self, key: String, object: Option<Arc<Object>>, at: u64) {
        if self.snapshots_enabled {
            self.keys.entry(key).or_default().push(Revision { at, object });
        } else if object.is_some() {
            self.keys.insert(key, vec![Revision { at, object }]);
        } else {
            self.keys.remove(&key);
        }
    }

    /// One listing page as of `at`: keys and common prefixes after `after`, at most `max` of them.
    fn list(
        &self,
        at: Option<u64>,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max: usize,
    ) -> Page {
        let mut page = Page::default();
        if max == 0 {
            return page;
        }
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let lower = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        // Resuming after a common prefix must skip the rest of its keys.
        let mut skip = after.and_then(|after| common_prefix(after, prefix, delimiter));
        let mut last: Option<String> = None;
        for (key, history) in self.keys.range::<str, _>((lower, Bound::Unbounded)) {
            // Keys sharing a prefix are contiguous in sorted order.
            if !key.starts_with(prefix) {
                break;
            }
            if skip.as_deref().is_some_and(|cp| key.starts_with(cp)) {
                continue;
            }
            let Some(object) = visible(history, at) else { continue };
            if page.objects.len() + page.prefixes.len() == max {
                page.next = last;
                return page;
            }
            if let Some(cp) = common_prefix(key, prefix, delimiter) {
                page.prefixes.push(cp.clone());
                last = Some(cp.clone());
                skip = Some(cp);
            } else {
                page.objects.push((key.clone(), Arc::clone(object)));
                last = Some(key.clone());
            }
        }
        page
    }
}

fn visible(history: &[Revision], at: Option<u64>) -> Option<&Arc<Object>> {
    let revision = match at {
        None => history.last(),
        Some(at) => history.iter().rev().find(|r| r.at <= at),
    };
    revision?.object.as_ref()
}

/// The common prefix `key` rolls up into under `delimiter`, if any.
fn common_prefix(key: &str, prefix: &str, delimiter: Option<&str>) -> Option<String> {
    let delimiter = delimiter?;
    let rest = key.strip_prefix(prefix)?;
    let end = prefix.len() + rest.find(delimiter)? + delimiter.len();
    Some(key[..end].to_owned())
}

#[derive(Default)]
struct Page {
    objects: Vec<(String, Arc<Object>)>,
    prefixes: Vec<String>,
    /// Set when truncated: the last key or common prefix returned.
    next: Option<String>,
}

impl Page {
    fn contents(&self) -> Vec<dto::Object> {
        self.objects
            .iter()
            .map(|(key, object)| dto::Object {
                key: Some(key.clone()),
                e_tag: Some(ETag::Strong(object.etag.clone())),
                last_modified: Some(timestamp(object.modified_ns)),
                size: Some(len_i64(&object.data)),
                storage_class: Some(dto::ObjectStorageClass::from_static(dto::ObjectStorageClass::STANDARD)),
                ..Default::default()
            })
            .collect()
    }

    fn common_prefixes(&self) -> Vec<dto::CommonPrefix> {
        self.prefixes.iter().map(|p| dto::CommonPrefix { prefix: Some(p.clone()) }).collect()
    }
}

struct Part {
    data: dto::Body,
    etag: String,
}

struct Upload {
    bucket: String,
    key: String,
    initiated_ns: u64,
    metadata: Option<dto::Metadata>,
    content_type: Option<String>,
    parts: BTreeMap<i32, Part>,
}

#[derive(Default)]
struct State {
    clock: Clock,
    buckets: BTreeMap<String, Bucket>,
    uploads: BTreeMap<String, Upload>,
    next_upload: u64,
}

fn bucket<'a>(buckets: &'a BTreeMap<String, Bucket>, name: &str) -> S3Result<&'a Bucket> {
    buckets.get(name).ok_or_else(|| s3_error!(NoSuchBucket, "bucket {name} does not exist"))
}

fn bucket_mut<'a>(buckets: &'a mut BTreeMap<String, Bucket>, name: &str) -> S3Result<&'a mut Bucket> {
    buckets.get_mut(name).ok_or_else(|| s3_error!(NoSuchBucket, "bucket {name} does not exist"))
}

#[derive(Default)]
struct Tigris {
    state: Mutex<State>,
    quirks: Quirks,
}

impl Tigris {
    /// [`check_write`], unless this server ignores conditions (the quirk under test).
    fn check_write(
        &self,
        current: Option<&Object>,
        if_match: Option<&ETagCondition>,
        if_none_match: Option<&ETagCondition>,
    ) -> S3Result<()> {
        if self.quirks.ignore_conditions { Ok(()) } else { check_write(current, if_match, if_none_match) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking handler cannot leave the maps half-updated, so poison is harmless.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn header<'a, T>(req: &'a S3Request<T>, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The `X-Tigris-Snapshot-Version` instant to read at; only snapshot-enabled buckets accept it.
fn read_version(raw: Option<&str>, bucket: &Bucket) -> S3Result<Option<u64>> {
    let Some(raw) = raw else { return Ok(None) };
    if !bucket.snapshots_enabled {
        return Err(s3_error!(InvalidRequest, "snapshots are not enabled for this bucket"));
    }
    let version = raw
        .trim()
        .parse()
        .map_err(|_| s3_error!(InvalidArgument, "snapshot version must be a UNIX-nanosecond timestamp"))?;
    Ok(Some(version))
}

/// A request to take a snapshot, with its optional name.
struct TakeSnapshot {
    name: Option<String>,
}

/// Parses `true` or `true; name=NAME`; `None` when the header does not ask for a snapshot.
fn snapshot_request(value: &str) -> S3Result<Option<TakeSnapshot>> {
    let (flag, rest) = value.split_once(';').unwrap_or((value, ""));
    if !flag.trim().eq_ignore_ascii_case("true") {
        return Ok(None);
    }
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok(Some(TakeSnapshot { name: None }));
    }
    let name = rest
        .strip_prefix("name=")
        .ok_or_else(|| s3_error!(InvalidArgument, "expected `true; name=NAME` in X-Tigris-Snapshot"))?;
    Ok(Some(TakeSnapshot { name: Some(name.to_owned()) }))
}

fn etag_matches(condition: &ETagCondition, object: Option<&Object>) -> bool {
    match (condition, object) {
        (_, None) => false,
        (ETagCondition::Any, Some(_)) => true,
        (ETagCondition::ETag(etag), Some(object)) => etag.value() == object.etag,
    }
}

/// If-Match / If-None-Match for writes, evaluated under the state lock.
fn check_write(
    current: Option<&Object>,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<()> {
    if if_match.is_some_and(|c| !etag_matches(c, current)) {
        return Err(s3_error!(PreconditionFailed, "If-Match does not match the current object"));
    }
    if if_none_match.is_some_and(|c| etag_matches(c, current)) {
        return Err(s3_error!(PreconditionFailed, "If-None-Match matches the current object"));
    }
    Ok(())
}

fn check_read(
    object: &Object,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<()> {
    if if_match.is_some_and(|c| !etag_matches(c, Some(object))) {
        return Err(s3_error!(PreconditionFailed));
    }
    if if_none_match.is_some_and(|c| etag_matches(c, Some(object))) {
        return Err(s3_error!(NotModified));
    }
    Ok(())
}

async fn read_body(body: Option<dto::StreamingBlob>) -> S3Result<dto::Body> {
    let Some(blob) = body else { return Ok(dto::Body::new()) };
    s3s::Body::from(blob)
        .store_all_limited(usize::MAX)
        .await
        .map_err(|e| S3Error::with_source(S3ErrorCode::IncompleteBody, e))
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        write!(out, "{b:02x}").expect("writing to a String cannot fail");
    }
    out
}

fn timestamp(ns: u64) -> dto::Timestamp {
    (UNIX_EPOCH + Duration::from_nanos(ns)).into()
}

fn len_i64(data: &[u8]) -> i64 {
    i64::try_from(data.len()).expect("in-memory object size fits in i64")
}

/// `max-keys`-style limits: default and cap 1000, negative is an error.
fn page_size(requested: Option<i32>) -> S3Result<usize> {
    match requested {
        None => Ok(MAX_KEYS),
        Some(n) => usize::try_from(n)
            .map(|n| n.min(MAX_KEYS))
            .map_err(|_| s3_error!(InvalidArgument, "max-keys must not be negative")),
    }
}

/// Continuation tokens are opaque to clients: hex of the last returned name.
fn encode_token(marker: &str) -> String {
    hex(marker.as_bytes())
}

fn decode_token(token: &str) -> S3Result<String> {
    let invalid = || s3_error!(InvalidArgument, "invalid continuation token");
    if !token.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| token.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

#[async_trait::async_trait]
impl S3 for Tigris {
    async fn create_bucket(
        &self,
        req: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        let name = req.input.bucket.clone();
        let snapshot = header(&req, SNAPSHOT).map(snapshot_request).transpose()?.flatten();
        let enable = header(&req, ENABLE_SNAPSHOT).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let output = dto::CreateBucketOutput { location: Some(format!("/{name}")) };
        let mut state = self.state();
        let State { clock, buckets, .. } = &mut *state;

        // CreateBucket on an existing bucket with X-Tigris-Snapshot takes a snapshot.
        if let Some(TakeSnapshot { name: snapshot_name }) = snapshot {
            let bucket = bucket_mut(buckets, &name)?;
            if !bucket.snapshots_enabled {
                return Err(s3_error!(InvalidRequest, "snapshots are not enabled for bucket {name}"));
            }
            let version = clock.tick();
            bucket.snapshots.push(Snapshot { version, name: snapshot_name });
            let mut response = S3Response::new(output);
            response.headers.insert(SNAPSHOT_VERSION, version.into());
            return Ok(response);
        }
        // Re-creating fails, so snapshots cannot be enabled on an existing bucket.
        if buckets.contains_key(&name) {
            return Err(s3_error!(BucketAlreadyOwnedByYou));
        }
        let bucket = Bucket {
            created_ns: clock.tick(),
            snapshots_enabled: enable,
            snapshots: Vec::new(),
            keys: BTreeMap::new(),
        };
        buckets.insert(name, bucket);
        Ok(S3Response::new(output))
    }

    async fn head_bucket(
        &self,
        req: S3Request<dto::HeadBucketInput>,
    ) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        let state = self.state();
        let enabled = bucket(&state.buckets, &req.input.bucket)?.snapshots_enabled;
        let mut response = S3Response::new(dto::HeadBucketOutput::default());
        // Tigris documents this header as always present, "true" only for snapshot buckets.
        let value = if enabled { "true" } else { "false" };
        response.headers.insert(ENABLE_SNAPSHOT, value.parse().expect("a valid header value"));
        Ok(response)
    }

    async fn delete_bucket(
        &self,
        req: S3Request<dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        let mut state = self.state();
        let name = &req.input.bucket;
        if bucket(&state.buckets, name)?.keys.values().any(|h| visible(h, None).is_some()) {
            return Err(s3_error!(BucketNotEmpty));
        }
        state.buckets.remove(name);
        state.uploads.retain(|_, u| u.bucket != *name);
        Ok(S3Response::new(dto::DeleteBucketOutput::default()))
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<dto::GetBucketVersioningInput>,
    ) -> S3Result<S3Response<dto::GetBucketVersioningOutput>> {
        // S3's answer for a bucket whose versioning was never enabled.
        bucket(&self.state().buckets, &req.input.bucket)?;
        Ok(S3Response::new(dto::GetBucketVersioningOutput::default()))
    }

    async fn list_buckets(
        &self,
        req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        let state = self.state();
        let Some(target) = header(&req, SNAPSHOT) else {
            let buckets = state
                .buckets
                .iter()
                .filter(|(name, _)| req.input.prefix.as_ref().is_none_or(|p| name.starts_with(p.as_str())))
                .map(|(name, b)| dto::Bucket {
                    name: Some(name.clone()),
                    creation_date: Some(timestamp(b.created_ns)),
                    ..Default::default()
                })
                .collect();
            return Ok(S3Response::new(dto::ListBucketsOutput {
                buckets: Some(buckets),
                ..Default::default()
            }));
        };

        // Snapshot listing: one "bucket" per snapshot, named "VERSION" or "VERSION; name=NAME",
        // newest first (as in Tigris's example); the token is the last version returned.
        let bucket = bucket(&state.buckets, target.trim())?;
        let before = match &req.input.continuation_token {
            Some(token) => {
                token.parse::<u64>().map_err(|_| s3_error!(InvalidArgument, "invalid continuation token"))?
            }
            None => u64::MAX,
        };
        let limit = match req.input.max_buckets {
            Some(n) => usize::try_from(n).map_err(|_| s3_error!(InvalidArgument, "invalid max-buckets"))?,
            None => usize::MAX,
        };
        let mut remaining = bucket.snapshots.iter().rev().filter(|s| s.version < before).peekable();
        let mut buckets = Vec::new();
        while buckets.len() < limit {
            let Some(snapshot) = remaining.next() else { break };
            let name = match &snapshot.name {
                Some(n) => format!("{}; name={n}", snapshot.version),
                None => snapshot.version.to_string(),
            };
            buckets.push((
                snapshot.version,
                dto::Bucket {
                    name: Some(name),
                    creation_date: Some(timestamp(snapshot.version)),
                    ..Default::default()
                },
            ));
        }
        let continuation_token = match (remaining.peek(), buckets.last()) {
            (Some(_), Some((version, _))) => Some(version.to_string()),
            _ => None,
        };
        let buckets = buckets.into_iter().map(|(_, b)| b).collect();
        Ok(S3Response::new(dto::ListBucketsOutput {
            buckets: Some(buckets),
            continuation_token,
            ..Default::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        if self.quirks.deny_writes {
            return Err(s3_error!(AccessDenied, "these credentials may not write"));
        }
        let input = req.input;
        let data = read_body(input.body).await?;
        let etag = hex(&Md5::checksum(&data));
        let mut state = self.state();
        let State { clock, buckets, .. } = &mut *state;
        let bucket = bucket_mut(buckets, &input.bucket)?;
        self.check_write(
            bucket.get(&input.key, None).map(AsRef::as_ref),
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
        )?;
        let now = clock.tick();
        let object = Object {
            data,
            etag: etag.clone(),
            metadata: input.metadata,
            content_type: input.content_type,
            modified_ns: now,
        };
        bucket.write(input.key, Some(Arc::new(object)), now);
        Ok(S3Response::new(dto::PutObjectOutput { e_tag: Some(ETag::Strong(etag)), ..Default::default() }))
    }

    async fn copy_object(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        if self.quirks.deny_writes {
            return Err(s3_error!(AccessDenied, "these credentials may not write"));
        }
        let input = req.input;
        let dto::CopySource::Bucket { bucket: from_bucket, key: from_key, .. } = &input.copy_source else {
            return Err(s3_error!(NotImplemented, "only bucket/key copy sources"));
        };
        let mut state = self.state();
        let State { clock, buckets, .. } = &mut *state;
        let source = Arc::clone(
            bucket(buckets, from_bucket)?.get(from_key, None).ok_or_else(|| s3_error!(NoSuchKey))?,
        );
        if !self.quirks.ignore_conditions
            && input.copy_source_if_match.as_ref().is_some_and(|c| !etag_matches(c, Some(&source)))
        {
            return Err(s3_error!(PreconditionFailed, "x-amz-copy-source-if-match does not match"));
        }
        let dest = bucket_mut(buckets, &input.bucket)?;
        let now = clock.tick();
        // A copy is a single-part object: its ETag is the MD5 of its bytes.
        let etag = hex(&Md5::checksum(&source.data));
        let replace = input.metadata_directive.as_ref().is_some_and(|d| d.as_str() == "REPLACE");
        let object = Object {
            data: source.data.clone(),
            etag: etag.clone(),
            metadata: if replace { input.metadata } else { source.metadata.clone() },
            content_type: source.content_type.clone(),
            modified_ns: now,
        };
        dest.write(input.key, Some(Arc::new(object)), now);
        let result = dto::CopyObjectResult {
            e_tag: Some(ETag::Strong(etag)),
            last_modified: Some(timestamp(now)),
            ..Default::default()
        };
        Ok(S3Response::new(dto::CopyObjectOutput { copy_object_result: Some(result), ..Default::default() }))
    }

    async fn get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let object = {
            let state = self.state();
            let bucket = bucket(&state.buckets, &req.input.bucket)?;
            let at = read_version(header(&req, SNAPSHOT_VERSION), bucket)?;
            Arc::clone(bucket.get(&req.input.key, at).ok_or_else(|| s3_error!(NoSuchKey))?)
        };
        let input = req.input;
        check_read(&object, input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let full = u64::try_from(object.data.len()).expect("object size fits in u64");
        let (data, content_range) = match input.range {
            None => (object.data.clone(), None),
            Some(range) => {
                let range = range.check(full).map_err(|_| s3_error!(InvalidRange))?;
                let start = usize::try_from(range.start).expect("range lies within the object");
                let end = usize::try_from(range.end).expect("range lies within the object");
                let content_range = format!("bytes {}-{}/{full}", range.start, range.end - 1);
                (object.data.slice(start..end), Some(content_range))
            }
        };
        let output = dto::GetObjectOutput {
            content_length: Some(len_i64(&data)),
            body: Some(dto::StreamingBlob::from(s3s::Body::from(data))),
            content_range,
            accept_ranges: Some("bytes".to_owned()),
            content_type: Some(
                object.content_type.clone().unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
            ),
            e_tag: Some(ETag::Strong(object.etag.clone())),
            last_modified: Some(timestamp(object.modified_ns)),
            metadata: object.metadata.clone(),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    async fn head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let state = self.state();
        let bucket = bucket(&state.buckets, &req.input.bucket)?;
        let at = read_version(header(&req, SNAPSHOT_VERSION), bucket)?;
        let object = bucket.get(&req.input.key, at).ok_or_else(|| s3_error!(NoSuchKey))?;
        check_read(object, req.input.if_match.as_ref(), req.input.if_none_match.as_ref())?;
        let output = dto::HeadObjectOutput {
            content_length: Some(len_i64(&object.data)),
            accept_ranges: Some("bytes".to_owned()),
            content_type: Some(
                object.content_type.clone().unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
            ),
            e_tag: Some(ETag::Strong(object.etag.clone())),
            last_modified: Some(timestamp(object.modified_ns)),
            metadata: object.metadata.clone(),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        let input = req.input;
        let mut state = self.state();
        let State { clock, buckets, .. } = &mut *state;
        let bucket = bucket_mut(buckets, &input.bucket)?;
        let current = bucket.get(&input.key, None);
        if !(self.quirks.ignore_conditions || self.quirks.ignore_conditional_delete) {
            check_write(current.map(AsRef::as_ref), input.if_match.as_ref(), None)?;
        }
        // Deleting a missing key succeeds, as in S3, and leaves no trace in the history.
        if current.is_some() {
            bucket.write(input.key, None, clock.tick());
        }
        Ok(S3Response::new(dto::DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let input = req.input;
        let mut state = self.state();
        let State { clock, buckets, .. } = &mut *state;
        let bucket = bucket_mut(buckets, &input.bucket)?;
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for id in input.delete.objects {
            let current = bucket.get(&id.key, None);
            let stale = id.e_tag.as_ref().is_some_and(|e| current.is_none_or(|o| e.value() != o.etag));
            if stale {
                errors.push(dto::Error {
                    code: Some("PreconditionFailed".to_owned()),
                    key: Some(id.key),
                    message: Some("ETag does not match".to_owned()),
                    ..Default::default()
                });
                continue;
            }
            if current.is_some() {
                bucket.write(id.key.clone(), None, clock.tick());
            }
            deleted.push(dto::DeletedObject { key: Some(id.key), ..Default::default() });
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        Ok(S3Response::new(dto::DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        if self.quirks.fail_start_after && req.input.start_after.is_some() {
            return Err(s3_error!(InternalError, "this listing fails"));
        }
        let state = self.state();
        let bucket = bucket(&state.buckets, &req.input.bucket)?;
        let at = read_version(header(&req, SNAPSHOT_VERSION), bucket)?;
        let input = &req.input;
        let max = page_size(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let after = match &input.continuation_token {
            Some(token) => Some(decode_token(token)?),
            None if self.quirks.ignore_start_after => None,
            None => input.start_after.clone(),
        };
        let page = bucket.list(at, &prefix, input.delimiter.as_deref(), after.as_deref(), max);
        let key_count =
            i32::try_from(page.objects.len() + page.prefixes.len()).expect("a page holds at most 1000");
        Ok(S3Response::new(dto::ListObjectsV2Output {
            name: Some(input.bucket.clone()),
            prefix: Some(prefix),
            delimiter: input.delimiter.clone(),
            max_keys: Some(i32::try_from(max).expect("max-keys is at most 1000")),
            key_count: Some(key_count),
            continuation_token: input.continuation_token.clone(),
            start_after: input.start_after.clone(),
            is_truncated: Some(page.next.is_some()),
            next_continuation_token: page.next.as_deref().map(encode_token),
            contents: Some(page.contents()),
            common_prefixes: Some(page.common_prefixes()),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        let state = self.state();
        let bucket = bucket(&state.buckets, &req.input.bucket)?;
        let at = read_version(header(&req, SNAPSHOT_VERSION), bucket)?;
        let input = &req.input;
        let max = page_size(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let page = bucket.list(at, &prefix, input.delimiter.as_deref(), input.marker.as_deref(), max);
        Ok(S3Response::new(dto::ListObjectsOutput {
            name: Some(input.bucket.clone()),
            prefix: Some(prefix),
            delimiter: input.delimiter.clone(),
            marker: input.marker.clone(),
            max_keys: Some(i32::try_from(max).expect("max-keys is at most 1000")),
            is_truncated: Some(page.next.is_some()),
            next_marker: page.next.clone(),
            contents: Some(page.contents()),
            common_prefixes: Some(page.common_prefixes()),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        let input = req.input;
        let mut state = self.state();
        bucket(&state.buckets, &input.bucket)?;
        state.next_upload += 1;
        let upload_id = format!("upload-{:010}", state.next_upload);
        let upload = Upload {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            initiated_ns: state.clock.tick(),
            metadata: input.metadata,
            content_type: input.content_type,
            parts: BTreeMap::new(),
        };
        state.uploads.insert(upload_id.clone(), upload);
        Ok(S3Response::new(dto::CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        let input = req.input;
        if !(1..=10_000).contains(&input.part_number) {
            return Err(s3_error!(InvalidArgument, "part number must be between 1 and 10000"));
        }
        let data = read_body(input.body).await?;
        let etag = hex(&Md5::checksum(&data));
        let mut state = self.state();
        let upload = state
            .uploads
            .get_mut(&input.upload_id)
            .filter(|u| u.bucket == input.bucket && u.key == input.key)
            .ok_or_else(|| s3_error!(NoSuchUpload))?;
        upload.parts.insert(input.part_number, Part { data, etag: etag.clone() });
        Ok(S3Response::new(dto::UploadPartOutput { e_tag: Some(ETag::Strong(etag)), ..Default::default() }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        let input = req.input;
        let requested = input.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
        if requested.is_empty() {
            return Err(s3_error!(MalformedXML, "at least one part must be specified"));
        }
        let mut state = self.state();
        let State { clock, buckets, uploads, .. } = &mut *state;
        let upload = uploads
            .get(&input.upload_id)
            .filter(|u| u.bucket == input.bucket && u.key == input.key)
            .ok_or_else(|| s3_error!(NoSuchUpload))?;
        let bucket = bucket_mut(buckets, &input.bucket)?;

        let mut parts = Vec::with_capacity(requested.len());
        for (i, wanted) in requested.iter().enumerate() {
            let number = wanted.part_number.ok_or_else(|| s3_error!(InvalidPart, "part number missing"))?;
            if i > 0 && requested[i - 1].part_number >= Some(number) {
                return Err(s3_error!(InvalidPartOrder));
            }
            let part = upload
                .parts
                .get(&number)
                .ok_or_else(|| s3_error!(InvalidPart, "part {number} was not uploaded"))?;
            if wanted.e_tag.as_ref().is_some_and(|e| e.value() != part.etag) {
                return Err(s3_error!(InvalidPart, "part {number} has a different ETag"));
            }
            if i + 1 < requested.len() && part.data.len() < MIN_PART_SIZE {
                return Err(s3_error!(EntityTooSmall, "part {number} is smaller than 5 MiB"));
            }
            parts.push(part);
        }
        // The upload stays open on a failed precondition so the client can still abort it.
        self.check_write(
            bucket.get(&input.key, None).map(AsRef::as_ref),
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
        )?;

        let mut data = Vec::with_capacity(parts.iter().map(|p| p.data.len()).sum());
        let mut digests = Vec::with_capacity(parts.len() * 16);
        for part in &parts {
            data.extend_from_slice(&part.data);
            digests.extend_from_slice(&Md5::checksum(&part.data));
        }
        let etag = format!("{}-{}", hex(&Md5::checksum(&digests)), parts.len());
        let now = clock.tick();
        let object = Object {
            data: data.into(),
            etag: etag.clone(),
            metadata: upload.metadata.clone(),
            content_type: upload.content_type.clone(),
            modified_ns: now,
        };
        bucket.write(input.key.clone(), Some(Arc::new(object)), now);
        uploads.remove(&input.upload_id);
        Ok(S3Response::new(dto::CompleteMultipartUploadOutput {
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        let input = req.input;
        let mut state = self.state();
        let matches = state
            .uploads
            .get(&input.upload_id)
            .is_some_and(|u| u.bucket == input.bucket && u.key == input.key);
        if !matches {
            return Err(s3_error!(NoSuchUpload));
        }
        state.uploads.remove(&input.upload_id);
        Ok(S3Response::new(dto::AbortMultipartUploadOutput::default()))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        let input = req.input;
        let state = self.state();
        bucket(&state.buckets, &input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = page_size(input.max_uploads)?;
        let mut uploads: Vec<(&String, &Upload)> = state
            .uploads
            .iter()
            .filter(|(_, u)| u.bucket == input.bucket && u.key.starts_with(&prefix))
            .filter(|(id, u)| match (&input.key_marker, &input.upload_id_marker) {
                (None, _) => true,
                (Some(km), None) => u.key > *km,
                (Some(km), Some(im)) => u.key > *km || (u.key == *km && *id > im),
            })
            .collect();
        uploads.sort_by(|(ia, a), (ib, b)| (&a.key, a.initiated_ns, ia).cmp(&(&b.key, b.initiated_ns, ib)));
        let truncated = uploads.len() > max;
        uploads.truncate(max);
        let (next_key_marker, next_upload_id_marker) = match uploads.last() {
            Some((id, u)) if truncated => (Some(u.key.clone()), Some((*id).clone())),
            _ => (None, None),
        };
        let list = uploads
            .iter()
            .map(|(id, u)| dto::MultipartUpload {
                key: Some(u.key.clone()),
                upload_id: Some((*id).clone()),
                initiated: Some(timestamp(u.initiated_ns)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(dto::ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(i32::try_from(max).expect("max-uploads is at most 1000")),
            is_truncated: Some(truncated),
            next_key_marker,
            next_upload_id_marker,
            uploads: Some(list),
            ..Default::default()
        }))
    }
}
