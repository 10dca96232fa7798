//! Thin entry point: all behaviour lives in the library so the CLI, the tray app and the tests
//! drive exactly the same code.

fn main() -> std::process::ExitCode {
    lanscatter::cli::main()
}
