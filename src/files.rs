//! Writing the files the gateway keeps: replaced in one step, so that a
//! reader never sees half of one, and private ones readable by their owner
//! only.

use std::fs::OpenOptions;
use std::path::Path;

/// Replaces `path` with `text` by writing a temporary file beside it and
/// renaming it over the old one.
pub fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}

/// Options that create a file readable and writable by its owner only.
pub fn private() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}
