//! The `pictor-agent` binary: everything lives in the library; see `pictor_agent::cli`.

fn main() -> std::process::ExitCode {
    pictor_agent::cli::main()
}
