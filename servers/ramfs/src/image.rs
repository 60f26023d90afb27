//! Unpacking a server image (a tar archive) into the tree.
//!
//! A ramfs the manifest starts from an `image` unpacks it at every start,
//! so after a restart it serves the same files (core's recovery then finds
//! the chans' files again). The archive is untrusted: `kasane-tar` checks
//! every header, and each entry goes through the tree's own limits.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use kasane_tar::{entries, Kind, TarError};
use ninep_server::Error;

use crate::{Clock, RamFs};

/// Why an image was not unpacked whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageError {
    /// The archive itself is bad.
    Tar(TarError),
    /// An entry does not fit the tree (a file over a directory, a name
    /// twice, over the limits).
    Entry { path: String, error: Error },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tar(e) => write!(f, "{e}"),
            Self::Entry { path, error } => write!(f, "image: {path}: {error}"),
        }
    }
}

impl<C: Clock> RamFs<C> {
    /// Unpacks the tar archive `bytes` into the tree: files with their
    /// bytes and permission bits, directories (and the directories on the
    /// way to each entry). Returns how many entries it held. On an error
    /// the entries before it stay.
    pub fn unpack_tar(&mut self, bytes: &[u8]) -> Result<usize, ImageError> {
        let mut count = 0;
        for entry in entries(bytes) {
            let entry = entry.map_err(ImageError::Tar)?;
            let names: Vec<&str> = entry.names().collect();
            let dir = entry.kind == Kind::Directory;
            self.install(&names, dir, entry.perm, entry.data)
                .map_err(|error| ImageError::Entry {
                    path: entry.path.clone(),
                    error,
                })?;
            count += 1;
        }
        Ok(count)
    }
}
