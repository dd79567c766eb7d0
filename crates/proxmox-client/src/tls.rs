//! TLS trust: pin the node certificate's SHA-256 fingerprint (the `AB:CD:…` form `pvenode cert
//! info` prints), or trust a given CA file. There is no way to switch verification off. A pinned
//! certificate still has to prove it holds its key: handshake signatures are verified as usual.
//! It must never accept a certificate without a pin or a CA.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

/// How the client decides to trust the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// The certificate whose SHA-256 is this.
    Fingerprint([u8; 32]),
    /// Certificates chaining to the CA(s) in this PEM file.
    CaFile(PathBuf),
}

/// Parses `AB:CD:…` (32 pairs, any case; colons optional).
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("{s:?} is not a SHA-256 fingerprint (32 hex pairs)"));
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The `AB:CD:…` form of a certificate's SHA-256.
pub fn fingerprint_of(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[derive(Debug)]
struct Pinned {
    sha256: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if got == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate fingerprint {} is not the pinned one",
                fingerprint_of(end_entity.as_ref())
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client certificate to present (mutual TLS), as PEM files: the certificate (and its chain)
/// and its private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate chain, PEM.
    pub cert_file: std::path::PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: std::path::PathBuf,
}

/// The rustls client configuration for `trust`.
pub fn client_config(trust: &Trust) -> Result<rustls::ClientConfig, String> {
    client_config_with(trust, None)
}

/// The rustls client configuration for `trust`, presenting `identity` when the server asks
/// for a client certificate. Errors name the file.
pub fn client_config_with(
    trust: &Trust,
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let wants_cert = match trust {
        Trust::Fingerprint(sha256) => {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned {
                    sha256: *sha256,
                    provider,
                }))
        }
        Trust::CaFile(path) => {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
            {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no CA certificate in it", path.display()));
            }
            builder.with_root_certificates(roots)
        }
    };
    let Some(id) = identity else {
        return Ok(wants_cert.with_no_client_auth());
    };
    let shown = |p: &std::path::Path, e: &dyn std::fmt::Display| format!("{}: {e}", p.display());
    let chain = CertificateDer::pem_file_iter(&id.cert_file)
        .map_err(|e| shown(&id.cert_file, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| shown(&id.cert_file, &e))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in it", id.cert_file.display()));
    }
    // The key's text never reaches an error: only the file's name and what went wrong.
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&id.key_file)
        .map_err(|e| shown(&id.key_file, &e))?;
    wants_cert
        .with_client_auth_cert(chain, key)
        .map_err(|e| shown(&id.cert_file, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_in_pvenode_form() {
        let der = b"not really a certificate";
        let shown = fingerprint_of(der);
        assert_eq!(shown.len(), 32 * 3 - 1);
        assert_eq!(
            parse_fingerprint(&shown).unwrap(),
            <[u8; 32]>::from(Sha256::digest(der))
        );
        assert_eq!(
            parse_fingerprint(&shown.to_lowercase()).unwrap(),
            parse_fingerprint(&shown).unwrap()
        );
        assert!(parse_fingerprint("AB:CD").is_err());
        assert!(parse_fingerprint(&"ZZ:".repeat(32)[..95]).is_err());
    }
}
