//! The in-tree plugins, registered by upstream's names in [`REGISTRY`]: one module
//! per plugin (or family), each built from its decoded args.

pub mod defaultpreemption;
pub mod helper;
#[cfg(test)]
mod hints_tests;
pub mod imagelocality;
pub mod interpodaffinity;
pub mod nodeaffinity;
pub mod nodeports;
pub mod noderesources;
pub mod podtopologyspread;
pub mod simple;
pub mod tainttoleration;
#[cfg(test)]
pub(crate) mod testutil;
pub mod volume;

use std::sync::Arc;

use serde_json::Value;

use crate::framework::Plugin;

/// What a plugin is built from (one per profile).
pub struct Handle {
    /// The scheduler's client (for binders and preemption).
    pub client: kube::Client,
    /// The shared informers, for plugins that read other kinds (PDBs, namespaces).
    pub factory: Arc<client_base::informer::SharedInformerFactory>,
    /// The profile's event recorder.
    pub recorder: client_base::events::Recorder,
    /// The scheduler's metrics.
    pub metrics: crate::metrics::Metrics,
    /// The profile's pods waiting at Permit (for Permit plugins that allow or
    /// reject them later).
    pub waiting: Arc<crate::framework::waiting::WaitingPods>,
}

impl Handle {
    /// The storage objects, read through the shared informers.
    pub fn storage(&self) -> Arc<dyn volume::Storage> {
        Arc::new(volume::InformerStorage::new(&self.factory))
    }
}

/// A plugin constructor: its args (as JSON, already defaulted) to the plugin.
pub type Factory = fn(&Value, &Handle) -> Result<Arc<dyn Plugin>, String>;

fn args<T: serde::de::DeserializeOwned + Default>(v: &Value) -> Result<T, String> {
    if v.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(v.clone()).map_err(|e| e.to_string())
}

/// Every in-tree plugin Keelson has, by upstream's name, with the `<Name>Args`
/// kind its pluginConfig takes (if any).
pub const REGISTRY: &[(&str, Option<&str>, Factory)] = &[
    ("PrioritySort", None, |_, _| {
        Ok(Arc::new(simple::PrioritySort))
    }),
    ("SchedulingGates", None, |_, _| {
        Ok(Arc::new(simple::SchedulingGates))
    }),
    ("NodeUnschedulable", None, |_, _| {
        Ok(Arc::new(simple::NodeUnschedulable))
    }),
    ("NodeName", None, |_, _| Ok(Arc::new(simple::NodeName))),
    ("TaintToleration", None, |_, _| {
        Ok(Arc::new(tainttoleration::TaintToleration))
    }),
    ("NodeAffinity", Some("NodeAffinityArgs"), |a, _| {
        Ok(Arc::new(nodeaffinity::NodeAffinity::new(args(a)?)))
    }),
    ("NodePorts", None, |_, _| Ok(Arc::new(nodeports::NodePorts))),
    ("NodeResourcesFit", Some("NodeResourcesFitArgs"), |a, _| {
        Ok(Arc::new(noderesources::Fit::new(args(a)?)))
    }),
    (
        "NodeResourcesBalancedAllocation",
        Some("NodeResourcesBalancedAllocationArgs"),
        |a, _| Ok(Arc::new(noderesources::BalancedAllocation::new(args(a)?))),
    ),
    ("ImageLocality", None, |_, _| {
        Ok(Arc::new(imagelocality::ImageLocality))
    }),
    (
        "PodTopologySpread",
        Some("PodTopologySpreadArgs"),
        |a, _| {
            let pl = podtopologyspread::PodTopologySpread::new(args(a)?)?;
            Ok(Arc::new(pl))
        },
    ),
    ("InterPodAffinity", Some("InterPodAffinityArgs"), |a, h| {
        let namespaces: Arc<dyn interpodaffinity::Namespaces> =
            h.factory
                .informer::<k8s_openapi::api::core::v1::Namespace>();
        let pl = interpodaffinity::InterPodAffinity::new(args(a)?, namespaces)?;
        Ok(Arc::new(pl))
    }),
    ("VolumeRestrictions", None, |_, h| {
        Ok(Arc::new(volume::restrictions::VolumeRestrictions::new(
            h.storage(),
        )))
    }),
    ("NodeVolumeLimits", None, |_, h| {
        Ok(Arc::new(volume::limits::NodeVolumeLimits::new(h.storage())))
    }),
    ("VolumeBinding", Some("VolumeBindingArgs"), |a, h| {
        let writer = Arc::new(volume::binding::ApiWriter {
            client: h.client.clone(),
        });
        let pl = volume::binding::VolumeBinding::new(args(a)?, h.storage(), writer)?;
        Ok(Arc::new(pl))
    }),
    ("VolumeZone", None, |_, h| {
        Ok(Arc::new(volume::zone::VolumeZone::new(h.storage())))
    }),
    ("DefaultBinder", None, |_, h| {
        Ok(Arc::new(simple::DefaultBinder::new(h.client.clone())))
    }),
    (
        "DefaultPreemption",
        Some("DefaultPreemptionArgs"),
        |a, h| {
            let args: defaultpreemption::Args = args(a)?;
            args.validate()?;
            let evictor = defaultpreemption::ApiEvictor {
                client: h.client.clone(),
                pdbs: h.factory.informer(),
                recorder: h.recorder.clone(),
            };
            Ok(Arc::new(defaultpreemption::DefaultPreemption::new(
                args,
                Arc::new(evictor),
                h.metrics.clone(),
            )))
        },
    ),
];

/// Upstream's in-tree plugins Keelson does not have yet: accepted in
/// configurations (so upstream's defaults and kubeadm's configs load) and
/// skipped with a warning at start.
pub const NOT_YET: &[&str] = &["DynamicResources"];

/// The factory of `name`.
pub fn factory(name: &str) -> Option<Factory> {
    REGISTRY
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, f)| *f)
}
