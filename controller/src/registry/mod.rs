//! The one place that talks to registries.
//!
//! Built on oci-client (auth: anonymous, basic and the bearer-token flow; manifests; blobs;
//! referrers). What this layer adds: one oci-client per registry host (so plain HTTP is chosen
//! per host, as cosign does for loopback registries), credentials from docker config files,
//! limits against hostile registries, bounded concurrency, and errors that keep "not found"
//! apart from "could not ask".

mod auth;
mod client;
mod error;

pub use auth::{Credentials, CredentialsError};
pub use client::{FetchError, Limits, RegistryClient, RegistryOptions, RequestObserver};
pub use error::RegistryError;
