//! The data directory: `results/` (sealed segments), `wal/` (open windows), `staging/`
//! (files being written before their atomic rename), and the lock that keeps out a second
//! process.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::StorageError;

/// An opened, locked data directory.
#[derive(Debug)]
pub struct DataDir {
    /// The root given by `--data-dir`.
    pub root: PathBuf,
    /// Sealed segment files, the system of record.
    pub results: PathBuf,
    /// Write-ahead logs of open windows.
    pub wal: PathBuf,
    /// Scratch space on the same filesystem, for write-then-rename.
    pub staging: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates the layout if needed, proves it writable, and takes an exclusive lock.
    pub fn open(root: &Path) -> Result<DataDir, StorageError> {
        if root.exists() && !root.is_dir() {
            return Err(StorageError::Io {
                action: "use data directory",
                path: root.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "it is not a directory"),
            });
        }
        fs::create_dir_all(root).map_err(StorageError::io("create data directory", root))?;
        let results = root.join("results");
        let wal = root.join("wal");
        let staging = root.join("staging");
        for dir in [&results, &wal, &staging] {
            fs::create_dir_all(dir).map_err(StorageError::io("create directory", dir))?;
        }
        let lock_path = root.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(StorageError::io("open lock file", &lock_path))?;
        lock.try_lock().map_err(|_| StorageError::Locked(root.to_path_buf()))?;
        for entry in fs::read_dir(&staging).map_err(StorageError::io("list", &staging))? {
            let path = entry.map_err(StorageError::io("list", &staging))?.path();
            fs::remove_file(&path).map_err(StorageError::io("remove stale staging file", &path))?;
        }
        let probe = staging.join("write-probe");
        let mut f = File::create(&probe).map_err(StorageError::io("write to data directory", &probe))?;
        f.write_all(&[0u8; 4096]).and_then(|_| f.sync_all()).map_err(StorageError::io("write to data directory", &probe))?;
        fs::remove_file(&probe).map_err(StorageError::io("remove", &probe))?;
        Ok(DataDir { root: root.to_path_buf(), results, wal, staging, _lock: lock })
    }
}

/// Makes a directory's entries durable (new, renamed or removed files).
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(StorageError::io("fsync directory", dir))
}

/// Writes `bytes` to `dir/name` atomically and durably: staging file, fsync, rename, fsync dir.
/// A reader of `dir` sees either no file or the whole file.
pub fn write_atomically(staging: &Path, dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = staging.join(name);
    let mut f = File::create(&tmp).map_err(StorageError::io("create", &tmp))?;
    f.write_all(bytes).map_err(StorageError::io("write", &tmp))?;
    f.sync_all().map_err(StorageError::io("fsync", &tmp))?;
    drop(f);
    let dest = dir.join(name);
    fs::rename(&tmp, &dest).map_err(StorageError::io("rename into place", &dest))?;
    sync_dir(dir)
}

/// File names in `dir`, sorted.
pub fn sorted_names(dir: &Path) -> Result<Vec<String>, StorageError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(StorageError::io("list", dir))? {
        let entry = entry.map_err(StorageError::io("list", dir))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}
