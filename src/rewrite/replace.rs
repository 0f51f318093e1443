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
//! The URL is `{public_url}/sandbox#py=PAYLOAD[&md=PAYLOAD][&sg=FLAGS][&cx=PAYLOAD]` (see
//! [`super::payload`]):
//! `py` is the code; `md`, present when the code is hidden, is the original markdown of the block from
//! its opening fence to its end; `sg` lists what the engine added around the unit so that [`restore`]
//! can take it away again: `n` a line ending, `c` a closing fence (an unclosed block must be closed for
//! the unit to render outside it), `b` a blank line after a link (so the next line does not continue
//! the link's paragraph lazily). `cx`, the earlier blocks (see [`super::cells`]), is for the page
//! only: `restore` ignores it.
//!
//! Everything that comes from the code travels inside payloads, whose alphabet is `[A-Za-z0-9_-]`, so
//! hostile code cannot break out of the link, the attribute or the html block. The configured public
//! URL and link text are escaped for where they land.

use std::borrow::Cow;

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

/// Renders units for one set of options; built once per stream.
#[derive(Debug)]
pub(crate) struct Renderer {
    mode: Mode,
    /// `{public_url}/sandbox#py=`, escaped for a markdown link destination.
    base: String,
    /// The link text, escaped for markdown.
    link_text: String,
}

impl Renderer {
    pub(crate) fn new(opts: &Options) -> Self {
        let mut base = String::with_capacity(opts.public_url.len() + SANDBOX_PATH.len());
        for ch in opts.public_url.trim_end_matches('/').chars() {
            match ch {
                ' ' | '(' | ')' | '<' | '>' | '"' | '\'' | '\\' | '`' | '[' | ']' => {
                    base.push_str(&format!("%{:02X}", ch as u32));
                }
                c if c.is_control() => base.push_str(&format!("%{:02X}", c as u32)),
                c => base.push(c),
            }
        }
        base.push_str(SANDBOX_PATH);
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
        Renderer { mode: opts.mode, base, link_text }
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
        let blank_after = self.mode == Mode::Link && block.end == End::Container;
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
        let eol = block.eol;
        match self.mode {
            Mode::Link | Mode::Off => {
                out.push_str(first_prefix);
                out.push('[');
                out.push_str(&self.link_text);
                out.push_str("](");
                out.push_str(&url);
                out.push(')');
                out.push_str(eol);
            }
            Mode::Widget => {
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
            Mode::Artifact => {
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

/// Turns every replacement sandgate made back into the original markdown: byte-exact when the text
/// comes back as sandgate sent it. Text that merely looks like a replacement but does not decode is
/// left as it is.
pub fn restore(input: &str) -> String {
    restore_counted(input).0.into_owned()
}

/// [`restore`], also telling how many replacements were undone; borrows when there were none.
pub fn restore_counted(input: &str) -> (Cow<'_, str>, usize) {
    if memchr::memmem::find(input.as_bytes(), SANDBOX_PATH.as_bytes()).is_none() {
        return (Cow::Borrowed(input), 0);
    }
    let lines = split_lines(input);
    let mut out = String::with_capacity(input.len());
    // Where each line already copied to `out` starts in `out`, to take back an added closing fence.
    let mut starts: Vec<usize> = Vec::with_capacity(lines.len());
    let mut count = 0;
    let mut i = 0;
    while i < lines.len() {
        let (line, eol) = lines[i];
        match parse_unit(&lines, i) {
            Some(unit) => {
                let fragment = Fragment::parse(&unit.url);
                let md = fragment.md.and_then(payload::decode);
                let mut next = i + unit.lines;
                if fragment.flags.contains('b') && next < lines.len() && lines[next].0.is_empty() {
                    next += 1;
                }
                if let Some(md) = md {
                    out.push_str(&line[..unit.start]);
                    out.push_str(&md);
                } else if fragment.md.is_some() || fragment.py.is_none() {
                    // An `md` that does not decode: leave the text alone.
                    starts.push(out.len());
                    out.push_str(line);
                    out.push_str(eol);
                    i += 1;
                    continue;
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
            None => {
                starts.push(out.len());
                out.push_str(line);
                out.push_str(eol);
                i += 1;
            }
        }
    }
    if count == 0 {
        return (Cow::Borrowed(input), 0);
    }
    (Cow::Owned(out), count)
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

/// The fragment parameters of a sandbox URL.
struct Fragment<'a> {
    py: Option<&'a str>,
    md: Option<&'a str>,
    flags: &'a str,
}

impl<'a> Fragment<'a> {
    fn parse(url: &'a str) -> Self {
        let mut fragment = Fragment { py: None, md: None, flags: "" };
        let Some((_, params)) = url.split_once('#') else {
            return fragment;
        };
        for param in params.split('&') {
            match param.split_once('=') {
                Some(("py", v)) => fragment.py = Some(v),
                Some(("md", v)) => fragment.md = Some(v),
                Some(("sg", v)) => fragment.flags = v,
                _ => {}
            }
        }
        fragment
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
