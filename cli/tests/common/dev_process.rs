//! `aether dev` as a process of its own, for tests that stop, kill or restart it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `aether dev`, killed when dropped.
pub struct DevServer {
    pub child: Child,
    /// The GraphQL URL it printed.
    pub url: String,
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `aether dev --data-dir DATA_DIR EXTRA` on a free port and waits (up to 30 s) for the
/// line that says where it listens. Its output (the logs too) is read to the end on a thread
/// of its own, so it never blocks.
pub fn spawn_dev(data_dir: &Path, extra: &[&str]) -> anyhow::Result<DevServer> {
    spawn_dev_with_env(data_dir, extra, &[])
}

/// [`spawn_dev`] with `env` set in its environment.
pub fn spawn_dev_with_env(
    data_dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<DevServer> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aether"))
        .envs(env.iter().copied())
        .args([
            "--log",
            "warn",
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (found, url) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                let _ = found.send(url.to_owned());
            }
        }
    });
    let url = match url.recv_timeout(Duration::from_secs(30)) {
        Ok(url) => url,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("aether dev did not say where it listens");
        }
    };
    Ok(DevServer { child, url })
}
