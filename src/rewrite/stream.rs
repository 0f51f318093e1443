//! The push-style streaming rewriter.
//!
//! Text is split into lines; every complete line goes through the [`BlockParser`], and what the
//! parser says decides what is emitted. The line still being received is held only while it matters:
//! - when the code stays visible (`show_code`), every line streams through as it arrives, except a line
//!   inside a Python block nested in containers, which is held until it is known to continue them
//!   (otherwise the block ends before it, and the replacement must go in first);
//! - when the code is hidden, a Python block is held whole until it ends, and a line that might open
//!   one is held until it is decided.
//!
//! Each rewriter also keeps the code of the blocks it has rewritten (up to `context_bytes`, see
//! [`super::cells`]) and gives every later replacement those earlier blocks as its `cx`: they have
//! all passed by then, so this holds nothing back.
//!
//! Invariant: for every split of the input into chunks, the concatenated output is the same.

use std::sync::Arc;

use super::cells::{Cells, Context, ANSWER_CONTEXT_FACTOR};
use super::markdown::{could_open_fence, info_string, BlockParser, LineKind};
use super::replace::{Block, End, Renderer};
use super::Options;

/// A streaming markdown rewriter: `push` text as it arrives, `finish` at the end.
#[derive(Debug)]
pub struct Rewriter {
    opts: Arc<Options>,
    /// `None` when the options make no replacement (the mode `off`, which the proxy and the command
    /// line never hand the engine; a library caller that does gets its text back unchanged).
    renderer: Option<Renderer>,
    parser: BlockParser,
    /// The line being received (no line ending yet, or a `\r` that may be followed by `\n`).
    pending: String,
    /// How many bytes of `pending` were already emitted.
    pending_emitted: usize,
    /// The Python block being read, if any.
    block: Option<PyBlock>,
    /// How many blocks were rewritten.
    blocks: usize,
    /// The earlier blocks, for the next replacement's `cx` (empty with [`Context::Off`]).
    cells: Cells,
    /// How much more earlier code this answer's links may carry (see [`super::cells`]).
    context_allowance: usize,
    /// Whether blocks are rendered: not when only collecting cells ([`collect_cells`]).
    render: bool,
}

#[derive(Debug)]
struct PyBlock {
    code: String,
    /// With the code hidden: the original text from the opening fence on.
    raw: String,
    prefix: String,
    eol: &'static str,
    fence_ch: u8,
    fence_len: usize,
    /// Grown past `max_block_bytes`: released unchanged, no replacement.
    released: bool,
}

impl Rewriter {
    pub fn new(opts: Arc<Options>) -> Self {
        let cells = match opts.context {
            Context::Conversation => opts.history.clone(),
            Context::Off | Context::Answer => Cells::default(),
        };
        Self::with_cells(opts, cells, true)
    }

    fn with_cells(opts: Arc<Options>, cells: Cells, render: bool) -> Self {
        let renderer = Renderer::new(&opts);
        let context_allowance = opts.context_bytes.saturating_mul(ANSWER_CONTEXT_FACTOR);
        Rewriter {
            opts,
            renderer,
            parser: BlockParser::default(),
            pending: String::new(),
            pending_emitted: 0,
            block: None,
            blocks: 0,
            cells,
            context_allowance,
            render,
        }
    }

    /// Feeds more text; appends to `out` everything that is decided.
    pub fn push(&mut self, input: &str, out: &mut String) {
        if self.renderer.is_none() {
            // No replacement to make (see `renderer`): the text passes as it is.
            out.push_str(input);
            return;
        }
        let mut rest = input;
        // A `\r` held at the end of the last chunk: a line ending, one or two bytes long.
        if self.pending.ends_with('\r') {
            if rest.is_empty() {
                return;
            }
            let line_len = self.pending.len() - 1;
            let eol = if rest.starts_with('\n') {
                rest = &rest[1..];
                "\r\n"
            } else {
                "\r"
            };
            let pending = std::mem::take(&mut self.pending);
            let already = std::mem::take(&mut self.pending_emitted).min(line_len);
            self.line(&pending[..line_len], eol, already, out);
        }
        let bytes = rest.as_bytes();
        let mut start = 0;
        while let Some(rel) = memchr::memchr2(b'\n', b'\r', &bytes[start..]) {
            let at = start + rel;
            let eol_len = match bytes[at] {
                b'\n' => 1,
                _ if at + 1 == bytes.len() => break, // `\r` at the end: wait for the next byte
                _ if bytes[at + 1] == b'\n' => 2,
                _ => 1,
            };
            let eol = &rest[at..at + eol_len];
            let eol = static_eol(eol);
            if self.pending.is_empty() {
                self.line(&rest[start..at], eol, 0, out);
            } else {
                let mut pending = std::mem::take(&mut self.pending);
                pending.push_str(&rest[start..at]);
                let already = std::mem::take(&mut self.pending_emitted);
                self.line(&pending, eol, already, out);
                pending.clear();
                self.pending = pending;
            }
            start = at + eol_len;
        }
        self.pending.push_str(&rest[start..]);
        self.emit_pending(out);
    }

    /// Ends the text; appends to `out` everything still held.
    pub fn finish(&mut self, out: &mut String) {
        if self.renderer.is_none() {
            return;
        }
        let mut had_eol = true;
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            let already = std::mem::take(&mut self.pending_emitted);
            match pending.strip_suffix('\r') {
                Some(line) => self.line(line, "\r", already.min(line.len()), out),
                None => {
                    had_eol = false;
                    self.line(&pending, "", already, out);
                }
            }
        }
        if self.block.is_some() {
            self.end_block(End::Eof { had_eol }, out);
        }
        self.parser = BlockParser::default();
    }

    /// How many Python blocks were rewritten so far.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// Emits what can be emitted of the line being received.
    fn emit_pending(&mut self, out: &mut String) {
        let decided = self.pending.len() - usize::from(self.pending.ends_with('\r'));
        if decided <= self.pending_emitted {
            return;
        }
        let partial = &self.pending[..decided];
        // Both decisions below only go from "hold" to "emit" as the line grows: once part of the line
        // went out, the rest may follow without asking again (a long line costs no rescans).
        let emit = self.pending_emitted > 0
            || match &self.block {
                Some(block) if !block.released => {
                    self.opts.show_code && self.parser.surely_continues(partial)
                }
                _ => {
                    self.opts.show_code
                        || !could_open_fence(partial, |word, complete| {
                            self.could_be_language(word, complete)
                        })
                }
            };
        if emit {
            out.push_str(&self.pending[self.pending_emitted..decided]);
            self.pending_emitted = decided;
        }
    }

    fn could_be_language(&self, word: &str, complete: bool) -> bool {
        self.opts.languages.iter().any(|lang| {
            if complete {
                lang.eq_ignore_ascii_case(word)
            } else {
                lang.len() >= word.len()
                    && lang.as_bytes()[..word.len()].eq_ignore_ascii_case(word.as_bytes())
            }
        })
    }

    /// Processes one complete line; `already` bytes of it were emitted while it was received.
    fn line(&mut self, line: &str, eol: &'static str, already: usize, out: &mut String) {
        let parsed = self.parser.line(line);
        if parsed.fence_closed_before && self.block.is_some() {
            self.end_block(End::Container, out);
        }
        let emit_from = already.min(line.len());
        match parsed.kind {
            LineKind::FenceOpen { start, ch, len, info } if self.block.is_none() => {
                let info_str = info_string(line, info);
                if !self.opts.is_python_info(info_str) {
                    push_line(out, line, emit_from, eol);
                    return;
                }
                let mut block = PyBlock {
                    code: String::new(),
                    raw: String::new(),
                    prefix: self.parser.continuation_prefix(),
                    // Lines the engine adds end like the block's lines; never with a lone `\r`,
                    // which a `\n` after the addition would turn into one `\r\n`.
                    eol: if eol == "\r\n" { "\r\n" } else { "\n" },
                    fence_ch: ch,
                    fence_len: len,
                    released: false,
                };
                if self.opts.show_code {
                    push_line(out, line, emit_from, eol);
                } else if emit_from <= start {
                    out.push_str(&line[emit_from..start]);
                    block.raw.push_str(&line[start..]);
                    block.raw.push_str(eol);
                } else {
                    // Part of the fence was already sent: the block can only pass through.
                    push_line(out, line, emit_from, eol);
                    block.released = true;
                }
                self.block = Some(block);
            }
            LineKind::FenceContent { start, spaces, indent } if self.block.is_some() => {
                let max = self.opts.max_block_bytes;
                let show_code = self.opts.show_code;
                let Some(block) = self.block.as_mut() else {
                    return;
                };
                if block.released {
                    push_line(out, line, emit_from, eol);
                    return;
                }
                let content = line.get(start..).unwrap_or("");
                if !eol.is_empty() {
                    block.code.extend(std::iter::repeat_n(' ', spaces));
                    block.code.push_str(content);
                    // Code content has its line endings normalised, as CommonMark parsers report it.
                    block.code.push('\n');
                } else if indent >= 4 || !content.trim_matches([' ', '\t']).is_empty() {
                    // The last line of the text, with no line ending: pulldown-cmark leaves it out
                    // when it is blank and indented less than an indented code block.
                    block.code.extend(std::iter::repeat_n(' ', spaces));
                    block.code.push_str(content);
                }
                if show_code {
                    push_line(out, line, emit_from, eol);
                } else {
                    block.raw.push_str(line);
                    block.raw.push_str(eol);
                }
                if block.code.len() + block.raw.len() > max {
                    block.released = true;
                    out.push_str(&block.raw);
                    block.code = String::new();
                    block.raw = String::new();
                }
            }
            LineKind::FenceClose if self.block.is_some() => {
                if self.opts.show_code {
                    push_line(out, line, emit_from, eol);
                } else if let Some(block) = self.block.as_mut() {
                    if block.released {
                        push_line(out, line, emit_from, eol);
                    } else {
                        block.raw.push_str(line);
                        block.raw.push_str(eol);
                    }
                }
                self.end_block(End::Fence { had_eol: !eol.is_empty() }, out);
            }
            _ => push_line(out, line, emit_from, eol),
        }
    }

    /// Emits the replacement of the block being read and forgets it.
    fn end_block(&mut self, end: End, out: &mut String) {
        let Some(block) = self.block.take() else {
            return;
        };
        let keep = self.opts.context != Context::Off;
        if block.released {
            if keep {
                self.cells.omit();
            }
            return;
        }
        self.blocks += 1;
        if let (true, Some(renderer)) = (self.render, &self.renderer) {
            let cx = (keep && !self.cells.is_empty()).then(|| {
                let (cx, took) = self.cells.encode_within(self.context_allowance);
                self.context_allowance -= took;
                cx
            });
            renderer.render(
                &Block {
                    code: &block.code,
                    prefix: &block.prefix,
                    eol: block.eol,
                    fence_ch: block.fence_ch,
                    fence_len: block.fence_len,
                    end,
                    raw: (!self.opts.show_code).then_some(block.raw.as_str()),
                    cx: cx.as_deref(),
                },
                out,
            );
        }
        if keep {
            self.cells.push(block.code, self.opts.context_bytes);
        }
    }
}

/// Adds the Python blocks of a text to `cells`, oldest first, exactly as rewriting it would keep them
/// for its later replacements (the same blocks, the same code, the same budget): the conversation
/// context of the answers in a request's history. Nothing with [`Context::Off`] or the mode `off`.
pub fn collect_cells(opts: &Arc<Options>, text: &str, cells: &mut Cells) {
    if opts.context == Context::Off {
        return;
    }
    let mut rewriter = Rewriter::with_cells(Arc::clone(opts), std::mem::take(cells), false);
    let mut sink = String::new();
    rewriter.push(text, &mut sink);
    rewriter.finish(&mut sink);
    *cells = rewriter.cells;
}

fn push_line(out: &mut String, line: &str, from: usize, eol: &str) {
    out.push_str(line.get(from..).unwrap_or(""));
    out.push_str(eol);
}

fn static_eol(eol: &str) -> &'static str {
    match eol {
        "\r\n" => "\r\n",
        "\r" => "\r",
        _ => "\n",
    }
}
