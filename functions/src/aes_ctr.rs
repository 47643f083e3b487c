//! `aes`: AES in counter mode, FunctionBench's `pyaes` function in Rust.
//!
//! FunctionBench (Kim and Lee, "FunctionBench: A Suite of Workloads for
//! Serverless Cloud Function Service", IEEE CLOUD 2019) encrypts and then
//! decrypts a random message `num_of_iterations` times with
//! `pyaes.AESModeOfOperationCTR` under a fixed 128-bit key; the seed's
//! interference study runs the same function. This one does the same work
//! with RustCrypto's `aes` + `ctr` crates: the counter block is one
//! big-endian 128-bit number incremented per block (`ctr::Ctr128BE`, exactly
//! `pyaes.Counter`), and the `aes` crate picks AES-NI at run time when the CPU
//! has it (no target-feature flags needed).
//!
//! The default counter is pyaes's default `Counter(initial_value = 1)`
//! (FunctionBench uses that default; the seed's script passes 0 — ask for
//! `counter_hex` = 32 zeros to get it).

use aes::cipher::{KeyIvInit, StreamCipher};
use rand::distr::Alphanumeric;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::catalogue::{parse_params, Function, FunctionInfo, InvokeError, ParamInfo};

/// FunctionBench's key, `b'\xa1\xf6%\x8c\x87}_\xcd\x89dHE8\xbf\xc9,'`.
pub const DEFAULT_KEY_HEX: &str = "a1f6258c877d5fcd8964484538bfc92c";
/// pyaes's default initial counter value, 1, as a 128-bit big-endian block.
pub const DEFAULT_COUNTER_HEX: &str = "00000000000000000000000000000001";
/// Message length when no message is given (16 KiB).
pub const DEFAULT_LENGTH: usize = 16 * 1024;
/// Seed of the random message when `length` is used.
pub const DEFAULT_SEED: u64 = 0x5107_1A35;
/// Encrypt+decrypt rounds per invocation at the defaults; chosen so the
/// default invocation takes a few milliseconds (see docs/functions.md).
pub const DEFAULT_ITERATIONS: u32 = 400;
/// Largest message, in bytes.
pub const MAX_LENGTH: usize = 64 * 1024 * 1024;
/// Most encrypt+decrypt rounds per invocation.
pub const MAX_ITERATIONS: u32 = 100_000;
/// Cap on `length × iterations`, so no single invocation runs for minutes.
pub const MAX_TOTAL_BYTES: u64 = 16 * 1024 * 1024 * 1024;
/// Ciphertexts longer than this are shown truncated in the reply.
pub const SHOWN_CIPHERTEXT: usize = 4096;

/// Parameters of `aes`. At most one of `plaintext`, `plaintext_hex` and
/// `length` may be given; with none, a random message of
/// [`DEFAULT_LENGTH`] bytes is used.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AesParams {
    /// AES key in hex: 16, 24 or 32 bytes (AES-128/192/256).
    pub key_hex: String,
    /// Initial 128-bit counter block in hex (32 hex digits).
    pub counter_hex: String,
    /// Message as UTF-8 text.
    pub plaintext: Option<String>,
    /// Message as hex bytes.
    pub plaintext_hex: Option<String>,
    /// Length of a random alphanumeric message (as FunctionBench generates).
    pub length: Option<usize>,
    /// Seed of the random message.
    pub seed: u64,
    /// Encrypt-then-decrypt rounds.
    pub iterations: u32,
}

impl Default for AesParams {
    fn default() -> Self {
        Self {
            key_hex: DEFAULT_KEY_HEX.to_string(),
            counter_hex: DEFAULT_COUNTER_HEX.to_string(),
            plaintext: None,
            plaintext_hex: None,
            length: None,
            seed: DEFAULT_SEED,
            iterations: DEFAULT_ITERATIONS,
        }
    }
}

/// An AES key of one of the three sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AesKey {
    Aes128([u8; 16]),
    Aes192([u8; 24]),
    Aes256([u8; 32]),
}

impl AesKey {
    /// A key from 16, 24 or 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(match bytes.len() {
            16 => AesKey::Aes128(bytes.try_into().ok()?),
            24 => AesKey::Aes192(bytes.try_into().ok()?),
            32 => AesKey::Aes256(bytes.try_into().ok()?),
            _ => return None,
        })
    }

    /// Key length in bits.
    pub fn bits(&self) -> u32 {
        match self {
            AesKey::Aes128(_) => 128,
            AesKey::Aes192(_) => 192,
            AesKey::Aes256(_) => 256,
        }
    }
}

type Ctr128<A> = ctr::Ctr128BE<A>;

/// XORs the AES-CTR keystream for `key` and initial counter block `counter`
/// over `input` into `output` (encryption and decryption are the same
/// operation). `output` must be as long as `input`.
pub fn ctr_apply(key: &AesKey, counter: &[u8; 16], input: &[u8], output: &mut [u8]) {
    fn run<C: KeyIvInit + StreamCipher>(k: &[u8], iv: &[u8; 16], i: &[u8], o: &mut [u8]) {
        let mut c = C::new_from_slices(k, iv).expect("key and counter sizes are checked");
        c.apply_keystream_b2b(i, o)
            .expect("input and output lengths are equal");
    }
    assert_eq!(input.len(), output.len(), "ctr_apply needs equal lengths");
    match key {
        AesKey::Aes128(k) => run::<Ctr128<aes::Aes128>>(k, counter, input, output),
        AesKey::Aes192(k) => run::<Ctr128<aes::Aes192>>(k, counter, input, output),
        AesKey::Aes256(k) => run::<Ctr128<aes::Aes256>>(k, counter, input, output),
    }
}

/// Validated parameters: the work one invocation does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AesJob {
    pub key: AesKey,
    pub counter: [u8; 16],
    pub message: Vec<u8>,
    pub iterations: u32,
}

/// What one invocation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AesOutcome {
    /// Ciphertext of the first encryption.
    pub ciphertext: Vec<u8>,
    /// Bytes pushed through the cipher: 2 × length × iterations.
    pub bytes_processed: u64,
    /// Every decryption gave the message back.
    pub roundtrip_ok: bool,
}

fn bad(msg: String) -> InvokeError {
    InvokeError::BadParams(msg)
}

fn decode_hex(name: &str, s: &str) -> Result<Vec<u8>, InvokeError> {
    hex::decode(s.trim()).map_err(|e| bad(format!("`{name}` is not valid hex: {e}")))
}

/// Buffers of message length one invocation holds at once: the message,
/// the first ciphertext, the scratch ciphertext and the decryption
/// (see [`AesJob::run`]).
pub const BUFFERS_PER_INVOCATION: u64 = 4;

impl AesParams {
    /// Bytes of the buffers an invocation with these parameters allocates:
    /// [`BUFFERS_PER_INVOCATION`] × the message length. A message longer
    /// than [`MAX_LENGTH`] is refused before its buffers exist: 0.
    pub fn memory_estimate(&self) -> u64 {
        let length = if let Some(text) = &self.plaintext {
            text.len()
        } else if let Some(h) = &self.plaintext_hex {
            h.trim().len() / 2
        } else {
            self.length.unwrap_or(DEFAULT_LENGTH)
        };
        if length > MAX_LENGTH {
            return 0;
        }
        BUFFERS_PER_INVOCATION * length as u64
    }

    /// Checks the parameters and builds the message.
    pub fn validate(&self) -> Result<AesJob, InvokeError> {
        let key_bytes = decode_hex("key_hex", &self.key_hex)?;
        let key = AesKey::from_slice(&key_bytes).ok_or_else(|| {
            bad(format!(
                "`key_hex` must be 16, 24 or 32 bytes (32, 48 or 64 hex digits), got {} bytes",
                key_bytes.len()
            ))
        })?;
        let counter: [u8; 16] = decode_hex("counter_hex", &self.counter_hex)?
            .try_into()
            .map_err(|v: Vec<u8>| {
                bad(format!(
                    "`counter_hex` must be 16 bytes (32 hex digits), got {} bytes",
                    v.len()
                ))
            })?;
        if self.iterations == 0 || self.iterations > MAX_ITERATIONS {
            return Err(bad(format!(
                "`iterations` must be between 1 and {MAX_ITERATIONS}, got {}",
                self.iterations
            )));
        }
        let given: Vec<&str> = [
            ("plaintext", self.plaintext.is_some()),
            ("plaintext_hex", self.plaintext_hex.is_some()),
            ("length", self.length.is_some()),
        ]
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect();
        if given.len() > 1 {
            return Err(bad(format!(
                "give at most one of `plaintext`, `plaintext_hex` and `length`, got `{}`",
                given.join("` and `")
            )));
        }
        let message = if let Some(text) = &self.plaintext {
            text.as_bytes().to_vec()
        } else if let Some(h) = &self.plaintext_hex {
            decode_hex("plaintext_hex", h)?
        } else {
            let length = self.length.unwrap_or(DEFAULT_LENGTH);
            if length > MAX_LENGTH {
                return Err(bad(format!(
                    "`length` must be at most {MAX_LENGTH} bytes (64 MiB), got {length}"
                )));
            }
            random_message(length, self.seed)
        };
        if message.len() > MAX_LENGTH {
            return Err(bad(format!(
                "the message must be at most {MAX_LENGTH} bytes (64 MiB), got {}",
                message.len()
            )));
        }
        let total = message.len() as u64 * u64::from(self.iterations);
        if total > MAX_TOTAL_BYTES {
            return Err(bad(format!(
                "message length × `iterations` must be at most {MAX_TOTAL_BYTES} bytes (16 GiB), \
                 got {total}: lower `iterations` or the message length"
            )));
        }
        Ok(AesJob {
            key,
            counter,
            message,
            iterations: self.iterations,
        })
    }
}

/// A random alphanumeric message of `length` bytes, as FunctionBench's
/// `generate(length)` makes one, from a seeded ChaCha8 generator.
pub fn random_message(length: usize, seed: u64) -> Vec<u8> {
    ChaCha8Rng::seed_from_u64(seed)
        .sample_iter(Alphanumeric)
        .take(length)
        .collect()
}

impl AesJob {
    /// Encrypts then decrypts the message `iterations` times, each round with
    /// a fresh cipher (as FunctionBench builds a new `AESModeOfOperationCTR`
    /// per round).
    pub fn run(&self) -> AesOutcome {
        let n = self.message.len();
        let mut ciphertext = vec![0u8; n];
        let mut scratch = vec![0u8; n];
        let mut decrypted = vec![0u8; n];
        let mut roundtrip_ok = true;
        for i in 0..self.iterations {
            let out = if i == 0 {
                &mut ciphertext
            } else {
                &mut scratch
            };
            ctr_apply(&self.key, &self.counter, &self.message, out);
            ctr_apply(&self.key, &self.counter, out, &mut decrypted);
            roundtrip_ok &= decrypted == self.message;
        }
        AesOutcome {
            ciphertext,
            bytes_processed: 2 * n as u64 * u64::from(self.iterations),
            roundtrip_ok,
        }
    }
}

/// The `aes` function.
#[derive(Debug, Clone, Copy, Default)]
pub struct Aes;

impl Function for Aes {
    fn info(&self) -> FunctionInfo {
        FunctionInfo {
            name: "aes",
            summary:
                "AES-CTR encrypt then decrypt a message `iterations` times (FunctionBench pyaes)",
            params: vec![
                ParamInfo {
                    name: "key_hex",
                    kind: "string",
                    default: json!(DEFAULT_KEY_HEX),
                    doc: "AES key in hex, 16/24/32 bytes (FunctionBench's key by default)",
                },
                ParamInfo {
                    name: "counter_hex",
                    kind: "string",
                    default: json!(DEFAULT_COUNTER_HEX),
                    doc: "initial 128-bit big-endian counter block in hex (pyaes's default 1)",
                },
                ParamInfo {
                    name: "plaintext",
                    kind: "string",
                    default: Value::Null,
                    doc: "message as UTF-8 text (at most one of plaintext, plaintext_hex, length)",
                },
                ParamInfo {
                    name: "plaintext_hex",
                    kind: "string",
                    default: Value::Null,
                    doc: "message as hex bytes",
                },
                ParamInfo {
                    name: "length",
                    kind: "integer",
                    default: json!(DEFAULT_LENGTH),
                    doc: "length of a random alphanumeric message, bytes (≤ 64 MiB)",
                },
                ParamInfo {
                    name: "seed",
                    kind: "integer",
                    default: json!(DEFAULT_SEED),
                    doc: "seed of the random message",
                },
                ParamInfo {
                    name: "iterations",
                    kind: "integer",
                    default: json!(DEFAULT_ITERATIONS),
                    doc: "encrypt+decrypt rounds (1..=100000; length × iterations ≤ 16 GiB)",
                },
            ],
        }
    }

    fn memory_estimate(&self, params: &Value) -> u64 {
        parse_params::<AesParams>(params).map_or(0, |p| p.memory_estimate())
    }

    fn invoke(&self, params: &Value) -> Result<Value, InvokeError> {
        let p: AesParams = parse_params(params)?;
        let job = p.validate()?;
        let out = job.run();
        let truncated = out.ciphertext.len() > SHOWN_CIPHERTEXT;
        let shown = &out.ciphertext[..out.ciphertext.len().min(SHOWN_CIPHERTEXT)];
        Ok(json!({
            "key_bits": job.key.bits(),
            "length": job.message.len(),
            "iterations": job.iterations,
            "ciphertext_hex": hex::encode(shown),
            "ciphertext_truncated": truncated,
            "ciphertext_sha256": hex::encode(Sha256::digest(&out.ciphertext)),
            "bytes_processed": out.bytes_processed,
            "roundtrip_ok": out.roundtrip_ok,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    // NIST SP 800-38A, appendix F.5: the four-block plaintext and the counter
    // block shared by F.5.1, F.5.3 and F.5.5.
    const SP800_38A_PLAINTEXT: &str = "6bc1bee22e409f96e93d7e117393172a
        ae2d8a571e03ac9c9eb76fac45af8e51 30c81c46a35ce411e5fbc1191a0a52ef
        f69f2445df4f9b17ad2b417be66c3710";
    const SP800_38A_COUNTER: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

    fn sp800_38a(key: &str, expected: &str) {
        let key = AesKey::from_slice(&h(key)).unwrap();
        let counter: [u8; 16] = h(SP800_38A_COUNTER).try_into().unwrap();
        let pt = h(SP800_38A_PLAINTEXT);
        let mut ct = vec![0; pt.len()];
        ctr_apply(&key, &counter, &pt, &mut ct);
        assert_eq!(hex::encode(&ct), hex::encode(h(expected)));
        // Decryption (F.5.2/4/6) is the same keystream.
        let mut back = vec![0; ct.len()];
        ctr_apply(&key, &counter, &ct, &mut back);
        assert_eq!(back, pt);
    }

    #[test]
    fn memory_estimate_counts_four_buffers_of_the_message_length() {
        let mib = 1024 * 1024;
        let est = |p: Value| Aes.memory_estimate(&p);
        assert_eq!(est(Value::Null), 4 * DEFAULT_LENGTH as u64);
        assert_eq!(est(json!({"length": 3 * mib})), 12 * mib as u64);
        assert_eq!(est(json!({"plaintext": "abcd"})), 16);
        assert_eq!(est(json!({"plaintext_hex": " 00ff00ff "})), 16);
        // Refused before any buffer exists, or not parameters at all.
        assert_eq!(est(json!({"length": MAX_LENGTH + 1})), 0);
        assert_eq!(est(json!({"length": "big"})), 0);
        assert_eq!(est(json!({"nope": 1})), 0);
        assert_eq!(est(json!([1, 2])), 0);
    }

    #[test]
    fn nist_sp800_38a_f51_ctr_aes128_encrypt() {
        sp800_38a(
            "2b7e151628aed2a6abf7158809cf4f3c",
            "874d6191b620e3261bef6864990db6ce 9806f66b7970fdff8617187bb9fffdff
             5ae4df3edbd5d35e5b4f09020db03eab 1e031dda2fbe03d1792170a0f3009cee",
        );
    }

    #[test]
    fn nist_sp800_38a_f53_ctr_aes192_encrypt() {
        sp800_38a(
            "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
            "1abc932417521ca24f2b0459fe7e6e0b 090339ec0aa6faefd5ccc2c6f4ce8e94
             1e36b26bd1ebc670d1bd1d665620abf7 4f78a7f6d29809585a97daec58c6b050",
        );
    }

    #[test]
    fn nist_sp800_38a_f55_ctr_aes256_encrypt() {
        sp800_38a(
            "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
            "601ec313775789a5b7a7f504bbf3d228 f443e3ca4d62b59aca84e990cacaf5c5
             2b0930daa23de94ce87017ba2d84988d dfc9c58db67aada613c2dd08457941a6",
        );
    }

    #[test]
    fn counter_carries_across_64_bits_as_one_128_bit_number() {
        // pyaes.Counter increments the whole 128-bit value. Starting at
        // 2^64 - 1, the second block must use counter 2^64, i.e. the same
        // keystream block as starting directly at 2^64.
        let key = AesKey::from_slice(&h(DEFAULT_KEY_HEX)).unwrap();
        let start: [u8; 16] = h("0000000000000000ffffffffffffffff").try_into().unwrap();
        let next: [u8; 16] = h("00000000000000010000000000000000").try_into().unwrap();
        let zeros = [0u8; 32];
        let (mut a, mut b) = ([0u8; 32], [0u8; 16]);
        ctr_apply(&key, &start, &zeros, &mut a);
        ctr_apply(&key, &next, &zeros[..16], &mut b);
        assert_eq!(a[16..], b);
    }

    /// Expected values computed independently with OpenSSL 3.0:
    /// `printf defaultplaintext | openssl enc -aes-128-ctr \
    ///   -K a1f6258c877d5fcd8964484538bfc92c -iv <counter> | xxd -p`
    /// (three times the text for the three-block answer).
    #[test]
    fn pyaes_defaults_known_answers_from_openssl() {
        let reply = Aes
            .invoke(&json!({"plaintext": "defaultplaintext", "iterations": 1}))
            .unwrap();
        assert_eq!(
            reply["ciphertext_hex"],
            json!("e47cae2099ce9c44ecf3ea878574d5c5")
        );
        assert_eq!(reply["roundtrip_ok"], json!(true));
        assert_eq!(reply["bytes_processed"], json!(32));
        assert_eq!(reply["key_bits"], json!(128));

        let reply = Aes
            .invoke(&json!({"plaintext": "defaultplaintext".repeat(3), "iterations": 2}))
            .unwrap();
        assert_eq!(
            reply["ciphertext_hex"],
            json!(
                "e47cae2099ce9c44ecf3ea878574d5c5fbfaf3d234e8d0a7f1d40deb5d10bc58\
                 0911b0fe01c0d7a604256281576ff072"
            )
        );

        // The seed script's `Counter(initial_value = 0)`.
        let reply = Aes
            .invoke(&json!({"plaintext": "defaultplaintext", "counter_hex": "0".repeat(32)}))
            .unwrap();
        assert_eq!(
            reply["ciphertext_hex"],
            json!("7b6f0bad12ddf352f4431effa9c4e31e")
        );
    }

    #[test]
    fn defaults_encrypt_16_kib_and_round_trip() {
        let reply = Aes.invoke(&Value::Null).unwrap();
        assert_eq!(reply["length"], json!(DEFAULT_LENGTH));
        assert_eq!(reply["iterations"], json!(DEFAULT_ITERATIONS));
        assert_eq!(reply["roundtrip_ok"], json!(true));
        assert_eq!(reply["ciphertext_truncated"], json!(true));
        assert_eq!(
            reply["ciphertext_hex"].as_str().unwrap().len(),
            2 * SHOWN_CIPHERTEXT
        );
        assert_eq!(
            reply["bytes_processed"],
            json!(2 * DEFAULT_LENGTH as u64 * u64::from(DEFAULT_ITERATIONS))
        );
        // The digest covers the whole ciphertext: recompute it here.
        let msg = random_message(DEFAULT_LENGTH, DEFAULT_SEED);
        assert!(msg.iter().all(u8::is_ascii_alphanumeric));
        let mut ct = vec![0; msg.len()];
        let key = AesKey::from_slice(&h(DEFAULT_KEY_HEX)).unwrap();
        ctr_apply(
            &key,
            &h(DEFAULT_COUNTER_HEX).try_into().unwrap(),
            &msg,
            &mut ct,
        );
        assert_eq!(
            reply["ciphertext_sha256"],
            json!(hex::encode(Sha256::digest(&ct)))
        );
        assert_eq!(
            reply["ciphertext_hex"].as_str().unwrap(),
            hex::encode(&ct[..SHOWN_CIPHERTEXT])
        );
    }

    #[test]
    fn seed_changes_the_message_and_plaintext_hex_equals_plaintext() {
        let a = Aes
            .invoke(&json!({"length": 64, "seed": 1, "iterations": 1}))
            .unwrap();
        let b = Aes
            .invoke(&json!({"length": 64, "seed": 2, "iterations": 1}))
            .unwrap();
        assert_ne!(a["ciphertext_hex"], b["ciphertext_hex"]);
        let t = Aes
            .invoke(&json!({"plaintext": "héllo", "iterations": 3}))
            .unwrap();
        let x = Aes
            .invoke(&json!({"plaintext_hex": hex::encode("héllo"), "iterations": 3}))
            .unwrap();
        assert_eq!(t["ciphertext_hex"], x["ciphertext_hex"]);
        assert_eq!(t["ciphertext_truncated"], json!(false));
        assert_eq!(t["bytes_processed"], json!(2 * 6 * 3));
    }

    #[test]
    fn empty_message_is_fine() {
        let r = Aes.invoke(&json!({"plaintext": ""})).unwrap();
        assert_eq!(r["ciphertext_hex"], json!(""));
        assert_eq!(r["roundtrip_ok"], json!(true));
    }

    fn rejects(params: Value, mentions: &str) {
        let e = Aes.invoke(&params).unwrap_err();
        assert_eq!(e.status(), 400, "{params}");
        assert!(e.to_string().contains(mentions), "{params}: {e}");
    }

    #[test]
    fn invalid_parameters_are_rejected_naming_the_parameter() {
        rejects(json!({"key_hex": "zz"}), "key_hex");
        rejects(json!({"key_hex": "00112233"}), "key_hex");
        rejects(json!({"counter_hex": "01"}), "counter_hex");
        rejects(json!({"counter_hex": "xyz"}), "counter_hex");
        rejects(json!({"iterations": 0}), "iterations");
        rejects(json!({"iterations": MAX_ITERATIONS + 1}), "iterations");
        rejects(json!({"length": MAX_LENGTH + 1}), "length");
        rejects(json!({"plaintext_hex": "abc"}), "plaintext_hex");
        rejects(json!({"plaintext": "a", "length": 3}), "at most one");
        rejects(
            json!({"plaintext": "a", "plaintext_hex": "00"}),
            "at most one",
        );
        rejects(
            json!({"length": MAX_LENGTH, "iterations": 1000}),
            "iterations",
        );
        rejects(json!({"length": -1}), "length");
        rejects(json!({"keyhex": "00"}), "keyhex");
    }
}
