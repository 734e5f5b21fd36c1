//! [`TableFence`]: the `Fence` contract over the table server's fenced values.

use fencelock_core::{Error, Fence, FencedValue, FencingToken, Operation, async_trait};

use fencelock_example_table_store::STORE;
use fencelock_example_table_store::server::TableServer;

/// Fenced writes into a [`TableServer`]: compare the token with the key's mark, write the
/// value and raise the mark in one server step.
#[derive(Clone, Debug)]
pub struct TableFence {
    server: TableServer,
}

impl TableFence {
    /// A fence over `server`.
    pub fn connect(server: &TableServer) -> Self {
        Self {
            server: server.clone(),
        }
    }
}

#[async_trait]
impl Fence for TableFence {
    fn backend(&self) -> &'static str {
        STORE
    }

    async fn write(&self, key: &str, token: FencingToken, value: &[u8]) -> Result<(), Error> {
        let answer = self
            .server
            .fenced_write(key, token.get(), value)
            .map_err(|down| Error::unavailable(STORE, Operation::FencedWrite, down))?;
        answer.map_err(|mark| Error::StaleToken {
            resource: key.to_owned(),
            presented: token,
            high_water: FencingToken::new(mark),
        })
    }

    async fn read(&self, key: &str) -> Result<Option<FencedValue>, Error> {
        let stored = self
            .server
            .fenced_read(key)
            .map_err(|down| Error::unavailable(STORE, Operation::FencedRead, down))?;
        Ok(stored.map(|(mark, value)| FencedValue::new(value, FencingToken::new(mark))))
    }
}
