//! A page opened in a real headless browser (Debian's Chromium), driven over the DevTools
//! protocol on a pipe (`--remote-debugging-pipe`: JSON messages ending in a NUL byte, sent on
//! the browser's file descriptor 3 and received on its 4). What the page logged while loading
//! is collected, and expressions are evaluated in it.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The browser: `STRATA_CHROMIUM`, else `/usr/bin/chromium`.
pub fn chromium() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("STRATA_CHROMIUM")
        .map(Into::into)
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    Path::new(&path).is_file().then_some(path)
}

/// A page loaded in a headless browser, killed when dropped.
pub struct Page {
    child: Child,
    to: std::fs::File,
    from: Receiver<Value>,
    session: String,
    next_id: u64,
    /// Console errors and warnings, uncaught exceptions and failed loads, one line each.
    pub problems: Vec<String>,
}

/// Each step's time limit.
const LIMIT: Duration = Duration::from_secs(60);

impl Page {
    /// Opens `file` in `browser` and waits for its load event.
    pub fn open(browser: &Path, file: &Path) -> Self {
        let (to_read, to_write) = pipe();
        let (from_read, from_write) = pipe();
        let (r, w) = (to_read.as_raw_fd(), from_write.as_raw_fd());
        let mut cmd = Command::new(browser);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
        ])
        .args(["--no-first-run", "--disable-extensions", "about:blank"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only fcntl and dup2, async-signal-safe, between fork and exec. The ends are
        // first copied above 10, so that placing one on 3 or 4 cannot close the other; only
        // dup2's copies on 3 and 4 stay open across exec.
        unsafe {
            cmd.pre_exec(move || {
                let (r, w) = (
                    libc::fcntl(r, libc::F_DUPFD_CLOEXEC, 10),
                    libc::fcntl(w, libc::F_DUPFD_CLOEXEC, 10),
                );
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("the browser starts");
        drop((to_read, from_write));
        let (tx, from) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(std::fs::File::from(from_read));
            let mut buf = Vec::new();
            while reader.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                buf.pop();
                if let Ok(v) = serde_json::from_slice(&buf) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
                buf.clear();
            }
        });
        let mut page = Self {
            child,
            to: std::fs::File::from(to_write),
            from,
            session: String::new(),
            next_id: 0,
            problems: Vec::new(),
        };
        page.load(file);
        page
    }

    fn load(&mut self, file: &Path) {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target = target["targetId"].clone();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        self.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            self.call(Some(()), domain, json!({}));
        }
        let url = format!(
            "file://{}",
            file.canonicalize().expect("the page exists").display()
        );
        self.call(Some(()), "Page.navigate", json!({"url": url}));
        self.wait_for("Page.loadEventFired");
    }

    /// The value of `expression` evaluated in the page.
    pub fn eval(&mut self, expression: &str) -> Value {
        let params = json!({"expression": expression, "returnByValue": true});
        let out = self.call(Some(()), "Runtime.evaluate", params);
        assert!(out.get("exceptionDetails").is_none(), "{expression}: {out}");
        out["result"]["value"].clone()
    }

    /// Sends a command (to the page's session with `Some`) and returns its result.
    fn call(&mut self, page: Option<()>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if page.is_some() {
            msg["sessionId"] = self.session.clone().into();
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to
            .write_all(&bytes)
            .expect("the browser reads its pipe");
        let reply = self.until(|m| m["id"] == id, method);
        assert!(reply.get("error").is_none(), "{method}: {reply}");
        reply["result"].clone()
    }

    fn wait_for(&mut self, event: &str) {
        self.until(|m| m["method"] == event, event);
    }

    /// Reads messages, noting problems, until one matches.
    fn until(&mut self, done: impl Fn(&Value) -> bool, what: &str) -> Value {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("the browser did not answer {what}: {e}"));
            self.note(&msg);
            if done(&msg) {
                return msg;
            }
        }
    }

    fn note(&mut self, msg: &Value) {
        let p = &msg["params"];
        let line = match msg["method"].as_str() {
            Some("Runtime.consoleAPICalled")
                if matches!(p["type"].as_str(), Some("error" | "warning" | "assert")) =>
            {
                format!("console.{}: {}", p["type"], p["args"])
            }
            Some("Runtime.exceptionThrown") => format!("exception: {}", p["exceptionDetails"]),
            Some("Log.entryAdded")
                if p["entry"]["level"] != "verbose" && p["entry"]["level"] != "info" =>
            {
                format!("log {}: {}", p["entry"]["level"], p["entry"]["text"])
            }
            _ => return,
        };
        self.problems.push(line);
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here only.
    unsafe {
        use std::os::fd::FromRawFd;
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    }
}
