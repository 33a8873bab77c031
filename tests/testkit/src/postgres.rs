//! A private PostgreSQL server in its own data directory, for tests that
//! stop and start the database (every service must ride out a restart).
//! Debian's server binaries (`postgresql` package); as root, the server
//! runs as the `postgres` user, since PostgreSQL refuses root.

use std::path::{Path, PathBuf};

use tokio::process::Command;

pub struct PrivatePostgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

fn server_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .filter(|bin| bin.join("postgres").exists())
        .unwrap_or_else(|| {
            panic!("no PostgreSQL server under /usr/lib/postgresql (apt-get install postgresql)")
        })
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// `program`, run as the postgres user when we are root.
fn as_postgres(program: &Path) -> std::process::Command {
    if is_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        std::process::Command::new(program)
    }
}

/// `program args…` as the postgres user; panics with its output on failure.
async fn run_as_postgres(program: &Path, args: &[&str]) {
    let output = Command::from(as_postgres(program))
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl PrivatePostgres {
    /// initdb in a fresh directory and start the server on a free port.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        if is_root() {
            let chown = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .await
                .expect("chown");
            assert!(chown.success(), "chown of the data directory");
        }
        let bin = server_bin();
        let data = dir.path().join("data");
        run_as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        )
        .await;
        let server = Self {
            port: crate::free_port(),
            bin,
            dir,
        };
        server.up().await;
        server
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown: clients are disconnected).
    pub async fn stop(&self) {
        let data = self.dir.path().join("data");
        run_as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &data.to_string_lossy(), "-m", "fast", "-w", "stop"],
        )
        .await;
    }

    /// Starts it again with the same data on the same port.
    pub async fn up(&self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("server.log");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        run_as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                &data.to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .await;
        crate::accepting(self.port, "PostgreSQL").await;
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Immediate: the test is over, and its data directory goes next.
        let data = self.dir.path().join("data");
        let mut command = as_postgres(&self.bin.join("pg_ctl"));
        let _ = command
            .args(["-D", &data.to_string_lossy(), "-m", "immediate", "stop"])
            .output();
    }
}
