//! Binding and serving the HTTP listener every service has.
//!
//! [`serve`] is `axum::serve` with the limits a server facing misbehaving
//! clients needs, which axum::serve does not offer:
//! - a header read timeout: a client that connects and sends nothing, or
//!   trickles its headers, or sits idle on a keep-alive connection, is
//!   disconnected after [`HttpLimits::header_read_timeout`];
//! - a request timeout: a request (body upload included) not answered
//!   within [`HttpLimits::request_timeout`] gets a JSON 408. The server
//!   stamps each request with its [`Deadline`]; the RED middleware
//!   ([`crate::http_metrics`]) enforces it, so the 408 is counted and
//!   logged like any other answer;
//! - a connection limit: past [`HttpLimits::max_connections`] open
//!   connections, new ones wait in the kernel's backlog.
//!
//! Graceful shutdown: on `shutdown` the listener closes, idle connections
//! close at once, and requests in flight finish (bounded by the request
//! timeout).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::settings::{positive, Env, SettingsError};

/// A bound listener, the router it serves and the limits it serves
/// within: what each service's application holds until it runs.
pub struct Server {
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
}

impl Server {
    /// Binds `host:port` for `router`; the error names the address.
    pub async fn bind(
        host: &str,
        port: u16,
        router: Router,
        limits: &HttpLimits,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind((host, port)).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {host}:{port}: {e}"))
        })?;
        Ok(Self {
            listener,
            router,
            limits: limits.clone(),
        })
    }

    /// The address it serves on (the port chosen when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        // A bound TCP listener always has a local address.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` completes, then lets requests in flight
    /// finish.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        serve(self.listener, self.router, &self.limits, shutdown).await
    }
}

/// What one client may hold of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// `HTTP_HEADER_READ_TIMEOUT_MS` (default 10000): from connecting, or
    /// from the end of the last response, to a complete request head.
    pub header_read_timeout: Duration,
    /// `HTTP_REQUEST_TIMEOUT_MS` (default 30000): from a complete request
    /// head to the response, the body's upload included.
    pub request_timeout: Duration,
    /// `HTTP_MAX_CONNECTIONS` (default 1024): connections served at once.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

impl HttpLimits {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let d = Self::default();
        Ok(Self {
            header_read_timeout: Duration::from_millis(env.checked(
                "HTTP_HEADER_READ_TIMEOUT_MS",
                d.header_read_timeout.as_millis() as u64,
                positive,
            )?),
            request_timeout: Duration::from_millis(env.checked(
                "HTTP_REQUEST_TIMEOUT_MS",
                d.request_timeout.as_millis() as u64,
                positive,
            )?),
            max_connections: env.checked("HTTP_MAX_CONNECTIONS", d.max_connections, positive)?,
        })
    }
}

/// When a request must be answered by: set by [`serve`] as the request
/// arrives, enforced by the RED middleware.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub at: tokio::time::Instant,
    pub timeout: Duration,
}

async fn stamp(State(timeout): State<Duration>, mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(Deadline {
        at: tokio::time::Instant::now() + timeout,
        timeout,
    });
    next.run(req).await
}

/// The answer to a request past its deadline.
pub fn timed_out(deadline: Deadline) -> Response {
    ApiError::new(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        format!("request not completed within {:?}", deadline.timeout),
    )
    .into_response()
}

/// Serves `router` on `listener` within `limits` until `shutdown`
/// completes, then lets requests in flight finish.
async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router.layer(middleware::from_fn_with_state(
        limits.request_timeout,
        stamp,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Per-connection errors (reset before accept) and
                    // running out of descriptors: log, breathe, go on.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Timeouts and clients that go away: theirs, not ours.
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
