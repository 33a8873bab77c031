//! A private tansu broker in its own process, for tests that stop and start
//! the broker (the outbox must survive an outage) or need a clean one.

use std::path::Path;
use std::process::Stdio;

use tokio::process::{Child, Command};

pub struct Broker {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Broker {
    /// The tansu binary: `TANSU_BIN`, else `tansu` on PATH.
    pub fn binary() -> String {
        std::env::var("TANSU_BIN").unwrap_or_else(|_| "tansu".into())
    }

    /// Starts tansu on `port` with SQLite storage in a fresh directory, and
    /// waits until it accepts connections.
    pub async fn start(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let child = spawn(dir.path(), port);
        let broker = Self { port, child, dir };
        broker.accepting().await;
        broker
    }

    /// Kills the broker process (SIGKILL), keeping its data: an outage.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Starts the broker again on its port with the data it had.
    pub async fn restart(&mut self) {
        self.child = spawn(self.dir.path(), self.port);
        self.accepting().await;
    }

    async fn accepting(&self) {
        crate::accepting(self.port, "tansu").await;
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn spawn(dir: &Path, port: u16) -> Child {
    let listener = format!("tcp://127.0.0.1:{port}");
    Command::new(Broker::binary())
        .current_dir(dir)
        .args([
            "broker",
            "--listener-url",
            &listener,
            "--advertised-listener-url",
            &listener,
            "--storage-engine",
            "sqlite://broker.db",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} (install with compose/standins/install-tansu, or set TANSU_BIN): {e}",
                Broker::binary()
            )
        })
}

/// The outage scenario kills the broker process and starts it again on
/// the same port and storage.
impl crate::BrokerSwitch for Broker {
    async fn off(&mut self) {
        self.kill().await;
    }

    async fn on(&mut self) {
        self.restart().await;
    }
}
