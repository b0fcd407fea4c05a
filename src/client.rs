//! The in-process Kubernetes client (DESIGN decision 1): a `kube::Client` whose
//! transport is the apiserver's own router, called as a tower service: no socket,
//! no TLS, no serialization beyond the JSON the API speaks anyway. Each component
//! gets its own client carrying its identity as the request's [`User`], so every
//! request goes through the same authentication, authorization and admission path
//! as kubectl's.

use axum::Router;
use tower::ServiceExt;

use crate::api::auth::User;

/// A client for `router` acting as `user`. Must be called inside the tokio
/// runtime (the client spawns its request buffer there).
pub fn in_process(router: Router, user: User) -> kube::Client {
    let service = router.map_request(move |request: axum::http::Request<kube::client::Body>| {
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(user.clone());
        axum::http::Request::from_parts(parts, axum::body::Body::new(body))
    });
    kube::Client::new(service, "default")
}

/// The identities of the control-plane components, as kube-apiserver names them.
pub mod identity {
    use crate::api::auth::User;

    pub fn scheduler() -> User {
        User::new("system:kube-scheduler", ["system:kube-scheduler"])
    }

    pub fn controller_manager() -> User {
        User::new("system:kube-controller-manager", ["system:kube-controller-manager"])
    }

    /// A node's kubelet: `system:node:<name>` in `system:nodes`.
    pub fn node(name: &str) -> User {
        User::new(format!("system:node:{name}"), ["system:nodes"])
    }
}
