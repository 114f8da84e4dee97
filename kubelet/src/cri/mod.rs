//! The container runtime behind the kubelet, as the CRI (`runtime.v1`) defines it.
//!
//! [`Runtime`] is the slice of RuntimeService and ImageService the kubelet calls,
//! over the generated CRI message types, so the kubelet's logic is written once
//! against it: [`remote::RemoteRuntime`] speaks gRPC to containerd over its unix
//! socket; unit tests and hollow nodes use an in-memory runtime. Every call is timed
//! into `kubelet_runtime_operations_duration_seconds` and failures counted into
//! `kubelet_runtime_operations_errors_total`, by upstream's operation names.

pub mod remote;

use std::time::Duration;

pub use proto::runtime as v1;

/// What a runtime call failed with: the gRPC status, kept whole so callers can tell
/// NotFound from the rest, as upstream's kubelet does.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime answered with a gRPC error.
    #[error("rpc error: code = {code} desc = {message}", code = go_code(.0.code()), message = .0.message())]
    Status(#[from] tonic::Status),
    /// The runtime's endpoint could not be reached.
    #[error("failed to connect to the container runtime at {endpoint}: {source}")]
    Connect {
        /// The endpoint, as given by `--container-runtime-endpoint`.
        endpoint: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The endpoint is not a unix socket URL.
    #[error("unsupported container runtime endpoint {0:?}: only unix:// sockets are supported")]
    Endpoint(String),
}

impl Error {
    /// Whether the runtime said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Status(s) if s.code() == tonic::Code::NotFound)
    }
}

/// Go's grpc code names (`NotFound`, `Unknown`), as upstream's messages print them.
fn go_code(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

/// Result of a runtime call.
pub type Result<T> = std::result::Result<T, Error>;

/// The CRI calls the kubelet makes. Implementations are cheap to share (`Arc`).
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// `Version`: the runtime's name and version.
    async fn version(&self) -> Result<v1::VersionResponse>;
    /// `Status`: whether the runtime and its network are ready.
    async fn status(&self) -> Result<v1::StatusResponse>;

    /// `RunPodSandbox`: the sandbox's id.
    async fn run_pod_sandbox(&self, config: v1::PodSandboxConfig) -> Result<String>;
    /// `StopPodSandbox`.
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()>;
    /// `RemovePodSandbox`.
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()>;
    /// `PodSandboxStatus`.
    async fn pod_sandbox_status(&self, id: &str) -> Result<v1::PodSandboxStatus>;
    /// `ListPodSandbox`: all of them, or one pod's (by its UID label).
    async fn list_pod_sandbox(&self, pod_uid: Option<&str>) -> Result<Vec<v1::PodSandbox>>;

    /// `CreateContainer` in a sandbox: the container's id.
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: v1::ContainerConfig,
        sandbox_config: v1::PodSandboxConfig,
    ) -> Result<String>;
    /// `StartContainer`.
    async fn start_container(&self, id: &str) -> Result<()>;
    /// `StopContainer`, killing it after `timeout`.
    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()>;
    /// `RemoveContainer`.
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// `ListContainers`: all of them, or one pod's (by its UID label).
    async fn list_containers(&self, pod_uid: Option<&str>) -> Result<Vec<v1::Container>>;
    /// `ContainerStatus`.
    async fn container_status(&self, id: &str) -> Result<v1::ContainerStatus>;
    /// `ExecSync`: runs `cmd` in the container, returning stdout, stderr and exit code.
    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<v1::ExecSyncResponse>;
    /// `Exec`: the streaming URL for an exec session.
    async fn exec(&self, req: v1::ExecRequest) -> Result<String>;
    /// `Attach`: the streaming URL for an attach session.
    async fn attach(&self, req: v1::AttachRequest) -> Result<String>;
    /// `PortForward`: the streaming URL for a port-forward session.
    async fn port_forward(&self, req: v1::PortForwardRequest) -> Result<String>;

    /// `ImageStatus`: the image, if present.
    async fn image_status(&self, image: &str) -> Result<Option<v1::Image>>;
    /// `PullImage`: the image's reference (digest) once pulled.
    async fn pull_image(
        &self,
        image: &str,
        auth: Option<v1::AuthConfig>,
        sandbox_config: Option<v1::PodSandboxConfig>,
    ) -> Result<String>;
    /// `ListImages`.
    async fn list_images(&self) -> Result<Vec<v1::Image>>;
    /// `ImageFsInfo`: the image filesystems' usage.
    async fn image_fs_info(&self) -> Result<v1::ImageFsInfoResponse>;
}

/// The label every sandbox and container of a pod carries: the pod's UID.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";

/// A label selector for one pod's sandboxes and containers.
pub fn pod_selector(pod_uid: Option<&str>) -> std::collections::HashMap<String, String> {
    pod_uid
        .map(|u| (POD_UID_LABEL.to_owned(), u.to_owned()))
        .into_iter()
        .collect()
}

/// CRI container states, by the names the kubelet uses.
pub mod state {
    use super::v1::ContainerState;

    /// `CONTAINER_CREATED`.
    pub const CREATED: i32 = ContainerState::ContainerCreated as i32;
    /// `CONTAINER_RUNNING`.
    pub const RUNNING: i32 = ContainerState::ContainerRunning as i32;
    /// `CONTAINER_EXITED`.
    pub const EXITED: i32 = ContainerState::ContainerExited as i32;
    /// `CONTAINER_UNKNOWN`.
    pub const UNKNOWN: i32 = ContainerState::ContainerUnknown as i32;
    /// `SANDBOX_READY`.
    pub const SANDBOX_READY: i32 = super::v1::PodSandboxState::SandboxReady as i32;
}
