//! File descriptors: the sockets of every port and the store's files share
//! one process limit.
//!
//! At start the node raises its soft `RLIMIT_NOFILE` to the hard limit
//! (the soft limit of a login shell is often 1024, far below the
//! connection caps), then caps the files RocksDB keeps open
//! (`max_open_files`) below what is left once every port holds as many
//! connections as its cap allows and [`RESERVED`] more are set aside (WAL
//! and MANIFEST files, logs, listeners, outgoing peer connections). A
//! flood of connections is then refused by the caps before it can take
//! the descriptor the next WAL or SST file needs; before, it could make
//! that open fail and mark the disk unwritable.

/// Descriptors set aside beyond the connection caps and RocksDB's table
/// files.
pub const RESERVED: u64 = 256;
/// Fewest table files RocksDB keeps open, however low the limit.
pub const MIN_TABLE_FILES: u64 = 64;

/// How the process's descriptors are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileBudget {
    /// The soft limit after raising it.
    pub limit: u64,
    /// Every port's connection cap together.
    pub connections: u64,
    /// RocksDB's `max_open_files`.
    pub table_files: u64,
    /// The limit leaves storage less than its share: connections at their
    /// caps could starve the store.
    pub short: bool,
}

impl FileBudget {
    /// The share of `limit` that is left for table files beside
    /// `connections` sockets and [`RESERVED`].
    pub fn new(limit: u64, connections: u64) -> Self {
        let left = limit.saturating_sub(connections.saturating_add(RESERVED));
        Self {
            limit,
            connections,
            table_files: left.max(MIN_TABLE_FILES),
            short: left < MIN_TABLE_FILES,
        }
    }

    /// RocksDB's setting (it takes an `i32`).
    pub fn max_open_files(&self) -> i32 {
        i32::try_from(self.table_files).unwrap_or(i32::MAX)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft
/// limit now (unchanged when it cannot be raised).
pub fn raise_limit() -> std::io::Result<u64> {
    let nofile = rlimit::Resource::NOFILE;
    let (soft, hard) = nofile.get()?;
    if soft >= hard {
        return Ok(soft);
    }
    match nofile.set(hard, hard) {
        Ok(()) => Ok(hard),
        Err(error) => {
            tracing::warn!(%error, soft, hard, "cannot raise the open-file limit");
            Ok(soft)
        }
    }
}

/// Raises the limit and shares it out for `connections` capped sockets,
/// saying so in the log when storage is left short.
pub fn budget(connections: u64) -> FileBudget {
    let limit = match raise_limit() {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read the open-file limit; assuming 1024");
            1024
        }
    };
    let budget = FileBudget::new(limit, connections);
    if budget.short {
        tracing::warn!(
            limit,
            connections,
            "the open-file limit leaves the store too few files beside the connection caps; raise the hard limit (ulimit -Hn, LimitNOFILE) or lower max_client_connections, max_peer_connections, max_http_connections and resp_max_clients"
        );
    } else {
        tracing::info!(
            limit,
            connections,
            table_files = budget.table_files,
            "open files shared between connections and the store"
        );
    }
    budget
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_gets_what_the_connection_caps_leave() {
        let budget = FileBudget::new(1 << 20, 2112 + 1024);
        assert_eq!(budget.table_files, (1 << 20) - 3136 - RESERVED);
        assert!(!budget.short);
        // A limit below the caps still leaves the store its minimum, and
        // says it is short.
        let low = FileBudget::new(1024, 3136);
        assert_eq!(low.table_files, MIN_TABLE_FILES);
        assert!(low.short);
        assert_eq!(FileBudget::new(u64::MAX, 0).max_open_files(), i32::MAX);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn raising_the_limit_reaches_the_hard_limit() {
        let limit = raise_limit().expect("getrlimit");
        let (soft, hard) = rlimit::Resource::NOFILE.get().expect("getrlimit");
        assert_eq!(limit, soft);
        assert_eq!(soft, hard);
    }
}
