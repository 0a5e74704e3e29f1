//! Conversions for the federation calls of `tessera.v1.Admin`
//! (`CreateIdentityProvider` and the rest): proto maps in, the stored
//! provider out.

use std::collections::BTreeMap;

use crate::model::identity_provider::IdentityProvider;
use crate::proto::{IdentityProviderResponse, IdentityProviderType};
use crate::service::federation::ProviderInput;

/// A provider's settings as the request gives them (`None` keeps the
/// stored value on update).
pub fn input(
    details: Option<BTreeMap<String, String>>,
    attribute_mapping: Option<BTreeMap<String, String>>,
    idp_identifiers: Option<Vec<String>>,
) -> ProviderInput {
    ProviderInput {
        details,
        attribute_mapping,
        idp_identifiers,
    }
}

/// The proto shape of a provider.
pub fn provider_response(p: IdentityProvider) -> IdentityProviderResponse {
    IdentityProviderResponse {
        identity_provider: Some(IdentityProviderType {
            provider_type: p.provider_type.as_str().into(),
            user_pool_id: p.pool_id,
            provider_name: p.provider_name,
            provider_details: p.details,
            attribute_mapping: p.attribute_mapping,
            idp_identifiers: p.idp_identifiers,
            last_modified_date: p.last_modified_date / 1000,
            creation_date: p.creation_date / 1000,
        }),
    }
}
