//! Forwarding one HTTP request to an upstream over a connection the caller opened
//! (TLS to a node's kubelet, TCP to containerd's CRI streaming server), the way
//! Kubernetes' `UpgradeAwareHandler` proxies `exec`, `attach`, `portforward` and
//! `log`: ordinary responses come back as they are, body streamed (a followed log
//! flows as it is written); when the upstream switches protocols (SPDY/3.1 or
//! WebSocket), the caller's client gets the same 101 and the two upgraded
//! connections are spliced byte for byte until both sides have closed. Nothing is
//! interpreted, so every stream protocol the runtime speaks reaches the client,
//! and an upgrade the runtime refuses reaches it as the refusal (kubectl then
//! falls back from WebSocket to SPDY).

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("invalid upstream request: {0}")]
    Request(#[from] axum::http::Error),
    #[error("no response within {0:?}")]
    Timeout(std::time::Duration),
}

/// How long an upstream may take to answer (its response head; a body or an
/// upgraded stream may then last as long as it likes).
const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Headers that describe one connection, never forwarded as they are (RFC 9110
/// §7.6.1); an upgrade's `Connection`/`Upgrade` pair is set again explicitly.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether a request asks to switch protocols (`Connection: Upgrade` plus `Upgrade`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade && headers.contains_key(header::UPGRADE)
}

/// Whether a request is a WebSocket handshake.
pub fn is_websocket(headers: &HeaderMap) -> bool {
    is_upgrade(headers)
        && headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// The request to send upstream.
pub struct Upstream<'a> {
    pub method: Method,
    /// Path and query on the upstream server.
    pub path_and_query: &'a str,
    /// The `Host` header.
    pub host: &'a str,
    /// The client's headers (hop-by-hop ones are dropped, `Authorization` too:
    /// the upstream authenticates the connection, not the client's credentials).
    pub headers: &'a HeaderMap,
    pub body: Body,
    /// The client connection's pending upgrade, when the client asked for one.
    pub upgrade: Option<OnUpgrade>,
}

/// Sends `request` over `io` (an HTTP/1.1 connection used for this request only)
/// and returns the upstream's response for the client.
pub async fn forward<IO>(io: IO, request: Upstream<'_>) -> Result<Response<Body>, ForwardError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(io)).await?;
    // The connection task lives exactly as long as this request: it ends when the
    // response body is consumed or dropped, or hands the socket over on upgrade.
    tokio::spawn(async move {
        if let Err(err) = connection.with_upgrades().await {
            tracing::debug!(%err, "upstream connection ended with an error");
        }
    });

    let upgrade = request.upgrade.filter(|_| is_upgrade(request.headers));
    let mut builder = Request::builder().method(request.method).uri(request.path_and_query);
    for (name, value) in request.headers {
        if !HOP_BY_HOP.contains(name) && name != header::HOST && name != header::AUTHORIZATION {
            builder = builder.header(name, value);
        }
    }
    builder = builder.header(header::HOST, request.host);
    if upgrade.is_some() {
        builder = builder.header(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        for value in request.headers.get_all(header::UPGRADE) {
            builder = builder.header(header::UPGRADE, value);
        }
    }
    let mut response = tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(builder.body(request.body)?))
        .await
        .map_err(|_| ForwardError::Timeout(RESPONSE_TIMEOUT))??;

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client) = upgrade else {
            // The upstream switched protocols although the client never asked to.
            return Ok(Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Body::from("upstream switched protocols unasked"))?);
        };
        let upstream = hyper::upgrade::on(&mut response);
        // The splice lives as long as the stream: until both sides have closed.
        tokio::spawn(async move {
            match tokio::try_join!(client, upstream) {
                Ok((client, upstream)) => {
                    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                    if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                        tracing::debug!(%err, "upgraded stream ended with an error");
                    }
                }
                Err(err) => tracing::debug!(%err, "upgrade failed"),
            }
        });
        let mut switching = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (name, value) in response.headers() {
            if !HOP_BY_HOP.contains(name) {
                switching = switching.header(name, value);
            }
        }
        switching = switching.header(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        for value in response.headers().get_all(header::UPGRADE) {
            switching = switching.header(header::UPGRADE, value);
        }
        return Ok(switching.body(Body::empty())?);
    }

    let (mut parts, body) = response.into_parts();
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_detection() {
        let mut headers = HeaderMap::new();
        assert!(!is_upgrade(&headers));
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert!(!is_upgrade(&headers), "no Upgrade header");
        headers.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(is_upgrade(&headers));
        assert!(!is_websocket(&headers));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_websocket(&headers));
    }

    /// A plain response and an upgraded echo through `forward`, against a tiny
    /// upstream written by hand.
    #[tokio::test]
    async fn forwards_plain_responses_and_splices_upgrades() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        // Upstream: answers one request with a body, and an upgrade request with
        // 101 followed by an echo of what it then receives.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let upstream = tokio::spawn(async move {
            for _ in 0..2 {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8; 1];
                    socket.read_exact(&mut byte).await.unwrap();
                    head.push(byte[0]);
                }
                let head = String::from_utf8(head).unwrap();
                if head.to_ascii_lowercase().contains("upgrade: spdy/3.1") {
                    assert!(head.contains("x-stream-protocol-version: v4.channel.k8s.io"), "{head}");
                    socket
                        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n")
                        .await
                        .unwrap();
                    let mut buf = [0u8; 5];
                    socket.read_exact(&mut buf).await.unwrap();
                    socket.write_all(&buf).await.unwrap();
                } else {
                    assert!(
                        head.starts_with("GET /containerLogs/a/b/c?follow=true HTTP/1.1"),
                        "{head}"
                    );
                    assert!(!head.to_ascii_lowercase().contains("authorization"), "{head}");
                    socket
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\nnope!")
                        .await
                        .unwrap();
                }
            }
        });

        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer secret"));
        let io = tokio::net::TcpStream::connect(address).await.unwrap();
        let response = forward(
            io,
            Upstream {
                method: Method::GET,
                path_and_query: "/containerLogs/a/b/c?follow=true",
                host: "node",
                headers: &headers,
                body: Body::empty(),
                upgrade: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), 100).await.unwrap();
        assert_eq!(&body[..], b"nope!");

        // The client side of the upgrade: a real hyper server in front of `forward`.
        let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_address = front.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = front.accept().await.unwrap();
            let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| async move {
                let upgrade = request.extensions_mut().remove::<OnUpgrade>();
                let io = tokio::net::TcpStream::connect(address).await.unwrap();
                let headers = request.headers().clone();
                forward(
                    io,
                    Upstream {
                        method: request.method().clone(),
                        path_and_query: "/exec/token",
                        host: "127.0.0.1",
                        headers: &headers,
                        body: Body::empty(),
                        upgrade,
                    },
                )
                .await
            });
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .with_upgrades()
                .await
                .unwrap();
        });
        let mut client = tokio::net::TcpStream::connect(front_address).await.unwrap();
        client
            .write_all(b"POST /exec HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            client.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(head.contains("x-stream-protocol-version: v4.channel.k8s.io"), "{head}");
        client.write_all(b"hello").await.unwrap();
        let mut echo = [0u8; 5];
        client.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"hello");
        drop(client);
        upstream.await.unwrap();
        server.await.unwrap();
    }
}
