//! `aether keys`: the token-signing keyring file (generate, rotate, retire, list, jwks).

use std::io::Write;
use std::path::{Path, PathBuf};

use aether_commands::keys::Keyring;
use anyhow::Context;

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Write a new keyring with one key (refuses to overwrite an existing file).
    Generate(KeyFileArgs),
    /// Add a new active key; the previous one keeps verifying the tokens it signed until you
    /// retire it (after the refresh-token lifetime, 30 days by default).
    Rotate(KeyFileArgs),
    /// Remove a key that no longer signs: tokens it signed stop being accepted.
    Retire {
        #[command(flatten)]
        file: KeyFileArgs,
        /// The key id to remove (see `aether keys list`).
        kid: String,
    },
    /// Print the keys' ids, states and ages (never the secrets).
    List(KeyFileArgs),
    /// Print the public keys as a JSON Web Key Set.
    Jwks(KeyFileArgs),
}

#[derive(Debug, clap::Args)]
pub struct KeyFileArgs {
    /// The keyring file (`--jwt-secret-file` of `aether serve`).
    #[arg(long, env = "AETHER_JWT_SECRET_FILE")]
    file: PathBuf,
}

fn read(path: &Path) -> anyhow::Result<Keyring> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Keyring::from_bytes(&bytes).with_context(|| format!("{}", path.display()))
}

/// Replaces the file's contents in one rename, readable by its owner only.
fn write(path: &Path, keyring: &Keyring, create_new: bool) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    if create_new && path.exists() {
        anyhow::bail!(
            "{} exists; use `aether keys rotate` to add a key",
            path.display()
        );
    }
    let mut file = options
        .open(&temporary)
        .with_context(|| format!("writing {}", temporary.display()))?;
    file.write_all(keyring.to_json().as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Prints a line; a reader that stopped early (`… | head`) is not an error.
fn emit(line: &str) -> anyhow::Result<()> {
    match writeln!(std::io::stdout().lock(), "{line}") {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

pub fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate(args) => {
            let keyring = Keyring::generate();
            write(&args.file, &keyring, true)?;
            emit(&keyring.active()?.kid)?;
        }
        KeysCommand::Rotate(args) => {
            let keyring = read(&args.file)?.rotated();
            write(&args.file, &keyring, false)?;
            emit(&keyring.active()?.kid)?;
            eprintln!("restart every API instance to sign with the new key");
        }
        KeysCommand::Retire { file, kid } => {
            let keyring = read(&file.file)?.retired(&kid)?;
            write(&file.file, &keyring, false)?;
            eprintln!("retired {kid}; restart every API instance to stop accepting its tokens");
        }
        KeysCommand::List(args) => {
            for key in read(&args.file)?.keys() {
                let state = match key.state {
                    aether_commands::keys::KeyState::Active => "active",
                    aether_commands::keys::KeyState::Verify => "verify",
                };
                emit(&format!(
                    "{}\t{state}\t{}",
                    key.kid,
                    key.created_at.to_rfc3339()
                ))?;
            }
        }
        KeysCommand::Jwks(args) => {
            emit(&serde_json::to_string_pretty(&read(&args.file)?.jwks())?)?;
        }
    }
    Ok(())
}
