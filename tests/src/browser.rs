//! Real-browser tests: headless Chromium driven by Playwright from a Node script in
//! `tests/browser/` (its launcher, `tests/browser/chromium.mjs`, is shared by every such script).
//!
//! Chromium is Debian's `chromium` package (`.ci/run` installs it); `playwright-core` is installed
//! into `.tools/node_modules` by `scripts/services.sh`. Without Chromium a browser test is skipped
//! with a message saying how to install it, except in CI (`CI` set), where it fails.
//!
//! A script reports what happens as JSON lines on stdout; [`NodeScript`] reads them as they come
//! (so the test can act in between, e.g. publish once the page has subscribed) and stops the
//! script by closing its stdin.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Whether this is a CI run (`CI` set and not empty): there, missing tools fail the test.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// The Chromium binary (`HERALD_CHROMIUM`, default `/usr/bin/chromium`), and `playwright-core`
/// installed; `None` (after saying why on stderr) when Chromium is missing outside CI, so the
/// caller returns early. Panics in CI without Chromium, and anywhere without `playwright-core`
/// (the repository's own scripts install that one).
pub fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var("HERALD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if !path.is_file() {
        let why = format!(
            "no Chromium at {}: install it with `apt-get install -y chromium` (Debian's package; .ci/run does this), \
             or set HERALD_CHROMIUM to a Chromium binary",
            path.display()
        );
        if in_ci() {
            panic!("{test}: {why} (CI is set, so this fails instead of being skipped)");
        }
        eprintln!("SKIPPED {test}: {why}");
        return None;
    }
    let playwright = repo_root().join(".tools/node_modules/playwright-core/package.json");
    assert!(
        playwright.is_file(),
        "{test}: playwright-core is not installed ({} is missing): run `./scripts/test`, or \
         `bash -c 'source scripts/services.sh && herald_install_tools'`, which install it into .tools/",
        playwright.display()
    );
    Some(path)
}

/// A Node script of `tests/browser/` running, its stdout read as JSON lines.
pub struct NodeScript {
    child: Child,
    /// The script's TMPDIR (Chromium's profile goes there), removed on drop even if the script
    /// was killed.
    scratch: PathBuf,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: tokio::task::JoinHandle<String>,
    /// Every line read so far.
    pub events: Vec<Value>,
}

/// How long one wait for a line may take before the test fails.
const LINE_WAIT: Duration = Duration::from_secs(20);

impl NodeScript {
    /// Starts `node tests/browser/<script> <args…>` with `HERALD_CHROMIUM` set to `chromium`.
    pub fn start(script: &str, args: &[&str], chromium: &Path) -> Self {
        let root = repo_root();
        let scratch = std::env::temp_dir().join(format!("herald-node-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&scratch).unwrap_or_else(|e| panic!("cannot create {}: {e}", scratch.display()));
        let mut child = tokio::process::Command::new("node")
            .arg(root.join("tests/browser").join(script))
            .args(args)
            .current_dir(&root)
            .env("HERALD_CHROMIUM", chromium)
            .env("TMPDIR", &scratch)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node (Node.js 20 or later is required): {e}"));
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut err = child.stderr.take().expect("stderr");
        let stderr = tokio::spawn(async move {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s).await;
            s
        });
        Self { child, scratch, lines, stderr, events: Vec::new() }
    }

    /// Reads lines until one satisfies `pred` and returns it; panics (with everything read so
    /// far and the script's stderr) when the script ends or `LINE_WAIT` passes first.
    pub async fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(e) = self.events.iter().find(|e| pred(e)) {
            return e.clone();
        }
        let deadline = tokio::time::Instant::now() + LINE_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    let event = self.parse(&line);
                    self.events.push(event.clone());
                    if pred(&event) {
                        return event;
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) => self.fail(&format!("{what}: the script ended first")).await,
                Err(_) => self.fail(&format!("{what}: nothing within {LINE_WAIT:?}")).await,
            }
        }
    }

    /// Closes stdin (the script's signal to stop), reads the rest and checks the script exited 0.
    /// Returns every event.
    pub async fn finish(mut self) -> Vec<Value> {
        drop(self.child.stdin.take());
        loop {
            match tokio::time::timeout(LINE_WAIT, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    let event = self.parse(&line);
                    self.events.push(event);
                }
                Ok(Ok(None)) | Ok(Err(_)) => break,
                Err(_) => self.fail(&format!("the script's end: nothing within {LINE_WAIT:?}")).await,
            }
        }
        let status = tokio::time::timeout(LINE_WAIT, self.child.wait()).await;
        match status {
            Ok(Ok(s)) if s.success() => std::mem::take(&mut self.events),
            other => self.fail(&format!("a clean exit, got {other:?}")).await,
        }
    }

    fn parse(&self, line: &str) -> Value {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("the script printed a line that is not JSON ({e}): {line}"))
    }

    async fn fail(&mut self, what: &str) -> ! {
        // Asked to stop first (the browser closes cleanly), killed if it does not.
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
        let stderr = (&mut self.stderr).await.unwrap_or_default();
        let events: Vec<String> = self.events.iter().map(Value::to_string).collect();
        panic!("waited for {what}\nevents so far:\n{}\nstderr:\n{stderr}", events.join("\n"))
    }
}

impl Drop for NodeScript {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}
