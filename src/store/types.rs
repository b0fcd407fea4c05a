//! The store's data model: keys, values, key ranges, events and the one write
//! operation (a guarded transaction), shaped like etcd v3 so the etcd endpoint is a
//! thin translation and the apiserver gets the same semantics in-process.

/// One key at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Revision of the put that created the key (since its last delete).
    pub create_revision: i64,
    /// Revision of the last change to the key.
    pub mod_revision: i64,
    /// Number of puts since the key was created; 1 after the first put.
    pub version: i64,
    /// Lease the key is attached to, 0 for none.
    pub lease: i64,
}

/// `[start, end)` in byte order. An empty `end` means the single key `start`;
/// `end == [0]` means every key `>= start` (etcd's conventions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
}

impl KeyRange {
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            start: key.into(),
            end: Vec::new(),
        }
    }

    /// All keys that start with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let start = prefix.into();
        let end = prefix_end(&start);
        KeyRange { start, end }
    }

    pub fn new(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            start: start.into(),
            end: end.into(),
        }
    }

    pub fn is_single_key(&self) -> bool {
        self.end.is_empty()
    }

    /// The exclusive upper bound, `None` when unbounded.
    pub fn upper_bound(&self) -> Option<&[u8]> {
        if self.end == [0] { None } else { Some(&self.end) }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        if self.is_single_key() {
            return key == self.start.as_slice();
        }
        key >= self.start.as_slice() && self.upper_bound().is_none_or(|end| key < end)
    }

    /// Whether the two ranges share at least one key.
    pub fn overlaps(&self, other: &KeyRange) -> bool {
        let end_of = |r: &KeyRange| -> Option<Vec<u8>> {
            if r.is_single_key() {
                let mut e = r.start.clone();
                e.push(0);
                Some(e)
            } else {
                r.upper_bound().map(<[u8]>::to_vec)
            }
        };
        let (a_end, b_end) = (end_of(self), end_of(other));
        a_end.is_none_or(|e| other.start < e) && b_end.is_none_or(|e| self.start < e)
    }
}

/// The smallest key greater than every key with this prefix (etcd's `GetPrefixRangeEnd`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff (or the prefix is empty): the range is unbounded.
    vec![0]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as watchers see it. A delete's `kv` carries the key and the
/// deletion's revision only; `prev` is the value before the change, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

/// A read of a key range at the newest or a past revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Range {
    pub range: KeyRange,
    /// 0 for no limit.
    pub limit: i64,
    /// `<= 0` for the newest revision.
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    pub keys_only: bool,
    pub count_only: bool,
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

impl Range {
    pub fn of(range: KeyRange) -> Self {
        Range {
            range,
            ..Default::default()
        }
    }

    /// Whether filters or a non-key sort make it necessary to read the whole
    /// range before applying the limit.
    pub(crate) fn needs_full_scan(&self) -> bool {
        let key_order = self.sort_target == SortTarget::Key && self.sort_order != SortOrder::Descend;
        !key_order
            || self.min_mod_revision > 0
            || self.max_mod_revision > 0
            || self.min_create_revision > 0
            || self.max_create_revision > 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResult {
    /// The revision the read was served at (the store's newest when none was asked).
    pub revision: i64,
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    /// Keys in the range at that revision, regardless of limit and filters.
    pub count: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Put {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub lease: i64,
    pub prev_kv: bool,
    /// Keep the current value (the key must exist).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist).
    pub ignore_lease: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delete {
    pub range: KeyRange,
    pub prev_kv: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Range(Range),
    Put(Put),
    Delete(Delete),
    Txn(Txn),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    Range(RangeResult),
    Put { prev: Option<KeyValue> },
    Delete { deleted: i64, prev: Vec<KeyValue> },
    Txn(TxnResult),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    Greater,
    Less,
    NotEqual,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    Version(i64),
    CreateRevision(i64),
    ModRevision(i64),
    Value(Vec<u8>),
    Lease(i64),
}

/// A guard on every key of `range`; a missing key has version, revisions and
/// lease 0 and an empty value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub range: KeyRange,
    pub op: CompareOp,
    pub target: CompareTarget,
}

/// If every compare holds, apply `success`, else `failure`; all changes share one
/// new revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

impl Txn {
    pub fn single(op: Op) -> Self {
        Txn {
            success: vec![op],
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnResult {
    /// The store revision after the transaction (its own if it changed anything).
    pub revision: i64,
    pub succeeded: bool,
    pub results: Vec<OpResult>,
}

/// What `lease_time_to_live` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub id: i64,
    /// Seconds left, rounded up.
    pub remaining: i64,
    pub granted_ttl: i64,
    pub keys: Vec<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte_and_carries() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn ranges_contain_and_overlap() {
        let p = KeyRange::prefix("/a/");
        assert!(p.contains(b"/a/x"));
        assert!(!p.contains(b"/b"));
        let all = KeyRange::new(vec![0], vec![0]);
        assert!(all.contains(b"anything"));
        assert!(KeyRange::key("/a/x").overlaps(&p));
        assert!(!KeyRange::key("/b").overlaps(&p));
        assert!(KeyRange::new("a", vec![0]).overlaps(&KeyRange::key("zzz")));
        assert!(!KeyRange::key("a").overlaps(&KeyRange::key("b")));
    }
}
