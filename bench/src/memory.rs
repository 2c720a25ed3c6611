//! Memory: the `herald-local` binary as a child process on a free port; its VmRSS before and
//! after `connections` idle WebSocket connections (the clients live in this process).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;

use crate::common::{self, Result, figure};

/// Kills the child on every way out.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn default_bin() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    target.join("perf").join("herald-local")
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// VmRSS of a process, in bytes.
fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or("no VmRSS line in /proc/<pid>/status")?;
    let kb: u64 = line.split_whitespace().nth(1).ok_or("malformed VmRSS line")?.parse()?;
    Ok(kb * 1024)
}

pub async fn run(connections: usize, bin: Option<PathBuf>) -> Result<()> {
    let bin = bin.unwrap_or_else(default_bin);
    if !bin.is_file() {
        return Err(
            format!("{} does not exist: build it with `cargo build --profile perf -p herald-local` or pass --bin", bin.display()).into()
        );
    }
    let port = free_port()?;
    let mut child = Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .env("HERALD_JWT_SECRET", common::SECRET)
        .env_remove("HERALD_JWT_PUBLIC_KEY")
        .env_remove("HERALD_JWKS_URL")
        .env_remove("HERALD_AUTH_VERIFY_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let guard = ChildGuard(child);
    let pid = guard.0.id();
    // Read its output on a thread of its own (and keep draining it).
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut ready = Some(ready_tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("herald-local is ready")
                && let Some(tx) = ready.take()
            {
                let _ = tx.send(());
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(30), ready_rx).await {
        Ok(Ok(())) => {}
        _ => return Err(format!("{} did not print `herald-local is ready` within 30 s", bin.display()).into()),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_bytes(pid)?;

    let base = format!("ws://127.0.0.1:{port}/api/v1/notify/ws");
    let urls =
        (0..connections).map(|i| Ok(format!("{base}?token={}", common::user_token(&format!("mem{i}"))?))).collect::<Result<Vec<_>>>()?;
    let opened: Vec<Result<common::Ws>> = futures::stream::iter(urls)
        .map(|u| async move { common::connect(&u, Duration::from_secs(30)).await })
        .buffer_unordered(200)
        .collect()
        .await;
    let mut open = Vec::with_capacity(connections);
    let mut failed = 0usize;
    for r in opened {
        match r {
            Ok(ws) => open.push(ws),
            Err(e) => {
                if failed == 0 {
                    eprintln!("warning: a handshake failed: {e}");
                }
                failed += 1;
            }
        }
    }
    // Let the server's connection tasks settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_bytes(pid)?;
    let n = open.len().max(1) as f64;
    figure("memory connections open", open.len(), "connections");
    if failed > 0 {
        figure("memory handshakes failed", failed, "connections");
    }
    figure("memory rss before", before, "bytes");
    figure("memory rss after", after, "bytes");
    figure("memory per connection", format!("{:.0}", after.saturating_sub(before) as f64 / n), "bytes");
    figure("memory per connection", format!("{:.1}", after.saturating_sub(before) as f64 / n / 1024.0), "KiB");
    common::close_all(open).await;
    drop(guard);
    Ok(())
}
