//! The store's client-facing errors and their one conversion to gRPC statuses.
//!
//! Texts and codes are etcd's (`api/v3rpc/rpctypes/error.go`), so `etcdctl` prints
//! what an operator expects: `Error: etcdserver: key is not provided`.

use tonic::{Code, Status};

/// An error a client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// An empty key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// ignore_value/ignore_lease on a missing key.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A value together with ignore_value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// A lease together with ignore_lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A txn over `--max-txn-ops`.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// A txn writing one key twice.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A bad sort order or target.
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    /// A compacted revision.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// A future revision.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    /// The NOSPACE alarm is raised.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// An unknown lease.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A lease ID in use.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A TTL over the maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// A request over `--max-request-bytes`.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// No leader is known.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// Not the leader, for leader-only calls.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// The leader changed while the request was in flight.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// The server is stopping.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// A proposal was not applied in time.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// A proposal timed out after the leader changed.
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    TimeoutDueToLeaderFail,
    /// An unknown member.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// A member ID in use.
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    /// Peer URLs in use.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// Bad member URLs.
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    /// Promoting a voter.
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    /// Promoting a learner that lags.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// More than one learner.
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// A reconfiguration that would lose quorum.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStarted,
    /// An RPC a learner does not serve.
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    /// The store is corrupt.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// Anything else; the text is the cause.
    #[error("{0}")]
    Internal(String),
}

impl EtcdError {
    /// The gRPC code etcd uses for this error.
    pub fn code(&self) -> Code {
        use EtcdError::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | InvalidSortOption | RequestTooLarge | MemberBadUrls => Code::InvalidArgument,
            Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace => Code::ResourceExhausted,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExists | NotLeader | MemberExists | PeerUrlExists | MemberNotLearner
            | LearnerNotReady | TooManyLearners | NotEnoughStarted => Code::FailedPrecondition,
            NoLeader
            | LeaderChanged
            | Stopped
            | Timeout
            | TimeoutDueToLeaderFail
            | NotSupportedForLearner => Code::Unavailable,
            Corrupt => Code::DataLoss,
            Internal(_) => Code::Internal,
        }
    }

    /// Recovers an error from a status produced by [`From<EtcdError> for Status`]
    /// (used where a member forwards a call to the leader).
    pub fn from_status(s: &Status) -> EtcdError {
        use EtcdError::*;
        let all = [
            EmptyKey,
            KeyNotFound,
            LeaseNotFound,
            LeaseExists,
            LeaseTtlTooLarge,
            NoLeader,
            NotLeader,
            Stopped,
            Timeout,
            NoSpace,
        ];
        all.into_iter()
            .find(|e| e.to_string() == s.message())
            .unwrap_or_else(|| Internal(s.message().to_owned()))
    }
}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

impl From<crate::mvcc::Error> for EtcdError {
    fn from(e: crate::mvcc::Error) -> Self {
        match e {
            crate::mvcc::Error::Compacted => EtcdError::Compacted,
            crate::mvcc::Error::FutureRev => EtcdError::FutureRev,
            other => {
                tracing::error!(error = %other, "storage failure");
                EtcdError::Internal(format!("etcdserver: {other}"))
            }
        }
    }
}

impl From<crate::engine::Error> for EtcdError {
    fn from(e: crate::engine::Error) -> Self {
        crate::mvcc::Error::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_etcd_codes_and_texts() {
        let s = Status::from(EtcdError::Compacted);
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        let s = Status::from(EtcdError::NoSpace);
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(
            EtcdError::from_status(&Status::from(EtcdError::LeaseNotFound)),
            EtcdError::LeaseNotFound
        );
    }
}
