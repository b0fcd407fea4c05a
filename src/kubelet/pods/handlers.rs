//! The actions probes and lifecycle hooks run, all from the kubelet process as
//! upstream's `prober` and `lifecycle` packages do: exec through CRI `ExecSync`, an
//! HTTP(S) GET to the pod IP (status 200–399 is success; TLS is not verified;
//! `User-Agent: kube-probe/<minor>`), a TCP connect, a `grpc.health.v1` Check, and
//! the hook-only `sleep`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ExecAction, GRPCAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::kubelet::cri::Runtime;

/// The kubelet's version as probes announce it.
const USER_AGENT: &str = "kube-probe/1.33";

/// The result of one action: success, and what it said (for events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub success: bool,
    pub output: String,
}

impl Outcome {
    fn ok(output: impl Into<String>) -> Outcome {
        Outcome {
            success: true,
            output: output.into(),
        }
    }

    fn fail(output: impl Into<String>) -> Outcome {
        Outcome {
            success: false,
            output: output.into(),
        }
    }
}

/// Where the actions go: the container (for exec) and the pod's IP.
pub struct Target<'a> {
    pub runtime: &'a dyn Runtime,
    pub container_id: &'a str,
    pub container: &'a Container,
    pub pod_ip: Option<IpAddr>,
}

/// Runs a probe's action once with its timeout.
pub async fn probe(target: &Target<'_>, probe: &Probe) -> Outcome {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(exec) = &probe.exec {
        exec_action(target, exec, timeout).await
    } else if let Some(http) = &probe.http_get {
        http_action(target, http, timeout).await
    } else if let Some(tcp) = &probe.tcp_socket {
        tcp_action(target, tcp, timeout).await
    } else if let Some(grpc) = &probe.grpc {
        grpc_action(target, grpc, timeout).await
    } else {
        Outcome::fail("probe has no action")
    }
}

/// Runs a lifecycle hook; `timeout` bounds it (the grace period for preStop).
pub async fn hook(target: &Target<'_>, handler: &LifecycleHandler, timeout: Duration) -> Outcome {
    if let Some(exec) = &handler.exec {
        let out = exec_action(target, exec, timeout).await;
        if out.success {
            out
        } else {
            Outcome::fail(format!(
                "command {:?} exited: {}",
                exec.command.clone().unwrap_or_default(),
                out.output
            ))
        }
    } else if let Some(http) = &handler.http_get {
        http_action(target, http, timeout).await
    } else if let Some(tcp) = &handler.tcp_socket {
        tcp_action(target, tcp, timeout).await
    } else if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(timeout)).await;
        Outcome::ok("")
    } else {
        Outcome::fail("hook has no action")
    }
}

async fn exec_action(target: &Target<'_>, exec: &ExecAction, timeout: Duration) -> Outcome {
    let command = exec.command.clone().unwrap_or_default();
    if command.is_empty() {
        return Outcome::fail("exec action has no command");
    }
    match target.runtime.exec_sync(target.container_id, command, timeout).await {
        Ok(r) => {
            let mut output = String::from_utf8_lossy(&r.stdout).into_owned();
            output.push_str(&String::from_utf8_lossy(&r.stderr));
            if r.exit_code == 0 {
                Outcome::ok(output)
            } else {
                Outcome::fail(format!("command exited with {}: {}", r.exit_code, output.trim_end()))
            }
        }
        Err(e) => Outcome::fail(e.message()),
    }
}

/// A port number, or a named port of the container.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok().filter(|p| *p > 0),
        IntOrString::String(name) => match name.parse::<u16>() {
            Ok(p) => Some(p),
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok()),
        },
    }
}

fn host_of(target: &Target<'_>, host: Option<&str>) -> Option<String> {
    match host.filter(|h| !h.is_empty()) {
        Some(h) => Some(h.to_string()),
        None => target.pod_ip.map(|ip| ip.to_string()),
    }
}

async fn http_action(target: &Target<'_>, http: &HTTPGetAction, timeout: Duration) -> Outcome {
    let Some(port) = resolve_port(&http.port, target.container) else {
        return Outcome::fail(format!("invalid port {:?}", http.port));
    };
    let Some(host) = host_of(target, http.host.as_deref()) else {
        return Outcome::fail("the pod has no IP yet");
    };
    let scheme = http.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
    let mut path = http.path.clone().unwrap_or_default();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let headers: Vec<(String, String)> = http
        .http_headers
        .iter()
        .flatten()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    match tokio::time::timeout(timeout, http_get(&host, port, &path, scheme == "https", &headers)).await {
        Ok(Ok((code, body))) if (200..400).contains(&code) => Outcome::ok(body),
        Ok(Ok((code, body))) => Outcome::fail(format!("HTTP probe failed with statuscode: {code} {}", body.trim())),
        Ok(Err(e)) => Outcome::fail(format!("Get \"{scheme}://{host}:{port}{path}\": {e}")),
        Err(_) => Outcome::fail(format!(
            "Get \"{scheme}://{host}:{port}{path}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

/// One HTTP/1.1 GET; returns the status code and the start of the body.
pub async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    tls: bool,
    headers: &[(String, String)],
) -> std::io::Result<(u16, String)> {
    let addr = match host.parse::<IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, port),
        Err(_) => tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("cannot resolve {host}")))?,
    };
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let host_header = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| {
            if addr.is_ipv6() {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        });
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host_header}\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("user-agent")) {
        request.push_str(&format!("User-Agent: {USER_AGENT}\r\n"));
    }
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("accept")) {
        request.push_str("Accept: */*\r\n");
    }
    for (k, v) in headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    if tls {
        let connector = tokio_rustls::TlsConnector::from(insecure_tls()?);
        let name = match addr.ip() {
            _ if host.parse::<IpAddr>().is_err() => rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
            ip => rustls::pki_types::ServerName::IpAddress(ip.into()),
        };
        let stream = connector.connect(name, stream).await?;
        exchange(stream, request).await
    } else {
        exchange(stream, request).await
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, request: String) -> std::io::Result<(u16, String)> {
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    // Enough for the status line, the headers and the start of the body.
    while buf.len() < 10 * 1024 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() > 1024 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other("malformed HTTP response"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    Ok((status, body.chars().take(1024).collect()))
}

/// Probes do not verify the server's certificate (as upstream's `InsecureSkipVerify`).
fn insecure_tls() -> std::io::Result<Arc<rustls::ClientConfig>> {
    type Built = Result<Arc<rustls::ClientConfig>, String>;
    static CONFIG: std::sync::OnceLock<Built> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                    .with_no_client_auth(),
            ))
        })
        .clone()
        .map_err(std::io::Error::other)
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn tcp_action(target: &Target<'_>, tcp: &TCPSocketAction, timeout: Duration) -> Outcome {
    let Some(port) = resolve_port(&tcp.port, target.container) else {
        return Outcome::fail(format!("invalid port {:?}", tcp.port));
    };
    let Some(host) = host_of(target, tcp.host.as_deref()) else {
        return Outcome::fail("the pod has no IP yet");
    };
    let connect = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(_)) => Outcome::ok(""),
        Ok(Err(e)) => Outcome::fail(format!("dial tcp {host}:{port}: {e}")),
        Err(_) => Outcome::fail(format!("dial tcp {host}:{port}: i/o timeout")),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: i32 = 1;

async fn grpc_action(target: &Target<'_>, grpc: &GRPCAction, timeout: Duration) -> Outcome {
    let Some(ip) = target.pod_ip else {
        return Outcome::fail("the pod has no IP yet");
    };
    let Ok(port) = u16::try_from(grpc.port) else {
        return Outcome::fail(format!("invalid port {}", grpc.port));
    };
    let addr = std::net::SocketAddr::new(ip, port);
    let check = async {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(timeout);
        let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
        let mut client = tonic::client::Grpc::new(channel);
        client.ready().await.map_err(|e| e.to_string())?;
        let request = tonic::Request::new(HealthCheckRequest {
            service: grpc.service.clone().unwrap_or_default(),
        });
        let path = tonic::codegen::http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
        let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
        let response = client
            .unary(request, path, codec)
            .await
            .map_err(|e| e.message().to_string())?;
        Ok::<_, String>(response.into_inner().status)
    };
    match tokio::time::timeout(timeout, check).await {
        Ok(Ok(SERVING)) => Outcome::ok(""),
        Ok(Ok(status)) => Outcome::fail(format!("service unhealthy (responded with {status})")),
        Ok(Err(e)) => Outcome::fail(format!("failed to connect service {addr:?}: {e}")),
        Err(_) => Outcome::fail(format!("timeout: health rpc did not complete within {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn named_ports() {
        let c: Container = serde_json::from_value(json!({"name": "c",
            "ports": [{"name": "http", "containerPort": 8080}]}))
        .unwrap();
        assert_eq!(resolve_port(&IntOrString::String("http".into()), &c), Some(8080));
        assert_eq!(resolve_port(&IntOrString::String("81".into()), &c), Some(81));
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Some(80));
        assert_eq!(resolve_port(&IntOrString::String("nope".into()), &c), None);
        assert_eq!(resolve_port(&IntOrString::Int(70000), &c), None);
    }

    #[tokio::test]
    async fn https_probes_do_not_verify_the_certificate() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["probe.invalid".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = tls.read(&mut buf).await.unwrap();
            tls.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
            tls.shutdown().await.unwrap();
        });
        let (code, _) = http_get("127.0.0.1", port, "/", true, &[]).await.unwrap();
        assert_eq!(code, 204);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn http_get_reads_the_status() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for code in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
                assert!(req.contains("User-Agent: kube-probe/"), "{req}");
                assert!(req.contains("X-Test: 1"), "{req}");
                let body = format!("HTTP/1.1 {code}\r\nContent-Length: 2\r\n\r\nok");
                s.write_all(body.as_bytes()).await.unwrap();
            }
        });
        let headers = vec![("X-Test".to_string(), "1".to_string())];
        let (code, body) = http_get("127.0.0.1", port, "/healthz", false, &headers).await.unwrap();
        assert_eq!((code, body.as_str()), (200, "ok"));
        let (code, _) = http_get("127.0.0.1", port, "/healthz", false, &headers).await.unwrap();
        assert_eq!(code, 503);
        server.await.unwrap();
    }
}
