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
//!   cluster CA signed too. The RESP port takes the same settings, as a
//!   rustls configuration of its own (it is not a tonic service).
//!
//! Files are PEM and read once at start; a missing or unreadable file
//! stops the node with a message naming it.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::{Config, ConfigError};

/// The TLS settings of a node's ports; `None` where TLS is off.
#[derive(Debug, Clone, Default)]
pub struct NodeTls {
    /// Serving the internode API, and calling peers.
    pub internode: Option<(ServerTlsConfig, ClientTlsConfig)>,
    /// Serving the client API.
    pub client: Option<ServerTlsConfig>,
    /// Serving the RESP port (the client API's settings, for rustls
    /// directly: the RESP port is not a tonic service).
    pub resp: Option<Arc<rustls::ServerConfig>>,
}

fn invalid(field: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { field, reason }
}

/// The client API's TLS as a rustls server configuration: the node's
/// certificate, and with `client_tls_require_cert` client certificates
/// checked against the CA.
fn rustls_server(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            invalid(
                "tls_cert_file",
                format!("cannot read the certificates: {error}"),
            )
        })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| {
        invalid(
            "tls_key_file",
            format!("cannot read the private key: {error}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| invalid("client_tls", error.to_string()))?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca_pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca_pem) {
                let cert = cert.map_err(|error| {
                    invalid("tls_ca_file", format!("cannot read the CA: {error}"))
                })?;
                roots
                    .add(cert)
                    .map_err(|error| invalid("tls_ca_file", error.to_string()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|error| invalid("tls_ca_file", error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|error| {
        invalid(
            "tls_key_file",
            format!("does not fit the certificate: {error}"),
        )
    })?;
    Ok(Arc::new(config))
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
        let cert_pem = read("tls_cert_file", &config.tls_cert_file)?;
        let key_pem = read("tls_key_file", &config.tls_key_file)?;
        let identity = Identity::from_pem(&cert_pem, &key_pem);
        let needs_ca = config.internode_tls || config.client_tls_require_cert;
        let ca_pem = if needs_ca || !config.tls_ca_file.as_os_str().is_empty() {
            Some(read("tls_ca_file", &config.tls_ca_file)?)
        } else {
            None
        };
        let ca = ca_pem.as_ref().map(Certificate::from_pem);
        let resp = if config.client_tls && config.resp_enabled {
            let client_ca = ca_pem.as_deref().filter(|_| config.client_tls_require_cert);
            Some(rustls_server(&cert_pem, &key_pem, client_ca)?)
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
        Ok(NodeTls {
            internode,
            client,
            resp,
        })
    }
}
