//! Image pulls, as upstream's image manager: `imagePullPolicy`, serialized or
//! parallel pulls, the per-image back-off, and upstream's events and waiting
//! reasons (`ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Container;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::cri::{self, v1};
use crate::kuberuntime::Backoff;

/// A pull that did not give an image: the waiting reason and message, and the
/// event to record (reason, message) if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullFailure {
    /// `ErrImagePull`, `ImagePullBackOff` or `ErrImageNeverPull`.
    pub reason: &'static str,
    /// The container's waiting message.
    pub message: String,
}

/// What a pull reports as events: (type is Warning, reason, message).
pub type Note = (bool, &'static str, String);

/// Pulls images for containers.
pub struct ImageManager {
    runtime: Arc<dyn cri::Runtime>,
    serial: Option<Semaphore>,
    backoff: Mutex<Backoff>,
    /// When each image last failed, for the back-off.
    failed_at: Mutex<std::collections::HashMap<String, Instant>>,
}

/// The image's pull policy, defaulted as the API does: `Always` for `:latest` or no
/// tag, else `IfNotPresent`.
pub fn pull_policy(c: &Container) -> String {
    if let Some(p) = &c.image_pull_policy {
        return p.clone();
    }
    let image = c.image.as_deref().unwrap_or_default();
    let name = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent".into();
    }
    match name.split_once(':') {
        None => "Always".into(),
        Some((_, "latest")) => "Always".into(),
        Some(_) => "IfNotPresent".into(),
    }
}

impl ImageManager {
    /// Pulls through `runtime`, one at a time when `serialize`.
    pub fn new(runtime: Arc<dyn cri::Runtime>, serialize: bool) -> Self {
        ImageManager {
            runtime,
            serial: serialize.then(|| Semaphore::new(1)),
            backoff: Mutex::new(Backoff::default()),
            failed_at: Mutex::new(Default::default()),
        }
    }

    /// Makes sure the container's image is present, pulling it by policy. Returns
    /// the image reference to create the container from, and the events to record.
    pub async fn ensure(
        &self,
        pod_uid: &str,
        c: &Container,
        sandbox: Option<v1::PodSandboxConfig>,
        notes: &mut Vec<Note>,
    ) -> Result<String, PullFailure> {
        let image = c.image.clone().unwrap_or_default();
        let policy = pull_policy(c);
        let present = match self.runtime.image_status(&image).await {
            Ok(i) => i,
            Err(e) => {
                return Err(PullFailure {
                    reason: "ErrImageInspect",
                    message: format!("Failed to inspect image {image:?}: {e}"),
                });
            }
        };
        if policy != "Always" {
            if let Some(i) = present {
                notes.push((
                    false,
                    "Pulled",
                    format!("Container image {image:?} already present on machine"),
                ));
                return Ok(i.id);
            }
            if policy == "Never" {
                let message =
                    format!("Container image {image:?} is not present with pull policy of Never");
                notes.push((true, "ErrImageNeverPull", message.clone()));
                return Err(PullFailure {
                    reason: "ErrImageNeverPull",
                    message,
                });
            }
        }
        let key = Backoff::key(pod_uid, &image);
        let since = self
            .failed_at
            .lock()
            .get(&key)
            .map(|t| t.elapsed())
            .unwrap_or(Duration::MAX);
        if since != Duration::MAX
            && self
                .backoff
                .lock()
                .check(&key, since, Instant::now())
                .is_some()
        {
            let message = format!("Back-off pulling image {image:?}");
            notes.push((false, "BackOff", message.clone()));
            return Err(PullFailure {
                reason: "ImagePullBackOff",
                message,
            });
        }
        notes.push((false, "Pulling", format!("Pulling image {image:?}")));
        let queued = Instant::now();
        let _permit = match &self.serial {
            Some(s) => s.acquire().await.ok(),
            None => None,
        };
        let started = Instant::now();
        match self.runtime.pull_image(&image, None, sandbox).await {
            Ok(reference) => {
                self.failed_at.lock().remove(&key);
                let size = self
                    .runtime
                    .image_status(&reference)
                    .await
                    .ok()
                    .flatten()
                    .map(|i| i.size)
                    .unwrap_or(0);
                notes.push((
                    false,
                    "Pulled",
                    format!(
                        "Successfully pulled image {image:?} in {} ({} including waiting). Image size: {size} bytes.",
                        go_secs(started.elapsed()),
                        go_secs(queued.elapsed())
                    ),
                ));
                Ok(reference)
            }
            Err(e) => {
                self.failed_at.lock().insert(key, Instant::now());
                let message = format!("Failed to pull image {image:?}: {e}");
                notes.push((true, "Failed", message.clone()));
                notes.push((true, "Failed", "Error: ErrImagePull".into()));
                Err(PullFailure {
                    reason: "ErrImagePull",
                    message,
                })
            }
        }
    }
}

/// A duration as Go prints it, rounded to milliseconds (`1.234s`, `850ms`).
fn go_secs(d: Duration) -> String {
    let ms = d.as_millis() as i64;
    component_base::duration::go_string(ms * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pull_policies() {
        let c = |image: &str| Container {
            name: "c".into(),
            image: Some(image.into()),
            ..Default::default()
        };
        assert_eq!(pull_policy(&c("busybox")), "Always");
        assert_eq!(pull_policy(&c("busybox:latest")), "Always");
        assert_eq!(pull_policy(&c("busybox:1.36")), "IfNotPresent");
        assert_eq!(pull_policy(&c("localhost:5000/x")), "Always");
        assert_eq!(pull_policy(&c("localhost:5000/x:1")), "IfNotPresent");
        assert_eq!(pull_policy(&c("x@sha256:abc")), "IfNotPresent");
    }
}
