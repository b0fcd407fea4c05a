//! Who is asking, and may they: the apiserver's authentication and the seam for
//! authorization. Mirrors kube-apiserver's union authenticator in the order this
//! server needs: an identity the in-process client attached, then a verified client
//! certificate (CN = user, O = groups), then a static bearer token from a
//! `--token-auth-file` CSV. Authenticated users also get `system:authenticated`.
//! Without credentials a request is `system:anonymous`, which only the public
//! health and version endpoints accept; everything else answers 401 `Unauthorized`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::status::Status;

/// Group of every authenticated user.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The anonymous user and its only group.
pub const ANONYMOUS: &str = "system:anonymous";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";

/// An authenticated (or anonymous) identity, set as a request extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    /// An authenticated user: `groups` plus `system:authenticated`.
    pub fn new(name: impl Into<String>, groups: impl IntoIterator<Item = impl Into<String>>) -> User {
        let mut groups: Vec<String> = groups.into_iter().map(Into::into).filter(|g| !g.is_empty()).collect();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_string());
        }
        User {
            name: name.into(),
            groups,
        }
    }

    pub fn anonymous() -> User {
        User {
            name: ANONYMOUS.to_string(),
            groups: vec![UNAUTHENTICATED.to_string()],
        }
    }

    pub fn is_authenticated(&self) -> bool {
        self.groups.iter().any(|g| g == AUTHENTICATED)
    }

    /// The user a client certificate names (already verified by the TLS layer):
    /// CN is the name, each O a group. No CN, no user (as in Kubernetes).
    pub fn from_certificate(der: &[u8]) -> Option<User> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let name = subject.iter_common_name().next()?.as_str().ok()?;
        if name.is_empty() {
            return None;
        }
        let groups = subject.iter_organization().filter_map(|o| o.as_str().ok());
        Some(User::new(name, groups))
    }
}

/// The verified client certificate's user of the connection a request came on
/// (`None`: no certificate). The TLS server sets it on every request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCertificate(pub Option<User>);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read token file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("token file {} line {line}: {reason}", path.display())]
    Format { path: PathBuf, line: usize, reason: String },
}

/// Static bearer tokens: from a token file and registered in memory.
#[derive(Default)]
pub struct Authenticator {
    tokens: RwLock<HashMap<String, User>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.tokens.read().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("Authenticator").field("tokens", &count).finish()
    }
}

impl Authenticator {
    pub fn new() -> Authenticator {
        Authenticator::default()
    }

    /// Tokens from a kube-apiserver `--token-auth-file`: CSV lines
    /// `token,user,uid[,"group1,group2"]`. Empty tokens are skipped and of duplicate
    /// tokens the last wins, as in kube-apiserver; blank lines and `#` comments are
    /// skipped too (kube-apiserver would reject them). The uid is not kept.
    pub fn from_token_file(path: &Path) -> Result<Authenticator, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let authenticator = Authenticator::new();
        for (index, line) in text.lines().enumerate() {
            let format = |reason: String| AuthError::Format {
                path: path.to_path_buf(),
                line: index + 1,
                reason,
            };
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let record = parse_csv_line(line).map_err(|reason| format(reason.into()))?;
            if record.len() < 3 {
                return Err(format(format!(
                    "must have at least 3 columns (token, user name, user uid), found {}",
                    record.len()
                )));
            }
            if record[0].is_empty() {
                tracing::warn!(path = %path.display(), line = index + 1, "empty token in token file");
                continue;
            }
            let groups: Vec<&str> = record.get(3).map(|g| g.split(',').collect()).unwrap_or_default();
            authenticator.add_token(&record[0], User::new(&record[1], groups));
        }
        Ok(authenticator)
    }

    /// Registers (or replaces) a token.
    pub fn add_token(&self, token: impl Into<String>, user: User) {
        let mut tokens = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
        tokens.insert(token.into(), user);
    }

    pub fn user_for_token(&self, token: &str) -> Option<User> {
        self.tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }

    /// The request's user, or the 401 to answer with.
    pub fn identify<B>(&self, request: &axum::http::Request<B>) -> Result<User, Status> {
        let extensions = request.extensions();
        if let Some(user) = extensions.get::<User>() {
            return Ok(user.clone());
        }
        if let Some(PeerCertificate(Some(user))) = extensions.get::<PeerCertificate>() {
            return Ok(user.clone());
        }
        if let Some(token) = bearer_token(request.headers()) {
            return self.user_for_token(token).ok_or_else(Status::unauthorized);
        }
        if request.method() == Method::GET && is_public_path(request.uri().path()) {
            return Ok(User::anonymous());
        }
        Err(Status::unauthorized())
    }
}

/// Axum middleware: sets the `User` extension or answers 401.
/// Use with `axum::middleware::from_fn_with_state(authenticator, authenticate)`.
pub async fn authenticate(State(auth): State<Arc<Authenticator>>, mut request: Request, next: Next) -> Response {
    match auth.identify(&request) {
        Ok(user) => {
            request.extensions_mut().insert(user);
            next.run(request).await
        }
        Err(status) => status.into_response(),
    }
}

/// The token of an `Authorization: Bearer <token>` header, like client-go's
/// bearer-token authenticator reads it (scheme case-insensitive).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let mut parts = value.splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Paths anyone may GET: health checks (and their per-check sub-paths) and the
/// version, as Kubernetes' `system:public-info-viewer` role allows.
pub fn is_public_path(path: &str) -> bool {
    if path == "/version" || path == "/version/" {
        return true;
    }
    ["/healthz", "/livez", "/readyz"]
        .iter()
        .any(|base| path == *base || path.strip_prefix(base).is_some_and(|rest| rest.starts_with('/')))
}

/// One CSV record, as Go's `encoding/csv` reads it with `TrimLeadingSpace`:
/// comma-separated, fields optionally double-quoted with `""` for a quote.
fn parse_csv_line(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let mut field = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    Some('"') if chars.next_if_eq(&'"').is_some() => field.push('"'),
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("unterminated quoted field"),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("extraneous text after a quoted field"),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("bare \" in a non-quoted field"),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// Decides whether a user may do `verb` (a Kubernetes verb: get, list, watch,
/// create, update, patch, delete, deletecollection; or the lower-case HTTP method
/// for non-resource paths) on `path`. RBAC plugs in here later.
pub trait Authorizer: Send + Sync {
    fn authorize(&self, user: &User, verb: &str, path: &str) -> Result<(), Status>;
}

/// Every authenticated user may do everything; anonymous users only GET the
/// public paths.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAuthenticated;

impl Authorizer for AllowAuthenticated {
    fn authorize(&self, user: &User, verb: &str, path: &str) -> Result<(), Status> {
        if user.is_authenticated() || (verb == "get" && is_public_path(path)) {
            Ok(())
        } else {
            Err(forbidden(user, verb, path))
        }
    }
}

/// The 403 Kubernetes answers, worded as its RBAC authorizer words it:
/// `pods "x" is forbidden: User "u" cannot get resource "pods" in API group ""
/// in the namespace "default"`, or `forbidden: User "u" cannot get path "/x"`.
pub fn forbidden(user: &User, verb: &str, path: &str) -> Status {
    let who = format!("User {:?}", user.name);
    let Some(target) = ResourcePath::parse(path) else {
        return Status::forbidden(format!("forbidden: {who} cannot {verb} path {path:?}"));
    };
    let resource = match target.subresource {
        Some(sub) => format!("{}/{sub}", target.resource),
        None => target.resource.to_string(),
    };
    let scope = match target.namespace {
        Some(ns) => format!("in the namespace {ns:?}"),
        None => "at the cluster scope".to_string(),
    };
    let why = format!(
        "{who} cannot {verb} resource {resource:?} in API group {:?} {scope}",
        target.group
    );
    let what = super::status::qualified(target.resource, target.group);
    let message = match target.name {
        Some(name) => format!("{what} {name:?} is forbidden: {why}"),
        None => format!("{what} is forbidden: {why}"),
    };
    let mut status = Status::forbidden(message);
    status.details.name = target.name.unwrap_or_default().to_string();
    status.details.group = target.group.to_string();
    status.details.kind = target.resource.to_string();
    status
}

/// The parts of a resource path the 403 message names.
struct ResourcePath<'a> {
    group: &'a str,
    namespace: Option<&'a str>,
    resource: &'a str,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
}

impl<'a> ResourcePath<'a> {
    fn parse(path: &'a str) -> Option<ResourcePath<'a>> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, mut rest) = match parts.as_slice() {
            ["api", _version, rest @ ..] => ("", rest),
            ["apis", group, _version, rest @ ..] => (*group, rest),
            _ => return None,
        };
        let mut namespace = None;
        // `namespaces/<ns>/<resource>...`, but not the namespace's own subresources.
        if let ["namespaces", ns, tail @ ..] = rest
            && !tail.is_empty()
            && !matches!(tail, ["status"] | ["finalize"])
        {
            namespace = Some(*ns);
            rest = tail;
        }
        let (resource, name, subresource) = match rest {
            [resource] => (*resource, None, None),
            [resource, name] => (*resource, Some(*name), None),
            [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
            _ => return None,
        };
        Some(ResourcePath {
            group,
            namespace,
            resource,
            name,
            subresource,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn request(method: Method, path: &str) -> axum::http::Request<Body> {
        axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap()
    }

    fn with_bearer(path: &str, token: &str) -> axum::http::Request<Body> {
        let mut req = request(Method::GET, path);
        req.headers_mut()
            .insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        req
    }

    #[test]
    fn token_file_is_read_like_kube_apiserver() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("tokens.csv");
        std::fs::write(
            &path,
            "t1,alice,uid-1,\"dev,ops\"\n\
             t2, bob ,uid-2\n\
             # a comment\n\
             \n\
             ,nobody,uid-3\n\
             t3,\"quoted \"\"name\"\"\",uid-4,single\r\n\
             t1,alice2,uid-5\n",
        )
        .unwrap();
        let auth = Authenticator::from_token_file(&path).unwrap();
        // Last duplicate wins.
        assert_eq!(
            auth.user_for_token("t1").unwrap(),
            User::new("alice2", Vec::<String>::new())
        );
        let bob = auth.user_for_token("t2").unwrap();
        assert_eq!(bob.name, "bob ");
        assert_eq!(bob.groups, [AUTHENTICATED]);
        assert_eq!(
            auth.user_for_token("t3").unwrap(),
            User::new("quoted \"name\"", ["single"])
        );
        assert!(auth.user_for_token("").is_none());

        std::fs::write(&path, "t1,alice,uid,\"dev,ops\"\n").unwrap();
        let auth = Authenticator::from_token_file(&path).unwrap();
        assert_eq!(auth.user_for_token("t1").unwrap().groups, ["dev", "ops", AUTHENTICATED]);
    }

    #[test]
    fn bad_token_files_are_errors_with_the_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("tokens.csv");
        for (text, wanted) in [
            ("ok,a,1\nshort,a\n", "line 2: must have at least 3 columns"),
            ("t,\"open,1\n", "line 1: unterminated"),
            ("t,a\"b,1\n", "line 1: bare"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = Authenticator::from_token_file(&path).unwrap_err().to_string();
            assert!(err.contains(wanted), "{err}");
            assert!(err.contains("tokens.csv"), "{err}");
        }
        let err = Authenticator::from_token_file(&tmp.path().join("missing")).unwrap_err();
        assert!(matches!(err, AuthError::Read { .. }));
    }

    #[test]
    fn identity_comes_from_extension_then_certificate_then_token() {
        let auth = Authenticator::new();
        auth.add_token("secret", User::new("tok", ["g"]));

        let mut req = with_bearer("/api", "wrong");
        req.extensions_mut().insert(User::new("inproc", ["system:masters"]));
        req.extensions_mut()
            .insert(PeerCertificate(Some(User::new("cert", ["x"]))));
        assert_eq!(auth.identify(&req).unwrap().name, "inproc");

        let mut req = with_bearer("/api", "wrong");
        req.extensions_mut()
            .insert(PeerCertificate(Some(User::new("cert", ["x"]))));
        assert_eq!(auth.identify(&req).unwrap().name, "cert");

        let mut req = with_bearer("/api", "secret");
        req.extensions_mut().insert(PeerCertificate(None));
        assert_eq!(auth.identify(&req).unwrap(), User::new("tok", ["g"]));

        assert_eq!(auth.identify(&with_bearer("/api", "wrong")).unwrap_err().code, 401);
        // A wrong token is refused even where anonymous is welcome.
        assert_eq!(auth.identify(&with_bearer("/healthz", "wrong")).unwrap_err().code, 401);
        let mut req = request(Method::GET, "/api");
        req.headers_mut()
            .insert(header::AUTHORIZATION, "bearer secret".parse().unwrap());
        assert_eq!(auth.identify(&req).unwrap().name, "tok");
    }

    #[test]
    fn anonymous_only_reads_health_and_version() {
        let auth = Authenticator::new();
        for path in [
            "/healthz",
            "/livez",
            "/readyz",
            "/readyz/etcd",
            "/healthz/poststarthook/x",
            "/version",
            "/version/",
        ] {
            assert_eq!(
                auth.identify(&request(Method::GET, path)).unwrap(),
                User::anonymous(),
                "{path}"
            );
        }
        for (method, path) in [
            (Method::GET, "/"),
            (Method::GET, "/api"),
            (Method::GET, "/healthzz"),
            (Method::GET, "/versions"),
            (Method::GET, "/api/v1/namespaces"),
            (Method::POST, "/healthz"),
        ] {
            let status = auth.identify(&request(method.clone(), path)).unwrap_err();
            assert_eq!(status, Status::unauthorized(), "{method} {path}");
        }
        // Not a bearer token: treated as no credentials.
        let mut req = request(Method::GET, "/api");
        req.headers_mut()
            .insert(header::AUTHORIZATION, "Basic YTpi".parse().unwrap());
        assert_eq!(auth.identify(&req).unwrap_err().code, 401);
    }

    #[test]
    fn users_from_certificates() {
        let tmp = tempfile::tempdir().unwrap();
        let sans = crate::pki::Sans::default();
        let pki = crate::pki::Pki::load_or_create(tmp.path(), &sans).unwrap();
        let der = |pem: &str| {
            use rustls::pki_types::pem::PemObject;
            rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
        };
        assert_eq!(
            User::from_certificate(&der(&pki.admin().cert_pem)),
            Some(User::new("system:admin", ["system:masters"]))
        );
        let proxy = pki.issue_client_cert("system:kube-proxy", &[]).unwrap();
        assert_eq!(
            User::from_certificate(&der(&proxy.cert_pem)).unwrap().groups,
            [AUTHENTICATED]
        );
        assert_eq!(User::from_certificate(b"junk"), None);
    }

    #[test]
    fn allow_authenticated_forbids_anonymous_like_kubernetes() {
        let authz = AllowAuthenticated;
        let anon = User::anonymous();
        assert!(
            authz
                .authorize(&User::new("a", Vec::<String>::new()), "delete", "/api/v1/nodes/x")
                .is_ok()
        );
        assert!(authz.authorize(&anon, "get", "/readyz/etcd").is_ok());

        let status = authz.authorize(&anon, "get", "/").unwrap_err();
        assert_eq!(status.code, 403);
        assert_eq!(
            status.message,
            r#"forbidden: User "system:anonymous" cannot get path "/""#
        );

        let status = authz
            .authorize(&anon, "list", "/api/v1/namespaces/default/pods")
            .unwrap_err();
        assert_eq!(
            status.message,
            r#"pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group "" in the namespace "default""#
        );
        let status = authz
            .authorize(
                &anon,
                "get",
                "/apis/apps/v1/namespaces/kube-system/deployments/coredns/scale",
            )
            .unwrap_err();
        assert_eq!(
            status.message,
            r#"deployments.apps "coredns" is forbidden: User "system:anonymous" cannot get resource "deployments/scale" in API group "apps" in the namespace "kube-system""#
        );
        assert_eq!(
            (status.details.name.as_str(), status.details.group.as_str()),
            ("coredns", "apps")
        );
        let status = authz.authorize(&anon, "get", "/api/v1/nodes/n1").unwrap_err();
        assert_eq!(
            status.message,
            r#"nodes "n1" is forbidden: User "system:anonymous" cannot get resource "nodes" in API group "" at the cluster scope"#
        );
        let status = authz
            .authorize(&anon, "update", "/api/v1/namespaces/ns1/status")
            .unwrap_err();
        assert_eq!(
            status.message,
            r#"namespaces "ns1" is forbidden: User "system:anonymous" cannot update resource "namespaces/status" in API group "" at the cluster scope"#
        );
    }
}
