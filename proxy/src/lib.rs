//! Neural proxies of plugins. So far: [`collect`], the training data — (input, parameters, output) examples
//! rendered through the REAL chain by the worker pool, written as shards any number of machines can produce
//! and one manifest merges. The conditional TCN, its training and the proxy gradient methods come next.

pub mod collect;
