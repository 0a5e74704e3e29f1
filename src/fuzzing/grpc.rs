//! The api port's edge: every request message decoded as tonic decodes it
//! and run through the conversions and validation its handler applies.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use prost::Message;

use super::directory::{fuzz_settings, fuzz_user};
use super::tokens::{fuzz_jwks, FUZZ_ISSUER, FUZZ_NOW};
use super::Seeds;
use crate::api::grpc::convert;
use crate::auth::jwt::{self, Expect};
use crate::model::user_filter::{index_value, indexed_attribute, parse_filter};
use crate::proto::*;
use crate::store::directory::{index_keys, index_stem, sub_of_index_key};
use crate::store::keys::pool_key;

/// The edge of the api port (`api::grpc`): the first byte picks a request
/// message of `Admin`, `Auth` or `Cluster`; the rest is its protobuf
/// encoding. Every message is decoded as tonic would decode it, then run
/// through the conversions (`api::grpc::convert`) and the validation of
/// `model` that the handler and its service apply before any I/O. What
/// passes validation must be storable: its index keys name its user.
pub fn grpc_request(data: &[u8]) {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % (CONVERTED + 1) {
        0 => create_user_pool(bytes),
        1 => update_user_pool(bytes),
        2 => app_client(bytes, true),
        3 => app_client(bytes, false),
        4 => admin_create_user(bytes),
        5 => admin_update_user_attributes(bytes),
        6 => admin_import_users(bytes),
        7 => list_users(bytes),
        8 => group(bytes, true),
        9 => group(bytes, false),
        10 => sign_up(bytes),
        11 => update_user_attributes(bytes),
        12 => auth_parameters(bytes),
        13 => cluster(bytes),
        _ => {
            decode_plain(bytes);
            sync_request(bytes);
        }
    }
}

/// The first byte's values that pick a converted message; the rest pick
/// [`decode_plain`].
const CONVERTED: u8 = 14;

// Messages whose handlers pass fields straight to a service: decoding them
// is the whole edge.
macro_rules! decode_only {
    ($bytes:expr; $($t:ty),* $(,)?) => {{
        $(let _ = <$t>::decode($bytes);)*
    }};
}

fn decode_plain(bytes: &[u8]) {
    decode_only!(
        bytes;
        ListUserPoolsRequest,
        DescribeUserPoolRequest,
        DeleteUserPoolRequest,
        DescribeUserPoolClientRequest,
        DeleteUserPoolClientRequest,
        ListUserPoolClientsRequest,
        AdminGetUserRequest,
        AdminConfirmSignUpRequest,
        ListOutboxMessagesRequest,
        AdminDeleteUserAttributesRequest,
        AdminDeleteUserRequest,
        AdminDisableUserRequest,
        AdminEnableUserRequest,
        AdminSetUserPasswordRequest,
        AdminResetUserPasswordRequest,
        AdminUserGlobalSignOutRequest,
        GetGroupRequest,
        DeleteGroupRequest,
        ListGroupsRequest,
        AdminAddUserToGroupRequest,
        AdminRemoveUserFromGroupRequest,
        AdminListGroupsForUserRequest,
        ListUsersInGroupRequest,
        AdminListUserAuthEventsRequest,
        ConfirmSignUpRequest,
        ResendConfirmationCodeRequest,
        GetUserRequest,
        GlobalSignOutRequest,
        RevokeTokenRequest,
        ForgotPasswordRequest,
        ConfirmForgotPasswordRequest,
        ChangePasswordRequest,
        VerifyUserAttributeRequest,
        GetUserAttributeVerificationCodeRequest,
        DeleteUserRequest,
        DeleteUserAttributesRequest,
        CheckPermissionRequest,
        RemoveNodeRequest,
        DescribeClusterRequest,
        RotateSigningKeysRequest,
        GetNodeStateRequest,
        ListDatasetsRequest,
        DescribeDatasetRequest,
        ListRecordsRequest,
        DeleteDatasetRequest,
        DescribeIdentityUsageRequest,
        RespondToAuthChallengeRequest,
        AdminRespondToAuthChallengeRequest,
        SetUserPoolMfaConfigRequest,
        GetUserPoolMfaConfigRequest,
        AdminSetUserMfaPreferenceRequest,
        AssociateSoftwareTokenRequest,
        VerifySoftwareTokenRequest,
        SetUserMfaPreferenceRequest,
        GenerateRecoveryCodesRequest,
    );
    if let Ok(r) = VerifySoftwareTokenRequest::decode(bytes) {
        let _ = crate::model::mfa::validate_device_name(&r.friendly_device_name);
    }
}

/// `tessera.v1.Sync`'s edge (`api::grpc::sync`): an update's patches
/// through `patch_in` and the model's bounds, which what passes must
/// respect; and a conflict answered with those patches as the current
/// records must stay within the trailer budgets whatever they hold.
fn sync_request(bytes: &[u8]) {
    use crate::api::grpc::sync::{conflict_status, patch_in, CONFLICT_DETAIL_BYTES};
    use crate::model::sync as m;
    let Ok(r) = UpdateRecordsRequest::decode(bytes) else {
        return;
    };
    let _ = m::validate_existing_dataset_name(&r.dataset_name);
    let _ = m::validate_device_id(&r.device_id);
    let Ok(patches) = r
        .record_patches
        .into_iter()
        .enumerate()
        .map(|(i, p)| patch_in(i, p))
        .collect::<Result<Vec<_>, _>>()
    else {
        return;
    };
    if m::validate_patches(&patches, &m::SyncLimits::default()).is_ok() {
        assert!(patches.len() <= m::MAX_PATCHES);
        for p in &patches {
            let n = p.key.chars().count();
            assert!((1..=m::MAX_KEY_CHARS).contains(&n), "a key of {n} characters passed");
        }
    }
    let records: Vec<m::Record> = patches
        .into_iter()
        .map(|p| m::Record {
            key: p.key,
            value: p.value,
            sync_count: p.sync_count,
            last_modified_date: 0,
            last_modified_by: r.device_id.clone(),
            device_last_modified_date: p.device_last_modified_date,
        })
        .collect();
    let n = records.len();
    let s = conflict_status(records, 1);
    assert!(
        s.details().len() <= CONFLICT_DETAIL_BYTES,
        "a conflict detail of {} bytes",
        s.details().len()
    );
    assert!(
        s.message().len() <= 2048,
        "a conflict message of {} bytes",
        s.message().len()
    );
    let c = SyncConflict::decode(s.details()).expect("a conflict detail decodes");
    assert_eq!(
        c.records.len() + c.omitted_records as usize,
        n,
        "every conflicting record is counted"
    );
}

/// What passes validation must be storable: every index key of the user
/// names it.
fn storable(username: &str, attributes: &BTreeMap<String, String>) {
    let settings = fuzz_settings();
    if crate::model::user::validate_username(username).is_err()
        || crate::model::user::validate_new_attributes(settings, attributes).is_err()
    {
        return;
    }
    let user = fuzz_user("local_fuzz", "sub-1", username, attributes.clone());
    for k in index_keys(settings, &user) {
        assert!(k.starts_with(&pool_key("local_fuzz", &[])));
        assert_eq!(
            sub_of_index_key(&k).as_deref(),
            Some("sub-1"),
            "a valid user's index key does not name it: {username:?} {attributes:?}"
        );
    }
}

/// Self-service attributes as a map, or `None` when a name repeats.
fn auth_attributes(v: &[AttributeType]) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in v {
        if out.insert(a.name.clone(), a.value.clone()).is_some() {
            return None;
        }
    }
    Some(out)
}

fn create_user_pool(bytes: &[u8]) {
    let Ok(r) = CreateUserPoolRequest::decode(bytes) else {
        return;
    };
    let _ = crate::model::pool::validate_pool_name(&r.pool_name);
    let _ = convert::deletion_protection(&r.deletion_protection);
    if let Ok(s) = convert::pool_settings(&r) {
        s.validate()
            .expect("pool_settings returned settings that do not validate");
        let _ = convert::pool_type(
            crate::model::pool::UserPool {
                id: "local_fuzz".into(),
                name: r.pool_name.clone(),
                creation_date: 0,
                last_modified_date: 0,
                deletion_protection: false,
                settings: s,
            },
            0,
        );
    }
}

fn update_user_pool(bytes: &[u8]) {
    let Ok(r) = UpdateUserPoolRequest::decode(bytes) else {
        return;
    };
    let _ = crate::model::pool::validate_pool_id(&r.user_pool_id);
    let _ = convert::pool_update(&r);
}

fn app_client(bytes: &[u8], create: bool) {
    let spec = if create {
        let Ok(r) = CreateUserPoolClientRequest::decode(bytes) else {
            return;
        };
        convert::client_spec(
            &r.client_name,
            r.access_token_validity,
            r.id_token_validity,
            r.refresh_token_validity,
            r.token_validity_units.as_ref(),
            &r.read_attributes,
            &r.write_attributes,
            &r.explicit_auth_flows,
            &r.prevent_user_existence_errors,
            r.enable_token_revocation,
        )
    } else {
        let Ok(r) = UpdateUserPoolClientRequest::decode(bytes) else {
            return;
        };
        let _ = crate::model::app_client::validate_client_id(&r.client_id);
        convert::client_spec(
            &r.client_name,
            r.access_token_validity,
            r.id_token_validity,
            r.refresh_token_validity,
            r.token_validity_units.as_ref(),
            &r.read_attributes,
            &r.write_attributes,
            &r.explicit_auth_flows,
            &r.prevent_user_existence_errors,
            r.enable_token_revocation,
        )
    };
    let Ok(spec) = spec else { return };
    use crate::model::app_client::{validate_attribute_names, validate_client_name, AuthFlow, TimeUnit};
    let _ = validate_client_name(&spec.client_name);
    for unit in [&spec.access_unit, &spec.id_unit, &spec.refresh_unit] {
        let _ = TimeUnit::parse(unit, TimeUnit::Hours);
    }
    for f in &spec.explicit_auth_flows {
        let _ = AuthFlow::parse(f);
    }
    for names in [&spec.read_attributes, &spec.write_attributes] {
        let _ = validate_attribute_names("read_attributes", &names.iter().cloned().collect());
    }
}

fn admin_create_user(bytes: &[u8]) {
    let settings = fuzz_settings();
    let Ok(r) = AdminCreateUserRequest::decode(bytes) else {
        return;
    };
    if let Ok(attrs) = convert::attributes("user_attributes", &r.user_attributes) {
        storable(&r.username, &attrs);
    }
    let _ = settings.password_policy.check(&r.temporary_password);
}

fn admin_update_user_attributes(bytes: &[u8]) {
    let Ok(r) = AdminUpdateUserAttributesRequest::decode(bytes) else {
        return;
    };
    if let Ok(attrs) = convert::attributes("user_attributes", &r.user_attributes) {
        storable(&r.username, &attrs);
    }
}

fn admin_import_users(bytes: &[u8]) {
    let settings = fuzz_settings();
    let Ok(r) = AdminImportUsersRequest::decode(bytes) else {
        return;
    };
    for u in r.users.iter().take(crate::service::directory::MAX_IMPORT) {
        if let Ok(attrs) = convert::attributes("users.attributes", &u.attributes) {
            storable(&u.username, &attrs);
        }
        // Parsing only: an imported hash is bounded before anything hashes.
        let _ = crate::auth::foreign_hash::check_import(&u.password_hash);
    }
    let _ = settings.password_policy.check(&r.password);
}

fn list_users(bytes: &[u8]) {
    let settings = fuzz_settings();
    let Ok(r) = ListUsersRequest::decode(bytes) else { return };
    let _ = crate::service::page_limit("limit", r.limit);
    let key = crate::auth::sealing::SealingKey::from_bytes([7; 32]);
    let parts = [r.user_pool_id.as_str(), r.filter.as_str()];
    let position = crate::service::cursor::open(
        &key,
        &crate::service::directory::list_users_scope(&parts),
        &r.pagination_token,
    );
    if let Ok(Some(f)) = parse_filter(&r.filter) {
        if let Ok(attribute) = indexed_attribute(settings, &f) {
            let stem = index_stem(&attribute, &index_value(&f));
            if let Ok(p) = position {
                let _ = crate::service::directory::checked_position(p, Some(&stem));
            }
        }
    } else if let Ok(p) = position {
        let _ = crate::service::directory::checked_position(p, None);
    }
}

fn group(bytes: &[u8], create: bool) {
    use crate::model::group::{normalize_permissions, validate_details, validate_group_name};
    let (name, description, role, permissions) = if create {
        let Ok(r) = CreateGroupRequest::decode(bytes) else {
            return;
        };
        (r.group_name, r.description, r.role_arn, r.permissions)
    } else {
        let Ok(r) = UpdateGroupRequest::decode(bytes) else {
            return;
        };
        (
            r.group_name,
            r.description.unwrap_or_default(),
            r.role_arn.unwrap_or_default(),
            r.permissions.map(|p| p.values).unwrap_or_default(),
        )
    };
    let _ = validate_group_name(&name);
    let _ = validate_details(&description, &role);
    if let Ok(p) = normalize_permissions(&permissions) {
        assert!(
            normalize_permissions(&p).ok().as_ref() == Some(&p),
            "normalize is not idempotent"
        );
    }
}

fn sign_up(bytes: &[u8]) {
    let settings = fuzz_settings();
    let Ok(r) = SignUpRequest::decode(bytes) else { return };
    let _ = crate::service::flows::check_parameters("client_metadata", &r.client_metadata);
    if r.user_attributes.len() <= crate::model::user::MAX_ATTRIBUTES {
        if let Some(attrs) = auth_attributes(&r.user_attributes) {
            storable(&r.username, &attrs);
        }
    }
    let _ = settings.password_policy.check(&r.password);
}

fn update_user_attributes(bytes: &[u8]) {
    let Ok(r) = UpdateUserAttributesRequest::decode(bytes) else {
        return;
    };
    if let Some(attrs) = auth_attributes(&r.user_attributes) {
        storable("user-1", &attrs);
    }
    let _ = jwt::verify(
        &r.access_token,
        fuzz_jwks(),
        &Expect {
            issuer: FUZZ_ISSUER,
            token_use: Some("access"),
            now: FUZZ_NOW,
            leeway: 5,
        },
    );
}

fn auth_parameters(bytes: &[u8]) {
    use crate::service::flows::check_parameters;
    if let Ok(r) = InitiateAuthRequest::decode(bytes) {
        let _ = check_parameters("auth_parameters", &r.auth_parameters);
        let _ = check_parameters("client_metadata", &r.client_metadata);
    }
    if let Ok(r) = RespondToAuthChallengeRequest::decode(bytes) {
        let _ = check_parameters("challenge_responses", &r.challenge_responses);
    }
    if let Ok(r) = AdminInitiateAuthRequest::decode(bytes) {
        let _ = check_parameters("auth_parameters", &r.auth_parameters);
        if let Some(c) = r.context_data {
            let _ = c.ip_address.parse::<std::net::IpAddr>();
        }
    }
}

fn cluster(bytes: &[u8]) {
    use crate::model::cluster::{validate_host_port, validate_node_id, validate_public_url};
    if let Ok(r) = InitClusterRequest::decode(bytes) {
        let _ = validate_public_url(&r.public_url);
    }
    if let Ok(r) = AddNodeRequest::decode(bytes) {
        let _ = validate_node_id(r.node_id);
        let _ = validate_host_port("peer_addr", &r.peer_addr);
        let _ = validate_host_port("api_addr", &r.api_addr);
    }
}

/// Seeds for [`grpc_request`]: a well-formed message for most converted
/// kinds, first byte first.
pub(super) fn grpc_seeds(out: &mut Seeds) {
    pool_seeds(out);
    user_seeds(out);
    sync_seeds(out);
}

/// A Sync update (a plain kind, so its first byte is `CONVERTED`): small
/// patches, a large value, and an op to refuse.
fn sync_seeds(out: &mut Seeds) {
    let patch = |op: &str, key: &str, value: Option<String>| RecordPatch {
        op: op.into(),
        key: key.into(),
        value,
        sync_count: 3,
        device_last_modified_date: 1,
    };
    for patches in [
        vec![patch("replace", "a", Some("1".into())), patch("REMOVE", "b", None)],
        vec![
            patch("replace", "big", Some("v".repeat(8192))),
            patch("replace", "a", Some("1".into())),
        ],
        vec![patch("upsert", "a", Some("1".into()))],
    ] {
        let r = UpdateRecordsRequest {
            identity_pool_id: "local:00000000-0000-4000-8000-000000000000".into(),
            identity_id: "local:00000000-0000-4000-8000-000000000001".into(),
            dataset_name: "prefs".into(),
            device_id: "phone".into(),
            record_patches: patches,
            ..Default::default()
        };
        out.push(("grpc_request", [&[CONVERTED][..], &r.encode_to_vec()].concat()));
    }
}

/// Pools and app clients (kinds 0 to 2).
fn pool_seeds(out: &mut Seeds) {
    let mut push = |which: u8, bytes: Vec<u8>| out.push(("grpc_request", [&[which][..], &bytes].concat()));
    push(
        0,
        CreateUserPoolRequest {
            pool_name: "fuzz".into(),
            alias_attributes: vec!["email".into()],
            auto_verified_attributes: vec!["email".into()],
            schema: vec![SchemaAttributeType {
                name: "tier".into(),
                attribute_data_type: "String".into(),
                mutable: true,
                required: false,
                string_attribute_constraints: Some(StringAttributeConstraintsType {
                    min_length: "0".into(),
                    max_length: "64".into(),
                }),
                indexed: true,
            }],
            default_token_validity: Some(TokenValidityType {
                access_token_validity: 2,
                id_token_validity: 60,
                refresh_token_validity: 30,
                token_validity_units: Some(TokenValidityUnitsType {
                    access_token: "hours".into(),
                    id_token: "minutes".into(),
                    refresh_token: "days".into(),
                }),
            }),
            deletion_protection: "ACTIVE".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    push(
        1,
        UpdateUserPoolRequest {
            user_pool_id: "local_AbC123".into(),
            update_auto_verified_attributes: true,
            auto_verified_attributes: vec!["phone_number".into()],
            deletion_protection: "INACTIVE".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    push(
        2,
        CreateUserPoolClientRequest {
            user_pool_id: "local_AbC123".into(),
            client_name: "web".into(),
            explicit_auth_flows: vec!["ALLOW_USER_PASSWORD_AUTH".into(), "ALLOW_REFRESH_TOKEN_AUTH".into()],
            read_attributes: vec!["email".into()],
            access_token_validity: 60,
            token_validity_units: Some(TokenValidityUnitsType {
                access_token: "minutes".into(),
                ..Default::default()
            }),
            prevent_user_existence_errors: "ENABLED".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
}

/// Users, groups, self-service and cluster calls (kinds 4 to 14).
fn user_seeds(out: &mut Seeds) {
    let av = |n: &str, v: &str| AttributeValue {
        name: n.into(),
        value: v.into(),
    };
    let at = |n: &str, v: &str| AttributeType {
        name: n.into(),
        value: v.into(),
    };
    let mut push = |which: u8, bytes: Vec<u8>| out.push(("grpc_request", [&[which][..], &bytes].concat()));
    push(
        4,
        AdminCreateUserRequest {
            user_pool_id: "local_AbC123".into(),
            username: "alice".into(),
            user_attributes: vec![av("email", "a@x.io"), av("custom:tier", "GOLD"), av("name", "Ann Ω")],
            temporary_password: "Passw0rd!".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    push(
        6,
        AdminImportUsersRequest {
            user_pool_id: "local_AbC123".into(),
            users: vec![ImportUserType {
                username: "bob".into(),
                attributes: vec![av("phone_number", "+14325551212")],
                password_hash: "$2b$04$abcdefghijklmnopqrstuuZpfs7pMDs2BfSG3VHoWyUDzibcLelSO".into(),
                groups: vec!["staff".into()],
                ..Default::default()
            }],
            password: "Passw0rd!".into(),
            mark_verified: true,
        }
        .encode_to_vec(),
    );
    push(
        7,
        ListUsersRequest {
            user_pool_id: "local_AbC123".into(),
            filter: r#"email ^= "a""#.into(),
            limit: 10,
            pagination_token: URL_SAFE_NO_PAD.encode(b"email\0a@x.io\0sub"),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    push(
        8,
        CreateGroupRequest {
            group_name: "admins".into(),
            user_pool_id: "local_AbC123".into(),
            description: "d".into(),
            precedence: Some(1),
            permissions: vec!["course:*".into(), "course:read".into()],
            ..Default::default()
        }
        .encode_to_vec(),
    );
    push(
        10,
        SignUpRequest {
            client_id: "c".into(),
            username: "carol".into(),
            password: "Passw0rd!".into(),
            user_attributes: vec![at("email", "c@x.io"), at("birthdate", "2000-01-01")],
            client_metadata: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    push(
        12,
        InitiateAuthRequest {
            auth_flow: "USER_PASSWORD_AUTH".into(),
            auth_parameters: [("USERNAME".to_string(), "a".to_string())].into(),
            client_id: "c".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    push(
        13,
        AddNodeRequest {
            node_id: 4,
            peer_addr: "10.0.0.4:7701".into(),
            api_addr: "[::1]:7700".into(),
        }
        .encode_to_vec(),
    );
    push(
        14,
        ConfirmForgotPasswordRequest {
            client_id: "c".into(),
            username: "a".into(),
            confirmation_code: "123456".into(),
            password: "Passw0rd!".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
}
