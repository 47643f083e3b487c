//! `slokit invoke`: runs one function in-process and prints its JSON reply.

use anyhow::Context;
use slokit_functions::{Catalogue, CatalogueConfig};

/// Arguments of `slokit invoke`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Function to run (auth, aes, video, spin).
    pub function: String,
    /// A parameter as key=value; the value is parsed as JSON when it can be,
    /// else taken as a string. Repeatable.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// HS256 secret for `auth`'s JWT tokens.
    #[arg(long, env = "SLOKIT_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,
}

/// Turns `key=value` pairs into a JSON object.
pub fn params_object(pairs: &[String]) -> anyhow::Result<serde_json::Value> {
    let mut map = serde_json::Map::new();
    for pair in pairs {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("parameter `{pair}` is not KEY=VALUE"))?;
        let value =
            serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
        map.insert(k.to_string(), value);
    }
    Ok(if map.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::Value::Object(map)
    })
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let mut config = CatalogueConfig::default();
    if let Some(s) = args.auth_secret {
        config.auth_secret = s.into_bytes();
    }
    let catalogue = Catalogue::builtin(&config);
    let function = catalogue.require(&args.function)?;
    let params = params_object(&args.params)?;
    let start = std::time::Instant::now();
    match function.invoke(&params) {
        Ok(reply) => {
            println!("{}", serde_json::to_string_pretty(&reply)?);
            eprintln!(
                "{}: {:.3} ms",
                args.function,
                start.elapsed().as_secs_f64() * 1e3
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {} ({})", e, e.status());
            Ok(1)
        }
    }
}
