//! Parallel gzip whose output depends only on the input bytes.
//!
//! The pigz scheme: the input is cut into 1 MiB blocks, each block is
//! raw-deflated on its own (so blocks can be compressed on several threads)
//! with the previous 32 KiB of input as preset dictionary (so matches across
//! the cut are kept and the ratio stays close to a single stream), and ended
//! with a sync flush, which byte-aligns it; the last block is finished
//! instead. Concatenated, the blocks are one deflate stream in one gzip
//! member. Block boundaries and dictionaries depend only on the input, never
//! on the thread count or on timing, so the bytes are the same for any
//! number of threads and any run. (gzp 2.0 was not: see DEPENDENCIES.md.)
//!
//! The output differs from a single-stream `GzEncoder`'s, but any gzip
//! reader accepts it.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, FlushCompress, Status};

/// Uncompressed bytes per block: large enough that the per-block cost
/// (a fresh compressor, the 5-byte sync marker) is negligible, small enough
/// that a few blocks in flight keep memory at a few MiB.
pub(crate) const BLOCK_SIZE: usize = 1 << 20;
/// Preset dictionary per block: deflate's whole window.
const DICT_SIZE: usize = 32 << 10;
/// Upper bound on default worker threads: the build engine may compress
/// several layers at once, and beyond a few threads the caller producing
/// the tar stream is the bottleneck anyway.
const MAX_DEFAULT_THREADS: usize = 4;
/// gzip header: magic, CM 8 (deflate), no flags, mtime 0, XFL 0 (level 6),
/// OS 255 ("unknown"), as Go's `compress/gzip` and flate2's `GzBuilder`
/// with these settings write it.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// The number of threads [`ParallelGzEncoder::new`] uses: the available
/// parallelism, at most 4.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(MAX_DEFAULT_THREADS)
}

/// A streaming gzip writer (level 6, one member, header with mtime 0 and
/// OS 255) that compresses 1 MiB blocks on worker threads.
///
/// Written bytes are collected into a block; full blocks are handed to the
/// workers, and compressed blocks are written to the inner writer in input
/// order on the caller's thread (so `W` need not be `Send`). At most
/// `threads + 1` blocks are in flight, so memory stays at a few MiB. With
/// one thread, blocks are compressed on the caller's thread; the output is
/// the same.
///
/// Call [`ParallelGzEncoder::finish`] to compress the last block and write
/// the trailer; dropping the encoder stops its threads and leaves the output
/// incomplete.
pub struct ParallelGzEncoder<W: Write> {
    inner: W,
    level: flate2::Compression,
    /// Input of the block being filled; at most `BLOCK_SIZE` bytes.
    pending: Vec<u8>,
    /// The last `DICT_SIZE` input bytes before `pending`.
    dict: Vec<u8>,
    /// Whether the gzip header has been written.
    header_written: bool,
    /// CRC-32 and length of the input whose blocks have been written.
    crc: crc32fast::Hasher,
    /// Total input length, for ISIZE (taken modulo 2^32 there).
    total_in: u64,
    /// Emptied input buffers, reused for later blocks.
    spare: Vec<Vec<u8>>,
    /// Worker threads; `None` compresses on the caller's thread.
    pool: Option<Pool>,
    /// Replies of the blocks in flight, in input order.
    in_flight: VecDeque<Receiver<io::Result<Block>>>,
    /// Set once an error was returned: the output is then incomplete and
    /// later calls fail rather than writing a corrupt stream.
    failed: bool,
}

/// A block to compress.
struct Job {
    data: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
    level: flate2::Compression,
    reply: SyncSender<io::Result<Block>>,
}

/// A compressed block.
struct Block {
    deflate: Vec<u8>,
    crc: crc32fast::Hasher,
    /// The input buffer, handed back for reuse.
    data: Vec<u8>,
}

/// Worker threads taking jobs from one queue.
struct Pool {
    jobs: Option<Sender<Job>>,
    handles: Vec<JoinHandle<()>>,
    threads: usize,
}

impl Pool {
    fn start(threads: usize) -> io::Result<Pool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut pool = Pool {
            jobs: Some(tx),
            handles: Vec::with_capacity(threads),
            threads,
        };
        for _ in 0..threads {
            let rx = Arc::clone(&rx);
            let handle = std::thread::Builder::new()
                .name("kiln-gzip".to_owned())
                .spawn(move || worker(&rx))?;
            pool.handles.push(handle);
        }
        Ok(pool)
    }

    fn submit(&self, job: Job) -> io::Result<()> {
        self.jobs
            .as_ref()
            .and_then(|tx| tx.send(job).ok())
            .ok_or_else(|| io::Error::other("gzip worker threads exited"))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the queue ends each worker's loop once the queue is empty.
        self.jobs = None;
        for h in self.handles.drain(..) {
            // A worker that panicked has already dropped its reply sender,
            // which the encoder reported as an error; nothing more to say.
            let _ = h.join();
        }
    }
}

fn worker(jobs: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let result = compress_block(job.level, &job.dict, job.data, job.last);
        // The encoder may have been dropped meanwhile; then no one waits.
        let _ = job.reply.send(result);
    }
}

/// Raw-deflates `data` primed with `dict`, ending with a sync flush (or,
/// for the last block, the final block marker), and computes its CRC-32.
fn compress_block(
    level: flate2::Compression,
    dict: &[u8],
    data: Vec<u8>,
    last: bool,
) -> io::Result<Block> {
    let mut c = Compress::new(level, false);
    if !dict.is_empty() {
        c.set_dictionary(dict)
            .map_err(|e| io::Error::other(format!("setting deflate dictionary: {e}")))?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    // Deflate's worst case is a little over the input size.
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 64);
    let mut consumed = 0;
    loop {
        let input = data.get(consumed..).unwrap_or_default();
        let before = c.total_in();
        let status = c
            .compress_vec(input, &mut out, flush)
            .map_err(|e| io::Error::other(format!("deflating a gzip block: {e}")))?;
        consumed += usize::try_from(c.total_in() - before).unwrap_or(usize::MAX);
        let done = match status {
            Status::StreamEnd => true,
            // A sync flush is complete once it returns with output space left.
            Status::Ok | Status::BufError => {
                !last && consumed >= data.len() && out.len() < out.capacity()
            }
        };
        if done {
            break;
        }
        out.reserve(64 << 10);
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&data);
    Ok(Block {
        deflate: out,
        crc,
        data,
    })
}

impl<W: Write> ParallelGzEncoder<W> {
    /// An encoder with [`default_threads`] worker threads.
    ///
    /// # Errors
    /// If a worker thread cannot be started.
    pub fn new(inner: W) -> io::Result<Self> {
        Self::with_threads(inner, default_threads())
    }

    /// An encoder with `threads` worker threads; 0 or 1 compresses on the
    /// caller's thread. The output is the same for every `threads`.
    ///
    /// # Errors
    /// If a worker thread cannot be started.
    pub fn with_threads(inner: W, threads: usize) -> io::Result<Self> {
        let pool = if threads > 1 {
            Some(Pool::start(threads)?)
        } else {
            None
        };
        Ok(ParallelGzEncoder {
            inner,
            level: flate2::Compression::new(super::compression::GZIP_LEVEL),
            pending: Vec::with_capacity(BLOCK_SIZE),
            dict: Vec::with_capacity(DICT_SIZE),
            header_written: false,
            crc: crc32fast::Hasher::new(),
            total_in: 0,
            spare: Vec::new(),
            pool,
            in_flight: VecDeque::new(),
            failed: false,
        })
    }

    /// Compresses the last block, writes the trailer (CRC-32 and length)
    /// and returns the inner writer, flushed.
    ///
    /// # Errors
    /// Compression or write errors, or an error returned earlier.
    pub fn finish(mut self) -> io::Result<W> {
        self.check()?;
        let r = self.finish_inner();
        if r.is_err() {
            self.failed = true;
        }
        r?;
        Ok(self.inner)
    }

    fn finish_inner(&mut self) -> io::Result<()> {
        self.submit(true)?;
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        let [a, b, c, d, ..] = self.total_in.to_le_bytes();
        let crc = self.crc.clone().finalize().to_le_bytes();
        let mut trailer = [0u8; 8];
        let (crc_part, len_part) = trailer.split_at_mut(4);
        crc_part.copy_from_slice(&crc);
        len_part.copy_from_slice(&[a, b, c, d]);
        self.inner.write_all(&trailer)?;
        self.inner.flush()
    }

    fn check(&self) -> io::Result<()> {
        if self.failed {
            Err(io::Error::other(
                "gzip encoder failed earlier; its output is incomplete",
            ))
        } else {
            Ok(())
        }
    }

    /// Hands `pending` to a worker (or compresses it here) as the next block.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        if !self.header_written {
            self.inner.write_all(&HEADER)?;
            self.header_written = true;
        }
        let next = self.spare.pop().unwrap_or_default();
        let data = std::mem::replace(&mut self.pending, next);
        self.pending.clear();
        self.pending.reserve(BLOCK_SIZE);
        let tail = data.len().saturating_sub(DICT_SIZE);
        let mut dict = Vec::with_capacity(DICT_SIZE);
        dict.extend_from_slice(data.get(tail..).unwrap_or_default());
        let dict = std::mem::replace(&mut self.dict, dict);
        self.total_in += data.len() as u64;
        let Some(threads) = self.pool.as_ref().map(|p| p.threads) else {
            let block = compress_block(self.level, &dict, data, last)?;
            return self.write_block(block);
        };
        // Make room first so that at most `threads + 1` blocks are in flight.
        while self.in_flight.len() > threads {
            self.write_oldest()?;
        }
        let (reply, rx) = mpsc::sync_channel(1);
        let job = Job {
            data,
            dict,
            last,
            level: self.level,
            reply,
        };
        self.pool
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip worker threads stopped"))?
            .submit(job)?;
        self.in_flight.push_back(rx);
        Ok(())
    }

    /// Waits for the oldest block in flight and writes it.
    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(rx) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let block = rx
            .recv()
            .map_err(|_| io::Error::other("gzip worker thread exited"))??;
        self.write_block(block)
    }

    fn write_block(&mut self, block: Block) -> io::Result<()> {
        self.inner.write_all(&block.deflate)?;
        self.crc.combine(&block.crc);
        let mut data = block.data;
        // Keep one spare per block that can be in flight, no more.
        if self.spare.len() <= self.in_flight.len() {
            data.clear();
            self.spare.push(data);
        }
        Ok(())
    }
}

impl<W: Write> Write for ParallelGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        if buf.is_empty() {
            return Ok(0);
        }
        // A full block is sent only when more input arrives, so that the
        // last block is always the one `finish` compresses.
        if self.pending.len() >= BLOCK_SIZE
            && let Err(e) = self.submit(false)
        {
            self.failed = true;
            return Err(e);
        }
        let room = BLOCK_SIZE - self.pending.len();
        let (now, _) = buf.split_at(room.min(buf.len()));
        self.pending.extend_from_slice(now);
        Ok(now.len())
    }

    /// Writes the blocks compressed so far and flushes the inner writer.
    /// The partly filled block is kept, so flushing does not change the
    /// output (unlike a deflate sync flush).
    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        let mut r = Ok(());
        while !self.in_flight.is_empty() && r.is_ok() {
            r = self.write_oldest();
        }
        r = r.and_then(|()| self.inner.flush());
        if r.is_err() {
            self.failed = true;
        }
        r
    }
}
