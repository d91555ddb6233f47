//! The console page in a real browser: `relay serve` gets signed events, the worker runs
//! them against the Mavera stand-in, and headless Chromium loads the page and a job's page.
//! The page must show the events and Mavera's result as the browser renders them; the
//! screenshots land in `target/tmp/` for people to look at. Without Chromium (see
//! scripts/chromium, which scripts/test runs) the test says so and skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use relay_tests::cio_standin::CioStandIn;
use relay_tests::mavera_standin::MaveraStandIn;
use relay_tests::payloads::segment_track;
use serde_json::json;

use crate::support::{Serve, TempDir, secrets};

const WAIT: Duration = Duration::from_secs(10);

/// The browser, or why there is none.
fn chromium() -> Result<PathBuf, String> {
    let named = std::env::var("CHROMIUM").ok().filter(|c| !c.is_empty());
    for candidate in named.iter().map(String::as_str).chain(["chromium", "chromium-browser"]) {
        if let Ok(out) = Command::new("which").arg(candidate).output()
            && out.status.success()
        {
            return Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    Err("no chromium on PATH and CHROMIUM unset (scripts/test installs Debian's chromium when it runs as root)".into())
}

/// Loads `url` in headless Chromium with a fresh profile: the DOM after load, and a
/// screenshot at `shot`.
fn load(browser: &Path, url: &str, shot: &Path) -> String {
    let profile = TempDir::new("chromium-profile");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.path()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--dump-dom")
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    while child.try_wait().expect("poll chromium").is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("chromium did not finish loading {url} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("chromium's output");
    assert!(out.status.success(), "chromium failed on {url}");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    // The DOM as the browser saw it, beside the screenshot.
    let _ = std::fs::write(shot.with_extension("html"), &dom);
    dom
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes.len() > 1000 && bytes.starts_with(b"\x89PNG"))
}

#[tokio::test]
async fn the_console_shows_the_event_and_its_result_in_a_browser() {
    let browser = match chromium() {
        Ok(path) => path,
        Err(why) => {
            eprintln!("skipped the console's browser test: {why}");
            return;
        }
    };
    let (mavera, cio) = (MaveraStandIn::start().await, CioStandIn::start().await);
    let mut env: Vec<(&str, String)> = secrets().into_iter().map(|(k, v)| (k, v.to_owned())).collect();
    env.push(("MAVERA_BASE_URL", mavera.base_url()));
    env.push(("MAVERA_API_KEY", mavera.api_key().to_owned()));
    env.push(("CIO_APP_KEY", cio.app_key().to_owned()));
    env.push(("CIO_APP_API_URL", cio.base_url()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut serve = Serve::start(&[], &env).await;
    // A plan name that tries to run script in the page; it reaches the prompt, so Mave's
    // answer (the stand-in's echoes the prompt) carries it too. It must show as text.
    let hostile = "team<script>document.title='owned'</script><img src=x onerror=\"document.title='owned'\">";
    let upgrade =
        segment_track("m-console", "plan_upgraded", "usr_web", json!({"previous_plan": "basic", "new_plan": hostile}));
    assert_eq!(serve.post_segment(&upgrade).await.1["status"], "queued");
    let trial = segment_track("m-console-2", "trial_started", "usr_web2", json!({"plan": "pro", "source": "ads"}));
    assert_eq!(serve.post_segment(&trial).await.1["status"], "queued");
    serve.wait_for_line(|l| l.contains("m-console ") && l.contains(" done "), WAIT).await;
    serve.wait_for_line(|l| l.contains("m-console-2") && l.contains(" done "), WAIT).await;

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let (list_shot, job_shot) = (shots.join("console.png"), shots.join("console-job.png"));
    let base = serve.base.clone();
    let dom = {
        let (browser, shot) = (browser.clone(), list_shot.clone());
        let url = format!("{base}/console");
        tokio::task::spawn_blocking(move || load(&browser, &url, &shot)).await.unwrap()
    };
    for shown in
        ["m-console", "m-console-2", "segment-plan-upgraded", "segment-trial-started", "DONE", "Per rule", "<svg"]
    {
        assert!(dom.contains(shown), "the page shows {shown}:\n{dom}");
    }
    assert!(
        dom.contains("Findings Stand-in research answering: A user just upgraded from basic to team&lt;script&gt;"),
        "{dom}"
    );
    assert!(dom.contains("Segment RT: Trial User — usr_web2"), "the persona's name: {dom}");
    assert!(is_png(&list_shot), "a screenshot at {}", list_shot.display());

    let dom = {
        let (browser, shot) = (browser.clone(), job_shot.clone());
        let url = format!("{base}/console/job?key=segment%23m-console%23segment-plan-upgraded");
        tokio::task::spawn_blocking(move || load(&browser, &url, &shot)).await.unwrap()
    };
    assert!(
        dom.contains("Stand-in research answering: A user just upgraded from basic to team&lt;script&gt;"),
        "{dom}"
    );
    assert!(dom.contains("2. Follow up within 48 hours."), "the whole research text: {dom}");
    assert!(dom.contains("&lt;script&gt;document.title='owned'&lt;/script&gt;"), "the event's text, escaped: {dom}");
    assert!(!dom.contains("<script") && !dom.contains("<img"), "no markup from the event: {dom}");
    assert!(
        dom.contains("<title>mavera-relay: segment#m-console#segment-plan-upgraded</title>"),
        "no script ran: {dom}"
    );
    assert!(dom.contains("Attempts") && dom.contains("RUNNING"), "the history: {dom}");
    for (_, secret) in &env {
        assert!(!dom.contains(secret), "no secret or key on the page");
    }
    assert!(is_png(&job_shot));
    eprintln!("screenshots: {} and {}", list_shot.display(), job_shot.display());
}
