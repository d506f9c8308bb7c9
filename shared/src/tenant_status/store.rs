//! The status bucket: one key per (tenant, service, replica), memory storage
//! (it is rebuilt within one refresh period after a restart), replicated like
//! the streams, and a max age after which an entry nobody rewrote is gone, so
//! a dead replica's records expire on their own. Listing reads the stream's
//! per-subject index under a key filter, then each key's last value: one
//! tenant costs a few requests, whatever the fleet's size.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::{StreamExt as _, TryStreamExt as _};

use crate::{
    ids::TenantId,
    subjects,
    tenant_status::record::{RECORD_VERSION, StatusRecord},
};

/// Keys read at once when listing.
const READ_CONCURRENCY: usize = 32;

/// The status bucket.
#[derive(Clone)]
pub struct StatusStore {
    kv: kv::Store,
}

impl std::fmt::Debug for StatusStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusStore")
            .field("bucket", &self.kv.name)
            .finish()
    }
}

impl StatusStore {
    /// Creates or updates the bucket (any replica may be first).
    pub async fn open(
        js: &jetstream::Context,
        max_age: Duration,
        replicas: usize,
    ) -> Result<Self, async_nats::Error> {
        let kv = js
            .create_or_update_key_value(kv::Config {
                bucket: subjects::STATUS_BUCKET.to_owned(),
                description: "Switchyard: the state each replica holds per tenant".to_owned(),
                history: 1,
                max_age,
                // Rebuilt by the replicas within a refresh period: no disk needed.
                storage: jetstream::stream::StorageType::Memory,
                num_replicas: replicas,
                max_value_size: 16 * 1024,
                ..Default::default()
            })
            .await?;
        Ok(Self { kv })
    }

    /// [`StatusStore::open`], tried again (1 s, doubling to 30 s) until it
    /// works or `shutdown`. The status is for operators: a bucket that cannot
    /// be created yet (a NATS election, a slow start on a loaded machine)
    /// must not stop a worker, nor delay its start. A worker that died of it
    /// after joining its lanes' membership made the others move partitions
    /// back and forth while it was restarted (chaos router kills under load:
    /// replies 13 s late).
    pub async fn open_eventually(
        js: &jetstream::Context,
        max_age: Duration,
        replicas: usize,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Option<Self> {
        let mut pause = Duration::from_secs(1);
        loop {
            match Self::open(js, max_age, replicas).await {
                Ok(store) => return Some(store),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?pause, "cannot create or open the tenant status bucket yet; status is not published meanwhile");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    }

    /// The existing bucket, for readers; `None` when no replica created it yet.
    pub async fn existing(js: &jetstream::Context) -> Result<Option<Self>, async_nats::Error> {
        use jetstream::{ErrorCode, context::GetStreamErrorKind};
        // Ask for the stream first: "no such bucket" is an answer, not an error.
        match js
            .get_stream(format!("KV_{}", subjects::STATUS_BUCKET))
            .await
        {
            Err(e)
                if matches!(e.kind(), GetStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        Ok(Some(Self {
            kv: js.get_key_value(subjects::STATUS_BUCKET).await?,
        }))
    }

    /// Writes one record under its key.
    pub async fn put(&self, record: &StatusRecord) -> Result<(), async_nats::Error> {
        let key = subjects::status_key(&record.tenant, record.service, &record.replica);
        self.kv.put(key, serde_json::to_vec(record)?.into()).await?;
        Ok(())
    }

    /// Every current record of one tenant.
    pub async fn tenant(&self, tenant: &TenantId) -> Result<Vec<StatusRecord>, async_nats::Error> {
        self.read(&subjects::status_tenant_filter(tenant)).await
    }

    /// Every current record.
    pub async fn all(&self) -> Result<Vec<StatusRecord>, async_nats::Error> {
        self.read(">").await
    }

    async fn read(&self, key_filter: &str) -> Result<Vec<StatusRecord>, async_nats::Error> {
        let prefix = format!("$KV.{}.", self.kv.name);
        let stream = &self.kv.stream;
        let subjects: Vec<String> = stream
            .info_with_subjects(format!("{prefix}{key_filter}"))
            .await?
            .map_ok(|(subject, _)| subject)
            .try_collect()
            .await?;
        let keys = subjects
            .into_iter()
            .filter_map(|s| s.strip_prefix(&prefix).map(str::to_owned));
        let values: Vec<Option<bytes::Bytes>> = futures::stream::iter(keys)
            .map(|key| {
                let kv = self.kv.clone();
                async move { kv.get(key).await }
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(values
            .into_iter()
            .flatten()
            .filter_map(|v| serde_json::from_slice::<StatusRecord>(&v).ok())
            .filter(|r| r.version == RECORD_VERSION)
            .collect())
    }
}
