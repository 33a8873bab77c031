//! Running the PixelFlow binaries as processes, for the end-to-end test and
//! the load bench. The binaries are the ones cargo built next to the
//! running test or bench (`target/debug` or `target/release`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

pub mod load;

use pixelflow_testkit::{eventually, Exposition};
use tokio::process::{Child, Command};

/// The service binary `name`, next to the running executable's `deps/`.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (with --release for benches)",
        path.display()
    );
    path
}

/// A service process; killed when dropped.
pub struct Service {
    pub name: &'static str,
    pub base: String,
    child: Child,
    log: PathBuf,
}

impl Service {
    /// Starts binary `name` with exactly `env` (plus PATH), logging its
    /// stdout to `<logs>/<name>.log`, serving HTTP on `port`.
    pub fn spawn(
        name: &'static str,
        port: u16,
        env: &[(&str, String)],
        logs: &std::path::Path,
    ) -> Self {
        Self::spawn_binary(binary(name), name, port, env, logs)
    }

    /// [`Service::spawn`] of the binary at `path` (another build's).
    pub fn spawn_binary(
        path: PathBuf,
        name: &'static str,
        port: u16,
        env: &[(&str, String)],
        logs: &std::path::Path,
    ) -> Self {
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(path)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::from(file))
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            name,
            base: format!("http://127.0.0.1:{port}"),
            child,
            log,
        }
    }

    /// Waits until `/ready` answers 200.
    pub async fn ready(&self, http: &reqwest::Client) {
        let url = format!("{}/ready", self.base);
        eventually(
            &format!("{} to be ready", self.name),
            Duration::from_secs(60),
            || {
                let url = url.clone();
                async move {
                    let response = http.get(&url).send().await.ok()?;
                    (response.status() == 200).then_some(())
                }
            },
        )
        .await;
    }

    pub async fn metrics(&self) -> Exposition {
        pixelflow_testkit::scrape(&format!("{}/metrics", self.base)).await
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Resident memory, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .expect("VmRSS")
    }

    /// CPU time used so far (user and system, all threads), from /proc.
    pub fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("proc stat");
        // Fields after the command name, which is in parentheses and may
        // hold spaces: utime and stime are the 12th and 13th of them.
        let after = stat.rsplit_once(')').expect("stat format").1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // In USER_HZ, which Linux fixes at 100 for /proc whatever the
        // kernel's own tick rate.
        Duration::from_millis(ticks * 10)
    }

    /// SIGKILL, as a crash or the OOM killer would: no cleanup of any kind.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }

    /// SIGTERM, then the exit status and what it logged.
    pub async fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.pid();
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .expect("kill");
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not stop within 30 s of SIGTERM", self.name))
            .expect("wait");
        let log = std::fs::read_to_string(&self.log).expect("log");
        (status, log)
    }
}

/// The environment of one PixelFlow stack: a fresh database, a topic and
/// consumer group of its own, free ports.
pub struct Stack {
    pub database_url: String,
    pub brokers: String,
    pub topic: String,
    pub group: String,
    pub ports: (u16, u16, u16),
    pub jwt_secret: String,
    /// Where the binaries are, when not next to the running executable:
    /// another build's, for a bench comparing builds.
    pub bin_dir: Option<PathBuf>,
}

impl Stack {
    pub async fn fresh(jwt_secret: &str) -> Self {
        Self {
            database_url: pixelflow_testkit::fresh_database().await,
            brokers: pixelflow_testkit::kafka_brokers(),
            topic: pixelflow_testkit::unique("image-tasks-"),
            group: pixelflow_testkit::unique("workers-"),
            ports: (
                pixelflow_testkit::free_port(),
                pixelflow_testkit::free_port(),
                pixelflow_testkit::free_port(),
            ),
            jwt_secret: jwt_secret.into(),
            bin_dir: None,
        }
    }

    fn spawn(
        &self,
        name: &'static str,
        port: u16,
        env: &[(&str, String)],
        logs: &std::path::Path,
    ) -> Service {
        match &self.bin_dir {
            Some(dir) => Service::spawn_binary(dir.join(name), name, port, env, logs),
            None => Service::spawn(name, port, env, logs),
        }
    }

    fn common(&self, port_var: &'static str, port: u16) -> Vec<(&'static str, String)> {
        vec![
            ("HOST", "127.0.0.1".to_string()),
            (port_var, port.to_string()),
            ("DATABASE_URL", self.database_url.clone()),
            ("KAFKA_BROKERS", self.brokers.clone()),
            ("KAFKA_TOPIC", self.topic.clone()),
            ("LOG_LEVEL", "info".to_string()),
        ]
    }

    /// auth, api and worker with `extra` settings on each, once all three
    /// are ready.
    pub async fn start_all(
        &self,
        logs: &std::path::Path,
        extra: &[(&'static str, String)],
        http: &reqwest::Client,
    ) -> [Service; 3] {
        let services = [
            self.auth_with(logs, extra),
            self.api_with(logs, extra),
            self.worker_with(logs, extra),
        ];
        for service in &services {
            service.ready(http).await;
        }
        services
    }

    pub fn auth(&self, logs: &std::path::Path) -> Service {
        self.auth_with(logs, &[])
    }

    /// auth with `extra` settings on top of the stack's.
    pub fn auth_with(&self, logs: &std::path::Path, extra: &[(&'static str, String)]) -> Service {
        let mut env = self.common("PORT", self.ports.0);
        env.push(("JWT_SECRET", self.jwt_secret.clone()));
        env.extend_from_slice(extra);
        self.spawn("auth", self.ports.0, &env, logs)
    }

    pub fn api(&self, logs: &std::path::Path) -> Service {
        self.api_with(logs, &[])
    }

    /// api with `extra` settings on top of the stack's.
    pub fn api_with(&self, logs: &std::path::Path, extra: &[(&'static str, String)]) -> Service {
        let mut env = self.common("PORT", self.ports.1);
        env.push((
            "AUTH_SERVICE_URL",
            format!("http://127.0.0.1:{}", self.ports.0),
        ));
        env.extend_from_slice(extra);
        self.spawn("api", self.ports.1, &env, logs)
    }

    pub fn worker(&self, logs: &std::path::Path) -> Service {
        self.worker_with(logs, &[])
    }

    /// worker with `extra` settings on top of the stack's.
    pub fn worker_with(&self, logs: &std::path::Path, extra: &[(&'static str, String)]) -> Service {
        self.worker_at(self.ports.2, logs, extra)
    }

    /// Another worker of the same group, serving its metrics on `port`.
    pub fn worker_at(
        &self,
        port: u16,
        logs: &std::path::Path,
        extra: &[(&'static str, String)],
    ) -> Service {
        let mut env = self.common("METRICS_PORT", port);
        env.push(("KAFKA_GROUP_ID", self.group.clone()));
        env.extend_from_slice(extra);
        self.spawn("worker", port, &env, logs)
    }
}

/// pixelflow-verify's flow (register, a failed login, login, upload, the
/// task COMPLETED) against `auth` and `api`; panics naming what failed.
pub async fn run_flow(
    http: &reqwest::Client,
    auth: &Service,
    api: &Service,
) -> pixelflow_verify::flow::Done {
    let targets = pixelflow_verify::flow::Targets {
        auth: auth.base.clone(),
        api: api.base.clone(),
    };
    pixelflow_verify::flow::run(http, &targets, Duration::from_secs(60), &|_| {})
        .await
        .unwrap_or_else(|e| panic!("the flow: {e:#}"))
}

/// `count` uploads of a small PNG by the user `authorization` names.
pub async fn upload_some(http: &reqwest::Client, api: &Service, authorization: &str, count: usize) {
    let client = pixelflow_testkit::ApiClient::with_bearer(http, &api.base, authorization.into());
    for _ in 0..count {
        client.upload(pixelflow_testkit::png(64, 64)).await;
    }
}
