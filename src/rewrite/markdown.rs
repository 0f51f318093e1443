//! A line-at-a-time CommonMark block-structure tracker.
//!
//! It follows the block-parsing strategy of the CommonMark spec (0.31.2, appendix "A parsing
//! strategy") and of its reference implementations: for each line, first match the open containers
//! (block quotes, list items), then look for new block starts, then decide between lazy continuation,
//! a new paragraph, or a line added to the open leaf block. It keeps only what decides where fenced
//! code blocks begin and end: the container stack and the kind of the open leaf. It builds no tree and
//! never looks at inline content, so it costs a few comparisons per line of prose.
//!
//! Lines are given without their line ending. Columns follow the spec's tab stops of 4, including
//! partially consumed tabs.
//!
//! pulldown-cmark 0.13 is the oracle; where it departs from the spec, this module follows it and says
//! so where it does: blank lines in list items, a blank last line at the end of the text, type 7 HTML
//! after a lazy line, a closing fence followed by a tab (content, not a close), a type 1 HTML block
//! ending only at its own closing tag (case-sensitive), a tab crossing the fourth column before the
//! `>` of a continued block quote, and info strings and HTML tags taking vertical tabs and form feeds
//! as whitespace.

const TAB_STOP: usize = 4;
const CODE_INDENT: usize = 4;

/// An open container block.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Container {
    BlockQuote,
    /// A list item; `width` is the indentation its content needs (marker offset + marker + padding),
    /// `has_content` whether any block was added to it (an empty item does not survive a blank line).
    Item {
        width: usize,
        has_content: bool,
    },
}

/// The open leaf block, as far as fences care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leaf {
    None,
    Paragraph,
    Fenced {
        ch: u8,
        len: usize,
        indent: usize,
    },
    Indented,
    /// An HTML block: of types 1 to 5 with the text that ends it, of type 6 or 7 (`None`) ended by
    /// a blank line.
    Html(Option<&'static [u8]>),
}

/// What a line turned out to be, for the fenced code blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineKind {
    /// Anything that is not part of a fenced code block.
    Other,
    /// The line opens a fenced code block: the fence starts at byte `start`, the info string is
    /// `line[info..].trim()`.
    FenceOpen { start: usize, ch: u8, len: usize, info: usize },
    /// The line closes the open fenced code block.
    FenceClose,
    /// A content line of the open fenced code block: its content is `spaces` spaces (the rest of a
    /// partially consumed tab) followed by `line[start..]`; `indent` is the line's indentation inside
    /// its containers.
    FenceContent { start: usize, spaces: usize, indent: usize },
}

/// The outcome of one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    /// An open fenced code block ended just before this line because one of its containers did not
    /// continue (an unclosed block).
    pub fence_closed_before: bool,
    pub kind: LineKind,
}

/// The block-structure state between lines.
#[derive(Clone, Debug, Default)]
pub(crate) struct BlockParser {
    containers: Vec<Container>,
    leaf: LeafState,
    /// The open paragraph's text while it may consist of link reference definitions only.
    refdefs: RefdefText,
}

/// The text of a paragraph that starts with `[`, kept while it may be made of link reference
/// definitions only: then a setext underline after it is no underline but a paragraph of its own
/// (spec and pulldown-cmark agree), which changes what the lines after it may be.
#[derive(Clone, Debug, Default)]
struct RefdefText {
    /// Whether the open paragraph is a candidate.
    active: bool,
    /// Its lines (after the containers matched), each ending with `\n`.
    text: Vec<u8>,
    /// Where each line starts in `text`, and whether it would end a definition's title or the
    /// space before it (a lazy line that looks like a setext underline).
    lines: Vec<(usize, bool)>,
}

/// Past this size a paragraph is no longer considered made of link reference definitions only
/// (a documented limit; pulldown-cmark has none).
const REFDEF_TEXT_LIMIT: usize = 64 * 1024;

impl RefdefText {
    fn start(&mut self, line: &[u8], setext: bool) {
        self.text.clear();
        self.lines.clear();
        self.active = line.first() == Some(&b'[');
        if self.active {
            self.push(line, setext);
        }
    }

    fn push(&mut self, line: &[u8], setext: bool) {
        if !self.active {
            return;
        }
        if self.text.len() + line.len() > REFDEF_TEXT_LIMIT {
            self.stop();
            return;
        }
        self.lines.push((self.text.len(), setext));
        self.text.extend_from_slice(line);
        self.text.push(b'\n');
    }

    fn stop(&mut self) {
        if self.active {
            self.active = false;
            self.text.clear();
            self.lines.clear();
        }
    }

    /// Whether the paragraph so far is made of link reference definitions only.
    fn all_definitions(&self) -> bool {
        self.active && refdefs::all_definitions(&self.text, &self.lines)
    }
}

#[derive(Clone, Copy, Debug)]
struct LeafState(Leaf);

impl Default for LeafState {
    fn default() -> Self {
        LeafState(Leaf::None)
    }
}

impl BlockParser {
    /// The prefix that keeps a new line inside the current containers, e.g. `> ` or `   `.
    pub(crate) fn continuation_prefix(&self) -> String {
        let mut prefix = String::new();
        for container in &self.containers {
            match container {
                Container::BlockQuote => prefix.push_str("> "),
                Container::Item { width, .. } => {
                    prefix.extend(std::iter::repeat_n(' ', *width));
                }
            }
        }
        prefix
    }

    /// Whether a line that starts with `partial` (a line not yet complete) surely continues every open
    /// container, whatever follows. `false` means "not known yet" as well as "no".
    pub(crate) fn surely_continues(&self, partial: &str) -> bool {
        let mut c = Cursor::new(partial.as_bytes());
        for container in &self.containers {
            c.find_first_nonspace();
            match container {
                Container::BlockQuote => {
                    // Until the byte after `>` is known, neither is the optional space.
                    if !c.continue_quote() || (c.optional_space_pending && c.blank_rest()) {
                        return false;
                    }
                }
                Container::Item { width, has_content } => {
                    // A line that may still turn out blank continues only an item with content.
                    if c.indent >= *width && (*has_content || !c.blank) {
                        c.advance_offset(*width, true);
                    } else {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Processes one complete line (without its line ending).
    pub(crate) fn line(&mut self, text: &str) -> Line {
        let mut c = Cursor::new(text.as_bytes());

        // 1. Match the open containers.
        let mut matched = 0;
        for container in &self.containers {
            c.find_first_nonspace();
            let ok = match container {
                Container::BlockQuote => c.continue_quote(),
                Container::Item { width, has_content } => {
                    if c.blank {
                        // An empty item does not survive a blank line.
                        if *has_content {
                            // pulldown-cmark keeps the spaces past the item's width in a blank line.
                            c.advance_offset(c.indent.min(*width), true);
                        }
                        *has_content
                    } else if c.indent >= *width {
                        c.advance_offset(*width, true);
                        true
                    } else {
                        false
                    }
                }
            };
            if !ok {
                break;
            }
            matched += 1;
        }
        let all_matched = matched == self.containers.len();
        c.find_first_nonspace();

        // 2. The open leaf, when every container continues.
        let mut paragraph_continues = false;
        if all_matched {
            match self.leaf.0 {
                Leaf::Fenced { ch, len, indent } => {
                    if c.indent <= 3 && c.peek(c.first_nonspace) == ch {
                        let run = run_length(c.line, c.first_nonspace, ch);
                        // The spec allows spaces or tabs after a closing fence; pulldown-cmark
                        // (`scan_closing_code_fence`) only spaces: `~~~\t` is content there.
                        let tail = &c.line[c.first_nonspace + run..];
                        if run >= len && tail.iter().all(|&b| b == b' ') {
                            self.leaf.0 = Leaf::None;
                            self.mark_content();
                            return Line { fence_closed_before: false, kind: LineKind::FenceClose };
                        }
                    }
                    let line_indent = c.indent;
                    let mut i = indent;
                    while i > 0 && (c.phantom > 0 || is_space_or_tab(c.peek(c.offset))) {
                        c.advance_offset(1, true);
                        i -= 1;
                    }
                    let (start, spaces) = c.rest_of_line();
                    if !c.blank {
                        self.mark_content();
                    }
                    return Line {
                        fence_closed_before: false,
                        kind: LineKind::FenceContent { start, spaces, indent: line_indent },
                    };
                }
                Leaf::Indented => {
                    if c.indent >= CODE_INDENT || c.blank {
                        return self.other();
                    }
                    self.leaf.0 = Leaf::None;
                }
                Leaf::Html(end) => {
                    if c.blank && end.is_none() {
                        self.leaf.0 = Leaf::None;
                    } else {
                        if end.is_some_and(|end| contains(&c.line[c.offset..], end)) {
                            self.leaf.0 = Leaf::None;
                        }
                        return self.other();
                    }
                }
                Leaf::Paragraph => paragraph_continues = !c.blank,
                Leaf::None => {}
            }
        }

        // 3. New block starts.
        let tip_is_paragraph = self.leaf.0 == Leaf::Paragraph;
        // A setext underline after link reference definitions only starts a paragraph.
        let refdef_break = paragraph_continues
            && is_setext_underline(&c.line[c.first_nonspace..])
            && c.indent < CODE_INDENT
            && self.refdefs.all_definitions();
        let mut container_is_paragraph = paragraph_continues;
        let mut opened: Vec<Container> = Vec::new();
        let mut new_leaf: Option<Leaf> = None;
        let mut fence_open: Option<LineKind> = None;
        loop {
            c.find_first_nonspace();
            let indented = c.indent >= CODE_INDENT;
            let first = c.peek(c.first_nonspace);
            if !indented && !may_start_block(first) {
                break;
            }
            let rest = &c.line[c.first_nonspace..];
            if !indented && first == b'>' {
                c.advance_offset(c.indent + 1, true);
                c.optional_space();
                opened.push(Container::BlockQuote);
                container_is_paragraph = false;
            } else if !indented && is_atx_heading(rest) {
                new_leaf = Some(Leaf::None);
                break;
            } else if let Some((ch, len)) = (!indented).then(|| open_fence(rest)).flatten() {
                let start = c.first_nonspace;
                fence_open = Some(LineKind::FenceOpen { start, ch, len, info: start + len });
                new_leaf = Some(Leaf::Fenced { ch, len, indent: c.indent });
                break;
            } else if let Some(kind) = (!indented)
                .then(|| {
                    // Type 7 cannot interrupt a paragraph, not even one continued lazily.
                    let lazy = !all_matched && opened.is_empty() && tip_is_paragraph && !c.blank;
                    html_block_start(rest, !container_is_paragraph && !lazy)
                })
                .flatten()
            {
                let ends = kind.is_some_and(|end| contains(&c.line[c.offset..], end));
                new_leaf = Some(if ends { Leaf::None } else { Leaf::Html(kind) });
                break;
            } else if !indented
                && ((container_is_paragraph && is_setext_underline(rest) && !refdef_break)
                    || is_thematic_break(rest))
            {
                // A setext heading underline (it ends the paragraph) or a thematic break.
                new_leaf = Some(Leaf::None);
                break;
            } else if let Some(width) =
                (!indented).then(|| c.list_item(container_is_paragraph)).flatten()
            {
                opened.push(Container::Item { width, has_content: false });
                container_is_paragraph = false;
            } else if indented && !(tip_is_paragraph && opened.is_empty()) && !c.blank {
                new_leaf = Some(Leaf::Indented);
                break;
            } else {
                break;
            }
        }
        c.find_first_nonspace();

        // 4. Lazy continuation, or close what did not continue and add the line.
        let started = !opened.is_empty() || new_leaf.is_some();
        if !all_matched && !started && !c.blank && tip_is_paragraph {
            let setext = c.indent < CODE_INDENT && is_setext_underline(&c.line[c.first_nonspace..]);
            self.refdefs.push(&c.line[c.offset..], setext);
            return self.other();
        }
        let fence_closed_before = !all_matched && matches!(self.leaf.0, Leaf::Fenced { .. });
        if !all_matched {
            self.containers.truncate(matched);
            self.leaf.0 = Leaf::None;
        }
        let blank = c.blank;
        if started || !blank {
            self.mark_content();
        }
        let opened_count = opened.len();
        for (i, mut container) in opened.into_iter().enumerate() {
            if let Container::Item { has_content, .. } = &mut container {
                *has_content = i + 1 < opened_count || !blank;
            }
            self.containers.push(container);
        }
        self.leaf.0 = match new_leaf {
            Some(leaf) => leaf,
            None if blank => Leaf::None,
            None => Leaf::Paragraph,
        };
        if self.leaf.0 != Leaf::Paragraph {
            self.refdefs.stop();
        } else if paragraph_continues && !started && !refdef_break {
            self.refdefs.push(&c.line[c.offset..], false);
        } else {
            self.refdefs.start(&c.line[c.first_nonspace..], false);
        }
        Line { fence_closed_before, kind: fence_open.unwrap_or(LineKind::Other) }
    }

    fn other(&mut self) -> Line {
        self.mark_content();
        Line { fence_closed_before: false, kind: LineKind::Other }
    }

    fn mark_content(&mut self) {
        for container in &mut self.containers {
            if let Container::Item { has_content, .. } = container {
                *has_content = true;
            }
        }
    }
}

/// Whether a line that starts with `partial` (not yet complete) could open a fenced code block whose
/// info string's first word satisfies `is_lang`, or the start of one. Conservative: `false` only when
/// no continuation of the line can open such a block, whatever the containers are.
pub(crate) fn could_open_fence(partial: &str, could_be_lang: impl Fn(&str, bool) -> bool) -> bool {
    let bytes = partial.as_bytes();
    // Skip what may be container markers and indentation.
    let mut i = 0;
    while i < bytes.len()
        && matches!(bytes[i], b' ' | b'\t' | b'>' | b'-' | b'+' | b'*' | b'.' | b')' | b'0'..=b'9')
    {
        i += 1;
    }
    let rest = &bytes[i..];
    let Some(&ch) = rest.first() else { return true };
    if ch != b'`' && ch != b'~' {
        return false;
    }
    let run = run_length(rest, 0, ch);
    if run == rest.len() {
        return true;
    }
    if run < 3 {
        return false;
    }
    let info = &rest[run..];
    if ch == b'`' && info.contains(&b'`') {
        return false;
    }
    let info = &info[info.iter().take_while(|&&b| is_info_space(b)).count()..];
    // A vertical tab or form feed may end the word (when only whitespace follows) or not: say yes,
    // which holds the line until it is complete.
    let end = info.iter().position(|&b| is_info_space(b));
    let word = &info[..end.unwrap_or(info.len())];
    match std::str::from_utf8(word) {
        Ok(word) => could_be_lang(word, end.is_some()),
        // A multi-byte character cut in the middle: not a configured language, but keep it simple.
        Err(_) => true,
    }
}

/// The info string of a fence line whose info starts at byte `info`.
///
/// The spec trims spaces and tabs; pulldown-cmark trims every ASCII whitespace byte (vertical tab and
/// form feed too), so `` ```python\x0c `` is a Python block there, and here.
pub(crate) fn info_string(line: &str, info: usize) -> &str {
    line.get(info..).unwrap_or("").trim_matches(|c: char| c.is_ascii() && is_info_space(c as u8))
}

/// pulldown-cmark's `is_ascii_whitespace` without the line endings.
fn is_info_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | 0x0b | 0x0c)
}

/// A position in a line, as pulldown-cmark's `LineStart`: `offset` is a byte offset, `column` the
/// column of the byte there (tab stops of 4), and `phantom` the columns of a tab before `offset`
/// that were not consumed yet (a tab partly used as indentation of a container).
struct Cursor<'a> {
    line: &'a [u8],
    offset: usize,
    column: usize,
    phantom: usize,
    first_nonspace: usize,
    indent: usize,
    blank: bool,
    /// The last `continue_quote` took its optional space from `phantom`; when `false` after it, the
    /// space (if any) came from the byte after `>`.
    optional_space_pending: bool,
}

impl<'a> Cursor<'a> {
    fn new(line: &'a [u8]) -> Self {
        Cursor {
            line,
            offset: 0,
            column: 0,
            phantom: 0,
            first_nonspace: 0,
            indent: 0,
            blank: line.is_empty(),
            optional_space_pending: false,
        }
    }

    fn peek(&self, at: usize) -> u8 {
        self.line.get(at).copied().unwrap_or(0)
    }

    /// The column the cursor stands at, counting unconsumed tab columns as not yet passed.
    fn position(&self) -> usize {
        self.column - self.phantom
    }

    fn find_first_nonspace(&mut self) {
        let mut chars_to_tab = TAB_STOP - (self.column % TAB_STOP);
        let mut i = self.offset;
        let mut column = self.column;
        while let Some(&b) = self.line.get(i) {
            match b {
                b' ' => {
                    i += 1;
                    column += 1;
                    chars_to_tab -= 1;
                    if chars_to_tab == 0 {
                        chars_to_tab = TAB_STOP;
                    }
                }
                b'\t' => {
                    i += 1;
                    column += chars_to_tab;
                    chars_to_tab = TAB_STOP;
                }
                _ => break,
            }
        }
        self.first_nonspace = i;
        self.indent = column - self.position();
        self.blank = i >= self.line.len();
    }

    fn blank_rest(&self) -> bool {
        self.offset >= self.line.len()
    }

    /// Advances `count` columns (`columns = true`) or bytes, as cmark's `S_advance_offset`; a tab
    /// partly consumed leaves its other columns in `phantom`, as pulldown-cmark's `scan_space`.
    fn advance_offset(&mut self, mut count: usize, columns: bool) {
        if !columns {
            self.phantom = 0;
        }
        while count > 0 {
            if self.phantom > 0 {
                let n = self.phantom.min(count);
                self.phantom -= n;
                count -= n;
                continue;
            }
            let Some(&b) = self.line.get(self.offset) else {
                break;
            };
            self.offset += 1;
            if b == b'\t' {
                let width = TAB_STOP - (self.column % TAB_STOP);
                self.column += width;
                if columns {
                    let n = width.min(count);
                    self.phantom = width - n;
                    count -= n;
                } else {
                    count -= 1;
                }
            } else {
                self.column += 1;
                count -= 1;
            }
        }
    }

    /// The optional space after a block quote marker, taken from unconsumed tab columns first (as
    /// pulldown-cmark's `scan_space(1)` does).
    fn optional_space(&mut self) {
        self.optional_space_pending = false;
        if self.phantom > 0 {
            self.phantom -= 1;
        } else if is_space_or_tab(self.peek(self.offset)) {
            self.advance_offset(1, true);
        } else {
            self.optional_space_pending = true;
        }
    }

    /// Continues an open block quote: a `>` after at most three columns of indentation, and the
    /// optional space after it.
    ///
    /// As pulldown-cmark (`scan_containers`), and unlike the spec, a tab that crosses the third
    /// column still counts as indentation (`\t>` continues a quote), and the columns of it left over
    /// stand for the optional space after `>` (so in `\t> x` the space is content).
    fn continue_quote(&mut self) -> bool {
        let (mut at, mut column, mut phantom) = (self.offset, self.column, self.phantom);
        let mut budget = 3 - phantom.min(3);
        phantom -= phantom.min(3);
        while budget > 0 {
            match self.line.get(at) {
                Some(b' ') => {
                    at += 1;
                    column += 1;
                    budget -= 1;
                }
                Some(b'\t') => {
                    let width = TAB_STOP - (column % TAB_STOP);
                    at += 1;
                    column += width;
                    let n = width.min(budget);
                    budget -= n;
                    phantom = width - n;
                }
                _ => break,
            }
        }
        if self.peek(at) != b'>' {
            return false;
        }
        self.offset = at + 1;
        self.column = column + 1;
        self.phantom = phantom;
        self.optional_space();
        true
    }

    /// The rest of the line as content: spaces for a partially consumed tab, then bytes.
    fn rest_of_line(&self) -> (usize, usize) {
        (self.offset, self.phantom)
    }

    /// A list item marker at the first non-space position; on success advances past the marker and
    /// its padding and returns the item's content width.
    fn list_item(&mut self, interrupts_paragraph: bool) -> Option<usize> {
        let start = self.first_nonspace;
        let first = self.peek(start);
        let (marker_len, ordered_start) = match first {
            b'-' | b'+' | b'*' => (1, None),
            b'0'..=b'9' => {
                let digits = self.line[start..].iter().take_while(|b| b.is_ascii_digit()).count();
                if digits > 9 {
                    return None;
                }
                let delim = self.peek(start + digits);
                if delim != b'.' && delim != b')' {
                    return None;
                }
                let value = std::str::from_utf8(&self.line[start..start + digits])
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok());
                (digits + 1, value)
            }
            _ => return None,
        };
        let after = start + marker_len;
        let next = self.peek(after);
        if !(next == 0 || next == b' ' || next == b'\t') {
            return None;
        }
        if interrupts_paragraph {
            if is_blank(&self.line[after..]) {
                return None;
            }
            if let Some(value) = ordered_start {
                if value != 1 {
                    return None;
                }
            }
        }
        let marker_offset = self.indent;
        self.advance_offset(after - self.offset, false);
        let (saved_offset, saved_column, saved_phantom) = (self.offset, self.column, self.phantom);
        let saved_position = self.position();
        while self.position() - saved_position <= 5
            && (self.phantom > 0 || is_space_or_tab(self.peek(self.offset)))
        {
            self.advance_offset(1, true);
        }
        let spaces = self.position() - saved_position;
        let padding = if !(1..5).contains(&spaces) || self.offset >= self.line.len() {
            self.offset = saved_offset;
            self.column = saved_column;
            self.phantom = saved_phantom;
            if spaces > 0 {
                self.advance_offset(1, true);
            }
            marker_len + 1
        } else {
            marker_len + spaces
        };
        Some(marker_offset + padding)
    }
}

fn is_space_or_tab(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_blank(s: &[u8]) -> bool {
    s.iter().all(|&b| is_space_or_tab(b))
}

fn run_length(s: &[u8], from: usize, ch: u8) -> usize {
    s.get(from..).map_or(0, |s| s.iter().take_while(|&&b| b == ch).count())
}

/// Whether a line whose first non-space byte is `b` can start any block (other than a paragraph).
fn may_start_block(b: u8) -> bool {
    matches!(b, b'>' | b'#' | b'`' | b'~' | b'<' | b'=' | b'-' | b'_' | b'*' | b'+' | b'0'..=b'9')
}

fn is_atx_heading(rest: &[u8]) -> bool {
    let n = run_length(rest, 0, b'#');
    (1..=6).contains(&n) && matches!(rest.get(n), None | Some(b' ' | b'\t'))
}

/// An opening code fence: the fence character and the fence length.
fn open_fence(rest: &[u8]) -> Option<(u8, usize)> {
    let ch = *rest.first()?;
    if ch != b'`' && ch != b'~' {
        return None;
    }
    let len = run_length(rest, 0, ch);
    if len < 3 {
        return None;
    }
    if ch == b'`' && rest[len..].contains(&b'`') {
        return None;
    }
    Some((ch, len))
}

fn is_setext_underline(rest: &[u8]) -> bool {
    let Some(&ch) = rest.first() else {
        return false;
    };
    if ch != b'=' && ch != b'-' {
        return false;
    }
    let n = run_length(rest, 0, ch);
    is_blank(&rest[n..])
}

fn is_thematic_break(rest: &[u8]) -> bool {
    let Some(&ch) = rest.first() else {
        return false;
    };
    if !matches!(ch, b'*' | b'-' | b'_') {
        return false;
    }
    let mut count = 0;
    for &b in rest {
        if b == ch {
            count += 1;
        } else if !is_space_or_tab(b) {
            return false;
        }
    }
    count >= 3
}

/// The type 1 start tags and the closing tags that end them.
const HTML_TYPE_1: [(&[u8], &[u8]); 4] = [
    (b"script", b"</script>"),
    (b"pre", b"</pre>"),
    (b"style", b"</style>"),
    (b"textarea", b"</textarea>"),
];

const HTML_TYPE_6: [&[u8]; 62] = [
    b"address",
    b"article",
    b"aside",
    b"base",
    b"basefont",
    b"blockquote",
    b"body",
    b"caption",
    b"center",
    b"col",
    b"colgroup",
    b"dd",
    b"details",
    b"dialog",
    b"dir",
    b"div",
    b"dl",
    b"dt",
    b"fieldset",
    b"figcaption",
    b"figure",
    b"footer",
    b"form",
    b"frame",
    b"frameset",
    b"h1",
    b"h2",
    b"h3",
    b"h4",
    b"h5",
    b"h6",
    b"head",
    b"header",
    b"hr",
    b"html",
    b"iframe",
    b"legend",
    b"li",
    b"link",
    b"main",
    b"menu",
    b"menuitem",
    b"nav",
    b"noframes",
    b"ol",
    b"optgroup",
    b"option",
    b"p",
    b"param",
    b"search",
    b"section",
    b"summary",
    b"table",
    b"tbody",
    b"td",
    b"tfoot",
    b"th",
    b"thead",
    b"title",
    b"tr",
    b"track",
    b"ul",
];

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The HTML block that `rest` starts, if any: `Some(Some(end))` for types 1 to 5, which end at a
/// line containing `end`, `Some(None)` for types 6 and 7 (type 7 only when `allow_7`).
///
/// As pulldown-cmark (`get_html_end_tag`), and unlike the spec, a type 1 block ends only at its own
/// closing tag, compared case-sensitively: `<script>` ends at `</script>`, not at `</pre>` or
/// `</SCRIPT>`.
fn html_block_start(rest: &[u8], allow_7: bool) -> Option<Option<&'static [u8]>> {
    if rest.first() != Some(&b'<') {
        return None;
    }
    let after = &rest[1..];
    for (tag, end) in HTML_TYPE_1 {
        if starts_with_ci(after, tag) {
            // pulldown-cmark accepts any ASCII whitespace after the name (`\x0b` and `\x0c` too).
            match after.get(tag.len()) {
                None | Some(b' ' | b'\t' | b'>' | 0x0b | 0x0c) => return Some(Some(end)),
                _ => {}
            }
        }
    }
    if after.starts_with(b"!--") {
        return Some(Some(b"-->"));
    }
    if after.starts_with(b"?") {
        return Some(Some(b"?>"));
    }
    if after.starts_with(b"![CDATA[") {
        return Some(Some(b"]]>"));
    }
    if after.first() == Some(&b'!') && after.get(1).is_some_and(|b| b.is_ascii_alphabetic()) {
        return Some(Some(b">"));
    }
    let name_start = if after.first() == Some(&b'/') { &after[1..] } else { after };
    let name_len = name_start.iter().take_while(|b| b.is_ascii_alphanumeric()).count();
    let name = &name_start[..name_len];
    if HTML_TYPE_6.iter().any(|tag| name.eq_ignore_ascii_case(tag)) {
        match name_start.get(name_len) {
            None | Some(b' ' | b'\t' | b'>') => return Some(None),
            Some(b'/') if name_start.get(name_len + 1) == Some(&b'>') => return Some(None),
            _ => {}
        }
    }
    if allow_7 && is_complete_tag_line(rest) {
        return Some(None);
    }
    None
}

/// Type 7: a complete open tag or closing tag followed only by whitespace.
///
/// As pulldown-cmark (`scan_html_type_7`): whitespace is any ASCII whitespace but line endings
/// (vertical tab and form feed too), and an unquoted attribute value may hold tabs.
fn is_complete_tag_line(s: &[u8]) -> bool {
    let mut i = 1;
    let closing = s.get(i) == Some(&b'/');
    if closing {
        i += 1;
    }
    if !s.get(i).is_some_and(|b| b.is_ascii_alphabetic()) {
        return false;
    }
    while s.get(i).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'-') {
        i += 1;
    }
    // The spec excludes pre, script, style and textarea, but open tags with those names are type 1
    // already; closing tags and `<pre/>` are type 7 for cmark and pulldown-cmark, so here too.
    if closing {
        while s.get(i).is_some_and(|&b| is_info_space(b)) {
            i += 1;
        }
        return s.get(i) == Some(&b'>') && is_html_blank(&s[i + 1..]);
    }
    loop {
        // Attributes: whitespace, then a name, then an optional value.
        let ws_start = i;
        while s.get(i).is_some_and(|&b| is_info_space(b)) {
            i += 1;
        }
        let had_ws = i > ws_start;
        match s.get(i) {
            Some(b'>') => return is_html_blank(&s[i + 1..]),
            Some(b'/') => return s.get(i + 1) == Some(&b'>') && is_html_blank(&s[i + 2..]),
            Some(&b) if had_ws && (b.is_ascii_alphabetic() || b == b'_' || b == b':') => {
                i += 1;
                while s.get(i).is_some_and(|&b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')
                }) {
                    i += 1;
                }
                let mut j = i;
                while s.get(j).is_some_and(|&b| is_info_space(b)) {
                    j += 1;
                }
                if s.get(j) == Some(&b'=') {
                    j += 1;
                    while s.get(j).is_some_and(|&b| is_info_space(b)) {
                        j += 1;
                    }
                    match s.get(j) {
                        Some(&q @ (b'"' | b'\'')) => {
                            let Some(end) = s[j + 1..].iter().position(|&b| b == q) else {
                                return false;
                            };
                            i = j + 1 + end + 1;
                        }
                        Some(_) => {
                            let n = s[j..]
                                .iter()
                                .take_while(|&&b| {
                                    !matches!(b, b' ' | b'"' | b'\'' | b'=' | b'<' | b'>' | b'`')
                                })
                                .count();
                            if n == 0 {
                                return false;
                            }
                            i = j + n;
                        }
                        None => return false,
                    }
                }
            }
            _ => return false,
        }
    }
}

fn is_html_blank(s: &[u8]) -> bool {
    s.iter().all(|&b| is_info_space(b))
}

fn contains(line: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(line, needle).is_some()
}

/// Link reference definitions, recognised as pulldown-cmark does (`parse_refdef_total`,
/// `scan_link_label_rest`, `scan_refdef_space`, `scan_link_dest`, `scan_refdef_title`), on the text
/// of one paragraph whose end is a setext underline.
mod refdefs {
    /// At most this many nested parentheses in a destination (pulldown-cmark's limit).
    const MAX_NESTED_PARENS: usize = 32;

    /// Whether `text` (lines ending with `\n`, starting at `lines[i].0`; `lines[i].1` tells that the
    /// line looks like a setext underline) is one or more definitions and nothing else.
    pub(super) fn all_definitions(text: &[u8], lines: &[(usize, bool)]) -> bool {
        let s = Scan { text, lines };
        let mut i = 0;
        while i < text.len() {
            i += s.spaces(i);
            let Some(end) = s.definition(i) else {
                return false;
            };
            // The rest of the line must be blank.
            let j = end + s.spaces(end);
            if s.at(j) != Some(b'\n') {
                return false;
            }
            i = j + 1;
        }
        !text.is_empty()
    }

    struct Scan<'a> {
        text: &'a [u8],
        lines: &'a [(usize, bool)],
    }

    impl Scan<'_> {
        fn at(&self, i: usize) -> Option<u8> {
            self.text.get(i).copied()
        }

        /// Spaces, tabs, vertical tabs and form feeds from `i`.
        fn spaces(&self, i: usize) -> usize {
            self.text[i.min(self.text.len())..]
                .iter()
                .take_while(|&&b| matches!(b, b' ' | b'\t' | 0x0b | 0x0c))
                .count()
        }

        /// Whether a definition may go on into the line starting at `i`: not past the paragraph
        /// (the underline comes next) nor into a line that looks like an underline.
        fn may_enter(&self, i: usize) -> bool {
            i < self.text.len() && !self.lines.iter().any(|&(start, setext)| start == i && setext)
        }

        /// One definition starting at `i`: where it ends.
        fn definition(&self, i: usize) -> Option<usize> {
            if self.at(i)? != b'[' {
                return None;
            }
            let mut j = self.label(i + 1)?;
            j += 1;
            if self.at(j)? != b':' {
                return None;
            }
            j += 1;
            let (j, _) = self.space(j)?;
            let dest_end = self.destination(j)?;
            let (j, newlines) = match self.space(dest_end) {
                Some((j, newlines)) => {
                    if j == dest_end && newlines == 0 {
                        return None;
                    }
                    if newlines > 1 {
                        return Some(dest_end);
                    }
                    (j, newlines)
                }
                None => return Some(dest_end),
            };
            if let Some(end) = self.title(j) {
                let k = end + self.spaces(end);
                if self.at(k).is_none_or(|b| b == b'\n') {
                    return Some(end);
                }
            }
            (newlines > 0).then_some(dest_end)
        }

        /// The rest of a label after `[`: the position of its `]`.
        fn label(&self, mut i: usize) -> Option<usize> {
            let mut only_space = true;
            let mut codepoints = 0;
            loop {
                if codepoints >= 1000 {
                    return None;
                }
                match self.at(i)? {
                    b'[' => return None,
                    b']' => break,
                    b'\\' if self.at(i + 1)?.is_ascii_punctuation() => {
                        i += 2;
                        codepoints += 2;
                        only_space = false;
                    }
                    b if is_whitespace(b) => {
                        let start = i;
                        let mut whitespaces = 0;
                        let mut linebreaks = 0;
                        while self.at(i).is_some_and(is_whitespace) {
                            if self.at(i) == Some(b'\n') {
                                linebreaks += 1;
                                if linebreaks > 1 || i + 1 >= self.text.len() {
                                    return None;
                                }
                                i += 1;
                                whitespaces += 2;
                            } else {
                                whitespaces += if self.at(i) == Some(b' ') { 1 } else { 2 };
                                i += 1;
                            }
                        }
                        codepoints += if whitespaces > 1 { i - start } else { 1 };
                    }
                    b => {
                        only_space = false;
                        i += 1;
                        if b & 0x80 != 0 {
                            codepoints += 1;
                        }
                    }
                }
            }
            (!only_space).then_some(i)
        }

        /// Whitespace with at most one line break: where it ends and how many line breaks.
        fn space(&self, mut i: usize) -> Option<(usize, usize)> {
            let mut newlines = 0;
            loop {
                i += self.spaces(i);
                if self.at(i) != Some(b'\n') {
                    return Some((i, newlines));
                }
                i += 1;
                newlines += 1;
                if newlines > 1 || !self.may_enter(i) {
                    return None;
                }
            }
        }

        /// A link destination at `i`: where it ends.
        fn destination(&self, i: usize) -> Option<usize> {
            let mut j = i;
            if self.at(j) == Some(b'<') {
                j += 1;
                loop {
                    match self.at(j)? {
                        b'\n' | b'<' => return None,
                        b'>' => return Some(j + 1),
                        b'\\' if self.at(j + 1).is_some_and(|b| b.is_ascii_punctuation()) => j += 2,
                        _ => j += 1,
                    }
                }
            }
            let mut nest = 0;
            while let Some(b) = self.at(j) {
                match b {
                    0..=0x20 => break,
                    b'(' => {
                        if nest > MAX_NESTED_PARENS {
                            return None;
                        }
                        nest += 1;
                    }
                    b')' => {
                        if nest == 0 {
                            break;
                        }
                        nest -= 1;
                    }
                    b'\\' if self.at(j + 1).is_some_and(|b| b.is_ascii_punctuation()) => j += 1,
                    _ => {}
                }
                j += 1;
            }
            (nest == 0 && j > i).then_some(j)
        }

        /// A title at `i`: where it ends.
        fn title(&self, mut i: usize) -> Option<usize> {
            let close = match self.at(i)? {
                b'\'' => b'\'',
                b'"' => b'"',
                b'(' => b')',
                _ => return None,
            };
            i += 1;
            loop {
                match self.at(i)? {
                    b'(' if close == b')' => return None,
                    b'\n' => {
                        i += 1;
                        if !self.may_enter(i) {
                            return None;
                        }
                        i += self.spaces(i);
                    }
                    b'\\' => {
                        i += 1;
                        if self.at(i).is_some_and(|b| b != b'\n') {
                            i += 1;
                        }
                    }
                    b if b == close => return Some(i + 1),
                    _ => i += 1,
                }
            }
        }
    }

    /// pulldown-cmark's `is_ascii_whitespace` (the line ending is `\n` here).
    fn is_whitespace(b: u8) -> bool {
        matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<LineKind> {
        let mut parser = BlockParser::default();
        text.split('\n').map(|line| parser.line(line).kind).collect()
    }

    #[test]
    fn fence_in_list_item_and_quote() {
        let k = kinds("- ```python\n  x\n  ```\n> ~~~py\n> y\n> ~~~");
        assert!(matches!(k[0], LineKind::FenceOpen { start: 2, ch: b'`', len: 3, .. }));
        assert_eq!(k[1], LineKind::FenceContent { start: 2, spaces: 0, indent: 0 });
        assert_eq!(k[2], LineKind::FenceClose);
        assert!(matches!(k[3], LineKind::FenceOpen { start: 2, ch: b'~', .. }));
        assert_eq!(k[5], LineKind::FenceClose);
    }

    #[test]
    fn container_end_closes_fence() {
        let mut parser = BlockParser::default();
        parser.line("> ```python");
        let line = parser.line("outside");
        assert!(line.fence_closed_before);
        assert_eq!(line.kind, LineKind::Other);
    }

    #[test]
    fn indented_and_html_hide_fences() {
        assert_eq!(kinds("para\n\n    ```python")[2], LineKind::Other);
        assert_eq!(kinds("<div>\n```python")[1], LineKind::Other);
        assert!(matches!(kinds("<div>\n\n```python")[2], LineKind::FenceOpen { .. }));
    }

    #[test]
    fn link_reference_definitions() {
        let all = |text: &str| {
            let mut lines = Vec::new();
            let mut joined = Vec::new();
            for line in text.lines() {
                let setext = is_setext_underline(line.trim_start().as_bytes());
                lines.push((joined.len(), setext));
                joined.extend_from_slice(line.as_bytes());
                joined.push(b'\n');
            }
            refdefs::all_definitions(&joined, &lines)
        };
        assert!(all("[foo]: /url"));
        assert!(all("[foo]:\n/url\n[bar]: <a b> 'title'"));
        assert!(all("[foo]: /url\n'multi\nline title'"));
        assert!(!all("[foo]: /url 'unclosed"));
        assert!(!all("[foo]: /url\n'unclosed"));
        assert!(!all("[foo]: /url text"));
        assert!(!all("[ ]: /url"));
        assert!(!all("[foo](/url)"));
        // A title may not run into a line that looks like a setext underline.
        assert!(!all("[foo]: /url 'a\n===\nb'"));
        assert!(all("[foo]: /url 'a\n=x=\nb'"));
    }

    #[test]
    fn tabs_before_a_continued_quote() {
        // pulldown-cmark: `\t>` continues a quote, and the tab's last column is the optional space.
        let k = kinds("> ```python\n\t> x\n> ```");
        assert_eq!(k[1], LineKind::FenceContent { start: 2, spaces: 0, indent: 1 });
        assert_eq!(k[2], LineKind::FenceClose);
    }

    #[test]
    fn partial_lines() {
        let langs = |w: &str, complete: bool| {
            let w = w.to_ascii_lowercase();
            if complete {
                w == "python"
            } else {
                "python".starts_with(&w)
            }
        };
        assert!(could_open_fence("", langs));
        assert!(could_open_fence("> - ``", langs));
        assert!(could_open_fence("```Pyth", langs));
        assert!(!could_open_fence("```rust", langs));
        assert!(!could_open_fence("Hello", langs));
        assert!(!could_open_fence("``x", langs));
        let mut parser = BlockParser::default();
        parser.line("> - ```python");
        assert!(parser.surely_continues(">   x"));
        assert!(!parser.surely_continues(">  "));
        assert!(!parser.surely_continues("x"));
    }
}
