//! The pod and container domain model.
