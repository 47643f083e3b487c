//! `auth`: an API-gateway Lambda authorizer, the seed's first workload.
//!
//! It answers the way AWS's token-authorizer blueprint does (the seed's
//! `generatePolicy(principalId, effect, resource)`): an IAM policy document
//! that allows or denies `execute-api:Invoke` on the method ARN, with the
//! blueprint's sample `context`. Like the blueprint, the literal tokens
//! `allow`, `deny` and `unauthorized` select the answer; any other token
//! must be a compact JWT signed with HS256 (RFC 7519, RFC 7515) under the
//! host's secret, whose `sub` becomes the principal. The signature is checked
//! with RustCrypto's `hmac` + `sha2` (constant-time comparison); nothing
//! cryptographic is hand-written here.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::catalogue::{parse_params, Function, FunctionInfo, InvokeError, ParamInfo};

/// The token used when none is given.
pub const DEFAULT_TOKEN: &str = "allow";
/// A concrete method ARN in the blueprint's
/// `arn:aws:execute-api:{regionId}:{accountId}:{apiId}/{stage}/{httpVerb}/{resource}` form.
pub const DEFAULT_METHOD_ARN: &str =
    "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/GET/orders/42";
/// Principal of the literal `allow`/`deny` tokens (the seed's `'user'`).
pub const LITERAL_PRINCIPAL: &str = "user";
/// Longest token or ARN accepted, in bytes.
pub const MAX_PARAM_LEN: usize = 8192;

type HmacSha256 = Hmac<Sha256>;

/// Parameters of `auth`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthParams {
    /// `allow`, `deny`, `unauthorized`, or an HS256 JWT (an optional
    /// `Bearer ` prefix is ignored, as API Gateway passes the header).
    pub token: String,
    /// The ARN of the method being called (API Gateway's `methodArn`).
    pub method_arn: String,
}

impl Default for AuthParams {
    fn default() -> Self {
        Self {
            token: DEFAULT_TOKEN.to_string(),
            method_arn: DEFAULT_METHOD_ARN.to_string(),
        }
    }
}

impl AuthParams {
    fn validate(&self) -> Result<(), InvokeError> {
        if self.token.is_empty() || self.token.len() > MAX_PARAM_LEN {
            return Err(InvokeError::BadParams(format!(
                "`token` must be 1 to {MAX_PARAM_LEN} bytes, got {}",
                self.token.len()
            )));
        }
        if !self.method_arn.starts_with("arn:") || self.method_arn.len() > MAX_PARAM_LEN {
            return Err(InvokeError::BadParams(format!(
                "`method_arn` must be an ARN (`arn:aws:execute-api:...`) of at most \
                 {MAX_PARAM_LEN} bytes, got {:?}",
                truncate(&self.method_arn, 80)
            )));
        }
        Ok(())
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Allow or Deny, the statement's `Effect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        }
    }
}

/// The blueprint's authorizer response: principal, a one-statement policy
/// on `resource`, and the sample context.
pub fn generate_policy(principal_id: &str, effect: Effect, resource: &str) -> Value {
    json!({
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{
                "Action": "execute-api:Invoke",
                "Effect": effect.as_str(),
                "Resource": resource,
            }],
        },
        "context": {
            "stringKey": "stringValue",
            "numberKey": 123,
            "booleanKey": true,
        },
    })
}

/// Why a JWT was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is not a compact JWT (header.payload.signature)")]
    Malformed,
    #[error("token {0} is not valid base64url JSON")]
    BadEncoding(&'static str),
    #[error("token algorithm must be HS256, got {0}")]
    WrongAlgorithm(String),
    #[error("token signature does not match")]
    BadSignature,
    #[error("token has no numeric `exp` claim")]
    NoExpiry,
    #[error("token expired at {exp} (now {now})")]
    Expired { exp: u64, now: u64 },
    #[error("token is not valid before {nbf} (now {now})")]
    NotYetValid { nbf: u64, now: u64 },
    #[error("token has no non-empty string `sub` claim")]
    NoSubject,
}

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length")
}

/// Mints a compact HS256 JWT with claims `{"sub", "exp"}` signed with
/// `secret`, for tests, benchmarks and clients of `auth`.
pub fn mint_token(secret: &[u8], sub: &str, exp_unix: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({ "sub": sub, "exp": exp_unix }).to_string();
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

fn decode_json(part: &str, what: &'static str) -> Result<Value, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::BadEncoding(what))?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::BadEncoding(what))
}

/// Verifies a compact HS256 JWT against `secret` at time `now_unix` and
/// returns its `sub`. The header must say `"alg": "HS256"` (so `none` and
/// every other algorithm are refused), the signature must match, `exp` must
/// be present and in the future, and `nbf`, if present, not in the future.
pub fn verify_token(token: &str, secret: &[u8], now_unix: u64) -> Result<String, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header = decode_json(h, "header")?;
    match header.get("alg").and_then(Value::as_str) {
        Some("HS256") => {}
        other => {
            return Err(TokenError::WrongAlgorithm(
                other.map_or_else(|| "nothing".to_string(), |a| format!("{a:?}")),
            ))
        }
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| TokenError::BadEncoding("signature"))?;
    let mut m = mac(secret);
    m.update(&token.as_bytes()[..h.len() + 1 + p.len()]);
    m.verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;

    let claims = decode_json(p, "payload")?;
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(TokenError::NoExpiry)?;
    if exp <= now_unix {
        return Err(TokenError::Expired { exp, now: now_unix });
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_u64) {
        if nbf > now_unix {
            return Err(TokenError::NotYetValid { nbf, now: now_unix });
        }
    }
    match claims.get("sub").and_then(Value::as_str) {
        Some(sub) if !sub.is_empty() => Ok(sub.to_string()),
        _ => Err(TokenError::NoSubject),
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The `auth` function, verifying JWTs against its secret.
#[derive(Clone)]
pub struct Auth {
    secret: Vec<u8>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

impl Auth {
    /// An authorizer that accepts JWTs signed with `secret`.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
        }
    }

    fn authorize(&self, p: &AuthParams, now: u64) -> Result<Value, InvokeError> {
        p.validate()?;
        let token = p.token.strip_prefix("Bearer ").unwrap_or(&p.token);
        match token.to_ascii_lowercase().as_str() {
            "allow" => {
                return Ok(generate_policy(
                    LITERAL_PRINCIPAL,
                    Effect::Allow,
                    &p.method_arn,
                ))
            }
            "deny" => {
                return Ok(generate_policy(
                    LITERAL_PRINCIPAL,
                    Effect::Deny,
                    &p.method_arn,
                ))
            }
            "unauthorized" => {
                return Err(InvokeError::Unauthorized(
                    "token `unauthorized` is refused".to_string(),
                ))
            }
            _ => {}
        }
        let sub = verify_token(token, &self.secret, now)
            .map_err(|e| InvokeError::Unauthorized(e.to_string()))?;
        Ok(generate_policy(&sub, Effect::Allow, &p.method_arn))
    }
}

impl Function for Auth {
    fn info(&self) -> FunctionInfo {
        FunctionInfo {
            name: "auth",
            summary: "API-gateway token authorizer: an IAM policy for a literal token or an HS256 JWT",
            params: vec![
                ParamInfo {
                    name: "token",
                    kind: "string",
                    default: json!(DEFAULT_TOKEN),
                    doc: "`allow`, `deny`, `unauthorized` (401), or an HS256 JWT signed with the host's secret",
                },
                ParamInfo {
                    name: "method_arn",
                    kind: "string",
                    default: json!(DEFAULT_METHOD_ARN),
                    doc: "ARN of the invoked method, the policy's Resource",
                },
            ],
        }
    }

    fn invoke(&self, params: &Value) -> Result<Value, InvokeError> {
        let p: AuthParams = parse_params(params)?;
        self.authorize(&p, now_unix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret";
    const NOW: u64 = 1_800_000_000;

    fn auth() -> Auth {
        Auth::new(SECRET)
    }

    fn call(token: &str) -> Result<Value, InvokeError> {
        auth().authorize(
            &AuthParams {
                token: token.to_string(),
                ..AuthParams::default()
            },
            NOW,
        )
    }

    fn expected(principal: &str, effect: &str, resource: &str) -> Value {
        json!({
            "principalId": principal,
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [{
                    "Action": "execute-api:Invoke",
                    "Effect": effect,
                    "Resource": resource
                }]
            },
            "context": {"stringKey": "stringValue", "numberKey": 123, "booleanKey": true}
        })
    }

    #[test]
    fn default_is_the_blueprint_allow_document_exactly() {
        let reply = auth().invoke(&Value::Null).unwrap();
        assert_eq!(reply, expected("user", "Allow", DEFAULT_METHOD_ARN));
    }

    #[test]
    fn literal_tokens_allow_deny_and_refuse() {
        assert_eq!(
            call("allow").unwrap(),
            expected("user", "Allow", DEFAULT_METHOD_ARN)
        );
        assert_eq!(
            call("deny").unwrap(),
            expected("user", "Deny", DEFAULT_METHOD_ARN)
        );
        let e = call("unauthorized").unwrap_err();
        assert_eq!(e.status(), 401, "{e}");
        assert_eq!(
            call("Bearer Deny").unwrap()["policyDocument"]["Statement"][0]["Effect"],
            json!("Deny")
        );
    }

    #[test]
    fn method_arn_becomes_the_resource() {
        let arn = "arn:aws:execute-api:eu-west-1:000000000000:xyz/dev/POST/pets";
        let reply = auth()
            .invoke(&json!({"token": "deny", "method_arn": arn}))
            .unwrap();
        assert_eq!(reply, expected("user", "Deny", arn));
    }

    #[test]
    fn valid_jwt_allows_with_its_subject_as_principal() {
        let t = mint_token(SECRET, "alice@example.com", NOW + 60);
        assert_eq!(
            call(&t).unwrap(),
            expected("alice@example.com", "Allow", DEFAULT_METHOD_ARN)
        );
        assert_eq!(
            call(&format!("Bearer {t}")).unwrap()["principalId"],
            json!("alice@example.com")
        );
    }

    #[test]
    fn jwt_minted_for_the_wall_clock_passes_invoke() {
        let t = mint_token(SECRET, "bob", now_unix() + 3600);
        let reply = auth().invoke(&json!({ "token": t })).unwrap();
        assert_eq!(reply["principalId"], json!("bob"));
    }

    #[test]
    fn jwt_matches_an_independent_hs256_vector() {
        // RFC 7515 appendix A.1: the published HS256 example (key, token and
        // signature exactly as printed in the RFC).
        let key = URL_SAFE_NO_PAD
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .unwrap();
        let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.\
                     eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.\
                     dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        // The RFC's claims have no `sub` and expire in 2011: signature and
        // algorithm pass, then the expiry check refuses it.
        assert_eq!(
            verify_token(token, &key, 1_300_819_379),
            Err(TokenError::NoSubject)
        );
        assert_eq!(
            verify_token(token, &key, NOW),
            Err(TokenError::Expired {
                exp: 1_300_819_380,
                now: NOW
            })
        );
        assert_eq!(
            verify_token(token, b"other key", 1_300_819_379),
            Err(TokenError::BadSignature)
        );
    }

    fn refused(token: &str, why: TokenError) {
        assert_eq!(
            verify_token(token, SECRET, NOW),
            Err(why.clone()),
            "{token}"
        );
        let e = call(token).unwrap_err();
        assert_eq!(e.status(), 401, "{token}");
        assert_eq!(e.detail(), why.to_string());
    }

    #[test]
    fn bad_jwts_are_unauthorized() {
        let good = mint_token(SECRET, "alice", NOW + 60);
        let (signing_input, sig) = good.rsplit_once('.').unwrap();

        // Wrong secret, and a tampered payload under the original signature.
        refused(
            &mint_token(b"wrong", "alice", NOW + 60),
            TokenError::BadSignature,
        );
        let forged_claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"mallory","exp":1900000000}"#);
        let header = signing_input.split('.').next().unwrap();
        refused(
            &format!("{header}.{forged_claims}.{sig}"),
            TokenError::BadSignature,
        );
        // A flipped signature character.
        let mut flipped = sig.to_string();
        let c = if flipped.starts_with('A') { "B" } else { "A" };
        flipped.replace_range(0..1, c);
        refused(
            &format!("{signing_input}.{flipped}"),
            TokenError::BadSignature,
        );

        // Expired, and expiring exactly now.
        refused(
            &mint_token(SECRET, "alice", NOW - 1),
            TokenError::Expired {
                exp: NOW - 1,
                now: NOW,
            },
        );
        refused(
            &mint_token(SECRET, "alice", NOW),
            TokenError::Expired { exp: NOW, now: NOW },
        );

        // alg none with an empty signature, and another algorithm.
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"alice","exp":1900000000}"#);
        refused(
            &format!("{none}.{claims}."),
            TokenError::WrongAlgorithm("\"none\"".into()),
        );
        let hs512 = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512"}"#);
        refused(
            &format!("{hs512}.{claims}.{sig}"),
            TokenError::WrongAlgorithm("\"HS512\"".into()),
        );

        // Garbage.
        refused("hello", TokenError::Malformed);
        refused("a.b.c.d", TokenError::Malformed);
        refused("!!!.???.###", TokenError::BadEncoding("header"));
        refused(
            &format!("{header}.bm90IGpzb24.{sig}"),
            TokenError::BadSignature,
        );
    }

    #[test]
    fn claims_are_checked_after_the_signature() {
        let sign = |claims: &[u8]| {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#),
                URL_SAFE_NO_PAD.encode(claims)
            );
            let mut m = mac(SECRET);
            m.update(input.as_bytes());
            format!(
                "{input}.{}",
                URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
            )
        };
        refused(&sign(br#"{"sub":"a"}"#), TokenError::NoExpiry);
        refused(&sign(br#"{"exp":1900000000}"#), TokenError::NoSubject);
        refused(
            &sign(br#"{"sub":"","exp":1900000000}"#),
            TokenError::NoSubject,
        );
        refused(
            &sign(br#"{"sub":"a","exp":1900000000,"nbf":1850000000}"#),
            TokenError::NotYetValid {
                nbf: 1_850_000_000,
                now: NOW,
            },
        );
        refused(&sign(b"not json"), TokenError::BadEncoding("payload"));
        assert_eq!(
            call(&sign(br#"{"sub":"a","exp":1900000000,"nbf":1700000000}"#)).unwrap()
                ["principalId"],
            json!("a")
        );
    }

    #[test]
    fn invalid_parameters_are_bad_requests() {
        for (params, name) in [
            (json!({"token": ""}), "token"),
            (json!({"token": "x".repeat(MAX_PARAM_LEN + 1)}), "token"),
            (json!({"method_arn": "not-an-arn"}), "method_arn"),
            (json!({"token": 5}), "invalid type"),
            (json!({"tokn": "allow"}), "tokn"),
        ] {
            let e = auth().invoke(&params).unwrap_err();
            assert_eq!(e.status(), 400, "{params}");
            assert!(e.to_string().contains(name), "{params}: {e}");
        }
    }
}
