//! The client's integration tests, one binary.

mod conformance;
mod events;
mod example_receiver;
mod middleware;
mod registry;
mod registry_status;
mod status_lists;
