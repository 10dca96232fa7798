//! The built `lanscatter` binary, the one way tests start it: [`cli`] for a run to completion
//! (`.output()`, `.status()`), [`Proc`] for a long-running process whose output lines a test
//! waits for.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `lanscatter <args>`, ready to run (add more arguments, environment or stdio as needed).
pub fn cli<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(super::bin());
    c.args(args);
    // Tests talk over loopback only: no mDNS announcement onto the host's network (the
    // discovery test, in network namespaces of its own, removes this).
    c.env("LANSCATTER_NO_ANNOUNCE", "true");
    c
}

/// Which output stream of a [`Proc`] arrives as lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lines {
    Stdout,
    Stderr,
}

/// A spawned process whose stdout or stderr lines arrive on a channel (and are echoed for the
/// log). Killed and reaped when dropped, so a failing test leaves nothing running.
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    /// `lanscatter <args>` with stdin and stdout closed and stderr as lines.
    pub fn spawn(args: &[&str]) -> Proc {
        let mut c = cli(args);
        c.stdout(Stdio::null());
        Proc::start(c, Lines::Stderr)
    }

    /// Start `cmd` (stdin closed) with the `from` stream as lines; the other stream stays as
    /// the caller set it.
    pub fn start(mut cmd: Command, from: Lines) -> Proc {
        cmd.stdin(Stdio::null());
        match from {
            Lines::Stdout => cmd.stdout(Stdio::piped()),
            Lines::Stderr => cmd.stderr(Stdio::piped()),
        };
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?} starts: {e}"));
        let out: Box<dyn Read + Send> = match from {
            Lines::Stdout => Box::new(child.stdout.take().expect("stdout piped")),
            Lines::Stderr => Box::new(child.stderr.take().expect("stderr piped")),
        };
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                eprintln!("  | {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines, seen: Vec::new() }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Wait for a line for which `pred` holds (`what` names it in the panic message).
    pub fn wait_for(&mut self, what: &str, timeout: Duration, mut pred: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(_) => panic!("no line with {what} within {timeout:?}; saw {:?}", self.seen),
            }
        }
    }

    /// Wait for a line containing `needle`.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for(&format!("{needle:?}"), timeout, |l| l.contains(needle))
    }

    /// True while the process has not exited (reaps it if it has).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait works").is_none()
    }

    /// Kill the process (SIGKILL on Unix) and reap it.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill works");
        self.child.wait().expect("wait works");
    }

    /// True once the process has exited (it is reaped; [`Proc::wait_exit`] still gives its status).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("wait works").is_some()
    }

    /// Wait for the process to exit; returns its status and all of its lines.
    pub fn wait_exit(mut self, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait works") {
                // The reader thread ends at EOF; collect what it still has.
                while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    self.seen.push(l);
                }
                return (st, self.seen.join("\n"));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("process did not exit within {timeout:?}; lines so far {:?}", self.seen);
            }
            while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.seen.push(l);
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
