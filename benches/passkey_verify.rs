#![allow(clippy::disallowed_methods, reason = "a benchmark measures time")]
//! What one passkey sign-in's assertion check costs on one core (issue
//! #18), apart from the RPCs and the replicated write around it.
//!
//! `tessera bench auth --scenario passkey` measures whole sign-ins on a
//! node, client and server sharing the machine. This bench answers the
//! question that run cannot: how much of a sign-in the verification
//! itself takes, and so how many sign-ins per second a core could carry
//! if nothing else ran. It times, one thread, each on fresh inputs:
//!
//! 1. `check`: [`RelyingParty::finish_sign_in`] as the server calls it:
//!    the assertion parsed from its JSON, the stored credential decoded,
//!    and webauthn-rs-core's `authenticate_credential` (client data,
//!    relying party hash, flags, counter, signature);
//! 2. `key`: only the library rebuilding the OpenSSL key from the
//!    credential's COSE form, which it does inside every check (it
//!    validates the point with `EC_KEY_check_key`);
//! 3. `ecdsa`: a bare OpenSSL ES256 verification of the same signatures
//!    with a key built once: the cryptographic floor;
//! 4. `ed25519`: signing one token, three of which a sign-in mints.
//!
//! Every check must succeed (a refused assertion is an error and exits
//! non-zero), so a speed-up that broke verification would not pass.
//!
//! ```text
//! make bench            # or, on its own:
//! ROCKSDB_STATIC=1 ROCKSDB_LIB_DIR=<dev librocksdb dir> cargo bench --bench passkey_verify
//! BENCH_SECS=5 cargo bench --bench passkey_verify
//! ```
//!
//! Under `cargo test --benches` (no `--bench` flag) it runs a short smoke
//! pass, which still checks every assertion.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use openssl::hash::MessageDigest;
use openssl::sign::Verifier;
use sha2::{Digest as _, Sha256};
use tessera::auth::webauthn::{parse_assertion, RelyingParty};
use tessera::bench::auth_passkey::SoftPasskey;
use tessera::model::webauthn::{WebAuthnConfig, WebAuthnCredential};
use webauthn_rs_core::proto::Credential;

/// Distinct challenges answered per pass: each check gets a fresh
/// assertion, as a server does.
const ASSERTIONS: usize = 256;
/// The issue's aim for whole sign-ins on one node of this machine.
const AIM: f64 = 5_000.0;

/// One signed challenge, ready to check.
struct Answered {
    state_json: String,
    assertion_json: String,
    /// What ES256 signed, and the DER signature, for the bare check.
    signed: Vec<u8>,
    signature: Vec<u8>,
}

fn answered(rp: &RelyingParty, passkey: &SoftPasskey, cred: &WebAuthnCredential) -> Result<Answered> {
    let challenge = rp
        .start_sign_in(std::slice::from_ref(cred))
        .map_err(anyhow::Error::msg)?;
    let assertion_json = passkey.answer(&challenge.options_json)?;
    let v: serde_json::Value = serde_json::from_str(&assertion_json)?;
    let field = |k: &str| -> Result<Vec<u8>> {
        let s = v["response"][k].as_str().with_context(|| format!("no response.{k}"))?;
        Ok(URL_SAFE_NO_PAD.decode(s)?)
    };
    let mut signed = field("authenticatorData")?;
    signed.extend_from_slice(&Sha256::digest(field("clientDataJSON")?));
    Ok(Answered {
        state_json: challenge.state_json,
        assertion_json,
        signed,
        signature: field("signature")?,
    })
}

/// Runs `op` over `inputs` round-robin for `secs` seconds; the time per
/// call.
fn time_per_call<T>(secs: f64, inputs: &[T], mut op: impl FnMut(&T) -> Result<()>) -> Result<Duration> {
    let window = Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut calls = 0u32;
    while started.elapsed() < window || calls == 0 {
        for input in inputs {
            op(input)?;
        }
        calls += u32::try_from(inputs.len()).unwrap_or(u32::MAX);
    }
    Ok(started.elapsed() / calls)
}

fn main() -> Result<()> {
    let measured = std::env::args().any(|a| a == "--bench");
    let secs: f64 = match std::env::var("BENCH_SECS") {
        Ok(v) => v.parse().with_context(|| format!("BENCH_SECS={v:?} is not a number"))?,
        Err(_) if measured => 3.0,
        Err(_) => 0.1,
    };

    let rp = RelyingParty::new("localhost", "", &WebAuthnConfig::default()).map_err(anyhow::Error::msg)?;
    let (options, state) = rp
        .start_registration("bench-sub", "bench", "bench", &[])
        .map_err(anyhow::Error::msg)?;
    let (passkey, registration) = SoftPasskey::register(&options)?;
    let cred = rp
        .finish_registration(&state, &registration, "bench")
        .map_err(|r| anyhow::anyhow!("registration refused: {r}"))?
        .credential;
    let inputs = (0..ASSERTIONS)
        .map(|_| answered(&rp, &passkey, &cred))
        .collect::<Result<Vec<_>>>()?;
    let creds = std::slice::from_ref(&cred);

    // 1. The server's check, end to end.
    let check = time_per_call(secs, &inputs, |a| {
        let assertion = parse_assertion(&a.assertion_json).map_err(|r| anyhow::anyhow!("{r}"))?;
        let ok = rp
            .finish_sign_in(&a.state_json, creds, &assertion)
            .map_err(|r| anyhow::anyhow!("a valid assertion was refused: {r}"))?;
        black_box(ok);
        Ok(())
    })?;

    // 2. The library's key rebuild alone.
    let library: Credential = serde_json::from_str(&cred.credential_json)?;
    let key = time_per_call(secs, &inputs[..1], |_| {
        black_box(library.cred.get_openssl_pkey()?);
        Ok(())
    })?;

    // 3. The bare ES256 check with a key built once.
    let pkey = library.cred.get_openssl_pkey()?;
    let ecdsa = time_per_call(secs, &inputs, |a| {
        let mut v = Verifier::new(MessageDigest::sha256(), &pkey)?;
        v.update(&a.signed)?;
        if !v.verify(&a.signature)? {
            bail!("a valid signature did not verify");
        }
        Ok(())
    })?;

    // 4. One token's signature.
    let signing = SigningKey::from_bytes(&[7; 32]);
    let claims = vec![b'x'; 700];
    let ed25519 = time_per_call(secs, &inputs[..1], |_| {
        black_box(signing.sign(&claims));
        Ok(())
    })?;

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("passkey assertion check, one thread ({ASSERTIONS} distinct assertions, {secs} s each):");
    println!(
        "  check     {:>7.1} µs  finish_sign_in: parse, decode the credential, authenticate_credential",
        us(check)
    );
    println!(
        "  key       {:>7.1} µs  of which the library rebuilds and validates the P-256 key",
        us(key)
    );
    println!(
        "  ecdsa     {:>7.1} µs  a bare ES256 verification, key built once",
        us(ecdsa)
    );
    println!(
        "  ed25519   {:>7.1} µs  one token signature (a sign-in mints three)",
        us(ed25519)
    );
    let per_core = 1.0 / check.as_secs_f64();
    println!(
        "  ceiling   {:.0} checks/s per core, {:.0}/s on this machine's {cores} cores with nothing else running",
        per_core,
        per_core * cores as f64
    );
    println!(
        "  aim       {AIM:.0} sign-ins/s on one node: the check alone needs {:.2} of the {cores} cores",
        AIM / per_core
    );
    Ok(())
}
