//! The one HTTP stack of `countersign run`: every listener (metrics and probes, the admission
//! webhooks, the Git receiver) serves an axum [`Router`] through [`serve`], in plain HTTP or TLS.
//!
//! One accept loop, so every endpoint gets the same protections: a client that sends no request
//! line (or no TLS handshake) within [`HANDSHAKE_TIMEOUT`] is dropped, a failed `accept` (EMFILE)
//! backs off instead of spinning, and on shutdown in-flight responses get [`SHUTDOWN_GRACE`] to
//! finish while idle keep-alive connections close at once. HTTP/1.1 and HTTP/2 are both served
//! (hyper-util's auto builder); over TLS the protocol is chosen by ALPN, as the API server does
//! when it calls a webhook.

use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, rustls::ServerConfig};

/// A client that opens a connection and sends no request line (or completes no TLS handshake)
/// within this time is dropped: a slow or stuck client must not hold a connection forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, in-flight responses get this long to finish. The whole process has the pod's
/// `terminationGracePeriodSeconds` (30 s by default) and the lease release still to do.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// After a failed `accept` (typically EMFILE: out of file descriptors), wait before the next
/// one instead of spinning on the same error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds `addr`, with an error that names what it is for, the address and why, e.g.
/// `metrics address 0.0.0.0:8080: address in use`. Bind port 0 and read `local_addr()` for an
/// ephemeral port (tests).
pub async fn bind(what: &str, addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let cause = match e.kind() {
            io::ErrorKind::AddrInUse => "address in use".to_owned(),
            io::ErrorKind::AddrNotAvailable => "no such address on this machine".to_owned(),
            io::ErrorKind::PermissionDenied => {
                "permission denied (ports below 1024 need privileges)".to_owned()
            }
            _ => e.to_string(),
        };
        io::Error::new(e.kind(), format!("{what} address {addr}: {cause}"))
    })
}

/// Serves `router` on `listener` until `shutdown` resolves; over TLS when `tls` is given (its
/// certificate resolver may change certificates at any time: each handshake asks it).
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let acceptor = tls.map(TlsAcceptor::from);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Per-connection failures must not stop a server the probes depend on.
                    tracing::warn!(server = name, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let (builder, acceptor) = (builder.clone(), acceptor.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let result = match acceptor {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => match handshake(&acceptor, stream).await {
                    Ok(tls) => {
                        let conn = builder.serve_connection(TokioIo::new(tls), service);
                        watcher.watch(conn.into_owned()).await
                    }
                    Err(e) => {
                        tracing::debug!(server = name, error = %e, "TLS handshake failed");
                        return;
                    }
                },
            };
            if let Err(e) = result {
                tracing::debug!(server = name, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            server = name,
            "connections still open after {SHUTDOWN_GRACE:?}; closing them"
        );
    }
    Ok(())
}

async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}
