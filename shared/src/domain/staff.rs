//! Staff identities: named keys with a role, and what each role may do. Pure: the key's secret
//! part comes from the caller, and only its hash is kept.
//!
//! A key reads `oms_sk_<id>_<secret>`: `<id>` (12 hex digits) names the key in lists and
//! revocations and finds its record in one read; `<secret>` (64 hex digits, 256 random bits) is
//! never stored. The record keeps SHA-256 of the whole key. A fast hash is right here: the key
//! is random and long, so there is nothing to guess (password hashes are slow because passwords
//! are not); the hash only keeps a copy of the table from being a list of working keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a member of staff may do. Each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads orders, reviews, stock, alerts, the catalogue and the metrics.
    Viewer,
    /// Also acts on orders (cancel, change the address, decide reviews, returns) and sets stock.
    Operator,
    /// Also keeps the catalogue, the staff keys and the webhook endpoints.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The highest role an identity provider's claim names: `admin`, a list such as Cognito's
    /// `cognito:groups` (`[oms-operator other]`), or comma- or space-separated names, with or
    /// without an `oms-` prefix.
    pub fn from_claim(claim: &str) -> Option<Role> {
        claim
            .split([',', ' ', '[', ']', '"'])
            .filter_map(|word| Role::parse(word.strip_prefix("oms-").unwrap_or(word)))
            .max()
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a staff request comes from: the name the timeline records, and the role checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffUser {
    pub name: String,
    pub role: Role,
    /// The shared `OMS_STAFF_TOKEN` (not a named key or a person): its actions may name who
    /// acted (`by`, `reviewer`).
    pub shared: bool,
}

/// A named staff key as stored: no secret, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffKey {
    pub id: String,
    /// The person or tool the key belongs to; the timeline records it.
    pub name: String,
    pub role: Role,
    /// SHA-256 of the whole key, lower-case hex.
    pub hash: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

pub const KEY_PREFIX: &str = "oms_sk_";

/// The key made of an id and a secret (both lower-case hex).
pub fn key_text(id: &str, secret: &str) -> String {
    format!("{KEY_PREFIX}{id}_{secret}")
}

/// The id part of something that looks like a staff key.
pub fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 12) && hex(secret, 64)).then_some(id)
}

pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl StaffKey {
    /// The identity `given` proves, if it is this key and the key is not revoked. The hashes are
    /// compared in constant time.
    pub fn admits(&self, given: &str) -> Option<StaffUser> {
        let matches: bool = hash(given).as_bytes().ct_eq(self.hash.as_bytes()).into();
        (matches && self.revoked_at.is_none()).then(|| StaffUser {
            name: self.name.clone(),
            role: self.role,
            shared: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_read_from_claims() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        let cases = [
            ("admin", Some(Role::Admin)),
            ("viewer", Some(Role::Viewer)),
            ("[oms-operator other-group]", Some(Role::Operator)),
            ("oms-viewer,oms-admin", Some(Role::Admin)),
            ("[\"oms-operator\"]", Some(Role::Operator)),
            ("superuser", None),
            ("", None),
            ("administrator", None),
        ];
        for (claim, want) in cases {
            assert_eq!(Role::from_claim(claim), want, "{claim:?}");
        }
    }

    #[test]
    fn a_key_admits_only_itself_until_revoked() {
        let id = "0123456789ab";
        let key = key_text(id, &"f".repeat(64));
        assert_eq!(key_id(&key), Some(id));
        for bad in [
            "oms_sk_0123456789ab",
            "oms_sk_0123456789a_ffff",
            "staff-token",
            &format!("oms_sk_{id}_{}", "g".repeat(64)),
        ] {
            assert_eq!(key_id(bad), None, "{bad}");
        }
        let mut stored = StaffKey {
            id: id.into(),
            name: "Wang Fang".into(),
            role: Role::Operator,
            hash: hash(&key),
            created_at: DateTime::UNIX_EPOCH,
            created_by: "admin".into(),
            revoked_at: None,
            revoked_by: None,
        };
        assert_eq!(
            stored.admits(&key),
            Some(StaffUser {
                name: "Wang Fang".into(),
                role: Role::Operator,
                shared: false,
            })
        );
        assert_eq!(stored.admits(&key_text(id, &"e".repeat(64))), None);
        assert!(
            !serde_json::to_string(&stored)
                .unwrap()
                .contains(&"f".repeat(64))
        );
        stored.revoked_at = Some(DateTime::UNIX_EPOCH);
        assert_eq!(stored.admits(&key), None);
    }
}
