//! Configuration: what the operator said (a TOML file, `SANDGATE_*` environment variables and
//! command-line flags, in rising precedence) and what it resolves to.
//!
//! [`RawConfig`] mirrors the file: every key has a named default and unknown keys are rejected.
//! [`Overrides`] carries `key = value` strings from the environment and the command line, applied on
//! top of the file by [`RawConfig::set`]. [`RawConfig::validate`] turns the result into [`Config`], whose
//! fields are typed and checked; every error names the key and says what is wrong.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::rewrite::api::Tool;
use crate::rewrite::sign::MIN_KEY_BYTES;
use crate::rewrite::{
    Cells, Context, LinkKey, Mode, Options, DEFAULT_CONTEXT_BYTES, DEFAULT_LANGUAGES,
    DEFAULT_LINK_TEXT, DEFAULT_MAX_BLOCK_BYTES,
};
use crate::sandbox::SandboxConfig;

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// Worker threads, each with its own event loop and upstream connection pool.
    pub workers: usize,
    pub upstream: Upstream,
    /// The rewrite engine's options: mode, context, link text, languages, limits, the public URL
    /// (without a trailing slash) and the key that signs run links (restore and the page trust only
    /// links it signed). Its `history` is per request and stays empty here: the proxy fills it in
    /// its own copy of these options for each request that needs it.
    pub rewrite: Options,
    /// The sandbox page's configuration; its `max_code_bytes` is `rewrite.max_block_bytes`.
    pub sandbox: SandboxConfig,
    pub request_body_limit: usize,
    /// A non-streamed answer larger than this is passed on unchanged instead of being held whole.
    pub json_rewrite_limit: usize,
    pub timeouts: Timeouts,
    /// Client connections served at once (0 in the file: as many as the open-files limit allows
    /// with headroom, see [`crate::server`]); further clients wait in the listen backlog.
    pub max_connections: usize,
    /// HTTP/2 streams (requests) one client connection may have open at once.
    pub max_concurrent_streams: u32,
    /// Gateway keys: when not empty, clients must present one of them as their bearer token.
    pub api_keys: Vec<String>,
    /// The provider key sandgate sends upstream in place of the client's gateway key.
    pub upstream_api_key: Option<String>,
    /// `Bearer <upstream_api_key>`, the `Authorization` value sent upstream (marked sensitive).
    pub upstream_authorization: Option<http::HeaderValue>,
    /// Extra root certificates (PEM) trusted for an `https` upstream, besides the webpki roots.
    pub upstream_ca: Option<PathBuf>,
    /// Offer HTTP/2 to `https` upstreams (ALPN); otherwise every request in flight has its own
    /// pooled HTTP/1.1 connection.
    pub upstream_http2: bool,
    pub tls: Option<TlsFiles>,
    /// Tools added to every chat and Responses request (the header `x-sandgate-tools` overrides it).
    pub tools: Vec<Tool>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub log_content: bool,
    /// Whether `link_key` was left unset, so that `rewrite.link_key` is random for this process.
    pub link_key_random: bool,
}

/// The upstream base URL, split once so that requests only append to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// `http` or `https`.
    pub scheme: String,
    /// Host and optional port.
    pub authority: String,
    /// The base path without a trailing slash, e.g. `/v1` (or empty).
    pub base_path: String,
}

impl Upstream {
    /// The upstream URI for a client path relative to `/v1/` and its query.
    pub fn uri_for(&self, rest: &str, query: Option<&str>) -> String {
        let mut uri = String::with_capacity(
            self.scheme.len() + self.authority.len() + self.base_path.len() + rest.len() + 16,
        );
        uri.push_str(&self.scheme);
        uri.push_str("://");
        uri.push_str(&self.authority);
        uri.push_str(&self.base_path);
        if !rest.is_empty() {
            uri.push('/');
            uri.push_str(rest);
        }
        if let Some(q) = query {
            uri.push('?');
            uri.push_str(q);
        }
        uri
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

/// Timeouts, each configured separately. None of them limits the total length of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the TCP connection to the upstream.
    pub connect: Duration,
    /// From sending the request upstream to receiving its response headers.
    pub first_byte: Duration,
    /// The longest pause between two pieces of an upstream response body.
    pub idle: Duration,
    /// The longest pause between two pieces of a client's request body (then 408).
    pub request_body: Duration,
    /// The longest a write to a client may wait (the client does not read): then the connection is
    /// closed.
    pub write: Duration,
    /// Reading a client's request headers.
    pub header_read: Duration,
    /// How long streams in flight may go on after a shutdown signal.
    pub shutdown_grace: Duration,
}

/// Certificate chain and private key for TLS on the listener (PEM files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// A configuration error; the message names the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("config: {0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    fn key(key: &str, what: impl fmt::Display) -> Self {
        ConfigError(format!("{key}: {what}"))
    }
}

/// Declares every configuration key once: its field in [`RawConfig`] (or in one of its tables), its
/// default and how `set` parses it from a string. The structs, their `Default`, [`KEYS`],
/// `RawConfig::set` and [`default_text`] (which the README's table is checked against) all come
/// from this one list.
macro_rules! config_keys {
    (
        $(#[$meta:meta])*
        pub struct $raw:ident {
            $( $(#[$m:meta])* $field:ident: $ty:ty = $default:expr, $parse:ident; )*
        }
        $(
            $(#[$tmeta:meta])*
            [$table:ident] pub struct $tty:ident {
                $( $(#[$tm:meta])* $tfield:ident: $tfty:ty = $tdefault:expr, $tparse:ident; )*
            }
        )*
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
        #[serde(default, deny_unknown_fields)]
        pub struct $raw {
            $( $(#[$m])* pub $field: $ty, )*
            $( pub $table: $tty, )*
        }

        impl Default for $raw {
            fn default() -> Self {
                $raw { $( $field: $default, )* $( $table: $tty::default(), )* }
            }
        }

        $(
            $(#[$tmeta])*
            #[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
            #[serde(default, deny_unknown_fields)]
            pub struct $tty {
                $( $(#[$tm])* pub $tfield: $tfty, )*
            }

            impl Default for $tty {
                fn default() -> Self {
                    $tty { $( $tfield: $tdefault, )* }
                }
            }
        )*

        /// Every key, in the dotted form used by `--set` and (upper-cased, dots as `_`) by
        /// `SANDGATE_*`.
        pub const KEYS: &[&str] = &[
            $( stringify!($field), )*
            $( $( concat!(stringify!($table), ".", stringify!($tfield)), )* )*
        ];

        impl $raw {
            /// Sets `key` if it is one; `None` for an unknown key.
            fn set_known(&mut self, key: &str, value: &str) -> Option<Result<(), ConfigError>> {
                Some(match key {
                    $( stringify!($field) => $parse(key, value).map(|v| self.$field = v), )*
                    $( $(
                        concat!(stringify!($table), ".", stringify!($tfield)) => {
                            $tparse(key, value).map(|v| self.$table.$tfield = v)
                        }
                    )* )*
                    _ => return None,
                })
            }
        }

        /// A key's default as the README's configuration table writes it: lists joined with
        /// `, `; `None` for an unknown key.
        pub fn default_text(key: &str) -> Option<String> {
            let raw = $raw::default();
            Some(match key {
                $( stringify!($field) => Text::text(&raw.$field), )*
                $( $(
                    concat!(stringify!($table), ".", stringify!($tfield)) => {
                        Text::text(&raw.$table.$tfield)
                    }
                )* )*
                _ => return None,
            })
        }
    };
}

config_keys! {
    /// The configuration as written: the TOML file's shape, every key optional with its default.
    pub struct RawConfig {
        listen: String = "127.0.0.1:8787".to_owned(), text;
        /// 0: one per CPU.
        workers: u64 = 0, parse_u64;
        upstream: String = "https://api.openai.com/v1".to_owned(), text;
        /// Empty means `http://` + `listen` (or `https://` with TLS).
        public_url: String = String::new(), text;
        mode: String = "link".to_owned(), text;
        show_code: bool = true, parse_bool;
        link_text: String = DEFAULT_LINK_TEXT.to_owned(), text;
        languages: Vec<String> = DEFAULT_LANGUAGES.iter().map(|s| (*s).to_owned()).collect(), list;
        max_block_bytes: u64 = DEFAULT_MAX_BLOCK_BYTES as u64, parse_u64;
        context: String = "answer".to_owned(), text;
        context_bytes: u64 = DEFAULT_CONTEXT_BYTES as u64, parse_u64;
        request_body_limit: u64 = 32 << 20, parse_u64;
        json_rewrite_limit: u64 = 64 << 20, parse_u64;
        /// 0: from the open-files limit.
        max_connections: u64 = 0, parse_u64;
        max_concurrent_streams: u64 = 100, parse_u64;
        api_keys: Vec<String> = Vec::new(), list;
        upstream_api_key: String = String::new(), text;
        /// Empty: only the webpki roots.
        upstream_ca: String = String::new(), text;
        upstream_http2: bool = false, parse_bool;
        pyodide_url: String = DEFAULT_PYODIDE_URL.to_owned(), text;
        pyodide_dir: String = String::new(), text;
        wheels_dir: String = String::new(), text;
        sandbox_timeout: String = "30s".to_owned(), text;
        /// Tool names; only `python` is known.
        tools: Vec<String> = Vec::new(), list;
        log_format: String = "plain".to_owned(), text;
        log_level: String = "info".to_owned(), text;
        log_content: bool = false, parse_bool;
        /// Empty: a random key per process.
        link_key: String = String::new(), text;
    }

    /// The `[timeouts]` table; durations are strings such as `"10s"`, `"500ms"` or `"5m"`.
    [timeouts] pub struct RawTimeouts {
        connect: String = "10s".to_owned(), text;
        first_byte: String = "300s".to_owned(), text;
        idle: String = "300s".to_owned(), text;
        request_body: String = "10s".to_owned(), text;
        write: String = "30s".to_owned(), text;
        header_read: String = "30s".to_owned(), text;
        shutdown_grace: String = "30s".to_owned(), text;
    }

    /// The `[tls]` table; both empty means plain TCP.
    [tls] pub struct RawTls {
        cert: String = String::new(), text;
        key: String = String::new(), text;
    }
}

/// The most worker threads `workers` may ask for.
pub const MAX_WORKERS: usize = 1024;

/// The Pyodide release the sandbox page loads when no local copy is configured.
pub use crate::sandbox::DEFAULT_PYODIDE_URL;

/// A string key's value, as given.
fn text(_key: &str, value: &str) -> Result<String, ConfigError> {
    Ok(value.to_owned())
}

/// A list key's value: comma-separated, items trimmed, empty items left out.
fn list(_key: &str, value: &str) -> Result<Vec<String>, ConfigError> {
    Ok(split_list(value))
}

/// A value written as the README's configuration table writes defaults.
trait Text {
    fn text(&self) -> String;
}

impl Text for String {
    fn text(&self) -> String {
        self.clone()
    }
}

impl Text for u64 {
    fn text(&self) -> String {
        self.to_string()
    }
}

impl Text for bool {
    fn text(&self) -> String {
        self.to_string()
    }
}

impl Text for Vec<String> {
    fn text(&self) -> String {
        self.join(", ")
    }
}

/// `key = value` strings from the environment or the command line, applied in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides(pub Vec<(String, String)>);

impl Overrides {
    /// The `SANDGATE_*` variables for every key in [`KEYS`] that `lookup` finds, e.g.
    /// `SANDGATE_TIMEOUTS_IDLE` for `timeouts.idle`. `lookup` is `std::env::var` in production.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut out = Vec::new();
        for key in KEYS {
            let var = env_var_name(key);
            if let Some(value) = lookup(&var) {
                out.push(((*key).to_owned(), value));
            }
        }
        Overrides(out)
    }

    pub fn push(&mut self, key: &str, value: impl Into<String>) {
        self.0.push((key.to_owned(), value.into()));
    }
}

/// The environment variable that sets a key: `SANDGATE_` + the key upper-cased with `.` as `_`.
pub fn env_var_name(key: &str) -> String {
    format!("SANDGATE_{}", key.replace('.', "_").to_ascii_uppercase())
}

impl RawConfig {
    /// Parses a TOML document; unknown keys and wrongly typed values are errors.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(toml_error_message(text, &e)))
    }

    /// Reads and parses a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    /// Sets one key from a string, as given in an environment variable or on the command line.
    /// Lists (`languages`, `api_keys`) are comma-separated; booleans are `true` or `false`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match self.set_known(key, value) {
            Some(done) => done,
            None => {
                Err(ConfigError::key(key, format!("unknown key; known keys: {}", KEYS.join(", "))))
            }
        }
    }

    /// Applies overrides in order.
    pub fn apply(&mut self, overrides: &Overrides) -> Result<(), ConfigError> {
        for (key, value) in &overrides.0 {
            self.set(key, value)?;
        }
        Ok(())
    }

    /// Checks every value and resolves it.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let listen: SocketAddr = self.listen.trim().parse().map_err(|_| {
            ConfigError::key("listen", format!("invalid socket address {:?}", self.listen))
        })?;
        let workers = match self.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n if n > MAX_WORKERS as u64 => {
                return Err(ConfigError::key("workers", format!("{n} is more than {MAX_WORKERS}")))
            }
            n => usize::try_from(n).unwrap_or(1),
        };
        let upstream = parse_upstream(&self.upstream)?;
        let mode: Mode = self.mode.parse().map_err(|e| ConfigError::key("mode", e))?;

        if self.link_text.trim().is_empty() {
            return Err(ConfigError::key("link_text", "must not be empty"));
        }
        if self.link_text.contains(['\n', '\r']) {
            return Err(ConfigError::key("link_text", "must be a single line"));
        }
        if self.languages.is_empty() {
            return Err(ConfigError::key("languages", "must name at least one language"));
        }
        let mut languages = Vec::with_capacity(self.languages.len());
        for lang in &self.languages {
            let l = lang.trim();
            if l.is_empty() || l.contains(|c: char| c.is_whitespace() || c == '`' || c == '~') {
                return Err(ConfigError::key(
                    "languages",
                    format!("{lang:?} is not a single info-string word"),
                ));
            }
            languages.push(l.to_ascii_lowercase());
        }
        let max_block_bytes = positive_usize("max_block_bytes", self.max_block_bytes)?;
        let context: Context = self.context.parse().map_err(|e| ConfigError::key("context", e))?;
        // Zero is allowed: every earlier block is then left out, and the links only count them.
        let context_bytes = usize::try_from(self.context_bytes).map_err(|_| {
            ConfigError::key("context_bytes", format!("{} is too large", self.context_bytes))
        })?;
        let request_body_limit = positive_usize("request_body_limit", self.request_body_limit)?;
        let json_rewrite_limit = positive_usize("json_rewrite_limit", self.json_rewrite_limit)?;
        let max_connections = usize::try_from(self.max_connections).map_err(|_| {
            ConfigError::key("max_connections", format!("{} is too large", self.max_connections))
        })?;
        let max_concurrent_streams = match u32::try_from(self.max_concurrent_streams) {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(ConfigError::key(
                    "max_concurrent_streams",
                    format!("{} is not between 1 and {}", self.max_concurrent_streams, u32::MAX),
                ))
            }
        };

        let timeouts = Timeouts {
            connect: parse_duration("timeouts.connect", &self.timeouts.connect)?,
            first_byte: parse_duration("timeouts.first_byte", &self.timeouts.first_byte)?,
            idle: parse_duration("timeouts.idle", &self.timeouts.idle)?,
            request_body: parse_duration("timeouts.request_body", &self.timeouts.request_body)?,
            write: parse_duration("timeouts.write", &self.timeouts.write)?,
            header_read: parse_duration("timeouts.header_read", &self.timeouts.header_read)?,
            shutdown_grace: parse_duration(
                "timeouts.shutdown_grace",
                &self.timeouts.shutdown_grace,
            )?,
        };

        let mut api_keys = Vec::with_capacity(self.api_keys.len());
        for key in &self.api_keys {
            let k = key.trim();
            if k.is_empty() {
                return Err(ConfigError::key("api_keys", "contains an empty key"));
            }
            if !k.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::key(
                    "api_keys",
                    "a key may hold only visible ASCII characters",
                ));
            }
            api_keys.push(k.to_owned());
        }
        let upstream_api_key = match self.upstream_api_key.trim() {
            "" => None,
            k if !k.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(ConfigError::key(
                    "upstream_api_key",
                    "may hold only visible ASCII characters",
                ))
            }
            k => Some(k.to_owned()),
        };
        let upstream_authorization = match &upstream_api_key {
            Some(k) => {
                let mut v = http::HeaderValue::from_str(&format!("Bearer {k}")).map_err(|_| {
                    ConfigError::key("upstream_api_key", "not a valid header value")
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        if upstream_api_key.is_some() && api_keys.is_empty() {
            return Err(ConfigError::key(
                "upstream_api_key",
                "is set but api_keys is empty, which would let any client spend the provider key; \
                 set api_keys too",
            ));
        }

        let upstream_ca = match self.upstream_ca.trim() {
            "" => None,
            path => Some(existing_file("upstream_ca", path)?),
        };

        let tls = match (self.tls.cert.trim(), self.tls.key.trim()) {
            ("", "") => None,
            ("", _) => return Err(ConfigError::key("tls.cert", "missing while tls.key is set")),
            (_, "") => return Err(ConfigError::key("tls.key", "missing while tls.cert is set")),
            (cert, key) => Some(TlsFiles {
                cert: existing_file("tls.cert", cert)?,
                key: existing_file("tls.key", key)?,
            }),
        };

        let public_url = match self.public_url.trim() {
            "" => {
                let scheme = if tls.is_some() { "https" } else { "http" };
                format!("{scheme}://{listen}")
            }
            url => {
                let url = url.trim_end_matches('/');
                if !(url.starts_with("http://") || url.starts_with("https://"))
                    || url.len() <= "https://".len()
                    || url.contains(['#', '?', ' ', '"', '\'', '<', '>', '(', ')'])
                {
                    return Err(ConfigError::key(
                        "public_url",
                        format!(
                            "{:?} is not an http(s) URL without query, fragment or quotes",
                            self.public_url
                        ),
                    ));
                }
                url.to_owned()
            }
        };

        let pyodide_dir = optional_dir("pyodide_dir", &self.pyodide_dir)?;
        let wheels_dir = optional_dir("wheels_dir", &self.wheels_dir)?;
        let pyodide_url = match (self.pyodide_url.trim(), &pyodide_dir) {
            // A local distribution wins unless the operator changed the URL on purpose.
            (url, Some(_)) if url == DEFAULT_PYODIDE_URL || url.is_empty() => {
                "/pyodide/".to_owned()
            }
            ("", None) => {
                return Err(ConfigError::key(
                    "pyodide_url",
                    "must not be empty unless pyodide_dir is set",
                ))
            }
            (url, _) => {
                if !(url.starts_with("https://")
                    || url.starts_with("http://")
                    || url.starts_with('/'))
                {
                    return Err(ConfigError::key(
                        "pyodide_url",
                        format!("{url:?} is not an http(s) URL or an absolute path"),
                    ));
                }
                if url.ends_with('/') {
                    url.to_owned()
                } else {
                    format!("{url}/")
                }
            }
        };
        let sandbox_timeout = parse_duration("sandbox_timeout", &self.sandbox_timeout)?;
        let mut tools = Vec::with_capacity(self.tools.len());
        for name in &self.tools {
            let tool: Tool = name.parse().map_err(|e| ConfigError::key("tools", e))?;
            if !tools.contains(&tool) {
                tools.push(tool);
            }
        }

        let log_format = match self.log_format.trim().to_ascii_lowercase().as_str() {
            "plain" => LogFormat::Plain,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::key(
                    "log_format",
                    format!("unknown format {other:?}: expected plain or json"),
                ))
            }
        };
        let log_level = self.log_level.trim().to_owned();
        if log_level.is_empty() {
            return Err(ConfigError::key("log_level", "must not be empty"));
        }
        let link_key_random = self.link_key.is_empty();
        let link_key = if link_key_random {
            LinkKey::random().ok_or_else(|| {
                ConfigError::key("link_key", "unset, and the system gave no random key")
            })?
        } else {
            LinkKey::new(self.link_key.as_bytes()).ok_or_else(|| {
                ConfigError::key(
                    "link_key",
                    format!(
                        "is {} bytes long; it must be at least {MIN_KEY_BYTES} (better 32 random \
                         bytes, e.g. from `openssl rand -base64 32`)",
                        self.link_key.len()
                    ),
                )
            })?
        };

        let rewrite = Options {
            mode,
            show_code: self.show_code,
            public_url,
            link_text: self.link_text.clone(),
            languages,
            max_block_bytes,
            context,
            context_bytes,
            history: Cells::default(),
            link_key,
        };
        let sandbox = SandboxConfig {
            pyodide_url,
            pyodide_dir,
            wheels_dir,
            timeout_ms: u64::try_from(sandbox_timeout.as_millis()).unwrap_or(u64::MAX),
            max_code_bytes: max_block_bytes,
            ..SandboxConfig::default()
        };

        Ok(Config {
            listen,
            workers,
            upstream,
            rewrite,
            sandbox,
            request_body_limit,
            json_rewrite_limit,
            timeouts,
            max_connections,
            max_concurrent_streams,
            api_keys,
            upstream_api_key,
            upstream_authorization,
            upstream_ca,
            upstream_http2: self.upstream_http2,
            tls,
            tools,
            log_format,
            log_level,
            log_content: self.log_content,
            link_key_random,
        })
    }
}

impl Config {
    /// Loads the configuration: the file (if any) < the environment < the command line.
    pub fn load(
        file: Option<&Path>,
        env: &Overrides,
        cli: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut raw = match file {
            Some(path) => RawConfig::from_file(path)?,
            None => RawConfig::default(),
        };
        raw.apply(env)?;
        raw.apply(cli)?;
        raw.validate()
    }

    /// The defaults with a given upstream, listening on an ephemeral loopback port: for tests and
    /// the demo.
    pub fn for_upstream(upstream: &str) -> Result<Config, ConfigError> {
        let mut raw = RawConfig::default();
        raw.set("listen", "127.0.0.1:0")?;
        raw.set("upstream", upstream)?;
        raw.validate()
    }
}

/// Parses a duration such as `250ms`, `10s`, `5m` or `1h`; a bare number means seconds.
pub fn parse_duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || {
        ConfigError::key(
            key,
            format!("invalid duration {text:?}: expected a whole number with ms, s, m or h"),
        )
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(ConfigError::key(key, "must be greater than zero"));
    }
    Ok(d)
}

fn parse_upstream(text: &str) -> Result<Upstream, ConfigError> {
    let t = text.trim();
    let bad = |why: &str| ConfigError::key("upstream", format!("{why}: {text:?}"));
    let uri: http::Uri = t.parse().map_err(|_| bad("not a valid URL"))?;
    let scheme = match uri.scheme_str() {
        Some("http") => "http",
        Some("https") => "https",
        _ => return Err(bad("must start with http:// or https://")),
    };
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad("has no host"))?;
    if authority.contains('@') {
        return Err(bad("must not carry credentials; use upstream_api_key"));
    }
    if uri.query().is_some() || t.contains('#') {
        return Err(bad("must not have a query or fragment"));
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    Ok(Upstream { scheme: scheme.to_owned(), authority, base_path })
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => {
            Err(ConfigError::key(key, format!("invalid boolean {value:?}: expected true or false")))
        }
    }
}

fn parse_u64(key: &str, value: &str) -> Result<u64, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::key(key, format!("invalid number {value:?}")))
}

fn positive_usize(key: &str, n: u64) -> Result<usize, ConfigError> {
    if n == 0 {
        return Err(ConfigError::key(key, "must be greater than zero"));
    }
    usize::try_from(n).map_err(|_| ConfigError::key(key, format!("{n} is too large")))
}

fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn existing_file(key: &str, path: &str) -> Result<PathBuf, ConfigError> {
    let p = PathBuf::from(path);
    if !p.is_file() {
        return Err(ConfigError::key(key, format!("no such file {path:?}")));
    }
    Ok(p)
}

fn optional_dir(key: &str, path: &str) -> Result<Option<PathBuf>, ConfigError> {
    match path.trim() {
        "" => Ok(None),
        p => {
            let dir = PathBuf::from(p);
            if !dir.is_dir() {
                return Err(ConfigError::key(key, format!("no such directory {p:?}")));
            }
            Ok(Some(dir))
        }
    }
}

/// Turns a toml/serde error into one line that names the key, e.g.
/// `mode: invalid type: integer `3`, expected a string` or `unknown key "lissen"`.
fn toml_error_message(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().trim_end_matches('.');
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let name = rest.split(',').next().unwrap_or(rest).trim_matches('`');
        let at =
            e.span().map(|s| format!(" at line {}", line_of(text, s.start))).unwrap_or_default();
        return format!("unknown key {name:?}{at} (known keys: {})", KEYS.join(", "));
    }
    match e.span().and_then(|s| key_at(text, s.start)) {
        Some(key) => format!("{key}: {msg}"),
        None => match e.span() {
            Some(s) => format!("line {}: {msg}", line_of(text, s.start)),
            None => msg.to_owned(),
        },
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

/// The dotted key whose value sits at `offset`: the `key =` on that line, prefixed by the nearest
/// `[table]` header above it.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(['[', ']']).trim().to_owned());
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's configuration table names every key, and only keys, and each default it
    /// writes as one literal (or as "empty") is the one [`config_keys!`] declares.
    #[test]
    fn readme_configuration_table_matches_the_keys_and_their_defaults() {
        let readme = include_str!("../README.md");
        let section = readme.split("\n## Configuration reference\n").nth(1).unwrap();
        let section = section.split("\n## ").next().unwrap();
        let mut documented = Vec::new();
        for row in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
            let keys: Vec<&str> = cells[0].split('`').skip(1).step_by(2).collect();
            let default = cells[1];
            for key in keys {
                let declared =
                    default_text(key).unwrap_or_else(|| panic!("README: {key} is no key"));
                if default.starts_with("empty") {
                    assert_eq!(declared, "", "README says {key} is empty by default");
                } else if default.len() > 2
                    && default.starts_with('`')
                    && default.ends_with('`')
                    && default.matches('`').count() == 2
                {
                    assert_eq!(declared, default.trim_matches('`'), "README's default of {key}");
                }
                documented.push(key);
            }
        }
        documented.sort_unstable();
        let mut keys = KEYS.to_vec();
        keys.sort_unstable();
        assert_eq!(documented, keys, "README's configuration table against KEYS");
    }

    fn err_of(toml: &str) -> String {
        match RawConfig::from_toml(toml).and_then(|r| r.validate()) {
            Ok(_) => panic!("accepted {toml:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn err_of_set(key: &str, value: &str) -> String {
        let mut raw = RawConfig::default();
        match raw.set(key, value).and_then(|()| raw.validate()) {
            Ok(_) => panic!("accepted {key} = {value:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_validate() {
        let c = RawConfig::default().validate().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8787");
        assert_eq!(c.upstream.to_string(), "https://api.openai.com/v1");
        assert_eq!(c.rewrite.public_url, "http://127.0.0.1:8787");
        assert_eq!(c.rewrite.mode, Mode::Link);
        assert_eq!((c.rewrite.context, c.rewrite.context_bytes), (Context::Answer, 65536));
        assert!(c.rewrite.show_code);
        assert_eq!(c.timeouts.connect, Duration::from_secs(10));
        assert_eq!(c.request_body_limit, 32 << 20);
        assert!(c.api_keys.is_empty() && c.upstream_api_key.is_none() && c.tls.is_none());
        assert!(c.link_key_random && !c.rewrite.link_key.is_public());
        assert_eq!(
            c.rewrite,
            Options { link_key: c.rewrite.link_key.clone(), ..Options::default() }
        );
        assert_eq!(c.sandbox.timeout_ms, 30_000);
    }

    #[test]
    fn a_configured_link_key_is_the_same_everywhere() {
        let mut raw = RawConfig::default();
        raw.set("link_key", "a shared key for the replicas").unwrap();
        let (a, b) = (raw.validate().unwrap(), raw.validate().unwrap());
        assert!(!a.link_key_random);
        assert_eq!(a.rewrite.link_key, b.rewrite.link_key);
        assert_eq!(a.rewrite.link_key, LinkKey::new(b"a shared key for the replicas").unwrap());
        let unset = RawConfig::default();
        assert_ne!(
            unset.validate().unwrap().rewrite.link_key,
            unset.validate().unwrap().rewrite.link_key
        );
        assert!(!format!("{a:?}").contains("shared key"), "the key is never printed");
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(RawConfig::from_toml("").unwrap(), RawConfig::default());
    }

    #[test]
    fn the_shipped_file_parses_and_is_the_defaults() {
        let text = include_str!("../config/sandgate.toml");
        let raw = RawConfig::from_toml(text).unwrap();
        assert_eq!(raw, RawConfig::default());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = err_of("lissen = \"127.0.0.1:1\"\n");
        assert!(e.starts_with("config: unknown key \"lissen\""), "{e}");
        let e = err_of("[timeouts]\nconect = \"1s\"\n");
        assert!(e.contains("unknown key \"conect\""), "{e}");
        let e = err_of("[tls]\ncertificate = \"x\"\n");
        assert!(e.contains("unknown key \"certificate\""), "{e}");
        let e = err_of_set("nope", "1");
        assert!(e.starts_with("config: nope: unknown key"), "{e}");
    }

    #[test]
    fn wrong_types_are_rejected() {
        let e = err_of("show_code = \"yes\"\n");
        assert!(e.starts_with("config: show_code: invalid type"), "{e}");
        let e = err_of("[timeouts]\nidle = 5\n");
        assert!(e.starts_with("config: timeouts.idle: invalid type"), "{e}");
        let e = err_of("listen = \n");
        assert!(e.starts_with("config: "), "{e}");
    }

    #[test]
    fn each_rejected_value_names_its_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("listen", "x", "config: listen: invalid socket address \"x\""),
            ("upstream", "ftp://h/v1", "config: upstream: must start with http:// or https://"),
            ("upstream", "http:///v1", "config: upstream:"),
            ("upstream", "https://u:p@h/v1", "config: upstream: must not carry credentials"),
            ("upstream", "https://h/v1?x=1", "config: upstream: must not have a query"),
            ("public_url", "example.com", "config: public_url:"),
            ("public_url", "https://h/a#b", "config: public_url:"),
            ("mode", "links", "config: mode: unknown mode `links`"),
            ("show_code", "maybe", "config: show_code: invalid boolean \"maybe\""),
            ("link_text", " ", "config: link_text: must not be empty"),
            ("languages", "", "config: languages: must name at least one language"),
            ("max_block_bytes", "0", "config: max_block_bytes: must be greater than zero"),
            ("max_block_bytes", "lots", "config: max_block_bytes: invalid number \"lots\""),
            ("context", "notebook", "config: context: unknown context `notebook`"),
            ("context", "conversation", "ok"),
            ("context_bytes", "0", "ok"),
            ("context_bytes", "64k", "config: context_bytes: invalid number \"64k\""),
            ("request_body_limit", "0", "config: request_body_limit: must be greater than zero"),
            ("json_rewrite_limit", "0", "config: json_rewrite_limit: must be greater than zero"),
            ("workers", "3", "ok"),
            ("workers", "1025", "config: workers: 1025 is more than 1024"),
            ("workers", "-1", "config: workers: invalid number \"-1\""),
            ("timeouts.connect", "10", "ok"),
            ("timeouts.connect", "ten", "config: timeouts.connect: invalid duration \"ten\""),
            ("timeouts.first_byte", "0s", "config: timeouts.first_byte: must be greater than zero"),
            ("timeouts.idle", "5 days", "config: timeouts.idle: invalid duration"),
            ("timeouts.header_read", "-1s", "config: timeouts.header_read: invalid duration"),
            ("timeouts.shutdown_grace", "", "config: timeouts.shutdown_grace: invalid duration"),
            ("upstream_api_key", "sk-x", "config: upstream_api_key: is set but api_keys is empty"),
            ("tls.cert", "/nonexistent.pem", "config: tls.key: missing while tls.cert is set"),
            ("tls.key", "/nonexistent.pem", "config: tls.cert: missing while tls.key is set"),
            ("pyodide_dir", "/nonexistent-dir", "config: pyodide_dir: no such directory"),
            ("wheels_dir", "/nonexistent-dir", "config: wheels_dir: no such directory"),
            ("pyodide_url", "ftp://x/", "config: pyodide_url:"),
            ("sandbox_timeout", "soon", "config: sandbox_timeout: invalid duration"),
            ("log_format", "xml", "config: log_format: unknown format \"xml\""),
            ("log_content", "perhaps", "config: log_content: invalid boolean"),
            ("upstream_http2", "sometimes", "config: upstream_http2: invalid boolean"),
            ("upstream_http2", "true", "ok"),
            ("tools", "python", "ok"),
            ("tools", "", "ok"),
            (
                "tools",
                "python, shell",
                "config: tools: unknown tool \"shell\": the only tool is python",
            ),
            (
                "link_key",
                "0123456789abcde",
                "config: link_key: is 15 bytes long; it must be at least 16",
            ),
            ("link_key", "0123456789abcdef", "ok"),
        ];
        for (key, value, want) in cases {
            if *want == "ok" {
                let mut raw = RawConfig::default();
                raw.set(key, value).unwrap();
                raw.validate().unwrap();
                continue;
            }
            let e = err_of_set(key, value);
            assert!(e.starts_with(want), "{key} = {value:?}: got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn tools_are_named_once_each() {
        assert!(RawConfig::default().validate().unwrap().tools.is_empty());
        let c =
            RawConfig::from_toml("tools = [\"python\", \"Python\"]\n").unwrap().validate().unwrap();
        assert_eq!(c.tools, vec![Tool::Python]);
        let e = err_of("tools = [\"code_interpreter\"]\n");
        assert_eq!(e, "config: tools: unknown tool \"code_interpreter\": the only tool is python");
        let e = err_of("tools = \"python\"\n");
        assert!(e.starts_with("config: tools: invalid type"), "{e}");
    }

    #[test]
    fn api_keys_are_checked() {
        let e = err_of("api_keys = [\"good\", \"\"]\n");
        assert_eq!(e, "config: api_keys: contains an empty key");
        let e = err_of("api_keys = [\"has space\"]\n");
        assert!(e.starts_with("config: api_keys: a key may hold only"), "{e}");
        let c = RawConfig::from_toml("api_keys = [\"k1\"]\nupstream_api_key = \"sk-up\"\n")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(c.api_keys, vec!["k1"]);
        assert_eq!(c.upstream_api_key.as_deref(), Some("sk-up"));
    }

    #[test]
    fn tls_files_must_exist() {
        let e = err_of("[tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n");
        assert_eq!(e, "config: tls.cert: no such file \"/nonexistent/c.pem\"");
    }

    #[test]
    fn layering_file_then_env_then_cli() {
        let dir = std::env::temp_dir().join(format!("sandgate-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("layer.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1000\"\nmode = \"widget\"\nshow_code = false\n\
             [timeouts]\nidle = \"7s\"\n",
        )
        .unwrap();
        let env = Overrides::from_env(|name| match name {
            "SANDGATE_LISTEN" => Some("127.0.0.1:2000".to_owned()),
            "SANDGATE_MODE" => Some("artifact".to_owned()),
            "SANDGATE_TIMEOUTS_CONNECT" => Some("250ms".to_owned()),
            "SANDGATE_LANGUAGES" => Some("python, Py".to_owned()),
            _ => None,
        });
        let mut cli = Overrides::default();
        cli.push("listen", "127.0.0.1:3000");
        let c = Config::load(Some(&file), &env, &cli).unwrap();
        assert_eq!(c.listen.port(), 3000, "the command line wins");
        assert_eq!(c.rewrite.mode, Mode::Artifact, "the environment beats the file");
        assert!(!c.rewrite.show_code, "the file beats the defaults");
        assert_eq!(c.timeouts.idle, Duration::from_secs(7));
        assert_eq!(c.timeouts.connect, Duration::from_millis(250));
        assert_eq!(c.rewrite.languages, vec!["python", "py"]);
        assert_eq!(c.rewrite.public_url, "http://127.0.0.1:3000");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_file_names_the_file_and_the_key() {
        let dir = std::env::temp_dir().join(format!("sandgate-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        std::fs::write(&file, "mode = 3\n").unwrap();
        let e = Config::load(Some(&file), &Overrides::default(), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("config: ") && e.contains("bad.toml"), "{e}");
        assert!(e.contains("mode"), "{e}");
        let e = Config::load(
            Some(&dir.join("missing.toml")),
            &Overrides::default(),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("cannot read") && e.contains("missing.toml"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn upstream_paths_join() {
        let u = parse_upstream("http://127.0.0.1:9/v1/").unwrap();
        assert_eq!(u.uri_for("models", None), "http://127.0.0.1:9/v1/models");
        assert_eq!(
            u.uri_for("files/f-1/content", Some("a=1&b=2")),
            "http://127.0.0.1:9/v1/files/f-1/content?a=1&b=2"
        );
        let u = parse_upstream("https://h.example").unwrap();
        assert_eq!(u.uri_for("chat/completions", None), "https://h.example/chat/completions");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("k", "250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("k", "2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("k", "1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("k", "3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("k", "1.5s").is_err());
    }

    #[test]
    fn pyodide_dir_switches_the_url_to_the_local_copy() {
        let dir = std::env::temp_dir();
        let mut raw = RawConfig::default();
        raw.set("pyodide_dir", dir.to_str().unwrap()).unwrap();
        let c = raw.validate().unwrap();
        assert_eq!(c.sandbox.pyodide_url, "/pyodide/");
        assert_eq!(c.sandbox.pyodide_dir.as_deref(), Some(dir.as_path()));
    }
}
