//! `relay`: mavera-relay on one machine. `serve` runs the whole pipeline (the ingest router,
//! an embedded event store and queue, the worker), `send` signs and posts a sample event,
//! `check` validates the rules and configuration, `poll-sqs` feeds a locally running worker
//! function from SQS. This file only parses the command line and wires.

mod check;
mod error;
mod listen;
mod output;
mod poll_sqs;
mod send;
mod serve;
mod settings;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "relay",
    version,
    about = "Run mavera-relay locally: serve the pipeline, send signed sample events, check the rules"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the whole pipeline in one process: webhooks in, Mavera requests out
    Serve(serve::Args),
    /// Sign a JSON payload as Segment or Customer.io would and POST it to relay
    Send(send::Args),
    /// Validate the trigger rules and configuration, and print the rules
    Check(check::Args),
    /// Feed SQS messages to a worker function running under `cargo lambda watch`
    PollSqs(poll_sqs::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Send(args) => send::run(args).await,
        Command::Check(args) => check::run(args),
        Command::PollSqs(args) => poll_sqs::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", shared::telemetry::chain(&error));
            ExitCode::FAILURE
        }
    }
}
