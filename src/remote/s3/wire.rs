//! What travels on the wire: interceptors on the SDK's requests, error mapping and
//! object metadata.

use std::sync::{Arc, Mutex};

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
    BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use super::{META_CONTENT_ID, META_KIND, RemoteError, kind_from_meta, kind_meta};
use crate::id::ObjectId;
use crate::object::EntryKind;

/// Adds `X-Tigris-Consistent: true` to every request, so reads and conditional writes
/// go to the leader (other S3 services ignore it), and logs each retry the SDK makes.
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

    fn read_before_attempt(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let attempt = cfg.load::<RequestAttempts>().map_or(1, RequestAttempts::attempts);
        if attempt > 1 {
            // The path only: a query string could hold a signature.
            let r = context.request();
            let path = r.uri().split('?').next().unwrap_or_default();
            tracing::info!(target: "bmsync::remote", "retrying {} {path} (attempt {attempt})", r.method());
        }
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

/// Maps an SDK failure to what the sync engine needs to know, in one line a person can
/// act on. The SDK's whole error chain goes to the log (`-vv`), not into the message.
pub(super) fn map_err<E>(
    op: &'static str,
    key: &str,
    (bucket, endpoint): (&str, &str),
    e: &SdkError<E, HttpResponse>,
) -> RemoteError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let full = aws_sdk_s3::error::DisplayErrorContext(e).to_string();
    tracing::debug!(target: "bmsync::remote", "{op} {key:?}: {full}");
    let unreachable =
        |detail: &str| RemoteError::Unreachable { endpoint: endpoint.to_owned(), detail: detail.to_owned() };
    match e {
        SdkError::DispatchFailure(d) if d.is_timeout() => unreachable("no answer in time (timed out)"),
        SdkError::DispatchFailure(_) => dispatch_failure(&full, endpoint),
        SdkError::TimeoutError(_) => unreachable("no answer in time (timed out)"),
        SdkError::ResponseError(_) => RemoteError::Transient {
            op,
            detail: "the answer could not be read (a broken connection?)".to_owned(),
        },
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or_default();
            let said = || {
                let msg = s.err().message().unwrap_or_default();
                let code =
                    if code.is_empty() { format!("HTTP {status}") } else { format!("{code}, HTTP {status}") };
                if msg.is_empty() { code } else { format!("{msg} ({code})") }
            };
            match (status, code) {
                (412, _) | (_, "PreconditionFailed" | "ConditionalRequestConflict") => {
                    RemoteError::PreconditionFailed { key: key.to_owned() }
                }
                (_, "NoSuchBucket") => {
                    RemoteError::NoSuchBucket { bucket: bucket.to_owned(), endpoint: endpoint.to_owned() }
                }
                (404, _) | (_, "NoSuchKey" | "NotFound") => RemoteError::NotFound { key: key.to_owned() },
                (301, _)
                | (
                    _,
                    "PermanentRedirect"
                    | "AuthorizationHeaderMalformed"
                    | "IllegalLocationConstraintException",
                ) => {
                    let region = s.raw().headers().get("x-amz-bucket-region").map(ToOwned::to_owned);
                    RemoteError::WrongRegion { bucket: bucket.to_owned(), region }
                }
                (
                    _,
                    "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "InvalidToken"
                    | "ExpiredToken"
                    | "NotSignedUp",
                ) => RemoteError::Credentials { op, detail: code.to_owned() },
                (401 | 403, _) | (_, "AccessDenied") => RemoteError::Permission { op, detail: said() },
                (429 | 503, _) | (_, "SlowDown" | "Throttling" | "TooManyRequests") => {
                    RemoteError::Transient {
                        op,
                        detail: format!("the remote is throttling requests, even after retries ({})", said()),
                    }
                }
                (500..=599, _) | (_, "RequestTimeout" | "InternalError") => {
                    RemoteError::Transient { op, detail: format!("the server failed ({})", said()) }
                }
                _ => RemoteError::Other { op, detail: said() },
            }
        }
        _ => RemoteError::Other { op, detail: "the request could not be made".to_owned() },
    }
}

/// A request that never got an answer, by what its error chain says.
fn dispatch_failure(full: &str, endpoint: &str) -> RemoteError {
    let has = |needles: &[&str]| needles.iter().any(|n| full.contains(n));
    if has(&["loading credentials", "no credentials", "CredentialsNotLoaded", "credentials provider"]) {
        return RemoteError::NoCredentials { endpoint: endpoint.to_owned() };
    }
    let detail = if has(&["onnection refused"]) {
        "connection refused (is the server running, and is the port right?)"
    } else if has(&[
        "dns error",
        "failed to lookup address",
        "Name or service not known",
        "nodename nor servname",
    ]) {
        "the host name does not resolve (DNS)"
    } else if has(&["certificate", "tls", "TLS", "InvalidContentType", "HandshakeFailure"]) {
        "the TLS handshake failed (an untrusted certificate, or http:// meant?)"
    } else if has(&["timed out", "Timeout"]) {
        "no answer in time (timed out)"
    } else if has(&["onnection reset", "broken pipe", "Broken pipe"]) {
        "the connection was dropped"
    } else {
        "the connection failed"
    };
    RemoteError::Unreachable { endpoint: endpoint.to_owned(), detail: detail.to_owned() }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_connection_is_said_in_words() {
        let cases = [
            (
                "dispatch failure: io error: client error (Connect): tcp connect error: Connection refused (os error 111)",
                "connection refused",
            ),
            (
                "dispatch failure: io error: dns error: failed to lookup address information: Name or service not known",
                "does not resolve",
            ),
            ("dispatch failure: io error: invalid peer certificate: UnknownIssuer", "TLS handshake failed"),
            ("dispatch failure: timeout: operation timed out", "no answer in time"),
            ("dispatch failure: io error: Connection reset by peer (os error 104)", "dropped"),
            ("dispatch failure: other: something new", "the connection failed"),
        ];
        for (chain, words) in cases {
            let e = dispatch_failure(chain, "https://t3.storage.dev");
            assert!(matches!(e, RemoteError::Unreachable { .. }), "{chain}: {e:?}");
            let said = e.to_string();
            assert!(
                said.starts_with("cannot reach https://t3.storage.dev: ") && said.contains(words),
                "{chain}: {said}"
            );
        }
        let e = dispatch_failure(
            "dispatch failure: other: an error occurred while loading credentials: no credentials in the chain",
            "AWS S3",
        );
        assert!(matches!(e, RemoteError::NoCredentials { .. }), "{e:?}");
    }
}
