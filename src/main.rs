fn main() -> std::process::ExitCode {
    hookgate::cli::main()
}
