//! The OTLP exporter's HTTP client: the workspace's own `reqwest` (0.12, ring
//! TLS) rather than the exporter's built-in one, which would compile a second
//! `reqwest` major version into every binary.
//!
//! The SDK's batch processor exports from a thread of its own, outside tokio;
//! an async `reqwest` call needs the runtime, so each export is run as a task
//! on the runtime the client was created in, and only awaited on that thread.

use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

#[derive(Debug)]
pub(super) struct OtlpClient {
    http: reqwest::Client,
    runtime: Option<tokio::runtime::Handle>,
}

impl OtlpClient {
    /// A client whose every request (connect, send, answer) ends within
    /// `timeout`; exports run on the current tokio runtime.
    pub(super) fn new(timeout: Duration) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or("the trace exporter was set up outside a tokio runtime")?;
        let request = reqwest::Request::try_from(request)?;
        let http = self.http.clone();
        runtime
            .spawn(async move {
                let answer = http.execute(request).await?;
                let status = answer.status();
                let body = answer.bytes().await?;
                Ok::<_, HttpError>(Response::builder().status(status).body(body)?)
            })
            .await?
    }
}
