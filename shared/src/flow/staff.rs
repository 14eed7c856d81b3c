//! Named staff keys: made, listed and revoked by an admin (the API's `/staff/keys`, or
//! `oms-local staff` on the machine), and looked up on every staff request. Each key is a record
//! of kind `staff_key` with its id as the record id; only its hash is stored.

use crate::app::App;
use crate::domain::staff::{self, Role, StaffKey, StaffUser};
use crate::ports::{Record, StoreError};

pub const KIND: &str = "staff_key";

/// At most this many keys are listed (a shop has a handful of people and tools).
pub const MAX_KEYS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum StaffError {
    #[error("no staff key {0}")]
    Unknown(String),
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn to_record(key: &StaffKey) -> Result<Record, StoreError> {
    Ok(Record {
        kind: KIND.into(),
        id: key.id.clone(),
        doc: serde_json::to_string(key).map_err(|e| StoreError::Backend(Box::new(e)))?,
        due: None,
        expires: None,
    })
}

fn from_record(r: &Record) -> Result<StaffKey, StoreError> {
    serde_json::from_str(&r.doc).map_err(|e| StoreError::Backend(Box::new(e)))
}

/// Makes a key for `name` with `role`; returns the stored record and the key itself, which is
/// shown once and never again.
pub async fn create(
    app: &App,
    name: &str,
    role: Role,
    by: &str,
) -> Result<(StaffKey, String), StaffError> {
    // 48 random bits name the key; 256 random bits are its secret.
    let mut bytes = [0u8; 6 + 32];
    getrandom::fill(&mut bytes).map_err(|e| StaffError::Random(e.to_string()))?;
    let id = hex::encode(&bytes[..6]);
    let secret = hex::encode(&bytes[6..]);
    let key = staff::key_text(&id, &secret);
    let stored = StaffKey {
        id,
        name: name.to_owned(),
        role,
        hash: staff::hash(&key),
        created_at: app.clock.now(),
        created_by: by.to_owned(),
        revoked_at: None,
        revoked_by: None,
    };
    app.store.put_record(&to_record(&stored)?).await?;
    tracing::info!(key_id = %stored.id, role = %role, by, "staff key made");
    Ok((stored, key))
}

/// Every key, newest first (revoked ones too: they are the audit trail).
pub async fn list(app: &App) -> Result<Vec<StaffKey>, StaffError> {
    let records = app.store.records(KIND, MAX_KEYS).await?;
    Ok(records
        .iter()
        .map(from_record)
        .collect::<Result<Vec<_>, _>>()?)
}

/// Revokes a key; revoking it again changes nothing.
pub async fn revoke(app: &App, id: &str, by: &str) -> Result<StaffKey, StaffError> {
    let record = app
        .store
        .record(KIND, id)
        .await?
        .ok_or_else(|| StaffError::Unknown(id.to_owned()))?;
    let mut key = from_record(&record)?;
    if key.revoked_at.is_none() {
        key.revoked_at = Some(app.clock.now());
        key.revoked_by = Some(by.to_owned());
        app.store.put_record(&to_record(&key)?).await?;
        tracing::info!(key_id = %key.id, by, "staff key revoked");
    }
    Ok(key)
}

/// The person a presented key belongs to, if it is a live named key: one read by the key's id.
pub async fn identify(app: &App, given: &str) -> Result<Option<StaffUser>, StoreError> {
    let Some(id) = staff::key_id(given) else {
        return Ok(None);
    };
    match app.store.record(KIND, id).await? {
        Some(r) => Ok(from_record(&r)?.admits(given)),
        None => Ok(None),
    }
}
