//! ControllerRevisions: the template history of DaemonSets and StatefulSets, as
//! kube-controller-manager's `controller/history` package keeps it. A revision's
//! `data` is the strategic merge patch that puts its pod template back
//! (`{"spec":{"template":{..., "$patch":"replace"}}}`), which is what
//! `kubectl rollout undo` sends and `kubectl rollout history --revision` shows.
//! Revisions are named `<owner>-<hash>`, the hash being FNV-1 over the data plus
//! the owner's collision count, encoded with the apimachinery safe alphabet.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::pods::is_controlled_by;

/// `rand.SafeEncodeString`'s alphabet: no vowels, no look-alike digits.
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Go's `hash/fnv` New32 (FNV-1, not FNV-1a).
pub fn fnv32(parts: &[&[u8]]) -> u32 {
    let mut hash: u32 = 2_166_136_261;
    for byte in parts.iter().flat_map(|part| part.iter()) {
        hash = hash.wrapping_mul(16_777_619);
        hash ^= u32::from(*byte);
    }
    hash
}

/// apimachinery's `rand.SafeEncodeString`.
pub fn safe_encode(text: &str) -> String {
    text.chars()
        .map(|c| char::from(ALPHANUMS[c as usize % ALPHANUMS.len()]))
        .collect()
}

/// The hash of a revision's data, perturbed by the owner's collision count.
pub fn hash(data: &Value, collision_count: i32) -> String {
    let bytes = serde_json::to_vec(data).unwrap_or_default();
    let probe = (collision_count != 0).then(|| collision_count.to_string());
    let sum = fnv32(&[&bytes, probe.as_deref().unwrap_or_default().as_bytes()]);
    safe_encode(&sum.to_string())
}

/// The revision data of a pod template.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// The pod template a revision restores, if its data holds one.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    if let Some(map) = template.as_object_mut() {
        map.remove("$patch");
    }
    serde_json::from_value(template).ok()
}

/// Revisions owned (as controller) by `uid`, oldest first.
pub fn owned(
    store: &kube::runtime::reflector::Store<ControllerRevision>,
    namespace: &str,
    uid: &str,
) -> Vec<Arc<ControllerRevision>> {
    let mut revisions: Vec<_> = store
        .state()
        .into_iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(namespace) && is_controlled_by(&r.metadata, uid))
        .collect();
    revisions.sort_by(|a, b| {
        (
            a.revision,
            a.metadata.creation_timestamp.as_ref(),
            a.metadata.name.as_deref(),
        )
            .cmp(&(
                b.revision,
                b.metadata.creation_timestamp.as_ref(),
                b.metadata.name.as_deref(),
            ))
    });
    revisions
}

/// What a new revision is made of.
pub struct Wanted<'a> {
    /// The owner's name (revisions are `<owner>-<hash>`).
    pub owner_name: &'a str,
    pub owner: OwnerReference,
    /// The owner's template labels; the hash is added under `hash_label`.
    pub labels: BTreeMap<String, String>,
    /// The owner's annotations (carries `kubernetes.io/change-cause`).
    pub annotations: Option<BTreeMap<String, String>>,
    pub hash_label: &'static str,
    pub data: Value,
}

impl<'a> Wanted<'a> {
    /// The revision of a pod template owned by a DaemonSet or StatefulSet.
    pub fn template(
        owner_name: &'a str,
        owner: OwnerReference,
        owner_meta: &ObjectMeta,
        template: &PodTemplateSpec,
        hash_label: &'static str,
    ) -> Wanted<'a> {
        Wanted {
            owner_name,
            owner,
            labels: template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default(),
            annotations: owner_meta.annotations.clone(),
            hash_label,
            data: template_patch(template),
        }
    }
}

/// The revision for `wanted.data`: an existing equal one (renumbered to be the
/// newest when it is not), else a new one numbered after the newest. A name
/// taken by other data bumps `collision_count` and tries the next hash.
pub async fn ensure(
    api: &Api<ControllerRevision>,
    existing: &[Arc<ControllerRevision>],
    wanted: Wanted<'_>,
    collision_count: &mut i32,
) -> Result<ControllerRevision, kube::Error> {
    let newest = existing.iter().map(|r| r.revision).max().unwrap_or(0);
    if let Some(equal) = existing
        .iter()
        .rev()
        .find(|r| r.data.as_ref().map(|d| &d.0) == Some(&wanted.data))
    {
        if equal.revision == newest {
            return Ok((**equal).clone());
        }
        let name = equal.metadata.name.as_deref().unwrap_or_default();
        let patch = json!({"revision": newest + 1});
        return api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await;
    }
    for _ in 0..16 {
        let hash = hash(&wanted.data, *collision_count);
        let name = format!("{}-{hash}", wanted.owner_name);
        let mut labels = wanted.labels.clone();
        labels.insert(wanted.hash_label.to_string(), hash);
        let revision = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels),
                annotations: wanted.annotations.clone(),
                owner_references: Some(vec![wanted.owner.clone()]),
                ..Default::default()
            },
            data: Some(RawExtension(wanted.data.clone())),
            revision: newest + 1,
        };
        match api.create(&PostParams::default(), &revision).await {
            Ok(created) => return Ok(created),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let found = api.get(&name).await?;
                if is_controlled_by(&found.metadata, &wanted.owner.uid)
                    && found.data.as_ref().map(|d| &d.0) == Some(&wanted.data)
                {
                    // Ours already; the cache had not shown it yet.
                    return Ok(found);
                }
                *collision_count = collision_count.saturating_add(1);
            }
            Err(err) => return Err(err),
        }
    }
    Err(kube::Error::Service(
        format!(
            "no free revision name for {} after 16 hash collisions",
            wanted.owner_name
        )
        .into(),
    ))
}

/// Deletes the oldest revisions beyond `limit` that no pod (`live` names) uses.
pub async fn truncate(
    api: &Api<ControllerRevision>,
    existing: &[Arc<ControllerRevision>],
    live: &HashSet<String>,
    limit: i32,
) -> Result<(), kube::Error> {
    let unused: Vec<_> = existing
        .iter()
        .filter(|r| !live.contains(r.metadata.name.as_deref().unwrap_or_default()))
        .collect();
    let excess = unused.len().saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
    for revision in unused.into_iter().take(excess) {
        let name = revision.metadata.name.as_deref().unwrap_or_default();
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_and_safe_encoding_match_go() {
        // Go: fnv.New32() over "" is the offset basis; over "a" is 0x050c5d7e.
        assert_eq!(fnv32(&[b""]), 2_166_136_261);
        assert_eq!(fnv32(&[b"a"]), 0x050c_5d7e);
        assert_eq!(fnv32(&[b"fo", b"o"]), fnv32(&[b"foo"]));
        // rand.SafeEncodeString("123") indexes the alphabet by byte % 27.
        assert_eq!(safe_encode("0123"), "4567");
    }

    #[test]
    fn hashes_differ_by_data_and_collision_count() {
        let template: PodTemplateSpec = serde_json::from_value(
            json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
        )
        .unwrap();
        let data = template_patch(&template);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(hash(&data, 0), hash(&data.clone(), 0));
        assert_ne!(hash(&data, 0), hash(&data, 1));
        let revision = ControllerRevision {
            data: Some(RawExtension(data)),
            ..Default::default()
        };
        assert_eq!(template_of(&revision), Some(template));
    }
}
