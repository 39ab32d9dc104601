//! The files the gateway reads and keeps. It reads only regular files, and
//! each up to a bound (a FIFO named by mistake would block the reload for
//! good, `/dev/zero` would fill the memory). It writes its own files in one
//! step, so that a reader never sees half of one, and private ones readable
//! by their owner only.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::Path;

/// The most bytes of a configuration, table, secrets, revocation or state
/// file.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// The most bytes of a key file (a PEM key or an HMAC secret).
pub const MAX_KEY_FILE_BYTES: u64 = 64 << 10;

/// The bytes of the regular file at `path` (a symbolic link is followed),
/// if it holds at most `limit` of them.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let not_regular = || io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
    // Asked by name first, so that nothing else is ever opened (opening a
    // device may have effects of its own).
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    // The name may change hands before the open: opened without waiting (a
    // FIFO opened for reading waits for a writer) and without taking a
    // terminal as the controlling one, then asked again of what was opened.
    let file = without_waiting(OpenOptions::new().read(true)).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    // A regular file's reads never wait, whatever the flag says.
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// The text of the regular file at `path`, as [`read_bounded`] reads it;
/// text that is not UTF-8 is an error.
pub fn read_text(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_bounded(path, limit)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// Replaces `path` with `text` by writing a temporary file beside it and
/// renaming it over the old one.
pub fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    // Left by an earlier run with this process id, or planted: a link there
    // would be followed by an ordinary create. Removed (a link, not what it
    // points to), then created anew or not at all.
    let _ = std::fs::remove_file(&temporary);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        // Nothing half-done is left beside the file.
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// `options`, opening without waiting (a FIFO's open waits for its other
/// end) and without taking a terminal as the process's controlling one.
pub fn without_waiting(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(options, libc::O_NONBLOCK | libc::O_NOCTTY);
    options
}

/// Options that create a file readable and writable by its owner only.
pub fn private() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// A new FIFO named `name` in `dir`, for tests of files that are not
/// regular.
#[cfg(all(test, unix))]
pub(crate) fn fifo(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", path.display());
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_within_its_bound_is_read_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").expect("write");
        assert_eq!(read_bounded(&path, 5).expect("read"), b"12345");
        assert_eq!(read_text(&path, 5).expect("read"), "12345");
    }

    #[test]
    fn a_file_over_its_bound_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"123456").expect("write");
        let error = read_bounded(&path, 5).expect_err("over the bound");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(error.to_string(), "larger than 5 bytes");
    }

    #[test]
    fn a_directory_and_a_device_are_refused_without_reading() {
        let dir = tempfile::tempdir().expect("dir");
        for path in [dir.path(), Path::new("/dev/zero")] {
            let error = read_bounded(path, 5).expect_err("not a regular file");
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{path:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_at_once_instead_of_waiting_for_a_writer() {
        let dir = tempfile::tempdir().expect("dir");
        let path = fifo(dir.path(), "fifo");
        // Opening it for reading would wait for a writer forever; the type
        // is asked of what was opened (a check by name before the open can
        // be raced), so the open itself must not wait.
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(read_bounded(&path, 5).map_err(|e| e.kind())));
        let outcome = result
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("read_bounded returned instead of waiting for a writer");
        assert_eq!(outcome, Err(io::ErrorKind::InvalidInput));
    }

    #[test]
    fn a_replace_that_fails_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("dir");
        // A directory cannot be replaced by a file.
        let target = dir.path().join("taken");
        std::fs::create_dir(&target).expect("dir");
        std::fs::write(target.join("inside"), b"x").expect("write");
        assert!(replace(&target, "text").is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["taken"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_link_planted_at_the_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().expect("dir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep me").expect("write");
        let target = dir.path().join("state.yaml");
        let planted = dir
            .path()
            .join(format!("state.yaml.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).expect("link");
        replace(&target, "new: text\n").expect("replaced");
        assert_eq!(std::fs::read(&victim).expect("read"), b"keep me");
        assert_eq!(
            std::fs::read_to_string(&target).expect("read"),
            "new: text\n"
        );
        assert!(!planted.exists() && std::fs::symlink_metadata(&planted).is_err());
    }

    #[test]
    fn text_that_is_not_utf8_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"\xff\xfe").expect("write");
        let error = read_text(&path, 5).expect_err("not UTF-8");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
