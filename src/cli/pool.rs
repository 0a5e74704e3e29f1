//! `tessera pool`: create, update, list, show and delete user pools, and
//! their MFA setting (`mfa-config get|set`).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use tessera::client::Client;
use tessera::proto::*;

use super::{admin_client, list, status_err};
use crate::{Global, Output};

#[derive(Subcommand)]
pub enum PoolCmd {
    /// Create a user pool; prints its id.
    Create(CreateArgs),
    /// Change a pool's mutable settings.
    Update(UpdateArgs),
    /// List user pools.
    List {
        /// Read through the leader so the list includes every acknowledged write.
        #[arg(long)]
        consistent: bool,
    },
    /// Show one user pool.
    Get {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        consistent: bool,
    },
    /// Delete a user pool.
    Delete {
        #[arg(long)]
        pool_id: String,
    },
    /// A pool's MFA setting (GetUserPoolMfaConfig, SetUserPoolMfaConfig).
    #[command(subcommand)]
    MfaConfig(MfaConfigCmd),
}

#[derive(Subcommand)]
pub enum MfaConfigCmd {
    /// Show the pool's MFA setting.
    Get {
        #[arg(long)]
        pool_id: String,
        /// Read through the leader so the answer includes every acknowledged write.
        #[arg(long)]
        consistent: bool,
    },
    /// Replace the pool's MFA setting.
    Set(Box<MfaConfigSetArgs>),
}

// The flags of `pool mfa-config set` (a plain comment: a doc comment would
// become the subcommand's help text).
#[derive(Args)]
pub struct MfaConfigSetArgs {
    #[arg(long)]
    pub pool_id: String,
    /// OFF, OPTIONAL (users who enabled a factor are challenged) or ON
    /// (every sign-in; users without a factor set one up first).
    #[arg(long, value_parser = ["OFF", "OPTIONAL", "ON"])]
    pub mfa_configuration: String,
    /// Allow software tokens (TOTP): on or off.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub software_token: String,
    /// Allow SMS_MFA: a 6-digit code by SMS to a verified phone_number.
    #[arg(long)]
    pub sms: bool,
    /// The SMS text of SMS_MFA, with {####} where the code goes (at most
    /// 140 characters; implies --sms).
    #[arg(long)]
    pub sms_message: Option<String>,
    /// Allow EMAIL_OTP: an 8-digit code by email to a verified email.
    #[arg(long)]
    pub email: bool,
    /// The email body of EMAIL_OTP, with {####} where the code goes
    /// (implies --email).
    #[arg(long)]
    pub email_message: Option<String>,
    /// The email subject of EMAIL_OTP (implies --email).
    #[arg(long)]
    pub email_subject: Option<String>,
    /// Lifetime of MFA challenge sessions in seconds (10 to 900; default 180).
    #[arg(long)]
    pub session_validity_seconds: Option<i32>,
    /// Passkeys: the relying-party id (a domain the pages calling WebAuthn
    /// are served from, or a parent). Any --passkey-* flag replaces the
    /// pool's whole passkey setting; without one it stays as it is.
    #[arg(long)]
    pub passkey_rp_id: Option<String>,
    /// Passkeys: user verification, required or preferred (default).
    #[arg(long, value_parser = ["required", "preferred"])]
    pub passkey_user_verification: Option<String>,
    /// Passkeys: refuse authenticators without a certificate attestation.
    #[arg(long)]
    pub passkey_require_attestation: bool,
    /// Passkeys: the authenticator models (AAGUIDs, comma separated) allowed
    /// with --passkey-require-attestation.
    #[arg(long, value_delimiter = ',')]
    pub passkey_aaguids: Vec<String>,
    /// Passkeys: a passkey may answer the MFA step after a password.
    #[arg(long)]
    pub passkey_mfa: bool,
    /// Passkeys: how long a sign-in or registration challenge may be
    /// answered, in seconds (30 to 600; default 300).
    #[arg(long)]
    pub passkey_challenge_validity_seconds: Option<i32>,
}

impl MfaConfigSetArgs {
    /// The passkey setting the flags ask for, if any passkey flag is given.
    fn web_authn(&self) -> Option<WebAuthnConfigurationType> {
        let any = self.passkey_rp_id.is_some()
            || self.passkey_user_verification.is_some()
            || self.passkey_require_attestation
            || !self.passkey_aaguids.is_empty()
            || self.passkey_mfa
            || self.passkey_challenge_validity_seconds.is_some();
        any.then(|| WebAuthnConfigurationType {
            relying_party_id: self.passkey_rp_id.clone().unwrap_or_default(),
            user_verification: self.passkey_user_verification.clone().unwrap_or_default(),
            require_attestation: self.passkey_require_attestation,
            allowed_aaguids: self.passkey_aaguids.clone(),
            challenge_validity_seconds: self.passkey_challenge_validity_seconds.unwrap_or(0),
            passkey_mfa: self.passkey_mfa,
        })
    }
}

// The flags of `pool create` (a plain comment: a doc comment would become
// the subcommand's help text).
#[derive(Args)]
pub struct CreateArgs {
    #[arg(long)]
    pub name: String,
    /// Refuse deletion until turned off.
    #[arg(long)]
    pub deletion_protection: bool,
    /// Comma-separated sign-in aliases: email, phone_number.
    #[arg(long)]
    pub alias_attributes: Option<String>,
    /// Comma-separated attributes verified by a code at sign-up
    /// (default email).
    #[arg(long)]
    pub auto_verified_attributes: Option<String>,
    /// Comma-separated verified attributes (email, phone_number) whose
    /// old value keeps serving until a new value is verified
    /// (Cognito's AttributesRequireVerificationBeforeUpdate). Default:
    /// the auto-verified attributes; an empty string makes changes
    /// take effect at once, unverified.
    #[arg(long)]
    pub attributes_require_verification_before_update: Option<String>,
    /// Treat `Alice` and `alice` as different usernames.
    #[arg(long)]
    pub case_sensitive_usernames: bool,
    /// Comma-separated standard attributes every user must have.
    #[arg(long)]
    pub required_attributes: Option<String>,
    /// Comma-separated custom attributes as name:Type (String, Number,
    /// Boolean, DateTime), e.g. `tier:String,level:Number`.
    #[arg(long)]
    pub custom_attributes: Option<String>,
    /// Minimum password length (default 8; all character classes are
    /// required unless --relaxed-password-classes).
    #[arg(long)]
    pub password_min_length: Option<i32>,
    /// Require no particular character classes in passwords.
    #[arg(long)]
    pub relaxed_password_classes: bool,
    /// argon2id memory in KiB (default 19456).
    #[arg(long)]
    pub hash_memory_kib: Option<u32>,
    /// Comma-separated first factors of choice-based sign-in (USER_AUTH):
    /// PASSWORD (always required), EMAIL_OTP, SMS_OTP, MAGIC_LINK
    /// (Cognito's SignInPolicy.AllowedFirstAuthFactors, plus magic links).
    #[arg(long)]
    pub allowed_first_auth_factors: Option<String>,
    /// How long magic links are valid, in seconds (60 to 3600; default 600).
    #[arg(long)]
    pub magic_link_validity_seconds: Option<i32>,
    /// Allow USER_SRP_AUTH (Amplify's default sign-in). Keeps an SRP
    /// verifier beside each password hash, a weaker secret than argon2id.
    #[arg(long)]
    pub srp: bool,
    /// Track devices: always (every confirmed device is remembered) or
    /// user-opt-in (remembered after UpdateDeviceStatus).
    #[arg(long)]
    pub remember_devices: Option<String>,
    /// With --remember-devices: remembered devices skip MFA (Cognito's
    /// ChallengeRequiredOnNewDevice).
    #[arg(long)]
    pub mfa_only_on_new_devices: bool,
}

// The flags of `pool update` (a plain comment: a doc comment would become
// the subcommand's help text).
#[derive(Args)]
pub struct UpdateArgs {
    #[arg(long)]
    pub pool_id: String,
    /// on or off.
    #[arg(long)]
    pub deletion_protection: Option<String>,
    #[arg(long)]
    pub password_min_length: Option<i32>,
    /// Comma-separated; an empty string turns verification off.
    #[arg(long)]
    pub auto_verified_attributes: Option<String>,
    /// Comma-separated verified attributes whose old value keeps
    /// serving until a new value is verified; an empty string turns
    /// this off.
    #[arg(long)]
    pub attributes_require_verification_before_update: Option<String>,
    #[arg(long)]
    pub hash_memory_kib: Option<u32>,
    /// A trigger as NAME=URL (Cognito's LambdaConfig names: PreSignUp,
    /// PostConfirmation, PreAuthentication, PostAuthentication,
    /// PreTokenGeneration, CustomMessage, DefineAuthChallenge,
    /// CreateAuthChallenge, VerifyAuthChallengeResponse, UserMigration);
    /// NAME= removes it. Repeatable; other triggers are kept.
    #[arg(long = "trigger", value_name = "NAME=URL")]
    pub triggers: Vec<String>,
    /// A file holding the triggers' signing secret (16 to 512 bytes; a
    /// trailing newline is dropped). Needed with the first trigger.
    #[arg(long)]
    pub trigger_secret_file: Option<std::path::PathBuf>,
    /// Milliseconds a trigger call may take, retries included.
    #[arg(long)]
    pub trigger_timeout_ms: Option<u32>,
    /// PreTokenGeneration's event version: V1_0 or V2_0.
    #[arg(long)]
    pub pre_token_version: Option<String>,
    /// Removes every trigger.
    #[arg(long, conflicts_with_all = ["triggers", "trigger_secret_file"])]
    pub clear_triggers: bool,
    /// Comma-separated first factors of choice-based sign-in (USER_AUTH):
    /// PASSWORD (always required), EMAIL_OTP, SMS_OTP, MAGIC_LINK
    /// (Cognito's SignInPolicy.AllowedFirstAuthFactors, plus magic links).
    #[arg(long)]
    pub allowed_first_auth_factors: Option<String>,
    /// How long magic links are valid, in seconds (60 to 3600; default 600).
    #[arg(long)]
    pub magic_link_validity_seconds: Option<i32>,
    /// on: allow USER_SRP_AUTH (verifiers are made as passwords are seen);
    /// off: refuse it and delete every SRP verifier of the pool.
    #[arg(long)]
    pub srp: Option<String>,
    /// Track devices: always, user-opt-in, or off.
    #[arg(long)]
    pub remember_devices: Option<String>,
    /// With --remember-devices: remembered devices skip MFA (Cognito's
    /// ChallengeRequiredOnNewDevice).
    #[arg(long)]
    pub mfa_only_on_new_devices: bool,
}

/// The `DeviceConfiguration` of `--remember-devices` (`None`: off).
fn device_configuration(mode: &str, mfa_only_on_new: bool) -> Result<Option<DeviceConfigurationType>> {
    let prompt = match mode {
        "off" => return Ok(None),
        "always" => false,
        "user-opt-in" => true,
        other => bail!("--remember-devices {other:?}: use always, user-opt-in or off"),
    };
    Ok(Some(DeviceConfigurationType {
        challenge_required_on_new_device: mfa_only_on_new,
        device_only_remembered_on_user_prompt: prompt,
    }))
}

/// The URL field of `LambdaConfigType` named `name` (Cognito's name).
fn trigger_field<'a>(c: &'a mut LambdaConfigType, name: &str) -> Result<&'a mut String> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "presignup" => &mut c.pre_sign_up,
        "postconfirmation" => &mut c.post_confirmation,
        "preauthentication" => &mut c.pre_authentication,
        "postauthentication" => &mut c.post_authentication,
        "pretokengeneration" => &mut c.pre_token_generation,
        "custommessage" => &mut c.custom_message,
        "defineauthchallenge" => &mut c.define_auth_challenge,
        "createauthchallenge" => &mut c.create_auth_challenge,
        "verifyauthchallengeresponse" => &mut c.verify_auth_challenge_response,
        "usermigration" => &mut c.user_migration,
        _ => bail!("--trigger {name}=...: unknown trigger; use a LambdaConfig name such as PreSignUp"),
    })
}

/// The `lambda_config` of `pool update`: the current triggers with the
/// flags' changes, or `None` when no trigger flag was given.
fn lambda_config_update(current: Option<LambdaConfigType>, args: &UpdateArgs) -> Result<Option<LambdaConfigType>> {
    if args.clear_triggers {
        return Ok(Some(LambdaConfigType::default()));
    }
    if args.triggers.is_empty()
        && args.trigger_secret_file.is_none()
        && args.trigger_timeout_ms.is_none()
        && args.pre_token_version.is_none()
    {
        return Ok(None);
    }
    let mut c = current.unwrap_or_default();
    // The stored V2 URL comes back in pre_token_generation_config; keep
    // one place for it.
    if let Some(v) = c.pre_token_generation_config.take() {
        if c.pre_token_generation.is_empty() {
            c.pre_token_generation = v.lambda_arn;
        }
        c.pre_token_generation_config = Some(PreTokenGenerationVersionConfigType {
            lambda_version: v.lambda_version,
            lambda_arn: String::new(),
        });
    }
    for t in &args.triggers {
        let (name, url) = t
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--trigger {t:?}: use NAME=URL"))?;
        *trigger_field(&mut c, name)? = url.to_string();
    }
    if let Some(path) = &args.trigger_secret_file {
        let s = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        c.signing_secret = s.trim_end_matches(['\n', '\r']).to_string();
    }
    if let Some(ms) = args.trigger_timeout_ms {
        c.timeout_ms = ms;
    }
    if let Some(v) = &args.pre_token_version {
        c.pre_token_generation_config = Some(PreTokenGenerationVersionConfigType {
            lambda_version: v.clone(),
            lambda_arn: String::new(),
        });
    }
    c.signing_secret_set = false;
    Ok(Some(c))
}

/// `--allowed-first-auth-factors` and `--magic-link-validity-seconds` as
/// a `SignInPolicy` (validated by the server).
fn sign_in_policy(factors: &Option<String>, secs: Option<i32>) -> Option<SignInPolicyType> {
    (factors.is_some() || secs.is_some()).then(|| SignInPolicyType {
        allowed_first_auth_factors: if factors.is_some() {
            list(factors)
        } else {
            vec!["PASSWORD".into()]
        },
        magic_link_validity_seconds: secs.unwrap_or(0),
    })
}

fn pool_json(p: &UserPoolType) -> serde_json::Value {
    serde_json::to_value(p).unwrap_or_default()
}

/// Runs one `tessera pool` command.
pub async fn run(g: &Global, p: PoolCmd) -> Result<()> {
    let client = admin_client(g).await?;
    match p {
        PoolCmd::Create(args) => create(g, &client, args).await?,
        PoolCmd::List { consistent } => {
            let pools = client.list_all_user_pools(consistent).await.map_err(status_err)?;
            match g.output {
                Output::Json => println!(
                    "{}",
                    json!({"user_pools": pools.iter().map(pool_json).collect::<Vec<_>>()})
                ),
                Output::Table => {
                    println!("{:<20} {:<40} {:<10}", "ID", "NAME", "PROTECTED");
                    for p in &pools {
                        println!("{:<20} {:<40} {:<10}", p.id, p.name, p.deletion_protection);
                    }
                }
            }
        }
        PoolCmd::Get { pool_id, consistent } => {
            let p = client
                .describe_user_pool(&pool_id, consistent)
                .await
                .map_err(status_err)?;
            match g.output {
                Output::Json => println!("{}", pool_json(&p)),
                Output::Table => {
                    println!("id:                  {}", p.id);
                    println!("name:                {}", p.name);
                    println!("creation_date:       {}", p.creation_date);
                    println!("deletion_protection: {}", p.deletion_protection);
                    println!("users:               {}", p.estimated_number_of_users);
                    println!("alias_attributes:    {}", p.alias_attributes.join(","));
                    println!("auto_verified:       {}", p.auto_verified_attributes.join(","));
                    if let Some(u) = &p.user_attribute_update_settings {
                        println!(
                            "verify_before_update: {}",
                            u.attributes_require_verification_before_update.join(",")
                        );
                    }
                    if let Some(pp) = p.policies.as_ref().and_then(|x| x.password_policy.as_ref()) {
                        println!(
                            "password_policy:     min {} upper {} lower {} numbers {} symbols {}",
                            pp.minimum_length,
                            pp.require_uppercase,
                            pp.require_lowercase,
                            pp.require_numbers,
                            pp.require_symbols
                        );
                    }
                    let required: Vec<&str> = p
                        .schema_attributes
                        .iter()
                        .filter(|a| a.required)
                        .map(|a| a.name.as_str())
                        .collect();
                    println!("required_attributes: {}", required.join(","));
                }
            }
        }
        PoolCmd::Update(args) => update(g, &client, args).await?,
        PoolCmd::MfaConfig(cmd) => mfa_config(g, &client, cmd).await?,
        PoolCmd::Delete { pool_id } => {
            client.delete_user_pool(&pool_id).await.map_err(status_err)?;
            match g.output {
                Output::Json => println!("{}", json!({"deleted": pool_id})),
                Output::Table => println!("deleted {pool_id}"),
            }
        }
    }
    Ok(())
}

/// `pool create`: builds the request from the flags; prints the id (or the
/// pool as JSON).
async fn create(g: &Global, client: &Client, args: CreateArgs) -> Result<()> {
    let CreateArgs {
        name,
        deletion_protection,
        alias_attributes,
        auto_verified_attributes,
        attributes_require_verification_before_update,
        case_sensitive_usernames,
        required_attributes,
        custom_attributes,
        password_min_length,
        relaxed_password_classes,
        hash_memory_kib,
        allowed_first_auth_factors,
        magic_link_validity_seconds,
        srp,
        remember_devices,
        mfa_only_on_new_devices,
    } = args;
    let device_config = match remember_devices.as_deref() {
        Some(mode) => device_configuration(mode, mfa_only_on_new_devices)?,
        None => None,
    };
    let mut schema: Vec<SchemaAttributeType> = list(&required_attributes)
        .into_iter()
        .map(|name| SchemaAttributeType {
            name,
            mutable: true,
            required: true,
            ..Default::default()
        })
        .collect();
    for c in list(&custom_attributes) {
        let (name, t) = c.split_once(':').unwrap_or((c.as_str(), "String"));
        schema.push(SchemaAttributeType {
            name: name.to_string(),
            attribute_data_type: t.to_string(),
            mutable: true,
            ..Default::default()
        });
    }
    let strict = !relaxed_password_classes;
    let sign_in_policy = sign_in_policy(&allowed_first_auth_factors, magic_link_validity_seconds);
    let policies = (password_min_length.is_some() || relaxed_password_classes || sign_in_policy.is_some()).then(|| {
        UserPoolPolicyType {
            password_policy: (password_min_length.is_some() || relaxed_password_classes).then(|| PasswordPolicyType {
                minimum_length: password_min_length.unwrap_or(8),
                require_uppercase: strict,
                require_lowercase: strict,
                require_numbers: strict,
                require_symbols: strict,
                temporary_password_validity_days: 0,
            }),
            sign_in_policy,
        }
    });
    let pool = client
        .create_user_pool_with(CreateUserPoolRequest {
            pool_name: name,
            deletion_protection: if deletion_protection { "ACTIVE" } else { "INACTIVE" }.into(),
            policies,
            alias_attributes: list(&alias_attributes),
            auto_verified_attributes: list(&auto_verified_attributes),
            username_configuration: Some(UsernameConfigurationType {
                case_sensitive: case_sensitive_usernames,
            }),
            schema,
            default_token_validity: None,
            password_hashing: hash_memory_kib.map(|m| PasswordHashingType {
                memory_kib: m,
                ..Default::default()
            }),
            user_attribute_update_settings: attributes_require_verification_before_update.as_ref().map(|_| {
                UserAttributeUpdateSettingsType {
                    attributes_require_verification_before_update: list(&attributes_require_verification_before_update),
                }
            }),
            // Triggers are set with `pool update --trigger`.
            lambda_config: None,
            srp_enabled: srp.then_some(true),
            device_configuration: device_config,
        })
        .await
        .map_err(status_err)?;
    match g.output {
        Output::Json => println!("{}", pool_json(&pool)),
        Output::Table => println!("{}", pool.id),
    }
    Ok(())
}

/// `pool update`: reads the pool (consistently) so that a changed password
/// length or hashing cost keeps the settings it does not name.
async fn update(g: &Global, client: &Client, args: UpdateArgs) -> Result<()> {
    let current = client
        .describe_user_pool(&args.pool_id, true)
        .await
        .map_err(status_err)?;
    let lambda_config = lambda_config_update(current.lambda_config.clone(), &args)?;
    let UpdateArgs {
        pool_id,
        deletion_protection,
        password_min_length,
        auto_verified_attributes,
        attributes_require_verification_before_update,
        hash_memory_kib,
        allowed_first_auth_factors,
        magic_link_validity_seconds,
        srp,
        remember_devices,
        mfa_only_on_new_devices,
        ..
    } = args;
    let (device_configuration, clear_device_configuration) = match remember_devices.as_deref() {
        None => (None, false),
        Some(mode) => {
            let c = device_configuration(mode, mfa_only_on_new_devices)?;
            let clear = c.is_none();
            (c, clear)
        }
    };
    let srp_enabled = match srp.as_deref() {
        None => None,
        Some("on") => Some(true),
        Some("off") => Some(false),
        Some(other) => bail!("--srp {other:?}: use on or off"),
    };
    let current_sign_in = current.policies.as_ref().and_then(|p| p.sign_in_policy.clone());
    // A validity alone keeps the current factors, and factors alone the
    // current validity.
    let sign_in_policy = match (&allowed_first_auth_factors, magic_link_validity_seconds) {
        (None, None) => None,
        (factors, secs) => {
            let current = current_sign_in.unwrap_or_default();
            Some(SignInPolicyType {
                allowed_first_auth_factors: match factors {
                    Some(_) => list(factors),
                    None => current.allowed_first_auth_factors,
                },
                magic_link_validity_seconds: secs.unwrap_or(current.magic_link_validity_seconds),
            })
        }
    };
    let password_policy = password_min_length.map(|n| {
        let mut p = current
            .policies
            .as_ref()
            .and_then(|p| p.password_policy)
            .unwrap_or_default();
        p.minimum_length = n;
        p
    });
    let policies = (password_policy.is_some() || sign_in_policy.is_some()).then_some(UserPoolPolicyType {
        password_policy,
        sign_in_policy,
    });
    let deletion_protection = match deletion_protection.as_deref() {
        None => String::new(),
        Some("on") => "ACTIVE".into(),
        Some("off") => "INACTIVE".into(),
        Some(other) => bail!("--deletion-protection {other:?}: use on or off"),
    };
    let body = UpdateUserPoolRequest {
        user_pool_id: pool_id,
        policies,
        update_auto_verified_attributes: auto_verified_attributes.is_some(),
        auto_verified_attributes: list(&auto_verified_attributes),
        default_token_validity: None,
        password_hashing: hash_memory_kib.map(|m| PasswordHashingType {
            memory_kib: m,
            ..current.password_hashing.unwrap_or_default()
        }),
        deletion_protection,
        user_attribute_update_settings: attributes_require_verification_before_update.as_ref().map(|_| {
            UserAttributeUpdateSettingsType {
                attributes_require_verification_before_update: list(&attributes_require_verification_before_update),
            }
        }),
        lambda_config,
        srp_enabled,
        device_configuration,
        clear_device_configuration,
    };
    let p = client
        .admin()
        .update_user_pool(client.req(body))
        .await
        .map_err(status_err)?
        .into_inner()
        .user_pool
        .unwrap_or_default();
    match g.output {
        Output::Json => println!("{}", pool_json(&p)),
        Output::Table => println!("updated {}", p.id),
    }
    Ok(())
}

/// `pool mfa-config get|set`.
async fn mfa_config(g: &Global, client: &Client, cmd: MfaConfigCmd) -> Result<()> {
    let (pool_id, sms, totp, mfa, email, secs, web_authn) = match cmd {
        MfaConfigCmd::Get { pool_id, consistent } => {
            let r = client
                .admin()
                .get_user_pool_mfa_config(client.req(GetUserPoolMfaConfigRequest {
                    user_pool_id: pool_id.clone(),
                    consistent_read: consistent,
                }))
                .await
                .map_err(status_err)?
                .into_inner();
            (
                pool_id,
                r.sms_mfa_configuration,
                r.software_token_mfa_configuration,
                r.mfa_configuration,
                r.email_mfa_configuration,
                r.auth_session_validity_seconds,
                r.web_authn_configuration,
            )
        }
        MfaConfigCmd::Set(a) => {
            let r = client
                .admin()
                .set_user_pool_mfa_config(client.req(SetUserPoolMfaConfigRequest {
                    user_pool_id: a.pool_id.clone(),
                    sms_mfa_configuration: (a.sms || a.sms_message.is_some()).then(|| SmsMfaConfigType {
                        sms_authentication_message: a.sms_message.clone().unwrap_or_default(),
                    }),
                    software_token_mfa_configuration: Some(SoftwareTokenMfaConfigType {
                        enabled: a.software_token == "on",
                    }),
                    mfa_configuration: a.mfa_configuration.clone(),
                    email_mfa_configuration: (a.email || a.email_message.is_some() || a.email_subject.is_some()).then(
                        || EmailMfaConfigType {
                            message: a.email_message.clone().unwrap_or_default(),
                            subject: a.email_subject.clone().unwrap_or_default(),
                        },
                    ),
                    auth_session_validity_seconds: a.session_validity_seconds.unwrap_or(0),
                    web_authn_configuration: a.web_authn(),
                }))
                .await
                .map_err(status_err)?
                .into_inner();
            (
                a.pool_id,
                r.sms_mfa_configuration,
                r.software_token_mfa_configuration,
                r.mfa_configuration,
                r.email_mfa_configuration,
                r.auth_session_validity_seconds,
                r.web_authn_configuration,
            )
        }
    };
    let software_token = totp.is_some_and(|t| t.enabled);
    let web_authn = web_authn.unwrap_or_default();
    let value = json!({
        "user_pool_id": pool_id,
        "mfa_configuration": mfa,
        "software_token_mfa_configuration": { "enabled": software_token },
        "sms_mfa_configuration": sms.as_ref().map(|c| json!({
            "sms_authentication_message": c.sms_authentication_message,
        })),
        "email_mfa_configuration": email.as_ref().map(|c| json!({
            "message": c.message,
            "subject": c.subject,
        })),
        "auth_session_validity_seconds": secs,
        "web_authn_configuration": {
            "relying_party_id": web_authn.relying_party_id,
            "user_verification": web_authn.user_verification,
            "require_attestation": web_authn.require_attestation,
            "allowed_aaguids": web_authn.allowed_aaguids,
            "challenge_validity_seconds": web_authn.challenge_validity_seconds,
            "passkey_mfa": web_authn.passkey_mfa,
        },
    });
    match g.output {
        Output::Json => println!("{value}"),
        Output::Table => {
            println!("pool:                  {pool_id}");
            println!("mfa_configuration:     {mfa}");
            println!(
                "software_token (TOTP): {}",
                if software_token { "enabled" } else { "disabled" }
            );
            println!(
                "sms_mfa:               {}",
                if sms.is_some() { "enabled" } else { "disabled" }
            );
            println!(
                "email_otp:             {}",
                if email.is_some() { "enabled" } else { "disabled" }
            );
            println!("session_validity:      {secs} s");
            println!(
                "passkeys:              relying party {}, user verification {}, attestation {}, MFA {}, challenges valid {} s",
                if web_authn.relying_party_id.is_empty() {
                    "(public URL's host)"
                } else {
                    web_authn.relying_party_id.as_str()
                },
                web_authn.user_verification,
                if web_authn.require_attestation {
                    "required"
                } else {
                    "not required"
                },
                if web_authn.passkey_mfa {
                    "allowed"
                } else {
                    "not allowed"
                },
                web_authn.challenge_validity_seconds
            );
        }
    }
    Ok(())
}
