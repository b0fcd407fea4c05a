//! Translation between etcd's protobuf messages and the store's types, and the
//! mapping of store errors to the gRPC status codes etcd's `rpctypes` use.

use tonic::{Code, Status};

use super::proto::etcdserverpb as pb;
use super::proto::mvccpb;
use crate::store::{
    Compare, CompareOp, CompareTarget, Delete, Event, EventKind, KeyRange, KeyValue, Op, OpResult, Put, Range,
    RangeResult, SortOrder, SortTarget, StoreError, Txn, TxnResult,
};

pub fn status(err: StoreError) -> Status {
    let code = match &err {
        StoreError::Compacted { .. } | StoreError::FutureRevision | StoreError::LeaseTtlTooLarge => Code::OutOfRange,
        StoreError::EmptyKey
        | StoreError::TooLarge
        | StoreError::TooManyOps
        | StoreError::DuplicateKey
        | StoreError::KeyNotFound
        | StoreError::TooManyChanges => Code::InvalidArgument,
        StoreError::LeaseNotFound => Code::NotFound,
        StoreError::LeaseExists => Code::FailedPrecondition,
        StoreError::NoSpace => Code::ResourceExhausted,
        StoreError::Stopped | StoreError::ReadOnly(_) => Code::Unavailable,
        StoreError::SyncFailed | StoreError::Database(_) | StoreError::Io(_) => Code::Internal,
    };
    Status::new(code, err.to_string())
}

pub fn kv(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn event(e: Event, with_prev: bool) -> mvccpb::Event {
    mvccpb::Event {
        r#type: match e.kind {
            EventKind::Put => mvccpb::event::EventType::Put as i32,
            EventKind::Delete => mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(kv(e.kv)),
        prev_kv: if with_prev { e.prev.map(kv) } else { None },
    }
}

pub fn range(r: pb::RangeRequest) -> Range {
    use pb::range_request::{SortOrder as O, SortTarget as T};
    Range {
        range: KeyRange::new(r.key, r.range_end),
        limit: r.limit,
        revision: r.revision,
        sort_order: match O::try_from(r.sort_order).unwrap_or(O::None) {
            O::None => SortOrder::None,
            O::Ascend => SortOrder::Ascend,
            O::Descend => SortOrder::Descend,
        },
        sort_target: match T::try_from(r.sort_target).unwrap_or(T::Key) {
            T::Key => SortTarget::Key,
            T::Version => SortTarget::Version,
            T::Create => SortTarget::Create,
            T::Mod => SortTarget::Mod,
            T::Value => SortTarget::Value,
        },
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    }
}

pub fn put(p: pb::PutRequest) -> Put {
    Put {
        key: p.key,
        value: p.value,
        lease: p.lease,
        prev_kv: p.prev_kv,
        ignore_value: p.ignore_value,
        ignore_lease: p.ignore_lease,
    }
}

pub fn delete(d: pb::DeleteRangeRequest) -> Delete {
    Delete {
        range: KeyRange::new(d.key, d.range_end),
        prev_kv: d.prev_kv,
    }
}

pub fn txn(t: pb::TxnRequest) -> Result<Txn, Status> {
    Ok(Txn {
        compare: t.compare.into_iter().map(compare).collect::<Result<_, _>>()?,
        success: t.success.into_iter().map(op).collect::<Result<_, _>>()?,
        failure: t.failure.into_iter().map(op).collect::<Result<_, _>>()?,
    })
}

fn op(o: pb::RequestOp) -> Result<Op, Status> {
    use pb::request_op::Request;
    match o.request {
        Some(Request::RequestRange(r)) => Ok(Op::Range(range(r))),
        Some(Request::RequestPut(p)) => Ok(Op::Put(put(p))),
        Some(Request::RequestDeleteRange(d)) => Ok(Op::Delete(delete(d))),
        Some(Request::RequestTxn(t)) => Ok(Op::Txn(txn(t)?)),
        None => Err(Status::invalid_argument("etcdserver: empty operation in txn request")),
    }
}

fn compare(c: pb::Compare) -> Result<Compare, Status> {
    use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let op = match R::try_from(c.result) {
        Ok(R::Equal) => CompareOp::Equal,
        Ok(R::Greater) => CompareOp::Greater,
        Ok(R::Less) => CompareOp::Less,
        Ok(R::NotEqual) => CompareOp::NotEqual,
        Err(_) => {
            return Err(Status::invalid_argument("etcdserver: unknown compare result"));
        }
    };
    let target = match (T::try_from(c.target), c.target_union) {
        (Ok(T::Version), Some(U::Version(v))) => CompareTarget::Version(v),
        (Ok(T::Create), Some(U::CreateRevision(v))) => CompareTarget::CreateRevision(v),
        (Ok(T::Mod), Some(U::ModRevision(v))) => CompareTarget::ModRevision(v),
        (Ok(T::Value), Some(U::Value(v))) => CompareTarget::Value(v),
        (Ok(T::Lease), Some(U::Lease(v))) => CompareTarget::Lease(v),
        // A zero value is not on the wire at all in proto3.
        (Ok(T::Version), None) => CompareTarget::Version(0),
        (Ok(T::Create), None) => CompareTarget::CreateRevision(0),
        (Ok(T::Mod), None) => CompareTarget::ModRevision(0),
        (Ok(T::Value), None) => CompareTarget::Value(Vec::new()),
        (Ok(T::Lease), None) => CompareTarget::Lease(0),
        _ => {
            return Err(Status::invalid_argument(
                "etcdserver: compare target does not match its value",
            ));
        }
    };
    Ok(Compare {
        range: KeyRange::new(c.key, c.range_end),
        op,
        target,
    })
}

pub fn range_response(r: RangeResult, header: pb::ResponseHeader) -> pb::RangeResponse {
    pb::RangeResponse {
        header: Some(header),
        kvs: r.kvs.into_iter().map(kv).collect(),
        more: r.more,
        count: r.count,
    }
}

/// Converts a transaction result; every nested response carries the header of the
/// whole transaction, as etcd's do (clients read the new revision from them).
pub fn txn_response(t: TxnResult, header: pb::ResponseHeader) -> pb::TxnResponse {
    use pb::response_op::Response;
    let responses = t
        .results
        .into_iter()
        .map(|r| pb::ResponseOp {
            response: Some(match r {
                OpResult::Range(r) => Response::ResponseRange(range_response(r, header)),
                OpResult::Put { prev } => Response::ResponsePut(pb::PutResponse {
                    header: Some(header),
                    prev_kv: prev.map(kv),
                }),
                OpResult::Delete { deleted, prev } => Response::ResponseDeleteRange(pb::DeleteRangeResponse {
                    header: Some(header),
                    deleted,
                    prev_kvs: prev.into_iter().map(kv).collect(),
                }),
                OpResult::Txn(t) => Response::ResponseTxn(txn_response(t, header)),
            }),
        })
        .collect();
    pb::TxnResponse {
        header: Some(header),
        succeeded: t.succeeded,
        responses,
    }
}
