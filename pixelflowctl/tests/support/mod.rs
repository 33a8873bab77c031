//! What the Docker tests share: the docker CLI, for what the test itself
//! does or checks beside pixelflowctl, and removing what it made.

use tokio::process::Command;

/// `docker ARGS`, which must succeed; its trimmed stdout.
pub async fn docker(args: &[&str]) -> String {
    let output = succeeded(
        Command::new("docker").args(args),
        &format!("docker {args:?}"),
    )
    .await;
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Runs `command`, which must exit 0 (`what` names it in the failure,
/// with what it printed); its output.
pub async fn succeeded(command: &mut Command, what: &str) -> std::process::Output {
    let output = command
        .output()
        .await
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The id of the image tagged `name`.
#[allow(dead_code)] // not every test binary asks
pub async fn image_id(name: &str) -> String {
    docker(&["image", "inspect", "-f", "{{.Id}}", name]).await
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
