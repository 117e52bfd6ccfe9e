//! Drivers: the same three operations against each store measured.
//!
//! - `ringkv://host:port[,host:port...]`: the ringkv client library
//!   (token-aware, with the configured consistency levels);
//! - `redis://host:port`: redis-server through the `redis` crate, one
//!   multiplexed connection per worker;
//! - `etcd://host:port[,host:port...]`: etcd through `etcd-client`
//!   (linearizable reads, etcd's default);
//! - `k2v://KEY_ID:SECRET@host:port[,host:port...]/BUCKET`: Garage's K2V
//!   API, SigV4-signed HTTP (see [`crate::k2v`]);
//! - `rocksdb:///path`: RocksDB in this process through ringkv's own
//!   storage engine, the ceiling the node's storage layer can reach.
//!
//! Rows (workloads e, ts, batch) run on ringkv (rows of partitions), on
//! Redis (fields of hashes: `HGET`, `HSET`, `HDEL`; a range read is an
//! `HGETALL` of the whole hash, Redis hashes having no order) and on K2V
//! (items; `ReadBatch` ranges, `InsertBatch`).

use std::sync::Arc;

use bytes::Bytes;
use ringkv_client::{Client, ClientConfig, Consistency, Query, ReadOptions, WriteOptions};

use crate::error::DriverError;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub read_consistency: Consistency,
    pub write_consistency: Consistency,
    /// TLS to ringkv nodes.
    pub tls: Option<ringkv_client::TlsOptions>,
    /// A user, for ringkv nodes with authentication on.
    pub credentials: Option<ringkv_client::Credentials>,
}

/// A connection to the store under test. Cheap to clone; `for_worker`
/// gives each worker its own connection where the store benefits.
#[derive(Clone)]
pub enum Driver {
    Ringkv {
        client: Client,
        read: ReadOptions,
        write: WriteOptions,
    },
    Redis {
        client: Box<redis::Client>,
        connection: redis::aio::MultiplexedConnection,
    },
    Etcd(Box<etcd_client::Client>),
    K2v(Box<crate::k2v::K2v>),
    Rocks(Arc<ringkv_node::storage::RocksStorage>),
    #[cfg(test)]
    Fake(Arc<crate::runner::tests::FakeStore>),
}

impl Driver {
    /// Connects to `target`.
    pub async fn connect(target: &Target) -> Result<Driver, String> {
        let (scheme, rest) = target
            .url
            .split_once("://")
            .ok_or_else(|| format!("bad target {:?}: expected scheme://address", target.url))?;
        match scheme {
            "ringkv" => {
                let mut config = ClientConfig::new(rest.split(',').map(str::to_owned));
                config.consistency = target.write_consistency;
                config.tls = target.tls.clone();
                config.credentials = target.credentials.clone();
                let client = Client::connect(config).await.map_err(|e| e.to_string())?;
                Ok(Driver::Ringkv {
                    client,
                    read: ReadOptions::default().consistency(target.read_consistency),
                    write: WriteOptions::default().consistency(target.write_consistency),
                })
            }
            "redis" => {
                let client = redis::Client::open(target.url.as_str()).map_err(|e| e.to_string())?;
                let connection = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| format!("cannot connect to redis at {rest}: {e}"))?;
                Ok(Driver::Redis {
                    client: Box::new(client),
                    connection,
                })
            }
            "etcd" => {
                let endpoints: Vec<String> =
                    rest.split(',').map(|e| format!("http://{e}")).collect();
                let client = etcd_client::Client::connect(endpoints, None)
                    .await
                    .map_err(|e| format!("cannot connect to etcd at {rest}: {e}"))?;
                Ok(Driver::Etcd(Box::new(client)))
            }
            "k2v" => Ok(Driver::K2v(Box::new(crate::k2v::K2v::connect(rest).await?))),
            "rocksdb" => {
                let path = std::path::Path::new(rest);
                std::fs::create_dir_all(path).map_err(|e| format!("cannot create {rest}: {e}"))?;
                let storage = ringkv_node::storage::RocksStorage::open(path, &Default::default())
                    .map_err(|e| format!("cannot open RocksDB at {rest}: {e}"))?;
                Ok(Driver::Rocks(Arc::new(storage)))
            }
            other => Err(format!(
                "unknown target scheme {other:?} (ringkv, redis, etcd, k2v, rocksdb)"
            )),
        }
    }

    /// A driver for one worker: its own connection where that helps.
    pub async fn for_worker(&self) -> Result<Driver, String> {
        match self {
            Driver::Redis { client, .. } => {
                let connection = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Driver::Redis {
                    client: client.clone(),
                    connection,
                })
            }
            Driver::K2v(k2v) => Ok(Driver::K2v(Box::new(k2v.for_worker()))),
            other => Ok(other.clone()),
        }
    }

    /// Reads a key; `Ok(None)` when absent.
    pub async fn get(&mut self, key: &str) -> Result<Option<Bytes>, DriverError> {
        match self {
            Driver::Ringkv { client, read, .. } => Ok(client
                .get_with(Bytes::copy_from_slice(key.as_bytes()), read)
                .await?
                .map(|v| v.value)),
            Driver::Redis { connection, .. } => {
                let value: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(key)
                    .query_async(connection)
                    .await
                    .map_err(DriverError::other)?;
                Ok(value.map(Bytes::from))
            }
            Driver::Etcd(client) => {
                let response = client.get(key, None).await.map_err(DriverError::other)?;
                Ok(response
                    .kvs()
                    .first()
                    .map(|kv| Bytes::copy_from_slice(kv.value())))
            }
            Driver::K2v(k2v) => k2v.get(key).await,
            Driver::Rocks(storage) => {
                use ringkv_node::storage::Storage;
                let token = ringkv_node::ring::Token::of(key.as_bytes());
                let cell = storage
                    .read(token, key.as_bytes())
                    .map_err(DriverError::other)?;
                Ok(cell.filter(|c| !c.tombstone).map(|c| c.value))
            }
            #[cfg(test)]
            Driver::Fake(store) => store.get(key).await,
        }
    }

    /// Writes a key no operation has written yet (load, YCSB inserts).
    pub async fn insert(&mut self, key: &str, value: &Bytes) -> Result<(), DriverError> {
        match self {
            Driver::K2v(k2v) => k2v.insert(key, value).await,
            _ => self.put(key, value).await,
        }
    }

    /// Writes a value.
    pub async fn put(&mut self, key: &str, value: &Bytes) -> Result<(), DriverError> {
        match self {
            Driver::Ringkv { client, write, .. } => {
                client
                    .put_with(Bytes::copy_from_slice(key.as_bytes()), value.clone(), write)
                    .await?;
                Ok(())
            }
            Driver::Redis { connection, .. } => redis::cmd("SET")
                .arg(key)
                .arg(value.as_ref())
                .query_async::<()>(connection)
                .await
                .map_err(DriverError::other),
            Driver::Etcd(client) => client
                .put(key, value.to_vec(), None)
                .await
                .map(|_| ())
                .map_err(DriverError::other),
            Driver::K2v(k2v) => k2v.put(key, value).await,
            Driver::Rocks(storage) => {
                use ringkv_node::storage::{Cell, Storage};
                let token = ringkv_node::ring::Token::of(key.as_bytes());
                let cell = Cell::live(ringkv_node::clock::wall_clock_micros(), value.clone(), None);
                storage
                    .write(token, key.as_bytes(), &cell, false)
                    .map_err(DriverError::other)
            }
            #[cfg(test)]
            Driver::Fake(store) => store.put(key).await,
        }
    }

    /// Reads the row `sort` of `partition` (a Redis hash's field).
    pub async fn get_row(
        &mut self,
        partition: &str,
        sort: &str,
    ) -> Result<Option<Bytes>, DriverError> {
        match self {
            Driver::Ringkv { client, read, .. } => Ok(client
                .get_row_with(owned(partition), owned(sort), read)
                .await?
                .map(|v| v.value)),
            Driver::Redis { connection, .. } => {
                let value: Option<Vec<u8>> = redis::cmd("HGET")
                    .arg(partition)
                    .arg(sort)
                    .query_async(connection)
                    .await
                    .map_err(DriverError::other)?;
                Ok(value.map(Bytes::from))
            }
            Driver::K2v(k2v) => k2v.get_row(partition, sort).await,
            #[cfg(test)]
            Driver::Fake(store) => store.get(partition).await,
            _ => Err(no_rows()),
        }
    }

    /// Writes the row `sort` of `partition`.
    pub async fn put_row(
        &mut self,
        partition: &str,
        sort: &str,
        value: &Bytes,
    ) -> Result<(), DriverError> {
        match self {
            Driver::Ringkv { client, write, .. } => {
                client
                    .put_row_with(owned(partition), owned(sort), value.clone(), write)
                    .await?;
                Ok(())
            }
            Driver::Redis { connection, .. } => redis::cmd("HSET")
                .arg(partition)
                .arg(sort)
                .arg(value.as_ref())
                .query_async::<()>(connection)
                .await
                .map_err(DriverError::other),
            Driver::K2v(k2v) => k2v.put_row(partition, sort, value).await,
            #[cfg(test)]
            Driver::Fake(store) => store.put(partition).await,
            _ => Err(no_rows()),
        }
    }

    /// Writes a row no operation has written yet (load, inserts).
    pub async fn insert_row(
        &mut self,
        partition: &str,
        sort: &str,
        value: &Bytes,
    ) -> Result<(), DriverError> {
        match self {
            Driver::K2v(k2v) => k2v.insert_row(partition, sort, value).await,
            _ => self.put_row(partition, sort, value).await,
        }
    }

    /// Deletes the row `sort` of `partition`.
    pub async fn delete_row(&mut self, partition: &str, sort: &str) -> Result<(), DriverError> {
        match self {
            Driver::Ringkv { client, write, .. } => {
                client
                    .delete_row_with(owned(partition), owned(sort), write)
                    .await?;
                Ok(())
            }
            Driver::Redis { connection, .. } => redis::cmd("HDEL")
                .arg(partition)
                .arg(sort)
                .query_async::<()>(connection)
                .await
                .map_err(DriverError::other),
            Driver::K2v(k2v) => k2v.delete_row(partition, sort).await,
            #[cfg(test)]
            Driver::Fake(store) => store.put(partition).await,
            _ => Err(no_rows()),
        }
    }

    /// Up to `length` rows of `partition` from `sort` on, in order; how
    /// many were read. A Redis hash has no order: its whole hash is read
    /// (`HGETALL`), the only range read it has.
    pub async fn scan(
        &mut self,
        partition: &str,
        sort: &str,
        length: u32,
    ) -> Result<u64, DriverError> {
        match self {
            Driver::Ringkv { client, read, .. } => {
                let mut query = Query::new().from(owned(sort)).limit(length);
                query.consistency = read.consistency;
                let page = client.query_page(owned(partition), &query, None).await?;
                Ok(page.rows.len() as u64)
            }
            Driver::Redis { .. } => self.whole_hash(partition).await,
            Driver::K2v(k2v) => k2v.range(partition, Some(sort), length, false).await,
            #[cfg(test)]
            Driver::Fake(store) => store.get(partition).await.map(|_| u64::from(length)),
            _ => Err(no_rows()),
        }
    }

    /// The last `count` rows of `partition`, newest first; how many were
    /// read (a Redis hash: all of it, `HGETALL`).
    pub async fn latest(&mut self, partition: &str, count: u32) -> Result<u64, DriverError> {
        match self {
            Driver::Ringkv { client, read, .. } => {
                let mut query = Query::new().reverse().limit(count);
                query.consistency = read.consistency;
                let page = client.query_page(owned(partition), &query, None).await?;
                Ok(page.rows.len() as u64)
            }
            Driver::Redis { .. } => self.whole_hash(partition).await,
            Driver::K2v(k2v) => k2v.range(partition, None, count, true).await,
            #[cfg(test)]
            Driver::Fake(store) => store.get(partition).await.map(|_| u64::from(count)),
            _ => Err(no_rows()),
        }
    }

    /// Writes `rows` (sort key, value) of `partition` in one partition
    /// batch (a Redis hash: one `HSET` of every field).
    pub async fn batch(
        &mut self,
        partition: &str,
        rows: &[(String, Bytes)],
    ) -> Result<(), DriverError> {
        match self {
            Driver::Ringkv { client, write, .. } => {
                let mut batch = ringkv_client::Batch::new();
                for (sort, value) in rows {
                    batch.put(owned(partition), owned(sort), value.clone());
                }
                for written in client.batch_with(&batch, write).await? {
                    written.result?;
                }
                Ok(())
            }
            Driver::Redis { connection, .. } => {
                let mut command = redis::cmd("HSET");
                command.arg(partition);
                for (sort, value) in rows {
                    command.arg(sort).arg(value.as_ref());
                }
                command
                    .query_async::<()>(connection)
                    .await
                    .map_err(DriverError::other)
            }
            Driver::K2v(k2v) => k2v.insert_batch(partition, rows).await,
            #[cfg(test)]
            Driver::Fake(store) => store.put(partition).await,
            _ => Err(no_rows()),
        }
    }

    /// `HGETALL`: the fields of a Redis hash; how many.
    async fn whole_hash(&mut self, partition: &str) -> Result<u64, DriverError> {
        let Driver::Redis { connection, .. } = self else {
            return Err(no_rows());
        };
        let fields: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(partition)
            .query_async(connection)
            .await
            .map_err(DriverError::other)?;
        Ok(fields.len() as u64)
    }

    /// Deletes a key.
    pub async fn delete(&mut self, key: &str) -> Result<(), DriverError> {
        match self {
            Driver::Ringkv { client, write, .. } => {
                client
                    .delete_with(Bytes::copy_from_slice(key.as_bytes()), write)
                    .await?;
                Ok(())
            }
            Driver::Redis { connection, .. } => redis::cmd("DEL")
                .arg(key)
                .query_async::<()>(connection)
                .await
                .map_err(DriverError::other),
            Driver::Etcd(client) => client
                .delete(key, None)
                .await
                .map(|_| ())
                .map_err(DriverError::other),
            Driver::K2v(k2v) => k2v.delete(key).await,
            Driver::Rocks(storage) => {
                use ringkv_node::storage::{Cell, Storage};
                let token = ringkv_node::ring::Token::of(key.as_bytes());
                let now = ringkv_node::clock::wall_clock_micros();
                let cell = Cell::tombstone(now, now / 1_000_000);
                storage
                    .write(token, key.as_bytes(), &cell, false)
                    .map_err(DriverError::other)
            }
            #[cfg(test)]
            Driver::Fake(store) => store.put(key).await,
        }
    }
}

fn owned(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn no_rows() -> DriverError {
    DriverError::other(
        "rows (partitions and sort keys) are measured on ringkv://, redis:// and k2v:// targets",
    )
}
