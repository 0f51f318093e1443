//! The push-style streaming rewriter.

use std::sync::Arc;

use super::Options;

/// A streaming markdown rewriter: `push` text as it arrives, `finish` at the end.
#[derive(Debug)]
pub struct Rewriter {
    opts: Arc<Options>,
    blocks: usize,
}

impl Rewriter {
    pub fn new(opts: Arc<Options>) -> Self {
        Rewriter { opts, blocks: 0 }
    }

    /// Feeds more text; appends to `out` everything that is decided.
    pub fn push(&mut self, input: &str, out: &mut String) {
        let _ = &self.opts;
        out.push_str(input);
    }

    /// Ends the text; appends to `out` everything still held.
    pub fn finish(&mut self, out: &mut String) {
        let _ = out;
    }

    /// How many Python blocks were rewritten so far.
    pub fn blocks(&self) -> usize {
        self.blocks
    }
}
