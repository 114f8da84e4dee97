//! The serviceaccount controller: every active namespace has a `default`
//! ServiceAccount, recreated if deleted, as upstream's `ServiceAccountsController`.
//! Pods that name no account run as it (the ServiceAccount admission plugin).

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::pernamespace::Keeper;

/// The accounts upstream ensures in every namespace.
pub const DEFAULT: &str = "default";

/// Keeps `default` in every namespace.
pub struct ServiceAccounts;

impl Keeper for ServiceAccounts {
    type K = ServiceAccount;
    fn object_name(&self) -> &'static str {
        DEFAULT
    }
    fn queue_name(&self) -> &'static str {
        "serviceaccount"
    }
    fn desired(&self) -> ServiceAccount {
        ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }
    /// An existing account is never changed: its secrets and pull secrets are the
    /// user's.
    fn repair(&self, _have: &ServiceAccount) -> Option<ServiceAccount> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_account_is_created_bare_and_never_rewritten() {
        let sa = ServiceAccounts.desired();
        assert_eq!(sa.metadata.name.as_deref(), Some("default"));
        assert!(sa.secrets.is_none() && sa.image_pull_secrets.is_none());
        let mut have = sa.clone();
        have.image_pull_secrets = Some(vec![Default::default()]);
        assert!(ServiceAccounts.repair(&have).is_none());
    }
}
