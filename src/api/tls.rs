//! The apiserver's HTTPS listener: accept, TLS handshake (bounded in time), then
//! HTTP/1.1 or HTTP/2 on the same port (hyper-util's auto builder, with upgrades
//! for exec/attach/port-forward). Each request carries the connection's verified
//! client-certificate user (`auth::PeerCertificate`) and peer address
//! (`ConnectInfo<SocketAddr>`). On shutdown it stops accepting, asks every
//! connection to finish gracefully, and closes whatever is still open (watches)
//! after a short grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::auth::{PeerCertificate, User};

/// A client that does not complete the TLS handshake in this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/1 request headers must arrive within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connections may take to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Concurrent HTTP/2 streams per connection (kube-apiserver's default): a node's
/// kubelet multiplexes all its watches over one connection.
const MAX_CONCURRENT_STREAMS: u32 = 1000;

/// Serves `app` over TLS on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, app: Router, shutdown: CancellationToken) {
    let acceptor = TlsAcceptor::from(tls);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    let builder = Arc::new(builder);

    let mut connections = JoinSet::new();
    loop {
        let (stream, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(err) = joined {
                    tracing::error!(%err, "connection task failed");
                }
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let connection = Connection {
            acceptor: acceptor.clone(),
            builder: builder.clone(),
            app: app.clone(),
            shutdown: shutdown.clone(),
        };
        connections.spawn(connection.run(stream, remote));
    }
    drop(listener);

    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::debug!(
            open = connections.len(),
            "closing connections still open after the grace period"
        );
    }
    connections.shutdown().await;
}

struct Connection {
    acceptor: TlsAcceptor,
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    shutdown: CancellationToken,
}

impl Connection {
    async fn run(self, stream: TcpStream, remote: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let handshake = tokio::select! {
            () = self.shutdown.cancelled() => return,
            handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)) => handshake,
        };
        let stream = match handshake {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                tracing::debug!(%remote, %err, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%remote, "TLS handshake timed out");
                return;
            }
        };
        // rustls has verified any certificate presented against the client CA.
        let user = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| User::from_certificate(cert));
        let peer = PeerCertificate(user);
        let service = self.app.map_request(move |mut request: axum::http::Request<Incoming>| {
            request.extensions_mut().insert(peer.clone());
            request.extensions_mut().insert(ConnectInfo(remote));
            request
        });
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
        tokio::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = self.shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(err) = result {
            tracing::debug!(%remote, %err, "connection ended with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn shutdown_is_prompt_even_with_a_silent_client() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = crate::pki::Pki::load_or_create(tmp.path(), &crate::pki::Sans::default()).unwrap();
        let tls = crate::pki::server_tls_config(&pki).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, tls, Router::new(), shutdown.clone()));

        // Connects and never says a word: the handshake must not pin shutdown.
        let _silent = TcpStream::connect(address).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(3), server)
            .await
            .unwrap()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        assert!(
            TcpStream::connect(address).await.is_err(),
            "still accepting after shutdown"
        );
    }
}
