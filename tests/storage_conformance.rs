//! openraft's storage conformance suite, run against Tessera's RocksDB log
//! store and state machine (real RocksDB in a temp dir, real fsyncs).

use std::sync::Arc;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use tessera::metrics::Metrics;
use tessera::raft::log_store::LogStore;
use tessera::raft::snapshot_file::SnapshotDir;
use tessera::raft::state_machine::StateMachine;
use tessera::raft::types::TypeConfig;
use tessera::store::Store;

struct RocksBuilder;

fn se(e: &(dyn std::error::Error + 'static)) -> StorageError<TypeConfig> {
    StorageError::from_io_error(
        openraft::ErrorSubject::Store,
        openraft::ErrorVerb::Read,
        std::io::Error::other(e.to_string()),
    )
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(|e| se(&e))?;
        let store = Store::open(dir.path()).map_err(|e| se(&e))?;
        let metrics = Arc::new(Metrics::new());
        let snapshots = SnapshotDir::open(&dir.path().join("snapshots")).map_err(|e| se(&e))?;
        let log = LogStore::new(store.clone(), metrics.clone()).map_err(|e| se(&e))?;
        let sm = StateMachine::new(store, snapshots, metrics, Default::default()).map_err(|e| se(&e))?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_conformance() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(RocksBuilder).await
}
