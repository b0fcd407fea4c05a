//! Container logs as the kubelet serves them (`ReadLogs` in k/k
//! `pkg/kubelet/kuberuntime/logs/logs.go`): containerd writes each container's
//! output as CRI log records, `<RFC3339Nano> <stdout|stderr> <P|F> <text>`, one per
//! line, a long line split into partial (`P`) records closed by a full (`F`) one.
//! This module turns such a file back into the container's output: partial
//! records joined into their line, `sinceSeconds`/`sinceTime` filtering on the
//! record time, `tailLines` counted back from the end of the file, `timestamps`
//! prefixing each line with the fixed-width RFC 3339 time, `limitBytes` cutting
//! the output, and `follow` tailing the file (polled every 250 ms, only while a
//! client follows) until the container has stopped and the file is drained. A
//! log file replaced under the reader (rotation) is reopened.

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use futures_util::Stream;
use futures_util::future::BoxFuture;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::api::time::parse_rfc3339;

/// How often a follower looks for new output.
const POLL: Duration = Duration::from_millis(250);
/// How often a follower asks the runtime whether the container still runs
/// (the kubelet's `logForceCheckPeriod`).
const RUNNING_CHECK: Duration = Duration::from_secs(1);
const READ_CHUNK: usize = 64 * 1024;

/// `PodLogOptions` as the kubelet applies them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    /// Only records at or after this time (Unix nanoseconds).
    pub since_nanos: Option<i128>,
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// Reads the kubelet's `/containerLogs` query: `follow`, `previous`,
    /// `timestamps`, `tailLines` (or the legacy `tail`), `sinceSeconds`,
    /// `sinceTime`, `limitBytes`.
    pub fn from_query(pairs: &[(String, String)]) -> Result<LogOptions, String> {
        let get = |key: &str| {
            pairs
                .iter()
                .rev()
                .find(|(k, v)| k == key && !v.is_empty())
                .map(|(_, v)| v.as_str())
        };
        let flag = |key: &str| match get(key) {
            None => Ok(false),
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
            Some(other) => Err(format!("invalid boolean value {other:?} for {key}")),
        };
        let number = |key: &str| {
            get(key)
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| format!("invalid integer value {v:?} for {key}"))
                })
                .transpose()
        };
        let positive = |key: &str, value: Option<i64>| match value {
            Some(v) if v < 1 => Err(format!("{key}: Invalid value: {v}: must be greater than 0")),
            other => Ok(other.map(|v| v as u64)),
        };
        let tail_lines = match number("tailLines")? {
            Some(v) if v < 0 => {
                return Err(format!(
                    "tailLines: Invalid value: {v}: must be greater than or equal to 0"
                ));
            }
            Some(v) => Some(v as u64),
            // The legacy `tail` parameter: a number, or `all`.
            None => match get("tail") {
                None | Some("all") => None,
                Some(v) => Some(v.parse::<u64>().map_err(|_| format!("invalid tail value {v:?}"))?),
            },
        };
        let since_seconds = positive("sinceSeconds", number("sinceSeconds")?)?;
        let since_time = get("sinceTime")
            .map(|v| parse_time_nanos(v).ok_or_else(|| format!("invalid sinceTime {v:?}")))
            .transpose()?;
        let since_nanos = match (since_seconds, since_time) {
            (Some(_), Some(_)) => return Err("at most one of `sinceTime` or `sinceSeconds` may be specified".into()),
            (Some(seconds), None) => Some(now_nanos() - i128::from(seconds) * 1_000_000_000),
            (None, time) => time,
        };
        Ok(LogOptions {
            follow: flag("follow")?,
            previous: flag("previous")?,
            timestamps: flag("timestamps")?,
            tail_lines,
            since_nanos,
            limit_bytes: positive("limitBytes", number("limitBytes")?)?,
        })
    }
}

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` to Unix nanoseconds.
pub fn parse_time_nanos(s: &str) -> Option<i128> {
    let seconds = parse_rfc3339(s)?;
    let fraction = s.get(19..).and_then(|rest| rest.strip_prefix('.')).map_or("", |frac| {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        &frac[..digits]
    });
    let mut nanos: i128 = 0;
    for (i, digit) in fraction.bytes().take(9).enumerate() {
        nanos += i128::from(digit - b'0') * 10i128.pow(8 - i as u32);
    }
    Some(i128::from(seconds) * 1_000_000_000 + nanos)
}

/// A record time in the kubelet's fixed-width output format
/// (`2006-01-02T15:04:05.000000000Z07:00`): nine fraction digits, `Z` for UTC.
pub fn fixed_width_time(s: &str) -> Option<String> {
    let (date_time, rest) = (s.get(..19)?, s.get(19..)?);
    let (fraction, zone) = match rest.strip_prefix('.') {
        Some(frac) => {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            (&frac[..digits], &frac[digits..])
        }
        None => ("", rest),
    };
    let zone = match zone {
        "Z" | "z" | "+00:00" | "-00:00" => "Z",
        other if other.len() == 6 && matches!(other.as_bytes()[0], b'+' | b'-') => other,
        _ => return None,
    };
    let mut out = String::with_capacity(35);
    out.push_str(date_time);
    out.push('.');
    out.push_str(&fraction[..fraction.len().min(9)]);
    for _ in fraction.len()..9 {
        out.push('0');
    }
    out.push_str(zone);
    Some(out)
}

/// One CRI log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: &'a str,
    pub nanos: i128,
    pub stream: &'a str,
    pub partial: bool,
    pub content: &'a [u8],
}

/// Parses one line of a CRI log file (without its newline); `None` if it is
/// not a CRI record.
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut fields = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(fields.next()?).ok()?;
    let stream = std::str::from_utf8(fields.next()?).ok()?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    // The tag is `P` or `F`, possibly followed by `:`-separated flags.
    let tag = fields.next()?;
    let partial = match tag.split(|b| *b == b':').next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let content = fields.next().unwrap_or_default();
    Some(Record {
        time,
        nanos: parse_time_nanos(time)?,
        stream,
        partial,
        content,
    })
}

/// Decides whether the container still runs (asked while following).
pub type StillRunning = Box<dyn FnMut() -> BoxFuture<'static, bool> + Send>;

/// Turns CRI records into the container's output under `options`.
#[derive(Debug)]
struct Formatter {
    timestamps: bool,
    since_nanos: Option<i128>,
    /// Bytes still allowed out (`limitBytes`).
    remaining: Option<u64>,
    /// Bytes of a line whose newline has not been read yet.
    pending: Vec<u8>,
    /// Partial records of the current line so far, with the first one's time.
    partial: Option<(String, Vec<u8>)>,
}

impl Formatter {
    fn new(options: &LogOptions) -> Formatter {
        Formatter {
            timestamps: options.timestamps,
            since_nanos: options.since_nanos,
            remaining: options.limit_bytes,
            pending: Vec::new(),
            partial: None,
        }
    }

    fn exhausted(&self) -> bool {
        self.remaining == Some(0)
    }

    /// Feeds file bytes; returns the output of every line they complete.
    fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(bytes);
        let Some(last_newline) = self.pending.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let rest = self.pending.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.pending, rest);
        let mut out = Vec::new();
        for line in complete[..complete.len() - 1].split(|b| *b == b'\n') {
            self.line(line, &mut out);
        }
        self.limit(out)
    }

    /// At the end of the log: a last line without newline, and partial records
    /// never closed (written as they are, without a newline, like the kubelet).
    fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        if !pending.is_empty() {
            self.line(&pending, &mut out);
        }
        if let Some((time, content)) = self.partial.take() {
            self.write(&time, &content, false, &mut out);
        }
        self.limit(out)
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let Some(record) = parse_record(line) else {
            if !line.is_empty() {
                tracing::debug!(line = %String::from_utf8_lossy(line), "skipping a malformed log line");
            }
            return;
        };
        if self.since_nanos.is_some_and(|since| record.nanos < since) {
            return;
        }
        if record.partial {
            match &mut self.partial {
                Some((_, content)) => content.extend_from_slice(record.content),
                None => self.partial = Some((record.time.to_string(), record.content.to_vec())),
            }
            return;
        }
        match self.partial.take() {
            Some((time, mut content)) => {
                content.extend_from_slice(record.content);
                self.write(&time, &content, true, out);
            }
            None => self.write(record.time, record.content, true, out),
        }
    }

    fn write(&self, time: &str, content: &[u8], newline: bool, out: &mut Vec<u8>) {
        if self.timestamps {
            out.extend_from_slice(fixed_width_time(time).as_deref().unwrap_or(time).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(content);
        if newline {
            out.push(b'\n');
        }
    }

    fn limit(&mut self, mut out: Vec<u8>) -> Vec<u8> {
        if let Some(remaining) = &mut self.remaining {
            out.truncate(usize::try_from(*remaining).unwrap_or(usize::MAX));
            *remaining -= out.len() as u64;
        }
        out
    }
}

/// The byte offset where the last `lines` lines of the file start.
async fn tail_offset(file: &mut File, len: u64, lines: u64) -> std::io::Result<u64> {
    if lines == 0 {
        return Ok(len);
    }
    let mut buf = vec![0u8; 8192];
    let mut end = len;
    let mut seen = 0;
    while end > 0 {
        let size = end.min(buf.len() as u64);
        let start = end - size;
        file.seek(SeekFrom::Start(start)).await?;
        let chunk = &mut buf[..size as usize];
        file.read_exact(chunk).await?;
        for (i, byte) in chunk.iter().enumerate().rev() {
            let at = start + i as u64;
            // A newline ends a line; the file's final newline starts none.
            if *byte == b'\n' && at + 1 != len {
                seen += 1;
                if seen == lines {
                    return Ok(at + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

/// Reads one container log file into output chunks.
struct Reader {
    path: PathBuf,
    file: File,
    inode: u64,
    follow: bool,
    formatter: Formatter,
    still_running: StillRunning,
    last_check: Option<Instant>,
    /// The container stopped: read to the end once more, then stop.
    finishing: bool,
    done: bool,
}

impl Reader {
    async fn next_chunk(&mut self) -> Option<std::io::Result<Bytes>> {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            if self.done {
                return None;
            }
            let read = match self.file.read(&mut buf).await {
                Ok(read) => read,
                Err(err) => {
                    self.done = true;
                    return Some(Err(err));
                }
            };
            if read > 0 {
                let out = self.formatter.feed(&buf[..read]);
                self.done = self.formatter.exhausted();
                if !out.is_empty() {
                    return Some(Ok(Bytes::from(out)));
                }
                continue;
            }
            if !self.follow || self.finishing {
                self.done = true;
                let out = self.formatter.finish();
                return (!out.is_empty()).then(|| Ok(Bytes::from(out)));
            }
            if let Ok(meta) = tokio::fs::metadata(&self.path).await
                && meta.ino() != self.inode
                && let Ok(file) = File::open(&self.path).await
            {
                // Rotated: the old file is drained, continue with the new one.
                tracing::debug!(path = %self.path.display(), "log file replaced, reopening");
                self.file = file;
                self.inode = meta.ino();
                continue;
            }
            if self.last_check.is_none_or(|at| at.elapsed() >= RUNNING_CHECK) {
                self.last_check = Some(Instant::now());
                if !(self.still_running)().await {
                    self.finishing = true;
                    continue;
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Opens a container's log file and streams its output under `options`.
pub async fn stream(
    path: PathBuf,
    options: &LogOptions,
    still_running: StillRunning,
) -> std::io::Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static> {
    let mut file = File::open(&path).await?;
    let meta = file.metadata().await?;
    if let Some(lines) = options.tail_lines {
        let offset = tail_offset(&mut file, meta.len(), lines).await?;
        file.seek(SeekFrom::Start(offset)).await?;
    }
    let reader = Reader {
        path,
        file,
        inode: meta.ino(),
        follow: options.follow,
        formatter: Formatter::new(options),
        still_running,
        last_check: None,
        finishing: false,
        done: false,
    };
    Ok(futures_util::stream::unfold(reader, |mut reader| async move {
        reader.next_chunk().await.map(|chunk| (chunk, reader))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    const LOG: &str = "\
2024-01-02T03:04:05.123456789Z stdout F one
2024-01-02T03:04:06Z stderr F two
2024-01-02T03:04:07.5Z stdout P thr
2024-01-02T03:04:07.6Z stdout P e
2024-01-02T03:04:07.7Z stdout F e
not a record
2024-01-02T03:04:08.000000001+00:00 stdout F four
2024-01-02T03:04:09Z stdout F 
";

    fn options(query: &str) -> LogOptions {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        LogOptions::from_query(&pairs).unwrap()
    }

    fn never_running() -> StillRunning {
        Box::new(|| Box::pin(async { false }))
    }

    async fn read(path: PathBuf, query: &str) -> String {
        let stream = stream(path, &options(query), never_running()).await.unwrap();
        let chunks: Vec<_> = stream.collect().await;
        let bytes: Vec<u8> = chunks.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
        String::from_utf8(bytes).unwrap()
    }

    fn log_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn records() {
        let r = parse_record(b"2024-01-02T03:04:05.5Z stdout P a b ").unwrap();
        assert_eq!((r.stream, r.partial, r.content), ("stdout", true, &b"a b "[..]));
        assert_eq!(r.nanos, 1_704_164_645_500_000_000);
        let r = parse_record(b"2024-01-02T03:04:05Z stderr F:x").unwrap();
        assert_eq!((r.partial, r.content), (false, &b""[..]));
        assert!(parse_record(b"2024-01-02T03:04:05Z stdin F a").is_none());
        assert!(parse_record(b"yesterday stdout F a").is_none());
        assert!(parse_record(b"").is_none());
    }

    #[test]
    fn fixed_width_times() {
        assert_eq!(
            fixed_width_time("2024-01-02T03:04:05.5Z").unwrap(),
            "2024-01-02T03:04:05.500000000Z"
        );
        assert_eq!(
            fixed_width_time("2024-01-02T03:04:05Z").unwrap(),
            "2024-01-02T03:04:05.000000000Z"
        );
        assert_eq!(
            fixed_width_time("2024-01-02T03:04:05.123+01:00").unwrap(),
            "2024-01-02T03:04:05.123000000+01:00"
        );
        assert_eq!(
            fixed_width_time("2024-01-02T03:04:05.000000001+00:00").unwrap(),
            "2024-01-02T03:04:05.000000001Z"
        );
    }

    #[test]
    fn query_validation() {
        let err = |q: &str| {
            let pairs: Vec<(String, String)> = form_urlencoded::parse(q.as_bytes()).into_owned().collect();
            LogOptions::from_query(&pairs).unwrap_err()
        };
        assert!(err("tailLines=-1").contains("must be greater than or equal to 0"));
        assert!(err("limitBytes=0").contains("must be greater than 0"));
        assert!(err("sinceSeconds=5&sinceTime=2024-01-02T03:04:05Z").contains("at most one"));
        assert!(err("follow=maybe").contains("invalid boolean"));
        let o = options("follow=true&previous=1&tailLines=3&timestamps=True&limitBytes=9");
        assert!(o.follow && o.previous && o.timestamps);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(3), Some(9)));
        assert_eq!(options("tail=2").tail_lines, Some(2));
        assert_eq!(options("tail=all").tail_lines, None);
    }

    #[tokio::test]
    async fn whole_file_joins_partial_lines() {
        let file = log_file(LOG);
        assert_eq!(read(file.path().into(), "").await, "one\ntwo\nthree\nfour\n\n");
    }

    #[tokio::test]
    async fn timestamps_tail_since_and_limit() {
        let file = log_file(LOG);
        let path: PathBuf = file.path().into();
        assert_eq!(
            read(path.clone(), "timestamps=true&tailLines=2").await,
            "2024-01-02T03:04:08.000000001Z four\n2024-01-02T03:04:09.000000000Z \n"
        );
        assert_eq!(
            read(path.clone(), "timestamps=true").await.lines().nth(2).unwrap(),
            "2024-01-02T03:04:07.500000000Z three"
        );
        assert_eq!(read(path.clone(), "tailLines=0").await, "");
        assert_eq!(read(path.clone(), "tailLines=100").await, "one\ntwo\nthree\nfour\n\n");
        assert_eq!(
            read(path.clone(), "sinceTime=2024-01-02T03:04:07.7Z").await,
            "e\nfour\n\n"
        );
        assert_eq!(read(path.clone(), "limitBytes=6").await, "one\ntw");
    }

    #[tokio::test]
    async fn unterminated_last_line_and_partial() {
        let file = log_file("2024-01-02T03:04:05Z stdout F a\n2024-01-02T03:04:06Z stdout P b");
        assert_eq!(read(file.path().into(), "").await, "a\nb");
    }

    #[tokio::test]
    async fn follow_until_the_container_stops() {
        let mut file = log_file("2024-01-02T03:04:05Z stdout F first\n");
        let path: PathBuf = file.path().into();
        let running = Arc::new(AtomicBool::new(true));
        let check = running.clone();
        let still_running: StillRunning = Box::new(move || {
            let running = check.load(Ordering::SeqCst);
            Box::pin(async move { running })
        });
        let mut stream = Box::pin(stream(path, &options("follow=true"), still_running).await.unwrap());
        assert_eq!(&stream.next().await.unwrap().unwrap()[..], b"first\n");

        // A record written in two pieces arrives once complete.
        file.write_all(b"2024-01-02T03:04:06Z stdout F sec").unwrap();
        file.flush().unwrap();
        let next = tokio::spawn(async move {
            let chunk = stream.next().await;
            (chunk, stream)
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        file.write_all(b"ond\n").unwrap();
        file.flush().unwrap();
        let (chunk, mut stream) = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&chunk.unwrap().unwrap()[..], b"second\n");

        // Output written before the container stops still arrives, then the end.
        file.write_all(b"2024-01-02T03:04:07Z stdout F last\n").unwrap();
        file.flush().unwrap();
        running.store(false, Ordering::SeqCst);
        let rest = tokio::time::timeout(Duration::from_secs(5), async {
            let mut out = Vec::new();
            while let Some(chunk) = stream.next().await {
                out.extend_from_slice(&chunk.unwrap());
            }
            out
        })
        .await
        .unwrap();
        assert_eq!(rest, b"last\n");
    }
}
