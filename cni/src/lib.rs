//! Pod networking through CNI plugins.
//!
//! This crate will own loading CNI network configurations, running the plugin
//! chain (ADD, DEL, CHECK) against a pod's network namespace, and caching each
//! pod's ADD result so that teardown works across daemon restarts. It is
//! filled in by the CNI issue.
