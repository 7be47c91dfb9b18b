//! Reading captured output files for `pacer logs`: the process runtime keeps an instance's
//! stdout and stderr in two files of its sandbox, and [`stream_files`] turns them into a
//! [`LogStream`] — the last N lines of each (stdout first, then stderr: the two files are not
//! interleaved by time), and, when following, whatever is appended to either afterwards until
//! the instance has ended and nothing more is left to read.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncReadExt;

use crate::runtime::{LogOptions, LogStream};

/// Largest chunk read (and sent) at once.
const CHUNK: usize = 64 * 1024;

/// How often a followed file is checked for new output.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Whether the writer of the files has ended (then following stops once they are read).
pub type Ended = Arc<dyn Fn() -> bool + Send + Sync>;

/// The byte offset where the last `lines` lines of `file` start (a final newline ends the last
/// line rather than starting an empty one).
pub fn tail_offset(file: &mut std::fs::File, lines: u64) -> std::io::Result<u64> {
    let length = file.seek(SeekFrom::End(0))?;
    if lines == 0 {
        return Ok(length);
    }
    let mut end = length;
    if end > 0 {
        let mut last = [0_u8; 1];
        file.seek(SeekFrom::Start(end - 1))?;
        file.read_exact(&mut last)?;
        if last[0] == b'\n' {
            end -= 1;
        }
    }
    let mut seen = 0_u64;
    let mut buffer = vec![0_u8; CHUNK];
    while end > 0 {
        let start = end.saturating_sub(CHUNK as u64);
        let size = usize::try_from(end - start).unwrap_or(CHUNK);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buffer[..size])?;
        for (index, byte) in buffer[..size].iter().enumerate().rev() {
            if *byte == b'\n' {
                seen += 1;
                if seen == lines {
                    return Ok(start + index as u64 + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

/// One file being read.
struct Source {
    file: tokio::fs::File,
}

/// What the stream carries between chunks.
struct Reader {
    sources: Vec<Source>,
    follow: bool,
    ended: Ended,
    /// Set once the writer has ended: one more pass reads what it wrote last, then the
    /// stream ends.
    draining: bool,
    buffer: Vec<u8>,
}

/// Opens `paths` (missing files are skipped) at their last `options.tail_lines` lines.
fn open(paths: &[PathBuf], options: LogOptions) -> std::io::Result<Vec<Source>> {
    let mut sources = Vec::new();
    for path in paths {
        let mut file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        let offset = match options.tail_lines {
            Some(lines) => tail_offset(&mut file, lines)?,
            None => 0,
        };
        file.seek(SeekFrom::Start(offset))?;
        sources.push(Source {
            file: tokio::fs::File::from_std(file),
        });
    }
    Ok(sources)
}

/// Streams `paths` one after the other from their tails; with `options.follow`, keeps
/// polling all of them for appended output until `ended()` and everything is read.
pub fn stream_files(
    paths: &[PathBuf],
    options: LogOptions,
    ended: Ended,
) -> std::io::Result<LogStream> {
    let reader = Reader {
        sources: open(paths, options)?,
        follow: options.follow,
        ended,
        draining: false,
        buffer: vec![0_u8; CHUNK],
    };
    Ok(futures::stream::unfold(reader, next_chunk)
        .map(Ok::<_, std::io::Error>)
        .boxed())
}

async fn next_chunk(mut reader: Reader) -> Option<(Vec<u8>, Reader)> {
    loop {
        for index in 0..reader.sources.len() {
            let read = {
                let Reader {
                    sources, buffer, ..
                } = &mut reader;
                sources[index].file.read(buffer).await
            };
            match read {
                Ok(0) => {}
                Ok(size) => {
                    let chunk = reader.buffer[..size].to_vec();
                    return Some((chunk, reader));
                }
                Err(error) => {
                    tracing::warn!(%error, "reading an instance's output failed; the log ends");
                    return None;
                }
            }
        }
        if !reader.follow || reader.draining {
            return None;
        }
        if (reader.ended)() {
            reader.draining = true;
            continue;
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn tail(text: &str, lines: u64) -> String {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let offset = tail_offset(&mut file, lines).unwrap();
        text[usize::try_from(offset).unwrap()..].to_owned()
    }

    #[test]
    fn tails_count_lines_from_the_end() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a\nb\nc\n", 5), "a\nb\nc\n");
        assert_eq!(tail("a\nb\nc\n", 0), "");
        assert_eq!(tail("", 3), "");
        let long: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(tail(&long, 2), "line 99998\nline 99999\n");
    }

    async fn collect(stream: LogStream) -> String {
        let chunks: Vec<Vec<u8>> = stream.map(Result::unwrap).collect().await;
        String::from_utf8(chunks.concat()).unwrap()
    }

    #[tokio::test]
    async fn reads_files_in_order_and_follows_until_the_writer_ends() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("stdout");
        let err = dir.path().join("stderr");
        std::fs::write(&out, "one\ntwo\nthree\n").unwrap();
        std::fs::write(&err, "oops\n").unwrap();
        let paths = vec![out.clone(), err.clone(), dir.path().join("missing")];
        let never: Ended = Arc::new(|| false);
        let all = stream_files(&paths, LogOptions::default(), Arc::clone(&never)).unwrap();
        assert_eq!(collect(all).await, "one\ntwo\nthree\noops\n");
        let options = LogOptions {
            follow: false,
            tail_lines: Some(1),
        };
        let last = stream_files(&paths, options, never).unwrap();
        assert_eq!(collect(last).await, "three\noops\n");

        let ended = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ended);
        let options = LogOptions {
            follow: true,
            tail_lines: Some(0),
        };
        let mut followed = stream_files(
            &paths,
            options,
            Arc::new(move || flag.load(Ordering::SeqCst)),
        )
        .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&out)
            .unwrap()
            .write_all(b"four\n")
            .unwrap();
        assert_eq!(followed.next().await.unwrap().unwrap(), b"four\n");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&err)
            .unwrap()
            .write_all(b"last words\n")
            .unwrap();
        ended.store(true, Ordering::SeqCst);
        assert_eq!(collect(followed).await, "last words\n");
    }
}
