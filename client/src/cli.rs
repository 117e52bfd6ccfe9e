//! Command-line options the `ringkv` shell and `ringkv-bench` share: how to
//! reach secured nodes (TLS, and a user for authentication).

use std::path::PathBuf;

use crate::client::Credentials;
use crate::error::{Error, Result};
use crate::tls::TlsOptions;

/// TLS options (`--ca`, `--cert`, `--key`, `--tls-server-name`), also read
/// from `RINGKV_CA`, `RINGKV_CERT`, `RINGKV_KEY` and
/// `RINGKV_TLS_SERVER_NAME`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// CA certificate (PEM) that signed the nodes' certificates; connects
    /// over TLS.
    #[arg(long, value_name = "FILE", env = "RINGKV_CA")]
    pub ca: Option<PathBuf>,

    /// Client certificate (PEM), for nodes that require one.
    #[arg(long, value_name = "FILE", env = "RINGKV_CERT", requires = "key")]
    pub cert: Option<PathBuf>,

    /// Key of the client certificate (PEM).
    #[arg(long, value_name = "FILE", env = "RINGKV_KEY", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Name to check in node certificates instead of the host dialled.
    #[arg(long, value_name = "NAME", env = "RINGKV_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,
}

impl TlsArgs {
    /// The TLS settings these options give; `None` without `--ca`.
    pub fn options(&self) -> Result<Option<TlsOptions>> {
        let Some(ca) = &self.ca else {
            return Ok(None);
        };
        let mut tls = TlsOptions::from_ca_file(ca)?;
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            tls = tls.identity_files(cert, key)?;
        }
        if let Some(name) = &self.tls_server_name {
            tls = tls.server_name(name.clone());
        }
        Ok(Some(tls))
    }
}

/// `--user NAME` (or `RINGKV_USER`); the password comes from
/// `RINGKV_PASSWORD`, or a prompt that does not echo.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UserArgs {
    /// User to authenticate as (nodes with authentication on); the password
    /// comes from RINGKV_PASSWORD or a prompt.
    #[arg(long, short = 'u', value_name = "NAME", env = "RINGKV_USER")]
    pub user: Option<String>,
}

impl UserArgs {
    /// The credentials these options give; `None` without `--user`.
    pub fn credentials(&self) -> Result<Option<Credentials>> {
        let Some(user) = &self.user else {
            return Ok(None);
        };
        let password = match std::env::var("RINGKV_PASSWORD") {
            Ok(password) => password,
            Err(_) => {
                rpassword::prompt_password(format!("password for {user}: ")).map_err(|error| {
                    Error::InvalidArgument(format!(
                        "cannot read a password ({error}); set RINGKV_PASSWORD"
                    ))
                })?
            }
        };
        Ok(Some(Credentials {
            user: user.clone(),
            password,
        }))
    }
}
