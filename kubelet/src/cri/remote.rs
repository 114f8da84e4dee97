//! [`RemoteRuntime`]: the CRI over gRPC to a runtime's unix socket (containerd's
//! `unix:///run/containerd/containerd.sock`), as upstream's remote runtime service.

use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tonic::transport::{Channel, Endpoint};

use super::v1::image_service_client::ImageServiceClient;
use super::v1::runtime_service_client::RuntimeServiceClient;
use super::{Error, Result, Runtime, v1};

/// The runtime operation metrics, by upstream's names.
#[derive(Clone)]
pub struct Metrics {
    duration: HistogramVec,
    errors: IntCounterVec,
    total: IntCounterVec,
}

impl Metrics {
    /// Registers `kubelet_runtime_operations_{total,duration_seconds,errors_total}`.
    pub fn register(registry: &Registry) -> Metrics {
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "runtime_operations_duration_seconds",
                "Duration in seconds of runtime operations. Broken down by operation type.",
            )
            .subsystem("kubelet")
            .buckets(prometheus::exponential_buckets(0.005, 2.5, 14).unwrap_or_default()),
            &["operation_type"],
        )
        .expect("valid histogram");
        let errors = IntCounterVec::new(
            Opts::new(
                "runtime_operations_errors_total",
                "Cumulative number of runtime operation errors by operation type.",
            )
            .subsystem("kubelet"),
            &["operation_type"],
        )
        .expect("valid counter");
        let total = IntCounterVec::new(
            Opts::new(
                "runtime_operations_total",
                "Cumulative number of runtime operations by operation type.",
            )
            .subsystem("kubelet"),
            &["operation_type"],
        )
        .expect("valid counter");
        for c in [
            Box::new(duration.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(total.clone()),
        ] {
            if let Err(e) = registry.register(c) {
                tracing::warn!(error = %e, "registering runtime metrics");
            }
        }
        Metrics {
            duration,
            errors,
            total,
        }
    }

    fn observe<T>(&self, op: &str, start: Instant, r: &Result<T>) {
        self.total.with_label_values(&[op]).inc();
        self.duration
            .with_label_values(&[op])
            .observe(start.elapsed().as_secs_f64());
        if r.is_err() {
            self.errors.with_label_values(&[op]).inc();
        }
    }
}

/// The CRI over gRPC.
pub struct RemoteRuntime {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    metrics: Metrics,
    timeout: Duration,
}

/// gRPC's default message limit is 4 MiB; upstream's kubelet allows 16 MiB.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

impl RemoteRuntime {
    /// Connects to `endpoint` (`unix:///path` or a bare path), with upstream's
    /// `--runtime-request-timeout` for unary calls (image pulls are not limited).
    pub async fn connect(endpoint: &str, timeout: Duration, metrics: Metrics) -> Result<Self> {
        let path = endpoint
            .strip_prefix("unix://")
            .or_else(|| endpoint.starts_with('/').then_some(endpoint))
            .ok_or_else(|| Error::Endpoint(endpoint.to_owned()))?
            .to_owned();
        let channel = Endpoint::from_static("http://[::]:50051")
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .map_err(|source| Error::Connect {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        Ok(RemoteRuntime {
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            images: ImageServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            metrics,
            timeout,
        })
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(self.timeout);
        r
    }
}

/// Times `$call` as operation `$op`.
macro_rules! timed {
    ($self:ident, $op:literal, $call:expr) => {{
        let start = Instant::now();
        let r: Result<_> = async { Ok($call.await?.into_inner()) }.await;
        $self.metrics.observe($op, start, &r);
        r
    }};
}

#[async_trait::async_trait]
impl Runtime for RemoteRuntime {
    async fn version(&self) -> Result<v1::VersionResponse> {
        let req = self.request(v1::VersionRequest {
            version: "v1".into(),
        });
        timed!(self, "version", self.runtime.clone().version(req))
    }

    async fn status(&self) -> Result<v1::StatusResponse> {
        let req = self.request(v1::StatusRequest { verbose: false });
        timed!(self, "status", self.runtime.clone().status(req))
    }

    async fn run_pod_sandbox(&self, config: v1::PodSandboxConfig) -> Result<String> {
        // Sandboxes pull the pause image and set up the network: upstream waits
        // longer than the usual timeout (runtimeRequestTimeout × 2 in practice).
        let mut req = tonic::Request::new(v1::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        });
        req.set_timeout(self.timeout * 2);
        let r = timed!(
            self,
            "run_podsandbox",
            self.runtime.clone().run_pod_sandbox(req)
        )?;
        Ok(r.pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = self.request(v1::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        });
        timed!(
            self,
            "stop_podsandbox",
            self.runtime.clone().stop_pod_sandbox(req)
        )
        .map(drop)
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = self.request(v1::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        });
        timed!(
            self,
            "remove_podsandbox",
            self.runtime.clone().remove_pod_sandbox(req)
        )
        .map(drop)
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<v1::PodSandboxStatus> {
        let req = self.request(v1::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        });
        let r = timed!(
            self,
            "podsandbox_status",
            self.runtime.clone().pod_sandbox_status(req)
        )?;
        r.status
            .ok_or_else(|| tonic::Status::unknown("PodSandboxStatus returned no status").into())
    }

    async fn list_pod_sandbox(&self, pod_uid: Option<&str>) -> Result<Vec<v1::PodSandbox>> {
        let req = self.request(v1::ListPodSandboxRequest {
            filter: Some(v1::PodSandboxFilter {
                label_selector: super::pod_selector(pod_uid),
                ..Default::default()
            }),
        });
        Ok(timed!(
            self,
            "list_podsandbox",
            self.runtime.clone().list_pod_sandbox(req)
        )?
        .items)
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: v1::ContainerConfig,
        sandbox_config: v1::PodSandboxConfig,
    ) -> Result<String> {
        let req = self.request(v1::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        });
        Ok(timed!(
            self,
            "create_container",
            self.runtime.clone().create_container(req)
        )?
        .container_id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let req = self.request(v1::StartContainerRequest {
            container_id: id.into(),
        });
        timed!(
            self,
            "start_container",
            self.runtime.clone().start_container(req)
        )
        .map(drop)
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        // The call lasts up to the grace period: upstream adds it to the timeout.
        let mut req = tonic::Request::new(v1::StopContainerRequest {
            container_id: id.into(),
            timeout: timeout.as_secs() as i64,
        });
        req.set_timeout(self.timeout + timeout);
        timed!(
            self,
            "stop_container",
            self.runtime.clone().stop_container(req)
        )
        .map(drop)
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let req = self.request(v1::RemoveContainerRequest {
            container_id: id.into(),
        });
        timed!(
            self,
            "remove_container",
            self.runtime.clone().remove_container(req)
        )
        .map(drop)
    }

    async fn list_containers(&self, pod_uid: Option<&str>) -> Result<Vec<v1::Container>> {
        let req = self.request(v1::ListContainersRequest {
            filter: Some(v1::ContainerFilter {
                label_selector: super::pod_selector(pod_uid),
                ..Default::default()
            }),
        });
        Ok(timed!(
            self,
            "list_containers",
            self.runtime.clone().list_containers(req)
        )?
        .containers)
    }

    async fn container_status(&self, id: &str) -> Result<v1::ContainerStatus> {
        let req = self.request(v1::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        });
        let r = timed!(
            self,
            "container_status",
            self.runtime.clone().container_status(req)
        )?;
        r.status
            .ok_or_else(|| tonic::Status::unknown("ContainerStatus returned no status").into())
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<v1::ExecSyncResponse> {
        let mut req = tonic::Request::new(v1::ExecSyncRequest {
            container_id: id.into(),
            cmd,
            timeout: timeout.as_secs() as i64,
        });
        req.set_timeout(self.timeout + timeout);
        timed!(self, "exec_sync", self.runtime.clone().exec_sync(req))
    }

    async fn exec(&self, req: v1::ExecRequest) -> Result<String> {
        let req = self.request(req);
        Ok(timed!(self, "exec", self.runtime.clone().exec(req))?.url)
    }

    async fn attach(&self, req: v1::AttachRequest) -> Result<String> {
        let req = self.request(req);
        Ok(timed!(self, "attach", self.runtime.clone().attach(req))?.url)
    }

    async fn port_forward(&self, req: v1::PortForwardRequest) -> Result<String> {
        let req = self.request(req);
        Ok(timed!(self, "port_forward", self.runtime.clone().port_forward(req))?.url)
    }

    async fn image_status(&self, image: &str) -> Result<Option<v1::Image>> {
        let req = self.request(v1::ImageStatusRequest {
            image: Some(v1::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        });
        Ok(timed!(self, "image_status", self.images.clone().image_status(req))?.image)
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: Option<v1::AuthConfig>,
        sandbox_config: Option<v1::PodSandboxConfig>,
    ) -> Result<String> {
        // No deadline: pulls take as long as they take (upstream's imagePullProgressDeadline
        // only applies to Docker).
        let req = tonic::Request::new(v1::PullImageRequest {
            image: Some(v1::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            auth,
            sandbox_config,
        });
        Ok(timed!(self, "pull_image", self.images.clone().pull_image(req))?.image_ref)
    }

    async fn list_images(&self) -> Result<Vec<v1::Image>> {
        let req = self.request(v1::ListImagesRequest { filter: None });
        Ok(timed!(self, "list_images", self.images.clone().list_images(req))?.images)
    }

    async fn image_fs_info(&self) -> Result<v1::ImageFsInfoResponse> {
        let req = self.request(v1::ImageFsInfoRequest {});
        timed!(
            self,
            "image_fs_info",
            self.images.clone().image_fs_info(req)
        )
    }
}
