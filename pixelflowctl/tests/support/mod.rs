//! What the Docker tests share: the docker CLI, for what the test itself
//! does or checks beside pixelflowctl, and removing what it made.

use tokio::process::Command;

/// `docker ARGS`, which must succeed; its trimmed stdout.
pub async fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .await
        .expect("docker CLI");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Whether the object of `kind` (container, volume, image…) exists.
#[allow(dead_code)] // not every test binary asks
pub async fn exists(kind: &str, name: &str) -> bool {
    Command::new("docker")
        .args([kind, "inspect", name])
        .output()
        .await
        .expect("docker CLI")
        .status
        .success()
}

/// Removes objects a test made, (kind, name) each, whatever their state;
/// for `Drop`, so blocking.
#[allow(dead_code)] // not every test binary makes its own objects
pub fn remove_all(objects: &[(&str, String)]) {
    for (kind, name) in objects {
        let _ = std::process::Command::new("docker")
            .args([kind, "rm", "-f", name])
            .output();
    }
}
