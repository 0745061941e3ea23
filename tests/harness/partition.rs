//! A TCP proxy that can cut one client off from a server, as a network partition does: while
//! cut, its open connections are dropped and new ones are accepted but never answered (packets
//! lost, not refused). Bytes are passed through untouched, so TLS runs end to end: a client
//! that reaches kube-apiserver through it verifies the API server's own certificate (issued to
//! 127.0.0.1, whatever the port).

use std::sync::Arc;

use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub struct Partition {
    /// `127.0.0.1:<port>` of the proxy.
    pub addr: String,
    /// Generation of cuts: odd while cut. Every change ends the connections of the previous one.
    state: Arc<watch::Sender<u64>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Partition {
    /// Listens on an ephemeral 127.0.0.1 port and forwards to `upstream` (`127.0.0.1:<port>`),
    /// on a thread of its own.
    pub fn start(upstream: &str) -> Partition {
        let upstream = upstream.to_string();
        let (state, _) = watch::channel(0u64);
        let state = Arc::new(state);
        let (bound, bound_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread_state = state.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("partition runtime");
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind partition");
                let _ = bound.send(listener.local_addr().expect("addr").to_string());
                tokio::select! {
                    _ = accept_loop(listener, upstream, thread_state) => {}
                    _ = stop_rx => {}
                }
            });
        });
        let addr = bound_rx.recv().expect("partition started");
        Partition {
            addr,
            state,
            stop: Some(stop),
        }
    }

    /// Cuts the client off: open connections dropped, new ones held unanswered.
    pub fn cut(&self) {
        self.state.send_modify(|g| {
            if *g % 2 == 0 {
                *g += 1;
            }
        });
    }

    /// Lets traffic through again; connections held during the cut are closed, so the client
    /// notices at once and connects again.
    pub fn heal(&self) {
        self.state.send_modify(|g| {
            if *g % 2 == 1 {
                *g += 1;
            }
        });
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: String, state: Arc<watch::Sender<u64>>) {
    while let Ok((client, _)) = listener.accept().await {
        tokio::spawn(serve(client, upstream.clone(), state.subscribe()));
    }
}

/// Forwards one connection until the generation changes (a cut or a heal), then drops both ends.
async fn serve(mut client: TcpStream, upstream: String, mut state: watch::Receiver<u64>) {
    let generation = *state.borrow_and_update();
    let changed = async move {
        let _ = state.wait_for(|g| *g != generation).await;
    };
    if generation % 2 == 1 {
        // Cut: hold the connection, reading and discarding, until healed.
        let mut sink = [0u8; 1024];
        let hold = async { while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {} };
        tokio::select! {
            () = hold => {}
            () = changed => {}
        }
        return;
    }
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        () = changed => {}
    }
}
