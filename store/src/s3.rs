//! `s3://` locations for Delta: object_store's own S3 client, configured from
//! the standard AWS environment variables (and any options a table builder
//! passes), committing through Delta's default log store (conditional
//! writes: a commit file is created only if it does not exist yet).
//!
//! This is what deltalake's `s3` feature registers, without the AWS SDK's
//! credential chain (shared config files, SSO profiles): object_store reads
//! keys from the environment, web-identity tokens, ECS task roles and
//! instance metadata itself, and the SDK was 31 crates of the build.

use std::str::FromStr;
use std::sync::{Arc, Once};

use deltalake::logstore::object_store::ObjectStoreScheme;
use deltalake::logstore::object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError, Path};
use url::Url;

/// Registers the `s3://` and `s3a://` schemes with deltalake, once per process.
pub(crate) fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for scheme in ["s3", "s3a"] {
            let Ok(url) = Url::parse(&format!("{scheme}://")) else {
                continue;
            };
            object_store_factories().insert(url.clone(), Arc::new(S3Stores));
            logstore_factories().insert(url, Arc::new(S3Logs));
        }
    });
}

struct S3Stores;

impl ObjectStoreFactory for S3Stores {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        // The environment first, then the table's own options over it.
        let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
        let mut copy_configured = false;
        for (key, value) in &config.raw {
            if let Ok(key) = AmazonS3ConfigKey::from_str(&key.to_ascii_lowercase()) {
                copy_configured |= matches!(key, AmazonS3ConfigKey::CopyIfNotExists);
                builder = builder.with_config(key, value);
            }
        }
        // As deltalake's own S3 support does: a copy that must not overwrite
        // goes through a multipart upload unless the user chose otherwise.
        if !copy_configured && std::env::var_os("AWS_COPY_IF_NOT_EXISTS").is_none() {
            builder = builder.with_config(AmazonS3ConfigKey::CopyIfNotExists, "multipart");
        }
        let store = builder.build()?;
        let (_, path) =
            ObjectStoreScheme::parse(url).map_err(|e| DeltaTableError::GenericError {
                source: Box::new(e),
            })?;
        Ok((Arc::new(store), Path::parse(path)?))
    }
}

struct S3Logs;

impl LogStoreFactory for S3Logs {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}
