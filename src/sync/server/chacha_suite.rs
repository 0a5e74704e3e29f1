//! TLS_CHACHA20_POLY1305_SHA256 for the sync listener, with QUIC packet
//! and header keys that hold their 32 key bytes and nothing else.
//!
//! Why this exists: a connection keeps six AEAD keys for as long as it
//! lives (1-RTT packet keys each way, the next generation each way for a
//! key update, and a header-protection key each way), plus the TLS record
//! layer's encrypter and decrypter, which rustls sets up for QUIC too and
//! QUIC never uses. ring stores every AEAD key as an enum sized for its
//! largest variant, an expanded AES key with its GHASH table, so each of
//! those costs ~0.5 KiB even under ChaCha20 (whose key is 32 bytes). On a
//! node holding 10,000 idle devices that was ~3.3 KiB of a connection's
//! ~21 KiB. Here the keys are RustCrypto's `chacha20poly1305` and
//! `chacha20`, whose key types are the 32 bytes themselves, and the
//! record-layer pair keeps only the key and IV, building ring's cipher if a
//! record is ever protected.
//!
//! The TLS handshake itself (key exchange, HKDF, signatures) is still
//! ring's, through rustls. The listener prefers this suite and still
//! offers ring's AES-GCM suites, so a device without ChaCha20 (which TLS
//! 1.3 makes optional) connects, at the larger per-connection cost.
//! ChaCha20 is also the faster cipher on phones without AES instructions.

use std::sync::LazyLock;

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv, MessageDecrypter, MessageEncrypter, Nonce,
    OutboundOpaqueMessage, OutboundPlainMessage, Tls13AeadAlgorithm, UnsupportedOperationError,
};
use rustls::crypto::CipherSuiteCommon;
use rustls::{quic, ConnectionTrafficSecrets, Error, SupportedCipherSuite, Tls13CipherSuite};

/// Key length of ChaCha20-Poly1305 and of ChaCha20 header protection.
const KEY_LEN: usize = 32;
/// Length of the Poly1305 tag.
const TAG_LEN: usize = 16;
/// Header protection samples 16 bytes of ciphertext (RFC 9001 §5.4.2).
const SAMPLE_LEN: usize = 16;
/// RFC 9001 §6.6: ChaCha20-Poly1305 may forge-check 2^36 packets per key;
/// its confidentiality limit exceeds any packet number.
const INTEGRITY_LIMIT: u64 = 1 << 36;

/// ring's TLS_CHACHA20_POLY1305_SHA256, whose hash, HKDF and record
/// protection this suite shares.
fn ring_chacha() -> &'static Tls13CipherSuite {
    match rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256 {
        SupportedCipherSuite::Tls13(suite) => suite,
        // rustls defines this constant as a TLS 1.3 suite.
        _ => unreachable!("TLS13_CHACHA20_POLY1305_SHA256 is a TLS 1.3 suite"),
    }
}

static SUITE: LazyLock<Tls13CipherSuite> = LazyLock::new(|| {
    let ring = ring_chacha();
    Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: ring.common.suite,
            hash_provider: ring.common.hash_provider,
            confidentiality_limit: ring.common.confidentiality_limit,
        },
        hkdf_provider: ring.hkdf_provider,
        aead_alg: &RecordLayer,
        quic: Some(&QuicKeys),
    }
});

/// The suite, for the front of a `CryptoProvider`'s `cipher_suites`.
pub fn suite() -> SupportedCipherSuite {
    SupportedCipherSuite::Tls13(&SUITE)
}

fn key_bytes(key: &AeadKey) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    // rustls derives `aead_key_len()` (32) bytes for this suite.
    out.copy_from_slice(&key.as_ref()[..KEY_LEN]);
    out
}

fn iv_bytes(iv: &Iv) -> [u8; 12] {
    let mut out = [0u8; 12];
    // rustls's IVs are NONCE_LEN (12) bytes; never fall back to a zero IV.
    out.copy_from_slice(iv.as_ref());
    out
}

/// Makes this suite's QUIC keys (RFC 9001 §5).
struct QuicKeys;

impl quic::Algorithm for QuicKeys {
    fn packet_key(&self, key: AeadKey, iv: Iv) -> Box<dyn quic::PacketKey> {
        Box::new(PacketKey {
            aead: ChaCha20Poly1305::new(&key_bytes(&key).into()),
            iv,
        })
    }

    fn header_protection_key(&self, key: AeadKey) -> Box<dyn quic::HeaderProtectionKey> {
        Box::new(HeaderKey(key_bytes(&key)))
    }

    fn aead_key_len(&self) -> usize {
        KEY_LEN
    }
}

/// Protects packet payloads: AEAD_CHACHA20_POLY1305 with the nonce the
/// IV XORed with the packet number, and the header as associated data
/// (RFC 9001 §5.3).
struct PacketKey {
    aead: ChaCha20Poly1305,
    iv: Iv,
}

impl quic::PacketKey for PacketKey {
    fn encrypt_in_place(&self, packet_number: u64, header: &[u8], payload: &mut [u8]) -> Result<quic::Tag, Error> {
        let nonce = Nonce::new(&self.iv, packet_number).0;
        let tag = self
            .aead
            .encrypt_in_place_detached(&nonce.into(), header, payload)
            .map_err(|_| Error::EncryptError)?;
        Ok(quic::Tag::from(tag.as_slice()))
    }

    fn decrypt_in_place<'a>(
        &self,
        packet_number: u64,
        header: &[u8],
        payload: &'a mut [u8],
    ) -> Result<&'a [u8], Error> {
        let Some(plain_len) = payload.len().checked_sub(TAG_LEN) else {
            return Err(Error::DecryptError);
        };
        let (plain, tag) = payload.split_at_mut(plain_len);
        let nonce = Nonce::new(&self.iv, packet_number).0;
        self.aead
            .decrypt_in_place_detached(&nonce.into(), header, plain, (&*tag).into())
            .map_err(|_| Error::DecryptError)?;
        Ok(plain)
    }

    fn tag_len(&self) -> usize {
        TAG_LEN
    }

    fn confidentiality_limit(&self) -> u64 {
        u64::MAX
    }

    fn integrity_limit(&self) -> u64 {
        INTEGRITY_LIMIT
    }
}

/// ChaCha20 header protection (RFC 9001 §5.4.4): the mask is the first
/// five bytes of the ChaCha20 keystream whose block counter is the
/// sample's first four bytes (little-endian) and whose nonce is the rest.
struct HeaderKey([u8; KEY_LEN]);

impl HeaderKey {
    fn mask(&self, sample: &[u8]) -> Result<[u8; 5], Error> {
        let Ok(sample) = <&[u8; SAMPLE_LEN]>::try_from(sample) else {
            return Err(Error::General(format!(
                "a header protection sample is {SAMPLE_LEN} bytes, not {}",
                sample.len()
            )));
        };
        let (counter, nonce) = sample.split_at(4);
        let counter = u32::from_le_bytes([counter[0], counter[1], counter[2], counter[3]]);
        let mut cipher = chacha20::ChaCha20::new(&self.0.into(), nonce.into());
        // A 32-bit block counter is always within the keystream's range.
        cipher.seek(u64::from(counter) * 64);
        let mut mask = [0u8; 5];
        cipher.apply_keystream(&mut mask);
        Ok(mask)
    }

    /// RFC 9001 §5.4.1. The packet number's length is in the first byte's
    /// low bits, which are themselves masked: read them before masking and
    /// after unmasking.
    fn apply(&self, sample: &[u8], first: &mut u8, packet_number: &mut [u8], removing: bool) -> Result<(), Error> {
        let mask = self.mask(sample)?;
        if packet_number.len() > 4 {
            return Err(Error::General("a packet number is at most 4 bytes".into()));
        }
        // Long headers protect 4 bits of the first byte, short headers 5.
        let protected_bits = if *first & 0x80 != 0 { 0x0f } else { 0x1f };
        let first_mask = mask[0] & protected_bits;
        let plain_first = if removing { *first ^ first_mask } else { *first };
        let pn_len = usize::from(plain_first & 0x03) + 1;
        *first ^= first_mask;
        for (byte, m) in packet_number.iter_mut().zip(&mask[1..]).take(pn_len) {
            *byte ^= m;
        }
        Ok(())
    }
}

impl quic::HeaderProtectionKey for HeaderKey {
    fn encrypt_in_place(&self, sample: &[u8], first: &mut u8, packet_number: &mut [u8]) -> Result<(), Error> {
        self.apply(sample, first, packet_number, false)
    }

    fn decrypt_in_place(&self, sample: &[u8], first: &mut u8, packet_number: &mut [u8]) -> Result<(), Error> {
        self.apply(sample, first, packet_number, true)
    }

    fn sample_len(&self) -> usize {
        SAMPLE_LEN
    }
}

/// The TLS record layer of this suite. rustls installs a record encrypter
/// and decrypter on QUIC connections too, where the handshake travels in
/// QUIC's CRYPTO frames and these never protect a record; they keep the key
/// and IV (44 bytes) and hand any record to ring's ChaCha20-Poly1305.
struct RecordLayer;

impl Tls13AeadAlgorithm for RecordLayer {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        Box::new(LazyRecordKey {
            key: key_bytes(&key),
            iv: iv_bytes(&iv),
        })
    }

    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(LazyRecordKey {
            key: key_bytes(&key),
            iv: iv_bytes(&iv),
        })
    }

    fn key_len(&self) -> usize {
        KEY_LEN
    }

    fn extract_keys(&self, key: AeadKey, iv: Iv) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        ring_chacha().aead_alg.extract_keys(key, iv)
    }
}

/// A record key kept as bytes until a record needs it.
struct LazyRecordKey {
    key: [u8; KEY_LEN],
    iv: [u8; 12],
}

impl MessageEncrypter for LazyRecordKey {
    fn encrypt(&mut self, msg: OutboundPlainMessage<'_>, seq: u64) -> Result<OutboundOpaqueMessage, Error> {
        ring_chacha()
            .aead_alg
            .encrypter(AeadKey::from(self.key), Iv::from(self.iv))
            .encrypt(msg, seq)
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        // The content type byte, then the tag.
        payload_len + 1 + TAG_LEN
    }
}

impl MessageDecrypter for LazyRecordKey {
    fn decrypt<'a>(&mut self, msg: InboundOpaqueMessage<'a>, seq: u64) -> Result<InboundPlainMessage<'a>, Error> {
        ring_chacha()
            .aead_alg
            .decrypter(AeadKey::from(self.key), Iv::from(self.iv))
            .decrypt(msg, seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quic::Algorithm;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn aead_key(bytes: &[u8]) -> AeadKey {
        AeadKey::from(<[u8; 32]>::try_from(bytes).unwrap())
    }

    fn iv(bytes: &[u8]) -> Iv {
        Iv::from(<[u8; 12]>::try_from(bytes).unwrap())
    }

    /// RFC 9001 Appendix A.5: a short-header packet protected with
    /// ChaCha20-Poly1305, byte for byte.
    #[test]
    fn the_rfc_9001_chacha20_packet_is_reproduced() {
        let key = hex("c6d98ff3441c3fe1b2182094f69caa2ed4b716b65488960a7a984979fb23e1c8");
        let iv_bytes = hex("e0459b3474bdd0e44a41c144");
        let hp = hex("25a282b9e82f06f21f488917a4fc8f1b73573685608597d0efcb076b0ab7a7a4");
        let pn = 654_360_564;
        let packet = QuicKeys.packet_key(aead_key(&key), iv(&iv_bytes));
        let header_key = QuicKeys.header_protection_key(aead_key(&hp));

        let mut buf = hex("4200bff401");
        let (header, payload) = buf.split_at_mut(4);
        let tag = packet.encrypt_in_place(pn, header, payload).unwrap();
        buf.extend_from_slice(tag.as_ref());
        assert_eq!(hex::encode(&buf[4..]), "655e5cd55c41f69080575d7999c25a5bfb");

        // The sample starts 4 bytes after the packet number's offset (1),
        // as if the packet number were 4 bytes long; quinn passes those 4.
        let (header, rest) = buf.split_at_mut(5);
        let (first, pn_bytes) = header.split_at_mut(1);
        header_key
            .encrypt_in_place(&rest[..SAMPLE_LEN], &mut first[0], pn_bytes)
            .unwrap();
        assert_eq!(hex::encode(&buf), "4cfe4189655e5cd55c41f69080575d7999c25a5bfb");

        // And back: unmask, then open.
        let (header, rest) = buf.split_at_mut(5);
        let (first, pn_bytes) = header.split_at_mut(1);
        header_key
            .decrypt_in_place(&rest[..SAMPLE_LEN], &mut first[0], pn_bytes)
            .unwrap();
        assert_eq!(hex::encode(&buf[..4]), "4200bff4");
        let (header, payload) = buf.split_at_mut(4);
        assert_eq!(packet.decrypt_in_place(pn, header, payload).unwrap(), &[0x01]);
    }

    /// Whatever one side protects with these keys, ring's own QUIC keys
    /// for the same suite open, and the other way round: long and short
    /// headers, every packet-number length.
    #[test]
    fn packets_interoperate_with_rings_chacha20_keys() {
        let ring = ring_chacha().quic.unwrap();
        let key: Vec<u8> = (0..32u8).map(|b| b.wrapping_mul(7)).collect();
        let hp: Vec<u8> = (0..32u8).map(|b| b.wrapping_mul(13) ^ 0x5a).collect();
        let iv_bytes: Vec<u8> = (0..12u8).collect();
        let ours = (
            QuicKeys.packet_key(aead_key(&key), iv(&iv_bytes)),
            QuicKeys.header_protection_key(aead_key(&hp)),
        );
        let theirs = (
            ring.packet_key(aead_key(&key), iv(&iv_bytes)),
            ring.header_protection_key(aead_key(&hp)),
        );
        for (i, first) in [0x40u8, 0x41, 0x42, 0x43, 0xc0, 0xc1, 0xc2, 0xc3]
            .into_iter()
            .enumerate()
        {
            let pn = 1_000_003 * i as u64 + 7;
            let payload: Vec<u8> = (0..40 + i as u8).collect();
            let seal = |keys: &(Box<dyn quic::PacketKey>, Box<dyn quic::HeaderProtectionKey>)| {
                let mut packet = vec![first, 0xaa, 0xbb, 0xcc, 0xdd];
                packet.extend_from_slice(&payload);
                let (header, body) = packet.split_at_mut(5);
                let tag = keys.0.encrypt_in_place(pn, header, body).unwrap();
                packet.extend_from_slice(tag.as_ref());
                let (header, rest) = packet.split_at_mut(5);
                let (f, pn_bytes) = header.split_at_mut(1);
                keys.1
                    .encrypt_in_place(&rest[..SAMPLE_LEN], &mut f[0], pn_bytes)
                    .unwrap();
                packet
            };
            let sealed = seal(&ours);
            assert_eq!(
                hex::encode(&sealed),
                hex::encode(seal(&theirs)),
                "byte for byte as ring's"
            );
            for open in [&ours, &theirs] {
                let mut packet = sealed.clone();

                let (header, rest) = packet.split_at_mut(5);
                let (f, pn_bytes) = header.split_at_mut(1);
                open.1
                    .decrypt_in_place(&rest[..SAMPLE_LEN], &mut f[0], pn_bytes)
                    .unwrap();
                assert_eq!(&packet[..5], &[first, 0xaa, 0xbb, 0xcc, 0xdd]);
                let (header, body) = packet.split_at_mut(5);
                assert_eq!(open.0.decrypt_in_place(pn, header, body).unwrap(), &payload[..]);
            }
        }
    }

    /// A changed byte, a wrong packet number or a truncated packet is
    /// refused, never opened.
    #[test]
    fn tampered_packets_are_refused() {
        let key = [9u8; 32];
        let packet_key = QuicKeys.packet_key(aead_key(&key), iv(&[3; 12]));
        let mut sealed = b"payload".to_vec();
        let tag = packet_key.encrypt_in_place(5, b"hdr", &mut sealed).unwrap();
        sealed.extend_from_slice(tag.as_ref());

        let mut flipped = sealed.clone();
        flipped[2] ^= 1;
        assert!(packet_key.decrypt_in_place(5, b"hdr", &mut flipped).is_err());
        assert!(packet_key.decrypt_in_place(6, b"hdr", &mut sealed.clone()).is_err());
        assert!(packet_key.decrypt_in_place(5, b"hdR", &mut sealed.clone()).is_err());
        assert!(packet_key
            .decrypt_in_place(5, b"hdr", &mut sealed[..10].to_vec())
            .is_err());
        assert!(packet_key.decrypt_in_place(5, b"hdr", &mut [0u8; 3]).is_err());
        assert_eq!(packet_key.decrypt_in_place(5, b"hdr", &mut sealed).unwrap(), b"payload");

        let header_key = QuicKeys.header_protection_key(aead_key(&key));
        let err = header_key
            .encrypt_in_place(&[0; 15], &mut 0x40, &mut [0; 4])
            .unwrap_err();
        assert!(err.to_string().contains("16 bytes"), "{err}");
        assert!(header_key.encrypt_in_place(&[0; 16], &mut 0x40, &mut [0; 5]).is_err());
    }

    /// The point of the module: each key is a few dozen bytes, where ring's
    /// are about half a KiB.
    #[test]
    fn the_keys_are_small() {
        assert!(
            std::mem::size_of::<PacketKey>() <= 48,
            "{}",
            std::mem::size_of::<PacketKey>()
        );
        assert!(std::mem::size_of::<HeaderKey>() <= 32);
        assert!(std::mem::size_of::<LazyRecordKey>() <= 44);
        assert!(
            std::mem::size_of::<ring::aead::LessSafeKey>() >= 256,
            "ring's key is what this saves"
        );
    }

    /// A TLS record this suite's record layer protects, ring's opens, and
    /// the other way round.
    #[test]
    fn the_record_layer_is_rings_chacha20() {
        use rustls::crypto::cipher::OutboundChunks;
        use rustls::{ContentType, ProtocolVersion};
        let ring = ring_chacha().aead_alg;
        let (key, iv_bytes) = ([0x42u8; 32], [0x24u8; 12]);
        let pairs: [(Box<dyn MessageEncrypter>, Box<dyn MessageDecrypter>); 2] = [
            (
                RecordLayer.encrypter(aead_key(&key), iv(&iv_bytes)),
                ring.decrypter(aead_key(&key), iv(&iv_bytes)),
            ),
            (
                ring.encrypter(aead_key(&key), iv(&iv_bytes)),
                RecordLayer.decrypter(aead_key(&key), iv(&iv_bytes)),
            ),
        ];
        for (mut seal, mut open) in pairs {
            let plain = OutboundPlainMessage {
                typ: ContentType::ApplicationData,
                version: ProtocolVersion::TLSv1_2,
                payload: OutboundChunks::Single(b"a record"),
            };
            assert_eq!(seal.encrypted_payload_len(8), 8 + 1 + TAG_LEN);
            let mut record = seal.encrypt(plain, 3).unwrap().encode();
            assert_eq!(record.len(), 5 + 8 + 1 + TAG_LEN);
            let msg =
                InboundOpaqueMessage::new(ContentType::ApplicationData, ProtocolVersion::TLSv1_2, &mut record[5..]);
            assert_eq!(open.decrypt(msg, 3).unwrap().payload, b"a record");
        }
    }
}
