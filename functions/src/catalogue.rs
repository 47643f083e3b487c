//! The function catalogue: the [`Function`] trait every built-in function
//! implements, its self-description (parameters and defaults), and the
//! [`Catalogue`] the host and the profiler look functions up in.
//!
//! A function is plain, synchronous Rust: it takes its parameters as a JSON
//! object, validates them into a typed struct, runs on the calling thread and
//! returns a JSON reply. Running on the calling thread is what the host's
//! threading contract (DESIGN.md) relies on.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// One parameter of a function, as listed by `GET /functions`.
#[derive(Debug, Clone, Serialize)]
pub struct ParamInfo {
    pub name: &'static str,
    /// JSON type, for example `"string"`, `"integer"`, `"number"`.
    pub kind: &'static str,
    pub default: Value,
    pub doc: &'static str,
}

/// What a function is and which parameters it takes.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub params: Vec<ParamInfo>,
}

/// Why an invocation did not produce a reply. The host maps each kind to an
/// HTTP status with [`InvokeError::status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The parameters do not parse or fail validation (HTTP 400).
    #[error("invalid parameters: {0}")]
    BadParams(String),
    /// The caller is not authorised (HTTP 401); used by `auth`.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The function itself failed (HTTP 500).
    #[error("function failed: {0}")]
    Failed(String),
}

impl InvokeError {
    /// The HTTP status the host answers with.
    pub fn status(&self) -> u16 {
        match self {
            InvokeError::BadParams(_) => 400,
            InvokeError::Unauthorized(_) => 401,
            InvokeError::Failed(_) => 500,
        }
    }

    /// A short machine-readable name of the kind, for the `error` field.
    pub fn kind(&self) -> &'static str {
        match self {
            InvokeError::BadParams(_) => "invalid parameters",
            InvokeError::Unauthorized(_) => "unauthorized",
            InvokeError::Failed(_) => "function failed",
        }
    }

    /// The detail text without the kind prefix.
    pub fn detail(&self) -> &str {
        match self {
            InvokeError::BadParams(d) | InvokeError::Unauthorized(d) | InvokeError::Failed(d) => d,
        }
    }
}

/// A serverless function slokit can host, profile and replay.
pub trait Function: Send + Sync {
    /// Name, summary and parameters with their defaults.
    fn info(&self) -> FunctionInfo;
    /// Runs one invocation on the calling thread. `params` is a JSON object
    /// (or `null` for all defaults).
    fn invoke(&self, params: &Value) -> Result<Value, InvokeError>;
    /// An estimate of the bytes an invocation with `params` will allocate
    /// beyond its request (its buffers), used by the host to admit it
    /// against its bytes-in-flight limit. Parameters that do not parse
    /// estimate 0: the invocation refuses them with its own 400. The
    /// default, 0, suits functions whose memory does not grow with their
    /// parameters.
    fn memory_estimate(&self, _params: &Value) -> u64 {
        0
    }
}

/// Parses a JSON parameter object into a typed parameter struct; `null`
/// means "all defaults". Unknown fields are rejected by the struct's own
/// `#[serde(deny_unknown_fields)]`. A value of the wrong type is reported
/// with the parameter's name (`` `length`: invalid value: ... ``).
pub fn parse_params<P: DeserializeOwned + Default>(params: &Value) -> Result<P, InvokeError> {
    match params {
        Value::Null => Ok(P::default()),
        Value::Object(_) => serde_path_to_error::deserialize(params).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            InvokeError::BadParams(if path == "." {
                inner.to_string()
            } else {
                format!("`{path}`: {inner}")
            })
        }),
        other => Err(InvokeError::BadParams(format!(
            "parameters must be a JSON object, got {}",
            json_type_name(other)
        ))),
    }
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Settings the built-in functions need from their host.
#[derive(Debug, Clone)]
pub struct CatalogueConfig {
    /// HS256 secret that `auth` verifies JWTs against.
    pub auth_secret: Vec<u8>,
}

impl Default for CatalogueConfig {
    fn default() -> Self {
        Self {
            auth_secret: DEFAULT_AUTH_SECRET.as_bytes().to_vec(),
        }
    }
}

/// The secret used when neither `--auth-secret` nor `SLOKIT_AUTH_SECRET` is
/// given. Fine for benchmarks; never for anything real.
pub const DEFAULT_AUTH_SECRET: &str = "slokit-development-secret";

/// Names of the built-in functions, in catalogue order.
pub const BUILTIN: [&str; 4] = ["auth", "aes", "video", "spin"];

/// A set of functions by name.
#[derive(Clone, Default)]
pub struct Catalogue {
    functions: BTreeMap<String, Arc<dyn Function>>,
}

impl std::fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.functions.keys()).finish()
    }
}

/// A function name that is not in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown function `{name}` (known: {known})")]
pub struct UnknownFunction {
    pub name: String,
    pub known: String,
}

impl Catalogue {
    /// Every built-in function.
    pub fn builtin(config: &CatalogueConfig) -> Self {
        let mut c = Catalogue::default();
        c.insert(Arc::new(crate::auth::Auth::new(config.auth_secret.clone())));
        c.insert(Arc::new(crate::aes_ctr::Aes));
        c.insert(Arc::new(crate::video::Video));
        c.insert(Arc::new(crate::spin::Spin));
        c
    }

    /// Adds (or replaces) a function under its own name.
    pub fn insert(&mut self, f: Arc<dyn Function>) {
        self.functions.insert(f.info().name.to_string(), f);
    }

    /// The sub-catalogue of the named functions, or an error naming the
    /// first unknown one.
    pub fn select<S: AsRef<str>>(&self, names: &[S]) -> Result<Catalogue, UnknownFunction> {
        let mut out = Catalogue::default();
        for name in names {
            let name = name.as_ref();
            let f = self.get(name).ok_or_else(|| self.unknown(name))?;
            out.functions.insert(name.to_string(), f.clone());
        }
        Ok(out)
    }

    /// The function called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Function>> {
        self.functions.get(name)
    }

    /// The function called `name`, or an error listing the known ones.
    pub fn require(&self, name: &str) -> Result<&Arc<dyn Function>, UnknownFunction> {
        self.get(name).ok_or_else(|| self.unknown(name))
    }

    fn unknown(&self, name: &str) -> UnknownFunction {
        UnknownFunction {
            name: name.to_string(),
            known: self.names().join(", "),
        }
    }

    /// Names of the functions, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.functions.keys().map(String::as_str).collect()
    }

    /// Descriptions of every function, sorted by name.
    pub fn infos(&self) -> Vec<FunctionInfo> {
        self.functions.values().map(|f| f.info()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct P {
        n: u32,
    }

    #[test]
    fn null_params_mean_defaults() {
        assert_eq!(parse_params::<P>(&Value::Null).unwrap(), P::default());
    }

    #[test]
    fn non_object_params_are_rejected_with_their_type() {
        let e = parse_params::<P>(&serde_json::json!([1])).unwrap_err();
        assert!(e.to_string().contains("an array"), "{e}");
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn type_errors_name_the_parameter() {
        let e = parse_params::<P>(&serde_json::json!({"n": -1})).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid parameters: `n`: invalid value"),
            "{e}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = parse_params::<P>(&serde_json::json!({"m": 1})).unwrap_err();
        assert!(matches!(e, InvokeError::BadParams(_)));
    }

    #[test]
    fn builtin_lists_all_four_functions_with_their_params() {
        let c = Catalogue::builtin(&CatalogueConfig::default());
        let mut want = BUILTIN.to_vec();
        want.sort_unstable();
        assert_eq!(c.names(), want);
        for info in c.infos() {
            assert!(!info.params.is_empty(), "{} lists no parameters", info.name);
            // Defaults listed must be accepted as they are.
            let params: serde_json::Map<String, Value> = info
                .params
                .iter()
                .filter(|p| !p.default.is_null())
                .map(|p| (p.name.to_string(), p.default.clone()))
                .collect();
            if info.name == "spin" || info.name == "video" {
                continue; // covered by their own tests; slow-ish here
            }
            c.require(info.name)
                .unwrap()
                .invoke(&Value::Object(params))
                .unwrap_or_else(|e| panic!("{}: listed defaults refused: {e}", info.name));
        }
    }

    #[test]
    fn builtin_auth_uses_the_configured_secret() {
        let config = CatalogueConfig {
            auth_secret: b"configured".to_vec(),
        };
        let auth = Catalogue::builtin(&config).require("auth").unwrap().clone();
        let exp = 4_000_000_000;
        let good = crate::auth::mint_token(b"configured", "carol", exp);
        let reply = auth.invoke(&serde_json::json!({ "token": good })).unwrap();
        assert_eq!(reply["principalId"], "carol");
        let other = crate::auth::mint_token(DEFAULT_AUTH_SECRET.as_bytes(), "carol", exp);
        let e = auth
            .invoke(&serde_json::json!({ "token": other }))
            .unwrap_err();
        assert_eq!(e.status(), 401);
    }

    #[test]
    fn select_names_the_unknown_function() {
        let c = Catalogue::builtin(&CatalogueConfig::default());
        let e = c.select(&["spin", "nope"]).unwrap_err();
        assert_eq!(e.name, "nope");
        assert!(e.to_string().contains("spin"));
    }
}
