//! `aether keys`: the keyring file operators manage, through the binary.

use std::process::{Command, Output};

fn aether(args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_aether"))
        .args(args)
        .env_remove("AETHER_JWT_SECRET_FILE")
        .output()?)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn operators_generate_rotate_and_retire_signing_keys() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("keys.json");
    let file = file.to_str().unwrap_or_default();

    let generated = aether(&["keys", "generate", "--file", file])?;
    assert!(generated.status.success());
    let first = stdout(&generated);
    assert!(first.starts_with("ed25519-"), "{first}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the keyring is readable by its owner only");
    }
    // Generating over an existing keyring would sign everyone out: refused.
    let again = aether(&["keys", "generate", "--file", file])?;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));

    let rotated = aether(&["keys", "rotate", "--file", file])?;
    assert!(rotated.status.success());
    let second = stdout(&rotated);
    assert_ne!(first, second);
    let listed = stdout(&aether(&["keys", "list", "--file", file])?);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(
        lines[0].starts_with(&format!("{second}\tactive")),
        "{listed}"
    );
    assert!(
        lines[1].starts_with(&format!("{first}\tverify")),
        "{listed}"
    );
    // The listing and the JWKS show no secret.
    let keyring: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file)?)?;
    let seed = keyring["keys"][0]["seed"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(seed.len(), 64);
    let jwks = stdout(&aether(&["keys", "jwks", "--file", file])?);
    assert!(!jwks.contains(&seed) && !listed.contains(&seed));
    let jwks: serde_json::Value = serde_json::from_str(&jwks)?;
    assert_eq!(jwks["keys"].as_array().map_or(0, Vec::len), 2);

    // The signing key cannot be retired; the old one can.
    let refused = aether(&["keys", "retire", "--file", file, &second])?;
    assert!(!refused.status.success());
    let retired = aether(&["keys", "retire", "--file", file, &first])?;
    assert!(retired.status.success());
    let listed = stdout(&aether(&["keys", "list", "--file", file])?);
    assert_eq!(listed.lines().count(), 1, "{listed}");

    // A placeholder secret is refused with advice.
    std::fs::write(
        dir.path().join("weak"),
        "changeme-changeme-changeme-changeme",
    )?;
    let weak = aether(&[
        "keys",
        "list",
        "--file",
        dir.path().join("weak").to_str().unwrap_or_default(),
    ])?;
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("too weak"));
    Ok(())
}
