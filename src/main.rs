//! The `tokenledger` binary: parse the command line and hand over to the library.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

/// glibc's allocator spent a quarter of a replay freeing rows, and keeps per-thread arenas;
/// mimalloc is faster at the many small, short-lived allocations of a request or a replay.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match tokenledger::cli::run(tokenledger::cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if error.downcast_ref::<tokenledger::cli::Logged>().is_none() {
                // `{:#}` prints the chain of causes on one line, without a backtrace.
                eprintln!("error: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}
