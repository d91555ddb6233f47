//! How a running `relay serve` tells other `relay` commands where to reach it. Its data
//! directory's file is locked while it runs, so `relay events --data-dir DIR` asks the
//! server instead: `relay serve` writes its address and a random token to
//! `DIR/serve.json` (readable by this user only), and removes the file when it stops. The
//! token guards the server's records API (`/console/api/`), so a web page the browser
//! visits cannot read or replay jobs through it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::RelayError;

/// The file in the data directory.
pub const FILE: &str = "serve.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Running {
    /// `http://127.0.0.1:3000`
    pub url: String,
    pub token: String,
    pub pid: u32,
}

/// A token for one run of `relay serve`: 256 random bits (two v4 UUIDs' worth, from the
/// operating system's generator).
pub fn new_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// Removes the file when dropped (when `relay serve` stops).
#[derive(Debug)]
pub struct Announced(PathBuf);

impl Drop for Announced {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes `DIR/serve.json`, readable and writable by this user only.
pub fn announce(dir: &Path, running: &Running) -> Result<Announced, RelayError> {
    let path = dir.join(FILE);
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path)?;
        file.write_all(serde_json::to_string(running).map_err(std::io::Error::other)?.as_bytes())
    };
    write().map_err(|source| RelayError::WriteFile { path: path.display().to_string(), source })?;
    Ok(Announced(path))
}

/// What the running server wrote, if it did.
pub fn read(dir: &Path) -> Result<Option<Running>, RelayError> {
    let path = dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| RelayError::NotJson { path: path.display().to_string(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RelayError::ReadFile { path: path.display().to_string(), source }),
    }
}
