//! The operator (`countersign run`): watches pods and trust roots, verifies what runs, and writes
//! verdicts where people look.

pub mod http;
pub mod leader;
pub mod metrics;
