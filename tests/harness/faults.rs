//! A fault-injecting TCP proxy in front of a real registry.
//!
//! Real registries do not answer 429 or 500 or hang on demand, so this proxy forwards every
//! request to the real one unless a rule matches the request line, in which case it answers
//! the rule's status itself or holds the connection without answering. It never imitates a
//! registry's content: everything that is not a fault comes from the real registry.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// What to do with requests whose request line contains `path`.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this HTTP status with an empty body (and `Retry-After: 1` for 429).
    Status(u16),
    /// Answer 429 with `Retry-After: <seconds>`.
    TooManyRequests { retry_after_secs: u64 },
    /// Accept the request and never answer.
    Stall,
}

#[derive(Clone, Default)]
pub struct Rules(Arc<Mutex<Vec<(String, Fault)>>>, Arc<Mutex<Vec<Seen>>>);

/// A request the proxy received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: std::time::Instant,
    /// `GET /v2/… HTTP/1.1`.
    pub request_line: String,
    /// Whether a fault answered it (or held it).
    pub faulted: bool,
}

impl Rules {
    /// Requests whose request line contains `path` get `fault` (first matching rule wins).
    pub fn set(&self, path: &str, fault: Fault) {
        self.0.lock().expect("rules").push((path.to_string(), fault));
    }

    pub fn clear(&self) {
        self.0.lock().expect("rules").clear();
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.1.lock().expect("seen").clone()
    }

    fn find(&self, request_line: &str) -> Option<Fault> {
        let rules = self.0.lock().expect("rules");
        let fault = rules
            .iter()
            .find(|(p, _)| request_line.contains(p.as_str()))
            .map(|(_, f)| f.clone());
        self.1.lock().expect("seen").push(Seen {
            at: std::time::Instant::now(),
            request_line: request_line.to_string(),
            faulted: fault.is_some(),
        });
        fault
    }
}

pub struct FaultProxy {
    /// `127.0.0.1:<port>` of the proxy.
    pub host: String,
    pub rules: Rules,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FaultProxy {
    /// Listens on an ephemeral 127.0.0.1 port and forwards to `upstream` (`127.0.0.1:<port>`).
    /// The proxy runs on a thread of its own, so async and plain tests can both use it.
    pub fn start(upstream: &str) -> FaultProxy {
        let upstream: SocketAddr = upstream.parse().expect("upstream address");
        let rules = Rules::default();
        let (bound, bound_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread_rules = rules.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
                let _ = bound.send(listener.local_addr().expect("proxy addr").to_string());
                tokio::select! {
                    _ = accept_loop(listener, upstream, thread_rules) => {}
                    _ = stop_rx => {}
                }
            });
        });
        let host = bound_rx.recv().expect("proxy started");
        FaultProxy {
            host,
            rules,
            stop: Some(stop),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, rules: Rules) {
    while let Ok((client, _)) = listener.accept().await {
        tokio::spawn(serve(client, upstream, rules.clone()));
    }
}

/// One request per connection: the head is read, `Connection: close` is put in it so neither
/// side reuses the connection, then it is answered or forwarded.
async fn serve(mut client: TcpStream, upstream: SocketAddr, rules: Rules) -> std::io::Result<()> {
    let head = read_head(&mut client).await?;
    let request_line = head.lines().next().unwrap_or_default().to_string();
    match rules.find(&request_line) {
        Some(Fault::Status(code)) => {
            let retry = if code == 429 { "Retry-After: 1\r\n" } else { "" };
            let response =
                format!("HTTP/1.1 {code} Fault\r\n{retry}Content-Length: 0\r\nConnection: close\r\n\r\n");
            client.write_all(response.as_bytes()).await
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let response = format!(
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {retry_after_secs}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            client.write_all(response.as_bytes()).await
        }
        Some(Fault::Stall) => {
            // Hold the socket until the client gives up.
            let mut sink = [0u8; 1024];
            while client.read(&mut sink).await? > 0 {}
            Ok(())
        }
        None => {
            let mut server = TcpStream::connect(upstream).await?;
            server.write_all(with_connection_close(&head).as_bytes()).await?;
            tokio::io::copy_bidirectional(&mut client, &mut server)
                .await
                .map(|_| ())
        }
    }
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 || head.len() > 64 * 1024 {
            break;
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn with_connection_close(head: &str) -> String {
    let mut lines: Vec<&str> = head
        .trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n"))
}
