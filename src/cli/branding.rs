//! `tessera branding create|get|update|delete|set-css`: the hosted page's
//! look for a pool or one app client (Cognito's `*ManagedLoginBranding`
//! and `SetUICustomization` on `tessera.v1.Admin`).
//!
//! Settings come from a JSON file (`{"colors": ..., "languages": ...}`,
//! see the README), the logo from an image file, CSS from a file. Files
//! are read here so an unreadable path names its flag; whether their
//! content is acceptable is the server's to say.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use tessera::proto::*;

use super::{admin_client, print, status_err};
use crate::Global;

/// Largest file the command reads (the server's own limits are lower).
const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Subcommand)]
pub enum BrandingCmd {
    /// Create the branding of a client (or of the whole pool).
    Create {
        #[arg(long)]
        pool_id: String,
        /// The app client; leave out (or ALL) for the pool's default.
        #[arg(long, default_value = "ALL")]
        client_id: String,
        /// A JSON file of settings: colors and languages.
        #[arg(long)]
        settings: Option<PathBuf>,
        /// An image shown above the form (PNG, JPEG or SVG, at most 100 KiB).
        #[arg(long)]
        logo: Option<PathBuf>,
    },
    /// Show a branding, by id or by client.
    Get {
        #[arg(long)]
        pool_id: String,
        #[arg(long, conflicts_with = "client_id")]
        branding_id: Option<String>,
        /// The client's own branding (ALL for the pool's).
        #[arg(long)]
        client_id: Option<String>,
        /// Fill in the built-in colours the settings leave out.
        #[arg(long)]
        merged: bool,
    },
    /// Replace a branding's settings, or its logo, or both.
    Update {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        branding_id: String,
        #[arg(long)]
        settings: Option<PathBuf>,
        #[arg(long)]
        logo: Option<PathBuf>,
    },
    /// Delete a branding; the page falls back to the pool's, or the built-in look.
    Delete {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        branding_id: String,
    },
    /// Set the classic CSS (Cognito's -customizable classes) and logo.
    SetCss {
        #[arg(long)]
        pool_id: String,
        #[arg(long, default_value = "ALL")]
        client_id: String,
        /// A CSS file.
        #[arg(long)]
        css: PathBuf,
        #[arg(long)]
        logo: Option<PathBuf>,
    },
}

/// The bytes of the file of `flag`, bounded.
fn read(flag: &str, path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("{flag} {}", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        bail!("{flag} {}: larger than {MAX_FILE_BYTES} bytes", path.display());
    }
    std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))
}

/// The settings file as text, checked to be JSON so a typo names the flag.
fn settings_text(path: Option<&Path>) -> Result<String> {
    let Some(path) = path else {
        return Ok(String::new());
    };
    let bytes = read("--settings", path)?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("--settings {}: not JSON", path.display()))?;
    Ok(v.to_string())
}

/// The logo as a `FORM_LOGO` asset, typed by its extension.
fn logo_asset(path: &Path) -> Result<AssetType> {
    let extension = match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => "PNG",
        Some("jpg" | "jpeg") => "JPEG",
        Some("svg") => "SVG",
        Some("webp") => "WEBP",
        _ => bail!("--logo {}: a .png, .jpg, .svg or .webp file", path.display()),
    };
    Ok(AssetType {
        category: "FORM_LOGO".into(),
        color_mode: "LIGHT".into(),
        extension: extension.into(),
        bytes: read("--logo", path)?,
        resource_id: String::new(),
    })
}

fn show(b: &ManagedLoginBrandingType) {
    println!("id:       {}", b.managed_login_branding_id);
    println!("pool:     {}", b.user_pool_id);
    println!(
        "client:   {}",
        if b.client_id.is_empty() { "ALL" } else { &b.client_id }
    );
    println!("settings: {}", b.settings_document);
    for a in &b.assets {
        println!(
            "asset:    {} {} {} ({} bytes)",
            a.category,
            a.color_mode,
            a.extension,
            a.bytes.len()
        );
    }
}

pub async fn run(g: &Global, cmd: BrandingCmd) -> Result<()> {
    let client = admin_client(g).await?;
    let mut admin = client.admin();
    let branding = match cmd {
        BrandingCmd::Create {
            pool_id,
            client_id,
            settings,
            logo,
        } => admin
            .create_managed_login_branding(client.req(CreateManagedLoginBrandingRequest {
                user_pool_id: pool_id,
                client_id,
                use_cognito_provided_values: false,
                settings_document: settings_text(settings.as_deref())?,
                assets: logo.as_deref().map(logo_asset).transpose()?.into_iter().collect(),
            }))
            .await
            .map_err(status_err)?
            .into_inner(),
        BrandingCmd::Get {
            pool_id,
            branding_id,
            client_id,
            merged,
        } => match (branding_id, client_id) {
            (Some(id), _) => admin
                .describe_managed_login_branding(client.req(DescribeManagedLoginBrandingRequest {
                    user_pool_id: pool_id,
                    managed_login_branding_id: id,
                    return_merged_resources: merged,
                }))
                .await
                .map_err(status_err)?
                .into_inner(),
            (None, Some(c)) => admin
                .describe_managed_login_branding_by_client(client.req(DescribeManagedLoginBrandingByClientRequest {
                    user_pool_id: pool_id,
                    client_id: c,
                    return_merged_resources: merged,
                }))
                .await
                .map_err(status_err)?
                .into_inner(),
            (None, None) => bail!("give --branding-id or --client-id (ALL for the pool's)"),
        },
        BrandingCmd::Update {
            pool_id,
            branding_id,
            settings,
            logo,
        } => {
            if settings.is_none() && logo.is_none() {
                bail!("nothing to update: give --settings, --logo or both");
            }
            admin
                .update_managed_login_branding(client.req(UpdateManagedLoginBrandingRequest {
                    user_pool_id: pool_id,
                    managed_login_branding_id: branding_id,
                    use_cognito_provided_values: None,
                    settings_document: settings_text(settings.as_deref())?,
                    assets: logo.as_deref().map(logo_asset).transpose()?.into_iter().collect(),
                }))
                .await
                .map_err(status_err)?
                .into_inner()
        }
        BrandingCmd::Delete { pool_id, branding_id } => {
            admin
                .delete_managed_login_branding(client.req(DeleteManagedLoginBrandingRequest {
                    user_pool_id: pool_id,
                    managed_login_branding_id: branding_id.clone(),
                }))
                .await
                .map_err(status_err)?;
            return print(g, &serde_json::json!({ "deleted": branding_id }), || {
                println!("deleted {branding_id}")
            });
        }
        BrandingCmd::SetCss {
            pool_id,
            client_id,
            css,
            logo,
        } => {
            let css = String::from_utf8(read("--css", &css)?).context("--css: not UTF-8 text")?;
            let image_file = match logo {
                Some(p) => read("--logo", &p)?,
                None => Vec::new(),
            };
            let ui = admin
                .set_ui_customization(client.req(SetUiCustomizationRequest {
                    user_pool_id: pool_id,
                    client_id,
                    css,
                    image_file,
                }))
                .await
                .map_err(status_err)?
                .into_inner()
                .ui_customization
                .unwrap_or_default();
            return print(g, &ui, || {
                println!("client: {}", ui.client_id);
                println!("css:    {}", ui.css);
            });
        }
    };
    let b = branding.managed_login_branding.unwrap_or_default();
    print(g, &b, || show(&b))
}
