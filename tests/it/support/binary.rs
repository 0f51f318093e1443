//! The `sandgate` binary as a child process: started on an ephemeral port (optionally under a lower
//! open-files limit), its JSON log collected, its memory read from `/proc/PID/status`, stopped with
//! SIGTERM.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `sandgate serve`.
pub struct Binary {
    /// Started with `kill_on_drop`: the process ends with the test.
    child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
    log: Arc<Mutex<Vec<String>>>,
    /// Reads the log until the process closes its stderr.
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Binary {
    /// Starts `sandgate serve` against `upstream` with JSON logs, `extra` arguments, and, when
    /// `nofile` is given, under `ulimit -n nofile` (through `sh`, which then `exec`s sandgate).
    pub async fn start(upstream: &str, extra: &[&str], nofile: Option<u32>) -> Binary {
        let bin = env!("CARGO_BIN_EXE_sandgate");
        let mut args: Vec<String> = ["serve", "--listen", "127.0.0.1:0", "--upstream", upstream]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.extend(["--set", "log_format=json"].iter().map(|s| (*s).to_owned()));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut cmd = match nofile {
            None => {
                let mut c = Command::new(bin);
                c.args(&args);
                c
            }
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(bin)
                    .args(&args);
                c
            }
        };
        let mut child = cmd
            .env_remove("RUST_LOG")
            .env_remove("SANDGATE_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let addr = loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("sandgate logs its address")
                .unwrap()
                .expect("sandgate exited before listening");
            log.lock().unwrap().push(line.clone());
            let v: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            if v["fields"]["message"] == "sandgate listening" {
                break v["fields"]["addr"].as_str().unwrap().parse().unwrap();
            }
        };
        let l = log.clone();
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                l.lock().unwrap().push(line);
            }
        });
        Binary { child, addr, pid, log, reader: Some(reader) }
    }

    /// Sends SIGTERM and waits (up to 10 s) for the process to exit.
    pub async fn sigterm(&mut self) -> std::process::ExitStatus {
        let pid = self.pid.to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("sandgate exits after SIGTERM")
            .unwrap()
    }

    /// Every log line, to the end: waits (up to 10 s) for the process to close its stderr, as it
    /// does when it exits.
    pub async fn whole_log(&mut self) -> Vec<String> {
        if let Some(reader) = self.reader.take() {
            tokio::time::timeout(Duration::from_secs(10), reader)
                .await
                .expect("sandgate closes its log when it exits")
                .unwrap();
        }
        self.log()
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// A field of `/proc/PID/status` in kB, e.g. `VmHWM` (peak resident) or `VmRSS`.
    pub fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid))
    }

    /// Peak resident memory so far, in MB.
    pub fn peak_mb(&self) -> f64 {
        self.status_kb("VmHWM") as f64 / 1024.0
    }

    /// How many file descriptors the process holds.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map_or(0, |d| d.count())
    }
}
