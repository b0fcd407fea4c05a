//! The cluster PKI, laid out like k3s's `server/tls`: a server CA that signs the
//! apiserver's serving certificate, a client CA that signs client certificates
//! (CN = user, O = group, as kube-apiserver's x509 authenticator reads them), and the
//! admin client certificate behind the kubeconfig. Everything is ECDSA P-256.
//!
//! Created on first start; afterwards the CAs are loaded and kept forever, while leaf
//! certificates are re-issued (by the same CA) when their names no longer cover what
//! is wanted, their key does not match, they were signed by another CA, or they expire
//! within 90 days (k3s's rotation rule). A corrupt file is an error naming the file,
//! never something silently replaced: a replaced CA would lock every client out.

mod files;
mod host;
mod kubeconfig;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

pub use host::{hostname, interface_addresses};
pub use kubeconfig::{kubeconfig, write_kubeconfig};

/// File stems (`<stem>.crt`, `<stem>.key`) inside the PKI directory.
pub const SERVER_CA: &str = "server-ca";
pub const CLIENT_CA: &str = "client-ca";
pub const SERVING_APISERVER: &str = "serving-kube-apiserver";
pub const CLIENT_ADMIN: &str = "client-admin";
/// The apiserver's client certificate towards kubelets.
pub const CLIENT_KUBELET: &str = "client-kube-apiserver-kubelet-client";
/// The kubelet's serving certificate (in the agent's directory).
pub const SERVING_KUBELET: &str = "serving-kubelet";

/// The identity the apiserver presents to kubelets (kubeadm's name for it); the
/// only client a kubelet's API accepts.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// The admin identity of the kubeconfig: all-powerful through its group.
pub const ADMIN_USER: &str = "system:admin";
pub const ADMIN_GROUP: &str = "system:masters";

/// The cluster domain the `kubernetes` Service names end in.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

const DAY: i64 = 24 * 60 * 60;
const CA_VALIDITY_DAYS: i64 = 3650;
const LEAF_VALIDITY_DAYS: i64 = 365;
/// Leaf certificates closer than this to expiry are re-issued at start (as k3s does).
const RENEW_BEFORE_DAYS: i64 = 90;
/// Certificates start this long in the past, so a node whose clock lags a little
/// still accepts them.
const BACKDATE_SECS: i64 = 60 * 60;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "{} exists but {} does not: restore it, or remove both to create a new CA (every certificate and kubeconfig issued so far then stops working)",
        present.display(), missing.display()
    )]
    IncompleteCa { present: PathBuf, missing: PathBuf },
    #[error("the private key {} does not belong to the certificate {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("invalid certificate name {value:?}: {reason}")]
    InvalidName { value: String, reason: &'static str },
    #[error("a client certificate carries at most one group (O), got {groups:?} for user {user:?}")]
    TooManyGroups { user: String, groups: Vec<String> },
    #[error("cannot issue the {what} certificate: {reason}")]
    Issue { what: String, reason: String },
    #[error("cannot build the apiserver's TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot build the client certificate verifier: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
}

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertPair")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .finish()
    }
}

/// Subject alternative names a serving certificate must carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sans {
    pub dns_names: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

impl Sans {
    /// What the apiserver must answer to: loopback, every interface address, the
    /// hostname, `localhost`, the `kubernetes` Service's names and first service IP,
    /// and the operator's `--tls-san` values (IPs or DNS names).
    pub fn apiserver(service_ip: IpAddr, tls_sans: &[String]) -> Result<Sans, PkiError> {
        let mut sans = Sans::default();
        sans.ips.insert(IpAddr::V4(Ipv4Addr::LOCALHOST));
        sans.ips.insert(IpAddr::V6(Ipv6Addr::LOCALHOST));
        sans.ips.extend(host::interface_addresses());
        sans.ips.insert(service_ip);
        for name in [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
        ] {
            sans.dns_names.insert(name.to_string());
        }
        sans.dns_names
            .insert(format!("kubernetes.default.svc.{CLUSTER_DOMAIN}"));
        if let Some(hostname) = host::hostname()
            && let Err(err) = sans.add(&hostname)
        {
            tracing::warn!(%err, "hostname left out of the apiserver certificate");
        }
        for san in tls_sans {
            sans.add(san)?;
        }
        Ok(sans)
    }

    /// What a node's kubelet must answer to: its node name, the hostname,
    /// `localhost`, loopback and every interface address of the host.
    pub fn kubelet(node_name: &str) -> Result<Sans, PkiError> {
        let mut sans = Sans::default();
        sans.ips.insert(IpAddr::V4(Ipv4Addr::LOCALHOST));
        sans.ips.insert(IpAddr::V6(Ipv6Addr::LOCALHOST));
        sans.ips.extend(host::interface_addresses());
        sans.dns_names.insert("localhost".to_string());
        if let Some(hostname) = host::hostname()
            && let Err(err) = sans.add(&hostname)
        {
            tracing::warn!(%err, "hostname left out of the kubelet certificate");
        }
        sans.add(node_name)?;
        Ok(sans)
    }

    /// Adds an IP address or a DNS name (lower-cased; `*.` wildcards allowed).
    pub fn add(&mut self, value: &str) -> Result<(), PkiError> {
        let value = value.trim();
        if let Ok(ip) = value.parse::<IpAddr>() {
            self.ips.insert(ip);
            return Ok(());
        }
        let invalid = |reason| PkiError::InvalidName {
            value: value.to_string(),
            reason,
        };
        if value.is_empty() || value.len() > 253 {
            return Err(invalid("a DNS name has 1 to 253 characters"));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '*');
        if !value.chars().all(allowed) {
            return Err(invalid("neither an IP address nor a DNS name"));
        }
        self.dns_names.insert(value.to_ascii_lowercase());
        Ok(())
    }

    fn covered_by(&self, other: &Sans) -> bool {
        self.dns_names.is_subset(&other.dns_names) && self.ips.is_subset(&other.ips)
    }

    fn of(cert: &X509Certificate<'_>) -> Sans {
        let mut sans = Sans::default();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => {
                        sans.dns_names.insert(dns.to_ascii_lowercase());
                    }
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                            sans.ips.insert(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                            sans.ips.insert(IpAddr::from(v6));
                        }
                    }
                    _ => {}
                }
            }
        }
        sans
    }
}

/// The cluster's certificate authorities and the certificates the server itself uses.
pub struct Pki {
    dir: PathBuf,
    server_ca: Authority,
    client_ca: Authority,
    serving: CertPair,
    admin: CertPair,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Pki {
    /// Loads the PKI in `dir`, creating what is missing and re-issuing the serving
    /// certificate if it does not cover `sans`.
    pub fn load_or_create(dir: &Path, sans: &Sans) -> Result<Pki, PkiError> {
        files::create_dir(dir, 0o700)?;
        let server_ca = Authority::load_or_create(dir, SERVER_CA)?;
        let client_ca = Authority::load_or_create(dir, CLIENT_CA)?;
        let serving = server_ca.load_or_issue(dir, SERVING_APISERVER, &Leaf::serving(sans.clone()))?;
        let admin = client_ca.load_or_issue(dir, CLIENT_ADMIN, &Leaf::client(ADMIN_USER, &[ADMIN_GROUP])?)?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            server_ca,
            client_ca,
            serving,
            admin,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA clients verify the apiserver with (`certificate-authority-data`).
    pub fn server_ca_pem(&self) -> &str {
        &self.server_ca.pair.cert_pem
    }

    /// The CA client certificates are verified against.
    pub fn client_ca_pem(&self) -> &str {
        &self.client_ca.pair.cert_pem
    }

    /// The apiserver's serving certificate and key.
    pub fn serving(&self) -> &CertPair {
        &self.serving
    }

    /// `system:admin` in `system:masters`: the kubeconfig's identity.
    pub fn admin(&self) -> &CertPair {
        &self.admin
    }

    /// A fresh key and client certificate (CN = `user`, O = the group, if any),
    /// signed by the client CA and valid for a year. At most one group: rcgen
    /// cannot write a subject with repeated O attributes.
    pub fn issue_client_cert(&self, user: &str, groups: &[&str]) -> Result<CertPair, PkiError> {
        self.client_ca.issue(&Leaf::client(user, groups)?)
    }

    /// Like [`Pki::issue_client_cert`], but kept as `<dir>/<stem>.crt/.key` and
    /// only re-issued when the identity changed or expiry is near.
    pub fn load_or_issue_client_cert(&self, stem: &str, user: &str, groups: &[&str]) -> Result<CertPair, PkiError> {
        self.client_ca
            .load_or_issue(&self.dir, stem, &Leaf::client(user, groups)?)
    }

    /// The apiserver's client certificate for kubelets: CN
    /// `kube-apiserver-kubelet-client`, O `system:masters`, kept in the PKI dir.
    pub fn kubelet_client(&self) -> Result<CertPair, PkiError> {
        self.load_or_issue_client_cert(CLIENT_KUBELET, KUBELET_CLIENT_USER, &[ADMIN_GROUP])
    }

    /// A kubelet's serving certificate, signed by the server CA (which the
    /// apiserver verifies kubelets with), named `system:node:<node>` in
    /// `system:nodes` as a kubelet's own CSR would be, kept as
    /// `<dir>/serving-kubelet.crt/.key` and re-issued when `sans` grow.
    pub fn kubelet_serving(&self, dir: &Path, node_name: &str, sans: &Sans) -> Result<CertPair, PkiError> {
        files::create_dir(dir, 0o700)?;
        let leaf = Leaf {
            common_name: format!("system:node:{node_name}"),
            organization: Some("system:nodes".to_string()),
            sans: sans.clone(),
            usage: ExtendedKeyUsagePurpose::ServerAuth,
        };
        self.server_ca.load_or_issue(dir, SERVING_KUBELET, &leaf)
    }
}

/// The apiserver's rustls configuration: the serving certificate, client
/// certificates verified against the client CA but optional (anonymous and
/// bearer-token clients connect too), ALPN `h2` and `http/1.1`, ring crypto.
pub fn server_tls_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let serving_path = pki.dir.join(format!("{SERVING_APISERVER}.crt"));
    let config = tls_server_config(&pki.serving, &serving_path, &pki.client_ca.pair.cert_pem)?;
    Ok(Arc::new(config))
}

/// A kubelet's rustls configuration: its serving certificate, client certificates
/// verified against `client_ca_pem` but optional at the TLS layer (so that an
/// anonymous client gets a 401 rather than a handshake failure, as from a real
/// kubelet), HTTP/1.1 only: exec, attach and port-forward upgrade the connection.
pub fn kubelet_tls_config(serving: &CertPair, client_ca_pem: &str) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let mut config = tls_server_config(serving, Path::new(SERVING_KUBELET), client_ca_pem)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The rustls client configuration the apiserver dials kubelets with: their
/// serving certificates must chain to `server_ca_pem`, and it presents `client`.
pub fn kubelet_client_tls_config(
    server_ca_pem: &str,
    client: &CertPair,
) -> Result<Arc<rustls::ClientConfig>, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(files::parse_cert(Path::new(SERVER_CA), server_ca_pem)?)?;
    let chain = vec![files::parse_cert(Path::new(CLIENT_KUBELET), &client.cert_pem)?];
    let key = PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).map_err(|err| PkiError::Corrupt {
        path: PathBuf::from(format!("{CLIENT_KUBELET}.key")),
        reason: err.to_string(),
    })?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn tls_server_config(
    serving: &CertPair,
    serving_path: &Path,
    client_ca_pem: &str,
) -> Result<rustls::ServerConfig, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(files::parse_cert(Path::new(CLIENT_CA), client_ca_pem)?)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let chain = vec![files::parse_cert(serving_path, &serving.cert_pem)?];
    let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes()).map_err(|err| PkiError::Corrupt {
        path: serving_path.with_extension("key"),
        reason: err.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A CA: its certificate (PEM and DER) and signing key.
struct Authority {
    pair: CertPair,
    der: CertificateDer<'static>,
    key: KeyPair,
}

impl Authority {
    fn load_or_create(dir: &Path, stem: &str) -> Result<Authority, PkiError> {
        let (cert_path, key_path) = paths(dir, stem);
        match (files::read(&cert_path)?, files::read(&key_path)?) {
            (Some(cert_pem), Some(key_pem)) => {
                let der = files::parse_cert(&cert_path, &cert_pem)?;
                let key = files::parse_key(&key_path, &key_pem)?;
                let (_, cert) = parse(&cert_path, &der)?;
                if cert.public_key().raw != key.subject_public_key_info().as_slice() {
                    return Err(PkiError::KeyMismatch {
                        cert: cert_path,
                        key: key_path,
                    });
                }
                if !cert.is_ca() {
                    return Err(PkiError::Corrupt {
                        path: cert_path,
                        reason: "not a CA certificate".into(),
                    });
                }
                Ok(Authority {
                    pair: CertPair { cert_pem, key_pem },
                    der,
                    key,
                })
            }
            (None, None) => Authority::create(&cert_path, &key_path, stem),
            (Some(_), None) => Err(PkiError::IncompleteCa {
                present: cert_path,
                missing: key_path,
            }),
            (None, Some(_)) => Err(PkiError::IncompleteCa {
                present: key_path,
                missing: cert_path,
            }),
        }
    }

    fn create(cert_path: &Path, key_path: &Path, stem: &str) -> Result<Authority, PkiError> {
        let failed = |err: rcgen::Error| PkiError::Issue {
            what: stem.to_string(),
            reason: err.to_string(),
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(failed)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("kube-{stem}@{}", unix_now()));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        set_validity(&mut params, CA_VALIDITY_DAYS, stem)?;
        let cert = params.self_signed(&key).map_err(failed)?;
        let pair = CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        files::write_atomic(key_path, pair.key_pem.as_bytes(), files::PRIVATE)?;
        files::write_atomic(cert_path, pair.cert_pem.as_bytes(), files::PUBLIC)?;
        tracing::info!(path = %cert_path.display(), "created certificate authority");
        Ok(Authority {
            pair,
            der: cert.der().clone(),
            key,
        })
    }

    fn issue(&self, leaf: &Leaf) -> Result<CertPair, PkiError> {
        let failed = |err: rcgen::Error| PkiError::Issue {
            what: leaf.common_name.clone(),
            reason: err.to_string(),
        };
        let issuer = Issuer::from_ca_cert_der(&self.der, &self.key).map_err(failed)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(failed)?;
        let cert = leaf.params()?.signed_by(&key, &issuer).map_err(failed)?;
        Ok(CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The leaf kept as `<stem>.crt/.key`, re-issued (and rewritten) unless it is
    /// still good for `leaf`.
    fn load_or_issue(&self, dir: &Path, stem: &str, leaf: &Leaf) -> Result<CertPair, PkiError> {
        let (cert_path, key_path) = paths(dir, stem);
        if let (Some(cert_pem), Some(key_pem)) = (files::read(&cert_path)?, files::read(&key_path)?) {
            let der = files::parse_cert(&cert_path, &cert_pem)?;
            let key = files::parse_key(&key_path, &key_pem)?;
            let (_, cert) = parse(&cert_path, &der)?;
            match self.reject(&cert, &key, leaf) {
                None => return Ok(CertPair { cert_pem, key_pem }),
                Some(why) => tracing::info!(path = %cert_path.display(), why, "re-issuing certificate"),
            }
        }
        let pair = self.issue(leaf)?;
        files::write_atomic(&key_path, pair.key_pem.as_bytes(), files::PRIVATE)?;
        files::write_atomic(&cert_path, pair.cert_pem.as_bytes(), files::PUBLIC)?;
        Ok(pair)
    }

    /// Why an existing leaf certificate cannot be kept, if it cannot.
    fn reject(&self, cert: &X509Certificate<'_>, key: &KeyPair, leaf: &Leaf) -> Option<&'static str> {
        let signed_by_us = match x509_parser::parse_x509_certificate(&self.der) {
            Ok((_, ca)) => {
                cert.issuer().as_raw() == ca.subject().as_raw() && cert.verify_signature(Some(ca.public_key())).is_ok()
            }
            Err(_) => false,
        };
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            Some("its key does not match")
        } else if !signed_by_us {
            Some("it was not signed by the current CA")
        } else if cert.validity().not_after.timestamp() - unix_now() < RENEW_BEFORE_DAYS * DAY {
            Some("it expires soon")
        } else if !leaf.matches(cert) {
            Some("the wanted names changed")
        } else {
            None
        }
    }
}

/// What a leaf certificate is for and whom it names.
struct Leaf {
    common_name: String,
    organization: Option<String>,
    sans: Sans,
    usage: ExtendedKeyUsagePurpose,
}

impl Leaf {
    fn serving(sans: Sans) -> Leaf {
        Leaf {
            common_name: "kube-apiserver".into(),
            organization: None,
            sans,
            usage: ExtendedKeyUsagePurpose::ServerAuth,
        }
    }

    fn client(user: &str, groups: &[&str]) -> Result<Leaf, PkiError> {
        if user.is_empty() {
            return Err(PkiError::InvalidName {
                value: user.into(),
                reason: "a client certificate needs a user name (CN)",
            });
        }
        if groups.len() > 1 {
            return Err(PkiError::TooManyGroups {
                user: user.into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            });
        }
        Ok(Leaf {
            common_name: user.into(),
            organization: groups.first().map(|g| g.to_string()),
            sans: Sans::default(),
            usage: ExtendedKeyUsagePurpose::ClientAuth,
        })
    }

    fn params(&self) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, self.common_name.as_str());
        if let Some(group) = &self.organization {
            params.distinguished_name.push(DnType::OrganizationName, group.as_str());
        }
        for name in &self.sans.dns_names {
            let ia5 = Ia5String::try_from(name.as_str()).map_err(|_| PkiError::InvalidName {
                value: name.clone(),
                reason: "not ASCII",
            })?;
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        for ip in &self.sans.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![self.usage.clone()];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, LEAF_VALIDITY_DAYS, &self.common_name)?;
        Ok(params)
    }

    fn matches(&self, cert: &X509Certificate<'_>) -> bool {
        let names = |attrs: Vec<&str>| attrs.into_iter().map(String::from).collect::<Vec<_>>();
        let cn = names(
            cert.subject()
                .iter_common_name()
                .filter_map(|a| a.as_str().ok())
                .collect(),
        );
        let o = names(
            cert.subject()
                .iter_organization()
                .filter_map(|a| a.as_str().ok())
                .collect(),
        );
        cn == [self.common_name.clone()]
            && o == self.organization.iter().cloned().collect::<Vec<_>>()
            && self.sans.covered_by(&Sans::of(cert))
    }
}

fn paths(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")))
}

fn parse<'a>(path: &Path, der: &'a [u8]) -> Result<(&'a [u8], X509Certificate<'a>), PkiError> {
    x509_parser::parse_x509_certificate(der).map_err(|err| PkiError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("invalid X.509 certificate: {err}"),
    })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn set_validity(params: &mut CertificateParams, days: i64, what: &str) -> Result<(), PkiError> {
    let now = unix_now();
    let at = |secs: i64| {
        ASN1Time::from_timestamp(secs)
            .map(|t| t.to_datetime())
            .map_err(|_| PkiError::Issue {
                what: what.to_string(),
                reason: format!("the system clock ({now}) is out of range"),
            })
    };
    params.not_before = at(now - BACKDATE_SECS)?;
    params.not_after = at(now + days * DAY)?;
    Ok(())
}

#[cfg(test)]
mod tests;
