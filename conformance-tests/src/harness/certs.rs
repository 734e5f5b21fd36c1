//! A throwaway certificate authority and a server certificate for `localhost` and
//! `127.0.0.1`, made with the `openssl` command, for servers the harness starts with TLS.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::binaries;
use super::error::{HarnessError, Result, ResultExt};

/// The files of a server's TLS setup, all PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The authority's certificate: what a client must trust.
    pub ca_cert: PathBuf,
    /// The server's certificate (signed by the authority).
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
}

impl TlsFiles {
    /// The authority's certificate, read from disk.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn ca_pem(&self) -> Result<Vec<u8>> {
        std::fs::read(&self.ca_cert).ctx(|| format!("read {}", self.ca_cert.display()))
    }
}

/// A new authority and server certificate in `dir` (P-256 keys, valid for two days).
pub(crate) fn generate(dir: &Path) -> Result<TlsFiles> {
    let openssl_bin = binaries::find("openssl")?;
    let files = TlsFiles {
        ca_cert: dir.join("ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
    };
    let ca_key = dir.join("ca.key");
    let csr = dir.join("server.csr");
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .ctx(|| format!("write {}", ext.display()))?;
    const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let authority = [&["req", "-x509", "-nodes", "-days", "2"][..], &EC[..]].concat();
    openssl(
        &openssl_bin,
        &authority,
        &[
            ("-subj", Path::new("/CN=fencelock test authority")),
            ("-keyout", &ca_key),
            ("-out", &files.ca_cert),
        ],
    )?;
    let request = [&["req", "-nodes"][..], &EC[..]].concat();
    openssl(
        &openssl_bin,
        &request,
        &[
            ("-subj", Path::new("/CN=localhost")),
            ("-keyout", &files.server_key),
            ("-out", &csr),
        ],
    )?;
    openssl(
        &openssl_bin,
        &["x509", "-req", "-days", "2", "-CAcreateserial"],
        &[
            ("-in", &csr),
            ("-CA", &files.ca_cert),
            ("-CAkey", &ca_key),
            ("-extfile", &ext),
            ("-out", &files.server_cert),
        ],
    )?;
    Ok(files)
}

/// Runs `openssl args… (option path)…`.
fn openssl(program: &Path, args: &[&str], paths: &[(&str, &Path)]) -> Result<()> {
    let mut command = Command::new(program);
    command.args(args);
    for (option, path) in paths {
        command.arg(option).arg(path);
    }
    let out = command
        .output()
        .ctx(|| format!("run {}", program.display()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(HarnessError::new(format!(
        "openssl {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}
