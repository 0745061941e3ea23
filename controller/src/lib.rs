//! countersign keeps a Kubernetes cluster honest about the images it runs.
//!
//! The library holds everything; `main.rs` only parses the command line. The pieces, from the
//! bottom up:
//!
//! - [`reference`](mod@reference): image references and digests, as cosign names them;
//! - [`keys`]: public keys (PEM, fingerprints) and cosign's encrypted private key format;
//! - [`formats`]: the bytes cosign writes (simple-signing payloads, DSSE, Sigstore bundles, OCI
//!   manifests), parsed and built without I/O;
//! - [`registry`]: the one place that talks to registries (reads over reqwest, pushes through
//!   oci-client), with limits and an error type that keeps "not there" apart from "could not
//!   ask";
//! - [`verify`]: the verification engine, fetch then a pure evaluation against a key set;
//! - [`sign`]: writes signatures in cosign v2 (`.sig` tag) and v3 (bundle referrer) form;
//! - [`sigstore`](mod@sigstore): keyless verification of Sigstore bundles (Fulcio, CT, Rekor, TSA) offline
//!   from a trusted root, and the identity policy;
//! - [`crd`]: the Kubernetes API types (TrustRoot, …);
//! - [`operator`]: `countersign run`, the controller;
//! - [`gitops`]: TrustSources, TrustRoots and KeyRotations synced from Git (leader only);
//! - [`reports`]: PolicyReports (`wgpolicyk8s.io`) of the operator's verdicts, when asked for;
//! - [`admission`]: the validating and mutating webhooks (every replica);
//! - [`server`]: the one HTTP stack (axum, rustls) every listener is served by;
//! - [`cli`]: the `countersign` subcommands.

pub mod admission;
pub mod cli;
pub mod crd;
pub mod formats;
pub mod gitops;
pub mod keys;
pub mod operator;
pub mod reference;
pub mod registry;
pub mod reports;
pub mod rotation;
pub mod server;
pub mod sign;
pub mod sigstore;
pub mod verify;
