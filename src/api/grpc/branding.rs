//! The branding messages (`ManagedLoginBrandingType`, `AssetType`,
//! `UICustomizationType`) to and from `model::branding`.

use tonic::Status;

use crate::model::branding::{Branding, BrandingAsset, MAX_ASSETS};
use crate::proto::{
    AssetType, ManagedLoginBrandingResponse, ManagedLoginBrandingType, UiCustomizationResponse, UiCustomizationType,
};

/// The assets of a request; refused beyond [`MAX_ASSETS`] before any is
/// copied.
pub fn assets_from(assets: Vec<AssetType>) -> Result<Vec<BrandingAsset>, Status> {
    if assets.len() > MAX_ASSETS {
        return Err(Status::invalid_argument(format!("assets: at most {MAX_ASSETS}")));
    }
    Ok(assets
        .into_iter()
        .map(|a| BrandingAsset {
            category: a.category,
            color_mode: if a.color_mode.is_empty() {
                "LIGHT".into()
            } else {
                a.color_mode
            },
            extension: a.extension,
            bytes: a.bytes,
        })
        .collect())
}

/// `ManagedLoginBrandingResponse` of a stored branding.
pub fn branding_response(b: Branding) -> ManagedLoginBrandingResponse {
    ManagedLoginBrandingResponse {
        managed_login_branding: Some(ManagedLoginBrandingType {
            managed_login_branding_id: b.branding_id,
            user_pool_id: b.pool_id,
            use_cognito_provided_values: b.use_provided_values,
            settings_document: b.settings,
            assets: b
                .assets
                .into_iter()
                .map(|a| AssetType {
                    category: a.category,
                    color_mode: a.color_mode,
                    extension: a.extension,
                    bytes: a.bytes,
                    resource_id: String::new(),
                })
                .collect(),
            creation_date: b.created_at,
            last_modified_date: b.modified_at,
            client_id: b.client_id,
        }),
    }
}

/// `UICustomizationResponse` for `client_id` as asked (`ALL` for the
/// pool), from the branding that applies, if any.
pub fn ui_response(pool_id: &str, client_id: &str, b: Option<Branding>) -> UiCustomizationResponse {
    let client_id = if client_id.is_empty() {
        "ALL".to_string()
    } else {
        client_id.to_string()
    };
    let t = match b {
        Some(b) => UiCustomizationType {
            user_pool_id: b.pool_id,
            client_id,
            image_url: String::new(),
            css_version: if b.css.is_empty() {
                String::new()
            } else {
                b.modified_at.to_string()
            },
            css: b.css,
            last_modified_date: b.modified_at,
            creation_date: b.created_at,
        },
        None => UiCustomizationType {
            user_pool_id: pool_id.to_string(),
            client_id,
            ..Default::default()
        },
    };
    UiCustomizationResponse {
        ui_customization: Some(t),
    }
}
