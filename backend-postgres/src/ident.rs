//! SQL identifiers from configuration: validated, then always double-quoted.
//!
//! Table, schema, column and channel names cannot be bound as parameters, so they end up in
//! statement text. They are accepted only if they match `[A-Za-z_][A-Za-z0-9_]{0,62}` and are
//! then quoted, so nothing a user configures can change the shape of a statement.

use std::fmt;

use fencelock_core::Error;
use serde::{Deserialize, Serialize};

/// A validated SQL identifier: an ASCII letter or `_`, then up to 62 letters, digits or `_`.
///
/// It is always written double-quoted, so `Leases` and `leases` are different tables (as in
/// any quoted identifier) and PostgreSQL keywords such as `user` are fine.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ident(String);

impl Ident {
    /// The longest identifier PostgreSQL keeps without truncating (`NAMEDATALEN - 1`).
    pub const MAX_LEN: usize = 63;

    /// Validates `name` as an identifier; `what` names it in the error ("table", "schema", …).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `name` is empty, longer than 63 bytes, or has a character
    /// outside `[A-Za-z0-9_]` (or starts with a digit).
    pub fn new(what: &'static str, name: &str) -> Result<Self, Error> {
        let mut chars = name.chars();
        let Some(first) = chars.next() else {
            return Err(Error::invalid(what, "it is empty; give an SQL identifier"));
        };
        if name.len() > Self::MAX_LEN {
            return Err(Error::invalid(
                what,
                format!(
                    "`{}…` is {} bytes long; PostgreSQL identifiers are at most {} bytes",
                    name.chars().take(16).collect::<String>(),
                    name.len(),
                    Self::MAX_LEN
                ),
            ));
        }
        let first_ok = first.is_ascii_alphabetic() || first == '_';
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::invalid(
                what,
                format!(
                    "{name:?} is not a plain identifier; use an ASCII letter or `_` followed by letters, digits or `_`"
                ),
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The identifier as given (unquoted).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The identifier double-quoted, ready for statement text.
    pub fn quoted(&self) -> String {
        // Validation admits no `"`, so quoting needs no escaping.
        format!("\"{}\"", self.0)
    }
}

impl fmt::Debug for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Ident {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::new("identifier", &s)
    }
}

impl From<Ident> for String {
    fn from(ident: Ident) -> String {
        ident.0
    }
}

/// A schema-qualified table name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TableName {
    schema: Ident,
    table: Ident,
}

impl TableName {
    /// Validates `schema` and `table`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when either is not a plain identifier (see [`Ident::new`]).
    pub fn new(schema: &str, table: &str) -> Result<Self, Error> {
        Ok(Self {
            schema: Ident::new("schema name", schema)?,
            table: Ident::new("table name", table)?,
        })
    }

    /// From already validated identifiers.
    pub fn from_idents(schema: Ident, table: Ident) -> Self {
        Self { schema, table }
    }

    /// The schema.
    pub fn schema(&self) -> &Ident {
        &self.schema
    }

    /// The table.
    pub fn table(&self) -> &Ident {
        &self.table
    }

    /// `"schema"."table"`, ready for statement text.
    pub fn quoted(&self) -> String {
        format!("{}.{}", self.schema.quoted(), self.table.quoted())
    }

    /// A table of the same schema named after this one: `<table><suffix>` (`suffix` is a
    /// plain identifier tail such as `_permits`). When that would pass [`Ident::MAX_LEN`], the
    /// table name is cut and an 8-hex-digit hash of the whole of it keeps two long names
    /// apart: `<cut table>_<hash><suffix>`. The same table always derives the same name.
    pub(crate) fn derived(&self, suffix: &str) -> Self {
        let table = self.table.as_str();
        let name = if table.len() + suffix.len() <= Ident::MAX_LEN {
            format!("{table}{suffix}")
        } else {
            // Identifiers are ASCII, so any byte offset is a character boundary.
            let keep = Ident::MAX_LEN - suffix.len() - 9;
            format!("{}_{:08x}{suffix}", &table[..keep], fnv1a(table.as_bytes()))
        };
        Self {
            schema: self.schema.clone(),
            table: Ident(name),
        }
    }
}

/// The 32-bit FNV-1a hash: fixed by its definition, so a derived table name never changes
/// between versions or platforms.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash: u32, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fencelock_core::ErrorKind;

    #[test]
    fn accepts_plain_identifiers_and_quotes_them() {
        for ok in [
            "a",
            "_",
            "fencelock_leases",
            "Leases",
            "user",
            "t1",
            &"x".repeat(63),
        ] {
            let ident = Ident::new("table name", ok).unwrap();
            assert_eq!(ident.as_str(), ok);
            assert_eq!(ident.quoted(), format!("\"{ok}\""));
        }
        assert_eq!(TableName::new("s", "T").unwrap().quoted(), "\"s\".\"T\"");
    }

    #[test]
    fn rejects_everything_else() {
        let too_long = "x".repeat(64);
        for bad in [
            "",
            "1abc",
            "a b",
            "a;b",
            "leases; DROP TABLE users; --",
            "x\"; DROP TABLE y; --",
            "a.b",
            "a-b",
            "ünï",
            "a\0",
            "$1",
            too_long.as_str(),
        ] {
            let err = Ident::new("table name", bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
            assert!(err.to_string().contains("table name"), "{err}");
        }
    }

    #[test]
    fn derived_tables_stay_valid_identifiers_and_apart() {
        let short = TableName::new("s", "leases").unwrap();
        assert_eq!(
            short.derived("_permits").quoted(),
            "\"s\".\"leases_permits\""
        );
        let a = TableName::new("s", &"a".repeat(63)).unwrap();
        let b = TableName::new("s", &format!("{}b", "a".repeat(62))).unwrap();
        let (da, db) = (a.derived("_semaphores"), b.derived("_semaphores"));
        assert_ne!(da, db, "two long tables derive two names");
        for derived in [&da, &db] {
            let name = derived.table().as_str();
            assert_eq!(name.len(), Ident::MAX_LEN, "{name}");
            assert!(name.ends_with("_semaphores"), "{name}");
            Ident::new("table name", name).unwrap();
        }
        assert_eq!(a.derived("_semaphores"), da, "the same name every time");
        // The hash is FNV-1a's published value, not a std hasher's (which may change).
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<Ident>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<Ident>("\"no way\"").is_err());
    }
}
