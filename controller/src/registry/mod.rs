//! The one place that talks to registries.
//!
//! Reads (manifests, blobs, referrers, tokens) go over reqwest in `reader.rs`: one request per
//! operation, no `/v2/` ping (why: that file's header). Pushes go through oci-client, one per
//! registry host (so plain HTTP is chosen per host, as cosign does for loopback registries).
//! What this layer adds to both: credentials from docker config files,
//! limits against hostile registries, bounded concurrency, and errors that keep "not found"
//! apart from "could not ask".

mod auth;
mod client;
mod error;
mod reader;

pub use auth::{Credentials, CredentialsError};
pub use client::{FetchError, Limits, RegistryClient, RegistryOptions, RequestObserver};
pub use error::RegistryError;
