//! STUB (replaced by the cacheui branch).
#![allow(missing_docs, clippy::all, clippy::pedantic)]
use crate::error::BuildError;
use kiln_store::Store;
use serde::{Deserialize, Serialize};
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CacheRecord {
    pub key: String,
    pub description: String,
    pub layer: Option<CachedLayer>,
    pub created: String,
}
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CachedLayer {
    pub descriptor: kiln_store::spec::Descriptor,
    pub diff_id: String,
    pub diff_size: u64,
}
pub struct BuildCache<'a> {
    store: &'a Store,
}
impl<'a> BuildCache<'a> {
    pub fn new(store: &'a Store) -> Self {
        Self { store }
    }
    pub fn get(&self, key: &str) -> Result<Option<CacheRecord>, BuildError> {
        let p = self
            .store
            .cache_dir()
            .join(format!("{}.json", key.trim_start_matches("sha256:")));
        Ok(std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }
    pub fn put(&self, r: &CacheRecord) -> Result<(), BuildError> {
        let p = self
            .store
            .cache_dir()
            .join(format!("{}.json", r.key.trim_start_matches("sha256:")));
        std::fs::write(&p, serde_json::to_vec(r).unwrap()).map_err(|e| BuildError::io(&p, e))
    }
}
