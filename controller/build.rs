//! Links the `countersign` binary as a position-dependent executable on Linux (glibc).
//!
//! A `countersign verify` is a process of a few milliseconds, and a position-independent
//! executable (rustc's default) spends a good part of its start in the dynamic loader applying
//! some 55,000 relative relocations and copying every page of `.data.rel.ro` they touch
//! (issue 11, docs/benchmarks.md). Linked at a fixed address there are none to apply. Only the
//! link of the binaries changes (`rustc-link-arg-bins`): the code is compiled as before, so no
//! dependency is rebuilt, and the library and tests are untouched. The price is that the
//! executable's own code is no longer placed at a random address (ASLR still moves the shared
//! libraries, stack and heap).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        // `-Wl,`: passed to the linker after the `-pie` rustc gives the compiler driver, so it wins.
        println!("cargo:rustc-link-arg-bins=-Wl,-no-pie");
    }
}
