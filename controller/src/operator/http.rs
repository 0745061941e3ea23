//! `/metrics`, `/healthz`, `/readyz`: the router of the operator's plain-HTTP listener, served
//! by the shared stack in [`crate::server`].

use std::{
    future::Future,
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Router,
    extract::State,
    http::{HeaderValue, StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::net::TcpListener;

use super::metrics::{self, Metrics};

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// What the probes report. `ready` turns true once the caches are synced and (for the leader) the
/// first sweep ran; a standby replica is ready too (it can take over).
#[derive(Clone, Default)]
pub struct Health {
    pub ready: Arc<AtomicBool>,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// Serves until `shutdown` resolves. Binding errors name the address and the cause, e.g.
/// `metrics address 0.0.0.0:8080: address in use`.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = bind(addr).await?;
    serve_listener(listener, health, metrics, shutdown).await
}

/// Binds the metrics address, with an error that says which address and why.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    crate::server::bind("metrics", addr).await
}

/// Serves on an already bound listener until `shutdown` resolves.
pub async fn serve_listener(
    listener: TcpListener,
    health: Health,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    crate::server::serve("metrics", listener, router(health, metrics), None, shutdown).await
}

/// The routes. GET (and HEAD) only; anything else is 405 with `Allow`, unknown paths 404.
pub fn router(health: Health, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        // Alive as long as this process answers: restarting would not fix anything a
        // readiness problem (an API server or registry outage) causes.
        .route("/healthz", get(|| async { text(StatusCode::OK, "ok\n") }))
        .route("/readyz", get(ready))
        .fallback(|| async {
            text(
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /healthz or /readyz\n",
            )
        })
        .with_state((health, metrics))
}

async fn scrape(State((_, metrics)): State<(Health, Arc<Metrics>)>) -> Response {
    let mut response = metrics.encode().into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE));
    response
}

async fn ready(State((health, _)): State<(Health, Arc<Metrics>)>) -> Response {
    if health.is_ready() {
        text(StatusCode::OK, "ok\n")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(CONTENT_TYPE, TEXT_PLAIN)], body).into_response()
}

#[cfg(test)]
mod tests {

    use std::time::{Duration, Instant};

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
        sync::oneshot,
        task::JoinHandle,
    };

    use super::*;

    struct Server {
        addr: SocketAddr,
        health: Health,
        metrics: Arc<Metrics>,
        stop: oneshot::Sender<()>,
        task: JoinHandle<io::Result<()>>,
    }

    async fn start() -> Server {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (health, metrics) = (Health::default(), Metrics::new());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_listener(
            listener,
            health.clone(),
            Arc::clone(&metrics),
            async move {
                let _ = stopped.await;
            },
        ));
        Server {
            addr,
            health,
            metrics,
            stop,
            task,
        }
    }

    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// One HTTP/1.1 request over a fresh TCP connection, read to the server's close.
    async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Reply {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    #[tokio::test]
    async fn metrics_are_served_as_openmetrics() {
        let server = start().await;
        server.metrics.set_workloads_by_verdict(&[("Verified", 3)]);
        let reply = request(server.addr, "GET", "/metrics").await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("content-type"),
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
        );
        assert!(
            reply
                .body
                .contains("countersign_workloads{verdict=\"Verified\"} 3\n"),
            "{}",
            reply.body
        );
        assert!(reply.body.ends_with("# EOF\n"), "{}", reply.body);
    }

    #[tokio::test]
    async fn healthz_is_ok_and_readyz_follows_health() {
        let server = start().await;
        assert_eq!(request(server.addr, "GET", "/healthz").await.status, 200);
        let not_ready = request(server.addr, "GET", "/readyz").await;
        assert_eq!((not_ready.status, not_ready.body.as_str()), (503, "not ready\n"));
        server.health.set_ready(true);
        assert_eq!(request(server.addr, "GET", "/readyz").await.status, 200);
        server.health.set_ready(false);
        assert_eq!(request(server.addr, "GET", "/readyz").await.status, 503);
        assert_eq!(request(server.addr, "GET", "/healthz").await.status, 200);
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_are_refused() {
        let server = start().await;
        assert_eq!(request(server.addr, "GET", "/").await.status, 404);
        assert_eq!(request(server.addr, "GET", "/metrics/x").await.status, 404);
        let post = request(server.addr, "POST", "/metrics").await;
        assert_eq!(post.status, 405);
        let allowed: Vec<&str> = post
            .header("allow")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .collect();
        assert_eq!(allowed, ["GET", "HEAD"]);
        let head = request(server.addr, "HEAD", "/healthz").await;
        assert_eq!((head.status, head.body.as_str()), (200, ""));
    }

    #[tokio::test]
    async fn shutdown_is_graceful_and_prompt_with_an_idle_connection_open() {
        let server = start().await;
        // A keep-alive connection that sent one request and then idles, as Prometheus does.
        let mut idle = TcpStream::connect(server.addr).await.unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = idle.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );

        let stopping = Instant::now();
        server.stop.send(()).unwrap();
        server.task.await.unwrap().unwrap();
        assert!(
            stopping.elapsed() < Duration::from_secs(2),
            "{:?}",
            stopping.elapsed()
        );
        // The idle connection was closed by the server, and nothing listens any more.
        assert_eq!(idle.read(&mut buf).await.unwrap_or(0), 0);
        assert!(TcpStream::connect(server.addr).await.is_err());
    }

    #[tokio::test]
    async fn bind_errors_name_the_address_and_the_cause() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = serve(addr, Health::default(), Metrics::new(), std::future::pending())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(err.to_string(), format!("metrics address {addr}: address in use"));
    }
}
