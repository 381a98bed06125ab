//! The trust decision.
