//! An independent RFC 6238 authenticator for the tests (SHA-1, 6 digits,
//! 30 s): the tests' own HOTP and base32, never the product's `totp-rs`,
//! so a bug in the product's TOTP cannot hide behind the same code in its
//! tests. `tests/mfa.rs` checks it against RFC 6238's vectors.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, ensure, Result};
use hmac::{Hmac, Mac};
use sha1::Sha1;

pub const STEP_SECS: u64 = 30;

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 4226 HOTP truncated to `digits`.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = usize::from(h[h.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([h[off] & 0x7f, h[off + 1], h[off + 2], h[off + 3]]);
    format!("{:0width$}", bin % 10u32.pow(digits), width = digits as usize)
}

/// RFC 4648 base32, upper case, without padding.
pub fn base32_decode(s: &str) -> Result<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = ALPHABET
            .iter()
            .position(|a| *a == c)
            .ok_or_else(|| anyhow!("{c:?} is not base32"))? as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// The user's authenticator app: the secret, and the latest step whose
/// code the server accepted (so the next code is a fresh one).
pub struct Authenticator {
    /// The shared secret.
    pub secret: Vec<u8>,
    /// The latest step whose code was accepted.
    pub used: u64,
}

impl Authenticator {
    pub fn from_secret_code(secret_code: &str) -> Result<Self> {
        let secret = base32_decode(secret_code)?;
        ensure!(secret.len() == 20, "the secret is {} bytes, not 160 bits", secret.len());
        Ok(Authenticator { secret, used: 0 })
    }

    pub fn code_at(&self, step: u64) -> String {
        hotp(&self.secret, step, 6)
    }

    /// The code of the current step, not marked used: for answers that
    /// must be refused before any code is checked.
    pub fn current_code(&self) -> String {
        self.code_at(unix_now() / STEP_SECS)
    }

    /// A code the server has not accepted yet: the current step's, or the
    /// next one's (inside the server's one step of skew); waits for the
    /// next step when both were spent.
    pub async fn fresh_code(&mut self) -> String {
        loop {
            let now = unix_now();
            let step = now / STEP_SECS;
            let candidate = (self.used + 1).max(step);
            if candidate <= step + 1 {
                self.used = candidate;
                return self.code_at(candidate);
            }
            let wait = STEP_SECS - now % STEP_SECS + 1;
            println!("  (both usable TOTP steps spent; waiting {wait} s for the next one)");
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
    }

    /// Six digits that are no code of the steps around now.
    pub fn wrong_code(&self) -> String {
        let step = unix_now() / STEP_SECS;
        let near: Vec<String> = (step - 3..=step + 3).map(|s| self.code_at(s)).collect();
        (0..10u32)
            .map(|d| format!("{d}{d}{d}{d}{d}{d}"))
            .find(|c| !near.contains(c))
            .unwrap_or_else(|| "123456".into())
    }
}
