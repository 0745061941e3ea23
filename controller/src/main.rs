//! The `countersign` binary: all logic lives in the library.

fn main() -> std::process::ExitCode {
    countersign::cli::main()
}
