//! The API objects a pod refers to (ConfigMaps, Secrets, Services, claims and
//! volumes, service account tokens), read through the node's API client when a
//! container starts or a volume is (re)written. A trait so that volume and
//! environment code can be tested with plain maps.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{Api, ListParams, PostParams};

pub type Result<T> = std::result::Result<T, kube::Error>;

#[async_trait::async_trait]
pub trait Objects: Send + Sync + 'static {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>>;
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>>;
    async fn claim(&self, namespace: &str, name: &str) -> Result<Option<PersistentVolumeClaim>>;
    async fn volume(&self, name: &str) -> Result<Option<PersistentVolume>>;
    /// The Services whose variables a pod in `namespace` gets.
    async fn services(&self, namespace: &str, links: bool) -> Result<Vec<Service>>;
    /// A bound service account token (TokenRequest) for a projected volume.
    async fn token(&self, pod: &Pod, audience: Option<String>, expiration: Option<i64>) -> Result<String>;
}

/// A namespace's Services and when they were listed.
type Cached = (std::time::Instant, Vec<Service>);

/// The real source: the node's API client.
#[derive(Clone)]
pub struct ApiObjects {
    client: kube::Client,
    /// Services change rarely; listing them for every container start of every pod
    /// would dominate the API load, so a short-lived cache.
    services: std::sync::Arc<Mutex<HashMap<String, Cached>>>,
}

impl ApiObjects {
    pub fn new(client: kube::Client) -> ApiObjects {
        ApiObjects {
            client,
            services: Default::default(),
        }
    }

    async fn namespace_services(&self, namespace: &str) -> Result<Vec<Service>> {
        const TTL: std::time::Duration = std::time::Duration::from_secs(5);
        if let Ok(cache) = self.services.lock()
            && let Some((at, list)) = cache.get(namespace)
            && at.elapsed() < TTL
        {
            return Ok(list.clone());
        }
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        let list = api.list(&ListParams::default()).await?.items;
        if let Ok(mut cache) = self.services.lock() {
            cache.insert(namespace.to_string(), (std::time::Instant::now(), list.clone()));
        }
        Ok(list)
    }
}

#[async_trait::async_trait]
impl Objects for ApiObjects {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>> {
        Api::namespaced(self.client.clone(), namespace).get_opt(name).await
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>> {
        Api::namespaced(self.client.clone(), namespace).get_opt(name).await
    }

    async fn claim(&self, namespace: &str, name: &str) -> Result<Option<PersistentVolumeClaim>> {
        Api::namespaced(self.client.clone(), namespace).get_opt(name).await
    }

    async fn volume(&self, name: &str) -> Result<Option<PersistentVolume>> {
        Api::all(self.client.clone()).get_opt(name).await
    }

    async fn services(&self, namespace: &str, links: bool) -> Result<Vec<Service>> {
        let mut out: Vec<Service> = self
            .namespace_services("default")
            .await?
            .into_iter()
            .filter(|s| links && namespace == "default" || s.metadata.name.as_deref() == Some("kubernetes"))
            .collect();
        if links && namespace != "default" {
            out.extend(self.namespace_services(namespace).await?);
        }
        Ok(out)
    }

    async fn token(&self, pod: &Pod, audience: Option<String>, expiration: Option<i64>) -> Result<String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let api: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.into_iter().collect(),
                expiration_seconds: Some(expiration.unwrap_or(3600)),
                bound_object_ref: Some(k8s_openapi::api::authentication::v1::BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };
        let response: TokenRequest = api
            .create_subresource("token", &account, &PostParams::default(), &request)
            .await?;
        Ok(response.status.map(|s| s.token).unwrap_or_default())
    }
}
