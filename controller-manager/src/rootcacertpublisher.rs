//! The root CA publisher: every active namespace has a `kube-root-ca.crt`
//! ConfigMap whose `ca.crt` is the cluster's root CA bundle, as upstream's
//! `rootcacertpublisher`. Pods read it through the projected
//! `kube-api-access-*` volume the ServiceAccount admission plugin adds, to verify
//! the API server at `kubernetes.default.svc`.
//!
//! The bundle is `--root-ca-file`, or else the CA the manager's own kubeconfig
//! trusts. A ConfigMap whose data or description annotation drifted is rewritten;
//! other keys and labels a user added to it are dropped, as upstream's.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::pernamespace::Keeper;

/// The ConfigMap's name.
pub const NAME: &str = "kube-root-ca.crt";
/// The annotation that explains the ConfigMap.
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// Upstream's text for it.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// Keeps `kube-root-ca.crt` in every namespace.
pub struct Publisher {
    root_ca: String,
    sync_total: IntCounterVec,
    sync_duration: HistogramVec,
}

impl Publisher {
    /// Publishes `root_ca` (PEM), with upstream's metrics in `registry`.
    pub fn new(root_ca: String, registry: &Registry) -> Self {
        let sync_total = IntCounterVec::new(
            Opts::new(
                "root_ca_cert_publisher_sync_total",
                "Number of namespace syncs happened in root ca cert publisher.",
            ),
            &["code"],
        )
        .expect("valid metric");
        let sync_duration = HistogramVec::new(
            HistogramOpts::new(
                "root_ca_cert_publisher_sync_duration_seconds",
                "Number of namespace syncs happened in root ca cert publisher.",
            )
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 15).expect("valid buckets")),
            &["code"],
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(sync_total.clone()));
        let _ = registry.register(Box::new(sync_duration.clone()));
        Publisher {
            root_ca,
            sync_total,
            sync_duration,
        }
    }

    fn data(&self) -> BTreeMap<String, String> {
        [("ca.crt".to_owned(), self.root_ca.clone())].into()
    }
}

impl Keeper for Publisher {
    type K = ConfigMap;
    fn object_name(&self) -> &'static str {
        NAME
    }
    fn queue_name(&self) -> &'static str {
        "root_ca_cert_publisher"
    }
    fn desired(&self) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(NAME.into()),
                annotations: Some(
                    [(DESCRIPTION_ANNOTATION.to_owned(), DESCRIPTION.to_owned())].into(),
                ),
                ..Default::default()
            },
            data: Some(self.data()),
            ..Default::default()
        }
    }
    fn repair(&self, have: &ConfigMap) -> Option<ConfigMap> {
        let annotated = have
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
            .is_some_and(|d| !d.is_empty());
        if have.data.as_ref() == Some(&self.data()) && annotated {
            return None;
        }
        let mut want = have.clone();
        want.data = Some(self.data());
        want.binary_data = None;
        want.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
        Some(want)
    }
    fn observe(&self, code: u16, seconds: f64) {
        let code = code.to_string();
        self.sync_total.with_label_values(&[&code]).inc();
        self.sync_duration
            .with_label_values(&[&code])
            .observe(seconds);
    }
}

/// The kubeconfig's trusted CA certificates (DER) as a PEM bundle.
pub fn pem_bundle(ders: &[Vec<u8>]) -> String {
    use base64::Engine as _;
    let mut out = String::new();
    for der in ders {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher() -> Publisher {
        Publisher::new("PEM".into(), &Registry::new())
    }

    #[test]
    fn creates_the_bundle_with_the_description() {
        let cm = publisher().desired();
        assert_eq!(cm.data.unwrap()["ca.crt"], "PEM");
        assert_eq!(
            cm.metadata.annotations.unwrap()[DESCRIPTION_ANNOTATION],
            DESCRIPTION
        );
    }

    #[test]
    fn rewrites_drifted_data_and_a_missing_annotation_only() {
        let p = publisher();
        let good = p.desired();
        assert!(p.repair(&good).is_none());

        let mut extra = good.clone();
        extra
            .data
            .as_mut()
            .unwrap()
            .insert("other".into(), "x".into());
        let fixed = p.repair(&extra).expect("drifted");
        assert_eq!(fixed.data, good.data);

        let mut bare = good.clone();
        bare.metadata.annotations = Some([("keep".to_owned(), "me".to_owned())].into());
        let fixed = p.repair(&bare).expect("no description");
        let a = fixed.metadata.annotations.unwrap();
        assert_eq!(a["keep"], "me");
        assert_eq!(a[DESCRIPTION_ANNOTATION], DESCRIPTION);
    }

    #[test]
    fn sync_outcomes_are_counted_by_code() {
        let registry = Registry::new();
        let p = Publisher::new("PEM".into(), &registry);
        p.observe(200, 0.01);
        p.observe(500, 0.01);
        p.observe(200, 0.01);
        assert_eq!(p.sync_total.with_label_values(&["200"]).get(), 2);
        assert_eq!(p.sync_total.with_label_values(&["500"]).get(), 1);
        assert!(
            component_base::metrics::render(&registry)
                .contains("root_ca_cert_publisher_sync_duration_seconds_bucket{code=\"500\"")
        );
    }

    #[test]
    fn der_certificates_become_a_pem_bundle() {
        let pem = pem_bundle(&[vec![0u8; 60], vec![1u8; 3]]);
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 2);
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert!(pem.contains("\nAQEB\n"));
    }
}
