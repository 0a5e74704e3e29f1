//! The local copy's file: read once at start, rewritten whole and
//! atomically (a temporary file beside it, fsync, rename, fsync of the
//! directory), so that a crash leaves either the old copy or the new one,
//! never a mix. One client per file: two clients sharing one would
//! overwrite each other.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::replica::Replica;
use super::SyncClientError;

/// The file of one client's copy.
pub(crate) struct FileStore {
    path: PathBuf,
    /// One rewrite at a time, each with the copy as it is when it starts,
    /// so a later rewrite never loses to an earlier one.
    writing: tokio::sync::Mutex<()>,
}

impl FileStore {
    pub fn new(path: PathBuf) -> Self {
        FileStore {
            path,
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// The stored copy; `None` if there is no file yet.
    pub async fn load(&self) -> Result<Option<Replica>, SyncClientError> {
        match tokio::fs::read(&self.path).await {
            Ok(bytes) => Replica::decode(&bytes)
                .map(Some)
                .map_err(|e| SyncClientError::Store(format!("{}: {e}", self.path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SyncClientError::Store(format!("reading {}: {e}", self.path.display()))),
        }
    }

    /// Rewrites the file with the bytes `encode` returns, called once the
    /// previous rewrite is done.
    pub async fn save_with(
        &self,
        encode: impl FnOnce() -> Result<Vec<u8>, SyncClientError>,
    ) -> Result<(), SyncClientError> {
        let _one_at_a_time = self.writing.lock().await;
        let bytes = encode()?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| SyncClientError::Store(format!("writing {}: {e}", self.path.display())))?
            .map_err(|e| SyncClientError::Store(format!("writing {}: {e}", self.path.display())))
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        // The identity's data is the device user's own: not for other
        // local users.
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::client::Patch;

    #[tokio::test]
    async fn a_copy_survives_a_rewrite_and_a_leftover_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy.bin");
        let store = FileStore::new(path.clone());
        assert!(store.load().await.unwrap().is_none());
        let mut r = Replica::new("pool", "dev");
        r.enqueue("ds", vec![Patch::replace("k", "v")], 1);
        store.save_with(|| Ok(r.encode().unwrap())).await.unwrap();
        // A crash mid-rewrite leaves a partial temporary file: ignored.
        std::fs::write(dir.path().join("copy.bin.tmp"), b"partial").unwrap();
        assert_eq!(store.load().await.unwrap().unwrap(), r);
        r.enqueue("ds", vec![Patch::remove("k")], 2);
        store.save_with(|| Ok(r.encode().unwrap())).await.unwrap();
        assert_eq!(store.load().await.unwrap().unwrap(), r);
        std::fs::write(&path, b"garbage").unwrap();
        assert!(
            store.load().await.is_err(),
            "a corrupt file is an error, not an empty copy"
        );
    }
}
