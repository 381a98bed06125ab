//! Persistent Linux network namespaces.
