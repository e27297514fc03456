use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    annals::cli::run().await
}
