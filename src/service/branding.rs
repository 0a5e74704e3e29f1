//! The hosted page's branding (Cognito's `*ManagedLoginBranding` and
//! `Get/SetUICustomization`): administration, and the local read the page
//! makes on every view.
//!
//! Both Cognito APIs write the same record (`model::branding`), one per
//! app client and one for the pool: the managed-login calls own its
//! settings and assets, `SetUICustomization` its CSS and `FORM_LOGO`.
//! String keys of loaded languages are checked here, at the edge, against
//! this version's keys (`model::page_strings`); `apply` does not check
//! them, so a newer leader's keys never make an older follower diverge.

use std::sync::Arc;

use super::pools::existing_pool;
use super::{submit, ServiceError};
use crate::command::{DeleteBranding, PutBranding, PutMode};
use crate::model::app_client::validate_client_id;
use crate::model::branding::{sanitize_css, Branding, BrandingAsset, COLORS};
use crate::model::page_strings::is_key;
use crate::raft::RaftNode;

/// Cognito's name for "every client of the pool".
pub const ALL_CLIENTS: &str = "ALL";

/// Branding administration of one node.
#[derive(Clone)]
pub struct BrandingService {
    node: Arc<RaftNode>,
}

/// The client a call names: empty or `ALL` is the pool's default.
fn client_key(client_id: &str) -> Result<String, ServiceError> {
    if client_id.is_empty() || client_id == ALL_CLIENTS {
        return Ok(String::new());
    }
    validate_client_id(client_id)?;
    Ok(client_id.to_string())
}

fn validate_branding_id(id: &str) -> Result<(), ServiceError> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(ServiceError::invalid(
            "managed_login_branding_id: the id CreateManagedLoginBranding returned",
        ));
    }
    Ok(())
}

/// The image format of `bytes`, by its first bytes.
fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]).to_ascii_lowercase();
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("PNG")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("JPEG")
    } else if head.trim_start().starts_with("<svg") || head.trim_start().starts_with("<?xml") {
        Some("SVG")
    } else {
        None
    }
}

/// `settings` with the built-in colours it leaves out filled in
/// (`ReturnMergedResources`).
fn merged(mut b: Branding) -> Branding {
    let mut doc: serde_json::Value = serde_json::from_str(&b.settings).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(obj) = doc.as_object_mut() {
        let colors = obj.entry("colors").or_insert_with(|| serde_json::json!({}));
        if let Some(colors) = colors.as_object_mut() {
            for (name, value) in COLORS {
                colors
                    .entry(name.to_string())
                    .or_insert_with(|| serde_json::Value::String(value.to_string()));
            }
        }
    }
    b.settings = doc.to_string();
    b
}

impl BrandingService {
    /// The branding service of `node`.
    pub fn new(node: Arc<RaftNode>) -> Self {
        BrandingService { node }
    }

    /// The branding the page of `client_id` wears: the client's own, else
    /// the pool's, else none. A local read: the page must not wait on the
    /// leader, and a branding a moment old is harmless.
    pub fn for_page(&self, pool_id: &str, client_id: &str) -> Option<Branding> {
        let store = self.node.store();
        let own = if client_id.is_empty() {
            None
        } else {
            store.branding(pool_id, client_id).ok().flatten()
        };
        own.or_else(|| store.branding(pool_id, "").ok().flatten())
    }

    async fn put(&self, branding: Branding, mode: PutMode) -> Result<Branding, ServiceError> {
        branding.validate(&is_key)?;
        submit(&self.node, PutBranding { branding, mode }).await
    }

    /// `CreateManagedLoginBranding`.
    pub async fn create(
        &self,
        pool_id: &str,
        client_id: &str,
        use_provided_values: bool,
        settings: &str,
        assets: Vec<BrandingAsset>,
    ) -> Result<Branding, ServiceError> {
        existing_pool(&self.node, pool_id).await?;
        let client_id = client_key(client_id)?;
        let now = crate::clock::now_millis();
        // A classic customization already there keeps its CSS.
        let css = self
            .node
            .store()
            .branding(pool_id, &client_id)?
            .map(|b| b.css)
            .unwrap_or_default();
        let branding = Branding {
            pool_id: pool_id.to_string(),
            branding_id: crate::clock::new_uuid().to_string(),
            client_id,
            use_provided_values,
            settings: if settings.is_empty() {
                "{}".into()
            } else {
                settings.to_string()
            },
            assets,
            css,
            created_at: now,
            modified_at: now,
        };
        self.put(branding, PutMode::Create).await
    }

    /// The branding with id `branding_id`; a miss waits for a read barrier
    /// (it may have been created a moment ago through another node).
    pub async fn describe(&self, pool_id: &str, branding_id: &str, merge: bool) -> Result<Branding, ServiceError> {
        existing_pool(&self.node, pool_id).await?;
        validate_branding_id(branding_id)?;
        let find = || self.node.store().branding_by_id(pool_id, branding_id);
        let found = match find()? {
            Some(b) => b,
            None => {
                self.node.read_barrier().await?;
                find()?.ok_or_else(|| {
                    ServiceError::not_found(format!("Managed login branding {branding_id} does not exist."))
                })?
            }
        };
        Ok(if merge { merged(found) } else { found })
    }

    /// `DescribeManagedLoginBrandingByClient`: the client's own branding
    /// (not the pool's it falls back to).
    pub async fn describe_by_client(
        &self,
        pool_id: &str,
        client_id: &str,
        merge: bool,
    ) -> Result<Branding, ServiceError> {
        existing_pool(&self.node, pool_id).await?;
        let key = client_key(client_id)?;
        let find = || self.node.store().branding(pool_id, &key);
        let found = match find()? {
            Some(b) => b,
            None => {
                self.node.read_barrier().await?;
                find()?.ok_or_else(|| {
                    ServiceError::not_found(format!("App client {client_id} has no managed login branding."))
                })?
            }
        };
        Ok(if merge { merged(found) } else { found })
    }

    /// `UpdateManagedLoginBranding`: what is given replaces what is stored.
    pub async fn update(
        &self,
        pool_id: &str,
        branding_id: &str,
        use_provided_values: Option<bool>,
        settings: Option<&str>,
        assets: Option<Vec<BrandingAsset>>,
    ) -> Result<Branding, ServiceError> {
        let mut b = self.describe(pool_id, branding_id, false).await?;
        if let Some(u) = use_provided_values {
            b.use_provided_values = u;
        }
        if let Some(s) = settings {
            b.settings = s.to_string();
        }
        if let Some(a) = assets {
            b.assets = a;
        }
        b.modified_at = crate::clock::now_millis();
        self.put(b, PutMode::Update).await
    }

    /// `DeleteManagedLoginBranding`.
    pub async fn delete(&self, pool_id: &str, branding_id: &str) -> Result<(), ServiceError> {
        existing_pool(&self.node, pool_id).await?;
        validate_branding_id(branding_id)?;
        submit(
            &self.node,
            DeleteBranding {
                pool_id: pool_id.to_string(),
                branding_id: branding_id.to_string(),
            },
        )
        .await?;
        Ok(())
    }

    /// `SetUICustomization`: the CSS (sanitized, or refused with the
    /// reason) and, if given, the logo, of a client or the pool.
    pub async fn set_ui(
        &self,
        pool_id: &str,
        client_id: &str,
        css: &str,
        image: Option<&[u8]>,
    ) -> Result<Branding, ServiceError> {
        existing_pool(&self.node, pool_id).await?;
        let client_id = client_key(client_id)?;
        let css = sanitize_css(css)?;
        let now = crate::clock::now_millis();
        let mut b = self
            .node
            .store()
            .branding(pool_id, &client_id)?
            .unwrap_or_else(|| Branding {
                pool_id: pool_id.to_string(),
                branding_id: crate::clock::new_uuid().to_string(),
                client_id: client_id.clone(),
                use_provided_values: false,
                settings: "{}".into(),
                assets: Vec::new(),
                css: String::new(),
                created_at: now,
                modified_at: now,
            });
        b.css = css;
        b.modified_at = now;
        if let Some(bytes) = image.filter(|i| !i.is_empty()) {
            let extension =
                sniff_image(bytes).ok_or_else(|| ServiceError::invalid("image_file: a PNG, JPEG or SVG image"))?;
            b.assets.retain(|a| a.category != "FORM_LOGO");
            b.assets.push(BrandingAsset {
                category: "FORM_LOGO".into(),
                color_mode: "LIGHT".into(),
                extension: extension.into(),
                bytes: bytes.to_vec(),
            });
        }
        self.put(b, PutMode::Upsert).await
    }

    /// `GetUICustomization`: the client's customization, else the
    /// pool's, else an empty one (as Cognito answers).
    pub async fn get_ui(&self, pool_id: &str, client_id: &str) -> Result<Option<Branding>, ServiceError> {
        existing_pool(&self.node, pool_id).await?;
        let key = client_key(client_id)?;
        self.node.read_barrier().await?;
        Ok(self.for_page(pool_id, &key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_sniffed() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\nrest"), Some("PNG"));
        assert_eq!(sniff_image(&[0xff, 0xd8, 0xff, 0xe0]), Some("JPEG"));
        assert_eq!(
            sniff_image(b"  <svg xmlns=\"http://www.w3.org/2000/svg\"/>"),
            Some("SVG")
        );
        assert_eq!(sniff_image(b"GIF89a"), None);
    }

    #[test]
    fn all_means_the_pool() {
        assert_eq!(client_key("ALL").unwrap(), "");
        assert_eq!(client_key("").unwrap(), "");
        assert!(client_key("a b").is_err());
    }
}
