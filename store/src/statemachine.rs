//! The replicated state machine: what every member does with a committed entry.
//!
//! It owns the [`MvccStore`], the [`Lessor`], the members and the alarms. The Raft
//! thread opens one [`WriteSession`] per batch of committed entries, applies each entry
//! with [`StateMachine::apply_request`] or [`StateMachine::apply_member_change`], and
//! commits the session together with the consistent index, so the applied index and
//! the state it describes are always stored atomically.
//!
//! Validation that depends on state (lease existence, `ignore_value` on a missing key,
//! revisions in txn ranges, the NOSPACE alarm) happens here, before anything is
//! written, so a rejected request changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;
use prost::Message;
use proto::etcdserverpb::alarm_request::AlarmAction;
use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::request_op::Request as Op;
use proto::etcdserverpb::response_op::Response as OpResp;
use proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, CompactionRequest, CompactionResponse,
    Compare, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest, LeaseGrantResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, Member, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use proto::mvccpb::KeyValue;
use proto::peer::internal_request::Request;
use proto::peer::{InternalRequest, LeaseRecord};

use crate::engine::{KvEngine, Table};
use crate::error::EtcdError;
use crate::lease::Lessor;
use crate::mvcc::{self, KeyRange, MvccStore, WriteSession};

/// What applying a request produced.
#[derive(Debug, Clone)]
pub enum Output {
    /// A Put.
    Put(PutResponse),
    /// A DeleteRange.
    DeleteRange(DeleteRangeResponse),
    /// A Txn.
    Txn(TxnResponse),
    /// A Compaction.
    Compaction(CompactionResponse),
    /// A LeaseGrant.
    LeaseGrant(LeaseGrantResponse),
    /// A LeaseRevoke.
    LeaseRevoke(LeaseRevokeResponse),
    /// An Alarm change.
    Alarm(AlarmResponse),
    /// A membership change: the members afterwards.
    Members(Vec<Member>),
}

/// The result a waiting client receives.
pub type Applied = Result<Output, EtcdError>;

/// A membership change, decoded from a Raft ConfChange entry.
#[derive(Debug, Clone)]
pub enum MemberChange {
    /// A new voter or learner.
    Add(Member),
    /// A member leaves.
    Remove(u64),
    /// A learner becomes a voter.
    Promote(u64),
}

fn header(rev: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision: rev,
        ..Default::default()
    })
}

const ALARM_PREFIX: &[u8] = b"alarm/";
const REMOVED_PREFIX: &[u8] = b"removed_member/";

/// The state machine.
pub struct StateMachine {
    mvcc: MvccStore,
    lessor: Arc<Lessor>,
    members: RwLock<BTreeMap<u64, Member>>,
    alarms: RwLock<BTreeSet<(u64, i32)>>,
    /// Members removed from the cluster; their messages are refused, which is how a
    /// removed member that missed its own removal learns of it (etcd keeps the same set).
    removed: RwLock<HashSet<u64>>,
}

impl StateMachine {
    /// Loads the state machine from the engine: MVCC index, leases and their keys,
    /// members and alarms.
    pub fn open(engine: Arc<dyn KvEngine>, lessor: Arc<Lessor>) -> Result<Self, EtcdError> {
        let mvcc = MvccStore::open(engine.clone())?;
        let sm = Self {
            mvcc,
            lessor,
            members: RwLock::new(BTreeMap::new()),
            alarms: RwLock::new(BTreeSet::new()),
            removed: RwLock::new(HashSet::new()),
        };
        sm.load_derived()?;
        Ok(sm)
    }

    /// Rebuilds leases, members and alarms from the engine (after open or restore).
    fn load_derived(&self) -> Result<(), EtcdError> {
        let engine = self.mvcc.engine().clone();
        self.lessor.clear();
        engine.scan(Table::Lease, b"", None, &mut |_, v| {
            if let Ok(l) = LeaseRecord::decode(v) {
                self.lessor.grant(l.id, l.ttl);
            }
            true
        })?;
        // Attach every live key to its lease.
        let all = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        };
        for kv in self.mvcc.range(&all)?.kvs {
            if kv.lease != 0 {
                self.lessor.attach(kv.lease, &kv.key);
            }
        }
        let members =
            crate::membership::load(&*engine).map_err(|e| EtcdError::Internal(e.to_string()))?;
        *self.members.write() = members.into_iter().map(|m| (m.id, m)).collect();
        let mut alarms = BTreeSet::new();
        engine.scan(Table::Meta, ALARM_PREFIX, None, &mut |k, _| {
            if !k.starts_with(ALARM_PREFIX) {
                return false;
            }
            let rest = &k[ALARM_PREFIX.len()..];
            if rest.len() == 12 {
                let id = u64::from_be_bytes(rest[..8].try_into().unwrap_or_default());
                let ty = i32::from_be_bytes(rest[8..].try_into().unwrap_or_default());
                alarms.insert((id, ty));
            }
            true
        })?;
        *self.alarms.write() = alarms;
        let mut removed = HashSet::new();
        engine.scan(Table::Meta, REMOVED_PREFIX, None, &mut |k, _| {
            let Some(rest) = k.strip_prefix(REMOVED_PREFIX) else {
                return false;
            };
            if let Ok(id) = <[u8; 8]>::try_from(rest) {
                removed.insert(u64::from_be_bytes(id));
            }
            true
        })?;
        *self.removed.write() = removed;
        Ok(())
    }

    /// Reloads everything after the engine's state-machine tables were replaced by a
    /// snapshot.
    pub fn reload(&self) -> Result<(), EtcdError> {
        self.mvcc.reload()?;
        self.load_derived()
    }

    /// The MVCC store.
    pub fn mvcc(&self) -> &MvccStore {
        &self.mvcc
    }

    /// The lessor.
    pub fn lessor(&self) -> &Arc<Lessor> {
        &self.lessor
    }

    /// The members, by ID.
    pub fn members(&self) -> Vec<Member> {
        self.members.read().values().cloned().collect()
    }

    /// One member.
    pub fn member(&self, id: u64) -> Option<Member> {
        self.members.read().get(&id).cloned()
    }

    /// Whether `id` was removed from the cluster.
    pub fn is_removed(&self, id: u64) -> bool {
        self.removed.read().contains(&id)
    }

    /// Active alarms.
    pub fn alarms(&self) -> Vec<AlarmMember> {
        self.alarms
            .read()
            .iter()
            .map(|(id, ty)| AlarmMember {
                member_id: *id,
                alarm: *ty,
            })
            .collect()
    }

    /// Whether the NOSPACE alarm is raised anywhere.
    pub fn no_space(&self) -> bool {
        self.alarms
            .read()
            .iter()
            .any(|(_, t)| *t == AlarmType::Nospace as i32)
    }

    /// Starts an apply round.
    pub fn session(&self) -> WriteSession<'_> {
        self.mvcc.write()
    }

    /// Records the applied Raft index and term in the round's batch.
    pub fn set_consistent_index(s: &mut WriteSession<'_>, index: u64, term: u64) {
        let b = s.batch_mut();
        b.put(
            Table::Meta,
            mvcc::meta::CONSISTENT_INDEX.to_vec(),
            index.to_be_bytes().to_vec(),
        );
        b.put(
            Table::Meta,
            mvcc::meta::CONSISTENT_TERM.to_vec(),
            term.to_be_bytes().to_vec(),
        );
    }

    /// The applied Raft index and term stored with the state.
    pub fn consistent_index(&self) -> (u64, u64) {
        let e = self.mvcc.engine();
        let read = |k: &[u8]| {
            e.get(Table::Meta, k)
                .ok()
                .flatten()
                .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
                .unwrap_or(0)
        };
        (
            read(mvcc::meta::CONSISTENT_INDEX),
            read(mvcc::meta::CONSISTENT_TERM),
        )
    }

    /// Applies one client request.
    pub fn apply_request(&self, s: &mut WriteSession<'_>, req: InternalRequest) -> Applied {
        let Some(r) = req.request else {
            return Err(EtcdError::Internal("empty request".into()));
        };
        match r {
            Request::Put(p) => {
                if self.no_space() {
                    return Err(EtcdError::NoSpace);
                }
                self.check_put(s, &p)?;
                s.begin_txn();
                let res = self.put(s, &p);
                let rev = s.end_txn();
                let mut resp = res?;
                resp.header = header(rev);
                Ok(Output::Put(resp))
            }
            Request::DeleteRange(d) => {
                s.begin_txn();
                let res = self.delete_range(s, &d);
                let rev = s.end_txn();
                let mut resp = res?;
                resp.header = header(rev);
                Ok(Output::DeleteRange(resp))
            }
            Request::Txn(t) => self.txn(s, &t).map(Output::Txn),
            Request::Compaction(c) => Self::compact(s, &c).map(Output::Compaction),
            Request::LeaseGrant(g) => self.lease_grant(s, &g).map(Output::LeaseGrant),
            Request::LeaseRevoke(r) => self.lease_revoke(s, &r).map(Output::LeaseRevoke),
            Request::Alarm(a) => Ok(Output::Alarm(self.alarm(s, &a))),
            Request::MemberAttributes(attr) => {
                let mut members = self.members.write();
                let Some(m) = members.get_mut(&attr.id) else {
                    return Err(EtcdError::MemberNotFound);
                };
                m.name = attr.name;
                m.client_ur_ls = attr.client_urls;
                crate::membership::put(s.batch_mut(), m);
                Ok(Output::Members(members.values().cloned().collect()))
            }
        }
    }

    fn check_put(&self, s: &WriteSession<'_>, p: &PutRequest) -> Result<(), EtcdError> {
        if p.lease != 0 && !self.lessor.exists(p.lease) {
            return Err(EtcdError::LeaseNotFound);
        }
        if (p.ignore_value || p.ignore_lease) && s.get(&p.key)?.is_none() {
            return Err(EtcdError::KeyNotFound);
        }
        Ok(())
    }

    fn put(&self, s: &mut WriteSession<'_>, p: &PutRequest) -> Result<PutResponse, EtcdError> {
        // The old value is read only when the request needs it.
        let prev = if p.prev_kv || p.ignore_value || p.ignore_lease {
            s.get(&p.key)?
        } else {
            None
        };
        let value = if p.ignore_value {
            prev.as_ref().map(|kv| kv.value.clone()).unwrap_or_default()
        } else {
            p.value.clone()
        };
        let lease = if p.ignore_lease {
            prev.as_ref().map(|kv| kv.lease).unwrap_or(0)
        } else {
            p.lease
        };
        s.put(&p.key, value, lease)?;
        self.lessor.detach_key(&p.key);
        if lease != 0 {
            self.lessor.attach(lease, &p.key);
        }
        Ok(PutResponse {
            header: None,
            prev_kv: if p.prev_kv { prev } else { None },
        })
    }

    fn delete_range(
        &self,
        s: &mut WriteSession<'_>,
        d: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, EtcdError> {
        let range = KeyRange::from_etcd(&d.key, &d.range_end);
        let deleted = s.delete_range(&range, d.prev_kv)?;
        for kv in &deleted {
            self.lessor.detach_key(&kv.key);
        }
        Ok(DeleteRangeResponse {
            header: None,
            deleted: deleted.len() as i64,
            prev_kvs: if d.prev_kv { deleted } else { Vec::new() },
        })
    }

    fn txn(&self, s: &mut WriteSession<'_>, t: &TxnRequest) -> Result<TxnResponse, EtcdError> {
        let succeeded = Self::compare_all(s, &t.compare)?;
        let ops = if succeeded { &t.success } else { &t.failure };
        self.check_ops(s, ops)?;
        if self.no_space() && ops_write(ops) {
            return Err(EtcdError::NoSpace);
        }
        s.begin_txn();
        let res = self.exec_ops(s, ops);
        let rev = s.end_txn();
        Ok(TxnResponse {
            header: header(rev),
            succeeded,
            responses: res?,
        })
    }

    fn compare_all(s: &WriteSession<'_>, cmps: &[Compare]) -> Result<bool, EtcdError> {
        for c in cmps {
            if !Self::compare(s, c)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn compare(s: &WriteSession<'_>, c: &Compare) -> Result<bool, EtcdError> {
        let kvs = s
            .range(&RangeRequest {
                key: c.key.clone(),
                range_end: c.range_end.clone(),
                ..Default::default()
            })?
            .kvs;
        let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
        if kvs.is_empty() {
            // etcd: comparing the value of a missing key always fails.
            if target == CompareTarget::Value {
                return Ok(false);
            }
            return Ok(compare_kv(c, target, &KeyValue::default()));
        }
        Ok(kvs.iter().all(|kv| compare_kv(c, target, kv)))
    }

    /// Validates the ops a txn will run, before anything is written.
    fn check_ops(&self, s: &WriteSession<'_>, ops: &[RequestOp]) -> Result<(), EtcdError> {
        for op in ops {
            match &op.request {
                Some(Op::RequestPut(p)) => self.check_put(s, p)?,
                Some(Op::RequestRange(r)) => {
                    if r.revision > 0 {
                        if r.revision > s.current_rev() {
                            return Err(EtcdError::FutureRev);
                        }
                        if r.revision < s.compact_rev() {
                            return Err(EtcdError::Compacted);
                        }
                    }
                }
                Some(Op::RequestTxn(t)) => {
                    let inner = if Self::compare_all(s, &t.compare)? {
                        &t.success
                    } else {
                        &t.failure
                    };
                    self.check_ops(s, inner)?;
                }
                Some(Op::RequestDeleteRange(_)) | None => {}
            }
        }
        Ok(())
    }

    fn exec_ops(
        &self,
        s: &mut WriteSession<'_>,
        ops: &[RequestOp],
    ) -> Result<Vec<ResponseOp>, EtcdError> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let resp = match &op.request {
                Some(Op::RequestRange(r)) => {
                    let mut resp: RangeResponse = s.range(r)?;
                    resp.header = header(s.read_rev());
                    OpResp::ResponseRange(resp)
                }
                Some(Op::RequestPut(p)) => {
                    let mut resp = self.put(s, p)?;
                    resp.header = header(s.read_rev());
                    OpResp::ResponsePut(resp)
                }
                Some(Op::RequestDeleteRange(d)) => {
                    let mut resp = self.delete_range(s, d)?;
                    resp.header = header(s.read_rev());
                    OpResp::ResponseDeleteRange(resp)
                }
                Some(Op::RequestTxn(t)) => {
                    let succeeded = Self::compare_all(s, &t.compare)?;
                    let inner = if succeeded { &t.success } else { &t.failure };
                    let responses = self.exec_ops(s, inner)?;
                    OpResp::ResponseTxn(TxnResponse {
                        header: header(s.read_rev()),
                        succeeded,
                        responses,
                    })
                }
                None => continue,
            };
            out.push(ResponseOp {
                response: Some(resp),
            });
        }
        Ok(out)
    }

    fn compact(
        s: &mut WriteSession<'_>,
        c: &CompactionRequest,
    ) -> Result<CompactionResponse, EtcdError> {
        s.compact(c.revision)?;
        Ok(CompactionResponse {
            header: header(s.current_rev()),
        })
    }

    fn lease_grant(
        &self,
        s: &mut WriteSession<'_>,
        g: &LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, EtcdError> {
        if self.no_space() {
            return Err(EtcdError::NoSpace);
        }
        let ttl = self.lessor.effective_ttl(g.ttl);
        if !self.lessor.grant(g.id, ttl) {
            return Err(EtcdError::LeaseExists);
        }
        let rec = LeaseRecord { id: g.id, ttl };
        s.batch_mut().put(
            Table::Lease,
            g.id.to_be_bytes().to_vec(),
            rec.encode_to_vec(),
        );
        Ok(LeaseGrantResponse {
            header: header(s.current_rev()),
            id: g.id,
            ttl,
            error: String::new(),
        })
    }

    fn lease_revoke(
        &self,
        s: &mut WriteSession<'_>,
        r: &LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, EtcdError> {
        let keys = self.lessor.revoke(r.id).ok_or(EtcdError::LeaseNotFound)?;
        s.begin_txn();
        let mut res = Ok(());
        for k in keys {
            if let Err(e) = s.delete_range(&KeyRange::from_etcd(&k, b""), false) {
                res = Err(e);
                break;
            }
        }
        let rev = s.end_txn();
        res?;
        s.batch_mut()
            .delete(Table::Lease, r.id.to_be_bytes().to_vec());
        Ok(LeaseRevokeResponse {
            header: header(rev),
        })
    }

    fn alarm(&self, s: &mut WriteSession<'_>, a: &AlarmRequest) -> AlarmResponse {
        let action = AlarmAction::try_from(a.action).unwrap_or(AlarmAction::Get);
        let key = |id: u64, ty: i32| {
            let mut k = ALARM_PREFIX.to_vec();
            k.extend_from_slice(&id.to_be_bytes());
            k.extend_from_slice(&ty.to_be_bytes());
            k
        };
        let mut changed = Vec::new();
        match action {
            AlarmAction::Get => {}
            AlarmAction::Activate => {
                if a.alarm != AlarmType::None as i32
                    && self.alarms.write().insert((a.member_id, a.alarm))
                {
                    s.batch_mut()
                        .put(Table::Meta, key(a.member_id, a.alarm), vec![1]);
                    tracing::warn!(member = %format!("{:x}", a.member_id), alarm = a.alarm, "alarm raised");
                    changed.push(AlarmMember {
                        member_id: a.member_id,
                        alarm: a.alarm,
                    });
                }
            }
            AlarmAction::Deactivate => {
                let mut alarms = self.alarms.write();
                let doomed: Vec<(u64, i32)> = alarms
                    .iter()
                    .filter(|(id, ty)| {
                        (a.member_id == 0 || *id == a.member_id)
                            && (a.alarm == AlarmType::None as i32 || *ty == a.alarm)
                    })
                    .copied()
                    .collect();
                for (id, ty) in doomed {
                    alarms.remove(&(id, ty));
                    s.batch_mut().delete(Table::Meta, key(id, ty));
                    changed.push(AlarmMember {
                        member_id: id,
                        alarm: ty,
                    });
                }
            }
        }
        AlarmResponse {
            header: header(s.current_rev()),
            alarms: if action == AlarmAction::Get {
                self.alarms()
            } else {
                changed
            },
        }
    }

    /// Applies a membership change committed through a ConfChange entry.
    pub fn apply_member_change(&self, s: &mut WriteSession<'_>, change: &MemberChange) -> Applied {
        let mut members = self.members.write();
        match change {
            MemberChange::Add(m) => {
                crate::membership::put(s.batch_mut(), m);
                members.insert(m.id, m.clone());
            }
            MemberChange::Remove(id) => {
                crate::membership::delete(s.batch_mut(), *id);
                members.remove(id);
                let mut k = REMOVED_PREFIX.to_vec();
                k.extend_from_slice(&id.to_be_bytes());
                s.batch_mut().put(Table::Meta, k, vec![1]);
                self.removed.write().insert(*id);
            }
            MemberChange::Promote(id) => {
                if let Some(m) = members.get_mut(id) {
                    m.is_learner = false;
                    crate::membership::put(s.batch_mut(), m);
                }
            }
        }
        Ok(Output::Members(members.values().cloned().collect()))
    }
}

fn ops_write(ops: &[RequestOp]) -> bool {
    ops.iter().any(|op| match &op.request {
        Some(Op::RequestPut(_)) => true,
        Some(Op::RequestTxn(t)) => ops_write(&t.success) || ops_write(&t.failure),
        _ => false,
    })
}

fn compare_kv(c: &Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ord = match (target, &c.target_union) {
        (CompareTarget::Value, u) => {
            let v: &[u8] = match u {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(v)
        }
        (CompareTarget::Create, u) => kv.create_revision.cmp(&int_target(u)),
        (CompareTarget::Mod, u) => kv.mod_revision.cmp(&int_target(u)),
        (CompareTarget::Version, u) => kv.version.cmp(&int_target(u)),
        (CompareTarget::Lease, u) => kv.lease.cmp(&int_target(u)),
    };
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}

fn int_target(u: &Option<TargetUnion>) -> i64 {
    match u {
        Some(
            TargetUnion::Version(v)
            | TargetUnion::CreateRevision(v)
            | TargetUnion::ModRevision(v)
            | TargetUnion::Lease(v),
        ) => *v,
        _ => 0,
    }
}

/// Validates a txn before it is proposed (etcd's `checkTxnRequest`): op count, empty
/// keys, and no key written twice.
pub fn check_txn(t: &TxnRequest, max_ops: usize) -> Result<(), EtcdError> {
    if t.success.len() > max_ops || t.failure.len() > max_ops || t.compare.len() > max_ops {
        return Err(EtcdError::TooManyOps);
    }
    for c in &t.compare {
        if c.key.is_empty() {
            return Err(EtcdError::EmptyKey);
        }
    }
    for ops in [&t.success, &t.failure] {
        for op in ops.iter() {
            match &op.request {
                Some(Op::RequestRange(r)) if r.key.is_empty() => return Err(EtcdError::EmptyKey),
                Some(Op::RequestPut(p)) => check_put_request(p)?,
                Some(Op::RequestDeleteRange(d)) if d.key.is_empty() => {
                    return Err(EtcdError::EmptyKey);
                }
                Some(Op::RequestTxn(inner)) => check_txn(inner, max_ops)?,
                _ => {}
            }
        }
        check_dup_keys(ops)?;
    }
    Ok(())
}

/// etcd's `checkPutRequest`.
pub fn check_put_request(p: &PutRequest) -> Result<(), EtcdError> {
    if p.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

fn check_dup_keys(ops: &[RequestOp]) -> Result<(), EtcdError> {
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    let mut dels: Vec<KeyRange> = Vec::new();
    collect_writes(ops, &mut puts, &mut dels)?;
    for r in &dels {
        if puts.iter().any(|k| r.contains(k)) {
            return Err(EtcdError::DuplicateKey);
        }
    }
    Ok(())
}

fn collect_writes(
    ops: &[RequestOp],
    puts: &mut HashSet<Vec<u8>>,
    dels: &mut Vec<KeyRange>,
) -> Result<(), EtcdError> {
    for op in ops {
        match &op.request {
            Some(Op::RequestPut(p)) if !puts.insert(p.key.clone()) => {
                return Err(EtcdError::DuplicateKey);
            }
            Some(Op::RequestDeleteRange(d)) => dels.push(KeyRange::from_etcd(&d.key, &d.range_end)),
            Some(Op::RequestTxn(t)) => {
                // Either branch may run; each must be free of duplicates with the outer ops.
                let (mut p1, mut d1) = (puts.clone(), dels.clone());
                collect_writes(&t.success, &mut p1, &mut d1)?;
                let (mut p2, mut d2) = (puts.clone(), dels.clone());
                collect_writes(&t.failure, &mut p2, &mut d2)?;
                puts.extend(p1.into_iter().chain(p2));
                dels.extend(d1.into_iter().chain(d2));
            }
            _ => {}
        }
    }
    Ok(())
}
