//! `TEST_LOG=1` shows logs in tests; without it tracing stays quiet (zero-to-production's
//! habit). In-process code logs through the test writer, so a failing test prints its own
//! lines (all tests do with `-- --nocapture`); `RUST_LOG` picks the level (default: `info`,
//! and `debug` for the library). `relay` started as a process by `cli/tests` keeps its own
//! environment; with `TEST_LOG` set the tests echo what it prints.
//!
//! ```text
//! TEST_LOG=1 scripts/test a_retry_after -- --nocapture
//! ```

use std::sync::Once;

use tracing_subscriber::EnvFilter;

const DEFAULT_FILTER: &str = "info,shared=debug";

/// Whether `TEST_LOG` is set to something other than empty or `0`.
pub fn enabled() -> bool {
    std::env::var_os("TEST_LOG").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Installs the test subscriber once per test binary, if `TEST_LOG` asks for it. Every test
/// rig (the app, the stand-ins, the worker and SQS helpers) calls it, so no test has to.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if !enabled() {
            return;
        }
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
        // Another subscriber already installed (a test that sets its own) is left in place.
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    });
}
