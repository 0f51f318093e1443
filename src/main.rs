//! The `sandgate` command: parses the command line, loads the configuration and hands over to the
//! library. `serve` (the default) runs the proxy; `rewrite` and `restore` run the engine on stdin.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sandgate::config::{Config, LogFormat, Overrides};
use sandgate::rewrite::sign::MIN_KEY_BYTES;
use sandgate::rewrite::{LinkKey, Mode};

#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "sandgate", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Options of `serve`, which runs when no subcommand is given.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the proxy (the default).
    Serve(ServeArgs),
    /// Run sandgate in front of a built-in scripted model (no API key, no network), with the
    /// playground at `/`.
    Demo(ServeArgs),
    /// Rewrite markdown from stdin to stdout.
    Rewrite(TextArgs),
    /// Undo a rewrite: markdown from stdin to stdout.
    Restore(TextArgs),
}

#[derive(Args, Debug, Default)]
struct ServeArgs {
    /// The TOML configuration file (default: none, built-in defaults).
    #[arg(long, env = "SANDGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8787.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// The upstream base URL, e.g. https://api.openai.com/v1.
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    #[command(flatten)]
    text: RewriteFlags,
    /// Serve a local Pyodide distribution at /pyodide/.
    #[arg(long, value_name = "DIR")]
    pyodide_dir: Option<String>,
    /// Set any configuration key, e.g. --set timeouts.idle=60s (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Args, Debug, Default)]
struct TextArgs {
    /// The TOML configuration file to take the other rewrite settings from.
    #[arg(long, env = "SANDGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    text: RewriteFlags,
    /// The key that signs the links (rewrite) and that restore trusts. Default: the public
    /// well-known key, not the server's `link_key`, so links made here are unsigned in trust terms.
    #[arg(long, value_name = "KEY")]
    link_key: Option<String>,
}

#[derive(Args, Debug, Default)]
struct RewriteFlags {
    /// off, link, widget or artifact.
    #[arg(long, value_name = "MODE")]
    mode: Option<String>,
    /// The URL at which browsers reach this sandgate.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Keep the code block (true) or replace it (false).
    #[arg(long, value_name = "BOOL")]
    show_code: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Demo(args)) => demo(args),
        Some(Command::Rewrite(args)) => text_command(args, |opts, input| {
            // The mode `off` rewrites nothing: the engine is not even called.
            if opts.mode == Mode::Off {
                input.to_owned()
            } else {
                sandgate::rewrite::rewrite(opts, input)
            }
        }),
        Some(Command::Restore(args)) => text_command(args, sandgate::rewrite::restore),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "sandgate: {message}");
            ExitCode::FAILURE
        }
    }
}

fn env_overrides() -> Overrides {
    Overrides::from_env(|name| std::env::var(name).ok())
}

impl RewriteFlags {
    fn push_to(&self, o: &mut Overrides) {
        if let Some(v) = &self.mode {
            o.push("mode", v);
        }
        if let Some(v) = &self.public_url {
            o.push("public_url", v);
        }
        if let Some(v) = &self.show_code {
            o.push("show_code", v);
        }
    }
}

fn serve_overrides(args: &ServeArgs) -> Result<Overrides, String> {
    let mut o = Overrides::default();
    for kv in &args.set {
        let (k, v) =
            kv.split_once('=').ok_or_else(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
        o.push(k.trim(), v);
    }
    if let Some(v) = &args.listen {
        o.push("listen", v);
    }
    if let Some(v) = &args.upstream {
        o.push("upstream", v);
    }
    if let Some(v) = &args.pyodide_dir {
        o.push("pyodide_dir", v);
    }
    args.text.push_to(&mut o);
    Ok(o)
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let cli = serve_overrides(&args)?;
    let config =
        Config::load(args.config.as_deref(), &env_overrides(), &cli).map_err(|e| e.to_string())?;
    init_logging(&config)?;
    // This runtime only waits for signals: the server's worker threads run their own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let server = sandgate::server::Server::bind(config).await.map_err(|e| e.to_string())?;
        server.serve(sandgate::server::shutdown_signal()).await.map_err(|e| e.to_string())
    })
}

fn demo(args: ServeArgs) -> Result<(), String> {
    let cli = serve_overrides(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let demo =
            sandgate::demo::Demo::start(args.config.as_deref(), &env_overrides(), &cli).await?;
        init_logging(demo.config())?;
        let server = sandgate::server::Server::bind(demo.config().clone())
            .await
            .map_err(|e| e.to_string())?;
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(demo.banner().as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("cannot write stdout: {e}"))?;
        drop(stdout);
        let result =
            server.serve(sandgate::server::shutdown_signal()).await.map_err(|e| e.to_string());
        demo.shutdown().await;
        result
    })
}

fn text_command(
    args: TextArgs,
    run: impl FnOnce(&sandgate::rewrite::Options, &str) -> String,
) -> Result<(), String> {
    let mut cli = Overrides::default();
    args.text.push_to(&mut cli);
    let config =
        Config::load(args.config.as_deref(), &env_overrides(), &cli).map_err(|e| e.to_string())?;
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).map_err(|e| format!("cannot read stdin: {e}"))?;
    let input = String::from_utf8(input).map_err(|e| format!("stdin is not UTF-8: {e}"))?;
    let mut opts = config.rewrite;
    opts.link_key = match &args.link_key {
        None => LinkKey::public(),
        Some(key) => LinkKey::new(key.as_bytes())
            .ok_or_else(|| format!("--link-key: must be at least {MIN_KEY_BYTES} bytes long"))?,
    };
    let output = run(&opts, &input);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write stdout: {e}"))
}

fn init_logging(config: &Config) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log_level))
        .map_err(|e| format!("config: log_level: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match config.log_format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| format!("cannot start logging: {e}"))
}
