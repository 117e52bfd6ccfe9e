//! The version of the on-disk format, kept in the data directory.
//!
//! Every start checks it before anything else reads the data:
//!
//! - a directory of an older format (or with no version: written by a
//!   release before versions were kept, or new) is upgraded in place,
//!   crash-safely ([`Storage::upgrade_format`]), then stamped with
//!   [`FORMAT_VERSION`];
//! - a directory of a newer format is refused with a message that says so,
//!   rather than misread.
//!
//! The formats:
//!
//! 1. cells keyed by token ++ plain key in the `data` column family (the
//!    releases before partitions of rows);
//! 2. cells keyed by token ++ row key in `rows` (see [`super::key`]);
//! 3. as 2, and a cell may keep its expiry's milliseconds (a flag a
//!    binary of format 2 does not know: see `cell`). Nothing moves.
//!
//! Hints and stream checkpoints written by format 1 are read as they are,
//! each recognising the older layout itself.

use super::{Storage, StorageError};

/// The format this binary writes and reads (see the module docs).
pub const FORMAT_VERSION: u32 = 3;

/// The version of a directory that has none.
const UNVERSIONED: u32 = 1;

const FORMAT_KEY: &str = "storage.format";

/// Why the data directory's format cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(
        "the data directory was written in storage format {found}, newer than this binary's {FORMAT_VERSION}: run the ringkv release that wrote it (or a newer one)"
    )]
    Newer { found: u32 },
    #[error(
        "the data directory's storage format {0:?} is not a number; the data directory is damaged"
    )]
    Corrupt(String),
}

/// What [`check_and_upgrade`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// The version the directory had (1 for none).
    pub found: u32,
    /// Cells moved to this format's layout.
    pub moved: u64,
}

/// Checks the stored format against this binary's, upgrading an older
/// directory (see the module docs). Blocking.
pub fn check_and_upgrade(storage: &dyn Storage) -> Result<Checked, FormatError> {
    let found = match storage.meta_get(FORMAT_KEY)? {
        None => UNVERSIONED,
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            text.parse().map_err(|_| FormatError::Corrupt(text))?
        }
    };
    if found > FORMAT_VERSION {
        return Err(FormatError::Newer { found });
    }
    let mut moved = 0;
    if found < FORMAT_VERSION {
        moved = storage.upgrade_format()?;
        storage.meta_put(FORMAT_KEY, FORMAT_VERSION.to_string().as_bytes())?;
    }
    Ok(Checked { found, moved })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    #[test]
    fn a_directory_without_a_version_is_stamped_and_then_kept() {
        let storage = MemoryStorage::default();
        let checked = check_and_upgrade(&storage).expect("stamp");
        assert_eq!(checked.found, UNVERSIONED);
        assert_eq!(
            storage.meta_get(FORMAT_KEY).expect("read"),
            Some(FORMAT_VERSION.to_string().into_bytes())
        );
        let again = check_and_upgrade(&storage).expect("again");
        assert_eq!(again.found, FORMAT_VERSION);
    }

    #[test]
    fn a_newer_format_is_refused_with_a_message_that_says_so() {
        let storage = MemoryStorage::default();
        let newer = FORMAT_VERSION + 1;
        storage
            .meta_put(FORMAT_KEY, newer.to_string().as_bytes())
            .expect("put");
        let error = check_and_upgrade(&storage).expect_err("refused");
        assert!(matches!(error, FormatError::Newer { found } if found == newer));
        let text = error.to_string();
        assert!(text.contains("newer than this binary's"), "{text}");
        // Refused, not overwritten.
        assert_eq!(
            storage.meta_get(FORMAT_KEY).expect("read"),
            Some(newer.to_string().into_bytes())
        );
    }

    #[test]
    fn a_damaged_version_is_an_error() {
        let storage = MemoryStorage::default();
        storage.meta_put(FORMAT_KEY, b"v2?").expect("put");
        assert!(matches!(
            check_and_upgrade(&storage),
            Err(FormatError::Corrupt(_))
        ));
    }
}
