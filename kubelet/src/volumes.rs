//! Pod volumes on the node, as upstream's volume plugins lay them out under
//! `<root-dir>/pods/<uid>/volumes/<plugin>/<name>`:
//!
//! - `emptyDir` (`kubernetes.io~empty-dir`): a directory, or a tmpfs for
//!   `medium: Memory` (sized by `sizeLimit`);
//! - `hostPath`: the host's path, checked or created by its `type`;
//! - `configMap`, `secret`, `downwardAPI`, `projected` (service account tokens from
//!   TokenRequest, ConfigMaps, Secrets, downward API): files written by the
//!   [`AtomicWriter`] (a timestamped directory, the `..data` symlink swapped in one
//!   rename, user-visible symlinks through it), on a tmpfs for secrets and
//!   projections, rewritten at every sync so updates reach running pods;
//! - `persistentVolumeClaim` bound to a `hostPath` or `local` PersistentVolume.
//!
//! Mounting goes through the [`Mounter`] trait (`mount`/`umount` here).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod,
    ServiceAccount, Volume,
};
use kube::api::{Api, PostParams};
use parking_lot::Mutex;

use crate::cri::v1;
use crate::env::{self, NodeValues, Objects};

/// Why a volume could not be set up; shown as `MountVolume.SetUp failed for volume
/// "x" : <this>` in the `FailedMount` event.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A referenced object is missing or unreadable.
    #[error(transparent)]
    Object(#[from] env::Error),
    /// A key an item names is missing.
    #[error("configmap references non-existent config key: {0}")]
    MissingConfigKey(String),
    /// A key an item names is missing.
    #[error("references non-existent secret key: {0}")]
    MissingSecretKey(String),
    /// A hostPath's type check failed.
    #[error("hostPath type check failed: {path} is not a {kind}")]
    HostPathType {
        /// The path.
        path: String,
        /// What it should have been.
        kind: String,
    },
    /// The token could not be requested.
    #[error("failed to fetch token: {0}")]
    Token(String),
    /// A claim is not bound to a volume the node can mount.
    #[error("{0}")]
    Claim(String),
    /// The filesystem failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A mount failed.
    #[error("mount failed: {0}")]
    Mount(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Mounting and unmounting.
pub trait Mounter: Send + Sync {
    /// Mounts a tmpfs at `path` (of at most `size` bytes).
    fn mount_tmpfs(&self, path: &Path, size: Option<u64>) -> Result<(), Error>;
    /// Unmounts `path`.
    fn unmount(&self, path: &Path) -> Result<(), Error>;
    /// The mount points at or under `path`.
    fn mounts_under(&self, path: &Path) -> Vec<PathBuf>;
}

/// [`Mounter`] by the `mount` and `umount` commands and `/proc/self/mountinfo`.
pub struct SystemMounter;

impl Mounter for SystemMounter {
    fn mount_tmpfs(&self, path: &Path, size: Option<u64>) -> Result<(), Error> {
        let mut cmd = std::process::Command::new("mount");
        cmd.args(["-t", "tmpfs"]);
        if let Some(s) = size {
            cmd.args(["-o", &format!("size={s}")]);
        }
        cmd.arg("tmpfs").arg(path);
        let out = cmd.output().map_err(|e| Error::Mount(e.to_string()))?;
        if !out.status.success() {
            return Err(Error::Mount(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        Ok(())
    }

    fn unmount(&self, path: &Path) -> Result<(), Error> {
        let out = std::process::Command::new("umount")
            .arg(path)
            .output()
            .map_err(|e| Error::Mount(e.to_string()))?;
        if !out.status.success() {
            return Err(Error::Mount(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        Ok(())
    }

    fn mounts_under(&self, path: &Path) -> Vec<PathBuf> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        info.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(|p| PathBuf::from(p.replace("\\040", " ")))
            .filter(|p| p.starts_with(path))
            .collect()
    }
}

/// Writes a volume's files so readers always see one consistent set, as upstream's
/// `AtomicWriter`.
pub struct AtomicWriter<'a> {
    /// The volume's directory.
    pub dir: &'a Path,
}

impl AtomicWriter<'_> {
    /// Makes the directory hold exactly `files` (relative path → (content, mode)).
    /// Unchanged content is left alone.
    pub fn write(&self, files: &BTreeMap<String, (Vec<u8>, u32)>) -> Result<(), Error> {
        let data = self.dir.join("..data");
        if let Ok(cur) = std::fs::read_link(&data) {
            let cur_dir = self.dir.join(&cur);
            if same(&cur_dir, files) {
                return Ok(());
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let ts_name = format!("..{nanos}");
        let ts = self.dir.join(&ts_name);
        std::fs::create_dir_all(&ts).map_err(io(&ts))?;
        for (rel, (content, mode)) in files {
            let p = ts.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let mut f = std::fs::File::create(&p).map_err(io(&p))?;
            f.write_all(content).map_err(io(&p))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).map_err(io(&p))?;
        }
        let old = std::fs::read_link(&data).ok();
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&ts_name, &tmp).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &data).map_err(io(&data))?;
        // The user-visible names: one symlink per top-level entry, through ..data.
        let tops: std::collections::BTreeSet<String> = files
            .keys()
            .map(|k| k.split('/').next().unwrap_or_default().to_owned())
            .collect();
        for top in &tops {
            let link = self.dir.join(top);
            if std::fs::read_link(&link).is_err() {
                std::os::unix::fs::symlink(format!("..data/{top}"), &link).map_err(io(&link))?;
            }
        }
        for entry in std::fs::read_dir(self.dir).map_err(io(self.dir))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("..") && !tops.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        if let Some(old) = old.filter(|o| o.as_os_str() != ts_name.as_str()) {
            let _ = std::fs::remove_dir_all(self.dir.join(old));
        }
        Ok(())
    }
}

fn same(dir: &Path, files: &BTreeMap<String, (Vec<u8>, u32)>) -> bool {
    let mut count = 0;
    fn walk(d: &Path, n: &mut usize) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, n);
            } else {
                *n += 1;
            }
        }
    }
    walk(dir, &mut count);
    count == files.len()
        && files.iter().all(|(rel, (content, mode))| {
            let p = dir.join(rel);
            std::fs::read(&p).is_ok_and(|c| &c == content)
                && std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o7777 == *mode)
        })
}

/// A cached service account token.
struct Token {
    token: String,
    fetched: Instant,
    ttl: Duration,
}

/// Sets up and tears down pod volumes.
pub struct VolumeManager {
    root: PathBuf,
    client: Option<kube::Client>,
    objects: Arc<dyn Objects>,
    mounter: Arc<dyn Mounter>,
    tokens: Mutex<HashMap<String, Token>>,
}

/// The volumes of one pod: name → host path.
pub type PodVolumes = HashMap<String, PathBuf>;

fn mode(m: Option<i32>, default: i32) -> u32 {
    m.unwrap_or(default) as u32 & 0o7777
}

impl VolumeManager {
    /// Volumes under `root` (`<root-dir>/pods`).
    pub fn new(
        root: PathBuf,
        client: Option<kube::Client>,
        objects: Arc<dyn Objects>,
        mounter: Arc<dyn Mounter>,
    ) -> Self {
        VolumeManager {
            root,
            client,
            objects,
            mounter,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The pod's directory.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join(uid)
    }

    /// Sets up every volume of `pod` (idempotent; refreshes file contents).
    pub async fn setup(&self, pod: &Pod, node: &NodeValues) -> Result<PodVolumes, (String, Error)> {
        let (_, _, uid) = crate::kuberuntime::pod_ids(pod);
        let mut out = HashMap::new();
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let path = self
                .setup_one(pod, uid, v, node)
                .await
                .map_err(|e| (v.name.clone(), e))?;
            out.insert(v.name.clone(), path);
        }
        Ok(out)
    }

    fn plugin_dir(&self, uid: &str, plugin: &str, name: &str) -> PathBuf {
        self.pod_dir(uid).join("volumes").join(plugin).join(name)
    }

    fn ensure_tmpfs(&self, dir: &Path, size: Option<u64>) -> Result<(), Error> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        if !self.mounter.mounts_under(dir).iter().any(|m| m == dir) {
            self.mounter.mount_tmpfs(dir, size)?;
        }
        Ok(())
    }

    async fn setup_one(
        &self,
        pod: &Pod,
        uid: &str,
        v: &Volume,
        node: &NodeValues,
    ) -> Result<PathBuf, Error> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        if let Some(e) = &v.empty_dir {
            let dir = self.plugin_dir(uid, "kubernetes.io~empty-dir", &v.name);
            if e.medium.as_deref() == Some("Memory") {
                let size = e
                    .size_limit
                    .as_ref()
                    .and_then(|q| component_base::quantity::parse(&q.0))
                    .map(|n| (n / 1_000_000_000) as u64);
                self.ensure_tmpfs(&dir, size)?;
            } else {
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                    .map_err(io(&dir))?;
            }
            return Ok(dir);
        }
        if let Some(h) = &v.host_path {
            return host_path(&h.path, h.type_.as_deref().unwrap_or(""));
        }
        if let Some(c) = &v.config_map {
            let dir = self.plugin_dir(uid, "kubernetes.io~configmap", &v.name);
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let files = self
                .config_map_files(
                    ns,
                    &c.name,
                    c.items.as_deref(),
                    c.optional.unwrap_or(false),
                    mode(c.default_mode, 0o644),
                )
                .await?;
            AtomicWriter { dir: &dir }.write(&files)?;
            return Ok(dir);
        }
        if let Some(s) = &v.secret {
            let dir = self.plugin_dir(uid, "kubernetes.io~secret", &v.name);
            self.ensure_tmpfs(&dir, None)?;
            let name = s.secret_name.clone().unwrap_or_default();
            let files = self
                .secret_files(
                    ns,
                    &name,
                    s.items.as_deref(),
                    s.optional.unwrap_or(false),
                    mode(s.default_mode, 0o644),
                )
                .await?;
            AtomicWriter { dir: &dir }.write(&files)?;
            return Ok(dir);
        }
        if let Some(d) = &v.downward_api {
            let dir = self.plugin_dir(uid, "kubernetes.io~downward-api", &v.name);
            self.ensure_tmpfs(&dir, None)?;
            let files = downward_files(
                pod,
                d.items.as_deref().unwrap_or_default(),
                mode(d.default_mode, 0o644),
                node,
            )?;
            AtomicWriter { dir: &dir }.write(&files)?;
            return Ok(dir);
        }
        if let Some(p) = &v.projected {
            let dir = self.plugin_dir(uid, "kubernetes.io~projected", &v.name);
            self.ensure_tmpfs(&dir, None)?;
            let default = mode(p.default_mode, 0o644);
            let mut files = BTreeMap::new();
            for src in p.sources.iter().flatten() {
                if let Some(c) = &src.config_map {
                    files.extend(
                        self.config_map_files(
                            ns,
                            &c.name,
                            c.items.as_deref(),
                            c.optional.unwrap_or(false),
                            default,
                        )
                        .await?,
                    );
                }
                if let Some(s) = &src.secret {
                    files.extend(
                        self.secret_files(
                            ns,
                            &s.name,
                            s.items.as_deref(),
                            s.optional.unwrap_or(false),
                            default,
                        )
                        .await?,
                    );
                }
                if let Some(d) = &src.downward_api {
                    files.extend(downward_files(
                        pod,
                        d.items.as_deref().unwrap_or_default(),
                        default,
                        node,
                    )?);
                }
                if let Some(t) = &src.service_account_token {
                    let token = self
                        .token(
                            pod,
                            t.audience.clone(),
                            t.expiration_seconds.unwrap_or(3600),
                        )
                        .await?;
                    files.insert(t.path.clone(), (token.into_bytes(), default));
                }
            }
            AtomicWriter { dir: &dir }.write(&files)?;
            return Ok(dir);
        }
        if let Some(c) = &v.persistent_volume_claim {
            return self.claim_path(ns, &c.claim_name).await;
        }
        Err(Error::Claim(format!(
            "volume {:?}: unsupported volume type",
            v.name
        )))
    }

    async fn claim_path(&self, ns: &str, claim: &str) -> Result<PathBuf, Error> {
        let client = self
            .client
            .clone()
            .ok_or_else(|| Error::Claim("no API server to read claims from".into()))?;
        let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
            .get_opt(claim)
            .await
            .map_err(|e| Error::Claim(client_base::errors::message(&e)))?
            .ok_or_else(|| Error::Claim(format!("persistentvolumeclaim {claim:?} not found")))?;
        let pv_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::Claim(format!("PVC {ns}/{claim} has non-bound phase (\"Pending\") or empty pvc.Spec.VolumeName (\"\")")))?;
        let pv = Api::<PersistentVolume>::all(client)
            .get(&pv_name)
            .await
            .map_err(|e| Error::Claim(client_base::errors::message(&e)))?;
        let spec = pv.spec.unwrap_or_default();
        if let Some(h) = spec.host_path {
            return host_path(&h.path, h.type_.as_deref().unwrap_or(""));
        }
        if let Some(l) = spec.local {
            return Ok(PathBuf::from(l.path));
        }
        Err(Error::Claim(format!(
            "persistent volume {pv_name:?} has no volume source this node can mount"
        )))
    }

    async fn config_map_files(
        &self,
        ns: &str,
        name: &str,
        items: Option<&[KeyToPath]>,
        optional: bool,
        default: u32,
    ) -> Result<BTreeMap<String, (Vec<u8>, u32)>, Error> {
        let Some(cm) = self.objects.config_map(ns, name).await? else {
            if optional {
                return Ok(BTreeMap::new());
            }
            return Err(env::Error::ConfigMapNotFound(name.to_owned()).into());
        };
        let mut data: BTreeMap<String, Vec<u8>> = cm
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        data.extend(
            cm.binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0)),
        );
        project(data, items, default, optional, Error::MissingConfigKey)
    }

    async fn secret_files(
        &self,
        ns: &str,
        name: &str,
        items: Option<&[KeyToPath]>,
        optional: bool,
        default: u32,
    ) -> Result<BTreeMap<String, (Vec<u8>, u32)>, Error> {
        let Some(s) = self.objects.secret(ns, name).await? else {
            if optional {
                return Ok(BTreeMap::new());
            }
            return Err(env::Error::SecretNotFound(name.to_owned()).into());
        };
        let data: BTreeMap<String, Vec<u8>> = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        project(data, items, default, optional, Error::MissingSecretKey)
    }

    /// A bound token for the pod's service account, refreshed after 80% of its
    /// lifetime, as upstream's token manager.
    async fn token(
        &self,
        pod: &Pod,
        audience: Option<String>,
        expiration: i64,
    ) -> Result<String, Error> {
        let (name, ns, uid) = crate::kuberuntime::pod_ids(pod);
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let key = format!("{ns}/{sa}/{uid}/{audience:?}/{expiration}");
        if let Some(t) = self.tokens.lock().get(&key)
            && t.fetched.elapsed() < t.ttl.mul_f64(0.8)
        {
            return Ok(t.token.clone());
        }
        let client = self
            .client
            .clone()
            .ok_or_else(|| Error::Token("no API server".into()))?;
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.into_iter().filter(|a| !a.is_empty()).collect(),
                expiration_seconds: Some(expiration),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(name.into()),
                    uid: Some(uid.into()),
                }),
            },
            ..Default::default()
        };
        let resp = Api::<ServiceAccount>::namespaced(client, ns)
            .create_token_request(&sa, &PostParams::default(), &req)
            .await
            .map_err(|e| Error::Token(client_base::errors::message(&e)))?;
        let token = resp.status.map(|s| s.token).unwrap_or_default();
        self.tokens.lock().insert(
            key,
            Token {
                token: token.clone(),
                fetched: Instant::now(),
                ttl: Duration::from_secs(expiration.max(600) as u64),
            },
        );
        Ok(token)
    }

    /// Unmounts and removes the pod's directory.
    pub fn teardown(&self, uid: &str) -> Result<(), Error> {
        let dir = self.pod_dir(uid);
        let mut mounts = self.mounter.mounts_under(&dir);
        // Deepest first.
        mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for m in mounts {
            self.mounter.unmount(&m)?;
        }
        self.tokens
            .lock()
            .retain(|k, _| !k.contains(&format!("/{uid}/")));
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir)(e)),
        }
    }

    /// The UIDs of the pods that have directories here.
    pub fn pod_dirs(&self) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

fn project(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default: u32,
    optional: bool,
    missing: fn(String) -> Error,
) -> Result<BTreeMap<String, (Vec<u8>, u32)>, Error> {
    let Some(items) = items.filter(|i| !i.is_empty()) else {
        return Ok(data.into_iter().map(|(k, v)| (k, (v, default))).collect());
    };
    let mut out = BTreeMap::new();
    for it in items {
        match data.get(&it.key) {
            Some(v) => {
                out.insert(it.path.clone(), (v.clone(), mode(it.mode, default as i32)));
            }
            None if optional => {}
            None => return Err(missing(it.key.clone())),
        }
    }
    Ok(out)
}

fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default: u32,
    node: &NodeValues,
) -> Result<BTreeMap<String, (Vec<u8>, u32)>, Error> {
    let mut out = BTreeMap::new();
    for it in items {
        let v = if let Some(f) = &it.field_ref {
            env::field_value(pod, f, node)?
        } else if let Some(r) = &it.resource_field_ref {
            let c = r
                .container_name
                .as_deref()
                .and_then(|n| pod.spec.as_ref()?.containers.iter().find(|c| c.name == n))
                .cloned()
                .unwrap_or_default();
            env::resource_value(&c, r, node)?
        } else {
            continue;
        };
        out.insert(
            it.path.clone(),
            (v.into_bytes(), mode(it.mode, default as i32)),
        );
    }
    Ok(out)
}

/// A hostPath, checked or created by its `type` as upstream's hostPath plugin.
fn host_path(path: &str, kind: &str) -> Result<PathBuf, Error> {
    let p = PathBuf::from(path);
    let fail = |k: &str| Error::HostPathType {
        path: path.to_owned(),
        kind: k.to_owned(),
    };
    match kind {
        "DirectoryOrCreate" => {
            if !p.exists() {
                std::fs::create_dir_all(&p).map_err(io(&p))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                    .map_err(io(&p))?;
            } else if !p.is_dir() {
                return Err(fail("directory"));
            }
        }
        "Directory" if !p.is_dir() => return Err(fail("directory")),
        "FileOrCreate" => {
            if !p.exists() {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent))?;
                }
                std::fs::File::create(&p).map_err(io(&p))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))
                    .map_err(io(&p))?;
            } else if !p.is_file() {
                return Err(fail("file"));
            }
        }
        "File" if !p.is_file() => return Err(fail("file")),
        "Socket" | "CharDevice" | "BlockDevice" if !p.exists() => {
            return Err(fail(&kind.to_lowercase()));
        }
        _ => {}
    }
    Ok(p)
}

/// The kubelet-managed `/etc/hosts` of a pod not on the host network.
pub fn etc_hosts(
    hostname: &str,
    pod_ips: &[String],
    host_aliases: &[k8s_openapi::api::core::v1::HostAlias],
) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    for ip in pod_ips {
        s.push_str(&format!("{ip}\t{hostname}\n"));
    }
    if !host_aliases.is_empty() {
        s.push_str("\n# Entries added by HostAliases.\n");
        for a in host_aliases {
            s.push_str(&format!(
                "{}\t{}\n",
                a.ip,
                a.hostnames.clone().unwrap_or_default().join("\t")
            ));
        }
    }
    s
}

/// The CRI mounts of `container`: its volume mounts (with `subPath`), then the
/// pod's `/etc/hosts` and the container's termination message file.
pub fn container_mounts(
    c: &Container,
    volumes: &PodVolumes,
    etc_hosts: Option<&Path>,
    termination_log: Option<&Path>,
) -> Result<Vec<v1::Mount>, String> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let Some(base) = volumes.get(&m.name) else {
            return Err(format!(
                "cannot find volume {:?} to mount into container {:?}",
                m.name, c.name
            ));
        };
        let mut host = base.clone();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if sub.starts_with('/') || sub.split('/').any(|p| p == "..") {
                return Err(format!(
                    "subPath {sub:?} must be a relative path without \"..\""
                ));
            }
            host = host.join(sub);
            if !host.exists() {
                std::fs::create_dir_all(&host).map_err(|e| e.to_string())?;
            }
        }
        out.push(v1::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: m.read_only.unwrap_or(false),
            propagation: match m.mount_propagation.as_deref() {
                Some("HostToContainer") => v1::MountPropagation::PropagationHostToContainer as i32,
                Some("Bidirectional") => v1::MountPropagation::PropagationBidirectional as i32,
                _ => v1::MountPropagation::PropagationPrivate as i32,
            },
            selinux_relabel: false,
            ..Default::default()
        });
    }
    let has = |out: &[v1::Mount], p: &str| out.iter().any(|m| m.container_path == p);
    if let Some(h) = etc_hosts
        && !has(&out, "/etc/hosts")
    {
        out.push(v1::Mount {
            container_path: "/etc/hosts".into(),
            host_path: h.display().to_string(),
            ..Default::default()
        });
    }
    if let Some(t) = termination_log {
        let path = c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        if !has(&out, &path) {
            out.push(v1::Mount {
                container_path: path,
                host_path: t.display().to_string(),
                ..Default::default()
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writer_swaps_and_prunes() {
        let d = tempfile::tempdir().unwrap();
        let w = AtomicWriter { dir: d.path() };
        let mut files = BTreeMap::from([
            ("a".to_owned(), (b"1".to_vec(), 0o644)),
            ("sub/b".to_owned(), (b"2".to_vec(), 0o600)),
        ]);
        w.write(&files).unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join("a")).unwrap(), "1");
        assert_eq!(
            std::fs::read_to_string(d.path().join("sub/b")).unwrap(),
            "2"
        );
        let first = std::fs::read_link(d.path().join("..data")).unwrap();
        w.write(&files).unwrap();
        assert_eq!(
            std::fs::read_link(d.path().join("..data")).unwrap(),
            first,
            "unchanged: no swap"
        );
        files.remove("sub/b");
        files.insert("a".into(), (b"3".to_vec(), 0o644));
        w.write(&files).unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join("a")).unwrap(), "3");
        assert!(!d.path().join("sub").exists());
        assert!(
            !d.path().join(&first).exists(),
            "the old generation is removed"
        );
    }

    #[test]
    fn mounts_and_hosts() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "volumeMounts": [{"name": "data", "mountPath": "/data", "subPath": "x", "readOnly": true}]
        }))
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        let vols = PodVolumes::from([("data".to_owned(), d.path().to_path_buf())]);
        let m = container_mounts(&c, &vols, Some(Path::new("/h")), Some(Path::new("/t"))).unwrap();
        assert_eq!(m[0].host_path, d.path().join("x").display().to_string());
        assert!(m[0].readonly);
        assert_eq!(m[1].container_path, "/etc/hosts");
        assert_eq!(m[2].container_path, "/dev/termination-log");
        assert!(
            etc_hosts("web", &["10.244.1.5".into()], &[])
                .ends_with("fe00::2\tip6-allrouters\n10.244.1.5\tweb\n")
        );
        let missing = Container {
            name: "c".into(),
            volume_mounts: c.volume_mounts.clone(),
            ..Default::default()
        };
        assert!(container_mounts(&missing, &PodVolumes::new(), None, None).is_err());
    }
}
