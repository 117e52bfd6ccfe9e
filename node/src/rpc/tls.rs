//! TLS for the node's gRPC ports (rustls, through tonic).
//!
//! - **Internode** (`internode_tls`): mutual TLS. Each node presents its
//!   certificate (`tls_cert_file`, `tls_key_file`) both when it serves the
//!   internode API and when it calls a peer, and accepts only peers whose
//!   certificate chains to the cluster CA (`tls_ca_file`). A peer without
//!   such a certificate cannot connect, so it can neither send requests
//!   nor join. A node calls its peers by IP address, so it checks the
//!   name `internode_tls_server_name` (default `ringkv-node`) in their
//!   certificates, as Cassandra checks only the chain by default: every node
//!   certificate of the cluster carries that name.
//! - **Client API** (`client_tls`): the node presents the same certificate;
//!   clients check it against the CA they are given. With
//!   `client_tls_require_cert` clients must present a certificate the
//!   cluster CA signed too.
//!
//! Files are PEM and read once at start; a missing or unreadable file
//! stops the node with a message naming it.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::{Config, ConfigError};

/// The TLS settings of a node's ports; `None` where TLS is off.
#[derive(Debug, Clone, Default)]
pub struct NodeTls {
    /// Serving the internode API, and calling peers.
    pub internode: Option<(ServerTlsConfig, ClientTlsConfig)>,
    /// Serving the client API.
    pub client: Option<ServerTlsConfig>,
}

fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(ConfigError::Invalid {
            field,
            reason: "must be set when TLS is on".into(),
        });
    }
    let bytes = std::fs::read(path).map_err(|error| ConfigError::Invalid {
        field,
        reason: format!("cannot read {}: {error}", path.display()),
    })?;
    if !bytes.starts_with(b"-----BEGIN") && !String::from_utf8_lossy(&bytes).contains("-----BEGIN")
    {
        return Err(ConfigError::Invalid {
            field,
            reason: format!("{} is not a PEM file", path.display()),
        });
    }
    Ok(bytes)
}

impl NodeTls {
    /// Reads the certificate files the configuration names.
    pub fn load(config: &Config) -> Result<NodeTls, ConfigError> {
        if !config.internode_tls && !config.client_tls {
            return Ok(NodeTls::default());
        }
        let identity = Identity::from_pem(
            read("tls_cert_file", &config.tls_cert_file)?,
            read("tls_key_file", &config.tls_key_file)?,
        );
        let needs_ca = config.internode_tls || config.client_tls_require_cert;
        let ca = if needs_ca || !config.tls_ca_file.as_os_str().is_empty() {
            Some(Certificate::from_pem(read(
                "tls_ca_file",
                &config.tls_ca_file,
            )?))
        } else {
            None
        };
        let internode = match (&ca, config.internode_tls) {
            (Some(ca), true) => Some((
                ServerTlsConfig::new()
                    .identity(identity.clone())
                    .client_ca_root(ca.clone()),
                ClientTlsConfig::new()
                    .identity(identity.clone())
                    .ca_certificate(ca.clone())
                    .domain_name(config.internode_tls_server_name.clone()),
            )),
            _ => None,
        };
        let client = config.client_tls.then(|| {
            let server = ServerTlsConfig::new().identity(identity);
            match (&ca, config.client_tls_require_cert) {
                (Some(ca), true) => server.client_ca_root(ca.clone()),
                _ => server,
            }
        });
        Ok(NodeTls { internode, client })
    }
}
