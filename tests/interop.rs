//! Signers × verifiers × registries, against real cosign v2 and v3 and real registries.
