//! `tessera user devices`: a user's remembered devices, with the admin
//! token (AdminListDevices, AdminGetDevice, AdminUpdateDeviceStatus,
//! AdminForgetDevice).

use anyhow::Result;
use clap::Subcommand;
use tessera::client::Client;
use tessera::proto::*;

use super::{print, status_err};
use crate::Global;

#[derive(Subcommand)]
pub enum DevicesCmd {
    /// List a user's devices (every page).
    List {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
    },
    /// Show one device.
    Get {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        device_key: String,
    },
    /// Mark a device remembered (it may skip MFA) or not.
    Status {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        device_key: String,
        /// remembered or not_remembered.
        #[arg(long, value_parser = ["remembered", "not_remembered"])]
        status: String,
    },
    /// Forget a device: it can never be confirmed again, and its refresh
    /// tokens stop working on every node.
    Forget {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        device_key: String,
    },
}

fn show(d: &DeviceType) {
    let attr = |name: &str| {
        d.device_attributes
            .iter()
            .find(|a| a.name == name)
            .map_or("", |a| a.value.as_str())
    };
    println!(
        "{:<45} {:<15} {}",
        d.device_key,
        attr("dev:device_remembered_status"),
        attr("device_name")
    );
}

/// Runs one `user devices` command.
pub async fn run(g: &Global, client: &Client, cmd: DevicesCmd) -> Result<()> {
    let admin = client.admin();
    match cmd {
        DevicesCmd::List { pool_id, username } => {
            let mut devices = Vec::new();
            let mut token = String::new();
            loop {
                let page = admin
                    .clone()
                    .admin_list_devices(client.req(AdminListDevicesRequest {
                        user_pool_id: pool_id.clone(),
                        username: username.clone(),
                        limit: 0,
                        pagination_token: token,
                    }))
                    .await
                    .map_err(status_err)?
                    .into_inner();
                devices.extend(page.devices);
                if page.pagination_token.is_empty() {
                    break;
                }
                token = page.pagination_token;
            }
            print(g, &devices, || devices.iter().for_each(show))
        }
        DevicesCmd::Get {
            pool_id,
            username,
            device_key,
        } => {
            let d = admin
                .clone()
                .admin_get_device(client.req(AdminGetDeviceRequest {
                    user_pool_id: pool_id,
                    username,
                    device_key,
                }))
                .await
                .map_err(status_err)?
                .into_inner()
                .device
                .unwrap_or_default();
            print(g, &d, || show(&d))
        }
        DevicesCmd::Status {
            pool_id,
            username,
            device_key,
            status,
        } => {
            admin
                .clone()
                .admin_update_device_status(client.req(AdminUpdateDeviceStatusRequest {
                    user_pool_id: pool_id,
                    username,
                    device_key: device_key.clone(),
                    device_remembered_status: status.clone(),
                }))
                .await
                .map_err(status_err)?;
            print(
                g,
                &serde_json::json!({"device_key": device_key, "status": status}),
                || println!("{device_key}: {status}"),
            )
        }
        DevicesCmd::Forget {
            pool_id,
            username,
            device_key,
        } => {
            admin
                .clone()
                .admin_forget_device(client.req(AdminForgetDeviceRequest {
                    user_pool_id: pool_id,
                    username,
                    device_key: device_key.clone(),
                }))
                .await
                .map_err(status_err)?;
            print(g, &serde_json::json!({"forgotten": device_key}), || {
                println!("forgot {device_key}")
            })
        }
    }
}
