//! A raw DEFLATE encoder (RFC 1951) made for link payloads: many short inputs, one after another, on
//! the same thread.
//!
//! LZ77 with hash chains and lazy matching (zlib's level-6 parameters), then for each block the
//! smallest of a dynamic Huffman, the fixed Huffman or a stored encoding. What makes it cheap for
//! short inputs is that its match tables are never cleared: each position is entered as an absolute
//! 32-bit number that keeps growing from one input to the next, so an entry an earlier input left is
//! below the current input's base and is ignored. The output depends on the input alone, never on what
//! the encoder compressed before (a test holds it to that). miniz_oxide, which this replaced, cleared
//! about 300 KB of state for every payload, which cost more than compressing a typical block.
//!
//! Any DEFLATE decoder reads the output: the page's `DecompressionStream('deflate-raw')`, and
//! miniz_oxide's inflate on the way back (restore).

const WINDOW: usize = 1 << 15;
const HASH_BITS: u32 = 15;
const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
// zlib's level 6: search at most 128 chain entries (a quarter once a good match is held), stop at a
// match of 128, and look for a longer match one byte on only after a match shorter than 16.
const MAX_CHAIN: u32 = 128;
const GOOD_LENGTH: usize = 8;
const NICE_LENGTH: usize = 128;
const MAX_LAZY: usize = 16;
/// A match of three bytes further back than this costs more bits than its three literals.
const TOO_FAR: usize = 4096;
/// Symbols per block: each block gets Huffman codes fitted to its own symbols (zlib's size at its
/// default memory level).
const BLOCK_SYMBOLS: usize = 1 << 14;
/// The largest input [`Deflater::compress`] takes: positions are 32-bit.
pub const MAX_INPUT: usize = 1 << 30;

/// The encoder with its match tables (256 KB), kept from one input to the next.
pub struct Deflater {
    /// For each hash of three bytes, the absolute position last entered with it.
    head: Box<[u32]>,
    /// For each position (modulo the window), the position entered before it with the same hash.
    prev: Box<[u32]>,
    /// The absolute position of the current input's first byte; every entry below it is stale.
    base: u32,
    /// The current block's symbols: a literal byte (distance 0), or a match's length minus three
    /// with its distance in the upper 16 bits.
    symbols: Vec<u32>,
}

impl Default for Deflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Deflater {
    pub fn new() -> Self {
        Self {
            head: vec![0; 1 << HASH_BITS].into_boxed_slice(),
            prev: vec![0; WINDOW].into_boxed_slice(),
            base: 1,
            symbols: Vec::new(),
        }
    }

    /// Appends the raw DEFLATE of `input` to `out`. `None` (and `out` untouched) for an input larger
    /// than [`MAX_INPUT`].
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<()> {
        let n = input.len();
        if n > MAX_INPUT {
            return None;
        }
        // Positions base..=base+n must fit; when they would not, start again from cleared tables.
        if (u32::MAX - self.base) as usize <= n + WINDOW {
            self.head.fill(0);
            self.prev.fill(0);
            self.base = 1;
        }
        let mut bits = Bits::new(out);
        self.symbols.clear();
        // Where the bytes the block's symbols stand for begin, and where the symbols so far end.
        let mut block_start = 0;
        let mut covered = 0;

        let mut i = 0;
        let mut prev_len = MIN_MATCH - 1;
        let mut prev_dist = 0;
        let mut pending = false;
        while i < n {
            let mut cur_len = MIN_MATCH - 1;
            let mut cur_dist = 0;
            if i + MIN_MATCH <= n {
                let candidate = self.insert(input, i);
                if prev_len < MAX_LAZY {
                    if let Some((len, dist)) = self.longest_match(input, i, candidate, prev_len) {
                        if len > MIN_MATCH || dist <= TOO_FAR {
                            (cur_len, cur_dist) = (len, dist);
                        }
                    }
                }
            }
            if prev_len >= MIN_MATCH && cur_len <= prev_len {
                // The match found one byte back is at least as long: it starts at i - 1.
                self.symbols.push(((prev_dist as u32) << 16) | (prev_len - MIN_MATCH) as u32);
                let end = i - 1 + prev_len;
                for j in i + 1..end.min(n.saturating_sub(MIN_MATCH - 1)) {
                    self.insert(input, j);
                }
                covered = end;
                i = end;
                pending = false;
                prev_len = MIN_MATCH - 1;
            } else {
                if pending {
                    self.symbols.push(u32::from(input[i - 1]));
                    covered = i;
                }
                pending = true;
                (prev_len, prev_dist) = (cur_len, cur_dist);
                i += 1;
            }
            if self.symbols.len() >= BLOCK_SYMBOLS {
                write_block(&mut bits, &self.symbols, &input[block_start..covered], false);
                self.symbols.clear();
                block_start = covered;
            }
        }
        if pending {
            self.symbols.push(u32::from(input[n - 1]));
            covered = n;
        }
        write_block(&mut bits, &self.symbols, &input[block_start..covered], true);
        bits.finish();
        self.base += n as u32 + 1;
        Some(())
    }

    /// Enters position `i` into its hash chain; returns the chain's previous head.
    #[inline]
    fn insert(&mut self, input: &[u8], i: usize) -> u32 {
        let key =
            u32::from(input[i]) | u32::from(input[i + 1]) << 8 | u32::from(input[i + 2]) << 16;
        let hash = (key.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize;
        let at = self.base + i as u32;
        let head = std::mem::replace(&mut self.head[hash], at);
        self.prev[at as usize & (WINDOW - 1)] = head;
        head
    }

    /// The longest match for position `i` longer than `prev_len`, following the chain from
    /// `candidate`: its length and distance.
    #[inline]
    fn longest_match(
        &self,
        input: &[u8],
        i: usize,
        mut candidate: u32,
        prev_len: usize,
    ) -> Option<(usize, usize)> {
        let limit = MAX_MATCH.min(input.len() - i);
        if prev_len >= limit {
            return None;
        }
        let nice = NICE_LENGTH.min(limit);
        let at = self.base + i as u32;
        let mut best_len = prev_len;
        let mut best = None;
        let mut chain = if prev_len >= GOOD_LENGTH { MAX_CHAIN >> 2 } else { MAX_CHAIN };
        // Entries below the base are an earlier input's; a distance of a whole window or more is out
        // of reach (and its `prev` slot already holds a newer position).
        while candidate >= self.base && at - candidate < WINDOW as u32 {
            let c = (candidate - self.base) as usize;
            if input[c + best_len] == input[i + best_len] && input[c] == input[i] {
                let len = match_len(input, c, i, limit);
                if len > best_len {
                    best_len = len;
                    best = Some((len, i - c));
                    if len >= nice {
                        break;
                    }
                }
            }
            chain -= 1;
            if chain == 0 {
                break;
            }
            candidate = self.prev[candidate as usize & (WINDOW - 1)];
        }
        best
    }
}

/// How many bytes from `a` equal those from `b` (`a < b`), up to `limit`.
#[inline]
fn match_len(input: &[u8], a: usize, b: usize, limit: usize) -> usize {
    let mut n = 0;
    while n + 8 <= limit {
        let x = load8(input, a + n) ^ load8(input, b + n);
        if x != 0 {
            return n + (x.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while n < limit && input[a + n] == input[b + n] {
        n += 1;
    }
    n
}

#[inline]
fn load8(input: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&input[at..at + 8]);
    u64::from_le_bytes(word)
}

const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] =
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// The order in which the code-length code's lengths are sent.
const CL_ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/// The length code (0..29, to add to 257) of each match length minus three.
const LENGTH_CODE: [u8; 256] = {
    let mut table = [0; 256];
    let mut code = 0;
    while code < 29 {
        let mut len = LENGTH_BASE[code] as usize;
        while len < LENGTH_BASE[code] as usize + (1 << LENGTH_EXTRA[code]) && len <= MAX_MATCH {
            table[len - MIN_MATCH] = code as u8;
            len += 1;
        }
        code += 1;
    }
    table
};

/// The distance code of each distance minus one below 256, then of each 128th distance above.
const DIST_CODE: [u8; 512] = {
    let mut table = [0; 512];
    let mut code = 0;
    while code < 30 {
        let mut d = DIST_BASE[code] as usize - 1;
        while d < DIST_BASE[code] as usize - 1 + (1 << DIST_EXTRA[code]) {
            if d < 256 {
                table[d] = code as u8;
            } else {
                table[256 + (d >> 7)] = code as u8;
            }
            d += 1;
        }
        code += 1;
    }
    table
};

#[inline]
fn dist_code(dist: usize) -> usize {
    let d = dist - 1;
    usize::from(if d < 256 { DIST_CODE[d] } else { DIST_CODE[256 + (d >> 7)] })
}

/// Code lengths and their codes, bit-reversed to be written least significant bit first.
struct Code<const N: usize> {
    lens: [u8; N],
    codes: [u16; N],
}

impl<const N: usize> Code<N> {
    /// A length-limited Huffman code for the frequencies: Moffat and Katajainen's in-place
    /// minimum-redundancy lengths, then the longest codes shortened until they fit `limit` bits
    /// (miniz's method). At least two symbols get a code, as zlib's decoder wants of a distance code.
    fn build(freq: &[u32; N], limit: usize) -> Self {
        let mut used: Vec<(u32, u16)> =
            (0..N).filter(|&s| freq[s] != 0).map(|s| (freq[s], s as u16)).collect();
        let mut s = 0;
        while used.len() < 2 {
            if freq[s] == 0 {
                used.push((1, s as u16));
            }
            s += 1;
        }
        used.sort_unstable();
        let mut depth: Vec<u32> = used.iter().map(|&(f, _)| f).collect();
        minimum_redundancy(&mut depth);

        let mut count = [0u32; 33];
        for &d in &depth {
            count[(d as usize).min(32)] += 1;
        }
        for l in limit + 1..33 {
            count[limit] += std::mem::take(&mut count[l]);
        }
        let mut total: u32 = (1..=limit).map(|l| count[l] << (limit - l)).sum();
        while total > 1 << limit {
            count[limit] -= 1;
            if let Some(l) = (1..limit).rev().find(|&l| count[l] != 0) {
                count[l] -= 1;
                count[l + 1] += 2;
            }
            total -= 1;
        }

        let mut lens = [0; N];
        // The least frequent symbols (first in `used`) get the longest codes.
        let mut next = 0;
        for l in (1..=limit).rev() {
            for &(_, sym) in &used[next..next + count[l] as usize] {
                lens[usize::from(sym)] = l as u8;
            }
            next += count[l] as usize;
        }
        Self::from_lens(lens)
    }

    /// The canonical codes of RFC 1951 section 3.2.2 for the lengths.
    fn from_lens(lens: [u8; N]) -> Self {
        let mut count = [0u16; 16];
        for &l in &lens {
            count[usize::from(l)] += 1;
        }
        count[0] = 0;
        let mut next = [0u16; 16];
        let mut code = 0u16;
        for l in 1..16 {
            code = (code + count[l - 1]) << 1;
            next[l] = code;
        }
        let mut codes = [0; N];
        for (sym, &l) in lens.iter().enumerate() {
            if l != 0 {
                let l = usize::from(l);
                codes[sym] = next[l].reverse_bits() >> (16 - l);
                next[l] += 1;
            }
        }
        Self { lens, codes }
    }

    #[inline]
    fn put(&self, bits: &mut Bits<'_>, sym: usize) {
        bits.put(u32::from(self.codes[sym]), u32::from(self.lens[sym]));
    }
}

/// In place: weights sorted ascending become code lengths (longest first). Moffat and Katajainen,
/// "In-place calculation of minimum-redundancy codes" (1995).
fn minimum_redundancy(a: &mut [u32]) {
    let n = a.len();
    if n < 2 {
        a.iter_mut().for_each(|d| *d = 1);
        return;
    }
    a[0] += a[1];
    let (mut root, mut leaf) = (0, 2);
    for next in 1..n - 1 {
        if leaf >= n || a[root] < a[leaf] {
            a[next] = a[root];
            a[root] = next as u32;
            root += 1;
        } else {
            a[next] = a[leaf];
            leaf += 1;
        }
        if leaf >= n || (root < next && a[root] < a[leaf]) {
            a[next] += a[root];
            a[root] = next as u32;
            root += 1;
        } else {
            a[next] += a[leaf];
            leaf += 1;
        }
    }
    a[n - 2] = 0;
    for next in (0..n - 2).rev() {
        a[next] = a[a[next] as usize] + 1;
    }
    let (mut avail, mut used, mut depth) = (1i64, 0i64, 0u32);
    let mut root = n as i64 - 2;
    let mut next = n as i64 - 1;
    while avail > 0 {
        while root >= 0 && a[root as usize] == depth {
            used += 1;
            root -= 1;
        }
        while avail > used {
            a[next as usize] = depth;
            next -= 1;
            avail -= 1;
        }
        avail = 2 * used;
        depth += 1;
        used = 0;
    }
}

/// The fixed Huffman codes of RFC 1951 section 3.2.6.
fn fixed() -> &'static (Code<288>, Code<30>) {
    static FIXED: std::sync::OnceLock<(Code<288>, Code<30>)> = std::sync::OnceLock::new();
    FIXED.get_or_init(|| {
        let mut lit = [8; 288];
        lit[144..256].fill(9);
        lit[256..280].fill(7);
        (Code::from_lens(lit), Code::from_lens([5; 30]))
    })
}

/// Writes one block of `symbols` (standing for the bytes `raw`) in whichever encoding is smallest.
fn write_block(bits: &mut Bits<'_>, symbols: &[u32], raw: &[u8], last: bool) {
    let mut lit_freq = [0u32; 288];
    let mut dist_freq = [0u32; 30];
    for &s in symbols {
        let dist = (s >> 16) as usize;
        if dist == 0 {
            lit_freq[(s & 0xff) as usize] += 1;
        } else {
            lit_freq[257 + usize::from(LENGTH_CODE[(s & 0xff) as usize])] += 1;
            dist_freq[dist_code(dist)] += 1;
        }
    }
    lit_freq[256] = 1;
    // The extra bits are the same whichever codes carry the symbols.
    let extra: u64 = (0..29)
        .map(|c| u64::from(lit_freq[257 + c]) * u64::from(LENGTH_EXTRA[c]))
        .chain((0..30).map(|c| u64::from(dist_freq[c]) * u64::from(DIST_EXTRA[c])))
        .sum();
    let cost = |lit: &Code<288>, dist: &Code<30>| -> u64 {
        let l: u64 = (0..288).map(|s| u64::from(lit_freq[s]) * u64::from(lit.lens[s])).sum();
        let d: u64 = (0..30).map(|s| u64::from(dist_freq[s]) * u64::from(dist.lens[s])).sum();
        l + d + extra
    };

    let lit = Code::build(&lit_freq, 15);
    let dist = Code::build(&dist_freq, 15);
    let hlit = 257 + lit.lens[257..286].iter().rposition(|&l| l != 0).map_or(0, |p| p + 1);
    let hdist = 1 + dist.lens[1..].iter().rposition(|&l| l != 0).map_or(0, |p| p + 1);
    let mut lens = Vec::with_capacity(hlit + hdist);
    lens.extend_from_slice(&lit.lens[..hlit]);
    lens.extend_from_slice(&dist.lens[..hdist]);
    let runs = run_lengths(&lens);
    let mut cl_freq = [0u32; 19];
    for &(sym, _) in &runs {
        cl_freq[usize::from(sym)] += 1;
    }
    let cl = Code::build(&cl_freq, 7);
    let hclen = 4.max(CL_ORDER.iter().rposition(|&s| cl.lens[s] != 0).map_or(0, |p| p + 1));
    let header: u64 = 14
        + 3 * hclen as u64
        + runs
            .iter()
            .map(|&(sym, _)| u64::from(cl.lens[usize::from(sym)]) + cl_extra(sym).0 as u64)
            .sum::<u64>();
    let dynamic = header + cost(&lit, &dist);
    let (fixed_lit, fixed_dist) = fixed();
    let fixed = cost(fixed_lit, fixed_dist);
    let stored = 8 * raw.len() as u64 + 40 * (raw.len() as u64 / 65535 + 1);

    if stored < dynamic.min(fixed) {
        let mut chunks = raw.chunks(65535).peekable();
        while let Some(chunk) = chunks.next() {
            bits.put(u32::from(last && chunks.peek().is_none()), 1);
            bits.put(0, 2);
            bits.align();
            let len = chunk.len() as u32;
            bits.put(len | (!len & 0xffff) << 16, 32);
            bits.bytes(chunk);
        }
        return;
    }
    bits.put(u32::from(last), 1);
    if fixed <= dynamic {
        bits.put(1, 2);
        write_symbols(bits, symbols, fixed_lit, fixed_dist);
    } else {
        bits.put(2, 2);
        bits.put((hlit - 257) as u32, 5);
        bits.put((hdist - 1) as u32, 5);
        bits.put((hclen - 4) as u32, 4);
        for &s in &CL_ORDER[..hclen] {
            bits.put(u32::from(cl.lens[s]), 3);
        }
        for &(sym, repeat) in &runs {
            cl.put(bits, usize::from(sym));
            let (extra_bits, offset) = cl_extra(sym);
            if extra_bits != 0 {
                bits.put(u32::from(repeat) - offset, extra_bits);
            }
        }
        write_symbols(bits, symbols, &lit, &dist);
    }
}

/// The extra bits of a code-length symbol and the repeat count its extra value is offset from.
fn cl_extra(sym: u8) -> (u32, u32) {
    match sym {
        16 => (2, 3),
        17 => (3, 3),
        18 => (7, 11),
        _ => (0, 0),
    }
}

/// The code lengths as code-length symbols: a length, 16 (repeat the previous 3–6 times), 17 (3–10
/// zeros) or 18 (11–138 zeros), each with its repeat count.
fn run_lengths(lens: &[u8]) -> Vec<(u8, u8)> {
    let mut runs = Vec::with_capacity(lens.len());
    let mut i = 0;
    while i < lens.len() {
        let v = lens[i];
        let mut run = lens[i..].iter().take_while(|&&l| l == v).count();
        i += run;
        if v == 0 {
            while run >= 11 {
                let r = run.min(138);
                runs.push((18, r as u8));
                run -= r;
            }
            if run >= 3 {
                runs.push((17, run as u8));
                run = 0;
            }
        } else {
            runs.push((v, 1));
            run -= 1;
            while run >= 3 {
                let r = run.min(6);
                runs.push((16, r as u8));
                run -= r;
            }
        }
        runs.extend(std::iter::repeat_n((v, 1), run));
    }
    runs
}

fn write_symbols(bits: &mut Bits<'_>, symbols: &[u32], lit: &Code<288>, dist: &Code<30>) {
    for &s in symbols {
        let d = (s >> 16) as usize;
        if d == 0 {
            lit.put(bits, (s & 0xff) as usize);
            continue;
        }
        let len = (s & 0xff) as usize;
        let lc = usize::from(LENGTH_CODE[len]);
        lit.put(bits, 257 + lc);
        if LENGTH_EXTRA[lc] != 0 {
            let base = usize::from(LENGTH_BASE[lc]) - MIN_MATCH;
            bits.put((len - base) as u32, u32::from(LENGTH_EXTRA[lc]));
        }
        let dc = dist_code(d);
        dist.put(bits, dc);
        if DIST_EXTRA[dc] != 0 {
            let base = usize::from(DIST_BASE[dc]);
            bits.put((d - base) as u32, u32::from(DIST_EXTRA[dc]));
        }
    }
    lit.put(bits, 256);
}

/// Bits written least significant first, as DEFLATE packs them.
struct Bits<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    len: u32,
}

impl<'a> Bits<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out, acc: 0, len: 0 }
    }

    #[inline]
    fn put(&mut self, value: u32, n: u32) {
        self.acc |= u64::from(value) << self.len;
        self.len += n;
        if self.len >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.len -= 32;
        }
    }

    /// Pads to a byte boundary and writes out every whole byte held.
    fn align(&mut self) {
        self.len = self.len.next_multiple_of(8);
        while self.len > 0 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.len -= 8;
        }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn finish(mut self) {
        self.align();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deflate(d: &mut Deflater, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        assert_eq!(d.compress(input, &mut out), Some(()));
        out
    }

    fn inflate(bytes: &[u8]) -> Vec<u8> {
        match miniz_oxide::inflate::decompress_to_vec(bytes) {
            Ok(raw) => raw,
            Err(e) => panic!("not DEFLATE: {e:?}"),
        }
    }

    /// Inputs that reach every path: empty, one byte, runs past the longest match, distances near
    /// the window, more symbols than a block holds, and bytes that do not compress (stored blocks
    /// past 64 KB).
    fn inputs() -> Vec<Vec<u8>> {
        let mut noise = Vec::new();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push(x as u8);
        }
        let far: Vec<u8> =
            [&noise[..40_000], b"a far match of forty bytes or so........", &noise[..40]].concat();
        let mut near_window = noise[..1000].to_vec();
        near_window.extend_from_slice(&noise[5000..5000 + WINDOW - 1000]);
        near_window.extend_from_slice(&noise[..1000]);
        vec![
            vec![],
            b"a".to_vec(),
            b"ab".to_vec(),
            b"abc".to_vec(),
            b"aaaa".to_vec(),
            vec![b'x'; 100_000],
            b"print('hi')\n".to_vec(),
            "x = [i * i for i in range(100)]\n".repeat(500).into_bytes(),
            include_bytes!("markdown.rs").to_vec(),
            noise.clone(),
            far,
            near_window,
        ]
    }

    #[test]
    fn decodes_to_the_input() {
        let mut d = Deflater::new();
        for input in inputs() {
            assert_eq!(inflate(&deflate(&mut d, &input)), input, "{} bytes", input.len());
        }
    }

    #[test]
    fn the_output_does_not_depend_on_what_came_before() {
        let mut reused = Deflater::new();
        for input in inputs() {
            assert_eq!(deflate(&mut reused, &input), deflate(&mut Deflater::new(), &input));
        }
        // Near the end of the 32-bit positions the tables are cleared and the positions start again.
        reused.base = u32::MAX - 70_000;
        for input in inputs() {
            assert_eq!(deflate(&mut reused, &input), deflate(&mut Deflater::new(), &input));
        }
    }

    #[test]
    fn compresses_about_as_well_as_miniz_oxide_at_level_6() {
        let python = [
            "print('hi')\n",
            "import plotly.graph_objects as go\nfig = go.Figure(go.Bar(x=['A', 'B', 'C'], y=[10, 20, 15]))\nfig.show()\n",
            "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\nprint(fib(20))\n",
            include_str!("../../templates/runner.py"),
            include_str!("markdown.rs"),
        ];
        let mut d = Deflater::new();
        for text in python {
            let ours = deflate(&mut d, text.as_bytes()).len();
            let miniz = miniz_oxide::deflate::compress_to_vec(text.as_bytes(), 6).len();
            assert!(ours <= miniz + miniz / 50 + 1, "{ours} bytes against miniz's {miniz}");
        }
    }

    #[test]
    fn code_lengths_fit_their_limit_and_form_a_complete_code() {
        // Fibonacci frequencies make the deepest Huffman tree there is.
        let mut freq = [0u32; 30];
        let (mut a, mut b) = (1u32, 1u32);
        for f in freq.iter_mut() {
            *f = a;
            (a, b) = (b, a.saturating_add(b));
        }
        let code = Code::build(&freq, 15);
        assert!(code.lens.iter().all(|&l| (1..=15).contains(&l)));
        let kraft: u64 = code.lens.iter().map(|&l| 1u64 << (15 - l)).sum();
        assert_eq!(kraft, 1 << 15);
        // One symbol used still gets a complete code of two.
        let mut one = [0u32; 30];
        one[7] = 9;
        let code = Code::build(&one, 15);
        assert_eq!(code.lens.iter().filter(|&&l| l == 1).count(), 2);
    }
}
