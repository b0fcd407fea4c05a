//! What a request is about, read from its path and query the way kube-apiserver's
//! `RequestInfoFactory` does: group, version, namespace, resource, name,
//! subresource, and the list/watch/write options of its query string.

use std::collections::HashMap;

use super::status::Status;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    /// `None` for the group/version's discovery document.
    pub resource: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Subresources of a namespace, which otherwise look like `namespaces/<ns>/<resource>`.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Parses `/api/v1/...` and `/apis/<group>/<version>/...`; `None` for other paths.
pub fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, mut rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let mut target = Target {
        group: group.to_string(),
        version: version.to_string(),
        ..Default::default()
    };
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        target.namespace = Some(rest[1].to_string());
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest = &rest[2..];
        }
    }
    if rest.first() == Some(&"namespaces") {
        // The namespace object itself: its name is in the namespace slot.
        target.namespace = None;
    }
    // `<resource>/<name>/proxy/<path...>`: the rest is the proxied path.
    if rest.len() > 3 && rest[2] == "proxy" {
        rest = &rest[..3];
    }
    let mut segments = rest.iter().map(|s| s.to_string());
    target.resource = segments.next();
    target.name = segments.next();
    target.subresource = segments.next();
    if segments.next().is_some() || rest.iter().any(|s| s.is_empty()) {
        return None;
    }
    Some(target)
}

/// The query string, decoded.
#[derive(Debug, Clone, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A boolean as Go's `strconv.ParseBool` reads it (Python sends `True`).
    pub fn flag(&self, key: &str) -> Result<bool, Status> {
        match self.get(key) {
            None => Ok(false),
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
            Some(other) => Err(Status::bad_request(format!(
                "invalid boolean value {other:?} for {key}"
            ))),
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, Status> {
        self.get(key)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| Status::bad_request(format!("invalid integer value {v:?} for {key}")))
            })
            .transpose()
    }

    pub fn dry_run(&self) -> Result<bool, Status> {
        match self.get("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(Status::bad_request(format!(
                "Invalid dryRun value: {other:?}: supported values: \"All\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(group: &str, ns: Option<&str>, resource: Option<&str>, name: Option<&str>, sub: Option<&str>) -> Target {
        Target {
            group: group.into(),
            version: "v1".into(),
            namespace: ns.map(Into::into),
            resource: resource.map(Into::into),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        }
    }

    #[test]
    fn paths_like_kube_apiserver() {
        assert_eq!(parse_path("/api/v1"), Some(t("", None, None, None, None)));
        assert_eq!(parse_path("/api/v1/pods"), Some(t("", None, Some("pods"), None, None)));
        assert_eq!(
            parse_path("/api/v1/namespaces/default/pods/web/status"),
            Some(t("", Some("default"), Some("pods"), Some("web"), Some("status")))
        );
        assert_eq!(
            parse_path("/api/v1/namespaces"),
            Some(t("", None, Some("namespaces"), None, None))
        );
        assert_eq!(
            parse_path("/api/v1/namespaces/kube-system"),
            Some(t("", None, Some("namespaces"), Some("kube-system"), None))
        );
        assert_eq!(
            parse_path("/api/v1/namespaces/x/finalize"),
            Some(t("", None, Some("namespaces"), Some("x"), Some("finalize")))
        );
        assert_eq!(
            parse_path("/apis/apps/v1/namespaces/a/deployments/d/scale"),
            Some(t("apps", Some("a"), Some("deployments"), Some("d"), Some("scale")))
        );
        assert_eq!(
            parse_path("/api/v1/nodes/n1/proxy/stats/summary"),
            Some(t("", None, Some("nodes"), Some("n1"), Some("proxy")))
        );
        assert_eq!(parse_path("/healthz"), None);
        assert_eq!(parse_path("/api/v1/namespaces/a/pods/b/c/d"), None);
    }

    #[test]
    fn go_booleans() {
        let q = Query::parse(Some("watch=True&x=0&bad=maybe"));
        assert!(q.flag("watch").unwrap());
        assert!(!q.flag("x").unwrap());
        assert!(!q.flag("absent").unwrap());
        assert_eq!(q.flag("bad").unwrap_err().code, 400);
    }
}
