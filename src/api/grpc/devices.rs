//! Conversions of remembered devices to Cognito's `DeviceType` and
//! `DeviceConfigurationType`.

use crate::model::device::{Device, DeviceConfig};
use crate::proto::{AttributeType, DeviceConfigurationType, DeviceType};

/// Cognito's `DeviceType`, with its `DeviceAttributes`.
pub fn device_type(d: Device) -> DeviceType {
    let attr = |name: &str, value: &str| AttributeType {
        name: name.to_string(),
        value: value.to_string(),
    };
    DeviceType {
        device_attributes: vec![
            attr("device_status", "valid"),
            attr("device_name", &d.name),
            attr(
                "dev:device_remembered_status",
                if d.remembered { "remembered" } else { "not_remembered" },
            ),
            attr("last_ip_used", &d.last_ip),
        ],
        device_key: d.device_key,
        device_create_date: d.created_at,
        device_last_modified_date: d.modified_at,
        device_last_authenticated_date: d.created_at,
    }
}

/// A pool's setting as the API shows it.
pub fn device_configuration_type(c: &DeviceConfig) -> DeviceConfigurationType {
    DeviceConfigurationType {
        challenge_required_on_new_device: c.challenge_required_on_new_device,
        device_only_remembered_on_user_prompt: c.device_only_remembered_on_user_prompt,
    }
}

/// The setting a request asks for, stamped now.
pub fn device_config(t: &DeviceConfigurationType) -> DeviceConfig {
    DeviceConfig {
        challenge_required_on_new_device: t.challenge_required_on_new_device,
        device_only_remembered_on_user_prompt: t.device_only_remembered_on_user_prompt,
        modified_at: crate::clock::now_millis(),
    }
}
