//! The contract's wire types (see `../shared/api-contract.md` and `docs/api.md`).
//! Unknown fields are ignored, as the contract asks, so newer servers stay compatible.

use serde::{Deserialize, Serialize};

/// `200 OK` body of `GET /v1/instances/{id}/ssh-keys`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct KeyList {
    pub version: String,
    pub keys: Vec<WireKey>,
}

/// One key as the control plane sends it, before validation.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct WireKey {
    pub id: String,
    pub name: String,
    pub public_key: String,
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub users: Option<Vec<String>>,
}
