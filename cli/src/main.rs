//! `relay`: mavera-relay on one machine. `serve` runs the whole pipeline (the ingest router,
//! an embedded event store and queue, the worker), `send` signs and posts a sample event,
//! `check` validates the rules and configuration, `poll-sqs` feeds a locally running worker
//! function from SQS. `events`, `show`, `replay`, `redrive` and `console` operate a
//! deployment (or a local data directory): see what happened and run it again; `doctor` proves
//! each configured credential with one free call. This file
//! only parses the command line and wires.

mod aws;
mod check;
mod console;
mod data_dir;
mod doctor;
mod embedded;
mod error;
mod events;
mod listen;
mod output;
mod poll_sqs;
mod records;
mod redrive;
mod replay;
mod selection;
mod send;
mod serve;
mod settings;
mod show;
mod since;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "relay",
    version,
    about = "Run mavera-relay locally (serve, send, check) and operate a deployment (events, show, replay, redrive, console)"
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
    /// List jobs, newest first: time, source, event id, rule, status, credits, result or reason
    Events(events::Args),
    /// Show one job's whole record: the event, each attempt, Mavera's full answer
    Show(show::Args),
    /// Run jobs again as a new attempt, against the rules as they are now
    Replay(replay::Args),
    /// Move the dead-letter queue's messages back to the jobs queue
    Redrive(redrive::Args),
    /// Serve a read-only page of the jobs on 127.0.0.1 (for a deployment or a data directory)
    Console(console::Args),
    /// Prove each configured credential with one free call (Mavera, Customer.io; Slack and the
    /// result webhook with --send-test-messages), here or for a deployed stack (--stack)
    Doctor(doctor::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Send(args) => send::run(args).await,
        Command::Check(args) => check::run(args),
        Command::PollSqs(args) => poll_sqs::run(args).await,
        Command::Events(args) => events::run(args).await,
        Command::Show(args) => show::run(args).await,
        Command::Replay(args) => replay::run(args).await,
        Command::Redrive(args) => redrive::run(args).await,
        Command::Console(args) => console::run(args).await,
        Command::Doctor(args) => doctor::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", shared::telemetry::chain(&error));
            ExitCode::FAILURE
        }
    }
}
