//! Reading and writing the PKI's files: PEM parsing with errors that name the file,
//! and atomic writes (temp file, fsync, rename) with an explicit mode, so a crash
//! never leaves a half-written key or kubeconfig behind.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rcgen::KeyPair;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::PkiError;

/// Mode of private keys and kubeconfigs: owner only.
pub const PRIVATE: u32 = 0o600;
/// Mode of certificates: anyone may read them.
pub const PUBLIC: u32 = 0o644;

/// The file's text, or `None` when it does not exist.
pub fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| PkiError::Corrupt {
            path: path.to_path_buf(),
            reason: "not a PEM text file".into(),
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The first certificate of a PEM file.
pub fn parse_cert(path: &Path, pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    let corrupt = |reason: String| PkiError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|err| corrupt(format!("no PEM certificate found ({err})")))?;
    x509_parser::parse_x509_certificate(&der).map_err(|err| corrupt(format!("invalid X.509 certificate: {err}")))?;
    Ok(der)
}

/// A PEM private key (PKCS#8, as this module writes them).
pub fn parse_key(path: &Path, pem: &str) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(pem).map_err(|err| PkiError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("not a usable private key: {err}"),
    })
}

/// Writes `contents` to `path` atomically with exactly `mode` (whatever the umask).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let failed = |source: io::Error| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| failed(io::ErrorKind::InvalidInput.into()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);

    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|err| {
        let _ = fs::remove_file(&tmp);
        failed(err)
    })
}

/// Creates `dir` (and its parents) if needed; a new leaf directory gets `mode`.
pub fn create_dir(dir: &Path, mode: u32) -> Result<(), PkiError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|source| PkiError::Write {
            path: dir.to_path_buf(),
            source,
        })
}
