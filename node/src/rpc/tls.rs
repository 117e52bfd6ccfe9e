//! TLS for the node's ports: rustls configurations the node's own accept
//! loops handshake with (`rpc::accept`, with a time limit), and tonic's
//! client configuration for calling peers over gRPC.
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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// What the TLS of a node's ports is built from: which ports use it and
/// the PEM files (built from the configuration by `config::settings`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// `internode_tls`: mutual TLS between nodes.
    pub internode: bool,
    /// `client_tls`: TLS on the client API (and the RESP port).
    pub client: bool,
    /// `client_tls_require_cert`: clients must present a certificate of
    /// the cluster CA.
    pub client_require_cert: bool,
    /// `resp_enabled`: the RESP port is served (with the client's TLS).
    pub resp: bool,
    /// `tls_cert_file`.
    pub cert: PathBuf,
    /// `tls_key_file`.
    pub key: PathBuf,
    /// `tls_ca_file`.
    pub ca: PathBuf,
    /// `internode_tls_server_name`.
    pub server_name: String,
}

/// A TLS setting that cannot be used: the setting it is about and why.
#[derive(Debug, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct TlsError {
    /// The configuration field at fault (`tls_cert_file`, ...).
    pub field: &'static str,
    /// Why, in a few words.
    pub reason: String,
}

/// The TLS settings of a node's ports; `None` where TLS is off.
#[derive(Debug, Clone, Default)]
pub struct NodeTls {
    /// Serving the internode API over gRPC (ALPN `h2`), and calling peers.
    pub internode: Option<(Arc<rustls::ServerConfig>, ClientTlsConfig)>,
    /// Serving the client API (ALPN `h2`).
    pub client: Option<Arc<rustls::ServerConfig>>,
    /// Serving the RESP port (the client API's settings, for rustls
    /// directly: the RESP port is not a tonic service).
    pub resp: Option<Arc<rustls::ServerConfig>>,
    /// The internode settings for the framed protocol (rustls directly).
    pub framed: Option<FramedTls>,
}

/// Internode mutual TLS as rustls configurations, for the framed internode
/// protocol: the same certificate, CA and peer name as the gRPC side.
#[derive(Debug, Clone)]
pub struct FramedTls {
    /// Serving: client certificates of the cluster CA required.
    pub server: Arc<rustls::ServerConfig>,
    /// Calling: this node's certificate presented, the peer's checked
    /// against the CA for `name`.
    pub client: Arc<rustls::ClientConfig>,
    /// `internode_tls_server_name`.
    pub name: rustls_pki_types::ServerName<'static>,
}

fn invalid(field: &'static str, reason: String) -> TlsError {
    TlsError { field, reason }
}

type CertsAndKey = (
    Vec<rustls_pki_types::CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
);

fn certs_and_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertsAndKey, TlsError> {
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
    Ok((certs, key))
}

fn roots(ca_pem: &[u8]) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert =
            cert.map_err(|error| invalid("tls_ca_file", format!("cannot read the CA: {error}")))?;
        roots
            .add(cert)
            .map_err(|error| invalid("tls_ca_file", error.to_string()))?;
    }
    Ok(Arc::new(roots))
}

fn key_mismatch(error: rustls::Error) -> TlsError {
    invalid(
        "tls_key_file",
        format!("does not fit the certificate: {error}"),
    )
}

/// A rustls server configuration presenting the node's certificate, and
/// with `client_ca_pem` demanding client certificates of that CA. `what`
/// names the setting that turned it on, for errors.
fn rustls_server(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
    what: &'static str,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (certs, key) = certs_and_key(cert_pem, key_pem)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| invalid(what, error.to_string()))?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca_pem) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots(ca_pem)?,
                provider,
            )
            .build()
            .map_err(|error| invalid("tls_ca_file", error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(key_mismatch)?;
    Ok(Arc::new(config))
}

/// `config` for gRPC: HTTP/2 negotiated by ALPN, as gRPC clients ask.
fn for_grpc(config: &Arc<rustls::ServerConfig>) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::clone(config);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// The framed internode protocol's TLS: mutual, against the cluster CA.
fn framed_tls(
    cert_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
    name: &str,
) -> Result<FramedTls, TlsError> {
    let server = rustls_server(cert_pem, key_pem, Some(ca_pem), "internode_tls")?;
    let (certs, key) = certs_and_key(cert_pem, key_pem)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| invalid("internode_tls", error.to_string()))?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(certs, key)
        .map_err(key_mismatch)?;
    let name = rustls_pki_types::ServerName::try_from(name.to_owned()).map_err(|error| {
        invalid(
            "internode_tls_server_name",
            format!("{name:?} is not a DNS name or IP address: {error}"),
        )
    })?;
    Ok(FramedTls {
        server,
        client: Arc::new(client),
        name,
    })
}

fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    if path.as_os_str().is_empty() {
        return Err(TlsError {
            field,
            reason: "must be set when TLS is on".into(),
        });
    }
    let bytes = std::fs::read(path).map_err(|error| TlsError {
        field,
        reason: format!("cannot read {}: {error}", path.display()),
    })?;
    if !bytes.starts_with(b"-----BEGIN") && !String::from_utf8_lossy(&bytes).contains("-----BEGIN")
    {
        return Err(TlsError {
            field,
            reason: format!("{} is not a PEM file", path.display()),
        });
    }
    Ok(bytes)
}

impl NodeTls {
    /// Reads the certificate files `files` names.
    pub fn load(files: &TlsFiles) -> Result<NodeTls, TlsError> {
        if !files.internode && !files.client {
            return Ok(NodeTls::default());
        }
        let cert_pem = read("tls_cert_file", &files.cert)?;
        let key_pem = read("tls_key_file", &files.key)?;
        let identity = Identity::from_pem(&cert_pem, &key_pem);
        let needs_ca = files.internode || files.client_require_cert;
        let ca_pem = if needs_ca || !files.ca.as_os_str().is_empty() {
            Some(read("tls_ca_file", &files.ca)?)
        } else {
            None
        };
        let ca = ca_pem.as_ref().map(Certificate::from_pem);
        let client_server = if files.client {
            let client_ca = ca_pem.as_deref().filter(|_| files.client_require_cert);
            Some(rustls_server(&cert_pem, &key_pem, client_ca, "client_tls")?)
        } else {
            None
        };
        let resp = client_server.clone().filter(|_| files.resp);
        let framed = match (&ca_pem, files.internode) {
            (Some(ca_pem), true) => {
                Some(framed_tls(&cert_pem, &key_pem, ca_pem, &files.server_name)?)
            }
            _ => None,
        };
        let internode = match (&ca, &framed) {
            (Some(ca), Some(framed)) => Some((
                for_grpc(&framed.server),
                ClientTlsConfig::new()
                    .identity(identity)
                    .ca_certificate(ca.clone())
                    .domain_name(files.server_name.clone()),
            )),
            _ => None,
        };
        let client = client_server.as_ref().map(for_grpc);
        Ok(NodeTls {
            internode,
            client,
            resp,
            framed,
        })
    }
}
