//! The `esper-bulk` binary: everything lives in the library; this only turns the CLI's
//! result into the process exit code.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(esper_bulk::cli::main())
}
