//! `crypto_aesni_gcm` (intel-ipsec-mb) and intel-ipsec-mb's direct API agree
//! with the pure-Rust `aes-gcm` and `chacha20poly1305` crates on the same
//! key, nonce and AAD, both ways.
mod common;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
use dpdk::{AeadAlgo, AeadDirection, AeadJob, AeadSession, CpuVec, CryptoDev, CryptoOpPool, Eal, ImbKey, Mempool, SessionPool};

type Aes192Gcm = aes_gcm::AesGcm<aes_gcm::aes::Aes192, aes_gcm::aead::consts::U12>;

struct Rig {
    dev: CryptoDev,
    sessions: SessionPool,
    ops: CryptoOpPool,
    pool: Mempool,
}

fn rig(eal: &Eal) -> &'static Rig {
    static RIG: std::sync::OnceLock<Rig> = std::sync::OnceLock::new();
    RIG.get_or_init(|| {
        let dev = CryptoDev::probe(eal, "crypto_aesni_gcm0").expect("crypto_aesni_gcm vdev (intel-ipsec-mb)");
        assert_eq!(dev.driver_name(), "crypto_aesni_gcm");
        let sessions = SessionPool::new(eal, "t_sess", &dev, 64).unwrap();
        dev.configure_and_start(1, 128, &sessions).unwrap();
        let ops = CryptoOpPool::new(eal, "t_ops", 255).unwrap();
        let pool = Mempool::pktmbuf(eal, "t_crypto_pool", 255, 0, 2176, 0).unwrap();
        Rig { dev, sessions, ops, pool }
    })
}

fn rust_seal(key: &[u8], nonce: &[u8; 12], aad: &[u8], pt: &[u8]) -> Vec<u8> {
    let mut buf = pt.to_vec();
    let tag = match key.len() {
        16 => Aes128Gcm::new_from_slice(key).unwrap().encrypt_in_place_detached(Nonce::from_slice(nonce), aad, &mut buf),
        24 => Aes192Gcm::new_from_slice(key).unwrap().encrypt_in_place_detached(Nonce::from_slice(nonce), aad, &mut buf),
        32 => Aes256Gcm::new_from_slice(key).unwrap().encrypt_in_place_detached(Nonce::from_slice(nonce), aad, &mut buf),
        _ => unreachable!(),
    }
    .unwrap();
    buf.extend_from_slice(&tag);
    buf
}

fn check(key: &[u8], aad: &[u8], pt_len: usize) {
    let _guard = LOCK.lock().unwrap();
    let eal = common::eal("esprit-t-crypto");
    let r = rig(&eal);
    let nonce: [u8; 12] = *b"\xca\xfe\xba\xbe\x01\x02\x03\x04\x05\x06\x07\x08";
    let pt: Vec<u8> = (0..pt_len).map(|i| (i * 13 + 5) as u8).collect();
    let expect = rust_seal(key, &nonce, aad, &pt);

    // Seal: plaintext plus 16 bytes for the tag, encrypted in place.
    let enc = AeadSession::new(&r.dev, &r.sessions, AeadAlgo::AesGcm, AeadDirection::Encrypt, key, 12, aad.len() as u16).unwrap();
    let mut m = r.pool.alloc_from(&pt).unwrap();
    m.append(16).unwrap();
    let mut iv = [0u8; 16];
    iv[..12].copy_from_slice(&nonce);
    let mut a = [0u8; 16];
    a[..aad.len()].copy_from_slice(aad);
    let mut jobs = [AeadJob { mbuf: &mut m, data_offset: 0, data_len: pt_len as u32, digest_offset: pt_len as u32, iv, aad: a, ok: false }];
    assert_eq!(r.dev.process_aead(0, &enc, &r.ops, &mut jobs).unwrap(), 1);
    assert_eq!(m.data(), &expect[..], "aesni_gcm and aes-gcm differ (key {} bytes, {pt_len} bytes)", key.len());

    // Open what aes-gcm sealed, then the same with one bit flipped.
    let dec = AeadSession::new(&r.dev, &r.sessions, AeadAlgo::AesGcm, AeadDirection::Decrypt, key, 12, aad.len() as u16).unwrap();
    for flip in [false, true] {
        let mut ct = expect.clone();
        if flip {
            ct[pt_len / 2] ^= 1;
        }
        let mut m = r.pool.alloc_from(&ct).unwrap();
        let mut jobs = [AeadJob { mbuf: &mut m, data_offset: 0, data_len: pt_len as u32, digest_offset: pt_len as u32, iv, aad: a, ok: false }];
        let ok = r.dev.process_aead(0, &dec, &r.ops, &mut jobs).unwrap();
        if flip {
            assert_eq!(ok, 0, "a flipped ciphertext bit must fail the tag check");
        } else {
            assert_eq!(ok, 1);
            assert_eq!(&m.data()[..pt_len], &pt[..]);
        }
    }
}

static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn aesni_gcm_128_matches_rust_aes_gcm_with_esp_aad() {
    check(&hex::decode("feffe9928665731c6d6a8f9467308308").unwrap(), &hex::decode("0000a5f80000000a").unwrap(), 64);
}

#[test]
fn aesni_gcm_256_matches_rust_aes_gcm_with_esn_aad() {
    let key: Vec<u8> = (0..32u8).collect();
    check(&key, &hex::decode("4a2cbfe30000000100000002").unwrap(), 1420);
}

#[test]
fn aesni_gcm_handles_odd_lengths() {
    check(&[7u8; 16], &[1u8; 8], 1);
    check(&[9u8; 32], &[2u8; 12], 333);
}

#[test]
fn aesni_gcm_cpu_crypto_burst_matches_rust_aes_gcm() {
    let _guard = LOCK.lock().unwrap();
    let eal = common::eal("esprit-t-crypto");
    let r = rig(&eal);
    assert!(r.dev.has_cpu_crypto(), "crypto_aesni_gcm offers synchronous CPU crypto");
    let key: Vec<u8> = (0..16u8).map(|i| i * 7 + 1).collect();
    let enc = AeadSession::new(&r.dev, &r.sessions, AeadAlgo::AesGcm, AeadDirection::Encrypt, &key, 12, 8).unwrap();
    let dec = AeadSession::new(&r.dev, &r.sessions, AeadAlgo::AesGcm, AeadDirection::Decrypt, &key, 12, 8).unwrap();
    let lens = [0usize, 1, 15, 16, 17, 64, 500, 1420, 1500, 9000];
    let mut bufs: Vec<Vec<u8>> = lens.iter().map(|&n| (0..n + 16).map(|i| (i * 31 + n) as u8).collect()).collect();
    let plain = bufs.clone();
    let nonce = |i: usize| -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..4].copy_from_slice(b"salt");
        iv[4..12].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        iv
    };
    let aad = |i: usize| -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&[0, 0, 0x10, 0x05, 0, 0, 0, i as u8 + 1]);
        a
    };
    let mut jobs: Vec<dpdk::CpuAeadJob<'_>> =
        bufs.iter_mut().enumerate().map(|(i, b)| dpdk::CpuAeadJob { data: b, iv: nonce(i), aad: aad(i), ok: false }).collect();
    assert_eq!(enc.cpu_process(&mut jobs), lens.len());
    drop(jobs);
    for (i, (b, p)) in bufs.iter().zip(&plain).enumerate() {
        let n = lens[i];
        let iv: [u8; 12] = nonce(i)[..12].try_into().unwrap();
        assert_eq!(b, &rust_seal(&key, &iv, &aad(i)[..8], &p[..n]), "length {n}");
    }
    // Open them back; one with a flipped tag bit fails alone.
    bufs[6][500] ^= 1;
    let mut jobs: Vec<dpdk::CpuAeadJob<'_>> =
        bufs.iter_mut().enumerate().map(|(i, b)| dpdk::CpuAeadJob { data: b, iv: nonce(i), aad: aad(i), ok: false }).collect();
    assert_eq!(dec.cpu_process(&mut jobs), lens.len() - 1);
    assert!(jobs.iter().enumerate().all(|(i, j)| j.ok == (i != 6)));
    drop(jobs);
    for (i, (b, p)) in bufs.iter().zip(&plain).enumerate() {
        if i != 6 {
            assert_eq!(&b[..lens[i]], &p[..lens[i]]);
        }
    }
}

#[test]
fn cpu_crypto_handles_more_jobs_than_one_vector_call() {
    let _guard = LOCK.lock().unwrap();
    let eal = common::eal("esprit-t-crypto");
    let r = rig(&eal);
    let key = [3u8; 16];
    let enc = AeadSession::new(&r.dev, &r.sessions, AeadAlgo::AesGcm, AeadDirection::Encrypt, &key, 12, 8).unwrap();
    let mut bufs: Vec<Vec<u8>> = (0..70).map(|i| vec![i as u8; 100 + 16]).collect();
    let mut jobs: Vec<dpdk::CpuAeadJob<'_>> = bufs
        .iter_mut()
        .enumerate()
        .map(|(i, b)| {
            let mut iv = [0u8; 16];
            iv[11] = i as u8;
            dpdk::CpuAeadJob { data: b, iv, aad: [7; 16], ok: false }
        })
        .collect();
    assert_eq!(enc.cpu_process(&mut jobs), 70, "all 70 jobs, over three vector calls");
    drop(jobs);
    let mut iv = [0u8; 12];
    iv[11] = 69;
    assert_eq!(bufs[69], rust_seal(&key, &iv, &[7; 8], &[69u8; 100]));
}

/// `CpuVec` through the CPU-crypto session and through intel-ipsec-mb's
/// one-call GCM routine (`ImbKey`) both produce what `aes-gcm` does,
/// AES-128, AES-192 and AES-256, with ESP's 8- and 12-byte AADs; the
/// result masks name the pushed tags; the session opens what the direct
/// routine sealed.
#[test]
fn cpu_vec_and_direct_ipsec_mb_gcm_match_rust_aes_gcm() {
    let _guard = LOCK.lock().unwrap();
    let eal = common::eal("esprit-t-crypto");
    let r = rig(&eal);
    let lens = [0usize, 1, 15, 16, 17, 64, 500, 1408, 1500, 9000];
    let nonce = |i: usize| -> [u8; 12] {
        let mut iv = [0u8; 12];
        iv[..4].copy_from_slice(b"salt");
        iv[4..].copy_from_slice(&(i as u64 + 7).to_be_bytes());
        iv
    };
    for (key_len, aad_len) in [(16usize, 8usize), (32, 12), (16, 12), (32, 8), (24, 8), (24, 12)] {
        let key: Vec<u8> = (0..key_len as u8).map(|i| i.wrapping_mul(11).wrapping_add(3)).collect();
        let aad = |i: usize| -> [u8; 12] {
            let mut a = [0u8; 12];
            a[..aad_len].iter_mut().enumerate().for_each(|(k, b)| *b = (k * 3 + i) as u8);
            a
        };
        let plain: Vec<Vec<u8>> = lens.iter().map(|&n| (0..n + 16).map(|i| (i * 29 + n) as u8).collect()).collect();
        let expect: Vec<Vec<u8>> =
            lens.iter().enumerate().map(|(i, &n)| rust_seal(&key, &nonce(i), &aad(i)[..aad_len], &plain[i][..n])).collect();
        let session = AeadSession::new(&r.dev, &r.sessions, AeadAlgo::AesGcm, AeadDirection::Encrypt, &key, 12, aad_len as u16).unwrap();
        let direct = ImbKey::aes_gcm(&key, aad_len).expect("intel-ipsec-mb direct GCM key");
        let mut v = CpuVec::new();
        for use_direct in [false, true] {
            let mut bufs = plain.clone();
            // Tags are the caller's indexes, pushed out of order.
            let mask = {
                let mut batch = v.batch();
                for (i, b) in bufs.iter_mut().enumerate().rev() {
                    assert!(batch.push(b, &nonce(i), &aad(i), i as u8 + 3));
                }
                assert_eq!(batch.len(), lens.len());
                if use_direct {
                    batch.seal_imb(&direct)
                } else {
                    batch.process(&session)
                }
            };
            assert_eq!(mask, ((1u64 << lens.len()) - 1) << 3, "direct {use_direct}");
            for (i, b) in bufs.iter().enumerate() {
                assert_eq!(b, &expect[i], "direct {use_direct}, key {key_len}, aad {aad_len}, length {}", lens[i]);
            }
        }
        // The session opens the directly sealed packets; a flipped bit fails alone.
        let dec = AeadSession::new(&r.dev, &r.sessions, AeadAlgo::AesGcm, AeadDirection::Decrypt, &key, 12, aad_len as u16).unwrap();
        let mut bufs = expect.clone();
        bufs[5][3] ^= 0x80;
        let mask = {
            let mut batch = v.batch();
            for (i, b) in bufs.iter_mut().enumerate() {
                assert!(batch.push(b, &nonce(i), &aad(i), i as u8));
            }
            batch.process(&dec)
        };
        assert_eq!(mask, ((1u64 << lens.len()) - 1) & !(1 << 5));
    }
    // Too short for a tag, or a tag beyond the mask: refused.
    let mut v = CpuVec::new();
    let mut batch = v.batch();
    let mut short = [0u8; 15];
    assert!(!batch.push(&mut short, &[0; 12], &[0; 12], 0));
    let mut ok = [0u8; 16];
    assert!(!batch.push(&mut ok, &[0; 12], &[0; 12], 64));
    assert!(batch.is_empty());
    assert!(ImbKey::aes_gcm(&[0; 20], 8).is_none() && ImbKey::aes_gcm(&[0; 16], 16).is_none());
    assert!(ImbKey::chacha20_poly1305(&[0; 16], 8).is_none() && ImbKey::chacha20_poly1305(&[0; 32], 9).is_none());
}

fn rust_chacha_seal(key: &[u8], nonce: &[u8; 12], aad: &[u8], pt: &[u8]) -> Vec<u8> {
    use chacha20poly1305::ChaCha20Poly1305;
    let mut buf = pt.to_vec();
    let tag = ChaCha20Poly1305::new_from_slice(key).unwrap().encrypt_in_place_detached(nonce.into(), aad, &mut buf).unwrap();
    buf.extend_from_slice(&tag);
    buf
}

/// ChaCha20-Poly1305 on intel-ipsec-mb's direct API (DPDK 22.11's
/// chacha20_poly1305 PMD advertises CPU crypto and does none): sealed
/// alone and as a `CpuVec` batch it gives what `chacha20poly1305` gives,
/// with both AADs and lengths from empty to jumbo; it opens those packets
/// and refuses each with a flipped bit (text or tag). Plus RFC 7634
/// Appendix A's packet.
#[test]
fn direct_ipsec_mb_chacha20_poly1305_matches_rust_both_ways() {
    let _guard = LOCK.lock().unwrap();
    let _eal = common::eal("esprit-t-crypto");
    let lens = [0usize, 1, 15, 16, 17, 63, 64, 65, 500, 1408, 1500, 9000];
    let key: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(7).wrapping_add(1)).collect();
    for aad_len in [8usize, 12] {
        let k = ImbKey::chacha20_poly1305(&key, aad_len).expect("intel-ipsec-mb ChaCha20-Poly1305 key");
        assert!(k.can_open());
        let nonce = |i: usize| -> [u8; 12] {
            let mut n = [0u8; 12];
            n[..4].copy_from_slice(&[0xa0, 0xa1, 0xa2, 0xa3]);
            n[4..].copy_from_slice(&(i as u64 * 3 + 1).to_be_bytes());
            n
        };
        let aad = |i: usize| -> [u8; 12] { core::array::from_fn(|k| (k * 5 + i) as u8) };
        let plain: Vec<Vec<u8>> = lens.iter().map(|&n| (0..n + 16).map(|i| (i * 31 + n) as u8).collect()).collect();
        let expect: Vec<Vec<u8>> =
            lens.iter().enumerate().map(|(i, &n)| rust_chacha_seal(&key, &nonce(i), &aad(i)[..aad_len], &plain[i][..n])).collect();
        let mut one = plain.clone();
        for (i, b) in one.iter_mut().enumerate() {
            assert!(k.seal(b, &nonce(i), &aad(i)));
            assert_eq!(b, &expect[i], "seal, aad {aad_len}, length {}", lens[i]);
        }
        let mut v = CpuVec::new();
        let mut bufs = plain.clone();
        let mask = {
            let mut batch = v.batch();
            for (i, b) in bufs.iter_mut().enumerate() {
                assert!(batch.push(b, &nonce(i), &aad(i), i as u8));
            }
            batch.seal_imb(&k)
        };
        assert_eq!(mask, (1u64 << lens.len()) - 1);
        assert_eq!(bufs, expect, "batch seal, aad {aad_len}");
        for (i, b) in bufs.iter_mut().enumerate() {
            let mut bad = b.clone();
            let at = if lens[i] == 0 { 0 } else { i % lens[i] };
            bad[at] ^= 0x40;
            assert!(!k.open(&mut bad, &nonce(i), &aad(i)), "a flipped bit at {at} of length {}", lens[i]);
            assert!(k.open(b, &nonce(i), &aad(i)), "open, aad {aad_len}, length {}", lens[i]);
            assert_eq!(&b[..lens[i]], &plain[i][..lens[i]]);
        }
    }
    // RFC 7634 Appendix A: the ESP payload after SPI | SN | IV.
    let key = hex::decode("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f").unwrap();
    let nonce: [u8; 12] = hex::decode("a0a1a2a31011121314151617").unwrap().try_into().unwrap();
    let aad = hex::decode("0102030400000005").unwrap();
    let esp = hex::decode(concat!(
        "24039428b97f417e3c13753a4f05087b67c352e6a7fab1b982d466ef407ae5c614ee8099d52844eb61aa95df",
        "ab4c02f72aa71e7c4c4f64c9befe2facc638e8f3cbec163fac469b502773f6fb94e664da9165b82829f641e0",
        "76aaa8266b7fb0f7b11b369907e1ad43"
    ))
    .unwrap();
    let k = ImbKey::chacha20_poly1305(&key, 8).unwrap();
    let mut b = esp.clone();
    assert!(k.open(&mut b, &nonce, &aad));
    assert_eq!(&b[..4], &[0x45, 0x00, 0x00, 0x54], "the inner IPv4 header");
    assert!(k.seal(&mut b, &nonce, &aad));
    assert_eq!(b, esp);
}
