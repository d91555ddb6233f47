//! The functions as a developer runs them: `cargo lambda watch` (the Lambda runtime emulator,
//! from `.venv`, which `scripts/test` installs) on a free loopback port, building and starting
//! the function on its first invocation. `cargo lambda watch` hands every invocation the
//! constant deadline `Lambda-Runtime-Deadline-Ms: 600000` (ten minutes after 1970), which is
//! what these tests are about.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub struct LambdaWatch {
    child: Child,
    port: u16,
    log: PathBuf,
    http: reqwest::Client,
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate is in the workspace").to_owned()
}

impl LambdaWatch {
    /// Starts the emulator with `env` (and the process environment: the AWS endpoint and
    /// dummy credentials `scripts/test` exports). Functions build on first use.
    pub async fn start(env: &[(&str, String)]) -> Self {
        let root = workspace();
        let venv_bin = root.join(".venv/bin");
        assert!(
            venv_bin.join("cargo-lambda").exists(),
            "cargo-lambda is not in .venv: run the tests with scripts/test, which installs it (scripts/requirements-test.txt)"
        );
        let port = free_port();
        let log = root.join("target").join(format!("lambda-watch-{port}.log"));
        let out = std::fs::File::create(&log).expect("create the emulator's log file");
        let path = format!("{}:{}", venv_bin.display(), std::env::var("PATH").unwrap_or_default());
        let mut command = Command::new("cargo");
        command
            .args(["lambda", "watch", "--ignore-changes", "-A", "127.0.0.1", "-P", &port.to_string()])
            .current_dir(&root)
            .env("PATH", path)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            // Its own process group, so the function it starts is stopped with it.
            .process_group(0);
        let child = command.spawn().expect("start cargo lambda watch");
        let watch = LambdaWatch { child, port, log, http: reqwest::Client::new() };
        watch.wait_for("starting Runtime server", Duration::from_secs(60)).await;
        watch
    }

    /// Everything the emulator and the function printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_for(&self, text: &str, timeout: Duration) {
        let until = tokio::time::Instant::now() + timeout;
        while !self.output().contains(text) {
            assert!(tokio::time::Instant::now() < until, "no `{text}` within {timeout:?}:\n{}", self.output());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Invokes `function` with `payload`, as `cargo lambda invoke` does; the first call
    /// builds the function, so it may take minutes.
    pub async fn invoke(&self, function: &str, payload: &Value) -> Value {
        let url = format!("http://127.0.0.1:{}/2015-03-31/functions/{function}/invocations", self.port);
        let response = self
            .http
            .post(&url)
            .json(payload)
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke {function}: {e}\n{}", self.output()));
        let text = response.text().await.unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{function} answered {text:?}:\n{}", self.output()))
    }
}

impl Drop for LambdaWatch {
    fn drop(&mut self) {
        // The whole group: the emulator and the function binary it started.
        let _ = Command::new("kill").arg("--").arg(format!("-{}", self.child.id())).status();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
