//! Durability: `kill -9` in the middle of a write storm loses no acknowledged write,
//! and a restarted server continues the same history (revisions, watch from an old
//! revision, compaction, leases).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Server;
use common::grpc::{self, Watch};
use kubebox::etcd::proto::etcdserverpb::CompactionRequest;
use kubebox::etcd::proto::etcdserverpb::{
    DeleteRangeRequest, LeaseGrantRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, kv_client::KvClient, request_op, watch_request,
};
use kubebox::etcd::proto::mvccpb::{KeyValue, event::EventType};
use tonic::transport::Channel;

const TASKS: usize = 16;

/// Two keys written by one txn with one value, and the txn's revision.
struct TxnPair {
    a: Vec<u8>,
    b: Vec<u8>,
    value: Vec<u8>,
    rev: i64,
}

/// What the writers were told had been committed.
#[derive(Default)]
struct Acked {
    /// key → (value, revision of the put)
    puts: HashMap<Vec<u8>, (Vec<u8>, i64)>,
    /// txn pairs
    txns: Vec<TxnPair>,
    /// keys whose delete was acknowledged
    deleted: Vec<Vec<u8>>,
}

/// The whole keyspace under `prefix` at the newest revision, and that revision.
async fn read_all(kv: &mut KvClient<Channel>, prefix: &[u8]) -> (HashMap<Vec<u8>, KeyValue>, i64) {
    let mut end = prefix.to_vec();
    *end.last_mut().unwrap() += 1;
    let resp = kv
        .range(RangeRequest {
            key: prefix.to_vec(),
            range_end: end,
            ..Default::default()
        })
        .await
        .expect("range after restart")
        .into_inner();
    let rev = resp.header.expect("header").revision;
    (resp.kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect(), rev)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    let mut server = Server::start_etcd_compatible();
    let url = server.url();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let count = Arc::new(AtomicUsize::new(0));

    // A few connections shared by the tasks, like a real client pool.
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(grpc::channel(&url).await);
    }

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let mut kv = KvClient::new(channels[t % channels.len()].clone());
        let acked = acked.clone();
        let count = count.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let value = format!("value-{t}-{i}-{}", "x".repeat(64)).into_bytes();
                match t {
                    // Plain puts.
                    0..12 => {
                        let key = format!("storm/put/{t:02}/{i:06}").into_bytes();
                        let req = PutRequest {
                            key: key.clone(),
                            value: value.clone(),
                            ..Default::default()
                        };
                        let Ok(resp) = kv.put(req).await else { return };
                        let rev = resp.into_inner().header.unwrap().revision;
                        acked.lock().unwrap().puts.insert(key, (value, rev));
                    }
                    // Two puts in one txn: all or nothing.
                    12..14 => {
                        let a = format!("storm/txn/{t:02}/{i:06}/a").into_bytes();
                        let b = format!("storm/txn/{t:02}/{i:06}/b").into_bytes();
                        let op = |key: &Vec<u8>| RequestOp {
                            request: Some(request_op::Request::RequestPut(PutRequest {
                                key: key.clone(),
                                value: value.clone(),
                                ..Default::default()
                            })),
                        };
                        let req = TxnRequest {
                            compare: vec![],
                            success: vec![op(&a), op(&b)],
                            failure: vec![],
                        };
                        let Ok(resp) = kv.txn(req).await else { return };
                        let rev = resp.into_inner().header.unwrap().revision;
                        acked.lock().unwrap().txns.push(TxnPair { a, b, value, rev });
                    }
                    // Put then delete.
                    _ => {
                        let key = format!("storm/del/{t:02}/{i:06}").into_bytes();
                        let req = PutRequest {
                            key: key.clone(),
                            value,
                            ..Default::default()
                        };
                        if kv.put(req).await.is_err() {
                            return;
                        }
                        let req = DeleteRangeRequest {
                            key: key.clone(),
                            ..Default::default()
                        };
                        let Ok(resp) = kv.delete_range(req).await else {
                            return;
                        };
                        assert_eq!(resp.into_inner().deleted, 1);
                        acked.lock().unwrap().deleted.push(key);
                    }
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Let the storm build up, then pull the plug.
    let started = Instant::now();
    while count.load(Ordering::Relaxed) < 1500 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before_kill = count.load(Ordering::Relaxed);
    assert!(before_kill > 100, "only {before_kill} writes acknowledged in 20 s");
    server.kill9();
    eprintln!("kill -9 after {before_kill} acknowledged writes");
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("a writer hung after the server died")
            .expect("writer task panicked");
    }

    server.restart();
    let mut kv = grpc::kv(&server.url()).await;
    let (live, rev) = read_all(&mut kv, b"storm/").await;

    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let max_acked_rev = acked
        .puts
        .values()
        .map(|(_, r)| *r)
        .chain(acked.txns.iter().map(|t| t.rev))
        .max()
        .unwrap();
    assert!(
        rev >= max_acked_rev,
        "revision went back from {max_acked_rev} (acknowledged) to {rev} after restart"
    );

    let mut lost = Vec::new();
    for (key, (value, put_rev)) in &acked.puts {
        match live.get(key) {
            Some(kv) if &kv.value == value && kv.mod_revision == *put_rev => {}
            other => lost.push(format!(
                "{}: acked at {put_rev}, found {:?}",
                String::from_utf8_lossy(key),
                other.map(|kv| (String::from_utf8_lossy(&kv.value).into_owned(), kv.mod_revision))
            )),
        }
    }
    for t in &acked.txns {
        for key in [&t.a, &t.b] {
            match live.get(key) {
                Some(kv) if kv.value == t.value && kv.mod_revision == t.rev => {}
                other => lost.push(format!(
                    "txn {}: acked at {}, found {:?}",
                    String::from_utf8_lossy(key),
                    t.rev,
                    other.map(|kv| kv.mod_revision)
                )),
            }
        }
    }
    for key in &acked.deleted {
        if live.contains_key(key) {
            lost.push(format!(
                "{}: delete acknowledged but key is back",
                String::from_utf8_lossy(key)
            ));
        }
    }
    // Unacknowledged txns: both halves or neither.
    for (key, kv) in &live {
        if let Some(a) = key.strip_suffix(b"/a").filter(|_| key.starts_with(b"storm/txn/")) {
            let mut b = a.to_vec();
            b.extend_from_slice(b"/b");
            match live.get(&b) {
                Some(kb) if kb.mod_revision == kv.mod_revision => {}
                _ => lost.push(format!("txn {} half applied", String::from_utf8_lossy(a))),
            }
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost or wrong after kill -9, e.g.:\n{}",
        lost.len(),
        acked.puts.len() + 2 * acked.txns.len() + acked.deleted.len(),
        lost.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );

    // The store takes writes again, continuing the revision sequence.
    let resp = kv
        .put(PutRequest {
            key: b"after/crash".to_vec(),
            value: b"ok".to_vec(),
            ..Default::default()
        })
        .await
        .expect("put after restart")
        .into_inner();
    assert_eq!(resp.header.unwrap().revision, rev + 1);
}

/// (type, key, value, mod_revision, prev value) of an event, for comparisons.
type Ev = (EventType, String, String, i64, Option<String>);

fn ev(e: &kubebox::etcd::proto::mvccpb::Event) -> Ev {
    let kv = e.kv.clone().unwrap_or_default();
    (
        EventType::try_from(e.r#type).unwrap(),
        String::from_utf8_lossy(&kv.key).into_owned(),
        String::from_utf8_lossy(&kv.value).into_owned(),
        kv.mod_revision,
        e.prev_kv
            .as_ref()
            .map(|p| String::from_utf8_lossy(&p.value).into_owned()),
    )
}

async fn put(kv: &mut KvClient<Channel>, key: &str, value: &str) -> i64 {
    kv.put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
    .await
    .expect("put")
    .into_inner()
    .header
    .unwrap()
    .revision
}

async fn del(kv: &mut KvClient<Channel>, key: &str) -> i64 {
    kv.delete_range(DeleteRangeRequest {
        key: key.into(),
        ..Default::default()
    })
    .await
    .expect("delete")
    .into_inner()
    .header
    .unwrap()
    .revision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_revisions_and_watch_history() {
    let mut server = Server::start_etcd_compatible();
    let mut kv = grpc::kv(&server.url()).await;
    let r1 = put(&mut kv, "h/a", "1").await;
    let r2 = put(&mut kv, "h/a", "2").await;
    let r3 = put(&mut kv, "h/b", "1").await;
    let r4 = del(&mut kv, "h/a").await;
    let r5 = put(&mut kv, "h/c", "1").await;
    assert_eq!([r2, r3, r4, r5], [r1 + 1, r1 + 2, r1 + 3, r1 + 4]);
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    let before = kv.range(all.clone()).await.unwrap().into_inner();

    // Once with kill -9, once with a clean stop.
    for round in 0..2 {
        drop(kv);
        if round == 0 {
            server.restart();
        } else {
            let status = server.signal_and_wait("TERM", Duration::from_secs(10));
            // (A real etcd re-raises the signal instead of exiting 0.)
            if !server.is_real_etcd() {
                assert_eq!(status.map(|s| s.code()), Some(Some(0)), "SIGTERM exit");
            }
            server.spawn();
            server.wait_ready();
        }
        kv = grpc::kv(&server.url()).await;
        let after = kv.range(all.clone()).await.unwrap().into_inner();
        assert_eq!(
            after.header.unwrap().revision,
            r5,
            "revision after restart (round {round})"
        );
        assert_eq!(after.kvs, before.kvs, "keys and their metadata after restart");
        // Old revisions are still readable.
        let old = kv
            .range(RangeRequest {
                key: b"h/a".to_vec(),
                revision: r1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(old.kvs.len(), 1);
        assert_eq!(old.kvs[0].value, b"1");
    }

    // Watch from the first revision replays the whole history, then goes live.
    let (mut w, id) = Watch::all_keys(&server.url(), r1, true).await;
    let want: Vec<Ev> = vec![
        (EventType::Put, "h/a".into(), "1".into(), r1, None),
        (EventType::Put, "h/a".into(), "2".into(), r2, Some("1".into())),
        (EventType::Put, "h/b".into(), "1".into(), r3, None),
        (EventType::Delete, "h/a".into(), "".into(), r4, Some("2".into())),
        (EventType::Put, "h/c".into(), "1".into(), r5, None),
    ];
    let mut got = Vec::new();
    while got.len() < want.len() {
        let resp = w.next().await;
        assert_eq!(resp.watch_id, id);
        assert!(!resp.canceled, "{resp:?}");
        got.extend(resp.events.iter().map(ev));
    }
    assert_eq!(got, want);

    let r6 = put(&mut kv, "h/b", "2").await;
    assert_eq!(r6, r5 + 1, "first revision after restart");
    let resp = w.next().await;
    assert_eq!(
        resp.events.iter().map(ev).collect::<Vec<_>>(),
        vec![(
            EventType::Put,
            "h/b".to_string(),
            "2".to_string(),
            r6,
            Some("1".to_string())
        )]
    );

    // A progress request answers with the current revision and no events.
    w.send(watch_request::RequestUnion::ProgressRequest(WatchProgressRequest {}))
        .await;
    let resp = w.next().await;
    assert!(resp.events.is_empty(), "progress response with events: {resp:?}");
    assert!(!resp.canceled && !resp.created, "{resp:?}");
    assert_eq!(resp.header.unwrap().revision, r6, "progress revision");

    // Cancel: confirmed, then silence.
    w.send(watch_request::RequestUnion::CancelRequest(WatchCancelRequest {
        watch_id: id,
    }))
    .await;
    let resp = w.next().await;
    assert!(resp.canceled, "cancel not confirmed: {resp:?}");
    assert_eq!(resp.watch_id, id);
    put(&mut kv, "h/x", "after cancel").await;
    let more = w.next_within(Duration::from_millis(700)).await;
    assert!(more.is_none(), "event after cancel: {more:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_survives_restart() {
    let mut server = Server::start_etcd_compatible();
    let mut kv = grpc::kv(&server.url()).await;
    let r1 = put(&mut kv, "c", "1").await;
    let r2 = put(&mut kv, "c", "2").await;
    put(&mut kv, "c", "3").await;
    kv.compact(CompactionRequest {
        revision: r2,
        physical: true,
    })
    .await
    .expect("compact");
    drop(kv);
    server.restart();
    let mut kv = grpc::kv(&server.url()).await;

    let err = kv
        .range(RangeRequest {
            key: b"c".to_vec(),
            revision: r1,
            ..Default::default()
        })
        .await
        .expect_err("read below the compaction after restart");
    assert!(
        err.message()
            .contains("etcdserver: mvcc: required revision has been compacted"),
        "{err:?}"
    );
    let ok = kv
        .range(RangeRequest {
            key: b"c".to_vec(),
            revision: r2,
            ..Default::default()
        })
        .await
        .expect("read at the compaction revision")
        .into_inner();
    assert_eq!(ok.kvs[0].value, b"2");

    // A watch from below the compaction is cancelled and told where history starts.
    let create = WatchCreateRequest {
        key: b"c".to_vec(),
        start_revision: r1,
        ..Default::default()
    };
    let mut w = Watch::open(&server.url(), create).await;
    let mut resp = w.next().await;
    if resp.created && !resp.canceled {
        resp = w.next().await;
    }
    assert!(resp.canceled, "watch below compaction not cancelled: {resp:?}");
    assert_eq!(resp.compact_revision, r2, "{resp:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_survive_restart_and_still_expire() {
    let mut server = Server::start_etcd_compatible();
    let url = server.url();
    let mut lease = grpc::lease(&url).await;
    let mut kv = grpc::kv(&url).await;
    let long = lease
        .lease_grant(LeaseGrantRequest { ttl: 600, id: 0 })
        .await
        .expect("grant")
        .into_inner()
        .id;
    let short = lease
        .lease_grant(LeaseGrantRequest { ttl: 2, id: 0 })
        .await
        .expect("grant")
        .into_inner()
        .id;
    for (key, id) in [("l/long", long), ("l/short", short)] {
        kv.put(PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            lease: id,
            ..Default::default()
        })
        .await
        .expect("put with lease");
    }
    drop((lease, kv));
    server.kill9();
    // The short lease's TTL runs out while the server is down.
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.spawn();
    server.wait_ready();

    let mut lease = grpc::lease(&url).await;
    let mut kv = grpc::kv(&url).await;
    let ttl = lease
        .lease_time_to_live(LeaseTimeToLiveRequest { id: long, keys: true })
        .await
        .expect("time to live")
        .into_inner();
    assert!(ttl.ttl > 0, "long lease lost in the restart: {ttl:?}");
    assert_eq!(ttl.granted_ttl, 600);
    assert_eq!(ttl.keys, vec![b"l/long".to_vec()]);

    // The expired lease's key goes away soon after the restart.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let resp = kv
            .range(RangeRequest {
                key: b"l/".to_vec(),
                range_end: b"l0".to_vec(),
                keys_only: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let keys: Vec<_> = resp.kvs.iter().map(|kv| kv.key.clone()).collect();
        if keys == vec![b"l/long".to_vec()] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "keys under l/ 15 s after restart: {:?}",
            keys.iter()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
