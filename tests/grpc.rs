//! The etcd v3 API at the gRPC level, for what etcdctl 3.4 cannot express: count-only
//! ranges, txn reads of their own writes, nested txns, lease and range compares,
//! several watches on one stream with filters, the keep-alive stream, the snapshot
//! stream, and the gRPC status codes clients map errors by. Like tests/etcdctl.rs,
//! `KUBEBOX_TEST_AGAINST=etcd` runs these against a real etcd.

mod common;

use std::time::Duration;

use common::Server;
use common::grpc::{self, Watch};
use kubebox::etcd::proto::etcdserverpb::{
    AlarmRequest, CompactionRequest, Compare, DefragmentRequest, DeleteRangeRequest, LeaseGrantRequest,
    LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest,
    RequestOp, ResponseOp, SnapshotRequest, StatusRequest, TxnRequest, TxnResponse, WatchCreateRequest, compare,
    kv_client::KvClient, request_op, response_op, watch_create_request::FilterType,
};
use kubebox::etcd::proto::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

fn range(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        ..Default::default()
    }
}

fn prefix(p: &str) -> RangeRequest {
    let mut end = p.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    RangeRequest {
        key: p.into(),
        range_end: end,
        ..Default::default()
    }
}

fn put_req(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

async fn put(kv: &mut KvClient<Channel>, key: &str, value: &str) -> i64 {
    kv.put(put_req(key, value))
        .await
        .expect("put")
        .into_inner()
        .header
        .unwrap()
        .revision
}

fn op_put(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(put_req(key, value))),
    }
}

fn op_range(r: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(r)),
    }
}

fn cmp(
    key: &str,
    result: compare::CompareResult,
    target: compare::CompareTarget,
    value: compare::TargetUnion,
) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.into(),
        target_union: Some(value),
        range_end: vec![],
    }
}

async fn txn(
    kv: &mut KvClient<Channel>,
    compare: Vec<Compare>,
    success: Vec<RequestOp>,
    failure: Vec<RequestOp>,
) -> TxnResponse {
    kv.txn(TxnRequest {
        compare,
        success,
        failure,
    })
    .await
    .expect("txn")
    .into_inner()
}

fn range_response(op: &ResponseOp) -> &kubebox::etcd::proto::etcdserverpb::RangeResponse {
    match &op.response {
        Some(response_op::Response::ResponseRange(r)) => r,
        other => panic!("not a range response: {other:?}"),
    }
}

#[tokio::test]
async fn range_count_only_keys_only_at_revisions() {
    let s = Server::start_etcd_compatible();
    let mut kv = grpc::kv(&s.url()).await;
    let mut revs = Vec::new();
    for i in 1..=5 {
        revs.push(put(&mut kv, &format!("r/{i}"), &format!("value{i}")).await);
    }

    let resp = kv
        .range(RangeRequest {
            count_only: true,
            ..prefix("r/")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.kvs.is_empty(), "count_only returned kvs");
    assert_eq!(resp.count, 5);

    let resp = kv
        .range(RangeRequest {
            count_only: true,
            revision: revs[2],
            ..prefix("r/")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.count, 3, "count at an old revision");

    let resp = kv
        .range(RangeRequest {
            count_only: true,
            ..range("missing")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.count, 0);

    let resp = kv
        .range(RangeRequest {
            keys_only: true,
            limit: 2,
            ..prefix("r/")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.count, 5);
    assert!(resp.more);
    assert_eq!(resp.kvs.len(), 2);
    for (kv, rev) in resp.kvs.iter().zip(&revs) {
        assert!(kv.value.is_empty(), "keys_only returned a value");
        assert_eq!(kv.mod_revision, *rev, "keys_only keeps the metadata");
        assert_eq!(kv.version, 1);
    }
}

#[tokio::test]
async fn put_prev_kv_and_errors_with_codes() {
    let s = Server::start_etcd_compatible();
    let mut kv = grpc::kv(&s.url()).await;
    let resp = kv
        .put(PutRequest {
            prev_kv: true,
            ..put_req("k", "v1")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.prev_kv, None, "no previous value on create");
    let r1 = resp.header.unwrap().revision;
    let resp = kv
        .put(PutRequest {
            prev_kv: true,
            ..put_req("k", "v2")
        })
        .await
        .unwrap()
        .into_inner();
    let prev = resp.prev_kv.expect("prev_kv");
    assert_eq!(
        (prev.value.as_slice(), prev.mod_revision, prev.version),
        (&b"v1"[..], r1, 1)
    );

    let check = |err: tonic::Status, code: Code, msg: &str| {
        assert_eq!(err.code(), code, "{err:?}");
        assert_eq!(err.message(), msg, "{err:?}");
    };
    let err = kv
        .range(RangeRequest {
            revision: 1_000_000,
            ..range("k")
        })
        .await
        .unwrap_err();
    check(
        err,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    kv.compact(CompactionRequest {
        revision: r1 + 1,
        physical: false,
    })
    .await
    .unwrap();
    let err = kv
        .range(RangeRequest {
            revision: r1,
            ..range("k")
        })
        .await
        .unwrap_err();
    check(
        err,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    let err = kv
        .put(PutRequest {
            lease: 0x1234_5678,
            ..put_req("k", "v3")
        })
        .await
        .unwrap_err();
    check(err, Code::NotFound, "etcdserver: requested lease not found");
    let err = kv.put(put_req("", "v")).await.unwrap_err();
    check(err, Code::InvalidArgument, "etcdserver: key is not provided");

    // Request size: up to 1.5 MiB is fine, beyond is refused, also inside a txn.
    let big = "x".repeat(1_400_000);
    put(&mut kv, "big", &big).await;
    let resp = kv.range(range("big")).await.unwrap().into_inner();
    assert_eq!(resp.kvs[0].value.len(), big.len());
    for n in [1_600_000, 2 * 1024 * 1024] {
        let huge = "x".repeat(n);
        let err = kv.put(put_req("huge", &huge)).await.unwrap_err();
        if n < 2 * 1024 * 1024 {
            check(err, Code::InvalidArgument, "etcdserver: request is too large");
        }
        let err = kv
            .txn(TxnRequest {
                success: vec![op_put("huge", &huge)],
                ..Default::default()
            })
            .await;
        assert!(err.is_err(), "{n}-byte value accepted in a txn");
    }
    let resp = kv.range(range("huge")).await.unwrap().into_inner();
    assert!(resp.kvs.is_empty(), "a refused value was stored");
}

#[tokio::test]
async fn txn_reads_its_own_writes_nests_and_compares_ranges() {
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let s = Server::start_etcd_compatible();
    let mut kv = grpc::kv(&s.url()).await;
    let mut lease = grpc::lease(&s.url()).await;
    let id = lease
        .lease_grant(LeaseGrantRequest { ttl: 600, id: 0 })
        .await
        .unwrap()
        .into_inner()
        .id;
    kv.put(PutRequest {
        lease: id,
        ..put_req("t/leased", "1")
    })
    .await
    .unwrap();
    let base = put(&mut kv, "t/plain", "2").await;

    // Writes then a read in one txn: the read sees the writes; one revision for all.
    let resp = txn(
        &mut kv,
        vec![],
        vec![op_put("t/x", "1"), op_put("t/y", "2"), op_range(prefix("t/"))],
        vec![],
    )
    .await;
    assert!(resp.succeeded);
    let rev = resp.header.unwrap().revision;
    assert_eq!(rev, base + 1);
    let seen = range_response(&resp.responses[2]);
    let keys: Vec<_> = seen
        .kvs
        .iter()
        .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), kv.mod_revision))
        .collect();
    assert_eq!(
        keys,
        [
            ("t/leased".to_string(), base - 1),
            ("t/plain".to_string(), base),
            ("t/x".to_string(), rev),
            ("t/y".to_string(), rev)
        ]
    );

    // Lease, not-equal, and mod-revision compares.
    let ok = vec![
        cmp("t/leased", R::Equal, T::Lease, U::Lease(id)),
        cmp("t/plain", R::Equal, T::Lease, U::Lease(0)),
        cmp("t/plain", R::NotEqual, T::Value, U::Value(b"3".to_vec())),
        cmp("t/x", R::Less, T::Mod, U::ModRevision(rev + 1)),
        cmp("t/x", R::Greater, T::Create, U::CreateRevision(base)),
    ];
    let resp = txn(&mut kv, ok.clone(), vec![], vec![]).await;
    assert!(resp.succeeded, "true compares failed");
    for (i, _) in ok.iter().enumerate() {
        // Negating any single compare makes the txn fail.
        let mut bad = ok.clone();
        bad[i].result = match R::try_from(bad[i].result).unwrap() {
            R::Equal => R::NotEqual,
            R::NotEqual => R::Equal,
            R::Less => R::Greater,
            R::Greater => R::Less,
        } as i32;
        let resp = txn(&mut kv, bad, vec![], vec![]).await;
        assert!(!resp.succeeded, "compare {i} negated still succeeded");
    }

    // A compare over a range holds only if it holds for every key in it.
    let mut all_v1 = cmp("t/", R::Equal, T::Version, U::Version(1));
    all_v1.range_end = b"t0".to_vec();
    assert!(txn(&mut kv, vec![all_v1.clone()], vec![], vec![]).await.succeeded);
    put(&mut kv, "t/y", "again").await;
    assert!(!txn(&mut kv, vec![all_v1], vec![], vec![]).await.succeeded);

    // A nested txn, and a delete with prev_kv in the failure branch.
    let inner = TxnRequest {
        compare: vec![cmp("t/x", R::Equal, T::Value, U::Value(b"1".to_vec()))],
        success: vec![op_put("t/inner", "yes")],
        failure: vec![],
    };
    let resp = txn(
        &mut kv,
        vec![cmp("t/none", R::Greater, T::Version, U::Version(0))],
        vec![],
        vec![
            RequestOp {
                request: Some(request_op::Request::RequestTxn(inner)),
            },
            RequestOp {
                request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                    key: b"t/x".to_vec(),
                    prev_kv: true,
                    ..Default::default()
                })),
            },
        ],
    )
    .await;
    assert!(!resp.succeeded);
    match &resp.responses[0].response {
        Some(response_op::Response::ResponseTxn(t)) => assert!(t.succeeded, "{t:?}"),
        other => panic!("not a txn response: {other:?}"),
    }
    match &resp.responses[1].response {
        Some(response_op::Response::ResponseDeleteRange(d)) => {
            assert_eq!(d.deleted, 1);
            assert_eq!(d.prev_kvs.len(), 1);
            assert_eq!(d.prev_kvs[0].value, b"1");
        }
        other => panic!("not a delete response: {other:?}"),
    }
    let resp = kv.range(range("t/inner")).await.unwrap().into_inner();
    assert_eq!(resp.kvs[0].value, b"yes");
}

#[tokio::test]
async fn several_watches_on_one_stream_with_filters() {
    let s = Server::start_etcd_compatible();
    let url = s.url();
    let mut kv = grpc::kv(&url).await;
    let now = put(&mut kv, "start", "0").await;

    let mut w = Watch::open(
        &url,
        WatchCreateRequest {
            key: b"a".to_vec(),
            ..Default::default()
        },
    )
    .await;
    let first = w.next().await;
    assert!(first.created);
    let wa = first.watch_id;
    let wb = w
        .create(WatchCreateRequest {
            key: b"b/".to_vec(),
            range_end: b"b0".to_vec(),
            filters: vec![FilterType::Noput as i32],
            prev_kv: true,
            ..Default::default()
        })
        .await;
    // Starts two revisions ahead: sees nothing before that.
    let wf = w
        .create(WatchCreateRequest {
            key: b"f".to_vec(),
            start_revision: now + 6,
            ..Default::default()
        })
        .await;
    assert!(wa != wb && wb != wf && wa != wf, "watch ids {wa} {wb} {wf}");

    put(&mut kv, "a", "1").await; // now+1
    put(&mut kv, "b/1", "x").await; // now+2
    kv.delete_range(DeleteRangeRequest {
        key: b"b/1".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap(); // now+3
    kv.delete_range(DeleteRangeRequest {
        key: b"a".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap(); // now+4
    put(&mut kv, "f", "early").await; // now+5
    put(&mut kv, "f", "on time").await; // now+6

    let mut got: Vec<(i64, EventType, String, i64, Option<String>)> = Vec::new();
    while got.len() < 4 {
        let resp = w.next().await;
        for e in &resp.events {
            let kv = e.kv.clone().unwrap();
            got.push((
                resp.watch_id,
                EventType::try_from(e.r#type).unwrap(),
                String::from_utf8_lossy(&kv.value).into_owned(),
                kv.mod_revision,
                e.prev_kv
                    .as_ref()
                    .map(|p| String::from_utf8_lossy(&p.value).into_owned()),
            ));
        }
    }
    // Events of one watch keep their order; across watches any interleaving is fine.
    let of = |id: i64| got.iter().filter(|g| g.0 == id).cloned().collect::<Vec<_>>();
    assert_eq!(
        of(wa),
        [
            (wa, EventType::Put, "1".into(), now + 1, None),
            (wa, EventType::Delete, "".into(), now + 4, None)
        ]
    );
    assert_eq!(
        of(wb),
        [(wb, EventType::Delete, "".into(), now + 3, Some("x".into()))],
        "NOPUT filter"
    );
    assert_eq!(
        of(wf),
        [(wf, EventType::Put, "on time".into(), now + 6, None)],
        "future start revision"
    );
    let more = w.next_within(Duration::from_millis(500)).await;
    assert!(more.is_none(), "unexpected {more:?}");
}

#[tokio::test]
async fn lease_keepalive_stream_and_listing() {
    let s = Server::start_etcd_compatible();
    let mut lease = grpc::lease(&s.url()).await;
    let mut kv = grpc::kv(&s.url()).await;
    let granted = lease
        .lease_grant(LeaseGrantRequest { ttl: 30, id: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(granted.ttl, 30);
    let id = granted.id;

    // A lease with a chosen id; the id cannot be granted twice.
    let chosen = 0x7e57_0001;
    let resp = lease
        .lease_grant(LeaseGrantRequest { ttl: 30, id: chosen })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.id, chosen);
    let err = lease
        .lease_grant(LeaseGrantRequest { ttl: 30, id: chosen })
        .await
        .unwrap_err();
    assert_eq!(err.message(), "etcdserver: lease already exists", "{err:?}");

    let mut ids: Vec<i64> = lease
        .lease_leases(LeaseLeasesRequest {})
        .await
        .unwrap()
        .into_inner()
        .leases
        .iter()
        .map(|l| l.id)
        .collect();
    ids.sort();
    let mut want = vec![id, chosen];
    want.sort();
    assert_eq!(ids, want);

    kv.put(PutRequest {
        lease: id,
        ..put_req("ka/1", "v")
    })
    .await
    .unwrap();

    // Several keep-alives on one stream, then one for an unknown lease (TTL 0).
    let (tx, rx) = mpsc::channel(8);
    tx.send(LeaseKeepAliveRequest { id }).await.unwrap();
    let mut stream = lease
        .lease_keep_alive(ReceiverStream::new(rx))
        .await
        .expect("keep-alive stream")
        .into_inner();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("no keep-alive response")
            .expect("stream ended")
            .expect("stream error")
    };
    for i in 0..3 {
        if i > 0 {
            tx.send(LeaseKeepAliveRequest { id }).await.unwrap();
        }
        let resp = next().await;
        assert_eq!((resp.id, resp.ttl), (id, 30), "keep-alive {i}");
    }
    tx.send(LeaseKeepAliveRequest { id: 0x0bad }).await.unwrap();
    let resp = next().await;
    assert_eq!((resp.id, resp.ttl), (0x0bad, 0), "unknown lease");

    let ttl = lease
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ttl.granted_ttl, 30);
    assert!((25..=30).contains(&ttl.ttl), "ttl {}", ttl.ttl);
    assert_eq!(ttl.keys, vec![b"ka/1".to_vec()]);

    lease.lease_revoke(LeaseRevokeRequest { id }).await.expect("revoke");
    let resp = kv.range(range("ka/1")).await.unwrap().into_inner();
    assert!(resp.kvs.is_empty(), "revoked lease's key remains");
    let err = lease.lease_revoke(LeaseRevokeRequest { id }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "etcdserver: requested lease not found");
    let ttl = lease
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ttl.ttl, -1, "time-to-live of a revoked lease");
}

#[tokio::test]
async fn maintenance_status_alarm_defrag_snapshot() {
    let s = Server::start_etcd_compatible();
    let mut kv = grpc::kv(&s.url()).await;
    let mut m = grpc::maintenance(&s.url()).await;
    let mut rev = 0;
    for i in 0..100 {
        rev = put(&mut kv, &format!("m/{i}"), &"v".repeat(100)).await;
    }
    let st = m.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(st.header.unwrap().revision, rev);
    assert!(st.db_size > 0);

    let alarms = m.alarm(AlarmRequest::default()).await.unwrap().into_inner();
    assert!(alarms.alarms.is_empty(), "{alarms:?}");
    m.defragment(DefragmentRequest {}).await.expect("defragment");

    let mut stream = m.snapshot(SnapshotRequest {}).await.expect("snapshot").into_inner();
    let mut total = 0;
    let mut last_remaining = None;
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("snapshot stream stalled")
    {
        let chunk = chunk.expect("snapshot chunk");
        total += chunk.blob.len();
        last_remaining = Some(chunk.remaining_bytes);
    }
    assert!(total > 10_000, "snapshot of {total} bytes");
    assert_eq!(last_remaining, Some(0), "last chunk must say nothing remains");
    // Still serving.
    let resp = kv.range(range("m/42")).await.unwrap().into_inner();
    assert_eq!(resp.kvs.len(), 1);
}
