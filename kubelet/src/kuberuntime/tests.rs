//! Kuberuntime tests.
