//! The Mavera stand-in (`relay_tests::mavera_standin`) as its own process, so that the load
//! benchmark's servers (`relay serve` and the seed's Python server) call the same peer.
//!
//! ```sh
//! cargo run -p relay --example mavera_standin -- 2000   # every answer after 2000 ms
//! ```
//!
//! Prints `base_url=<url>` and `api_key=<key>` on their own lines, then serves until Ctrl-C
//! or SIGTERM.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use relay_tests::mavera_standin::MaveraStandIn;

#[tokio::main]
async fn main() -> ExitCode {
    let latency_ms = match std::env::args().nth(1).map(|a| a.parse::<u64>()) {
        None => 0,
        Some(Ok(ms)) => ms,
        Some(Err(_)) => {
            eprintln!("usage: mavera_standin [LATENCY_MS]");
            return ExitCode::from(2);
        }
    };
    let standin = MaveraStandIn::start().await;
    standin.set_latency(Duration::from_millis(latency_ms));
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "base_url={}\napi_key={}", standin.base_url(), standin.api_key());
    let _ = out.flush();
    drop(out);

    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            eprintln!("cannot listen for SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Forget recorded requests now and then: a long run would otherwise keep them all.
    let mut tidy = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = tidy.tick() => standin.clear_requests(),
        }
    }
    eprintln!("{} personas created", standin.persona_names().len());
    standin.shutdown().await;
    ExitCode::SUCCESS
}
