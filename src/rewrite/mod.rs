//! The rewrite engine: pure code, no I/O, no async, never fails on input.
//!
//! - [`markdown`]: a line-at-a-time CommonMark block-structure tracker that finds fenced code blocks;
//! - [`stream`]: the push-style [`Rewriter`] (`push` / `finish`) built on it;
//! - [`payload`]: the link payload (raw DEFLATE + base64url) and its decoding;
//! - [`cells`]: the earlier blocks a replacement carries (`cx=`), and the [`Context`] that picks them;
//! - [`replace`]: what a Python block turns into in each [`Mode`], and [`restore`], the way back;
//! - [`sign`]: the MAC that signs each link, and the check the sandbox page asks for;
//! - [`sse`]: a WHATWG event-stream codec;
//! - [`api`]: the OpenAI API shapes (Chat Completions, Completions, Responses), JSON and SSE.

pub mod api;
pub mod cells;
pub mod deflate;
mod markdown;
pub mod payload;
mod replace;
pub mod sign;
pub mod sse;
mod stream;

use std::fmt;
use std::str::FromStr;

pub use cells::{Cells, Context, ANSWER_CONTEXT_FACTOR};
pub use replace::{restore, restore_counted};
pub use sign::LinkKey;
pub use stream::{collect_cells, Rewriter};

/// What a Python block is turned into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Nothing is rewritten: the proxy passes the rewritten routes through like any other `/v1`
    /// route, and `sandgate rewrite` prints its input; neither calls the engine. (Given to the engine
    /// anyway, it leaves every text as it is.)
    Off,
    /// A Markdown link line `[▶ Run in sandbox](URL)`.
    #[default]
    Link,
    /// An HTML `<iframe sandbox="allow-scripts allow-downloads">` for clients that render HTML.
    Widget,
    /// A ```` ```html ```` fenced block holding a small document that embeds the sandbox page.
    Artifact,
}

impl Mode {
    pub const NAMES: &'static str = "off, link, widget, artifact";

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Link => "link",
            Mode::Widget => "widget",
            Mode::Artifact => "artifact",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(Mode::Off),
            "link" => Ok(Mode::Link),
            "widget" => Ok(Mode::Widget),
            "artifact" => Ok(Mode::Artifact),
            other => Err(format!("unknown mode `{other}`: expected one of {}", Mode::NAMES)),
        }
    }
}

/// Everything the engine needs to know; built once from the validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub mode: Mode,
    /// Keep the Python block and put the replacement after it (true), or put the replacement in its
    /// place (false).
    pub show_code: bool,
    /// Where `/sandbox` is served, without a trailing slash, e.g. `http://127.0.0.1:8787`.
    pub public_url: String,
    /// The text of the link in `link` mode.
    pub link_text: String,
    /// Info-string first words (lowercase) that mark a Python block.
    pub languages: Vec<String>,
    /// A block longer than this is released unchanged instead of being held.
    pub max_block_bytes: usize,
    /// Which earlier blocks each replacement carries in `cx=`.
    pub context: Context,
    /// The most code (bytes, before compression) a replacement carries as earlier blocks.
    pub context_bytes: usize,
    /// With [`Context::Conversation`]: the earlier answers' blocks, from the request's history
    /// (see [`api::restore_request_with_cells`]); they come before the answer's own. Per request.
    pub history: Cells,
    /// The key that signs every link; [`restore`] expands only links it signed.
    /// [`LinkKey::public`] by default, which makes links as good as unsigned.
    pub link_key: LinkKey,
}

pub const DEFAULT_LINK_TEXT: &str = "▶ Run in sandbox";
pub const DEFAULT_LANGUAGES: [&str; 4] = ["python", "py", "python3", "py3"];
pub const DEFAULT_MAX_BLOCK_BYTES: usize = 1 << 20;
pub const DEFAULT_CONTEXT_BYTES: usize = 64 << 10;

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::Link,
            show_code: true,
            public_url: "http://127.0.0.1:8787".to_owned(),
            link_text: DEFAULT_LINK_TEXT.to_owned(),
            languages: DEFAULT_LANGUAGES.iter().map(|s| (*s).to_owned()).collect(),
            max_block_bytes: DEFAULT_MAX_BLOCK_BYTES,
            context: Context::Answer,
            context_bytes: DEFAULT_CONTEXT_BYTES,
            history: Cells::default(),
            link_key: LinkKey::public(),
        }
    }
}

impl Options {
    /// Whether an info string marks a block this engine rewrites: its first word, compared without
    /// regard to ASCII case, is one of the configured languages.
    pub fn is_python_info(&self, info: &str) -> bool {
        let word = info.split([' ', '\t']).find(|w| !w.is_empty()).unwrap_or("");
        !word.is_empty() && self.languages.iter().any(|l| l.eq_ignore_ascii_case(word))
    }
}

/// Rewrites a whole markdown text at once; the same as one `push` and `finish`.
pub fn rewrite(opts: &Options, input: &str) -> String {
    let mut rewriter = Rewriter::new(std::sync::Arc::new(opts.clone()));
    let mut out = String::with_capacity(input.len() + 256);
    rewriter.push(input, &mut out);
    rewriter.finish(&mut out);
    out
}
