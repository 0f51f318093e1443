//! `sandgate demo`: sandgate in front of a built-in scripted model, so that a person sees it work
//! within a minute, with no API key and no network (the page they open is the [`crate::playground`]).
//!
//! - [`upstream`]: the scripted OpenAI-compatible upstream (a hyper server on a loopback port) that
//!   streams canned answers chosen by the prompt, from [`answers`], in the OpenAI wire [`shapes`]
//!   (which the tests' scripted upstream builds its answers with too);
//! - [`answers`]: the canned answers, chosen by the prompt, and the playground's suggestions;
//! - [`Demo`]: the configuration `sandgate demo` runs with (the scripted upstream, a listen port fixed
//!   before the public URL is derived) and the text it prints on start ([`banner`]).
//!
//! Invariant: nothing here reaches beyond loopback; the scripted upstream has no state but an id
//! counter.

pub mod answers;
pub mod shapes;
pub mod upstream;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use crate::config::{Config, Overrides};

pub use answers::{
    answer_for, answer_to_tool_result, canned_for, python_call_for, Canned, ANSWERS, DEFAULT,
    FIBONACCI_CODE,
};
pub use upstream::{start_upstream, start_upstream_with, Pace, ShutdownHandle, DEMO_MODEL};

/// What `sandgate demo` prints on start: the URL to open and the one-line way to point an openai
/// SDK at it. `public_url` is the configured public URL, without a trailing slash.
pub fn banner(public_url: &str, link_text: &str) -> String {
    format!(
        "sandgate demo: a scripted model answers here (no API key, no network).\n\
         \n\
         \x20 Open the playground:   {public_url}/\n\
         \x20 Point an openai SDK:   OPENAI_BASE_URL={public_url}/v1 OPENAI_API_KEY=demo python your_app.py\n\
         \x20                        (or OpenAI(base_url=\"{public_url}/v1\", api_key=\"demo\"))\n\
         \n\
         Every Python block in an answer gets a \"{link_text}\" link that runs it in your browser.\n\
         Ctrl-C stops the demo.\n"
    )
}

/// sandgate's configuration for the demo, and the scripted upstream it points at.
#[derive(Debug)]
pub struct Demo {
    config: Config,
    upstream: ShutdownHandle,
    upstream_addr: SocketAddr,
}

impl Demo {
    /// Starts the scripted upstream and resolves the configuration as `serve` would (file <
    /// environment < command line), except that the upstream is always the scripted one. A listen
    /// port of 0 is fixed first, so that the public URL (and the run links) name the real port, and
    /// an unspecified listen address (`0.0.0.0`) gives a public URL on loopback.
    pub async fn start(
        file: Option<&Path>,
        env: &Overrides,
        cli: &Overrides,
    ) -> Result<Demo, String> {
        if cli.0.iter().any(|(k, _)| k == "upstream") {
            return Err(
                "demo: --upstream does not apply: the demo answers with its own scripted model; \
                 use `sandgate serve --upstream URL` for a real one"
                    .to_owned(),
            );
        }
        Self::start_with(file, env, cli, Pace::default()).await
    }

    /// [`Demo::start`] with a given pace of the scripted streams.
    pub async fn start_with(
        file: Option<&Path>,
        env: &Overrides,
        cli: &Overrides,
        pace: Pace,
    ) -> Result<Demo, String> {
        let (upstream_addr, upstream) = start_upstream_with(pace)
            .await
            .map_err(|e| format!("demo: cannot start the scripted upstream: {e}"))?;
        let mut cli = cli.clone();
        cli.push("upstream", format!("http://{upstream_addr}/v1"));
        let config = Config::load(file, env, &cli).map_err(|e| e.to_string())?;
        let derived_public_url = config.rewrite.public_url == format!("http://{}", config.listen)
            || config.rewrite.public_url == format!("https://{}", config.listen);
        let mut listen = config.listen;
        if listen.port() == 0 {
            let probe = std::net::TcpListener::bind(listen)
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("config: listen: cannot bind {listen}: {e}"))?;
            listen.set_port(probe.port());
        }
        let config = if listen != config.listen || derived_public_url {
            cli.push("listen", listen.to_string());
            if derived_public_url {
                let scheme = if config.tls.is_some() { "https" } else { "http" };
                cli.push("public_url", format!("{scheme}://{}", reachable(listen)));
            }
            Config::load(file, env, &cli).map_err(|e| e.to_string())?
        } else {
            config
        };
        Ok(Demo { config, upstream, upstream_addr })
    }

    /// The configuration to serve with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where the scripted upstream listens.
    pub fn upstream_addr(&self) -> SocketAddr {
        self.upstream_addr
    }

    /// The text to print on start.
    pub fn banner(&self) -> String {
        banner(&self.config.rewrite.public_url, &self.config.rewrite.link_text)
    }

    /// Stops the scripted upstream.
    pub async fn shutdown(self) {
        self.upstream.shutdown().await;
    }
}

/// An address a browser on this machine can open: loopback in place of an unspecified address.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_names_the_page_and_the_base_url() {
        let text = banner("http://127.0.0.1:8787", "▶ Run in sandbox");
        assert!(text.contains("http://127.0.0.1:8787/\n"));
        assert!(text.contains("OPENAI_BASE_URL=http://127.0.0.1:8787/v1 "));
        assert!(text.contains("\"▶ Run in sandbox\""));
    }

    #[tokio::test]
    async fn port_zero_and_unspecified_addresses_give_a_public_url_with_the_real_port() {
        let mut cli = Overrides::default();
        cli.push("listen", "0.0.0.0:0");
        let demo = Demo::start(None, &Overrides::default(), &cli).await.unwrap();
        let port = demo.config().listen.port();
        assert_ne!(port, 0);
        assert_eq!(demo.config().rewrite.public_url, format!("http://127.0.0.1:{port}"));
        assert_eq!(
            demo.config().upstream.to_string(),
            format!("http://{}/v1", demo.upstream_addr())
        );
        demo.shutdown().await;
    }

    #[tokio::test]
    async fn an_explicit_public_url_is_kept_and_upstream_flags_are_refused() {
        let mut cli = Overrides::default();
        cli.push("listen", "127.0.0.1:0");
        cli.push("public_url", "https://sandbox.example");
        let demo = Demo::start(None, &Overrides::default(), &cli).await;
        let demo = demo.unwrap();
        assert_eq!(demo.config().rewrite.public_url, "https://sandbox.example");
        demo.shutdown().await;

        let mut cli = Overrides::default();
        cli.push("upstream", "https://api.openai.com/v1");
        let err = Demo::start(None, &Overrides::default(), &cli).await.err();
        assert!(err.is_some_and(|e| e.contains("--upstream")));
    }
}
