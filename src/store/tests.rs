//! Store semantics against a real SQLite file in a temp dir.

use super::*;
use std::time::Duration;

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("state.db"), Options::default()).unwrap()
}

async fn reopen(store: Store, dir: &tempfile::TempDir) -> Store {
    tokio::task::spawn_blocking(move || store.close()).await.unwrap();
    open(dir)
}

fn put_op(key: &str, value: &str) -> Op {
    Op::Put(Put {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
}

fn mod_equals(key: &str, revision: i64) -> Compare {
    Compare {
        range: KeyRange::key(key),
        op: CompareOp::Equal,
        target: CompareTarget::ModRevision(revision),
    }
}

#[tokio::test]
async fn puts_get_revisions_versions_and_create_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert_eq!(store.revision(), 1, "an empty store is at revision 1, like etcd");
    assert_eq!(store.put("a", "1").await.unwrap().revision, 2);
    assert_eq!(store.put("a", "2").await.unwrap().revision, 3);
    assert_eq!(store.put("b", "x").await.unwrap().revision, 4);
    let a = store.get("a").await.unwrap().unwrap();
    assert_eq!(
        (a.value.as_slice(), a.create_revision, a.mod_revision, a.version),
        (&b"2"[..], 2, 3, 2)
    );
    assert!(store.get("missing").await.unwrap().is_none());

    store.delete(KeyRange::key("a")).await.unwrap();
    assert!(store.get("a").await.unwrap().is_none());
    store.put("a", "again").await.unwrap();
    let a = store.get("a").await.unwrap().unwrap();
    assert_eq!(
        (a.create_revision, a.version),
        (6, 1),
        "a re-created key starts a new life"
    );
}

#[tokio::test]
async fn a_txn_with_several_writes_shares_one_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let result = store
        .txn(Txn {
            success: vec![put_op("x", "1"), put_op("y", "2")],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(result.revision, 2);
    let x = store.get("x").await.unwrap().unwrap();
    let y = store.get("y").await.unwrap().unwrap();
    assert_eq!((x.mod_revision, y.mod_revision), (2, 2));
    assert_eq!(store.revision(), 2);
}

#[tokio::test]
async fn create_if_absent_and_compare_and_swap() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let create = Txn {
        compare: vec![mod_equals("k", 0)],
        success: vec![put_op("k", "first")],
        failure: vec![Op::Range(Range::of(KeyRange::key("k")))],
    };
    assert!(store.txn(create.clone()).await.unwrap().succeeded);
    let again = store.txn(create).await.unwrap();
    assert!(!again.succeeded);
    match &again.results[0] {
        OpResult::Range(r) => assert_eq!(r.kvs[0].value, b"first"),
        other => panic!("expected the current value, got {other:?}"),
    }
    let stale = store
        .txn(Txn {
            compare: vec![mod_equals("k", 1)],
            success: vec![put_op("k", "lost")],
            failure: vec![],
        })
        .await
        .unwrap();
    assert!(!stale.succeeded);
    assert_eq!(store.get("k").await.unwrap().unwrap().value, b"first");
}

#[tokio::test]
async fn concurrent_conflicting_updates_never_lose_an_increment() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.put("counter", "0").await.unwrap();
    let (workers, rounds) = (8, 25);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..rounds {
                loop {
                    let cur = store.get("counter").await.unwrap().unwrap();
                    let n: i64 = String::from_utf8(cur.value).unwrap().parse().unwrap();
                    let r = store
                        .txn(Txn {
                            compare: vec![mod_equals("counter", cur.mod_revision)],
                            success: vec![put_op("counter", &(n + 1).to_string())],
                            failure: vec![],
                        })
                        .await
                        .unwrap();
                    if r.succeeded {
                        break;
                    }
                    conflicts += 1;
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let total = store.get("counter").await.unwrap().unwrap();
    assert_eq!(total.value, (workers * rounds).to_string().as_bytes());
    assert_eq!(total.version, (workers * rounds + 1) as i64);
    assert!(conflicts > 0, "the workers were meant to collide");
}

#[tokio::test]
async fn concurrent_writers_get_distinct_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.put(format!("k{i}"), "v").await.unwrap().revision
        }));
    }
    let mut revisions = Vec::new();
    for t in tasks {
        revisions.push(t.await.unwrap());
    }
    revisions.sort();
    revisions.dedup();
    assert_eq!(revisions.len(), 200);
    assert_eq!(*revisions.last().unwrap(), store.revision());
}

#[tokio::test]
async fn failing_requests_in_a_batch_leave_the_others_and_take_no_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let put_with_missing_lease = |key: String| {
        Txn::single(Op::Put(Put {
            key: key.into(),
            value: "v".into(),
            lease: 42,
            ..Default::default()
        }))
    };
    // Fails at its second write, after the first went in: undone by its savepoint.
    let half_done = || Txn {
        success: vec![
            put_op("half/a", "1"),
            Op::Put(Put {
                key: "half/b".into(),
                lease: 42,
                ..Default::default()
            }),
        ],
        ..Default::default()
    };
    let mut tasks = Vec::new();
    for i in 0..300 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            match i % 3 {
                0 => store.put(format!("ok/{i}"), "v").await.map(|r| r.revision),
                1 => store
                    .txn(put_with_missing_lease(format!("bad/{i}")))
                    .await
                    .map(|r| r.revision),
                _ => store.txn(half_done()).await.map(|r| r.revision),
            }
        }));
    }
    let mut revisions = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match (i % 3, t.await.unwrap()) {
            (0, Ok(revision)) => revisions.push(revision),
            (_, Err(StoreError::LeaseNotFound)) if i % 3 != 0 => {}
            (_, other) => panic!("request {i}: {other:?}"),
        }
    }
    revisions.sort();
    assert_eq!(revisions, (2..=101).collect::<Vec<_>>(), "only the puts took revisions");
    assert_eq!(store.revision(), 101);
    let count = |prefix: &str| {
        let store = store.clone();
        let range = Range::of(KeyRange::prefix(prefix));
        async move { store.range(range).await.unwrap().count }
    };
    assert_eq!(count("ok/").await, 100);
    assert_eq!(count("bad/").await, 0);
    assert_eq!(count("half/").await, 0);
}

#[tokio::test]
async fn ranges_with_limit_count_sort_and_past_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for i in 0..10 {
        store.put(format!("/p/{i}"), format!("v{i}")).await.unwrap();
    }
    store.put("/q", "outside").await.unwrap();
    let at = store.revision();
    let page = store
        .range(Range {
            limit: 3,
            ..Range::of(KeyRange::prefix("/p/"))
        })
        .await
        .unwrap();
    assert_eq!(page.kvs.len(), 3);
    assert!(page.more);
    assert_eq!(page.count, 10);
    assert_eq!(page.kvs[0].key, b"/p/0");

    // Continue from after the last key at the same revision while writes go on.
    store.put("/p/9", "changed").await.unwrap();
    store.delete(KeyRange::key("/p/5")).await.unwrap();
    let rest = store
        .range(Range {
            revision: at,
            ..Range::of(KeyRange::new("/p/3", prefix_end(b"/p/")))
        })
        .await
        .unwrap();
    let values: Vec<_> = rest
        .kvs
        .iter()
        .map(|kv| String::from_utf8(kv.value.clone()).unwrap())
        .collect();
    assert_eq!(values, ["v3", "v4", "v5", "v6", "v7", "v8", "v9"]);
    assert_eq!(rest.count, 7);

    let now = store.range(Range::of(KeyRange::prefix("/p/"))).await.unwrap();
    assert_eq!(now.count, 9);
    let count = store
        .range(Range {
            count_only: true,
            ..Range::of(KeyRange::prefix("/p/"))
        })
        .await
        .unwrap();
    assert_eq!((count.count, count.kvs.len()), (9, 0));

    let by_mod_desc = store
        .range(Range {
            sort_order: SortOrder::Descend,
            sort_target: SortTarget::Mod,
            limit: 1,
            ..Range::of(KeyRange::prefix("/p/"))
        })
        .await
        .unwrap();
    assert_eq!(by_mod_desc.kvs[0].key, b"/p/9");

    let all = store
        .range(Range {
            keys_only: true,
            ..Range::of(KeyRange::new(vec![0], vec![0]))
        })
        .await
        .unwrap();
    assert_eq!(all.count, 10);
    assert!(all.kvs.iter().all(|kv| kv.value.is_empty()));

    assert!(matches!(
        store
            .range(Range {
                revision: store.revision() + 1,
                ..Range::of(KeyRange::key("/q"))
            })
            .await,
        Err(StoreError::FutureRevision)
    ));
}

#[tokio::test]
async fn delete_range_reports_previous_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for k in ["/d/a", "/d/b", "/e"] {
        store.put(k, "v").await.unwrap();
    }
    let result = store
        .txn(Txn::single(Op::Delete(Delete {
            range: KeyRange::prefix("/d/"),
            prev_kv: true,
        })))
        .await
        .unwrap();
    match &result.results[0] {
        OpResult::Delete { deleted, prev } => {
            assert_eq!(*deleted, 2);
            assert_eq!(prev.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(result.revision, 5, "one revision for the whole delete");
    assert!(store.get("/e").await.unwrap().is_some());
}

#[tokio::test]
async fn bad_requests_get_etcd_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert!(matches!(store.put("", "v").await, Err(StoreError::EmptyKey)));
    let huge = vec![b'x'; MAX_REQUEST_BYTES + 1];
    assert!(matches!(store.put("big", huge).await, Err(StoreError::TooLarge)));
    let dup = Txn {
        success: vec![put_op("a", "1"), put_op("a", "2")],
        ..Default::default()
    };
    assert!(matches!(store.txn(dup).await, Err(StoreError::DuplicateKey)));
    let with_missing_lease = Txn::single(Op::Put(Put {
        key: "k".into(),
        value: "v".into(),
        lease: 42,
        ..Default::default()
    }));
    assert!(matches!(
        store.txn(with_missing_lease).await,
        Err(StoreError::LeaseNotFound)
    ));
    let ignore_on_missing = Txn::single(Op::Put(Put {
        key: "nope".into(),
        ignore_value: true,
        ..Default::default()
    }));
    assert!(matches!(
        store.txn(ignore_on_missing).await,
        Err(StoreError::KeyNotFound)
    ));
    // A failed request in a batch does not disturb the store.
    assert_eq!(store.revision(), 1);
    assert!(matches!(store.lease_revoke(7).await, Err(StoreError::LeaseNotFound)));
}

#[tokio::test]
async fn leases_attach_keys_and_revoke_deletes_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (id, ttl) = store.lease_grant(0, 60).await.unwrap();
    assert_eq!(ttl, 60);
    assert!(matches!(store.lease_grant(id, 10).await, Err(StoreError::LeaseExists)));
    for k in ["l1", "l2"] {
        store
            .txn(Txn::single(Op::Put(Put {
                key: k.into(),
                value: "v".into(),
                lease: id,
                ..Default::default()
            })))
            .await
            .unwrap();
    }
    // Re-putting without the lease detaches the key.
    store.put("l2", "free").await.unwrap();
    let info = store.lease_time_to_live(id, true).await.unwrap();
    assert_eq!(info.keys, vec![b"l1".to_vec()]);
    assert!(info.remaining > 55 && info.remaining <= 60);
    assert_eq!(store.leases(), vec![id]);

    let before = store.revision();
    assert_eq!(store.lease_revoke(id).await.unwrap(), before + 1);
    assert!(store.get("l1").await.unwrap().is_none());
    assert!(store.get("l2").await.unwrap().is_some());
    assert!(store.leases().is_empty());
    assert!(matches!(store.lease_keep_alive(id), Err(StoreError::LeaseNotFound)));
}

#[tokio::test]
async fn expired_leases_delete_their_keys_and_survive_restarts_until_then() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (short, _) = store.lease_grant(0, 1).await.unwrap(); // raised to the 2 s minimum
    let (long, _) = store.lease_grant(0, 3600).await.unwrap();
    for (k, lease) in [("short", short), ("long", long)] {
        store
            .txn(Txn::single(Op::Put(Put {
                key: k.into(),
                value: "v".into(),
                lease,
                ..Default::default()
            })))
            .await
            .unwrap();
    }
    let store = reopen(store, &dir).await;
    assert_eq!(store.leases().len(), 2, "leases are durable");
    let mut watcher = store.watch(KeyRange::key("short"), 0).unwrap();
    let shutdown = CancellationToken::new();
    let background = tokio::spawn(store.clone().run(shutdown.clone()));
    let events = tokio::time::timeout(Duration::from_secs(10), watcher.next())
        .await
        .expect("the short lease expires")
        .unwrap();
    assert_eq!(events[0].kind, EventKind::Delete);
    assert!(store.get("short").await.unwrap().is_none());
    assert!(store.get("long").await.unwrap().is_some());
    assert_eq!(store.leases(), vec![long]);
    shutdown.cancel();
    background.await.unwrap();
}

#[tokio::test]
async fn watch_replays_history_with_previous_values_then_follows_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.put("/w/a", "1").await.unwrap(); // 2
    store.put("/w/a", "2").await.unwrap(); // 3
    store.put("/other", "x").await.unwrap(); // 4
    store.delete(KeyRange::key("/w/a")).await.unwrap(); // 5

    let mut watcher = store.watch(KeyRange::prefix("/w/"), 2).unwrap();
    let events = watcher.next().await.unwrap();
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.kv.mod_revision, e.prev.as_ref().map(|p| p.value.clone())))
        .collect();
    assert_eq!(
        summary,
        vec![
            (EventKind::Put, 2, None),
            (EventKind::Put, 3, Some(b"1".to_vec())),
            (EventKind::Delete, 5, Some(b"2".to_vec())),
        ]
    );
    store.put("/w/b", "live").await.unwrap();
    let live = tokio::time::timeout(Duration::from_secs(5), watcher.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].kv.key.as_slice(), live[0].kv.mod_revision), (&b"/w/b"[..], 6));
}

#[tokio::test]
async fn watch_from_a_revision_works_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for i in 0..5 {
        store.put("k", i.to_string()).await.unwrap();
    }
    let store = reopen(store, &dir).await;
    assert_eq!(store.revision(), 6);
    let mut watcher = store.watch(KeyRange::key("k"), 4).unwrap();
    let events = watcher.next().await.unwrap();
    let revisions: Vec<_> = events.iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(revisions, [4, 5, 6]);
    assert_eq!(events[0].prev.as_ref().unwrap().value, b"1");
}

#[tokio::test]
async fn a_watcher_that_falls_far_behind_still_sees_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db"), Options { sync: Sync::Normal }).unwrap();
    let mut watcher = store.watch(KeyRange::prefix("/s/"), 0).unwrap();
    let n = watch::INBOX_CAPACITY as i64 + 300;
    for i in 0..n {
        store.put(format!("/s/{}", i % 7), i.to_string()).await.unwrap();
    }
    let mut seen = 0;
    let mut last = 0;
    while seen < n {
        for e in watcher.next().await.unwrap() {
            assert_eq!(e.kv.mod_revision, last.max(1) + 1, "in order, none skipped");
            last = e.kv.mod_revision;
            seen += 1;
        }
    }
    assert_eq!(last, store.revision());
}

#[tokio::test]
async fn compaction_refuses_old_reads_and_removes_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let shutdown = CancellationToken::new();
    let background = tokio::spawn(store.clone().run(shutdown.clone()));
    for i in 0..50 {
        store.put("hot", i.to_string()).await.unwrap(); // 2..=51
    }
    store.put("gone", "x").await.unwrap(); // 52
    store.delete(KeyRange::key("gone")).await.unwrap(); // 53
    store.put("kept", "y").await.unwrap(); // 54

    let rows = |store: &Store| {
        let conn = rusqlite::Connection::open(store.path()).unwrap();
        conn.query_row("SELECT count(*) FROM kv", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    assert_eq!(rows(&store), 53);
    store.compact(40, true).await.unwrap();
    assert!(matches!(
        store
            .range(Range {
                revision: 39,
                ..Range::of(KeyRange::key("hot"))
            })
            .await,
        Err(StoreError::Compacted { compact_revision: 40 })
    ));
    assert!(matches!(
        store.watch(KeyRange::key("hot"), 39),
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        store.compact(30, false).await,
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        store.compact(1000, false).await,
        Err(StoreError::FutureRevision)
    ));
    // The compaction revision itself is still readable and watchable.
    let at = store
        .range(Range {
            revision: 40,
            ..Range::of(KeyRange::key("hot"))
        })
        .await
        .unwrap();
    assert_eq!(at.kvs[0].value, b"38");
    let mut w = store.watch(KeyRange::key("hot"), 40).unwrap();
    let events = w.next().await.unwrap();
    assert_eq!(events[0].kv.mod_revision, 40);
    assert_eq!(events[0].prev.as_ref().unwrap().value, b"37");
    assert_eq!(rows(&store), 53 - 37);

    store.compact(store.revision(), true).await.unwrap();
    // hot's newest row, gone's tombstone at 53 (below 54) went, kept stays.
    assert_eq!(rows(&store), 2);
    assert_eq!(store.get("hot").await.unwrap().unwrap().value, b"49");
    assert!(store.get("gone").await.unwrap().is_none());
    store.put("gone", "back").await.unwrap();
    assert_eq!(store.get("gone").await.unwrap().unwrap().version, 1);
    shutdown.cancel();
    background.await.unwrap();
}

#[tokio::test]
async fn snapshots_restore_into_a_fresh_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for i in 0..20 {
        store.put(format!("/s/{i}"), "v").await.unwrap();
    }
    let file = dir.path().join("snap");
    assert_eq!(store.snapshot(file.clone()).await.unwrap(), 21);
    assert_eq!(
        std::fs::metadata(&file).unwrap().len() % 512,
        32,
        "etcdctl's checksum rule"
    );

    let target = tempfile::tempdir().unwrap();
    let db = target.path().join("db/state.db");
    assert_eq!(snapshot::restore(&file, &db).unwrap(), 21);
    assert!(snapshot::restore(&file, &db).is_err(), "never over an existing store");
    let restored = Store::open(&db, Options::default()).unwrap();
    assert_eq!(restored.revision(), 21);
    assert_eq!(
        restored.range(Range::of(KeyRange::prefix("/s/"))).await.unwrap().count,
        20
    );

    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 0xff;
    let corrupt = dir.path().join("corrupt");
    std::fs::write(&corrupt, &bytes).unwrap();
    let err = snapshot::restore(&corrupt, &target.path().join("other/state.db")).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[tokio::test]
async fn a_database_that_is_not_ours_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE other (x)")
        .unwrap();
    let err = Store::open(&path, Options::default()).err().unwrap();
    assert!(err.to_string().contains("not a kube store"), "{err}");
    std::fs::write(&path, b"garbage that is not sqlite at all, definitely not").unwrap();
    assert!(Store::open(&path, Options::default()).is_err());
}

/// A small tmpfs mounted for the life of the value (tests run as root).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", path])
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs needs root");
        SmallDisk { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{mode}"), self.path().to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn a_full_disk_fails_writes_cleanly_and_keeps_acknowledged_data() {
    let disk = SmallDisk::new("6m");
    // Room we can give back later.
    std::fs::write(disk.path().join("ballast"), vec![0u8; 1024 * 1024]).unwrap();
    let db = disk.path().join("state.db");
    let store = Store::open(&db, Options::default()).unwrap();
    let value = vec![7u8; 256 * 1024];
    let mut acknowledged = Vec::new();
    let full = loop {
        let key = format!("/fill/{}", acknowledged.len());
        match store.put(key.clone(), value.clone()).await {
            Ok(r) => acknowledged.push((key, r.revision)),
            Err(err) => break err,
        }
        assert!(acknowledged.len() < 100, "the disk should have filled up");
    };
    assert!(matches!(full, StoreError::NoSpace), "{full:?}");
    assert_eq!(full.to_string(), "etcdserver: mvcc: database space exceeded");
    for (key, revision) in &acknowledged {
        let kv = store.get(key.clone()).await.unwrap().unwrap();
        assert_eq!((kv.mod_revision, kv.value.len()), (*revision, value.len()));
    }
    let head = store.revision();
    assert_eq!(head, acknowledged.last().unwrap().1, "a failed write takes no revision");

    std::fs::remove_file(disk.path().join("ballast")).unwrap();
    let after = store.put("/after", "room again").await.unwrap();
    assert_eq!(after.revision, head + 1);
    let store = reopen_at(store, &db).await;
    assert_eq!(store.revision(), head + 1);
    assert_eq!(
        store.range(Range::of(KeyRange::prefix("/fill/"))).await.unwrap().count,
        acknowledged.len() as i64
    );
    tokio::task::spawn_blocking(move || store.close()).await.unwrap();

    disk.remount("ro");
    let err = Store::open(&db, Options::default())
        .err()
        .expect("a read-only database cannot be opened for writing");
    assert!(matches!(err, StoreError::ReadOnly(_)), "{err:?}");
    disk.remount("rw");
    assert_eq!(Store::open(&db, Options::default()).unwrap().revision(), head + 1);
}

async fn reopen_at(store: Store, db: &std::path::Path) -> Store {
    tokio::task::spawn_blocking(move || store.close()).await.unwrap();
    Store::open(db, Options::default()).unwrap()
}

/// The WAL file, with an fsync that fails while `fail` is set.
struct FlakyLog {
    wal: durable::WalFile,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

impl durable::Log for FlakyLog {
    fn sync(&mut self) -> std::io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected EIO"));
        }
        self.wal.sync()
    }
}

#[tokio::test]
async fn a_failed_fsync_acknowledges_nothing_and_refuses_everything_until_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let store = Store::open_with(&dir.path().join("state.db"), Options::default(), {
        let fail = fail.clone();
        move |wal| Box::new(FlakyLog { wal, fail })
    })
    .unwrap();
    store.put("kept", "1").await.unwrap();
    let mut watcher = store.watch(KeyRange::prefix("lost"), 0).unwrap();

    fail.store(true, Ordering::SeqCst);
    let lost = store.put("lost", "2").await;
    assert!(matches!(lost, Err(StoreError::SyncFailed)), "{lost:?}");
    // The kernel may have dropped what it could not write, so a later fsync that
    // succeeds proves nothing: the store must not trust it.
    fail.store(false, Ordering::SeqCst);
    let after = store.put("after", "3").await;
    assert!(matches!(after, Err(StoreError::SyncFailed)), "{after:?}");
    let read = store.get("kept").await;
    assert!(
        matches!(read, Err(StoreError::SyncFailed)),
        "a read could see the lost write: {read:?}"
    );
    assert_eq!(store.revision(), 2, "the lost write is not published");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), watcher.next())
            .await
            .is_err(),
        "no watch event for a write that is not durable"
    );

    // A restart recovers what is on disk and takes writes again.
    let store = reopen(store, &dir).await;
    assert_eq!(store.get("kept").await.unwrap().unwrap().value, b"1");
    store.put("after", "3").await.unwrap();
}

#[test]
fn cached_lookups_are_not_planned_again_on_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = sqlite::open(&dir.path().join("state.db"), false).unwrap();
    sqlite::migrate(&mut conn).unwrap();
    for key in ["a", "b", "c"] {
        sqlite::get_live(&conn, key.as_bytes()).unwrap();
    }
    let stmt = conn.prepare_cached(sqlite::GET_LIVE).unwrap();
    assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
}

#[test]
fn a_leases_keys_are_found_through_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = sqlite::open(&dir.path().join("state.db"), false).unwrap();
    sqlite::migrate(&mut conn).unwrap();
    let plan: String = conn
        .query_row(&format!("EXPLAIN QUERY PLAN {}", sqlite::LEASE_KEYS), [7], |r| r.get(3))
        .unwrap();
    assert!(plan.contains("INDEX live_lease"), "{plan}");
}

/// The WAL file, with an fsync that waits while the gate is shut.
struct GatedLog {
    wal: durable::WalFile,
    shut: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl durable::Log for GatedLog {
    fn sync(&mut self) -> std::io::Result<()> {
        let (shut, opened) = &*self.shut;
        let _open = opened.wait_while(lock(shut), |shut| *shut).unwrap();
        self.wal.sync()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_neither_read_nor_answered_before_its_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let shut = Arc::new((Mutex::new(true), std::sync::Condvar::new()));
    let store = Store::open_with(&path, Options::default(), {
        let shut = shut.clone();
        move |wal| Box::new(GatedLog { wal, shut })
    })
    .unwrap();
    let put = tokio::spawn({
        let store = store.clone();
        async move { store.put("k", "v").await }
    });
    // Wait until the write is committed in SQLite, where readers can see it.
    let probe = sqlite::open(&path, true).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sqlite::get_live(&probe, b"k").unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the write was never committed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let get = tokio::spawn({
        let store = store.clone();
        async move { store.get("k").await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!put.is_finished(), "answered before the fsync");
    assert!(!get.is_finished(), "served a read of a write before its fsync");
    assert_eq!(store.revision(), 1, "published before the fsync");

    *lock(&shut.0) = false;
    shut.1.notify_all();
    assert_eq!(put.await.unwrap().unwrap().revision, 2);
    assert_eq!(get.await.unwrap().unwrap().unwrap().value, b"v");
    assert_eq!(store.revision(), 2);
}
