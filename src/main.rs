//! The `stompbox` binary: all behaviour lives in the `broker` library.

fn main() -> std::process::ExitCode {
    broker::cli::main()
}
