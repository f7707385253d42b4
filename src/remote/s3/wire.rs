//! What travels on the wire: interceptors on the SDK's requests, error mapping and
//! object metadata.

use std::sync::{Arc, Mutex};

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use super::{META_CONTENT_ID, META_KIND, RemoteError, kind_from_meta, kind_meta};
use crate::id::ObjectId;
use crate::object::EntryKind;

/// Adds `X-Tigris-Consistent: true` to every request, so reads and conditional writes
/// go to the leader. Other S3 services ignore it.
#[derive(Debug)]
pub(super) struct Consistent;

impl Intercept for Consistent {
    fn name(&self) -> &'static str {
        "bmsync-tigris-consistent"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        context.request_mut().headers_mut().insert("X-Tigris-Consistent", "true");
        Ok(())
    }
}

/// Captures one response header of one call (e.g. `X-Tigris-Snapshot-Version`).
#[derive(Debug, Clone)]
pub(super) struct Capture {
    header: &'static str,
    value: Arc<Mutex<Option<String>>>,
}

impl Capture {
    pub(super) fn new(header: &'static str) -> Self {
        Self { header, value: Arc::default() }
    }

    pub(super) fn take(&self) -> Option<String> {
        self.value.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

impl Intercept for Capture {
    fn name(&self) -> &'static str {
        "bmsync-capture-header"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(v) = context.response().headers().get(self.header) {
            *self.value.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(v.to_owned());
        }
        Ok(())
    }
}

/// Adds `X-Tigris-Snapshot-Version: V` to a read, when it is to be read as of `V`.
pub(super) fn at_version(
    at: Option<String>,
) -> impl Fn(&mut aws_smithy_runtime_api::http::Request) + Send + Sync + 'static {
    move |r| {
        if let Some(v) = &at {
            r.headers_mut().insert("X-Tigris-Snapshot-Version", v.clone());
        }
    }
}

/// Maps an SDK failure to what the sync engine needs to know.
pub(super) fn map_err<E>(
    op: &'static str,
    key: &str,
    (bucket, endpoint): (&str, &str),
    e: &SdkError<E, HttpResponse>,
) -> RemoteError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = aws_sdk_s3::error::DisplayErrorContext(e).to_string();
    match e {
        SdkError::DispatchFailure(d) if d.is_timeout() => RemoteError::Transient { op, detail },
        SdkError::DispatchFailure(_) => RemoteError::Unreachable { endpoint: endpoint.to_owned(), detail },
        SdkError::TimeoutError(_) => {
            RemoteError::Unreachable { endpoint: endpoint.to_owned(), detail: format!("timed out: {detail}") }
        }
        SdkError::ResponseError(_) => RemoteError::Transient { op, detail },
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or_default();
            match (status, code) {
                (412, _) | (_, "PreconditionFailed" | "ConditionalRequestConflict") => {
                    RemoteError::PreconditionFailed { key: key.to_owned() }
                }
                (_, "NoSuchBucket") => {
                    RemoteError::NoSuchBucket { bucket: bucket.to_owned(), endpoint: endpoint.to_owned() }
                }
                (404, _) | (_, "NoSuchKey" | "NotFound") => RemoteError::NotFound { key: key.to_owned() },
                (
                    _,
                    "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "InvalidToken"
                    | "ExpiredToken"
                    | "NotSignedUp",
                ) => RemoteError::Credentials { op, detail: code.to_owned() },
                (401 | 403, _) | (_, "AccessDenied") => RemoteError::Permission { op, detail },
                (500..=599, _) | (_, "SlowDown" | "RequestTimeout" | "InternalError") => {
                    RemoteError::Transient { op, detail }
                }
                _ => RemoteError::Other { op, detail },
            }
        }
        _ => RemoteError::Other { op, detail },
    }
}

pub(super) fn content_from_meta(
    meta: Option<&std::collections::HashMap<String, String>>,
) -> Option<ObjectId> {
    meta.and_then(|m| m.get(META_CONTENT_ID)).and_then(|v| v.parse().ok())
}

/// bmsync's user metadata on an object it writes: the content id, and the kind where it
/// is not a plain file.
pub(super) fn object_meta(content: ObjectId, kind: EntryKind) -> std::collections::HashMap<String, String> {
    let mut m = std::collections::HashMap::from([(META_CONTENT_ID.to_owned(), content.to_hex())]);
    if let Some(k) = kind_meta(kind) {
        m.insert(META_KIND.to_owned(), k.to_owned());
    }
    m
}

pub(super) fn kind_from(meta: Option<&std::collections::HashMap<String, String>>) -> EntryKind {
    kind_from_meta(meta.and_then(|m| m.get(META_KIND)).map(String::as_str))
}
