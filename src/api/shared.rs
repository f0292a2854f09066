//! One API client shared by the tasks that talk to the control plane, built on first
//! use and built again after a failure to build it (a token file that appears later).

use std::sync::{Arc, Mutex};

use super::{ApiClient, ApiError};
use crate::config::ApiConfig;

pub struct SharedClient {
    config: ApiConfig,
    client: Mutex<Option<Arc<ApiClient>>>,
}

impl SharedClient {
    pub fn new(config: ApiConfig) -> Arc<SharedClient> {
        Arc::new(SharedClient {
            config,
            client: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    /// The client, building it if needed.
    pub fn get(&self) -> Result<Arc<ApiClient>, ApiError> {
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = Arc::new(ApiClient::new(&self.config)?);
        *slot = Some(client.clone());
        Ok(client)
    }
}
