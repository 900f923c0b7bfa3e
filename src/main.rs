fn main() -> std::process::ExitCode {
    xwan::cli::main()
}
