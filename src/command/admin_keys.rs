//! Apply logic of admin access keys (`crate::model::admin_key`): create
//! and delete. The key id and the sealed secret are chosen by the node
//! that prepared the command; `apply` only decides whether the id is free.

use serde::{Deserialize, Serialize};

use super::{not_found, Apply, ApplyError, Outcome, Rejection};
use crate::model::admin_key::{validate_key_id, AdminAccessKey, MAX_KEYS};
use crate::store::keys::Table;
use crate::store::{codec, SmBatch, Store};

/// Stores a new admin access key. An id that exists already is refused,
/// never replaced: replacing would silently change the secret of a key
/// that some client still signs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateAdminAccessKey(pub AdminAccessKey);

impl Apply for CreateAdminAccessKey {
    type Output = ();

    fn validate(&self) -> Result<(), Rejection> {
        self.0.validate().map_err(|e| Rejection::Invalid(e.to_string()))
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if store.admin_access_key(&self.0.key_id)?.is_some() {
            return Ok(Outcome::Rejected(Rejection::AlreadyExists {
                kind: "admin access key".into(),
                id: self.0.key_id.clone(),
            }));
        }
        if store.admin_access_keys()?.len() >= MAX_KEYS {
            return Ok(Outcome::Rejected(Rejection::LimitExceeded(format!(
                "a cluster keeps at most {MAX_KEYS} admin access keys; delete unused ones first"
            ))));
        }
        batch.put(
            Table::AdminAccessKeys,
            self.0.key_id.as_bytes(),
            &codec::encode(&self.0)?,
        )?;
        Ok(Outcome::Done)
    }
}

/// Deletes an admin access key: requests signed with it are refused from
/// the moment each node applies this entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteAdminAccessKey {
    /// The access key id.
    pub key_id: String,
}

impl Apply for DeleteAdminAccessKey {
    type Output = ();

    fn validate(&self) -> Result<(), Rejection> {
        validate_key_id(&self.key_id).map_err(|e| Rejection::Invalid(e.to_string()))
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        if store.admin_access_key(&self.key_id)?.is_none() {
            return Ok(not_found("admin access key", &self.key_id));
        }
        batch.delete(Table::AdminAccessKeys, self.key_id.as_bytes())?;
        Ok(Outcome::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testkit::{run, store_with_pool};
    use crate::model::app_client::SealedSecret;

    fn key(id: &str, ciphertext: u8) -> AdminAccessKey {
        AdminAccessKey {
            key_id: id.into(),
            secret: SealedSecret {
                nonce: [1; 12],
                ciphertext: vec![ciphertext; 56],
            },
            created_at: 7,
            description: "ci".into(),
        }
    }

    #[test]
    fn keys_are_created_once_and_deleted() {
        let (_dir, store) = store_with_pool(&[]);
        let id = "AKIA0000000000000001";
        assert_eq!(run(&store, CreateAdminAccessKey(key(id, 1))), Outcome::Done);
        // The same id again is refused, and the first secret stays.
        assert!(matches!(
            run(&store, CreateAdminAccessKey(key(id, 2))),
            Outcome::Rejected(Rejection::AlreadyExists { .. })
        ));
        assert_eq!(store.admin_access_key(id).unwrap(), Some(key(id, 1)));
        assert_eq!(
            run(&store, CreateAdminAccessKey(key("AKIA0000000000000000", 3))),
            Outcome::Done
        );
        let ids: Vec<String> = store
            .admin_access_keys()
            .unwrap()
            .into_iter()
            .map(|k| k.key_id)
            .collect();
        assert_eq!(ids, ["AKIA0000000000000000", id]);

        let delete = |id: &str| DeleteAdminAccessKey { key_id: id.into() };
        assert_eq!(run(&store, delete(id)), Outcome::Done);
        assert_eq!(store.admin_access_key(id).unwrap(), None);
        assert!(matches!(
            run(&store, delete(id)),
            Outcome::Rejected(Rejection::NotFound { .. })
        ));
    }

    #[test]
    fn malformed_keys_are_refused_before_apply() {
        let (_dir, store) = store_with_pool(&[]);
        assert!(matches!(
            run(&store, CreateAdminAccessKey(key("lowercase-id-000000", 1))),
            Outcome::Rejected(Rejection::Invalid(_))
        ));
        assert!(matches!(
            run(&store, DeleteAdminAccessKey { key_id: "x".into() }),
            Outcome::Rejected(Rejection::Invalid(_))
        ));
        assert!(store.admin_access_keys().unwrap().is_empty());
    }
}
