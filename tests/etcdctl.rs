//! The etcd v3 endpoint driven by the real `etcdctl` (3.4, from Debian's etcd-client):
//! what an operator or a backup script would type, with the exact output they would
//! see from a real etcd. Every test starts its own server on its own port and data
//! dir. `KUBEBOX_TEST_AGAINST=etcd cargo test --test etcdctl` runs the same tests
//! against a real etcd, to check the expectations themselves.

mod common;

use std::time::{Duration, Instant};

use common::{Server, b64, eventually, int, json};

const WAIT: Duration = Duration::from_secs(10);

/// The store revision, as `get -w json` reports it in the response header.
fn revision(s: &Server) -> i64 {
    let out = s.etcdctl(&["get", "revision-probe", "-w", "json"]).ok();
    int(&json(&out), "/header/revision")
}

/// Puts and returns the revision of the put (from `put -w json`).
fn put(s: &Server, key: &str, value: &str) -> i64 {
    let out = s.etcdctl(&["put", key, value, "-w", "json"]).ok();
    int(&json(&out), "/header/revision")
}

/// Non-empty stdout lines.
fn lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| !l.is_empty()).collect()
}

#[test]
fn put_get_and_json_metadata() {
    let s = Server::start_etcd_compatible();
    let before = revision(&s);
    assert!(before >= 1, "a fresh store reports revision {before}, want >= 1");

    assert_eq!(s.etcdctl(&["put", "alpha", "one"]).ok(), "OK\n");
    assert_eq!(s.etcdctl(&["get", "alpha"]).ok(), "alpha\none\n");
    assert_eq!(s.etcdctl(&["get", "alpha", "--print-value-only"]).ok(), "one\n");
    // A missing key prints nothing and is not an error.
    assert_eq!(s.etcdctl(&["get", "missing"]).ok(), "");

    let r1 = before + 1;
    let r2 = put(&s, "alpha", "two");
    assert_eq!(r2, r1 + 1, "each put advances the revision by one");

    let v = json(&s.etcdctl(&["get", "alpha", "-w", "json"]).ok());
    assert_eq!(int(&v, "/header/revision"), r2);
    assert_eq!(int(&v, "/count"), 1);
    let kv = &v["kvs"][0];
    assert_eq!(kv["key"], b64(b"alpha"));
    assert_eq!(kv["value"], b64(b"two"));
    assert_eq!(int(kv, "/create_revision"), r1);
    assert_eq!(int(kv, "/mod_revision"), r2);
    assert_eq!(int(kv, "/version"), 2);
    assert_eq!(int(kv, "/lease"), 0);

    // Binary-safe keys and values: spaces, unicode, an empty value.
    s.etcdctl(&["put", "key with space", "välue ✓"]).ok();
    assert_eq!(s.etcdctl(&["get", "key with space"]).ok(), "key with space\nvälue ✓\n");
    s.etcdctl(&["put", "empty", ""]).ok();
    let v = json(&s.etcdctl(&["get", "empty", "-w", "json"]).ok());
    assert_eq!(int(&v, "/count"), 1, "a key with an empty value exists: {v}");
    assert_eq!(int(&v, "/kvs/0/version"), 1);
}

#[test]
fn ranges_prefix_from_key_limit_sort_keys_only() {
    let s = Server::start_etcd_compatible();
    // Put order differs from key order and from value order on purpose.
    for (k, v) in [("p/b", "y"), ("p/c", "x"), ("p/a", "z"), ("q", "4"), ("o", "0")] {
        s.etcdctl(&["put", k, v]).ok();
    }
    // p/c gets two more versions, so it has the highest version and mod revision.
    s.etcdctl(&["put", "p/c", "x"]).ok();
    s.etcdctl(&["put", "p/c", "x"]).ok();

    assert_eq!(s.etcdctl(&["get", "--prefix", "p/"]).ok(), "p/a\nz\np/b\ny\np/c\nx\n");
    assert_eq!(s.etcdctl(&["get", "--from-key", "p/b"]).ok(), "p/b\ny\np/c\nx\nq\n4\n");
    // An explicit [start, end) range: end is exclusive.
    assert_eq!(s.etcdctl(&["get", "p/a", "p/c"]).ok(), "p/a\nz\np/b\ny\n");

    // --limit returns the first keys but counts them all, and says there is more.
    assert_eq!(
        s.etcdctl(&["get", "--prefix", "p/", "--limit", "2"]).ok(),
        "p/a\nz\np/b\ny\n"
    );
    let v = json(&s.etcdctl(&["get", "--prefix", "p/", "--limit", "2", "-w", "json"]).ok());
    assert_eq!(int(&v, "/count"), 3, "count ignores the limit: {v}");
    assert_eq!(v["more"], true, "more must be set when the limit cut keys: {v}");
    assert_eq!(v["kvs"].as_array().map(Vec::len), Some(2));
    let v = json(&s.etcdctl(&["get", "--prefix", "p/", "--limit", "3", "-w", "json"]).ok());
    assert!(v.get("more").is_none() || v["more"] == false, "no more: {v}");

    // --keys-only: keys, empty values.
    let v = json(&s.etcdctl(&["get", "--prefix", "p/", "--keys-only", "-w", "json"]).ok());
    let kvs = v["kvs"].as_array().unwrap();
    assert_eq!(kvs.len(), 3);
    for kv in kvs {
        assert!(
            kv.get("value").is_none() || kv["value"] == "",
            "keys-only returned a value: {kv}"
        );
    }
    assert_eq!(
        lines(&s.etcdctl(&["get", "--prefix", "p/", "--keys-only"]).ok()),
        ["p/a", "p/b", "p/c"]
    );

    let sorted = |by: &str, order: &str| {
        let out = s
            .etcdctl(&[
                "get",
                "--prefix",
                "p/",
                "--keys-only",
                "--sort-by",
                by,
                "--order",
                order,
            ])
            .ok();
        lines(&out).into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(sorted("KEY", "DESCEND"), ["p/c", "p/b", "p/a"]);
    assert_eq!(sorted("KEY", "ASCEND"), ["p/a", "p/b", "p/c"]);
    assert_eq!(sorted("VALUE", "ASCEND"), ["p/c", "p/b", "p/a"]);
    assert_eq!(sorted("CREATE", "ASCEND"), ["p/b", "p/c", "p/a"]);
    assert_eq!(sorted("MODIFY", "DESCEND"), ["p/c", "p/a", "p/b"]);
    assert_eq!(sorted("VERSION", "DESCEND")[0], "p/c");

    // Sorting happens before the limit: the smallest value overall, not of the first key.
    assert_eq!(
        s.etcdctl(&[
            "get",
            "--prefix",
            "p/",
            "--sort-by",
            "VALUE",
            "--order",
            "ASCEND",
            "--limit",
            "1"
        ])
        .ok(),
        "p/c\nx\n"
    );
}

#[test]
fn get_at_old_revisions() {
    let s = Server::start_etcd_compatible();
    let r1 = put(&s, "hist", "v1");
    let r2 = put(&s, "hist", "v2");
    let out = s.etcdctl(&["del", "hist", "-w", "json"]).ok();
    let r3 = int(&json(&out), "/header/revision");
    assert_eq!(int(&json(&out), "/deleted"), 1);
    assert_eq!(r3, r2 + 1);

    assert_eq!(s.etcdctl(&["get", "hist"]).ok(), "");
    let at = |rev: i64| s.etcdctl(&["get", "hist", &format!("--rev={rev}")]).ok();
    assert_eq!(at(r1), "hist\nv1\n");
    assert_eq!(at(r2), "hist\nv2\n");
    assert_eq!(at(r3), "");

    let v = json(&s.etcdctl(&["get", "hist", &format!("--rev={r1}"), "-w", "json"]).ok());
    assert_eq!(int(&v, "/kvs/0/version"), 1);
    assert_eq!(int(&v, "/kvs/0/mod_revision"), r1);
    // The header of a historical read still carries the current revision.
    assert_eq!(int(&v, "/header/revision"), r3);

    // Recreated after a delete: a new create revision and version 1 again.
    let r4 = put(&s, "hist", "v3");
    let v = json(&s.etcdctl(&["get", "hist", "-w", "json"]).ok());
    assert_eq!(int(&v, "/kvs/0/create_revision"), r4);
    assert_eq!(int(&v, "/kvs/0/version"), 1);

    // A prefix read at an old revision sees the keys as they were.
    put(&s, "h/a", "1");
    let ra = put(&s, "h/b", "2");
    s.etcdctl(&["del", "h/a"]).ok();
    put(&s, "h/c", "3");
    assert_eq!(
        s.etcdctl(&["get", "--prefix", "h/", &format!("--rev={ra}")]).ok(),
        "h/a\n1\nh/b\n2\n"
    );
    assert_eq!(s.etcdctl(&["get", "--prefix", "h/"]).ok(), "h/b\n2\nh/c\n3\n");
}

#[test]
fn delete_single_prefix_and_prev_kv() {
    let s = Server::start_etcd_compatible();
    for (k, v) in [("d/1", "a"), ("d/2", "b"), ("d/3", "c"), ("e", "x")] {
        s.etcdctl(&["put", k, v]).ok();
    }
    assert_eq!(s.etcdctl(&["del", "d/1"]).ok(), "1\n");
    assert_eq!(s.etcdctl(&["del", "d/1"]).ok(), "0\n");
    let before = revision(&s);
    assert_eq!(
        s.etcdctl(&["del", "d/1"]).ok(),
        "0\n",
        "deleting nothing is not an error"
    );
    assert_eq!(revision(&s), before, "deleting nothing must not advance the revision");

    assert_eq!(
        s.etcdctl(&["del", "--prefix", "d/", "--prev-kv"]).ok(),
        "2\nd/2\nb\nd/3\nc\n"
    );
    assert_eq!(s.etcdctl(&["get", "--prefix", "d/"]).ok(), "");
    assert_eq!(s.etcdctl(&["get", "e"]).ok(), "e\nx\n");

    // One delete of several keys is one revision.
    s.etcdctl(&["put", "r/1", "1"]).ok();
    s.etcdctl(&["put", "r/2", "2"]).ok();
    let before = revision(&s);
    let out = s.etcdctl(&["del", "--prefix", "r/", "-w", "json"]).ok();
    assert_eq!(int(&json(&out), "/deleted"), 2);
    assert_eq!(int(&json(&out), "/header/revision"), before + 1);

    // --from-key delete.
    s.etcdctl(&["put", "z1", "1"]).ok();
    s.etcdctl(&["put", "z2", "2"]).ok();
    assert_eq!(s.etcdctl(&["del", "--from-key", "z"]).ok(), "2\n");
    assert_eq!(s.etcdctl(&["get", "--from-key", "e"]).ok(), "e\nx\n");
}

#[test]
fn txn_compares_and_branches() {
    let s = Server::start_etcd_compatible();
    let ra = put(&s, "a", "2");

    // All compares true: success branch runs (put + get), failure branch does not.
    let out = s
        .etcdctl_stdin(
            &["txn"],
            b"value(\"a\") = \"2\"\nversion(\"a\") = \"1\"\n\nput b x\nget a\n\nput c y\n\n",
        )
        .ok();
    assert_eq!(out, "SUCCESS\n\nOK\n\na\n2\n");
    assert_eq!(s.etcdctl(&["get", "b"]).ok(), "b\nx\n");
    assert_eq!(s.etcdctl(&["get", "c"]).ok(), "");

    // One compare false: failure branch with put, get and del.
    let out = s
        .etcdctl_stdin(
            &["txn"],
            b"value(\"a\") = \"2\"\nvalue(\"a\") = \"3\"\n\nput b never\n\nput c y\nget a\ndel b\n\n",
        )
        .ok();
    assert_eq!(out, "FAILURE\n\nOK\n\na\n2\n\n1\n");
    assert_eq!(s.etcdctl(&["get", "b"]).ok(), "");
    assert_eq!(s.etcdctl(&["get", "c"]).ok(), "c\ny\n");

    // Compares on create and mod revisions, and value ordering.
    let txn = format!(
        "create(\"a\") = \"{ra}\"\nmod(\"a\") < \"{}\"\nvalue(\"a\") > \"1\"\n\nput d ok\n\nput d bad\n\n",
        ra + 1
    );
    assert_eq!(s.etcdctl_stdin(&["txn"], txn.as_bytes()).ok(), "SUCCESS\n\nOK\n");
    assert_eq!(s.etcdctl(&["get", "d"]).ok(), "d\nok\n");
    let txn = format!("mod(\"a\") > \"{ra}\"\n\nput d bad\n\nput d else\n\n");
    assert_eq!(s.etcdctl_stdin(&["txn"], txn.as_bytes()).ok(), "FAILURE\n\nOK\n");
    assert_eq!(s.etcdctl(&["get", "d"]).ok(), "d\nelse\n");

    // A missing key has version 0 and create revision 0: the create-if-absent idiom.
    let create_if_absent = b"version(\"new\") = \"0\"\n\nput new first\n\nget new\n\n";
    assert_eq!(s.etcdctl_stdin(&["txn"], create_if_absent).ok(), "SUCCESS\n\nOK\n");
    assert_eq!(
        s.etcdctl_stdin(&["txn"], create_if_absent).ok(),
        "FAILURE\n\nnew\nfirst\n"
    );
    assert_eq!(
        s.etcdctl_stdin(&["txn"], b"create(\"nope\") = \"0\"\n\nget a\n\n\n")
            .ok(),
        "SUCCESS\n\na\n2\n"
    );

    // A txn with several writes is one revision.
    let before = revision(&s);
    let out = s
        .etcdctl_stdin(&["txn", "-w", "json"], b"\nput m1 1\nput m2 2\ndel a\n\n\n")
        .ok();
    let v = json(&out);
    assert_eq!(v["succeeded"], true);
    assert_eq!(int(&v, "/header/revision"), before + 1, "{v}");
    let v = json(&s.etcdctl(&["get", "m2", "-w", "json"]).ok());
    assert_eq!(int(&v, "/kvs/0/mod_revision"), before + 1);
    assert_eq!(s.etcdctl(&["get", "a"]).ok(), "");
}

#[test]
fn watch_live_prefix() {
    let s = Server::start_etcd_compatible();
    let mut w = s.etcdctl_stream(&["watch", "--prefix", "w/"]);

    // etcdctl says nothing when the watch is set up: put a marker until it shows.
    let mut i = 0;
    let synced = eventually(WAIT, || {
        i += 1;
        s.etcdctl(&["put", "w/sync", &i.to_string()]).ok();
        w.next_line(Duration::from_millis(300)).is_some()
    });
    assert!(synced, "the watch never reported a put");
    // Drain the marker events.
    while w.next_line(Duration::from_millis(500)).is_some() {}
    for line in &w.seen {
        assert!(
            line == "PUT" || line == "w/sync" || line.parse::<u32>().is_ok(),
            "unexpected line {line:?} among {:?}",
            w.seen
        );
    }

    s.etcdctl(&["put", "w/a", "1"]).ok();
    s.etcdctl(&["put", "w/a", "2"]).ok();
    s.etcdctl(&["put", "other/x", "not watched"]).ok();
    s.etcdctl(&["del", "w/a"]).ok();
    s.etcdctl(&["put", "w/b", "3"]).ok();
    w.expect_lines(
        &[
            "PUT", "w/a", "1", "PUT", "w/a", "2", "DELETE", "w/a", "", "PUT", "w/b", "3",
        ],
        WAIT,
    );
    w.expect_silence(Duration::from_millis(500));
}

#[test]
fn watch_replays_history_with_prev_kv() {
    let s = Server::start_etcd_compatible();
    let r1 = put(&s, "h/a", "1");
    put(&s, "h/a", "2");
    s.etcdctl(&["put", "x", "outside"]).ok();
    s.etcdctl(&["del", "h/a"]).ok();
    put(&s, "h/b", "x");

    let rev = format!("--rev={r1}");
    let mut w = s.etcdctl_stream(&["watch", "--prefix", "h/", &rev, "--prev-kv"]);
    w.expect_lines(
        &[
            "PUT", "h/a", "1", // created: no previous value
            "PUT", "h/a", "1", "h/a", "2", // prev, then new
            "DELETE", "h/a", "2", "h/a", "", // prev, then the tombstone
            "PUT", "h/b", "x",
        ],
        WAIT,
    );
    // History then continues live.
    s.etcdctl(&["put", "h/b", "y"]).ok();
    w.expect_lines(&["PUT", "h/b", "x", "h/b", "y"], WAIT);
    drop(w);

    // A single key from an old revision, without prev-kv.
    let mut w = s.etcdctl_stream(&["watch", "h/a", &rev]);
    w.expect_lines(&["PUT", "h/a", "1", "PUT", "h/a", "2", "DELETE", "h/a", ""], WAIT);
    w.expect_silence(Duration::from_millis(500));

    // A start revision in the middle of history.
    let mut w = s.etcdctl_stream(&["watch", "h/a", &format!("--rev={}", r1 + 1)]);
    w.expect_lines(&["PUT", "h/a", "2", "DELETE", "h/a", ""], WAIT);
}

#[test]
fn lease_lifecycle() {
    let s = Server::start_etcd_compatible();
    let out = s.etcdctl(&["lease", "grant", "60"]).ok();
    // "lease 694d7a8b7c6e1c0a granted with TTL(60s)"
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words.len(), 5, "{out}");
    assert_eq!(words[0], "lease");
    assert_eq!(words[2..], ["granted", "with", "TTL(60s)"]);
    let id_hex = words[1].to_string();
    let id = i64::from_str_radix(&id_hex, 16).expect("hex lease id");
    assert!(id > 0, "lease id {id_hex}");

    let lease_flag = format!("--lease={id_hex}");
    assert_eq!(s.etcdctl(&["put", &lease_flag, "l/1", "a"]).ok(), "OK\n");
    assert_eq!(s.etcdctl(&["put", &lease_flag, "l/2", "b"]).ok(), "OK\n");
    s.etcdctl(&["put", "l/free", "c"]).ok();
    let v = json(&s.etcdctl(&["get", "l/1", "-w", "json"]).ok());
    assert_eq!(int(&v, "/kvs/0/lease"), id, "{v}");

    let out = s.etcdctl(&["lease", "timetolive", &id_hex, "--keys"]).ok();
    let prefix = format!("lease {id_hex} granted with TTL(60s), remaining(");
    assert!(out.starts_with(&prefix), "{out}");
    let rest = &out[prefix.len()..];
    let remaining: i64 = rest[..rest.find('s').unwrap()].parse().expect(&out);
    assert!((50..=60).contains(&remaining), "remaining {remaining}: {out}");
    // The order of attached keys is unspecified (etcd keeps them in a map).
    let keys = out
        .split_once("attached keys([")
        .and_then(|(_, rest)| rest.strip_suffix("])\n"))
        .unwrap_or_else(|| panic!("no attached keys in {out:?}"));
    let mut keys: Vec<&str> = keys.split(' ').collect();
    keys.sort();
    assert_eq!(keys, ["l/1", "l/2"], "{out}");

    assert_eq!(
        s.etcdctl(&["lease", "keep-alive", "--once", &id_hex]).ok(),
        format!("lease {id_hex} keepalived with TTL(60)\n")
    );

    let out = s.etcdctl(&["lease", "grant", "100"]).ok();
    let other_hex = out.split_whitespace().nth(1).unwrap().to_string();
    assert_ne!(other_hex, id_hex, "lease ids must be unique");
    let out = s.etcdctl(&["lease", "list"]).ok();
    let mut listed = lines(&out);
    assert_eq!(listed.remove(0), "found 2 leases");
    listed.sort();
    let mut want = vec![id_hex.as_str(), other_hex.as_str()];
    want.sort();
    assert_eq!(listed, want);

    assert_eq!(
        s.etcdctl(&["lease", "revoke", &id_hex]).ok(),
        format!("lease {id_hex} revoked\n")
    );
    assert_eq!(s.etcdctl(&["get", "--prefix", "l/"]).ok(), "l/free\nc\n");
    assert_eq!(
        s.etcdctl(&["lease", "list"]).ok(),
        format!("found 1 leases\n{other_hex}\n")
    );
    assert_eq!(
        s.etcdctl(&["lease", "timetolive", &id_hex]).ok(),
        format!("lease {id_hex} already expired\n")
    );
    // The revoked lease cannot take new keys.
    let err = s.etcdctl(&["put", &lease_flag, "l/3", "x"]).err();
    assert!(err.contains("etcdserver: requested lease not found"), "{err}");
}

#[test]
fn short_lease_expires_and_deletes_its_keys() {
    let s = Server::start_etcd_compatible();
    let out = s.etcdctl(&["lease", "grant", "2"]).ok();
    let id_hex = out.split_whitespace().nth(1).unwrap().to_string();
    let granted = Instant::now();
    let lease_flag = format!("--lease={id_hex}");
    let out = s.etcdctl(&["put", &lease_flag, "s/k", "v", "-w", "json"]).ok();
    let put_rev = int(&json(&out), "/header/revision");
    s.etcdctl(&["put", "s/keep", "x"]).ok();
    assert_eq!(s.etcdctl(&["get", "s/k"]).ok(), "s/k\nv\n");

    let gone = eventually(Duration::from_secs(15), || s.etcdctl(&["get", "s/k"]).ok().is_empty());
    assert!(gone, "key of a 2 s lease still there after 15 s");
    let lived = granted.elapsed();
    assert!(
        lived >= Duration::from_millis(1500),
        "key vanished after {lived:?}, before its 2 s TTL"
    );
    assert_eq!(s.etcdctl(&["get", "s/keep"]).ok(), "s/keep\nx\n");
    assert!(
        !s.etcdctl(&["lease", "list"]).ok().contains(&id_hex),
        "expired lease still listed"
    );
    assert_eq!(
        s.etcdctl(&["lease", "timetolive", &id_hex]).ok(),
        format!("lease {id_hex} already expired\n")
    );
    // The expiry is an ordinary delete in the history.
    let mut w = s.etcdctl_stream(&["watch", "s/k", &format!("--rev={put_rev}")]);
    w.expect_lines(&["PUT", "s/k", "v", "DELETE", "s/k", ""], WAIT);
}

#[test]
fn compaction() {
    let s = Server::start_etcd_compatible();
    let r1 = put(&s, "c", "1");
    let r2 = put(&s, "c", "2");
    let r3 = put(&s, "c", "3");

    assert_eq!(
        s.etcdctl(&["compaction", &r2.to_string()]).ok(),
        format!("compacted revision {r2}\n")
    );
    let err = s.etcdctl(&["get", "c", &format!("--rev={r1}")]).err();
    assert!(
        err.contains("Error: etcdserver: mvcc: required revision has been compacted"),
        "{err}"
    );
    // The compaction revision itself is still readable.
    assert_eq!(s.etcdctl(&["get", "c", &format!("--rev={r2}")]).ok(), "c\n2\n");
    assert_eq!(s.etcdctl(&["get", "c", &format!("--rev={r3}")]).ok(), "c\n3\n");
    assert_eq!(s.etcdctl(&["get", "c"]).ok(), "c\n3\n");

    // Compacting again at or below it, or beyond the current revision, fails.
    let err = s.etcdctl(&["compaction", &r1.to_string()]).err();
    assert!(
        err.contains("etcdserver: mvcc: required revision has been compacted"),
        "{err}"
    );
    let err = s.etcdctl(&["compaction", "1000000"]).err();
    assert!(
        err.contains("etcdserver: mvcc: required revision is a future revision"),
        "{err}"
    );

    // A watch from a compacted revision is cancelled with the compacted error.
    let mut w = s.etcdctl_stream(&["watch", "c", &format!("--rev={r1}")]);
    let (status, stderr) = w.wait_exit(WAIT).expect("watch from a compacted revision kept running");
    assert!(!status.success());
    assert!(
        stderr.contains("watch was canceled (etcdserver: mvcc: required revision has been compacted)"),
        "{stderr}"
    );
    // The compact revision is still a valid watch start.
    let mut w = s.etcdctl_stream(&["watch", "c", &format!("--rev={r2}")]);
    w.expect_lines(&["PUT", "c", "2", "PUT", "c", "3"], WAIT);
}

#[test]
fn error_cases() {
    let s = Server::start_etcd_compatible();
    s.etcdctl(&["put", "k", "v"]).ok();

    let err = s.etcdctl(&["get", "k", "--rev=1000000"]).err();
    assert!(
        err.contains("Error: etcdserver: mvcc: required revision is a future revision"),
        "{err}"
    );

    let err = s.etcdctl(&["put", "--lease=1234abcd", "k", "v2"]).err();
    assert!(err.contains("Error: etcdserver: requested lease not found"), "{err}");
    assert_eq!(s.etcdctl(&["get", "k"]).ok(), "k\nv\n", "failed put changed the key");
    let err = s.etcdctl(&["lease", "revoke", "1234abcd"]).err();
    assert!(err.contains("etcdserver: requested lease not found"), "{err}");
    let err = s.etcdctl(&["lease", "keep-alive", "--once", "1234abcd"]).err();
    assert!(err.contains("etcdserver: requested lease not found"), "{err}");

    // Values are read from stdin: too long for a command-line argument.
    let value = |n: usize| vec![b'x'; n];
    // Under the 1.5 MiB request limit: accepted and read back whole.
    s.etcdctl_stdin(&["put", "big"], &value(1_400_000)).ok();
    let out = s.etcdctl(&["get", "big", "--print-value-only"]).ok();
    assert_eq!(out.len(), 1_400_001, "value read back with a different length");
    // Over 1.5 MiB: the server refuses it with etcd's message.
    let err = s.etcdctl_stdin(&["put", "huge"], &value(1_677_722)).err();
    assert!(err.contains("etcdserver: request is too large"), "{err}");
    // 2 MiB: refused (etcdctl's own 2 MiB send limit may refuse it first).
    s.etcdctl_stdin(&["put", "huge"], &value(2 * 1024 * 1024)).err();
    assert_eq!(s.etcdctl(&["get", "huge"]).ok(), "", "a refused value was stored");
    // The server still works afterwards.
    assert_eq!(s.etcdctl(&["put", "after", "ok"]).ok(), "OK\n");
}

#[test]
fn endpoint_status_health_members_alarms_defrag() {
    let s = Server::start_etcd_compatible();
    put(&s, "a", "1");
    let rev = put(&s, "a", "2");

    let v = json(&s.etcdctl(&["endpoint", "status", "-w", "json"]).ok());
    let st = &v[0];
    assert_eq!(st["Endpoint"], s.endpoint().as_str(), "{v}");
    assert_eq!(int(st, "/Status/header/revision"), rev, "{v}");
    let member = int(st, "/Status/header/member_id");
    assert_ne!(member, 0, "member id: {v}");
    assert_eq!(int(st, "/Status/leader"), member, "a single member leads itself: {v}");
    assert!(int(st, "/Status/dbSize") > 0, "db size: {v}");
    assert!(
        st["Status"]["version"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{v}"
    );

    let health = s.etcdctl(&["endpoint", "health"]);
    let text = format!("{}{}", health.stdout, health.stderr);
    assert!(health.status.success(), "{text}");
    assert!(text.contains(&format!("{} is healthy", s.endpoint())), "{text}");

    // "8e9e05c52164694d, started, default, http://localhost:2380, http://127.0.0.1:2379, false"
    let out = s.etcdctl(&["member", "list"]).ok();
    let members = lines(&out);
    assert_eq!(members.len(), 1, "{out}");
    let fields: Vec<&str> = members[0].split(", ").collect();
    assert_eq!(fields.len(), 6, "{out}");
    assert_eq!(
        u64::from_str_radix(fields[0], 16).expect("hex member id") as i64,
        member,
        "member list and status disagree on the member id"
    );
    assert_eq!(fields[1], "started");
    assert!(fields[4].contains(&s.endpoint()), "client URL {:?}", fields[4]);
    assert_eq!(fields[5], "false", "not a learner");

    assert_eq!(s.etcdctl(&["alarm", "list"]).ok(), "");
    assert_eq!(
        s.etcdctl(&["defrag"]).ok(),
        format!("Finished defragmenting etcd member[{}]\n", s.endpoint())
    );
    // Data is intact after a defrag.
    assert_eq!(s.etcdctl(&["get", "a"]).ok(), "a\n2\n");
}

#[test]
fn snapshot_save() {
    let s = Server::start_etcd_compatible();
    for i in 0..50 {
        s.etcdctl(&["put", &format!("snap/{i:02}"), &format!("value {i}")]).ok();
    }
    let file = s.dir.path().join("backup.db");
    let file_str = file.to_str().unwrap();
    let out = s.etcdctl(&["snapshot", "save", file_str]).ok();
    assert_eq!(out, format!("Snapshot saved at {file_str}\n"));
    let size = std::fs::metadata(&file).expect("snapshot file").len();
    assert!(size > 1000, "snapshot is {size} bytes");
    assert!(
        !s.dir.path().join("backup.db.part").exists(),
        "etcdctl left its partial file"
    );
    // The server keeps serving.
    assert_eq!(s.etcdctl(&["get", "snap/07"]).ok(), "snap/07\nvalue 7\n");
}
