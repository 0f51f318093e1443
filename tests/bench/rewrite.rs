//! Benchmarks of the rewrite engine: one-shot throughput on prose-heavy markdown (MB/s), the cost of
//! one pushed chunk of 1 to 20 bytes (ns per chunk), and restore.
//!
//!     cargo bench --bench rewrite
//!
//! Criterion prints `thrpt` in bytes per second for the one-shot runs and in elements (chunks) per
//! second for the streaming run; ns per chunk is 1e9 divided by that. A last `summary` line states
//! the headline figures directly (MB/s one-shot, ns per pushed chunk), from a plain timed loop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sandgate::rewrite::{restore, rewrite, Options, Rewriter};

/// About `target` bytes of markdown as chat answers look: paragraphs, lists, a quote, inline code,
/// and now and then a Python block.
fn document(target: usize, python_every: usize) -> String {
    let paragraph = "Large language models write a lot of prose around their code. This sentence, \
                     like most of an answer, holds `inline code`, *emphasis*, and [a link](https://example.org) \
                     but nothing that could open a fence, so the engine should pass it through at memory speed.\n";
    let mut doc = String::with_capacity(target + 1024);
    let mut i = 0;
    while doc.len() < target {
        i += 1;
        doc.push_str("## Step ");
        doc.push_str(&i.to_string());
        doc.push_str("\n\n");
        doc.push_str(paragraph);
        doc.push_str(paragraph);
        doc.push('\n');
        doc.push_str("1. First item of a list\n2. Second item, with `code`\n   continued here\n\n");
        doc.push_str("> A quoted remark that spans\n> two lines.\n\n");
        if python_every > 0 && i % python_every == 0 {
            doc.push_str("```python\nimport math\n\nfor i in range(10):\n    print(i, math.sqrt(i))\n```\n\n");
        }
        doc.push_str(paragraph);
        doc.push('\n');
    }
    doc
}

fn one_shot(c: &mut Criterion) {
    let opts = Options::default();
    let mut group = c.benchmark_group("one_shot");
    for (name, python_every) in [("prose", 0), ("prose_with_python", 20)] {
        let doc = document(1 << 20, python_every);
        group.throughput(Throughput::Bytes(doc.len() as u64));
        group.bench_with_input(BenchmarkId::new("rewrite", name), &doc, |b, doc| {
            b.iter(|| black_box(rewrite(&opts, black_box(doc))))
        });
    }
    let hidden = Options { show_code: false, ..Options::default() };
    let doc = document(1 << 20, 20);
    group.throughput(Throughput::Bytes(doc.len() as u64));
    group.bench_with_input(
        BenchmarkId::new("rewrite_hidden", "prose_with_python"),
        &doc,
        |b, doc| b.iter(|| black_box(rewrite(&hidden, black_box(doc)))),
    );
    let rewritten = rewrite(&opts, &doc);
    group.throughput(Throughput::Bytes(rewritten.len() as u64));
    group.bench_with_input(
        BenchmarkId::new("restore", "prose_with_python"),
        &rewritten,
        |b, doc| b.iter(|| black_box(restore(&opts, black_box(doc)))),
    );
    group.finish();
}

/// `doc` cut in chunks of 1 to 20 bytes, as token deltas arrive.
fn token_chunks(doc: &str) -> Vec<&str> {
    let mut chunks = Vec::new();
    let mut at = 0;
    let mut size = 1;
    while at < doc.len() {
        let mut end = (at + size).min(doc.len());
        while !doc.is_char_boundary(end) {
            end += 1;
        }
        chunks.push(&doc[at..end]);
        at = end;
        size = size % 20 + 1;
    }
    chunks
}

fn push_all(opts: &Arc<Options>, chunks: &[&str], capacity: usize) -> String {
    let mut rewriter = Rewriter::new(opts.clone());
    let mut out = String::with_capacity(capacity);
    for chunk in chunks {
        rewriter.push(black_box(chunk), &mut out);
    }
    rewriter.finish(&mut out);
    out
}

fn streaming(c: &mut Criterion) {
    let doc = document(64 << 10, 5);
    let chunks = token_chunks(&doc);
    let mut group = c.benchmark_group("streaming");
    group.throughput(Throughput::Elements(chunks.len() as u64));
    for (name, show_code) in [("shown", true), ("hidden", false)] {
        let opts = Arc::new(Options { show_code, ..Options::default() });
        group.bench_function(BenchmarkId::new("push_1_to_20_bytes", name), |b| {
            b.iter(|| black_box(push_all(&opts, &chunks, doc.len() + 4096)))
        });
    }
    group.finish();
}

/// One link payload for a typical block (about 300 bytes of code): what each rewritten block costs on
/// top of the markdown scan.
fn payload(c: &mut Criterion) {
    let code = "import plotly.express as px\n\ndata = {\"label\": [\"A\", \"B\", \"C\"], \"value\": [10, 20, 15]}\n\
                fig = px.bar(data, x=\"label\", y=\"value\", title=\"A, B, C\")\n\
                fig.update_layout(template=\"plotly_white\")\nfig.show()\n\
                for name, value in zip(data[\"label\"], data[\"value\"]):\n    print(name, value)\n";
    let mut group = c.benchmark_group("payload");
    group.throughput(Throughput::Bytes(code.len() as u64));
    group.bench_function("encode_300_bytes", |b| {
        b.iter(|| black_box(sandgate::rewrite::payload::encode(black_box(code))))
    });
    group.finish();
}

/// The headline figures in plain words, timed over a fixed number of rounds after a warm-up.
fn summary(_: &mut Criterion) {
    let opts = Options::default();
    let prose = document(1 << 20, 0);
    black_box(rewrite(&opts, &prose));
    let rounds = 50;
    let started = Instant::now();
    for _ in 0..rounds {
        black_box(rewrite(&opts, black_box(&prose)));
    }
    let mb_per_s = (prose.len() * rounds) as f64 / started.elapsed().as_secs_f64() / 1e6;

    let doc = document(64 << 10, 5);
    let chunks = token_chunks(&doc);
    let mut ns_per_chunk = Vec::new();
    for show_code in [true, false] {
        let opts = Arc::new(Options { show_code, ..Options::default() });
        black_box(push_all(&opts, &chunks, doc.len() + 4096));
        let started = Instant::now();
        for _ in 0..rounds {
            black_box(push_all(&opts, &chunks, doc.len() + 4096));
        }
        ns_per_chunk.push(started.elapsed().as_nanos() as f64 / (chunks.len() * rounds) as f64);
    }
    println!(
        "summary: one-shot rewrite of prose {mb_per_s:.0} MB/s; push of a 1-20 byte chunk \
         {:.0} ns with the code shown, {:.0} ns with it hidden ({} chunks, {rounds} rounds)",
        ns_per_chunk[0],
        ns_per_chunk[1],
        chunks.len()
    );
}

criterion_group!(benches, one_shot, streaming, payload, summary);
criterion_main!(benches);
