//! What a Python block turns into, and the way back.
//!
//! A replacement is a small run of whole lines (a *unit*) that carries everything needed to undo it:
//! - `link`: `[TEXT](URL)`;
//! - `widget`: `<iframe sandbox="allow-scripts allow-downloads" src="URL" …></iframe>` and a blank
//!   line (an HTML block
//!   ends at a blank line, so the text after it stays markdown);
//! - `artifact`: a ```` ```html ```` fenced block whose one line is a small HTML document embedding
//!   the sandbox page.
//!
//! The URL is `{public_url}/sandbox#py=PAYLOAD[&md=PAYLOAD][&sg=FLAGS][&cx=PAYLOAD]&mac=MAC` (see
//! [`super::payload`] and [`super::sign`]):
//! `py` is the code; `md`, present when the code is hidden, is the original markdown of the block from
//! its opening fence to its end; `sg` lists what the engine added around the unit so that [`restore`]
//! can take it away again: `n` a line ending, `c` a closing fence (an unclosed block must be closed for
//! the unit to render outside it), `b` a blank line after a link (so the next line does not continue
//! the link's paragraph lazily). `cx`, the earlier blocks (see [`super::cells`]), is for the page
//! only: `restore` ignores it. `mac`, always last, signs everything before it with the link key.
//!
//! [`restore`] trusts only its own links: it expands a unit only when its URL starts with this
//! sandgate's `{public_url}/sandbox#`, its MAC is valid for the key, and (when it carries `md`) the
//! markdown, read in the place of the unit, is exactly one Python fenced block whose code is `py`; and
//! only up to a budget of restored bytes. Anything else passes through as the text it is.
//!
//! Everything that comes from the code travels inside payloads, whose alphabet is `[A-Za-z0-9_-]`, so
//! hostile code cannot break out of the link, the attribute or the html block. The configured public
//! URL and link text are escaped for where they land.

use std::borrow::Cow;

use super::markdown::{info_string, BlockParser, LineKind};
use super::sign::{self, LinkKey};
use super::{payload, Mode, Options};

/// How a Python block ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// By its closing fence; `had_eol` tells whether the fence line had a line ending.
    Fence { had_eol: bool },
    /// Because one of its containers (list item, block quote) did not continue.
    Container,
    /// At the end of the text; `had_eol` tells whether the text ended with a line ending.
    Eof { had_eol: bool },
}

/// A finished Python block, as the renderer needs it.
#[derive(Debug)]
pub(crate) struct Block<'a> {
    pub code: &'a str,
    /// The prefix that keeps a new line inside the block's containers.
    pub prefix: &'a str,
    /// The line ending the block uses.
    pub eol: &'a str,
    pub fence_ch: u8,
    pub fence_len: usize,
    pub end: End,
    /// When the code is hidden: the original markdown from the opening fence to the end of the block.
    pub raw: Option<&'a str>,
    /// The `cx` payload: the earlier blocks, when there were any.
    pub cx: Option<&'a str>,
}

const SANDBOX_PATH: &str = "/sandbox#py=";
const IFRAME_START: &str = "<iframe sandbox=\"allow-scripts allow-downloads\" src=\"";
/// The iframe of the widgets and artifacts sandgate made before `allow-downloads`: still restored.
const IFRAME_START_V1: &str = "<iframe sandbox=\"allow-scripts\" src=\"";
const IFRAME_END: &str = "</iframe>";
const ARTIFACT_OPEN: &str = "```html";
const ARTIFACT_DOC_START: &str = "<!doctype html>";

/// What a block turns into: the [`Mode`]s that make a replacement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Link,
    Widget,
    Artifact,
}

/// Renders units for one set of options; built once per stream.
#[derive(Debug)]
pub(crate) struct Renderer {
    shape: Shape,
    /// `{public_url}/sandbox#py=`, escaped for a markdown link destination.
    base: String,
    /// The link text, escaped for markdown.
    link_text: String,
    key: LinkKey,
}

impl Renderer {
    /// The renderer for `opts`; `None` for the mode `off`, which makes no replacement (the one place
    /// the engine looks at it).
    pub(crate) fn new(opts: &Options) -> Option<Self> {
        let shape = match opts.mode {
            Mode::Off => return None,
            Mode::Link => Shape::Link,
            Mode::Widget => Shape::Widget,
            Mode::Artifact => Shape::Artifact,
        };
        let base = link_base(&opts.public_url);
        let mut link_text = String::with_capacity(opts.link_text.len());
        for ch in opts.link_text.chars() {
            if ch.is_ascii_punctuation() {
                link_text.push('\\');
            }
            if ch == '\n' || ch == '\r' {
                link_text.push(' ');
            } else {
                link_text.push(ch);
            }
        }
        Some(Renderer { shape, base, link_text, key: opts.link_key.clone() })
    }

    /// Appends what the block turns into. With the code shown this goes right after the block; with
    /// the code hidden it takes the place of `block.raw`.
    pub(crate) fn render(&self, block: &Block<'_>, out: &mut String) {
        let mut flags = String::new();
        let first_prefix = if block.raw.is_some() { "" } else { block.prefix };
        let closed = matches!(block.end, End::Fence { .. });
        if block.raw.is_none()
            && matches!(block.end, End::Fence { had_eol: false } | End::Eof { had_eol: false })
        {
            out.push_str(block.eol);
            flags.push('n');
        }
        if block.raw.is_none() && !closed {
            out.push_str(block.prefix);
            let fence = if block.fence_ch == b'~' { '~' } else { '`' };
            out.extend(std::iter::repeat_n(fence, block.fence_len.max(3)));
            out.push_str(block.eol);
            flags.push('c');
        }
        let blank_after = self.shape == Shape::Link && block.end == End::Container;
        if blank_after {
            flags.push('b');
        }
        let cx_len = block.cx.map_or(0, |cx| cx.len() + 4);
        let mut url = String::with_capacity(self.base.len() + block.code.len() / 2 + cx_len + 16);
        url.push_str(&self.base);
        url.push_str(&payload::encode(block.code));
        if let Some(raw) = block.raw {
            url.push_str("&md=");
            url.push_str(&payload::encode(raw));
        }
        if !flags.is_empty() {
            url.push_str("&sg=");
            url.push_str(&flags);
        }
        if let Some(cx) = block.cx {
            url.push_str("&cx=");
            url.push_str(cx);
        }
        // The signed text starts after `#`, which `base` ends with `py=` after.
        let mac = self.key.mac(&url[self.base.len() - "py=".len()..]);
        url.push_str(sign::MAC_PARAM);
        url.push_str(&mac);
        let eol = block.eol;
        match self.shape {
            Shape::Link => {
                out.push_str(first_prefix);
                out.push('[');
                out.push_str(&self.link_text);
                out.push_str("](");
                out.push_str(&url);
                out.push(')');
                out.push_str(eol);
            }
            Shape::Widget => {
                out.push_str(first_prefix);
                out.push_str(IFRAME_START);
                push_attr(&url, out);
                out.push_str(
                    "\" title=\"Python sandbox\" loading=\"lazy\" referrerpolicy=\"no-referrer\" \
                     style=\"width:100%;height:420px;border:1px solid #8888;border-radius:6px\" \
                     data-sandgate=\"1\">",
                );
                out.push_str(IFRAME_END);
                out.push_str(eol);
                out.push_str(block.prefix.trim_end());
                out.push_str(eol);
            }
            Shape::Artifact => {
                out.push_str(first_prefix);
                out.push_str(ARTIFACT_OPEN);
                out.push_str(eol);
                out.push_str(block.prefix);
                out.push_str(ARTIFACT_DOC_START);
                out.push_str(
                    "<html><head><meta charset=\"utf-8\"><title>Python sandbox</title>\
                     <style>html,body{margin:0;height:100%}iframe{border:0;width:100%;height:100vh}</style>\
                     </head><body>",
                );
                out.push_str(IFRAME_START);
                push_attr(&url, out);
                out.push_str("\" title=\"Python sandbox\" referrerpolicy=\"no-referrer\">");
                out.push_str(IFRAME_END);
                out.push_str("</body></html>");
                out.push_str(eol);
                out.push_str(block.prefix);
                out.push_str("```");
                out.push_str(eol);
            }
        }
        if blank_after {
            out.push_str(eol);
        }
    }
}

/// `{public_url}/sandbox#py=`, the public URL escaped for a markdown link destination.
fn link_base(public_url: &str) -> String {
    let mut base = String::with_capacity(public_url.len() + SANDBOX_PATH.len());
    for ch in public_url.trim_end_matches('/').chars() {
        match ch {
            ' ' | '(' | ')' | '<' | '>' | '"' | '\'' | '\\' | '`' | '[' | ']' => {
                base.push_str(&format!("%{:02X}", ch as u32));
            }
            c if c.is_control() => base.push_str(&format!("%{:02X}", c as u32)),
            c => base.push(c),
        }
    }
    base.push_str(SANDBOX_PATH);
    base
}

fn push_attr(value: &str, out: &mut String) {
    for ch in value.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

fn unescape_attr(value: &str) -> String {
    value
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Turns every replacement this sandgate made (signed with `opts.link_key` for `opts.public_url`)
/// back into the original markdown: byte-exact when the text comes back as sandgate sent it. Anything
/// else, including text that merely looks like a replacement, is left as it is.
pub fn restore(opts: &Options, input: &str) -> String {
    let mut budget = usize::MAX;
    restore_counted(opts, input, &mut budget).0.into_owned()
}

/// [`restore`], also telling how many replacements were undone; borrows when there were none.
/// `budget` is how many bytes of hidden markdown (`md=`) may still be inflated: a replacement that
/// would need more is left as it is, and every `md` of a signed link inflated is taken from it.
pub fn restore_counted<'a>(
    opts: &Options,
    input: &'a str,
    budget: &mut usize,
) -> (Cow<'a, str>, usize) {
    if memchr::memmem::find(input.as_bytes(), SANDBOX_PATH.as_bytes()).is_none() {
        return (Cow::Borrowed(input), 0);
    }
    let base = link_base(&opts.public_url);
    let lines = split_lines(input);
    let mut out = String::with_capacity(input.len());
    // Where each line already copied to `out` starts in `out`, to take back an added closing fence.
    let mut starts: Vec<usize> = Vec::with_capacity(lines.len());
    // The block structure of `out`, read as far as a hidden block needed it.
    let mut doc = Doc::default();
    let mut count = 0;
    let mut i = 0;
    while i < lines.len() {
        let (line, eol) = lines[i];
        let unit = parse_unit(&lines, i);
        let fragment = unit.as_ref().and_then(|unit| Fragment::trusted(opts, &base, &unit.url));
        let (Some(unit), Some(fragment)) = (unit.as_ref(), fragment) else {
            starts.push(out.len());
            out.push_str(line);
            out.push_str(eol);
            i += 1;
            continue;
        };
        let mut next = i + unit.lines;
        if fragment.flags.contains('b') && next < lines.len() && lines[next].0.is_empty() {
            next += 1;
        }
        if let Some(md) = fragment.md {
            let prefix = &line[..unit.start];
            match doc.expand(opts, &out, prefix, md, fragment.py, budget) {
                Some(md) => {
                    out.push_str(prefix);
                    out.push_str(&md);
                }
                None => {
                    starts.push(out.len());
                    out.push_str(line);
                    out.push_str(eol);
                    i += 1;
                    continue;
                }
            }
        } else {
            let mut fence_ok = true;
            if fragment.flags.contains('c') {
                fence_ok = false;
                if let Some(&start) = starts.last() {
                    if is_fence_line(&out[start..]) {
                        out.truncate(start);
                        starts.pop();
                        fence_ok = true;
                    }
                }
            }
            if fence_ok && fragment.flags.contains('n') {
                trim_one_eol(&mut out);
            }
        }
        count += 1;
        for _ in i..next {
            starts.push(out.len());
        }
        i = next;
    }
    if count == 0 {
        return (Cow::Borrowed(input), 0);
    }
    (Cow::Owned(out), count)
}

/// The block structure of the restored text so far, to read a hidden block where it goes.
#[derive(Default)]
struct Doc {
    parser: BlockParser,
    /// How much of the restored text the parser has read.
    read: usize,
}

impl Doc {
    /// The hidden markdown of a trusted unit, if it fits the budget and is, read after `out` with the
    /// unit's first-line `prefix`, exactly one Python fenced block whose code is `py`.
    fn expand(
        &mut self,
        opts: &Options,
        out: &str,
        prefix: &str,
        md: &str,
        py: &str,
        budget: &mut usize,
    ) -> Option<String> {
        let md = payload::decode_limited(md, *budget)?;
        // What was inflated is spent, whether or not it turns out to be restored.
        *budget -= md.len();
        let py = payload::decode_limited(py, md.len().saturating_mul(4))?;
        // A unit that took back an added fence may have shortened `out`: read on from there.
        self.read = self.read.min(out.len());
        for (line, _) in split_lines(&out[self.read..]) {
            self.parser.line(line);
        }
        self.read = out.len();
        is_one_block(opts, self.parser.clone(), prefix, &md, &py).then_some(md)
    }
}

/// Whether `md`, read with `parser` after `prefix`, is one Python fenced block whose code is `py`
/// (the code taken as the rewriter takes it).
fn is_one_block(opts: &Options, mut parser: BlockParser, prefix: &str, md: &str, py: &str) -> bool {
    let lines = split_lines(md);
    let Some(((first, _), rest)) = lines.split_first() else {
        return false;
    };
    let open = format!("{prefix}{first}");
    match parser.line(&open).kind {
        LineKind::FenceOpen { start, info, .. }
            if start == prefix.len() && opts.is_python_info(info_string(&open, info)) => {}
        _ => return false,
    }
    let mut code = String::with_capacity(py.len());
    for (k, (line, eol)) in rest.iter().enumerate() {
        let parsed = parser.line(line);
        if parsed.fence_closed_before {
            return false;
        }
        match parsed.kind {
            LineKind::FenceContent { start, spaces, indent } => {
                let content = line.get(start..).unwrap_or("");
                if !eol.is_empty() {
                    code.extend(std::iter::repeat_n(' ', spaces));
                    code.push_str(content);
                    code.push('\n');
                } else if indent >= 4 || !content.trim_matches([' ', '\t']).is_empty() {
                    code.extend(std::iter::repeat_n(' ', spaces));
                    code.push_str(content);
                }
            }
            LineKind::FenceClose if k + 1 == rest.len() => {}
            _ => return false,
        }
        if code.len() > py.len() {
            return false;
        }
    }
    code == py
}

/// Splits text into lines and their endings (`\n`, `\r\n` or `\r`).
fn split_lines(input: &str) -> Vec<(&str, &str)> {
    let mut lines = Vec::new();
    let bytes = input.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        match memchr::memchr2(b'\n', b'\r', &bytes[start..]) {
            Some(rel) => {
                let at = start + rel;
                let eol_len =
                    if bytes[at] == b'\r' && bytes.get(at + 1) == Some(&b'\n') { 2 } else { 1 };
                lines.push((&input[start..at], &input[at..at + eol_len]));
                start = at + eol_len;
            }
            None => {
                lines.push((&input[start..], ""));
                start = bytes.len();
            }
        }
    }
    lines
}

struct Unit {
    /// Where the unit starts in its first line.
    start: usize,
    /// How many lines it spans.
    lines: usize,
    url: String,
}

/// Recognises a unit starting in line `i`.
fn parse_unit(lines: &[(&str, &str)], i: usize) -> Option<Unit> {
    let (line, _) = lines[i];
    if !line.contains(SANDBOX_PATH)
        && line.trim_end() != ARTIFACT_OPEN
        && !line.ends_with(ARTIFACT_OPEN)
    {
        return None;
    }
    let start = line.bytes().position(|b| {
        !matches!(b, b' ' | b'\t' | b'>' | b'-' | b'+' | b'*' | b'.' | b')' | b'0'..=b'9')
    })?;
    let body = &line[start..];
    if body.starts_with('[') && body.ends_with(')') {
        let close = body.rfind("](")?;
        let url = &body[close + 2..body.len() - 1];
        if url.contains(SANDBOX_PATH) && !url.contains(char::is_whitespace) {
            return Some(Unit { start, lines: 1, url: url.to_owned() });
        }
        return None;
    }
    if let Some(rest) =
        body.strip_prefix(IFRAME_START).or_else(|| body.strip_prefix(IFRAME_START_V1))
    {
        if !body.ends_with(IFRAME_END) {
            return None;
        }
        let url = unescape_attr(&rest[..rest.find('"')?]);
        if !url.contains(SANDBOX_PATH) {
            return None;
        }
        let blank = lines
            .get(i + 1)
            .is_some_and(|(l, _)| l.bytes().all(|b| matches!(b, b' ' | b'\t' | b'>')));
        return Some(Unit { start, lines: if blank { 2 } else { 1 }, url });
    }
    if body == ARTIFACT_OPEN {
        let (doc, _) = lines.get(i + 1)?;
        let (close, _) = lines.get(i + 2)?;
        let doc = doc.trim_start_matches([' ', '\t', '>']);
        if !doc.starts_with(ARTIFACT_DOC_START)
            || close.trim_start_matches([' ', '\t', '>']) != "```"
        {
            return None;
        }
        let at = match doc.find(IFRAME_START) {
            Some(at) => at + IFRAME_START.len(),
            None => doc.find(IFRAME_START_V1)? + IFRAME_START_V1.len(),
        };
        let url = unescape_attr(&doc[at..at + doc[at..].find('"')?]);
        if !url.contains(SANDBOX_PATH) {
            return None;
        }
        return Some(Unit { start, lines: 3, url });
    }
    None
}

/// The fragment parameters of a sandbox URL this sandgate signed.
struct Fragment<'a> {
    py: &'a str,
    md: Option<&'a str>,
    flags: &'a str,
}

impl<'a> Fragment<'a> {
    /// The parameters of `url` if it is `{base}…` (`base` ends with `#py=`) with a valid MAC.
    fn trusted(opts: &Options, base: &str, url: &'a str) -> Option<Self> {
        url.strip_prefix(base)?;
        let (_, params) = url.split_once('#')?;
        let (signed, mac) = sign::split(params)?;
        if !opts.link_key.is_valid(signed, mac) {
            return None;
        }
        let mut py = None;
        let mut fragment = Fragment { py: "", md: None, flags: "" };
        for param in signed.split('&') {
            match param.split_once('=') {
                Some(("py", v)) => py = Some(v),
                Some(("md", v)) => fragment.md = Some(v),
                Some(("sg", v)) => fragment.flags = v,
                _ => {}
            }
        }
        fragment.py = py?;
        Some(fragment)
    }
}

/// Whether a line (with its ending) is a bare closing fence after container prefixes.
fn is_fence_line(line: &str) -> bool {
    let t = line.trim_end_matches(['\n', '\r']).trim_start_matches([' ', '\t', '>']).trim_end();
    t.len() >= 3 && (t.bytes().all(|b| b == b'`') || t.bytes().all(|b| b == b'~'))
}

fn trim_one_eol(out: &mut String) {
    if out.ends_with("\r\n") {
        out.truncate(out.len() - 2);
    } else if out.ends_with('\n') || out.ends_with('\r') {
        out.truncate(out.len() - 1);
    }
}
