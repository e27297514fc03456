//! The server's TLS identity: a certificate chain and its private key, as
//! PEM. `Debug` never shows the key.

use crate::error::{Error, Result};
use std::fmt;
use std::path::Path;

#[derive(Clone)]
pub struct TlsIdentity {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TlsIdentity {{ cert: {} bytes of PEM, key: (hidden) }}",
            self.cert_pem.len()
        )
    }
}

impl TlsIdentity {
    pub fn from_pem(cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> TlsIdentity {
        TlsIdentity {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
        }
    }

    /// Reads the certificate chain and the key from PEM files.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsIdentity> {
        let read = |field: &str, path: &Path| {
            std::fs::read(path)
                .map_err(|error| Error::invalid(field, format!("{}: {error}", path.display())))
        };
        Ok(TlsIdentity::from_pem(
            read("tls-cert", cert)?,
            read("tls-key", key)?,
        ))
    }

    pub(crate) fn identity(&self) -> tonic::transport::Identity {
        tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}
