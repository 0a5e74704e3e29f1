//! The hosted page's words, English built in. Every visible string has a
//! key; a pool's branding may load other languages, or reword English, by
//! key (`model::branding`). A loaded language need not translate them all:
//! a missing key falls back to English, so a partial translation never
//! breaks the page. Errors the flows raise are shown by their exception
//! name (`error.NotAuthorizedException`) when the language has it, else
//! by the flow's own English message.
//!
//! The keys are the contract with language packs (the README lists them),
//! so a key, once released, keeps its meaning.

/// The built-in English strings. A key here is the contract with language
/// packs: the README lists them.
pub const ENGLISH: &[(&str, &str)] = &[
    ("signin.title", "Sign in"),
    ("signin.username", "Username"),
    ("signin.password", "Password"),
    ("signin.submit", "Sign in"),
    ("signin.or", "or"),
    ("signin.with", "Sign in with {provider}"),
    ("signin.signup_link", "No account yet? Sign up"),
    ("signin.forgot_link", "Forgot your password?"),
    ("signin.passwordless", "Sign in with a one-time code instead"),
    ("signin.username_needed", "Enter your username first."),
    ("signin.passkey", "Sign in with a passkey"),
    ("passkey.title", "Add a passkey"),
    (
        "passkey.intro",
        "Sign in next time with a passkey: your fingerprint, face or screen lock instead of your password.",
    ),
    ("passkey.add", "Add a passkey"),
    ("passkey.skip", "Not now"),
    ("passkey.default_name", "Passkey"),
    (
        "passkey.cancelled",
        "No passkey was used (the request was cancelled or timed out). Try again, or sign in with your password.",
    ),
    (
        "passkey.refused",
        "That passkey was not accepted. Try again, or sign in with your password.",
    ),
    (
        "passkey.unavailable",
        "Signing in with a passkey is not possible right now. Sign in with your password.",
    ),
    (
        "passkey.add_cancelled",
        "No passkey was added (the request was cancelled or timed out). Try again, or choose Not now.",
    ),
    ("passkey.add_failed", "The passkey could not be added. Try again, or choose Not now."),
    ("signup.title", "Sign up"),
    ("signup.username", "Username"),
    ("signup.password", "Password"),
    ("signup.submit", "Sign up"),
    ("signup.back", "Back to sign in"),
    ("signup.missing", "Please fill in {attribute}."),
    ("attribute.email", "Email"),
    ("attribute.phone_number", "Phone number (+15555550100)"),
    ("attribute.name", "Name"),
    ("attribute.given_name", "Given name"),
    ("attribute.family_name", "Family name"),
    ("attribute.birthdate", "Birthdate (YYYY-MM-DD)"),
    ("confirm.title", "Confirm your account"),
    ("confirm.sent", "We sent a code to {destination}."),
    (
        "confirm.sent_nowhere",
        "This account has no email or phone number to send a code to; ask an administrator to confirm it.",
    ),
    ("confirm.code", "Confirmation code"),
    ("confirm.submit", "Confirm"),
    ("confirm.resend", "Send a new code"),
    ("forgot.title", "Forgot your password?"),
    (
        "forgot.intro",
        "Enter your username and we will send a code to reset your password.",
    ),
    ("forgot.username", "Username"),
    ("forgot.submit", "Send code"),
    ("reset.title", "Reset your password"),
    ("reset.sent", "If the account exists, we sent a code to {destination}."),
    ("reset.code", "Code"),
    ("reset.password", "New password"),
    ("reset.submit", "Change password"),
    ("reset.done", "Your password has been changed. Sign in with the new one."),
    ("mfa_setup.title", "Set up an authenticator app"),
    (
        "mfa_setup.intro",
        "This account needs a second step at sign-in: a code from an authenticator app.",
    ),
    ("mfa_setup.start", "Set up"),
    (
        "mfa_setup.scan",
        "Add this key to your authenticator app (type the secret, or open the link on the device that has the app), then enter the code it shows.",
    ),
    ("mfa_setup.secret", "Secret key"),
    ("mfa_setup.uri", "Link for authenticator apps"),
    ("mfa_setup.code", "Code from your authenticator app"),
    ("select_mfa.legend", "How do you want to receive your sign-in code?"),
    ("select_mfa.SOFTWARE_TOKEN_MFA", "Authenticator app"),
    ("select_mfa.SMS_MFA", "Text message"),
    ("select_mfa.EMAIL_OTP", "Email"),
    ("select_mfa.SMS_OTP", "Text message"),
    ("select_mfa.none", "Choose one of the options."),
    ("challenge.title", "One more step"),
    ("challenge.continue", "Continue"),
    ("challenge.SOFTWARE_TOKEN_MFA", "Code from your authenticator app"),
    ("challenge.SMS_MFA", "Code we sent by text message"),
    ("challenge.EMAIL_OTP", "Code we sent by email"),
    ("challenge.SMS_OTP", "Code we sent by text message"),
    ("challenge.NEW_PASSWORD_REQUIRED", "Choose a new password"),
    ("error.title", "Sign-in cannot continue"),
    ("error.restart", "Go back to the app and start signing in again."),
    (
        "error.csrf",
        "This form expired or was sent from another site (its security token does not match).",
    ),
    ("error.expired", "This sign-in page has expired."),
    ("error.unknown_step", "Unknown sign-in step."),
    (
        "error.unsupported_step",
        "This sign-in needs the {step} step, which this page does not offer; sign in from the app.",
    ),
    (
        "error.logout_uri",
        "The logout_uri is not one of the app's registered sign-out URLs.",
    ),
    ("error.no_token", "The sign-in produced no usable token."),
];

/// The English text of `key`, if it is one.
pub fn english(key: &str) -> Option<&'static str> {
    ENGLISH.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// Whether a language pack may set `key`: a built-in string, or the
/// text shown for one of the flows' exceptions (`error.<Name>Exception`).
pub fn is_key(key: &str) -> bool {
    english(key).is_some()
        || key
            .strip_prefix("error.")
            .is_some_and(|e| e.ends_with("Exception") && e.len() <= 64 && e.chars().all(|c| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique() {
        let mut keys: Vec<_> = ENGLISH.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n);
    }

    /// The README lists the keys for translators; a new key must be added
    /// there too.
    #[test]
    fn the_readme_lists_every_key() {
        let readme = include_str!("../../README.md");
        for (key, _) in ENGLISH {
            assert!(
                readme.contains(&format!("`{key}`")),
                "README.md does not list the key {key}"
            );
        }
    }

    #[test]
    fn exception_keys_are_accepted_and_nothing_else() {
        assert!(is_key("signin.title"));
        assert!(is_key("error.NotAuthorizedException"));
        assert!(!is_key("error.<script>Exception"));
        assert!(!is_key("signin.titel"));
    }
}
