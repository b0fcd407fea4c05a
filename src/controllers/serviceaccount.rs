//! The service account controller: every active namespace has a `default`
//! ServiceAccount, recreated when deleted (kube-controller-manager's
//! `serviceaccount` controller). Tokens come with the security work.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;

use super::{Context, Error, drain, retry_after};

const DEFAULT: &str = "default";

pub async fn run(context: Context) {
    let namespaces = context.informers.synced::<Namespace>().await;
    let accounts = context.informers.synced::<ServiceAccount>().await;
    let deleted_defaults = accounts.subscribe();
    let controller = Controller::for_shared_stream(namespaces.subscribe(), namespaces.store().clone())
        .watches_shared_stream(deleted_defaults, |account: Arc<ServiceAccount>| {
            let namespace = account.metadata.namespace.as_deref()?;
            (account.metadata.name.as_deref() == Some(DEFAULT)).then(|| ObjectRef::new(namespace))
        })
        .run(
            |namespace, context| reconcile(namespace, context, accounts.clone()),
            |_, err, _| kube::runtime::controller::Action::requeue(retry_after(err)),
            Arc::new(context),
        );
    drain(controller).await;
}

async fn reconcile(
    namespace: Arc<Namespace>,
    context: Arc<Context>,
    accounts: crate::informer::Informer<ServiceAccount>,
) -> Result<Action, Error> {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    let terminating = namespace.metadata.deletion_timestamp.is_some()
        || namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating || accounts.store().get(&ObjectRef::new(DEFAULT).within(&name)).is_some() {
        return Ok(Action::await_change());
    }
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match Api::<ServiceAccount>::namespaced(context.client.clone(), &name)
        .create(&PostParams::default(), &account)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        // Already there (the cache lags) or the namespace began terminating.
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 403 => Ok(Action::await_change()),
        Err(err) => Err(err.into()),
    }
}
