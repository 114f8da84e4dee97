//! gRPC definitions shared by Keelson's daemons.
//!
//! - [`etcdserverpb`], [`mvccpb`], [`authpb`]: the etcd v3 API, compiled from etcd's own
//!   `.proto` files (vendored under `proto/etcd`), so the generated servers are wire
//!   compatible with etcd 3.4 and 3.5 clients such as `etcdctl`.
//! - [`runtime`]: the Container Runtime Interface (`runtime.v1` RuntimeService and
//!   ImageService), the kubelet's wire to containerd; vendored under `proto/cri`.
//! - [`peer`]: the store's member-to-member service: Raft transport, membership
//!   discovery for joining members, and lease forwarding to the leader.
//!
//! The protos are compiled by `protox` in `build.rs`; no system `protoc` is needed.

#![allow(missing_docs, unreachable_pub, clippy::all)]

/// etcd's `etcdserverpb` package: KV, Watch, Lease, Cluster, Maintenance and Auth.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// etcd's `mvccpb` package: `KeyValue` and `Event`.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's `authpb` package: users and roles.
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// Keelson's own packages, nested as prost expects for `keelson.peer.v1`.
pub mod keelson {
    /// `keelson.peer`.
    pub mod peer {
        /// `keelson.peer.v1`: the member-to-member service.
        pub mod v1 {
            tonic::include_proto!("keelson.peer.v1");
        }
    }
}

pub use keelson::peer::v1 as peer;

/// The CRI's `runtime` package.
pub mod cri {
    /// `runtime.v1`: RuntimeService and ImageService.
    pub mod v1 {
        tonic::include_proto!("runtime.v1");
    }
}

pub use cri::v1 as runtime;

/// The encoded `FileDescriptorSet` is not needed at run time; this keeps the names
/// `google.api` and `grpc.gateway` (annotation packages) out of the public API.
#[doc(hidden)]
pub mod google {
    /// `google.api` annotations.
    pub mod api {
        tonic::include_proto!("google.api");
    }
}
