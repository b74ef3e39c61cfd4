//! The client's integration tests, one binary.

mod example_receiver;
mod middleware;
mod registry;
