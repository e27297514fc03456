use std::process::ExitCode;

/// mimalloc rather than the system allocator: an answer is hundreds of small
/// strings, and glibc's malloc and free were 40 % of a query's CPU time
/// (`docs/PERFORMANCE.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    annals::cli::run().await
}
