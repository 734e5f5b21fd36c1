//! Finding the server binaries, with a clear error naming the package to
//! install when one is missing.

use std::path::{Path, PathBuf};

use super::error::{HarnessError, Result};

/// Directories searched after `PATH`, for binaries Debian keeps off it.
const EXTRA_DIRS: &[&str] = &[
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
    "/usr/lib/postgresql/14/bin",
    "/usr/local/bin",
    "/usr/bin",
    "/usr/sbin",
];

/// The Debian package providing `binary`, for the error message.
fn package_of(binary: &str) -> &'static str {
    match binary {
        "redis-server" => "redis-server",
        "etcd" => "etcd-server",
        "postgres" | "initdb" => "postgresql-15",
        "pg_isready" | "psql" | "pg_basebackup" => "postgresql-client-15",
        "pgbouncer" => "pgbouncer",
        "setpriv" | "ipcrm" => "util-linux",
        "cp" => "coreutils",
        "openssl" => "openssl",
        _ => "(unknown)",
    }
}

/// Find `binary` on `PATH` or in the usual Debian locations.
pub(crate) fn find(binary: &str) -> Result<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            HarnessError::new(format!(
                "server binary `{binary}` not found on PATH or in {EXTRA_DIRS:?}; \
                 install the Debian package `{}` (a missing server is a test failure, not a skip)",
                package_of(binary)
            ))
        })
}

/// Find `binary` next to `sibling_of` (e.g. `pg_isready` next to `postgres`,
/// after resolving symlinks), falling back to [`find`].
pub(crate) fn find_sibling(binary: &str, sibling_of: &Path) -> Result<PathBuf> {
    if let Ok(real) = sibling_of.canonicalize()
        && let Some(dir) = real.parent()
    {
        let candidate = dir.join(binary);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    find(binary)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_names_the_binary_and_the_package() {
        let err = find("etcd-definitely-not-installed").unwrap_err();
        assert!(
            err.message()
                .contains("`etcd-definitely-not-installed` not found")
        );
        assert!(err.message().contains("install the Debian package"));
        assert_eq!(package_of("etcd"), "etcd-server");
        assert_eq!(package_of("postgres"), "postgresql-15");
    }

    #[test]
    fn finds_the_installed_servers() {
        for binary in ["redis-server", "etcd", "postgres", "setpriv"] {
            find(binary).unwrap();
        }
        let postgres = find("postgres").unwrap();
        let pg_isready = find_sibling("pg_isready", &postgres).unwrap();
        assert!(
            pg_isready.starts_with("/usr/lib/postgresql"),
            "{pg_isready:?}"
        );
    }
}
