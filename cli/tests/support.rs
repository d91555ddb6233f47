//! Starting `relay` as a process and reading what it prints.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use relay_tests::app::{CIO_SECRET, SEGMENT_SECRET};
use serde_json::Value;
use shared::verify;

pub const BIN: &str = env!("CARGO_BIN_EXE_relay");

/// A command with an empty environment plus `env`, so nothing from the developer's shell
/// (a real MAVERA_API_KEY, say) leaks in.
pub fn relay(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).env_clear().env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

/// Runs `relay` to its end (at most 30 s).
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = relay(args, env).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start relay");
    let started = Instant::now();
    while child.try_wait().expect("poll relay").is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("relay {args:?} did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("read relay's output");
    for line in text(&output.stdout).lines().chain(text(&output.stderr).lines()) {
        echo(line);
    }
    output
}

/// With `TEST_LOG` set, shows a line `relay` printed in the test's output.
fn echo(line: &str) {
    if relay_tests::logs::enabled() {
        eprintln!("relay| {line}");
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The signing secrets the tests use, as the server reads them.
pub fn secrets() -> Vec<(&'static str, &'static str)> {
    vec![("SEGMENT_SHARED_SECRET", SEGMENT_SECRET), ("CIO_WEBHOOK_SECRET", CIO_SECRET)]
}

/// A running `relay serve`, killed when dropped.
pub struct Serve {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    pub base: String,
    http: reqwest::Client,
}

impl Serve {
    /// Starts `relay serve` on a free loopback port and waits until it listens.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut all = vec!["serve", "--addr", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut child =
            relay(&all, env).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start relay serve");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as _),
        ] {
            let (lines, stream) = (lines.clone(), stream.expect("piped"));
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    echo(&line);
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let mut serve = Serve { child, lines, base: String::new(), http: reqwest::Client::new() };
        let line = serve.wait_for_line(|l| l.contains("listening on http://"), Duration::from_secs(20)).await;
        let url = line.split("listening on ").nth(1).expect("a URL after `listening on`");
        serve.base = url.split("/webhooks/").next().unwrap().to_owned();
        serve
    }

    /// Everything printed so far, stdout and stderr interleaved by arrival.
    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits for a printed line matching `pred`; panics with the output after `timeout`.
    pub async fn wait_for_line(&mut self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|l| pred(l)) {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Give the reader threads a moment to collect the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!("relay serve exited ({status}) before printing the expected line:\n{}", self.output());
            }
            assert!(started.elapsed() < timeout, "no expected line within {timeout:?}:\n{}", self.output());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn post_segment(&self, body: &Value) -> (u16, Value) {
        self.post_segment_with(SEGMENT_SECRET, body).await
    }

    /// Signed with `secret` (the server's `SEGMENT_SHARED_SECRET`).
    pub async fn post_segment_with(&self, secret: &str, body: &Value) -> (u16, Value) {
        let bytes = body.to_string().into_bytes();
        let signature = verify::segment::sign(secret, &bytes);
        self.post("/webhooks/segment", &[("x-signature", signature)], bytes).await
    }

    pub async fn post_customerio(&self, body: &Value) -> (u16, Value) {
        self.post_customerio_with(CIO_SECRET, body).await
    }

    /// Signed with `secret` (the server's `CIO_WEBHOOK_SECRET`), now.
    pub async fn post_customerio_with(&self, secret: &str, body: &Value) -> (u16, Value) {
        let bytes = body.to_string().into_bytes();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs().to_string();
        let signature = verify::customerio::sign(secret, &now, &bytes);
        self.post("/webhooks/customerio", &[("x-cio-timestamp", now), ("x-cio-signature", signature)], bytes).await
    }

    pub async fn post(&self, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> (u16, Value) {
        let mut request =
            self.http.post(format!("{}{path}", self.base)).header("content-type", "application/json").body(body);
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        let response = request.send().await.expect("relay serve answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Sends a signal (`INT`, `KILL`) to the process.
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, at most `timeout`.
    pub async fn exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll relay serve") {
                tokio::time::sleep(Duration::from_millis(100)).await;
                return status;
            }
            assert!(started.elapsed() < timeout, "relay serve did not exit within {timeout:?}:\n{}", self.output());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `check` holds, at most `timeout`; `false` if it never did.
pub async fn eventually(timeout: Duration, check: impl Fn() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// A fresh directory under the system's temp dir, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("relay-{tag}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `relay` to its end (at most 30 s) with `input` on its standard input.
pub fn run_with_input(args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
    use std::io::Write;
    let mut child = relay(args, env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start relay");
    child.stdin.take().expect("piped").write_all(input.as_bytes()).expect("write relay's input");
    let started = Instant::now();
    while child.try_wait().expect("poll relay").is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("relay {args:?} did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("read relay's output")
}

/// `relay` to its end from async code, with its output as text: (success, stdout, stderr).
pub async fn relay_cmd(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run(&args, &env)
    })
    .await
    .expect("relay ran");
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// The local AWS endpoint (moto) and dummy credentials, as a user's shell would set them.
pub fn aws_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", relay_tests::aws::endpoint()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}
