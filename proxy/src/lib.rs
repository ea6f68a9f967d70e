//! Neural proxies of plugins: data collection from real plugins, the conditional TCN, its training and
//! quality report.
//!
//! Not built yet: this crate holds its place in the workspace until the proxy issue.
