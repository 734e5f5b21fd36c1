//! `rediss://` support (crate feature `tls`).

/// Makes rustls use ring, unless the process already chose a crypto provider.
///
/// rustls needs exactly one process-wide provider; if several are compiled in (another crate
/// enabled aws-lc-rs), it cannot pick one by itself and TLS connections would fail.
#[cfg(feature = "tls")]
pub(crate) fn install_crypto_provider() {
    // An error means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Without the `tls` feature there is nothing to set up: `rediss://` URLs are rejected by the
/// driver as invalid input.
#[cfg(not(feature = "tls"))]
pub(crate) fn install_crypto_provider() {}
