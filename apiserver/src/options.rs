//! `kube-apiserver`'s flags, with upstream's names and defaults.

use std::path::PathBuf;

use clap::Parser;

/// kube-apiserver flags.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "kube-apiserver",
    about = "The Kubernetes API server validates and configures data for the api objects which include pods, services, replicationcontrollers, and others."
)]
pub struct Options {
    /// List of etcd servers to connect with (scheme://ip:port), comma separated. Without
    /// it, the store runs in-process as a single member under --data-dir.
    #[arg(long = "etcd-servers", value_delimiter = ',')]
    pub etcd_servers: Vec<String>,
    /// The prefix to prepend to all resource paths in etcd.
    #[arg(long = "etcd-prefix", default_value = "/registry")]
    pub etcd_prefix: String,
    /// SSL Certificate Authority file used to secure etcd communication.
    #[arg(long = "etcd-cafile")]
    pub etcd_cafile: Option<PathBuf>,
    /// SSL certification file used to secure etcd communication.
    #[arg(long = "etcd-certfile")]
    pub etcd_certfile: Option<PathBuf>,
    /// SSL key file used to secure etcd communication.
    #[arg(long = "etcd-keyfile")]
    pub etcd_keyfile: Option<PathBuf>,
    /// Where the embedded store keeps its data when --etcd-servers is not given.
    #[arg(long = "data-dir", default_value = "/var/lib/keelson/apiserver")]
    pub data_dir: PathBuf,
    /// The port on which to serve HTTPS with authentication and authorization.
    #[arg(long = "secure-port", default_value_t = 6443)]
    pub secure_port: u16,
    /// The IP address on which to listen for the --secure-port port.
    #[arg(long = "bind-address", default_value = "0.0.0.0")]
    pub bind_address: String,
    /// The IP address on which to advertise the apiserver to members of the cluster.
    #[arg(long = "advertise-address")]
    pub advertise_address: Option<String>,
    /// The directory where the TLS certs are located. Ignored if --tls-cert-file and
    /// --tls-private-key-file are provided.
    #[arg(long = "cert-dir", default_value = "/var/run/kubernetes")]
    pub cert_dir: PathBuf,
    /// File containing the default x509 Certificate for HTTPS.
    #[arg(long = "tls-cert-file")]
    pub tls_cert_file: Option<PathBuf>,
    /// File containing the default x509 private key matching --tls-cert-file.
    #[arg(long = "tls-private-key-file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// A CIDR notation IP range from which to assign service cluster IPs.
    #[arg(long = "service-cluster-ip-range", default_value = "10.0.0.0/24")]
    pub service_cluster_ip_range: String,
    /// A port range to reserve for services with NodePort visibility.
    #[arg(long = "service-node-port-range", default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// The maximum number of non-mutating requests in flight at a given time.
    #[arg(long = "max-requests-inflight", default_value_t = 400)]
    pub max_requests_inflight: usize,
    /// The maximum number of mutating requests in flight at a given time.
    #[arg(long = "max-mutating-requests-inflight", default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,
    /// An optional field indicating the duration a handler must keep a request open
    /// before timing it out (e.g. 60s, 1m).
    #[arg(long = "request-timeout", default_value = "1m0s", value_parser = component_base::duration::parse_duration)]
    pub request_timeout: std::time::Duration,
    /// The minimum number of seconds a handler must keep a request open before timing
    /// it out; watches pick a random timeout from [this, 2x this).
    #[arg(long = "min-request-timeout", default_value_t = 1800)]
    pub min_request_timeout: u64,
    /// Path to a client cert file for TLS to kubelets.
    #[arg(long = "kubelet-client-certificate")]
    pub kubelet_client_certificate: Option<PathBuf>,
    /// Path to a client key file for TLS to kubelets.
    #[arg(long = "kubelet-client-key")]
    pub kubelet_client_key: Option<PathBuf>,
    /// Path to a cert file for the certificate authority of kubelets' serving
    /// certificates; without it they are not verified, as upstream.
    #[arg(long = "kubelet-certificate-authority")]
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// List of the preferred NodeAddressTypes to use for kubelet connections.
    #[arg(
        long = "kubelet-preferred-address-types",
        value_delimiter = ',',
        default_value = "Hostname,InternalDNS,InternalIP,ExternalDNS,ExternalIP"
    )]
    pub kubelet_preferred_address_types: Vec<String>,
    /// Timeout for kubelet operations.
    #[arg(long = "kubelet-timeout", default_value = "5s", value_parser = component_base::duration::parse_duration)]
    pub kubelet_timeout: std::time::Duration,
    /// If set, the file that will be used to secure the secure port of the API server
    /// via token authentication.
    #[arg(long = "token-auth-file")]
    pub token_auth_file: Option<PathBuf>,
    /// Identifier of the service account token issuer. The issuer will assert this
    /// identifier in "iss" claim of issued tokens. When this flag is specified
    /// multiple times, the first is used to generate tokens and all are used to
    /// determine which issuers are accepted. Without it (and without
    /// --service-account-signing-key-file), https://kubernetes.default.svc.cluster.local
    /// with a key generated into --cert-dir.
    #[arg(long = "service-account-issuer")]
    pub service_account_issuer: Vec<String>,
    /// File containing PEM-encoded x509 RSA or ECDSA private or public keys, used to
    /// verify ServiceAccount tokens. The specified file can contain multiple keys, and
    /// the flag can be specified multiple times with different files. If unspecified,
    /// --tls-private-key-file is used. Must be specified when
    /// --service-account-signing-key-file is provided.
    #[arg(long = "service-account-key-file")]
    pub service_account_key_file: Vec<PathBuf>,
    /// Path to the file that contains the current private key of the service account
    /// token issuer. The issuer will sign issued ID tokens with this private key.
    #[arg(long = "service-account-signing-key-file")]
    pub service_account_signing_key_file: Option<PathBuf>,
    /// Identifiers of the API. The service account token authenticator will validate
    /// that tokens used against the API are bound to at least one of these audiences.
    /// If unset, the first --service-account-issuer is used.
    #[arg(long = "api-audiences", value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    /// The maximum validity duration of a token created by the service account token
    /// issuer. If an otherwise valid TokenRequest with a validity duration larger than
    /// this value is requested, a token will be issued with a validity duration of
    /// this value.
    #[arg(long = "service-account-max-token-expiration", value_parser = component_base::duration::parse_duration)]
    pub service_account_max_token_expiration: Option<std::time::Duration>,
    /// Turns on projected service account expiration extension during token
    /// generation, which helps safe transition from legacy token to bound service
    /// account token feature.
    #[arg(long = "service-account-extend-token-expiration", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub service_account_extend_token_expiration: bool,
    /// Overrides the URI for the JSON Web Key Set in the discovery doc served at
    /// /.well-known/openid-configuration.
    #[arg(long = "service-account-jwks-uri")]
    pub service_account_jwks_uri: Option<String>,
    /// admission plugins that should be enabled in addition to default enabled ones.
    /// The order of plugins in this flag does not matter.
    #[arg(long = "enable-admission-plugins", value_delimiter = ',')]
    pub enable_admission_plugins: Vec<String>,
    /// admission plugins that should be disabled although they are in the default
    /// enabled plugins list. The order of plugins in this flag does not matter.
    #[arg(long = "disable-admission-plugins", value_delimiter = ',')]
    pub disable_admission_plugins: Vec<String>,
    /// File with admission control configuration.
    #[arg(long = "admission-control-config-file")]
    pub admission_control_config_file: Option<PathBuf>,
    /// Path to the file that defines the audit policy configuration.
    #[arg(long = "audit-policy-file")]
    pub audit_policy_file: Option<PathBuf>,
    /// If set, all requests coming to the apiserver will be logged to this file. '-'
    /// means standard out.
    #[arg(long = "audit-log-path")]
    pub audit_log_path: Option<PathBuf>,
    /// The maximum number of days to retain old audit log files based on the timestamp
    /// encoded in their filename.
    #[arg(long = "audit-log-maxage", default_value_t = 0)]
    pub audit_log_maxage: u64,
    /// The maximum number of old audit log files to retain. Setting a value of 0 will
    /// mean there's no restriction on the number of files.
    #[arg(long = "audit-log-maxbackup", default_value_t = 0)]
    pub audit_log_maxbackup: usize,
    /// The maximum size in megabytes of the audit log file before it gets rotated.
    #[arg(long = "audit-log-maxsize", default_value_t = 0)]
    pub audit_log_maxsize: u64,
    /// The file containing configuration for encryption providers to be used for
    /// storing secrets in etcd.
    #[arg(long = "encryption-provider-config")]
    pub encryption_provider_config: Option<PathBuf>,
    /// Enable to allow secrets of type 'bootstrap.kubernetes.io/token' in the
    /// 'kube-system' namespace to be used for TLS bootstrapping authentication.
    #[arg(long = "enable-bootstrap-token-auth", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_bootstrap_token_auth: bool,
    /// If set, any request presenting a client certificate signed by one of the
    /// authorities in the client-ca-file is authenticated with an identity
    /// corresponding to the CommonName of the client certificate.
    #[arg(long = "client-ca-file")]
    pub client_ca_file: Option<PathBuf>,
    /// Enables anonymous requests to the secure port of the API server. Requests that
    /// are not rejected by another authentication method are treated as anonymous
    /// requests. Anonymous requests have a username of system:anonymous, and a group
    /// name of system:unauthenticated. Turned off when the only authorization mode
    /// is AlwaysAllow, as upstream does.
    #[arg(long = "anonymous-auth", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub anonymous_auth: bool,
    /// Ordered list of plug-ins to do authorization on secure port. Elements of this
    /// list may be: AlwaysAllow,AlwaysDeny,ABAC,Webhook,RBAC,Node.
    #[arg(
        long = "authorization-mode",
        value_delimiter = ',',
        default_value = "AlwaysAllow"
    )]
    pub authorization_mode: Vec<String>,
    /// File with webhook configuration in kubeconfig format, used with
    /// --authorization-mode=Webhook. The API server will query the remote service to
    /// determine access on the API server's secure port.
    #[arg(long = "authorization-webhook-config-file")]
    pub authorization_webhook_config_file: Option<PathBuf>,
    /// The API version of the authorization.k8s.io SubjectAccessReview to send to and
    /// expect from the webhook.
    #[arg(long = "authorization-webhook-version", default_value = "v1beta1")]
    pub authorization_webhook_version: String,
    /// The duration to cache 'authorized' responses from the webhook authorizer.
    #[arg(long = "authorization-webhook-cache-authorized-ttl", default_value = "5m0s", value_parser = component_base::duration::parse_duration)]
    pub authorization_webhook_cache_authorized_ttl: std::time::Duration,
    /// The duration to cache 'unauthorized' responses from the webhook authorizer.
    #[arg(long = "authorization-webhook-cache-unauthorized-ttl", default_value = "30s", value_parser = component_base::duration::parse_duration)]
    pub authorization_webhook_cache_unauthorized_ttl: std::time::Duration,
    /// Root certificate bundle to use to verify client certificates on incoming
    /// requests before trusting usernames in headers specified by
    /// --requestheader-username-headers.
    #[arg(long = "requestheader-client-ca-file")]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// List of client certificate common names to allow to provide usernames in
    /// headers specified by --requestheader-username-headers. If empty, any client
    /// certificate validated by the authorities in --requestheader-client-ca-file is
    /// allowed.
    #[arg(long = "requestheader-allowed-names", value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,
    /// List of request headers to inspect for usernames. X-Remote-User is common.
    #[arg(long = "requestheader-username-headers", value_delimiter = ',')]
    pub requestheader_username_headers: Vec<String>,
    /// List of request headers to inspect for UIDs. X-Remote-Uid is suggested.
    #[arg(long = "requestheader-uid-headers", value_delimiter = ',')]
    pub requestheader_uid_headers: Vec<String>,
    /// List of request headers to inspect for groups. X-Remote-Group is suggested.
    #[arg(long = "requestheader-group-headers", value_delimiter = ',')]
    pub requestheader_group_headers: Vec<String>,
    /// List of request header prefixes to inspect. X-Remote-Extra- is suggested.
    #[arg(long = "requestheader-extra-headers-prefix", value_delimiter = ',')]
    pub requestheader_extra_headers_prefix: Vec<String>,
}

#[cfg(test)]
mod tests {
    use component_base::duration::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m0s").unwrap().as_secs(), 60);
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert!(parse_duration("10").is_err());
    }
}
