//! Which Cognito actions the JSON front serves, and how each is called.
//!
//! An action is served by the gRPC method of the same name, so the table
//! only says which methods are Cognito actions and who may call them;
//! request and response shapes come from the method's descriptors
//! ([`super::json`]). Tessera-only methods (the outbox, admin keys, bulk
//! import and export, roles, recovery codes) are not actions of any AWS
//! model and stay on gRPC.

use std::collections::BTreeMap;

use prost_reflect::{DescriptorPool, MessageDescriptor};

/// Who may call an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Unsigned, as Cognito's `authtype: none` actions: the caller proves
    /// itself with what the body carries (a password, a token, a code).
    Public,
    /// Needs a SigV4 signature by a Tessera admin access key.
    Signed,
}

/// One of the AWS APIs served on `POST /`.
#[derive(Debug)]
pub struct Api {
    /// The `X-Amz-Target` prefix, before the `.`.
    pub target_prefix: &'static str,
    /// The service name of the SigV4 credential scope.
    pub signing_name: &'static str,
    /// `(action, gRPC service, access)`.
    pub actions: &'static [(&'static str, &'static str, Access)],
}

use Access::{Public, Signed};

const AUTH: &str = "tessera.v1.Auth";
const ADMIN: &str = "tessera.v1.Admin";
const IDENTITY: &str = "tessera.v1.Identity";

/// `cognito-idp`: user pools. Public actions are the `Auth` service's, the
/// signed ones the `Admin` service's, as in Cognito's model.
pub const USER_POOLS: Api = Api {
    target_prefix: "AWSCognitoIdentityProviderService",
    signing_name: "cognito-idp",
    actions: &[
        ("AdminAddUserToGroup", ADMIN, Signed),
        ("AdminConfirmSignUp", ADMIN, Signed),
        ("AdminCreateUser", ADMIN, Signed),
        ("AdminDeleteUser", ADMIN, Signed),
        ("AdminDeleteUserAttributes", ADMIN, Signed),
        ("AdminDisableProviderForUser", ADMIN, Signed),
        ("AdminDisableUser", ADMIN, Signed),
        ("AdminEnableUser", ADMIN, Signed),
        ("AdminForgetDevice", ADMIN, Signed),
        ("AdminGetDevice", ADMIN, Signed),
        ("AdminGetUser", ADMIN, Signed),
        ("AdminInitiateAuth", ADMIN, Signed),
        ("AdminLinkProviderForUser", ADMIN, Signed),
        ("AdminListDevices", ADMIN, Signed),
        ("AdminListGroupsForUser", ADMIN, Signed),
        ("AdminListUserAuthEvents", ADMIN, Signed),
        ("AdminRemoveUserFromGroup", ADMIN, Signed),
        ("AdminResetUserPassword", ADMIN, Signed),
        ("AdminRespondToAuthChallenge", ADMIN, Signed),
        ("AdminSetUserMFAPreference", ADMIN, Signed),
        ("AdminSetUserPassword", ADMIN, Signed),
        ("AdminUpdateDeviceStatus", ADMIN, Signed),
        ("AdminUpdateUserAttributes", ADMIN, Signed),
        ("AdminUserGlobalSignOut", ADMIN, Signed),
        ("AssociateSoftwareToken", AUTH, Public),
        ("ChangePassword", AUTH, Public),
        ("CompleteWebAuthnRegistration", AUTH, Public),
        ("ConfirmDevice", AUTH, Public),
        ("ConfirmForgotPassword", AUTH, Public),
        ("ConfirmSignUp", AUTH, Public),
        ("CreateGroup", ADMIN, Signed),
        ("CreateIdentityProvider", ADMIN, Signed),
        ("CreateManagedLoginBranding", ADMIN, Signed),
        ("CreateResourceServer", ADMIN, Signed),
        ("CreateUserPool", ADMIN, Signed),
        ("CreateUserPoolClient", ADMIN, Signed),
        ("DeleteGroup", ADMIN, Signed),
        ("DeleteIdentityProvider", ADMIN, Signed),
        ("DeleteManagedLoginBranding", ADMIN, Signed),
        ("DeleteResourceServer", ADMIN, Signed),
        ("DeleteUser", AUTH, Public),
        ("DeleteUserAttributes", AUTH, Public),
        ("DeleteUserPool", ADMIN, Signed),
        ("DeleteUserPoolClient", ADMIN, Signed),
        ("DeleteWebAuthnCredential", AUTH, Public),
        ("DescribeIdentityProvider", ADMIN, Signed),
        ("DescribeManagedLoginBranding", ADMIN, Signed),
        ("DescribeManagedLoginBrandingByClient", ADMIN, Signed),
        ("DescribeResourceServer", ADMIN, Signed),
        ("DescribeUserPool", ADMIN, Signed),
        ("DescribeUserPoolClient", ADMIN, Signed),
        ("ForgetDevice", AUTH, Public),
        ("ForgotPassword", AUTH, Public),
        ("GetDevice", AUTH, Public),
        ("GetGroup", ADMIN, Signed),
        ("GetUICustomization", ADMIN, Signed),
        ("GetUser", AUTH, Public),
        ("GetUserAttributeVerificationCode", AUTH, Public),
        ("GetUserPoolMfaConfig", ADMIN, Signed),
        ("GlobalSignOut", AUTH, Public),
        ("InitiateAuth", AUTH, Public),
        ("ListDevices", AUTH, Public),
        ("ListGroups", ADMIN, Signed),
        ("ListIdentityProviders", ADMIN, Signed),
        ("ListResourceServers", ADMIN, Signed),
        ("ListUserPoolClients", ADMIN, Signed),
        ("ListUserPools", ADMIN, Signed),
        ("ListUsers", ADMIN, Signed),
        ("ListUsersInGroup", ADMIN, Signed),
        ("ListWebAuthnCredentials", AUTH, Public),
        ("ResendConfirmationCode", AUTH, Public),
        ("RespondToAuthChallenge", AUTH, Public),
        ("RevokeToken", AUTH, Public),
        ("SetUICustomization", ADMIN, Signed),
        ("SetUserMFAPreference", AUTH, Public),
        ("SetUserPoolMfaConfig", ADMIN, Signed),
        ("SignUp", AUTH, Public),
        ("StartWebAuthnRegistration", AUTH, Public),
        ("UpdateDeviceStatus", AUTH, Public),
        ("UpdateGroup", ADMIN, Signed),
        ("UpdateIdentityProvider", ADMIN, Signed),
        ("UpdateManagedLoginBranding", ADMIN, Signed),
        ("UpdateResourceServer", ADMIN, Signed),
        ("UpdateUserAttributes", AUTH, Public),
        ("UpdateUserPool", ADMIN, Signed),
        ("UpdateUserPoolClient", ADMIN, Signed),
        ("VerifySoftwareToken", AUTH, Public),
        ("VerifyUserAttribute", AUTH, Public),
    ],
};

/// `cognito-identity`: identity pools. The public actions are those the
/// gRPC `Identity` service exempts from the admin token
/// (`api::grpc::identity::PUBLIC_METHODS`).
pub const IDENTITY_POOLS: Api = Api {
    target_prefix: "AWSCognitoIdentityService",
    signing_name: "cognito-identity",
    actions: &[
        ("CreateIdentityPool", IDENTITY, Signed),
        ("DeleteIdentities", IDENTITY, Signed),
        ("DeleteIdentityPool", IDENTITY, Signed),
        ("DescribeIdentity", IDENTITY, Signed),
        ("DescribeIdentityPool", IDENTITY, Signed),
        ("GetCredentialsForIdentity", IDENTITY, Public),
        ("GetId", IDENTITY, Public),
        ("GetIdentityPoolRoles", IDENTITY, Signed),
        ("GetOpenIdToken", IDENTITY, Public),
        ("GetOpenIdTokenForDeveloperIdentity", IDENTITY, Signed),
        ("ListIdentities", IDENTITY, Signed),
        ("ListIdentityPools", IDENTITY, Signed),
        ("LookupDeveloperIdentity", IDENTITY, Signed),
        ("MergeDeveloperIdentities", IDENTITY, Signed),
        ("SetIdentityPoolRoles", IDENTITY, Signed),
        ("UnlinkDeveloperIdentity", IDENTITY, Signed),
        ("UnlinkIdentity", IDENTITY, Public),
        ("UpdateIdentityPool", IDENTITY, Signed),
    ],
};

/// The APIs served on `POST /`.
pub const APIS: &[&Api] = &[&USER_POOLS, &IDENTITY_POOLS];

/// An action resolved against the descriptors: what the front needs to
/// call it.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The gRPC path, `/tessera.v1.Auth/SignUp`.
    pub path: String,
    /// The request message.
    pub input: MessageDescriptor,
    /// The response message.
    pub output: MessageDescriptor,
    /// Who may call it.
    pub access: Access,
    /// The SigV4 service name of its API.
    pub signing_name: &'static str,
    /// A read (`Describe*`, `Get*`, `List*`, `Admin{Get,List}*`, `Lookup*`):
    /// an admin read is made linearizable ([`super::CognitoFront`]).
    pub read: bool,
}

/// Whether `action` only reads, by Cognito's naming.
pub fn is_read(action: &str) -> bool {
    let name = action.strip_prefix("Admin").unwrap_or(action);
    ["Describe", "Get", "List", "Lookup"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Every served action by its full `X-Amz-Target`.
pub type ActionTable = BTreeMap<String, Resolved>;

/// Resolves every action of [`APIS`] against `pool`; an action without a
/// gRPC method of its name is a build mistake, reported by name.
pub fn resolve(pool: &DescriptorPool) -> Result<ActionTable, String> {
    let mut table = BTreeMap::new();
    for api in APIS {
        for (action, service, access) in api.actions {
            let svc = pool
                .get_service_by_name(service)
                .ok_or_else(|| format!("no gRPC service {service}"))?;
            let method = svc
                .methods()
                .find(|m| m.name() == *action)
                .ok_or_else(|| format!("{service} has no method {action}"))?;
            table.insert(
                format!("{}.{action}", api.target_prefix),
                Resolved {
                    path: format!("/{service}/{action}"),
                    input: method.input(),
                    output: method.output(),
                    access: *access,
                    signing_name: api.signing_name,
                    read: is_read(action),
                },
            );
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_its_grpc_method() {
        let pool = DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET).unwrap();
        let table = resolve(&pool).unwrap();
        assert_eq!(table.len(), USER_POOLS.actions.len() + IDENTITY_POOLS.actions.len());
        assert_eq!(
            table["AWSCognitoIdentityProviderService.SignUp"].path,
            "/tessera.v1.Auth/SignUp"
        );
    }

    #[test]
    fn reads_are_told_by_their_names() {
        for read in [
            "DescribeUserPool",
            "GetGroup",
            "ListUsers",
            "AdminGetUser",
            "AdminListDevices",
            "LookupDeveloperIdentity",
        ] {
            assert!(is_read(read), "{read}");
        }
        for write in [
            "CreateGroup",
            "AdminCreateUser",
            "UpdateUserPool",
            "DeleteIdentityProvider",
            "GlobalSignOut",
        ] {
            assert!(!is_read(write), "{write}");
        }
    }

    /// The front never exposes unsigned what gRPC guards with the admin
    /// token: a public user-pool action is an `Auth` method, a public
    /// identity action one of the identity service's exemptions.
    #[test]
    fn public_actions_are_public_on_grpc_too() {
        for api in APIS {
            for (action, service, access) in api.actions {
                if *access != Access::Public {
                    continue;
                }
                let path = format!("/{service}/{action}");
                assert!(
                    *service == AUTH || crate::api::grpc::identity::PUBLIC_METHODS.contains(&path.as_str()),
                    "{path} is public on the JSON front but admin-only on gRPC"
                );
            }
        }
    }
}
