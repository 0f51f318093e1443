//! Benchmarks of the rewrite engine: one-shot throughput on prose-heavy markdown (MB/s), the cost of
//! one pushed chunk of 1 to 20 bytes (ns per chunk), and restore.
//!
//!     cargo bench --bench rewrite
//!
//! Criterion prints `thrpt` in bytes per second for the one-shot runs and in elements (chunks) per
//! second for the streaming run; ns per chunk is 1e9 divided by that.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;

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
        |b, doc| b.iter(|| black_box(restore(black_box(doc)))),
    );
    group.finish();
}

fn streaming(c: &mut Criterion) {
    let doc = document(64 << 10, 5);
    // Chunks of 1 to 20 bytes, as token deltas arrive.
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
    let mut group = c.benchmark_group("streaming");
    group.throughput(Throughput::Elements(chunks.len() as u64));
    for (name, show_code) in [("shown", true), ("hidden", false)] {
        let opts = Arc::new(Options { show_code, ..Options::default() });
        group.bench_function(BenchmarkId::new("push_1_to_20_bytes", name), |b| {
            b.iter(|| {
                let mut rewriter = Rewriter::new(opts.clone());
                let mut out = String::with_capacity(doc.len() + 4096);
                for chunk in &chunks {
                    rewriter.push(black_box(chunk), &mut out);
                }
                rewriter.finish(&mut out);
                black_box(out)
            })
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

criterion_group!(benches, one_shot, streaming, payload);
criterion_main!(benches);
