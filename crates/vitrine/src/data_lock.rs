//! One serving process per service per data directory. Two embedded processes on the same
//! directory would each run the relay and the sweepers over the same SQLite files and the same
//! embedded queues, and each would think it owned the messages; the second is refused instead,
//! with a message naming the holder. The lock is per service, so the production topology on one
//! machine (one process per service sharing a directory for the signing key) still runs.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Seek, Write};
use std::path::Path;

use anyhow::Context;

/// Held for as long as the process serves; the operating system releases it when the process
/// ends, however it ends.
#[derive(Debug)]
pub struct DataDirLock {
    _files: Vec<File>,
}

impl DataDirLock {
    /// Locks `<data_dir>/<service>.lock` for each of `services`.
    pub fn acquire(data_dir: &Path, services: &[&str]) -> anyhow::Result<DataDirLock> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
        let mut files = Vec::with_capacity(services.len());
        for service in services {
            let path = data_dir.join(format!("{service}.lock"));
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    anyhow::bail!(
                        "another Vitrine process ({}) is already serving {service} from the data \
                         directory {}; stop it, or give this one its own VITRINE_DATA_DIR",
                        holder.trim().trim_end_matches('.'),
                        data_dir.display()
                    );
                }
                Err(TryLockError::Error(error)) => {
                    return Err(error).with_context(|| format!("locking {}", path.display()));
                }
            }
            file.set_len(0)?;
            file.rewind()?;
            write!(file, "pid {}", std::process::id())?;
            files.push(file);
        }
        Ok(DataDirLock { _files: files })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path(), &["a", "b"]).unwrap();
        let error = DataDirLock::acquire(dir.path(), &["b"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("pid {}", std::process::id())),
            "names the holder: {error}"
        );
        DataDirLock::acquire(dir.path(), &["c"]).expect("other services are free");
        drop(first);
        DataDirLock::acquire(dir.path(), &["b"]).expect("released");
    }
}
