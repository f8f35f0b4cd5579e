//! The `tokenledger` binary: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    tokenledger::cli::run(tokenledger::cli::Cli::parse())
}
