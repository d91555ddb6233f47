//! `relay serve`: the whole pipeline in one process. Ingest and the worker are put together by
//! the same builders as the Lambda functions (`shared::ingest::build`, `shared::worker::build`):
//! ingest's router on a loopback port, the event store and the queue embedded (in memory, or in
//! a redb file with `--data-dir`), and the worker taking jobs off that queue with the same
//! `Worker::process` the Lambda runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use shared::deliver::DestinationName;
use shared::telemetry::Metrics;
use shared::worker::local::LocalRunner;
use shared::worker::{Deliveries, LEASE_MARGIN, Mavera};
use tokio::sync::watch;

use crate::console::{self, ConsoleState};
use crate::embedded::{Embedded, EmbeddedQueue, EmbeddedStore};
use crate::error::RelayError;
use crate::listen;
use crate::output::{self, LogFormat};
use crate::records::running::{self, Running};
use crate::records::{Direct, Records};
use crate::settings::{self, Settings};

/// Deliveries of one message before it is dead-lettered, as the SQS redrive policy.
pub const MAX_RECEIVES: u32 = 5;

/// The time one job may take unless `--job-timeout` says otherwise.
pub const DEFAULT_JOB_TIME: Duration = Duration::from_secs(300);

/// How long a received message stays hidden: longer than the job's lease, so it comes back
/// only once the worker that had it is surely done with it.
pub fn visibility(job_time: Duration) -> Duration {
    job_time + LEASE_MARGIN + Duration::from_secs(30)
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on; loopback by default, so nothing outside this machine can post
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Keep the event store and the queue in DIR (a redb file), so a restart loses nothing;
    /// without it both live in memory
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The trigger rules file (default: TRIGGERS_PATH, else the rules built in)
    #[arg(long, value_name = "PATH")]
    triggers: Option<PathBuf>,
    /// Print the Mavera requests instead of sending them, even if MAVERA_API_KEY is set
    #[arg(long)]
    dry_run: bool,
    /// Log lines for a terminal, or JSON lines
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Jobs processed at once
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    workers: u16,
    /// Time one job may take, as a Lambda timeout would (seconds)
    #[arg(long, default_value_t = DEFAULT_JOB_TIME.as_secs(), value_name = "SECS")]
    job_timeout: u64,
    /// How long a client may take to send a request's headers, and then its body (seconds);
    /// a half-sent request is cut off after it
    #[arg(long, default_value_t = 10, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout: u64,
    /// On Ctrl-C, how long to wait for jobs in flight before stopping them (seconds)
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    shutdown_timeout: u64,
}

pub async fn run(args: Args) -> Result<ExitCode, RelayError> {
    output::init(args.log_format);
    let vars = settings::environment(args.triggers.as_deref());
    let Settings { origin, ingest, worker } = Settings::resolve(&vars, args.dry_run)?;
    let rules = ingest.rules.clone();
    shared::telemetry::redact(shared::config::secret_values(&vars));

    let job_time = Duration::from_secs(args.job_timeout);
    let visibility = visibility(job_time);
    let embedded = match &args.data_dir {
        None => Embedded::in_memory(visibility, MAX_RECEIVES),
        Some(dir) => Embedded::in_dir(dir, visibility, MAX_RECEIVES)?,
    };
    let (store, queue) = (embedded.store(), embedded.queue.clone());
    embedded.spawn_sweeper();

    let mode = match &worker.mavera {
        Mavera::DryRun { reason } => format!("dry run ({reason}): each Mavera request is printed, none is sent"),
        Mavera::Live(config) => format!("calling Mavera at {}", config.base_url),
    };
    let deliveries = describe_deliveries(&worker);
    let worker = Arc::new(embedded.build_worker(worker)?);
    let timeout = Duration::from_secs(args.request_timeout);
    // The worker runs in this process: its report is on /healthz like a deployed one's.
    shared::health::publish_at_start(store.as_ref(), &worker.health_report(std::time::SystemTime::now())).await;
    let app = shared::ingest::build_with_body_timeout(
        ingest,
        store.clone(),
        queue.clone(),
        store.clone(),
        Metrics::from_env("relay"),
        timeout,
    );

    // Before anything says it is listening: a Ctrl-C from then on stops gracefully.
    let signals = Signals::install();
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|source| RelayError::Bind { addr: args.addr, source })?;
    let addr = listener.local_addr().map_err(|source| RelayError::Bind { addr: args.addr, source })?;
    let sources: Vec<&str> = rules.sources().iter().map(|s| s.as_str()).collect();
    tracing::info!("rules: {} from {origin} (sources: {})", rules.len(), sources.join(", "));
    tracing::info!("{mode}");
    if let Some(deliveries) = deliveries {
        tracing::info!("{deliveries}");
    }
    match &args.data_dir {
        None => tracing::info!("event store and queue in memory (use --data-dir DIR to keep them over a restart)"),
        Some(dir) => {
            tracing::info!("event store and queue in {} ({} jobs waiting from before)", dir.display(), queue.depth())
        }
    }
    for source in &sources {
        tracing::info!("listening on http://{addr}/webhooks/{source}");
    }
    // The console and its records API, on loopback only.
    let token = running::new_token();
    let console = addr.ip().is_loopback().then(|| {
        let records: Arc<dyn Records> = Arc::new(Direct::new(store.clone(), Some(queue.clone()), "relay serve".into()));
        let replay_with = args.data_dir.as_ref().map(|d| format!("--data-dir '{}'", d.display()));
        console::router(ConsoleState { records, token: Some(token.clone()), replay_with })
    });
    let _announced = match &args.data_dir {
        Some(dir) => {
            Some(running::announce(dir, &Running { url: format!("http://{addr}"), token, pid: std::process::id() })?)
        }
        None => None,
    };
    match &console {
        Some(_) => tracing::info!("console: http://{addr}/console"),
        None => tracing::info!("console off: --addr {addr} is not a loopback address"),
    }
    tracing::info!("try: relay send segment examples/segment/trial_started.json   (Ctrl-C stops)");

    let (stop, stopped) = watch::channel(false);
    tokio::spawn(watch_signals(signals, stop));
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let runner = LocalRunner { concurrency: usize::from(args.workers), job_time, ..LocalRunner::default() };
    let consumer = queue.clone();
    let until_stopped = wait(stopped.clone());
    let worker_task = tokio::spawn(async move { runner.run(worker, consumer, until_stopped).await });
    let app = match console {
        Some(console) => app.merge(console),
        None => app,
    };
    // Webhooks and console replays alike are answered once what they changed is on disk.
    let app = embedded.durable_answers(app);
    let mut http = tokio::spawn(listen::serve(listener, app, timeout, wait(stopped.clone())));

    // Serve until Ctrl-C; then let requests and jobs in flight finish, within one grace period.
    tokio::select! {
        // The signal first: once it is given, the server may end at the same moment.
        biased;
        () = wait(stopped.clone()) => {}
        ended = &mut http => {
            // Only an error ends the server before a signal.
            let error = match ended {
                Ok(Err(e)) => e,
                Ok(Ok(())) => std::io::Error::other("it ended without being asked to"),
                Err(join) => std::io::Error::other(join),
            };
            return Err(RelayError::Serve(error));
        }
    }
    let grace = Duration::from_secs(args.shutdown_timeout);
    tracing::info!("stopping: no new webhooks; waiting up to {}s for requests and jobs in flight", grace.as_secs());
    let deadline = tokio::time::Instant::now() + grace;
    let _ = tokio::time::timeout_at(deadline, http).await;
    let finished = tokio::time::timeout_at(deadline, worker_task).await.is_ok();
    report_leftovers(store.as_ref(), queue.as_ref(), embedded.is_kept(), finished);
    embedded.close();
    Ok(ExitCode::SUCCESS)
}

/// Where results go, when any rule delivers: printed in a dry run, else each destination
/// in use and whether it is on (the worker warns of those that are off).
fn describe_deliveries(worker: &shared::worker::Settings) -> Option<String> {
    let rules = &worker.triggers.rules;
    let used: Vec<DestinationName> =
        DestinationName::ALL.into_iter().filter(|d| !rules.delivering_to(*d).is_empty()).collect();
    if used.is_empty() {
        return None;
    }
    Some(match &worker.deliveries {
        Deliveries::Print => "deliveries: dry run, each request is printed, none is sent".to_owned(),
        Deliveries::Send(settings) => {
            let states: Vec<String> = used
                .iter()
                .map(|d| match settings.problem(*d) {
                    None => format!("{d} on"),
                    Some(_) => format!("{d} off"),
                })
                .collect();
            format!("deliveries: {}", states.join(", "))
        }
    })
}

/// Says what is left undone at exit, and whether it survives.
fn report_leftovers(store: &dyn EmbeddedStore, queue: &dyn EmbeddedQueue, kept: bool, finished: bool) {
    let running = store.running_jobs();
    if !finished && running > 0 {
        if kept {
            tracing::warn!(
                "{running} jobs were still running and were stopped; they run again on the next start with this --data-dir"
            );
        } else {
            tracing::warn!(
                "{running} jobs were still running and were stopped; they are lost (the queue is in memory; use --data-dir to keep them)"
            );
        }
    }
    let waiting = queue.depth().saturating_sub(running);
    if waiting > 0 {
        if kept {
            tracing::info!("{waiting} jobs stay queued and run on the next start with this --data-dir");
        } else {
            tracing::warn!("{waiting} queued jobs are dropped (the queue is in memory; use --data-dir to keep them)");
        }
    }
    tracing::info!("stopped");
}

/// Ctrl-C or SIGTERM asks for a graceful stop; a second one exits at once.
async fn watch_signals(mut signals: Signals, stop: watch::Sender<bool>) {
    signals.next().await;
    tracing::info!("shutting down (press Ctrl-C again to stop at once)");
    stop.send_replace(true);
    signals.next().await;
    tracing::warn!("stopped at once; jobs in flight were abandoned");
    std::process::exit(130);
}

/// The stop signals, listened for from the moment they are installed (so none arriving
/// before the watcher task first runs kills the process the default way).
struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals { interrupt: signal(SignalKind::interrupt()).ok(), terminate: signal(SignalKind::terminate()).ok() }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next Ctrl-C or SIGTERM; never, if neither handler could be installed.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            let interrupt = async {
                match &mut self.interrupt {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            let terminate = async {
                match &mut self.terminate {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = interrupt => {}
                _ = terminate => {}
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
