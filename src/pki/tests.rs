use super::*;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{ServerName, UnixTime};
use std::os::unix::fs::PermissionsExt;

fn sans() -> Sans {
    Sans::apiserver(
        "10.43.0.1".parse().unwrap(),
        &["kube.example.test".into(), "192.0.2.7".into()],
    )
    .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(ca_pem)).unwrap();
    Arc::new(roots)
}

fn verify_server_name(pki: &Pki, name: &str) -> Result<(), rustls::Error> {
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots(pki.server_ca_pem()), provider())
        .build()
        .unwrap();
    let name = ServerName::try_from(name.to_string()).unwrap();
    verifier
        .verify_server_cert(&der(&pki.serving().cert_pem), &[], &name, &[], UnixTime::now())
        .map(|_| ())
}

fn verify_client(ca_pem: &str, cert_pem: &str) -> Result<(), rustls::Error> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca_pem), provider())
        .build()
        .unwrap();
    verifier
        .verify_client_cert(&der(cert_pem), &[], UnixTime::now())
        .map(|_| ())
}

fn subject(cert_pem: &str) -> (Vec<String>, Vec<String>) {
    let der = der(cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let o = cert
        .subject()
        .iter_organization()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    (cn, o)
}

#[test]
fn first_start_creates_every_file_with_private_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("server/tls");
    Pki::load_or_create(&dir, &sans()).unwrap();
    assert_eq!(mode(&dir), 0o700);
    for stem in [SERVER_CA, CLIENT_CA, SERVING_APISERVER, CLIENT_ADMIN] {
        assert_eq!(mode(&dir.join(format!("{stem}.key"))), 0o600, "{stem}.key");
        assert_eq!(mode(&dir.join(format!("{stem}.crt"))), 0o644, "{stem}.crt");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn restart_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let first = Pki::load_or_create(tmp.path(), &sans()).unwrap();
    let second = Pki::load_or_create(tmp.path(), &sans()).unwrap();
    assert_eq!(first.server_ca_pem(), second.server_ca_pem());
    assert_eq!(first.client_ca_pem(), second.client_ca_pem());
    assert_eq!(first.serving(), second.serving());
    assert_eq!(first.admin(), second.admin());
    assert_ne!(first.server_ca_pem(), first.client_ca_pem());
}

#[test]
fn serving_cert_verifies_for_every_wanted_name_and_no_other() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(tmp.path(), &sans()).unwrap();
    for name in [
        "127.0.0.1",
        "::1",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "10.43.0.1",
        "kube.example.test",
        "192.0.2.7",
    ] {
        verify_server_name(&pki, name).unwrap_or_else(|err| panic!("{name}: {err}"));
    }
    if let Some(hostname) = host::hostname() {
        verify_server_name(&pki, &hostname).unwrap();
    }
    for ip in host::interface_addresses() {
        verify_server_name(&pki, &ip.to_string()).unwrap_or_else(|err| panic!("{ip}: {err}"));
    }
    assert!(verify_server_name(&pki, "example.com").is_err());
    assert!(verify_server_name(&pki, "10.43.0.2").is_err());
    assert_eq!(subject(&pki.serving().cert_pem).0, ["kube-apiserver"]);
}

#[test]
fn admin_and_issued_client_certs_carry_user_and_group() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(tmp.path(), &sans()).unwrap();
    assert_eq!(
        subject(&pki.admin().cert_pem),
        (vec!["system:admin".to_string()], vec!["system:masters".to_string()])
    );
    verify_client(pki.client_ca_pem(), &pki.admin().cert_pem).unwrap();

    let kubelet = pki.issue_client_cert("system:node:pi-1", &["system:nodes"]).unwrap();
    assert_eq!(
        subject(&kubelet.cert_pem),
        (vec!["system:node:pi-1".to_string()], vec!["system:nodes".to_string()])
    );
    verify_client(pki.client_ca_pem(), &kubelet.cert_pem).unwrap();
    let proxy = pki.issue_client_cert("system:kube-proxy", &[]).unwrap();
    assert_eq!(subject(&proxy.cert_pem).1, Vec::<String>::new());

    // Client certificates are not signed by the server CA, and vice versa.
    assert!(verify_client(pki.server_ca_pem(), &pki.admin().cert_pem).is_err());

    // Go's TLS client only offers a certificate whose issuer is byte-for-byte one of
    // the CA names the server announces: the issuer must be the CA's subject as is.
    let ca_der = der(pki.client_ca_pem());
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    let leaf_der = der(&kubelet.cert_pem);
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
    assert_eq!(leaf.issuer().as_raw(), ca.subject().as_raw());

    assert!(matches!(
        pki.issue_client_cert("u", &["a", "b"]),
        Err(PkiError::TooManyGroups { .. })
    ));
    assert!(matches!(
        pki.issue_client_cert("", &[]),
        Err(PkiError::InvalidName { .. })
    ));
}

#[test]
fn persisted_client_certs_are_kept_until_the_identity_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(tmp.path(), &sans()).unwrap();
    let first = pki
        .load_or_issue_client_cert("client-kubelet", "system:node:a", &["system:nodes"])
        .unwrap();
    let again = pki
        .load_or_issue_client_cert("client-kubelet", "system:node:a", &["system:nodes"])
        .unwrap();
    assert_eq!(first, again);
    let renamed = pki
        .load_or_issue_client_cert("client-kubelet", "system:node:b", &["system:nodes"])
        .unwrap();
    assert_ne!(first, renamed);
    assert_eq!(subject(&renamed.cert_pem).0, ["system:node:b"]);
}

#[test]
fn a_new_san_reissues_only_the_serving_cert() {
    let tmp = tempfile::tempdir().unwrap();
    let first = Pki::load_or_create(tmp.path(), &sans()).unwrap();

    // Fewer names than the certificate has: still covered, nothing changes.
    let mut fewer = Sans::default();
    fewer.add("localhost").unwrap();
    let same = Pki::load_or_create(tmp.path(), &fewer).unwrap();
    assert_eq!(first.serving(), same.serving());

    let mut more = sans();
    more.add("new.example.test").unwrap();
    more.add("2001:db8::5").unwrap();
    let second = Pki::load_or_create(tmp.path(), &more).unwrap();
    assert_ne!(first.serving(), second.serving());
    assert_eq!(first.server_ca_pem(), second.server_ca_pem());
    assert_eq!(first.client_ca_pem(), second.client_ca_pem());
    assert_eq!(first.admin(), second.admin());
    verify_server_name(&second, "new.example.test").unwrap();
    verify_server_name(&second, "2001:db8::5").unwrap();
    verify_server_name(&second, "kube.example.test").unwrap();
    // And it is on disk: the next start keeps it.
    let third = Pki::load_or_create(tmp.path(), &more).unwrap();
    assert_eq!(second.serving(), third.serving());
}

#[test]
fn leaf_near_expiry_or_from_another_ca_is_reissued() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(tmp.path(), &sans()).unwrap();

    // A serving cert with 30 days left, signed by our CA.
    let leaf = Leaf::serving(sans());
    let mut params = leaf.params().unwrap();
    params.not_after = ASN1Time::from_timestamp(unix_now() + 30 * DAY).unwrap().to_datetime();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let issuer = Issuer::from_ca_cert_der(&pki.server_ca.der, &pki.server_ca.key).unwrap();
    let short = params.signed_by(&key, &issuer).unwrap();
    let (cert_path, key_path) = paths(tmp.path(), SERVING_APISERVER);
    std::fs::write(&cert_path, short.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let renewed = Pki::load_or_create(tmp.path(), &sans()).unwrap();
    assert_ne!(renewed.serving().cert_pem, short.pem());
    verify_server_name(&renewed, "localhost").unwrap();

    // A serving cert from another cluster's CA.
    let other = tempfile::tempdir().unwrap();
    let foreign = Pki::load_or_create(other.path(), &sans()).unwrap();
    std::fs::write(&cert_path, &foreign.serving().cert_pem).unwrap();
    std::fs::write(&key_path, &foreign.serving().key_pem).unwrap();
    let replaced = Pki::load_or_create(tmp.path(), &sans()).unwrap();
    assert_ne!(replaced.serving(), foreign.serving());
    verify_server_name(&replaced, "localhost").unwrap();

    // A key that does not belong to the certificate.
    std::fs::write(&key_path, &foreign.admin().key_pem).unwrap();
    let fixed = Pki::load_or_create(tmp.path(), &sans()).unwrap();
    assert_ne!(fixed.serving().key_pem, foreign.admin().key_pem);
}

#[test]
fn corrupt_or_incomplete_files_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    Pki::load_or_create(tmp.path(), &sans()).unwrap();
    let (ca_cert, ca_key) = paths(tmp.path(), SERVER_CA);
    let good_key = std::fs::read(&ca_key).unwrap();

    std::fs::write(
        &ca_key,
        "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = Pki::load_or_create(tmp.path(), &sans()).unwrap_err();
    assert!(
        matches!(err, PkiError::Corrupt { ref path, .. } if *path == ca_key),
        "{err}"
    );
    assert!(err.to_string().contains("server-ca.key"), "{err}");

    std::fs::write(&ca_key, [0xff, 0xfe, 0x00]).unwrap();
    let err = Pki::load_or_create(tmp.path(), &sans()).unwrap_err();
    assert!(
        matches!(err, PkiError::Corrupt { ref path, .. } if *path == ca_key),
        "{err}"
    );

    // Another CA's key next to our CA certificate.
    let (_, client_key) = paths(tmp.path(), CLIENT_CA);
    std::fs::copy(&client_key, &ca_key).unwrap();
    let err = Pki::load_or_create(tmp.path(), &sans()).unwrap_err();
    assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
    std::fs::write(&ca_key, &good_key).unwrap();

    let (serving_cert, _) = paths(tmp.path(), SERVING_APISERVER);
    std::fs::write(
        &serving_cert,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = Pki::load_or_create(tmp.path(), &sans()).unwrap_err();
    assert!(
        matches!(err, PkiError::Corrupt { ref path, .. } if *path == serving_cert),
        "{err}"
    );
    std::fs::write(&serving_cert, "garbage").unwrap();
    let err = Pki::load_or_create(tmp.path(), &sans()).unwrap_err();
    assert!(
        matches!(err, PkiError::Corrupt { ref path, .. } if *path == serving_cert),
        "{err}"
    );
    std::fs::remove_file(&serving_cert).unwrap();
    Pki::load_or_create(tmp.path(), &sans()).unwrap();

    std::fs::remove_file(&ca_cert).unwrap();
    let err = Pki::load_or_create(tmp.path(), &sans()).unwrap_err();
    assert!(matches!(err, PkiError::IncompleteCa { .. }), "{err}");
    assert!(err.to_string().contains("server-ca.crt"), "{err}");
}

#[test]
fn sans_accept_ips_and_dns_names_only() {
    let mut sans = Sans::default();
    sans.add("Kube.Example.TEST").unwrap();
    sans.add("*.apps.example.test").unwrap();
    sans.add(" 10.0.0.1 ").unwrap();
    sans.add("fd00::1").unwrap();
    assert!(sans.dns_names.contains("kube.example.test"));
    assert!(sans.ips.contains(&"10.0.0.1".parse::<IpAddr>().unwrap()));
    for bad in ["", "has space", "https://x", "ünicode.test"] {
        assert!(matches!(sans.add(bad), Err(PkiError::InvalidName { .. })), "{bad:?}");
    }
    let all = Sans::apiserver("10.43.0.1".parse().unwrap(), &[]).unwrap();
    assert!(all.ips.contains(&"::1".parse::<IpAddr>().unwrap()));
    assert!(all.ips.contains(&"10.43.0.1".parse::<IpAddr>().unwrap()));
    assert!(all.dns_names.contains("kubernetes.default.svc.cluster.local"));
    assert!(Sans::apiserver("10.43.0.1".parse().unwrap(), &["bad name".into()]).is_err());
}

#[test]
fn tls_config_offers_h2_and_http1() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(tmp.path(), &sans()).unwrap();
    let config = server_tls_config(&pki).unwrap();
    assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
}

#[test]
fn kubeconfig_is_written_atomically_with_the_mode_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(&tmp.path().join("tls"), &sans()).unwrap();
    let path = tmp.path().join("etc/kube/kube.yaml");
    write_kubeconfig(&path, 0o640, "https://127.0.0.1:6443", &pki).unwrap();
    assert_eq!(mode(&path), 0o640);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, kubeconfig("https://127.0.0.1:6443", &pki));
    assert!(text.contains("server: \"https://127.0.0.1:6443\"\n"));
    let ca = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pki.server_ca_pem());
    assert!(text.contains(&format!("certificate-authority-data: {ca}\n")));
    // Rewriting replaces the file and applies the new mode.
    write_kubeconfig(&path, 0o600, "https://10.0.0.5:6443", &pki).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("https://10.0.0.5:6443")
    );
}

#[test]
fn kubelet_serving_and_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(&dir.path().join("tls"), &sans()).unwrap();
    let mut node_sans = Sans::default();
    node_sans.add("node-a").unwrap();
    node_sans.add("10.1.2.3").unwrap();
    let agent = dir.path().join("agent");
    let serving = pki.kubelet_serving(&agent, "node-a", &node_sans).unwrap();
    assert_eq!(
        subject(&serving.cert_pem),
        (vec!["system:node:node-a".to_string()], vec!["system:nodes".to_string()])
    );
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots(pki.server_ca_pem()), provider())
        .build()
        .unwrap();
    let verify = |name: &str| {
        let name = ServerName::try_from(name.to_string()).unwrap();
        verifier.verify_server_cert(&der(&serving.cert_pem), &[], &name, &[], UnixTime::now())
    };
    assert!(verify("10.1.2.3").is_ok() && verify("node-a").is_ok());
    assert!(verify("node-b").is_err());
    assert_eq!(mode(&agent.join("serving-kubelet.key")), 0o600);
    // Kept across restarts; re-issued when the node gains an address.
    assert_eq!(pki.kubelet_serving(&agent, "node-a", &node_sans).unwrap(), serving);
    node_sans.add("10.1.2.4").unwrap();
    assert_ne!(pki.kubelet_serving(&agent, "node-a", &node_sans).unwrap(), serving);
    let tls = kubelet_tls_config(&serving, pki.client_ca_pem()).unwrap();
    assert_eq!(tls.alpn_protocols, vec![b"http/1.1".to_vec()]);

    let client = pki.kubelet_client().unwrap();
    assert_eq!(
        subject(&client.cert_pem),
        (vec![KUBELET_CLIENT_USER.to_string()], vec![ADMIN_GROUP.to_string()])
    );
    verify_client(pki.client_ca_pem(), &client.cert_pem).unwrap();
    assert_eq!(pki.kubelet_client().unwrap(), client, "kept in the PKI dir");
    kubelet_client_tls_config(pki.server_ca_pem(), &client).unwrap();
}
