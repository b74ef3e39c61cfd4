//! The key-encryption key (KEK) the registry's private keys are sealed under
//! (`bonafide_server::sealing`): where it comes from and its file format.
//!
//! File format: the 32 bytes as base64 text (URL-safe or standard alphabet, `=`
//! padding optional, surrounding whitespace ignored), as `bonafide keys new-kek`
//! writes; or exactly 32 raw bytes (base64 of 32 bytes is at least 43 characters, so
//! the two never overlap). The file must not be readable or writable by other users.
//!
//! With `--key-encryption-key-file` (`BONAFIDE_KEY_ENCRYPTION_KEY_FILE`) that file is
//! used. Without it, SQLite uses `<data-dir>/key-encryption.key`, made (0600) on
//! first start; PostgreSQL requires the flag: its replicas share no directory, and a
//! KEK kept in the database would protect nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use bonafide_core::sealed::{KEK_LEN, Kek, random_kek_bytes};
use bonafide_store::Location;

/// Name of the KEK file SQLite registries keep in their data dir by default.
pub const DEFAULT_FILE: &str = "key-encryption.key";

/// The KEK for the store at `location`: from `file` if given, else the data dir's
/// default file (made now if missing); PostgreSQL without `file` is an error saying
/// how to make one.
pub fn for_store(location: &Location, file: Option<&Path>) -> Result<Arc<Kek>> {
    if let Some(path) = file {
        return read(path).map(Arc::new);
    }
    let dir = match location {
        Location::DataDir(dir) => dir,
        _ => bail!(
            "--database-url needs --key-encryption-key-file (or BONAFIDE_KEY_ENCRYPTION_KEY_FILE): the registry's private keys are sealed under a key kept outside the database. Make one with `bonafide keys new-kek --out FILE` and give every replica the same file (keep a copy: without it the registry cannot sign)"
        ),
    };
    let path = dir.join(DEFAULT_FILE);
    if path.exists() {
        return read(&path).map(Arc::new);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    create(&path)?;
    eprintln!(
        "created the key-encryption key {} (the registry's private keys are sealed under it; back it up apart from the database)",
        path.display()
    );
    read(&path).map(Arc::new)
}

/// Writes a new KEK to `path` (mode 0600), never over an existing file.
pub fn create(path: &Path) -> Result<()> {
    let bytes = random_kek_bytes().map_err(|e| anyhow!("{e}"))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    f.write_all(format!("{}\n", bonafide_core::b64::encode(&bytes)).as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

/// A new KEK as the text `new-kek` prints.
pub fn new_text() -> Result<String> {
    let bytes = random_kek_bytes().map_err(|e| anyhow!("{e}"))?;
    Ok(bonafide_core::b64::encode(&bytes))
}

/// Reads and checks a KEK file.
pub fn read(path: &Path) -> Result<Kek> {
    let shown = PathBuf::from(path);
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "cannot read the key-encryption key `{}` (make one with `bonafide keys new-kek --out FILE`)",
            shown.display()
        )
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o007 != 0 {
            bail!(
                "the key-encryption key `{}` is accessible to other users (mode {:o}): `chmod 600 {}`",
                shown.display(),
                mode & 0o777,
                shown.display()
            );
        }
    }
    if !meta.is_file() {
        bail!("the key-encryption key `{}` is not a file", shown.display());
    }
    // A KEK file is tiny: do not read a large file named by mistake.
    if meta.len() > 1024 {
        bail!(
            "`{}` is not a key-encryption key: {KEK_LEN} bytes, raw or as base64, expected",
            shown.display()
        );
    }
    let raw = std::fs::read(path)
        .with_context(|| format!("cannot read the key-encryption key `{}`", shown.display()))?;
    let bytes = decode(&raw).ok_or_else(|| {
        anyhow!(
            "`{}` is not a key-encryption key: {KEK_LEN} bytes, raw or as base64 (`bonafide keys new-kek`), expected",
            shown.display()
        )
    })?;
    Kek::from_bytes(&bytes).map_err(|e| anyhow!("`{}`: {e}", shown.display()))
}

/// `keys rotate-kek`: re-seals every stored private key from the current KEK to a new
/// one in one transaction. With the data dir's default file and no new file, a new
/// KEK is made: written beside it first (`key-encryption.key.new`, synced), the keys
/// re-sealed, then renamed over the default file, so a crash at any point leaves a
/// file that opens the keys. With a new file given while the default file was in
/// use, the default file is replaced by a copy of it the same way, so `serve` with no
/// flag keeps working.
pub async fn rotate(
    store: &dyn bonafide_store::Store,
    location: &Location,
    current_file: Option<&Path>,
    new_file: Option<&Path>,
    out: &crate::output::Out,
) -> Result<std::process::ExitCode> {
    let default = match (location, current_file) {
        (Location::DataDir(dir), None) => Some(dir.join(DEFAULT_FILE)),
        _ => None,
    };
    let current_path = match (current_file, &default) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(p)) if p.exists() => p.clone(),
        _ => bail!(
            "the current key-encryption key is needed: pass --key-encryption-key-file (the file the server starts with)"
        ),
    };
    let current = read(&current_path)?;
    // Checks the current KEK opens every key first (and seals any plaintext ones).
    bonafide_server::sealing::seal_stored_keys(store, &current).await?;

    // The new KEK's text, and where it is staged until the keys are re-sealed.
    let (text, staged) = match (new_file, &default) {
        (Some(p), _) => {
            let text =
                std::fs::read(p).with_context(|| format!("cannot read `{}`", p.display()))?;
            read(p)?;
            (text, default.as_ref().map(|d| staged_path(d)))
        }
        (None, Some(d)) => {
            let text = format!("{}\n", new_text()?).into_bytes();
            (text, Some(staged_path(d)))
        }
        (None, None) => bail!(
            "--new-key-encryption-key-file is required when the current key-encryption key is given by flag (make one with `bonafide keys new-kek --out FILE`)"
        ),
    };
    let new = Kek::from_bytes(
        &decode(&text).ok_or_else(|| anyhow!("the new key-encryption key does not decode"))?,
    )
    .map_err(|e| anyhow!("{e}"))?;
    if let Some(stage) = &staged {
        write_new(stage, &text)?;
    }
    let resealed = store
        .reseal_private_keys(&|slot, stored| {
            let identity = slot.identity();
            let opened = current.open(&identity, stored).map_err(|e| {
                bonafide_store::StoreError::Backend(format!("opening the {identity}: {e}"))
            })?;
            new.seal(&identity, opened.expose_secret())
                .map(Some)
                .map_err(|e| {
                    bonafide_store::StoreError::Backend(format!("sealing the {identity}: {e}"))
                })
        })
        .await;
    let resealed = match resealed {
        Ok(n) => n,
        Err(e) => {
            if let Some(stage) = &staged {
                let _ = std::fs::remove_file(stage);
            }
            return Err(anyhow!(e).context("re-sealing the registry's keys (nothing changed)"));
        }
    };
    let now_in = match (&staged, &default) {
        (Some(stage), Some(d)) => {
            std::fs::rename(stage, d)
                .with_context(|| format!("the keys are re-sealed under `{}`, but it could not be renamed to `{}`: rename it yourself", stage.display(), d.display()))?;
            sync_dir(d);
            d.clone()
        }
        _ => new_file.map(Path::to_path_buf).unwrap_or_default(),
    };
    if out.json {
        out.json_out(&serde_json::json!({
            "keys_resealed": resealed,
            "key_encryption_key_file": now_in.display().to_string(),
        }));
    } else {
        println!(
            "re-sealed {resealed} private keys under {}; start the server (every replica) with it now: the old key-encryption key no longer opens them",
            now_in.display()
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Where a new default KEK waits while the keys are re-sealed.
fn staged_path(default: &Path) -> PathBuf {
    let mut name = default.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

/// Writes `text` to a new file (0600), synced. An existing one is a rotation that was
/// interrupted: its key may be the one the stored keys are sealed under.
fn write_new(path: &Path, text: &[u8]) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).with_context(|| {
        format!(
            "cannot create `{}` (if it exists, an earlier rotation was interrupted: try starting with --key-encryption-key-file {}; remove it only once the server starts without it)",
            path.display(),
            path.display()
        )
    })?;
    f.write_all(text)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

/// Makes a rename durable (best effort: not every platform can open a directory).
fn sync_dir(file: &Path) {
    if let Some(dir) = file.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// The KEK's bytes from a file's contents, if they are 32 raw bytes or base64 of 32.
fn decode(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() == KEK_LEN {
        return Some(raw.to_vec());
    }
    let text = std::str::from_utf8(raw).ok()?.trim();
    // Either alphabet, padding optional, to one strict decoder.
    let url: String = text
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    let bytes = bonafide_core::b64::decode(&url).ok()?;
    (bytes.len() == KEK_LEN).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_raw_bytes_and_base64_of_either_alphabet() {
        let bytes: Vec<u8> = (0u8..32)
            .map(|i| i.wrapping_mul(97).wrapping_add(250))
            .collect();
        assert_eq!(decode(&bytes).unwrap(), bytes);
        let url = bonafide_core::b64::encode(&bytes);
        assert_eq!(decode(format!("{url}\n").as_bytes()).unwrap(), bytes);
        let standard = format!("{}=\n", url.replace('-', "+").replace('_', "/"));
        assert_eq!(decode(standard.as_bytes()).unwrap(), bytes);
        assert!(decode(b"too short").is_none());
        assert!(decode(bonafide_core::b64::encode(&[0; 31]).as_bytes()).is_none());
        assert!(decode(&[0; 33]).is_none());
    }

    #[test]
    fn refuses_a_file_others_can_read_and_one_of_the_wrong_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        create(&path).unwrap();
        assert!(read(&path).is_ok());
        assert!(create(&path).is_err(), "never over an existing KEK");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = read(&path).unwrap_err().to_string();
            assert!(err.contains("accessible to other users"), "{err}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(&path, "c2hvcnQ\n").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("is not a key-encryption key"), "{err}");
    }
}
