//! The audit stream: one JSON line per decision (time, caller kind, slug,
//! role, method, path without query, step, rule, status, latency), written
//! to a file of its own by a background thread so that a slow disk never
//! holds up a request. `advise` reads it back.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How many lines may wait for the writer before new ones are dropped.
const QUEUE: usize = 16_384;

/// One decision as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When it was decided, RFC 3339 in UTC.
    pub time: String,
    /// The caller kind: addon, homeassistant, cli, observer, anonymous, ...
    pub caller: String,
    /// The add-on's slug, `-` for other callers.
    pub slug: String,
    /// The add-on's role, `-` for other callers.
    pub role: String,
    /// The method.
    pub method: String,
    /// The canonical path (the raw one when the target was refused), never
    /// the query.
    pub path: String,
    /// `allowed` or `denied`.
    pub decision: String,
    /// The step that settled it.
    pub step: String,
    /// The rule, `-` for none.
    pub rule: String,
    /// The status the client got.
    pub status: u16,
    /// Microseconds from the request head to the response head.
    pub latency_us: u64,
}

/// The writer's end of the audit file.
pub struct Audit {
    lines: SyncSender<Message>,
    dropped: AtomicU64,
    /// Set when the file is to be opened by its name again (log rotation
    /// moved it away); the writer looks at it after every line.
    reopen: Arc<AtomicBool>,
    /// Lines queued and not yet handed to the file: what a stop that
    /// cannot wait for the writer loses.
    unwritten: Arc<AtomicU64>,
}

/// What the writer thread is given.
enum Message {
    Line(String),
    /// Nothing to write: look at the reopen flag now.
    Wake,
    /// Flush what came before, then say so: the gateway is stopping.
    Finish(std::sync::mpsc::Sender<()>),
}

/// Opens the audit file for appending, creating it readable by the owner
/// only. A device (`/dev/null`, a terminal) or a pipe with a reader
/// (`/dev/stdout` piped to a log collector) is written to as it is; a FIFO
/// nobody reads is refused, since opening it would wait for a reader (at
/// start, after the ports are bound; or on SIGHUP).
fn open_file(path: &Path, reopen: &Arc<AtomicBool>) -> std::io::Result<Patient> {
    let patient = |file| Patient {
        file,
        reopen: reopen.clone(),
    };
    if let Some(stream) = standard_stream(path) {
        return stream.map(patient);
    }
    let mut options = crate::files::private();
    // Opened without waiting: a FIFO nobody reads fails at once (ENXIO).
    // The handle opened is the one kept: opening it again after a probe
    // would close the probe first, and a reader that ends at that EOF
    // (`cat fifo | collector`) would leave the second open waiting.
    crate::files::without_waiting(options.create(true).append(true));
    match options.open(path) {
        Ok(file) => Ok(patient(file)),
        #[cfg(unix)]
        Err(error) if error.raw_os_error() == Some(libc::ENXIO) && is_fifo(path) => Err(
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "a FIFO that nobody reads"),
        ),
        Err(error) => Err(error),
    }
}

#[cfg(unix)]
fn is_fifo(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()))
}

/// `/dev/stdout` and `/dev/stderr` are the process's own streams, taken as
/// they are (a copy of the descriptor), not opened by name: under systemd
/// they are a socket to the journal, which cannot be opened by name.
fn standard_stream(path: &Path) -> Option<std::io::Result<std::fs::File>> {
    use std::os::fd::AsFd;
    let stream = match path.to_str()? {
        "/dev/stdout" => std::io::stdout().as_fd().try_clone_to_owned(),
        "/dev/stderr" => std::io::stderr().as_fd().try_clone_to_owned(),
        _ => return None,
    };
    Some(stream.map(std::fs::File::from))
}

/// The audit file, opened without waiting: a write that would wait (a pipe
/// whose reader is behind) is tried again after a pause, on the writer
/// thread, as a waiting write would; but once the file is to be opened
/// again (SIGHUP), a pipe that takes nothing for [`REOPEN_PATIENCE`] is
/// given up (its reader stalled), so that the reopening is not held up
/// for good. (A regular file never waits.)
struct Patient {
    file: std::fs::File,
    reopen: Arc<AtomicBool>,
}

/// How long a write waits on a pipe that takes nothing once the file is
/// to be opened again. A full pipe frees room a page (4 KiB) at a time, so
/// a reader taking less than a page in this time gives the writer nothing
/// in it, and is taken for stalled.
const REOPEN_PATIENCE: Duration = Duration::from_secs(5);

impl Write for Patient {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut asked_since = None;
        loop {
            match self.file.write(bytes) {
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    if self.reopen.load(Ordering::Acquire) {
                        let since = *asked_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= REOPEN_PATIENCE {
                            return Err(error);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                written => return written,
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Audit {
    /// Opens `path` for appending (creating it, readable by the owner only)
    /// and starts the writer thread.
    pub fn open(path: &Path) -> std::io::Result<Audit> {
        let reopen = Arc::new(AtomicBool::new(false));
        let file = open_file(path, &reopen)?;
        let (lines, queue) = sync_channel(QUEUE);
        let unwritten = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            path: path.to_owned(),
            reopen: reopen.clone(),
            unwritten: unwritten.clone(),
        };
        std::thread::Builder::new()
            .name("gateway-audit".into())
            .spawn(move || writer.run(file, &queue))?;
        Ok(Audit {
            lines,
            dropped: AtomicU64::new(0),
            reopen,
            unwritten,
        })
    }

    /// Waits, at most `within`, for every line queued so far to reach the
    /// file: what a stopping gateway does last. `Err` holds how many were
    /// still unwritten when the time was up (a disk or a pipe's reader that
    /// stalled); they are lost with the process.
    pub fn finish(&self, within: Duration) -> Result<(), u64> {
        let deadline = Instant::now() + within;
        let (done, finished) = std::sync::mpsc::channel();
        let mut message = Message::Finish(done);
        // A full queue has the writer busy: room comes as it writes.
        loop {
            match self.lines.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return Err(self.unwritten.load(Ordering::Acquire)),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        finished
            .recv_timeout(left)
            .map_err(|_| self.unwritten.load(Ordering::Acquire))
    }

    /// Has the writer open the file by its name again, after the line it
    /// writes now: for log rotation, which moves the file away and then
    /// sends SIGHUP. Never waits (a writer stuck on its disk does not hold
    /// up the caller).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
        // Wakes an idle writer; a full queue has it busy already.
        let _ = self.lines.try_send(Message::Wake);
    }

    /// Queues one entry; if the writer is far behind the entry is dropped
    /// and counted, never waited for.
    pub fn record(&self, entry: &Entry) {
        let Ok(line) = serde_json::to_string(entry) else {
            return;
        };
        // Counted before it is sent, so that the writer never takes it
        // off a count it is not yet in.
        self.unwritten.fetch_add(1, Ordering::AcqRel);
        match self.lines.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.unwritten.fetch_sub(1, Ordering::AcqRel);
                crate::metrics::audit_dropped();
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(dropped, "the audit log is behind; entries were dropped");
                }
            }
        }
    }
}

/// The writer thread's side.
struct Writer {
    path: std::path::PathBuf,
    reopen: Arc<AtomicBool>,
    unwritten: Arc<AtomicU64>,
}

/// The most lines written with one flush: what is counted lost when
/// writing fails is known line by line, and a stopping gateway's count of
/// lines not written stays close.
const BATCH: u64 = 256;

impl Writer {
    fn run(&self, mut file: Patient, queue: &Receiver<Message>) {
        let mut buffer = Vec::new();
        let mut failing = false;
        // Whether the file ends in a line cut off by a failed write (this
        // process's, or, for a regular file, one before it).
        let mut cut = ends_in_a_piece(&file, &self.path);
        let mut finished = Vec::new();
        while let Ok(first) = queue.recv() {
            let lines = self.fill(&mut buffer, first, queue, &mut finished);
            let lost = write_out(&mut file, &mut buffer, &mut cut);
            self.unwritten.fetch_sub(lines, Ordering::AcqRel);
            if lost > 0 {
                crate::metrics::audit_lost(lost);
                if !failing {
                    tracing::error!(
                        file = %self.path.display(),
                        "cannot write the audit log; lines are lost (counted in supervisor_gateway_audit_dropped_total) until it can"
                    );
                }
                failing = true;
            } else if failing && lines > 0 {
                tracing::info!(file = %self.path.display(), "the audit log is written again");
                failing = false;
            }
            if self.reopen.swap(false, Ordering::AcqRel) {
                self.open_again(&mut file, &mut cut);
            }
            for asked in finished.drain(..) {
                let _ = asked.send(());
            }
        }
    }

    /// Opens the file by its name again (log rotation), keeping the one it
    /// was if that fails; `cut` then says whether the new one ends in a
    /// piece of a line (the same pipe opened again still holds its own).
    fn open_again(&self, file: &mut Patient, cut: &mut bool) {
        match open_file(&self.path, &self.reopen) {
            Ok(opened) => {
                *cut = (*cut && same_file(file, &opened)) || ends_in_a_piece(&opened, &self.path);
                *file = opened;
            }
            Err(error) => tracing::error!(
                file = %self.path.display(),
                %error,
                "cannot open the audit log again; writing on to the file it was"
            ),
        }
    }

    /// Puts `first` and whatever else is waiting in `buffer`, up to
    /// [`BATCH`] lines or until the file is to be opened again: how many
    /// lines.
    fn fill(
        &self,
        buffer: &mut Vec<u8>,
        first: Message,
        queue: &Receiver<Message>,
        finished: &mut Vec<std::sync::mpsc::Sender<()>>,
    ) -> u64 {
        let mut lines = 0;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Line(line) => {
                    lines += 1;
                    buffer.extend_from_slice(line.as_bytes());
                    buffer.push(b'\n');
                }
                Message::Wake => {}
                Message::Finish(asked) => finished.push(asked),
            }
            if lines < BATCH && !self.reopen.load(Ordering::Acquire) {
                next = queue.try_recv().ok();
            }
        }
        lines
    }
}

/// Writes `buffer` to the file and empties it: how many of its lines did
/// not get there whole (a line cut off by a failure is counted). A file
/// left ending in a cut line (`cut`) gets a line end first, so that the
/// next line is not glued to the piece (which stays, a line that is no
/// entry, as `advise` reports).
fn write_out(file: &mut Patient, buffer: &mut Vec<u8>, cut: &mut bool) -> u64 {
    if *cut && !buffer.is_empty() {
        *cut = !matches!(file.write(b"\n"), Ok(1));
    }
    let mut written = 0;
    // Nothing goes after a cut line that could not be ended.
    while written < buffer.len() && !*cut {
        match file.write(&buffer[written..]) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if written > 0 && buffer[written - 1] != b'\n' {
        *cut = true;
    }
    let lost = buffer[written..]
        .iter()
        .filter(|&&byte| byte == b'\n')
        .count();
    buffer.clear();
    lost as u64
}

/// Whether a regular file ends in a piece of a line (a write cut off, by
/// this process before a reopen or by one before it: a full disk, then a
/// restart). A pipe or a stream cannot be read back: taken as whole.
fn ends_in_a_piece(file: &Patient, path: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(meta) = file.file.metadata() else {
        return false;
    };
    if !meta.is_file() || meta.len() == 0 {
        return false;
    }
    // The file is open for appending only: its last byte is read by name.
    let mut last = [0u8; 1];
    let read = std::fs::File::open(path).and_then(|read| read.read_at(&mut last, meta.len() - 1));
    matches!(read, Ok(1)) && last[0] != b'\n'
}

/// Whether two open files are the same file (a FIFO opened again by its
/// name is).
fn same_file(a: &Patient, b: &Patient) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (a.file.metadata(), b.file.metadata()) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Reads an audit log; lines that are not entries are reported by number.
pub fn read(path: &Path) -> Result<(Vec<Entry>, Vec<usize>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let mut entries = Vec::new();
    let mut bad = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(entry) => entries.push(entry),
            Err(_) => bad.push(index + 1),
        }
    }
    Ok((entries, bad))
}

/// Now as RFC 3339 in UTC, to the millisecond.
pub fn now_rfc3339() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_millis())
}

/// Seconds since the epoch as RFC 3339 (civil date from days, after the
/// well-known days-to-civil algorithm).
fn rfc3339(seconds: u64, millis: u32) -> String {
    let days = (seconds / 86_400) as i64;
    let of_day = seconds % 86_400;
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_796_401_085, 123), "2026-12-04T16:18:05.123Z");
        assert_eq!(rfc3339(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
    }

    fn entry(path: &str) -> Entry {
        Entry {
            time: now_rfc3339(),
            caller: "addon".into(),
            slug: "example".into(),
            role: "backup".into(),
            method: "GET".into(),
            path: path.into(),
            decision: "allowed".into(),
            step: "add-ons".into(),
            rule: "roles.backup[0]".into(),
            status: 200,
            latency_us: 42,
        }
    }

    /// The entries of `path` once it holds `count` (or after 5 s).
    fn entries_once(path: &Path, count: usize) -> Vec<Entry> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let entries = read(path).map(|(entries, _)| entries).unwrap_or_default();
            if entries.len() >= count || std::time::Instant::now() > deadline {
                return entries;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn a_rotated_log_is_written_on_by_its_name_once_reopened() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.jsonl");
        let rotated = dir.path().join("audit.jsonl.1");
        let audit = Audit::open(&path).expect("open");
        audit.record(&entry("/before"));
        assert_eq!(entries_once(&path, 1).len(), 1);
        std::fs::rename(&path, &rotated).expect("rotate");
        audit.record(&entry("/moved"));
        audit.reopen();
        audit.record(&entry("/after"));
        let paths = |entries: Vec<Entry>| -> Vec<String> {
            entries.into_iter().map(|entry| entry.path).collect()
        };
        assert_eq!(paths(entries_once(&path, 1)), ["/after"]);
        assert_eq!(paths(entries_once(&rotated, 2)), ["/before", "/moved"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_nobody_reads_is_refused_instead_of_waiting_for_a_reader() {
        let dir = tempfile::tempdir().expect("dir");
        let path = crate::files::fifo(dir.path(), "audit.fifo");
        let error = Audit::open(&path).err().expect("refused");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
        // A device is written to as it is.
        let null = Audit::open(Path::new("/dev/null")).expect("/dev/null opens");
        null.record(&entry("/x"));
    }

    /// The audit log on a FIFO whose reader (a thread of the test) is
    /// opening it: its open waits for a writer, ours finds it there.
    #[cfg(unix)]
    fn open_once_read(path: &Path) -> Audit {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match Audit::open(path) {
                Ok(audit) => return audit,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(error) => panic!("the reader never came: {error}"),
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_with_a_reader_gets_every_line_and_its_end_only_at_the_end() {
        use std::io::Read;
        let dir = tempfile::tempdir().expect("dir");
        let path = crate::files::fifo(dir.path(), "audit.fifo");
        // A collector that reads until its end of file, as `cat fifo` does.
        let reader_path = path.clone();
        let (read_all, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let read = std::fs::File::open(&reader_path)
                .and_then(|mut fifo| fifo.read_to_string(&mut text));
            read_all.send(read.map(|_| text))
        });
        // Its open waits for a writer; the gateway's open finds it there.
        let audit = open_once_read(&path);
        audit.record(&entry("/one"));
        audit.record(&entry("/two"));
        drop(audit);
        let text = result
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the reader saw its end")
            .expect("read");
        let paths: Vec<String> = text
            .lines()
            .map(|line| serde_json::from_str::<Entry>(line).expect("an entry").path)
            .collect();
        assert_eq!(paths, ["/one", "/two"]);
    }

    #[test]
    fn finishing_waits_until_every_queued_line_is_in_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(&path).expect("open");
        for _ in 0..5000 {
            audit.record(&entry("/x"));
        }
        assert_eq!(audit.finish(Duration::from_secs(20)), Ok(()));
        // Read at once, not waited for: finishing did the waiting.
        assert_eq!(read(&path).expect("read").0.len(), 5000);
    }

    /// A FIFO with a reader that reads nothing, and the audit log open on it.
    #[cfg(unix)]
    fn stalled_fifo(dir: &Path) -> (std::path::PathBuf, std::fs::File, Audit) {
        use std::os::unix::fs::OpenOptionsExt;
        let path = crate::files::fifo(dir, "audit.fifo");
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .expect("reader");
        let audit = Audit::open(&path).expect("open");
        // More than the pipe holds (64 KiB here): the writer waits on it.
        for _ in 0..2000 {
            audit.record(&entry("/a-path-long-enough-to-fill-the-pipe-soon"));
        }
        (path, reader, audit)
    }

    #[cfg(unix)]
    #[test]
    fn finishing_gives_up_on_a_stalled_reader_and_says_how_many_lines() {
        let dir = tempfile::tempdir().expect("dir");
        let (_path, _reader, audit) = stalled_fifo(dir.path());
        let started = Instant::now();
        let unwritten = audit
            .finish(Duration::from_millis(300))
            .expect_err("stalled");
        assert!(unwritten > 0, "{unwritten}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[cfg(unix)]
    #[test]
    fn a_stalled_reader_does_not_hold_up_reopening() {
        let dir = tempfile::tempdir().expect("dir");
        let (path, _reader, audit) = stalled_fifo(dir.path());
        // Rotation: the FIFO moves away, a file takes its name.
        std::fs::rename(&path, dir.path().join("audit.fifo.1")).expect("move");
        std::fs::write(&path, "").expect("a file in its place");
        audit.reopen();
        audit.record(&entry("/after"));
        // Lines still queued when the writer gave up on the FIFO go to the
        // new file, and the one recorded after them too.
        let deadline = Instant::now() + Duration::from_secs(10);
        let last = loop {
            let entries = read(&path).map(|(entries, _)| entries).unwrap_or_default();
            let last = entries.last().map(|entry| entry.path.clone());
            if last.as_deref() == Some("/after") || Instant::now() > deadline {
                break last;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(last.as_deref(), Some("/after"));
    }

    #[cfg(unix)]
    #[test]
    fn a_reader_merely_behind_loses_no_line_to_reopening() {
        use std::io::Read;
        let dir = tempfile::tempdir().expect("dir");
        let path = crate::files::fifo(dir.path(), "audit.fifo");
        let reader_path = path.clone();
        let (read_all, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut fifo = std::fs::File::open(&reader_path)?;
            let (mut text, mut chunk) = (Vec::new(), [0u8; 2048]);
            // Slow, but never stalled: 2 KiB every 10 ms.
            loop {
                let n = fifo.read(&mut chunk)?;
                if n == 0 {
                    return read_all.send(Ok(text)).map_err(std::io::Error::other);
                }
                text.extend_from_slice(&chunk[..n]);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let audit = open_once_read(&path);
        // SIGHUP also reloads the configuration: the same FIFO is opened
        // again, and no line may be cut at the switch.
        for _ in 0..6 {
            for _ in 0..250 {
                audit.record(&entry("/a-path-long-enough-to-fill-the-pipe-soon"));
            }
            audit.reopen();
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(audit);
        let text: Result<Vec<u8>, std::io::Error> = result
            .recv_timeout(Duration::from_secs(30))
            .expect("the reader saw its end");
        let text = String::from_utf8(text.expect("read")).expect("utf-8");
        let bad = text
            .lines()
            .filter(|line| serde_json::from_str::<Entry>(line).is_err())
            .count();
        assert_eq!((text.lines().count(), bad), (1500, 0));
    }

    #[cfg(unix)]
    #[test]
    fn lines_a_stalled_pipe_did_not_take_whole_are_counted_one_by_one() {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let path = crate::files::fifo(dir.path(), "audit.fifo");
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .expect("reader");
        // A reopen is asked: the writer gives the pipe up once it is full.
        let asked = Arc::new(AtomicBool::new(true));
        let mut file = open_file(&path, &asked).expect("open");
        let mut buffer = Vec::new();
        for n in 0..1000 {
            buffer.extend_from_slice(format!("line {n:04} {}\n", "x".repeat(90)).as_bytes());
        }
        let mut cut = false;
        let lost = write_out(&mut file, &mut buffer, &mut cut);
        let mut taken = Vec::new();
        let _ = reader.read_to_end(&mut taken); // ends at WouldBlock
        let whole = taken.iter().filter(|&&byte| byte == b'\n').count() as u64;
        assert!(lost > 0 && whole > 0, "{lost} {whole}");
        assert_eq!(lost + whole, 1000);
        assert!(buffer.is_empty());
        // The pipe ended in a piece of a line: the next line is not glued
        // to it.
        assert_eq!(cut, taken.last() != Some(&b'\n'));
        buffer.extend_from_slice(b"next line\n");
        assert_eq!(write_out(&mut file, &mut buffer, &mut cut), 0);
        assert!(!cut);
        let mut more = Vec::new();
        let _ = reader.read_to_end(&mut more);
        taken.extend_from_slice(&more);
        let text = String::from_utf8_lossy(&taken);
        assert_eq!(text.lines().last(), Some("next line"));
        assert!(text
            .lines()
            .all(|line| line.starts_with("line ") || line == "next line"));
    }

    #[test]
    fn a_piece_left_by_an_earlier_process_is_ended_before_the_first_line() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.jsonl");
        // A full disk cut the last line off, then the gateway restarted.
        std::fs::write(&path, "{\"time\":\"20").expect("piece");
        let audit = Audit::open(&path).expect("open");
        audit.record(&entry("/after"));
        assert_eq!(audit.finish(Duration::from_secs(10)), Ok(()));
        let (entries, bad) = read(&path).expect("read");
        let paths: Vec<String> = entries.into_iter().map(|entry| entry.path).collect();
        assert_eq!((paths, bad), (vec!["/after".to_owned()], vec![1]));
        // A file that ends whole gets no empty line.
        let whole = dir.path().join("whole.jsonl");
        std::fs::write(&whole, "x\n").expect("whole");
        let audit = Audit::open(&whole).expect("open");
        audit.record(&entry("/next"));
        assert_eq!(audit.finish(Duration::from_secs(10)), Ok(()));
        let text = std::fs::read_to_string(&whole).expect("read");
        assert!(text.starts_with("x\n{"), "{text}");
    }

    #[test]
    fn entries_reach_the_file_and_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(&path).expect("open");
        let entry = entry("/backups");
        for _ in 0..3 {
            audit.record(&entry);
        }
        drop(audit);
        let entries = entries_once(&path, 3);
        assert_eq!(entries, vec![entry.clone(), entry.clone(), entry]);
        assert!(read(&path).expect("read").1.is_empty());
        std::fs::write(&path, "{\"not\": \"an entry\"}\n").expect("write");
        assert_eq!(read(&path).expect("read").1, vec![1]);
    }
}
