//! End-to-end tests against the real daemon.
//!
//! The tests in `tests/tests/` start the real `cri-server` as root with real
//! runc, runsc, CNI plugins and the local registry, and speak CRI over gRPC
//! with the `k8s-cri` client types. This library will hold what those tests
//! share: starting and stopping the daemon, a CRI client, and fixtures.
