//! `/metrics` in the Prometheus text format: request counts and latency
//! histograms per verb, group, version, resource, subresource and scope
//! (kube-apiserver's `apiserver_request_total` and
//! `apiserver_request_duration_seconds`, with its labels, verbs and buckets).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds (kube-apiserver's).
const BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0,
    45.0, 60.0,
];

/// What a request is counted by.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Labels {
    /// As kube-apiserver reports it: GET, LIST, WATCH, POST, PUT, PATCH, APPLY,
    /// DELETE, DELETECOLLECTION, CONNECT.
    pub verb: String,
    /// The `dryRun` parameter (`All`), empty for real writes.
    pub dry_run: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    /// `resource` (one object), `namespace` or `cluster` (collections); empty for
    /// other paths.
    pub scope: String,
}

impl Labels {
    /// The labels in Prometheus' (alphabetical) order, `code` aside.
    fn render(&self) -> String {
        let Labels {
            verb,
            dry_run,
            group,
            version,
            resource,
            subresource,
            scope,
        } = self;
        format!(
            "component=\"apiserver\",dry_run=\"{dry_run}\",group=\"{group}\",resource=\"{resource}\",scope=\"{scope}\",subresource=\"{subresource}\",verb=\"{verb}\",version=\"{version}\""
        )
    }
}

#[derive(Default)]
struct Series {
    codes: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<Labels, Series>>,
}

impl Metrics {
    pub fn record(&self, labels: Labels, code: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut series = self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let s = series.entry(labels).or_default();
        *s.codes.entry(code).or_default() += 1;
        for (bucket, bound) in s.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= *bound {
                *bucket += 1;
            }
        }
        s.sum += seconds;
        s.count += 1;
    }

    pub fn render(&self) -> String {
        let series = self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = String::new();
        let labels = Labels::render;
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, group, version, resource and HTTP response code.\n");
        out.push_str("# TYPE apiserver_request_total counter\n");
        for (key, s) in series.iter() {
            for (code, n) in &s.codes {
                let _ = writeln!(out, "apiserver_request_total{{code=\"{code}\",{}}} {n}", labels(key));
            }
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb, group, version and resource.\n");
        out.push_str("# TYPE apiserver_request_duration_seconds histogram\n");
        for (key, s) in series.iter() {
            let l = labels(key);
            for (n, bound) in s.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_bucket{{{l},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(out, "apiserver_request_duration_seconds_sum{{{l}}} {}", s.sum);
            let _ = writeln!(out, "apiserver_request_duration_seconds_count{{{l}}} {}", s.count);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets() {
        let m = Metrics::default();
        let labels = Labels {
            verb: "LIST".into(),
            version: "v1".into(),
            resource: "pods".into(),
            scope: "namespace".into(),
            ..Default::default()
        };
        m.record(labels.clone(), 200, Duration::from_millis(3));
        m.record(labels, 404, Duration::from_millis(30));
        let text = m.render();
        let l = r#"component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1""#;
        assert!(
            text.contains(&format!("apiserver_request_total{{code=\"200\",{l}}} 1")),
            "{text}"
        );
        assert!(text.contains("le=\"0.005\"} 1"));
        assert!(text.contains("le=\"0.05\"} 2"));
        assert!(text.contains(&format!("apiserver_request_duration_seconds_count{{{l}}} 2")));
    }
}
