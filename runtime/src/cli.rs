//! The command line: `buntime call` runs one export of any Extism-ABI module.
//!
//! ```text
//! buntime call greet.wasm greet --input world
//! buntime call plugin.wasm fetch --allow-host api.example.com --timeout 2s
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::capabilities::Grants;
use crate::wasm::{CallError, Engine, EngineConfig, GuestOptions, abi::body_functions};

/// Buntime: a serverless WASM application runtime.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Call one export of an Extism-ABI module (any Extism PDK) and print its output.
    Call(CallArgs),
}

#[derive(Debug, clap::Args)]
struct CallArgs {
    /// The `.wasm` module.
    module: PathBuf,
    /// The export to call.
    function: String,
    /// Input bytes (UTF-8); empty by default.
    #[arg(long, default_value = "")]
    input: String,
    /// A config entry the guest can read, as KEY=VALUE (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// A host name (glob) the guest may reach over HTTP (repeatable).
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// Stop the call after this long, e.g. `500ms`, `2s`.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Cap on the guest's memory, in MiB.
    #[arg(long, default_value_t = 64)]
    memory_mib: usize,
    /// Where compiled modules are cached (none by default).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

/// Parses `250ms`, `2s`, `1m` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((t, "s"), |i| (&t[..i], &t[i..]));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try `500ms`, `2s`, `1m`)"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use ms, s or m)"
            ));
        }
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Installs the log subscriber: `RUNTIME_LOG_LEVEL` (default `info`),
/// JSON when `RUNTIME_LOG_FORMAT=json`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUNTIME_LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if std::env::var("RUNTIME_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Call(args) => call(args).await,
    }
}

async fn call(args: CallArgs) -> anyhow::Result<ExitCode> {
    let mut config = EngineConfig::default();
    config.cache_dir = args.cache_dir;
    config.host_functions.extend(body_functions());
    let engine = Engine::new(config)?;

    let mut grants = Grants::default();
    for host in &args.allow_hosts {
        grants = grants.allow_host(host).context("--allow-host")?;
    }
    let name = args
        .module
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "guest".into());
    let mut options = GuestOptions::new(name)
        .grants(grants)
        .memory_limit(args.memory_mib << 20);
    if let Some(t) = args.timeout {
        options = options.timeout(t);
    }
    for entry in &args.config {
        let Some((k, v)) = entry.split_once('=') else {
            bail!("--config `{entry}`: expected KEY=VALUE");
        };
        options = options.config(k, v);
    }
    let module = engine.load_file(&args.module, options)?;
    if !module.has_export(&args.function) {
        let exports: Vec<&str> = module.exports().collect();
        bail!(
            "`{}` has no export `{}`; it exports: {}",
            args.module.display(),
            args.function,
            exports.join(", ")
        );
    }
    let mut instance = module.instantiate().await?;
    match instance.call(&args.function, args.input.into_bytes()).await {
        Ok(out) => {
            use std::io::Write;
            std::io::stdout().write_all(&out.output)?;
            if !out.output.ends_with(b"\n") {
                println!();
            }
            Ok(ExitCode::from(u8::try_from(out.rc).unwrap_or(1)))
        }
        Err(CallError::Guest { rc, message }) => {
            eprintln!("error (return code {rc}): {message}");
            Ok(ExitCode::from(u8::try_from(rc).unwrap_or(1)))
        }
        Err(e) => bail!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
