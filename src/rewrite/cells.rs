//! The cells context: the earlier Python blocks a replacement carries, so that the sandbox page can
//! run them first, in the same interpreter, as the cells of a notebook.
//!
//! A replacement's URL gets `&cx=P`, where `P` is a [payload](super::payload) of the JSON text
//! `{"cells":["code1","code2",...],"omitted":N}`: the code of the earlier blocks exactly as their own
//! `py=` holds it, oldest first. The cells are always the *newest* run of earlier blocks whose code
//! fits in `context_bytes` bytes (before compression); `N` counts the earlier blocks left out before
//! them (the oldest ones past the budget, and every block before one that could not be rewritten,
//! since the cells after such a gap would run on a state it never built). There is no `cx` when
//! nothing came before (no cells and `N == 0`).
//!
//! The links of one answer together carry at most [`ANSWER_CONTEXT_FACTOR`] × `context_bytes` of
//! earlier code: without that bound an answer of many small blocks would cost the square of its
//! length (a 10 MB answer of 115,000 blocks made every link carry 64 KB, about 7 GB of DEFLATE
//! input in all). The links past it carry a `cx` with no cells that counts every earlier block as
//! left out, and the page runs them alone, saying so.
//!
//! Which blocks count as earlier is the [`Context`]: those of the same answer (the same choice, the
//! same Responses output part: one [`Rewriter`](super::Rewriter) each), or with
//! [`Context::Conversation`] also those of the earlier answers in the request's history, which come
//! first. Nothing is stored: the history arrives with the request, and the kept code lives in the
//! rewriter, bounded by the budget.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::payload;

/// Which earlier Python blocks a replacement carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Context {
    /// None: every link runs its block alone (the links of format version 1).
    Off,
    /// The earlier blocks of the same answer.
    #[default]
    Answer,
    /// The earlier answers' blocks in the request's history first, then the answer's own.
    Conversation,
}

impl Context {
    pub const NAMES: &'static str = "off, answer, conversation";

    pub fn as_str(self) -> &'static str {
        match self {
            Context::Off => "off",
            Context::Answer => "answer",
            Context::Conversation => "conversation",
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Context {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(Context::Off),
            "answer" => Ok(Context::Answer),
            "conversation" => Ok(Context::Conversation),
            other => Err(format!("unknown context `{other}`: expected one of {}", Context::NAMES)),
        }
    }
}

/// The links of one answer carry at most this many times `context_bytes` of earlier code in all.
pub const ANSWER_CONTEXT_FACTOR: usize = 16;

/// The earlier blocks kept for the next replacement: oldest first, at most a budget of code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cells {
    code: VecDeque<String>,
    /// The sum of the lengths of `code`.
    bytes: usize,
    omitted: usize,
}

/// The JSON shape of `cx`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Json<'a> {
    #[serde(borrow)]
    cells: Vec<std::borrow::Cow<'a, str>>,
    omitted: usize,
}

impl Cells {
    /// Adds a block's code as the newest cell; the oldest cells past `budget` bytes are left out.
    pub fn push(&mut self, code: String, budget: usize) {
        self.bytes += code.len();
        self.code.push_back(code);
        while self.bytes > budget {
            let Some(old) = self.code.pop_front() else {
                break;
            };
            self.bytes -= old.len();
            self.omitted += 1;
        }
    }

    /// A block that cannot be a cell (it was too large to be rewritten): it and every cell before
    /// it are left out.
    pub fn omit(&mut self) {
        self.omitted += self.code.len() + 1;
        self.code.clear();
        self.bytes = 0;
    }

    /// Nothing came before: no cells, nothing left out.
    pub fn is_empty(&self) -> bool {
        self.code.is_empty() && self.omitted == 0
    }

    /// The code of the kept cells, oldest first.
    pub fn cells(&self) -> impl ExactSizeIterator<Item = &str> {
        self.code.iter().map(String::as_str)
    }

    /// How many earlier blocks were left out.
    pub fn omitted(&self) -> usize {
        self.omitted
    }

    /// The bytes of code kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The JSON text `{"cells":[...],"omitted":N}`.
    pub fn to_json(&self) -> String {
        let json = Json {
            cells: self.code.iter().map(|c| c.as_str().into()).collect(),
            omitted: self.omitted,
        };
        // Serialising strings and a number cannot fail.
        serde_json::to_string(&json).unwrap_or_default()
    }

    /// The `cx` payload.
    pub fn encode(&self) -> String {
        payload::encode(&self.to_json())
    }

    /// The `cx` payload of a link whose answer's links may still carry `allowance` bytes of code:
    /// the cells when they fit, and what they took off the allowance; past it, a `cx` with no cells
    /// that counts every earlier block as left out (and takes nothing).
    pub fn encode_within(&self, allowance: usize) -> (String, usize) {
        if self.bytes <= allowance {
            return (self.encode(), self.bytes);
        }
        let none = Cells { omitted: self.omitted + self.code.len(), ..Cells::default() };
        (none.encode(), 0)
    }

    /// Reads a `cx` payload back; `None` when it is not one.
    pub fn decode(cx: &str) -> Option<Cells> {
        let text = payload::decode(cx)?;
        let json: Json<'_> = serde_json::from_str(&text).ok()?;
        let code: VecDeque<String> = json.cells.into_iter().map(|c| c.into_owned()).collect();
        let bytes = code.iter().map(String::len).sum();
        Some(Cells { code, bytes, omitted: json.omitted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_are_left_out_past_the_budget() {
        let mut cells = Cells::default();
        assert!(cells.is_empty());
        cells.push("a = 1\n".into(), 12);
        cells.push("b = 2\n".into(), 12);
        assert_eq!(cells.cells().collect::<Vec<_>>(), ["a = 1\n", "b = 2\n"]);
        cells.push("c = 3\n".into(), 12);
        assert_eq!(cells.cells().collect::<Vec<_>>(), ["b = 2\n", "c = 3\n"]);
        assert_eq!((cells.omitted(), cells.bytes()), (1, 12));
        // A block larger than the whole budget leaves out itself and everything before it.
        cells.push("x".repeat(13), 12);
        assert_eq!((cells.cells().len(), cells.omitted(), cells.bytes()), (0, 4, 0));
        assert!(!cells.is_empty(), "something came before: cx says how much was left out");
        cells.push("d = 4\n".into(), 12);
        cells.omit();
        assert_eq!((cells.cells().len(), cells.omitted()), (0, 6));
    }

    #[test]
    fn past_the_allowance_every_earlier_block_is_left_out() {
        let mut cells = Cells::default();
        cells.push("a = 1\n".into(), 100);
        cells.push("b = 2\n".into(), 100);
        let (cx, took) = cells.encode_within(12);
        assert_eq!((Cells::decode(&cx), took), (Some(cells.clone()), 12));
        let (cx, took) = cells.encode_within(11);
        let none = Cells::decode(&cx).unwrap();
        assert_eq!((none.cells().len(), none.omitted(), took), (0, 2, 0));
    }

    #[test]
    fn json_and_payload_round_trip() {
        let mut cells = Cells::default();
        cells.push("print(\"é\")\n".into(), 100);
        cells.push("</script>\n".into(), 100);
        assert_eq!(cells.to_json(), r#"{"cells":["print(\"é\")\n","</script>\n"],"omitted":0}"#);
        let cx = cells.encode();
        assert!(cx.bytes().all(payload::is_payload_byte));
        assert_eq!(Cells::decode(&cx), Some(cells));
        assert_eq!(Cells::decode(&payload::encode(r#"{"cells":[1],"omitted":0}"#)), None);
        assert_eq!(Cells::decode("!!"), None);
        // As the README's Python builds it: `json.dumps` (spaces, `\u` escapes), zlib's raw DEFLATE.
        let python = "q1ZKTs3JKVayUohWSlSwVVCPKTUwSLVUj8lTitVRUMrPzSwpSU0BShvUAgA";
        let cells = Cells::decode(python).unwrap();
        assert_eq!((cells.cells().collect::<Vec<_>>(), cells.omitted()), (vec!["a = 'é'\n"], 0));
    }

    #[test]
    fn context_names() {
        for c in [Context::Off, Context::Answer, Context::Conversation] {
            assert_eq!(c.as_str().parse::<Context>(), Ok(c));
        }
        assert_eq!(" Conversation ".parse::<Context>(), Ok(Context::Conversation));
        let e = "notebook".parse::<Context>().unwrap_err();
        assert_eq!(e, "unknown context `notebook`: expected one of off, answer, conversation");
    }
}
