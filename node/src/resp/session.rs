//! What a RESP connection remembers between commands.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::reply::Protocol;
use crate::coordinator::ConsistencyLevel;

/// What a `HELLO` changes once its credentials (if any) are accepted.
#[derive(Debug, Clone, Default)]
pub struct Hello {
    pub protocol: Option<Protocol>,
    pub name: Option<Bytes>,
}

/// Longest client name or library name/version kept (`CLIENT SETNAME`,
/// `HELLO ... SETNAME`, `CLIENT SETINFO`).
pub const MAX_NAME_LEN: usize = 512;

/// One connection's state.
pub struct Session {
    pub id: u64,
    pub protocol: Protocol,
    pub name: Bytes,
    pub lib_name: Bytes,
    pub lib_version: Bytes,
    pub read_level: ConsistencyLevel,
    pub write_level: ConsistencyLevel,
    /// User name and password once `AUTH` accepted them; each command
    /// checks them again (through the authenticator's cache), so a changed
    /// role applies to open connections too.
    pub credentials: Option<Arc<(String, String)>>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub since: Instant,
}

impl Session {
    pub fn new(id: u64, peer: SocketAddr, local: SocketAddr) -> Self {
        Self {
            id,
            protocol: Protocol::Resp2,
            name: Bytes::new(),
            lib_name: Bytes::new(),
            lib_version: Bytes::new(),
            read_level: ConsistencyLevel::Quorum,
            write_level: ConsistencyLevel::Quorum,
            credentials: None,
            peer,
            local,
            since: Instant::now(),
        }
    }

    /// `RESET`: back to a new connection's state, not authenticated.
    pub fn reset(&mut self) {
        let fresh = Session::new(self.id, self.peer, self.local);
        *self = Session {
            since: self.since,
            ..fresh
        };
    }

    pub fn apply(&mut self, hello: Hello) {
        if let Some(protocol) = hello.protocol {
            self.protocol = protocol;
        }
        if let Some(name) = hello.name {
            self.name = name;
        }
    }
}

/// A name as a connection keeps it: its own copy (not a slice pinning the
/// read buffer), printable ASCII without spaces, as Redis requires, so
/// `CLIENT INFO`'s `name=value` line stays parsable.
pub fn checked_name(name: &[u8]) -> Result<Bytes, String> {
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "ERR names are at most {MAX_NAME_LEN} bytes on ringkv"
        ));
    }
    if name.iter().any(|b| *b <= b' ' || *b > b'~') {
        return Err(
            "ERR Client names cannot contain spaces, newlines or special characters.".into(),
        );
    }
    Ok(Bytes::copy_from_slice(name))
}
