//! The on-disk snapshot format, and the directory that holds snapshots.
//!
//! A snapshot is a file, never a buffer: it is written record by record from
//! a RocksDB snapshot, streamed to peers in chunks straight from disk, and
//! installed record by record, so memory stays bounded whatever the state
//! size.
//!
//! Layout:
//! ```text
//! "TSNAP001"
//! { 0x01 | key_len: u32 | key | value_len: u32 | value }*
//! 0x00 | meta | meta_len: u32 | sha256(all bytes before it): [u8; 32]
//! ```
//! The metadata sits in the trailer because it is only known once the walk
//! over the RocksDB snapshot has seen the applied log id. The checksum is
//! verified before anything of the snapshot becomes live.
#![allow(
    clippy::disallowed_methods,
    reason = "a snapshot id is a node-local file name, not replicated state"
)]

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::store::codec;

const MAGIC: &[u8; 8] = b"TSNAP001";
const TAG_RECORD: u8 = 1;
const TAG_END: u8 = 0;
/// Largest key or value a snapshot may carry; a larger length means a
/// corrupt or hostile file, refused before allocating.
pub const MAX_RECORD_BYTES: u32 = 16 << 20;
const TRAILER_FIXED: u64 = 4 + 32;

/// The snapshot payload openraft passes around: an open, read-only file.
/// Holding the descriptor keeps the data readable even if a newer snapshot
/// replaces the file's name meanwhile.
#[derive(Debug)]
pub struct SnapshotFile {
    /// Where the snapshot was opened from.
    pub path: PathBuf,
    /// The open, read-only descriptor holding the data.
    pub file: File,
}

impl SnapshotFile {
    /// Opens `path` for reading.
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(SnapshotFile {
            path: path.to_path_buf(),
            file: File::open(path)?,
        })
    }

    /// Size in bytes.
    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Whether the file is empty (never true for a valid snapshot).
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// Writes a snapshot file. Call [`SnapshotWriter::record`] for each record,
/// then [`SnapshotWriter::finish`].
pub struct SnapshotWriter {
    out: BufWriter<File>,
    hash: Sha256,
    path: PathBuf,
}

impl SnapshotWriter {
    /// Creates `path` (truncating it).
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
        let mut w = SnapshotWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            hash: Sha256::new(),
            path: path.to_path_buf(),
        };
        w.write(MAGIC)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hash.update(bytes);
        self.out.write_all(bytes)
    }

    /// Appends one `table|key -> value` record.
    pub fn record(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let klen = u32::try_from(key.len()).map_err(|_| io::Error::other("snapshot key too large"))?;
        let vlen = u32::try_from(value.len()).map_err(|_| io::Error::other("snapshot value too large"))?;
        self.write(&[TAG_RECORD])?;
        self.write(&klen.to_be_bytes())?;
        self.write(key)?;
        self.write(&vlen.to_be_bytes())?;
        self.write(value)
    }

    /// Writes the trailer with `meta`, fsyncs the file, and returns its path.
    pub fn finish<M: serde::Serialize>(mut self, meta: &M) -> io::Result<PathBuf> {
        let meta = codec::encode(meta).map_err(io::Error::other)?;
        let meta_len = u32::try_from(meta.len()).map_err(|_| io::Error::other("snapshot meta too large"))?;
        self.write(&[TAG_END])?;
        self.write(&meta)?;
        self.write(&meta_len.to_be_bytes())?;
        let digest: [u8; 32] = self.hash.clone().finalize().into();
        self.out.write_all(&digest)?;
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        Ok(self.path)
    }
}

/// Reads the metadata from a snapshot's trailer without reading the body.
pub fn read_meta<M: serde::de::DeserializeOwned>(file: &mut File) -> io::Result<M> {
    let len = file.metadata()?.len();
    if len < MAGIC.len() as u64 + 1 + TRAILER_FIXED {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "snapshot file too short"));
    }
    file.seek(SeekFrom::Start(len - TRAILER_FIXED))?;
    let mut len_buf = [0u8; 4];
    file.read_exact(&mut len_buf)?;
    let meta_len = u64::from(u32::from_be_bytes(len_buf));
    if meta_len + TRAILER_FIXED + 1 + MAGIC.len() as u64 > len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "snapshot meta length out of range",
        ));
    }
    file.seek(SeekFrom::Start(len - TRAILER_FIXED - meta_len))?;
    let mut meta = vec![0u8; meta_len as usize];
    file.read_exact(&mut meta)?;
    file.seek(SeekFrom::Start(0))?;
    codec::decode(&meta).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads every record of a snapshot in order, calling `visit` for each, and
/// verifies the checksum at the end. `visit` must not make anything live
/// before this returns `Ok`: a bad checksum is only detected at the end.
pub fn read_records(file: &mut File, mut visit: impl FnMut(&[u8], &[u8]) -> io::Result<()>) -> io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let mut r = HashingReader {
        inner: BufReader::with_capacity(1 << 20, &mut *file),
        hash: Sha256::new(),
    };
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a Tessera snapshot (bad magic)",
        ));
    }
    let mut key = Vec::new();
    let mut value = Vec::new();
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag)?;
        match tag[0] {
            TAG_RECORD => {
                read_chunk(&mut r, &mut key)?;
                read_chunk(&mut r, &mut value)?;
                visit(&key, &value)?;
            }
            TAG_END => break,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad snapshot record tag {other}"),
                ));
            }
        }
    }
    // Trailer: meta, meta_len, digest. Hash everything up to the digest.
    let mut rest = Vec::new();
    r.inner.read_to_end(&mut rest)?;
    if rest.len() < TRAILER_FIXED as usize {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "snapshot trailer truncated"));
    }
    let (hashed, digest) = rest.split_at(rest.len() - 32);
    r.hash.update(hashed);
    let computed: [u8; 32] = r.hash.finalize().into();
    if computed.as_slice() != digest {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "snapshot checksum mismatch"));
    }
    Ok(())
}

fn read_chunk(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len > MAX_RECORD_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("snapshot record of {len} bytes exceeds the limit"),
        ));
    }
    buf.resize(len as usize, 0);
    r.read_exact(buf)
}

struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// The directory holding the current snapshot and transfers in progress.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    /// Opens `dir`, creating it, and deletes leftovers of interrupted builds
    /// and transfers.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(SnapshotDir { dir: dir.to_path_buf() })
    }

    /// The path of the current snapshot.
    pub fn current(&self) -> PathBuf {
        self.dir.join("current.snap")
    }

    /// A fresh path for a snapshot being built or received.
    pub fn temp(&self, what: &str) -> PathBuf {
        let id = hex::encode(crate::clock::random_bytes::<8>());
        self.dir.join(format!("{what}-{id}.tmp"))
    }

    /// Atomically makes `path` the current snapshot (rename, then fsync the
    /// directory so the rename itself survives a crash).
    pub fn promote(&self, path: &Path) -> io::Result<()> {
        std::fs::rename(path, self.current())?;
        File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_round_trip_and_corruption_detected() {
        let dir = tempfile::tempdir().unwrap();
        let sd = SnapshotDir::open(dir.path()).unwrap();
        let mut w = SnapshotWriter::create(&sd.temp("build")).unwrap();
        for i in 0u32..1000 {
            w.record(&i.to_be_bytes(), format!("value-{i}").as_bytes()).unwrap();
        }
        let path = w.finish(&("meta", 7u64)).unwrap();
        sd.promote(&path).unwrap();
        let mut snap = SnapshotFile::open(&sd.current()).unwrap();
        let meta: (String, u64) = read_meta(&mut snap.file).unwrap();
        assert_eq!(meta, ("meta".to_string(), 7));
        let mut n = 0;
        read_records(&mut snap.file, |k, v| {
            assert_eq!(
                v,
                format!("value-{}", u32::from_be_bytes(k.try_into().unwrap())).as_bytes()
            );
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 1000);

        // Flip one byte in the body: the checksum must catch it.
        let mut bytes = std::fs::read(sd.current()).unwrap();
        bytes[100] ^= 0xff;
        std::fs::write(sd.current(), &bytes).unwrap();
        let mut f = File::open(sd.current()).unwrap();
        assert!(read_records(&mut f, |_, _| Ok(())).is_err());

        // Leftover temp files are removed on open.
        std::fs::write(sd.temp("recv"), b"partial").unwrap();
        SnapshotDir::open(dir.path()).unwrap();
        let tmps = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "tmp"))
            .count();
        assert_eq!(tmps, 0);
    }
}
