//! TLS to nodes whose client API has `client_tls` on.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::error::{Error, Result};

/// How to reach TLS nodes: the CA that signed their certificates, and the
/// client's own certificate when the nodes require one.
#[derive(Clone)]
pub struct TlsOptions {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    server_name: Option<String>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("client_certificate", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| {
        Error::InvalidArgument(format!(
            "cannot read the {what} {}: {error}",
            path.display()
        ))
    })
}

impl TlsOptions {
    /// Trusts the CA certificate in `ca_pem` (PEM).
    pub fn new(ca_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            ca_pem: ca_pem.into(),
            identity: None,
            server_name: None,
        }
    }

    /// Trusts the CA certificate in the PEM file `ca`.
    pub fn from_ca_file(ca: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::new(read("CA certificate", ca.as_ref())?))
    }

    /// Presents this certificate and key (PEM) to nodes that require one.
    pub fn identity(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Presents the certificate and key in these PEM files.
    pub fn identity_files(self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self> {
        let cert = read("certificate", cert.as_ref())?;
        let key = read("key", key.as_ref())?;
        Ok(self.identity(cert, key))
    }

    /// Checks this name in node certificates instead of the host dialled.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    pub(crate) fn config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        config
    }
}
