//! Cognito's `SECRET_HASH`: Base64(HMAC-SHA256(client_secret, username +
//! client_id)). Required on calls to an app client that has a secret.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Computes the `SECRET_HASH` a client must send.
pub fn secret_hash(client_secret: &str, username: &str, client_id: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(client_secret.as_bytes()) {
        Ok(m) => m,
        // HMAC accepts keys of any length; this arm is unreachable.
        Err(_) => return String::new(),
    };
    mac.update(username.as_bytes());
    mac.update(client_id.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks a presented `SECRET_HASH` in constant time.
pub fn verify_secret_hash(client_secret: &str, username: &str, client_id: &str, presented: &str) -> bool {
    let Ok(presented) = STANDARD.decode(presented) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(client_secret.as_bytes()) else {
        return false;
    };
    mac.update(username.as_bytes());
    mac.update(client_id.as_bytes());
    mac.verify_slice(&presented).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independent_hmac_and_rejects_others() {
        // python3 -c "import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b'secret',b'alice'+b'client1',hashlib.sha256).digest()).decode())"
        let expected = "1f+jIZ5jrvd9T9LKNEBwDVXuGhIxTem62DTEPkKb29k=";
        assert_eq!(secret_hash("secret", "alice", "client1"), expected);
        assert!(verify_secret_hash("secret", "alice", "client1", expected));
        assert!(!verify_secret_hash("secret", "bob", "client1", expected));
        assert!(!verify_secret_hash("other", "alice", "client1", expected));
        assert!(!verify_secret_hash("secret", "alice", "client1", "not base64!"));
    }
}
